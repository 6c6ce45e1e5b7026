// The Mender board's client runs (docs/ota-clients.md, "Mender").
#include "mender.hpp"

#include <sys/sysmacros.h>

#include <sstream>
#include <tuple>

#include "common.hpp"
#include "otarig/drivers/clients/mender.hpp"
#include "otarig/drivers/clients/tools.hpp"

namespace otarig::clientboard {
namespace cl = drivers::clients;

namespace {

// Mender logs `time="..." level=info msg="..."`; the message, unquoted.
struct LogLine {
  std::string level;
  std::string msg;
};

std::optional<LogLine> parse_log(const std::string& line) {
  const auto level_at = line.find("level=");
  const auto msg_at = line.find(" msg=\"");
  if (line.rfind("time=", 0) != 0 || level_at == std::string::npos || msg_at == std::string::npos) return std::nullopt;
  LogLine out;
  out.level = line.substr(level_at + 6, line.find(' ', level_at) - level_at - 6);
  auto msg = line.substr(msg_at + 6);
  if (auto end = msg.rfind('"'); end != std::string::npos) msg.resize(end);
  for (std::size_t at = 0; (at = msg.find("\\\"", at)) != std::string::npos;) msg.erase(at, 1);
  out.msg = msg;
  return out;
}

// Lines that say nothing about the update: configuration defaults, the
// missing server of standalone mode, progress bars.
bool noise(const std::string& text) {
  if (text.find_first_not_of(".|-%0123456789 ") == std::string::npos) return true;
  for (const char* n : {"is not set in the Mender configuration file", "No server URL(s) specified",
                        "has no associated server URL", "Loaded configuration file"})
    if (text.find(n) != std::string::npos) return true;
  return false;
}

std::string write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  return out ? std::string() : "write " + path;
}

}  // namespace

std::string enter_mender_namespace(const cl::SlotLayout& layout, int booted,
                                   const std::vector<std::pair<std::string, std::string>>& etc_files,
                                   const std::string& console) {
  if (auto error = enter_device_namespace(etc_files, {}); !error.empty()) return error;
  // Under libfaketime (the rig setting the device clock) the board's clock
  // lives in a semaphore and a shared memory segment in the host's /dev/shm,
  // named by FAKETIME_SHARED; a Mender that cannot open them ends at its
  // start (libfaketime: "sem_open failed"), so the device's /dev keeps that
  // folder.
  const int shm = std::getenv("FAKETIME_SHARED") ? ::open("/dev/shm", O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
  if (::mount("otarig-dev", "/dev", "tmpfs", MS_NOSUID, "mode=0755,size=64k") != 0)
    return fmt::format("mount a tmpfs on /dev: {}", std::strerror(errno));
  if (shm >= 0) {
    const auto from = fmt::format("/proc/self/fd/{}", shm);
    if (::mkdir("/dev/shm", 01777) != 0 || ::mount(from.c_str(), "/dev/shm", nullptr, MS_BIND, nullptr) != 0)
      return fmt::format("bind the host's /dev/shm (libfaketime's clock) into /dev: {}", std::strerror(errno));
    ::close(shm);
  }
  for (auto [name, major, minor] : {std::tuple{"null", 1u, 3u}, std::tuple{"zero", 1u, 5u},
                                    std::tuple{"full", 1u, 7u}, std::tuple{"random", 1u, 8u},
                                    std::tuple{"urandom", 1u, 9u}, std::tuple{"tty", 5u, 0u}}) {
    const auto path = std::string("/dev/") + name;
    if (::mknod(path.c_str(), S_IFCHR | 0666, makedev(major, minor)) != 0)
      return fmt::format("mknod {}: {}", path, std::strerror(errno));
  }
  if (::mkdir("/dev/otarig", 0755) != 0) return fmt::format("mkdir /dev/otarig: {}", std::strerror(errno));
  if (::symlink(console.c_str(), "/dev/console") != 0)
    return fmt::format("symlink /dev/console: {}", std::strerror(errno));
  if (::mount("otarig-sys", "/sys/class", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k") != 0)
    return fmt::format("mount a tmpfs on /sys/class: {}", std::strerror(errno));
  for (int slot : {0, 1}) {
    const std::string part = cl::mender::kRootfsPart[slot];
    const auto target = std::filesystem::absolute(layout.slot(slot)).string();
    if (::symlink(target.c_str(), part.c_str()) != 0) return fmt::format("symlink {}: {}", part, std::strerror(errno));
    // Mender sizes a partition with BLKGETSIZE64 and, where that ioctl does
    // not apply, from these attributes of /sys/class/ubi/NAME (NAME: the
    // path without /dev/). It takes a device for UBI only when
    // /sys/class/ubi/PATH exists, which stays absent.
    std::error_code ec;
    const auto size = std::filesystem::file_size(target, ec);
    if (ec) return fmt::format("size of {}: {}", target, ec.message());
    const auto dir = "/sys/class/ubi/" + part.substr(5);
    std::filesystem::create_directories(dir, ec);
    if (ec) return fmt::format("mkdir {}: {}", dir, ec.message());
    for (const auto& e : {write_file(dir + "/usable_eb_size", "512\n"),
                          write_file(dir + "/reserved_ebs", std::to_string(size / 512) + "\n")})
      if (!e.empty()) return e;
  }
  if (::mkdir("/run/otarig/bin", 0755) != 0) return fmt::format("mkdir /run/otarig/bin: {}", std::strerror(errno));
  // The kernel mounted the booted slot as / (root= from the boot ROM): what
  // Mender reads with `mount` to find the active partition.
  if (auto e = write_file("/run/otarig/bin/mount",
                          fmt::format("#!/bin/sh\n# otarig: the device's mount table: the booted slot is /\n"
                                      "echo '{} on / type ext4 (ro,relatime)'\n",
                                      cl::mender::kRootfsPart[booted]));
      !e.empty())
    return e;
  ::chmod("/run/otarig/bin/mount", 0755);
  ::setenv("PATH", ("/run/otarig/bin:" + env_or("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")).c_str(), 1);
  return {};
}

// Managed mode adds what `mender daemon` runs besides the client: the
// identity script (/usr/share/mender/identity/mender-device-identity, which
// names the device by its storage folder's name) and `reboot`, which on this
// device never returns: the board sees Mender's "Mender rebooting from ..."
// and reboots it (the daemon is killed, as a reboot kills it).
namespace {
std::string enter_managed_namespace(const std::filesystem::path& storage) {
  if (::mount("otarig-identity", "/usr/share/mender/identity", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k") != 0)
    return fmt::format("mount a tmpfs on /usr/share/mender/identity: {}", std::strerror(errno));
  if (auto e = write_file("/usr/share/mender/identity/mender-device-identity",
                          fmt::format("#!/bin/sh\n# otarig: the device's identity\necho 'serial={}'\n",
                                      storage.filename().string()));
      !e.empty())
    return e;
  ::chmod("/usr/share/mender/identity/mender-device-identity", 0755);
  if (auto e = write_file("/run/otarig/bin/reboot",
                          "#!/bin/sh\n# otarig: the board reboots the device when Mender asks: it kills Mender,\n"
                          "# and this ends with it (a reboot never returns)\n"
                          "parent=$PPID\nwhile kill -0 \"$parent\" 2>/dev/null; do sleep 0.1; done\nexit 1\n");
      !e.empty())
    return e;
  ::chmod("/run/otarig/bin/reboot", 0755);
  return {};
}
}  // namespace

MenderClient::MenderClient(cl::SlotLayout layout, std::string verify_key, unsigned timeout_ms, bool init_store)
    : layout_(std::move(layout)), verify_key_(std::move(verify_key)), timeout_ms_(timeout_ms), init_store_(init_store) {}

namespace {

// fsync of a file or a folder; false when it fails.
bool sync_path(const std::filesystem::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

// A folder made durable: created, then its parent synced (a folder's entry
// is in its parent, which a cut can lose until the parent is synced).
void make_folder(const std::filesystem::path& dir) {
  if (std::filesystem::exists(dir)) return;
  std::filesystem::create_directory(dir);
  sync_path(dir.parent_path());
}

}  // namespace

// LMDB writes a new environment's first pages without a barrier (its first
// commit syncs them): a power cut then can leave a file whose meta pages
// never landed, which LMDB refuses (MDB_INVALID) at every later start. The
// database therefore comes into the data folder whole, by a rename.
void MenderClient::ensure_store(int booted, const cl::SlotImage& running) {
  const auto store = data_dir() / "mender-store";
  if (!init_store_ || std::filesystem::exists(store)) return;
  const auto scratch = layout_.dir / "mender-init";
  std::error_code ignored;
  std::filesystem::remove_all(scratch, ignored);
  make_folder(scratch);
  const auto r = run({"show-artifact"}, booted, running, scratch);
  const auto made = scratch / "mender-store";
  if (r.status != 0 || !std::filesystem::exists(made) || !sync_path(made)) {
    say(fmt::format("app: Mender could not create its database (status {})", r.status));
    return;
  }
  std::filesystem::rename(made, store);
  sync_path(data_dir());
  std::filesystem::remove_all(scratch, ignored);
  say("app: created Mender's database (mender-data/mender-store, synced)");
}

void MenderClient::write_config() const {
  make_folder(config_dir());
  make_folder(config_dir() / "scripts");
  make_folder(data_dir());
  auto put = [](const std::filesystem::path& file, const std::string& text) {
    std::ifstream in(file);
    std::stringstream current;
    current << in.rdbuf();
    if (current.str() != text) cl::write_text_atomically(file, text);
  };
  // Managed mode: the rig's server, polled every second, the device's own
  // key, no D-Bus (the daemon's auth manager then runs in process).
  std::string managed;
  if (managed_) {
    managed = fmt::format("  \"ServerURL\": \"{}\",\n  \"DBus\": {{\"Enabled\": false}},\n", managed_->server_url);
    if (!managed_->server_ca.empty())
      managed += fmt::format("  \"ServerCertificate\": \"{}\",\n", managed_->server_ca);
    // The daemon's client presents it to the server (standalone `mender
    // install` does not read it).
    if (!managed_->client_cert.empty() && !managed_->client_key.empty())
      managed += fmt::format("  \"HttpsClient\": {{\"Certificate\": \"{}\", \"Key\": \"{}\"}},\n",
                             managed_->client_cert, managed_->client_key);
    if (!managed_->device_key.empty())
      managed += fmt::format("  \"Security\": {{\"AuthPrivateKey\": \"{}\"}},\n", managed_->device_key);
  }
  put(config_dir() / "mender.conf",
      fmt::format("{{\n  \"RootfsPartA\": \"{}\",\n  \"RootfsPartB\": \"{}\",\n  \"ArtifactVerifyKey\": \"{}\",\n"
                  "  \"ArtifactScriptsPath\": \"{}\",\n  \"RootfsScriptsPath\": \"{}\",\n{}"
                  "  \"UpdatePollIntervalSeconds\": {},\n  \"InventoryPollIntervalSeconds\": {},\n"
                  "  \"RetryPollIntervalSeconds\": {}\n}}\n",
                  cl::mender::kRootfsPart[0], cl::mender::kRootfsPart[1], verify_key_,
                  (data_dir() / "scripts").string(), (config_dir() / "scripts").string(), managed,
                  managed_ ? 1 : 1800, managed_ ? 5 : 1800, managed_ ? 1 : 300));
  put(config_dir() / "scripts" / "version", "3\n");
  put(data_dir() / "device_type", fmt::format("device_type={}\n", cl::mender::kDeviceType));
}

MenderClient::Outcome MenderClient::run(const std::vector<std::string>& command, int booted,
                                        const cl::SlotImage& running, const std::filesystem::path& data,
                                        const std::function<bool(const std::string&, const std::string&)>& stop) {
  write_config();
  if (data.empty()) ensure_store(booted, running);
  cl::ubootenv::write_config(layout_);
  std::ifstream cfg(layout_.env_config());
  std::stringstream cfg_text;
  cfg_text << cfg.rdbuf();
  const std::vector<std::pair<std::string, std::string>> etc{
      {"fw_env.config", cfg_text.str()},
      {"mender/artifact_info", "artifact_name=" + cl::mender::artifact_name(running.client_version) + "\n"},
      {std::string(cl::mender::kReleaseFile).substr(5), "VERSION=" + running.client_version + "\n"}};
  const auto console = fmt::format("/proc/{}/fd/1", ::getpid());
  std::vector<std::string> argv{"mender",       "--config", (config_dir() / "mender.conf").string(),
                                "--data",       (data.empty() ? data_dir() : data).string(),
                                "--no-syslog",  "--log-level", "info"};
  argv.insert(argv.end(), command.begin(), command.end());
  say("ota: mender " + [&] {
    std::string s;
    for (const auto& c : command) s += (s.empty() ? "" : " ") + c;
    return s;
  }());
  Child child(argv, [&] {
    auto error = enter_mender_namespace(layout_, booted, etc, console);
    if (error.empty() && managed_) error = enter_managed_namespace(layout_.dir);
    return error;
  });
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms_);
  Outcome out;
  while (auto l = child.line(deadline)) {
    // Progress dots run into the next log line.
    auto text = trim(*l);
    text.erase(0, text.find_first_not_of('.') == std::string::npos ? text.size() : text.find_first_not_of('.'));
    if (text.empty()) continue;
    if (auto log = parse_log(text)) {
      if (noise(log->msg)) continue;
      say(fmt::format("mender: {}: {}", log->level, log->msg));
      if (log->level == "error" || log->level == "fatal") out.errors.push_back(log->msg);
      if (stop && stop(log->level, log->msg)) {
        out.stopped = true;
        child.signal(SIGKILL);
        break;
      }
    } else if (!noise(text)) {
      say("mender: " + text);
    }
  }
  out.timed_out = child.timed_out();
  out.status = child.wait(std::chrono::seconds(3));
  return out;
}

std::optional<std::string> MenderClient::install(const std::string& url, int booted, const cl::SlotImage& running) {
  // Over TLS, the CA the update server chains to (OTARIG_CA, from the rig):
  // standalone `mender install URL` trusts what --trusted-certs names and
  // reads neither ServerCertificate nor HttpsClient from mender.conf.
  std::vector<std::string> command{"install", url};
  if (const auto ca = env_or("OTARIG_CA"); !ca.empty() && url.rfind("https:", 0) == 0)
    command.insert(command.begin(), {"--trusted-certs", ca});
  const auto r = run(command, booted, running);
  if (r.status == 0 && !r.timed_out) return std::nullopt;
  if (r.timed_out) return fmt::format("mender did not finish within {} ms", timeout_ms_);
  if (auto cause = first_cause(r.errors); !cause.empty()) return cause;
  return fmt::format("mender install exited with status {}", r.status);
}

// The first error that names a check (a checksum, the signature, the device
// type, a state script); else the first error.
std::string MenderClient::first_cause(const std::vector<std::string>& errors) const {
  for (const char* cause : {"checksum", "signature", "verification", "device type", "script failed", "Artifact name"})
    for (const auto& e : errors)
      if (e.find(cause) != std::string::npos) return e;
  for (const auto& e : errors)
    if (e.find("could not get the current Artifact name") == std::string::npos && e != "DBus not enabled") return e;
  return {};
}

MenderClient::DaemonResult MenderClient::daemon(int booted, const cl::SlotImage& running) {
  DaemonResult result;
  bool decided = false;
  bool reported = false;
  std::string auth_error;
  auto stop = [&](const std::string&, const std::string& msg) {
    // Mender logs this, then runs `reboot` (which on this device never
    // returns): the device reboots here.
    if (msg.find("Attempting to upgrade to currently installed artifact name") != std::string::npos)
      result.already_installed = true;
    if (msg.rfind("Mender rebooting from", 0) == 0) {
      result.end = DaemonEnd::reboot;
      result.rollback = msg.rfind("Mender rebooting from inactive partition", 0) == 0;
      return decided = true;
    }
    // The server refused the device (401), or the device the server's
    // certificate: Mender would ask again and again.
    if (msg.rfind("Failed to authorize with", 0) == 0 &&
        (msg.find("authentication request rejected") != std::string::npos ||
         msg.find("certificate") != std::string::npos)) {
      result.end = DaemonEnd::auth_refused;
      auth_error = msg;
      return decided = true;
    }
    constexpr std::string_view kTransition = "State transition: ";
    if (msg.rfind(kTransition, 0) != 0) return false;
    const auto text = msg.substr(kTransition.size());
    const auto from = text.substr(0, text.find(' '));
    const auto arrow = text.find("-> ");
    const auto to = arrow == std::string::npos ? std::string() : text.substr(arrow + 3, text.find(' ', arrow + 3) - arrow - 3);
    // Reported and idle: stopped once it leaves idle, which it enters only
    // after removing the deployment's state from its database (killed
    // before, it reports the deployment again at its next start).
    if (reported && from == "idle") {
      result.end = DaemonEnd::reported;
      return decided = true;
    }
    if (to == "idle" && (from == "update-status-report" || from == "update-retry-report" ||
                         from == "status-report-error"))
      reported = true;
    if (from == "update-check" && to == "check-wait") {
      result.end = DaemonEnd::no_deployment;
      return decided = true;
    }
    if (to == "authorize-wait") {
      result.end = DaemonEnd::auth_refused;
      return decided = true;
    }
    return false;
  };
  const auto r = run({"daemon"}, booted, running, {}, stop);
  if (!decided) result.end = reported ? DaemonEnd::reported : r.timed_out ? DaemonEnd::timed_out : DaemonEnd::exited;
  result.error = auth_error.empty() ? first_cause(r.errors) : auth_error;
  return result;
}

bool MenderClient::pending() const { return std::filesystem::exists(layout_.dir / "mender-pending"); }

void MenderClient::set_pending(bool on) {
  const auto marker = layout_.dir / "mender-pending";
  if (on) {
    cl::write_text_atomically(marker, "a deployment is in progress\n");
  } else {
    std::error_code ignored;
    std::filesystem::remove(marker, ignored);
    sync_path(layout_.dir);
  }
}

bool MenderClient::commit(int booted, const cl::SlotImage& running) {
  const auto r = run({"commit"}, booted, running);
  if (r.status == 0) {
    say(fmt::format("app: committed slot {}", cl::slot_name(booted)));
    return true;
  }
  say(fmt::format("app: mender commit failed (status {}): slot {} stays a trial", r.status, cl::slot_name(booted)));
  return false;
}

void MenderClient::rollback(int booted, const cl::SlotImage& running) {
  const auto r = run({"rollback"}, booted, running);
  if (r.status != 0) say(fmt::format("app: mender rollback failed (status {})", r.status));
}

}  // namespace otarig::clientboard
