// otarig-clientboard: a device whose OTA client is real software no one here
// wrote — SWUpdate, RAUC or Mender — run as a process board (docs/ota-clients.md,
// docs/process-boards.md). The program plays the device around the client:
//
//   power on  = this process starts: the boot ROM picks a slot from the boot
//               state (U-Boot environment / RAUC backend state), the
//               application runs its self-test, confirms or resets
//   console   = stdin/stdout: `status`, `update URL`
//   update    = the real client in a private mount namespace, in this
//               process group (a power cut kills it mid-install); on success
//               the device reboots in process (the boot ROM again)
//   power off = SIGKILL to the group: the slot files, the environment and the
//               state file keep what had reached them
//
// Internal subcommands: `rauc-backend` (RAUC's custom bootloader backend
// over the state file), `rauc-session` (rauc service + rauc install on the
// private session bus that dbus-run-session made), `rauc-preinstall` (the
// device's downgrade check as a RAUC pre-install handler).
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../vboard/download.hpp"
#include "common.hpp"
#include "mender.hpp"
#include "suricatta.hpp"
#include "otarig/drivers/clients/device.hpp"
#include "otarig/drivers/clients/package.hpp"
#include "otarig/drivers/clients/tools.hpp"
#include "otarig/core/errors.hpp"
#include "otarig/drivers/process/device_console.hpp"

namespace {

namespace cl = otarig::drivers::clients;
using namespace otarig::clientboard;

enum class Client { swupdate, rauc, mender };

struct Options {
  std::string client = "swupdate";
  std::string storage;
  std::string dir;  // slots and boot state (default: storage)
  std::string ca;   // the package CA ($OTARIG_PACKAGE_CA)
  std::string aes_key;  // swupdate: the AES key file for encrypted images (-K)
  std::string hardware = "otarig:1.0";
  std::string compatible = "otarig-board";
  bool no_downgrade_check = false;
  bool halt_when_exhausted = false;
  bool mender_managed = false;        // mender: `mender daemon` against the rig's server (managed mode)
  std::string mender_server;          // its ServerURL (default $OTARIG_UPDATE_URL)
  std::string mender_device_key;      // the device's key (default $OTARIG_DEVICE_KEY)
  bool mender_own_key = false;        // Mender makes a key of its own (a device the server does not know)
  bool mender_fallback_keeps_upgrade = false;  // flawed: altbootcmd leaves upgrade_available=1
  bool swupdate_suricatta = false;     // swupdate: suricatta (hawkBit mode) against the rig's DDI server
  bool suricatta_no_token = false;     // suricatta: send no target token (a device the server does not know)
  bool mender_unsynced_store = false;  // mender: Mender creates its database in place (flawed)  // rauc: bootchooser without reset_attempts (flawed)
  std::uint32_t bootlimit = 3;
  unsigned client_timeout_ms = 120000;
  unsigned download_timeout_ms = 60000;
  unsigned step_timeout_ms = 10000;
  std::uint64_t progress_every = 65536;
};

class Device {
 public:
  explicit Device(const Options& o)
      : o_(o),
        client_(o.client == "rauc" ? Client::rauc : o.client == "mender" ? Client::mender : Client::swupdate),
        layout_{std::filesystem::absolute(o.dir.empty() ? o.storage : o.dir)},
        mender_(layout_, package_ca(), o.client_timeout_ms, !o.mender_unsynced_store) {
    if (o.mender_managed) {
      auto key = o.mender_own_key ? std::string() : o.mender_device_key.empty() ? env_or("OTARIG_DEVICE_KEY") : o.mender_device_key;
      if (!key.empty()) key = std::filesystem::absolute(key).string();
      auto ca = env_or("OTARIG_CA");
      if (!ca.empty()) ca = std::filesystem::absolute(ca).string();
      auto absolute = [](std::string path) {
        return path.empty() ? path : std::filesystem::absolute(path).string();
      };
      mender_.set_managed({o.mender_server.empty() ? env_or("OTARIG_UPDATE_URL") : o.mender_server, key, ca,
                           absolute(env_or("OTARIG_CLIENT_CERT")), absolute(env_or("OTARIG_CLIENT_KEY"))});
    }
    if (client_ == Client::swupdate && o.swupdate_suricatta) {
      auto absolute = [](std::string path) {
        return path.empty() ? path : std::filesystem::absolute(path).string();
      };
      suricatta_.emplace(layout_, SuricattaClient::Settings{
                                      o.hardware, package_ca(), !o.no_downgrade_check, o.client_timeout_ms,
                                      env_or("OTARIG_UPDATE_URL"), env_or("OTARIG_DDI_TENANT", "DEFAULT"),
                                      env_or("OTARIG_DDI_CONTROLLER_ID", "otarig-device"),
                                      o.suricatta_no_token ? std::string() : absolute(env_or("OTARIG_TARGET_TOKEN")),
                                      absolute(env_or("OTARIG_CA")), absolute(env_or("OTARIG_CLIENT_CERT")),
                                      absolute(env_or("OTARIG_CLIENT_KEY")), absolute(o.aes_key)});
    }
  }

  void power_on() {
    banner();
    boot();
  }

  void line(std::string text) {
    text = trim(std::move(text));
    if (!booted_.running) return;  // nothing runs: a bricked board is silent
    if (text.empty()) return;
    if (text == "status") {
      status();
    } else if (text.rfind("update ", 0) == 0) {
      update(trim(text.substr(7)));
    } else {
      say(fmt::format("unknown command '{}' (try: status, update URL [SIZE])", text));
    }
  }

 private:
  void banner() const {
    say(fmt::format("otarig-clientboard boot ROM ({}, {})", o_.client,
                    client_ == Client::swupdate ? "U-Boot environment"
                    : client_ == Client::mender ? "U-Boot environment, Mender integration"
                                                : "RAUC custom backend"));
  }

  cl::Bootloader bootloader() const {
    return client_ == Client::swupdate ? cl::Bootloader::uboot_env
           : client_ == Client::mender ? cl::Bootloader::mender_uboot
                                       : cl::Bootloader::rauc_custom;
  }

  void boot() {
    // Mender's integration: the application commits a trial boot whose
    // self-test passed (`mender commit`) and rolls back one that failed.
    const cl::TrialHook on_trial = [this](int slot, const cl::SlotImage& image, bool passed) {
      if (passed) return mender_.commit(slot, image);
      mender_.rollback(slot, image);
      return false;
    };
    // Managed mode: the daemon commits (or rolls back) after the boot, by
    // itself; a trial boot whose self-test failed resets (U-Boot's
    // bootcount then falls back), as a device whose application never came
    // up would.
    const cl::TrialHook managed_trial = [](int, const cl::SlotImage&, bool) { return false; };
    const bool managed = client_ == Client::mender && mender_.managed();
    for (int reboots = 0;; ++reboots) {
      booted_ = cl::boot(layout_, bootloader(), o_.bootlimit, [](const std::string& l) { say(l); },
                         o_.halt_when_exhausted ? cl::WhenExhausted::halt : cl::WhenExhausted::reset_attempts,
                         client_ != Client::mender ? cl::TrialHook{} : managed ? managed_trial : on_trial,
                         o_.mender_fallback_keeps_upgrade);
      if (!managed || !booted_.running || !mender_.pending() || reboots >= 8) break;
      // The daemon starts at boot and carries on with the deployment.
      say("app: a deployment is in progress: starting mender daemon");
      const auto r = mender_.daemon(booted_.slot, booted_.image);
      if (r.end == MenderClient::DaemonEnd::reboot) {
        say("app: Mender asked for a reboot; rebooting");
        say("");
        banner();
        continue;
      }
      if (r.end == MenderClient::DaemonEnd::reported || r.end == MenderClient::DaemonEnd::no_deployment)
        mender_.set_pending(false);
      const auto env = cl::ubootenv::read(layout_);
      if (booted_.state == "trial" && env && env->count("upgrade_available") && env->at("upgrade_available") == "0") {
        booted_.state = "confirmed";
        say(fmt::format("app: Mender committed slot {}", cl::slot_name(booted_.slot)));
      }
      break;
    }
    // SWUpdate's suricatta reports the outcome its state in the environment
    // holds when it starts, as a device's does at boot.
    if (suricatta_ && booted_.running) suricatta_->report_at_boot(booted_.image);
    if (booted_.running) status();
  }

  // Managed mode: the rig published a deployment on its server; the daemon
  // finds it, installs it and asks for a reboot, or reports why not.
  std::optional<std::string> managed_update() {
    mender_.set_pending(true);
    const auto r = mender_.daemon(booted_.slot, booted_.image);
    using End = MenderClient::DaemonEnd;
    if (r.end == End::reboot && r.rollback) {
      // Refused after ArtifactInstall began (a state script, the downgrade
      // check): Mender rolls back and reboots, then reports the failure
      // from the old slot (the boot below runs the daemon to its report).
      say("app: Mender rolled the update back; rebooting");
      say("");
      banner();
      boot();
      return r.error.empty() ? std::string("Mender rolled the deployment back") : r.error;
    }
    if (r.end == End::reboot) return std::nullopt;
    if (r.end == End::reported || r.end == End::no_deployment) mender_.set_pending(false);
    if (r.end == End::reported && r.already_installed) {
      already_running_ = true;
      return std::nullopt;
    }
    switch (r.end) {
      case End::reported: return r.error.empty() ? "Mender reported the deployment without installing it" : r.error;
      case End::no_deployment: return std::string("the server offers this device no deployment");
      case End::auth_refused:
        return "authentication with the server failed" + (r.error.empty() ? std::string() : ": " + r.error);
      case End::timed_out: return fmt::format("mender daemon did not finish within {} ms", o_.client_timeout_ms);
      default: return "mender daemon exited" + (r.error.empty() ? std::string() : ": " + r.error);
    }
  }

  void status() {
    const auto& i = booted_.image;
    say(fmt::format("STATUS slot={} version={} digest={} counter={} state={} health={}", cl::slot_name(booted_.slot),
                    i.version, i.digest, i.security_counter, booted_.state, booted_.healthy ? "ok" : "failed"));
  }

  std::string package_ca() const {
    auto ca = o_.ca.empty() ? env_or("OTARIG_PACKAGE_CA") : o_.ca;
    return ca.empty() ? ca : std::filesystem::absolute(ca).string();
  }

  // `update URL [SIZE]`: SIZE, when given, is the size the update's metadata
  // names; the board's own fetch (RAUC) stops there when the server does not
  // say the length.
  void update(const std::string& args) {
    const auto space = args.find(' ');
    const std::string url = args.substr(0, space);
    std::optional<std::uint64_t> size;
    if (space != std::string::npos) {
      const auto text = trim(args.substr(space + 1));
      std::uint64_t n = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
      if (ec != std::errc() || end != text.data() + text.size() || text.empty()) {
        say(fmt::format("ota: refused: bad size '{}' (usage: update URL [SIZE])", text));
        return;
      }
      size = n;
    }
    if (url.empty()) {
      say("ota: refused: no URL (usage: update URL [SIZE])");
      return;
    }
    const auto ca = package_ca();
    if (ca.empty() || !std::filesystem::exists(ca)) {
      say("ota: refused: no package CA to verify updates with (--ca or $OTARIG_PACKAGE_CA)");
      return;
    }
    const int target = 1 - booted_.slot;
    std::optional<std::string> refused;
    try {
      refused = client_ == Client::swupdate ? (suricatta_ ? suricatta_->update(booted_.slot, booted_.image)
                                                          : run_swupdate(url, ca))
                : client_ == Client::mender   ? (mender_.managed() ? managed_update()
                                                                      : mender_.install(url, booted_.slot, booted_.image))
                                              : run_rauc(url, ca, size);
    } catch (const std::exception& e) {
      refused = std::string("the client could not run: ") + e.what();
    }
    if (refused) {
      say("ota: refused: " + *refused);
      return;
    }
    if (std::exchange(already_running_, false)) {
      // Managed Mender: the deployment names the running artifact; nothing
      // was installed, the device stays up.
      say(fmt::format("ota: already running slot {} (Mender reported already-installed)", cl::slot_name(booted_.slot)));
      status();
      return;
    }
    say(fmt::format("ota: staged slot {}, rebooting", cl::slot_name(target)));
    say("");
    banner();
    boot();
  }

  // SWUpdate downloads the .swu itself (-d), checks the CMS signature over
  // sw-description against the CA (-k), the hardware revision (-H), the
  // version (-N: the running version, unless the board lacks the check) and
  // every image's sha256 while it streams into the target slot, then sets
  // the U-Boot environment. nullopt: installed; else why it refused.
  std::optional<std::string> run_swupdate(const std::string& url, const std::string& ca) {
    const int target = 1 - booted_.slot;
    const auto ns = swupdate_namespace(layout_, o_.hardware, booted_.image.client_version);
    std::vector<std::string> argv{"swupdate", "-v", "-B", "uboot", "-H", o_.hardware, "-k", ca};
    if (!o_.no_downgrade_check) {
      argv.push_back("-N");
      argv.push_back(booted_.image.client_version);
    }
    if (!o_.aes_key.empty()) {
      argv.push_back("-K");
      argv.push_back(o_.aes_key);
    }
    argv.push_back("-e");
    argv.push_back(std::string("stable,copy") + cl::slot_name(target));
    argv.push_back("-d");
    argv.push_back(fmt::format("-u {} -r 1 -t 5", url));
    say("ota: swupdate " + command_line(argv));
    Child child(argv, [&] { return enter_device_namespace(ns.etc, ns.links); });
    const auto deadline = Clock::now() + std::chrono::milliseconds(o_.client_timeout_ms);
    std::vector<std::string> errors;
    bool success = false;
    while (auto l = child.line(deadline)) {
      const auto& text = *l;
      if (text.find("[TRACE]") != std::string::npos || text.find("[DEBUG]") != std::string::npos ||
          text.find("print_registered_handlers") != std::string::npos || trim(text).empty() ||
          text.find("Licensed under GPLv2") != std::string::npos || text.find("mtd") != std::string::npos ||
          text.find("MTD") != std::string::npos)
        continue;
      say("swupdate: " + text);
      if (text.find("[ERROR]") != std::string::npos) errors.push_back(text);
      if (text.find("SWUPDATE successful") != std::string::npos) {
        // The update is in the slot and the environment: the device reboots,
        // which ends the client.
        success = true;
        child.signal(SIGTERM);
        break;
      }
    }
    const bool timed_out = child.timed_out();
    const int status = child.wait(std::chrono::seconds(3));
    if (success) return std::nullopt;
    if (timed_out) return fmt::format("swupdate did not finish within {} ms", o_.client_timeout_ms);
    if (auto reason = swupdate_reason(errors)) return reason;
    return fmt::format("swupdate exited with status {} without installing", status);
  }

  void write_rauc_config(const std::string& ca) {
    const auto rauc_dir = layout_.dir / "rauc";
    std::filesystem::create_directories(rauc_dir);
    std::filesystem::create_directories(layout_.dir / "rauc-data");
    const auto self = self_exe();
    const auto common = fmt::format("--storage {} --bootlimit {}", shell_quote(layout_.dir.string()), o_.bootlimit);
    auto script = [&](const std::string& name, const std::string& sub) {
      const auto file = rauc_dir / name;
      cl::write_text_atomically(file, fmt::format("#!/bin/sh\n# otarig: RAUC {} for this device\nexec {} {} {} \"$@\"\n",
                                                  name, shell_quote(self), sub, common));
      std::filesystem::permissions(file, std::filesystem::perms::owner_all | std::filesystem::perms::group_read |
                                             std::filesystem::perms::group_exec);
    };
    script("backend", "rauc-backend");
    script("pre-install", "rauc-preinstall");
    std::string handlers = fmt::format("bootloader-custom-backend={}\n", (rauc_dir / "backend").string());
    if (!o_.no_downgrade_check) handlers += fmt::format("pre-install={}\n", (rauc_dir / "pre-install").string());
    const auto conf = fmt::format(
        "# otarig: RAUC system configuration of this device (written at every power-on)\n"
        "[system]\ncompatible={}\nbootloader=custom\nmountprefix=/run/otarig/mnt\ndata-directory={}\n\n"
        "[handlers]\n{}\n"
        "[keyring]\npath={}\n\n"
        "[slot.{}.0]\ndevice={}\ntype=raw\nbootname=A\n\n"
        "[slot.{}.1]\ndevice={}\ntype=raw\nbootname=B\n",
        o_.compatible, (layout_.dir / "rauc-data").string(), handlers, ca, cl::kRaucSlotClass,
        std::filesystem::absolute(layout_.slot(0)).string(), cl::kRaucSlotClass,
        std::filesystem::absolute(layout_.slot(1)).string());
    cl::write_text_atomically(rauc_dir / "system.conf", conf);
  }

  // RAUC: the device downloads the bundle, then `rauc install` asks `rauc
  // service` (on a private session bus, in a private mount namespace) to
  // verify and install it; the service drives the backend.
  std::optional<std::string> run_rauc(const std::string& url, const std::string& ca,
                                      std::optional<std::uint64_t> size) {
    write_rauc_config(ca);
    // The bundle lives where a device keeps a download it can lose: on the
    // tmpfs of the client's mount namespace (/run), never in the storage.
    // RAUC refuses a bundle on a file system it cannot trust (FUSE), and a
    // power cut loses it as it loses a RAM disk.
    const std::string bundle = "/run/otarig/tmp/update.raucb";
    say("ota: downloading " + url);
    otarig::vboard_tool::DownloadOptions d;
    d.ca_file = env_or("OTARIG_CA");
    d.client_cert_file = env_or("OTARIG_CLIENT_CERT");
    d.client_key_file = env_or("OTARIG_CLIENT_KEY");
    d.step_timeout = std::chrono::milliseconds(o_.step_timeout_ms);
    d.total_timeout = std::chrono::milliseconds(o_.download_timeout_ms);
    d.max_bytes = std::uint64_t{1} << 30;
    d.expected_size = size;
    std::uint64_t received = 0, reported = 0;
    d.on_chunk = [&](std::span<const std::uint8_t> chunk) {
      received += chunk.size();
      if (o_.progress_every > 0 && received - reported >= o_.progress_every) {
        reported = received;
        say(fmt::format("ota: received {} bytes", received));
      }
    };
    std::vector<std::uint8_t> bytes;
    try {
      bytes = otarig::vboard_tool::download(url, d);
    } catch (const otarig::vboard_tool::DownloadError& e) {
      return fmt::format("download failed: {}", e.what());
    }
    if (received != reported) say(fmt::format("ota: received {} bytes", received));

    std::vector<std::string> argv{"dbus-run-session", "--",          self_exe(),
                                  "rauc-session",     "--storage",   layout_.dir.string(),
                                  "--bootlimit",      std::to_string(o_.bootlimit),
                                  "--booted",         std::string(1, cl::slot_name(booted_.slot)),
                                  "--bundle",         bundle};
    Child child(argv, [&] {
      ::setenv("DBUS_STARTER_BUS_TYPE", "session", 1);
      auto error = enter_device_namespace({}, {}, bytes.size());
      return error.empty() ? write_whole_file(bundle.c_str(), bytes) : error;
    });
    const auto deadline = Clock::now() + std::chrono::milliseconds(o_.client_timeout_ms);
    std::string last_error;
    bool success = false;
    while (auto l = child.line(deadline)) {
      const auto text = trim(*l);
      if (text.empty()) continue;
      say("rauc: " + text);
      if (text.rfind("LastError: ", 0) == 0) last_error = text.substr(11);
      if (text.find("` succeeded") != std::string::npos && text.rfind("Installing `", 0) == 0) success = true;
    }
    const bool timed_out = child.timed_out();
    const int status = child.wait(std::chrono::seconds(3));
    if (success && status == 0) return std::nullopt;
    if (timed_out) return fmt::format("rauc did not finish within {} ms", o_.client_timeout_ms);
    if (!last_error.empty()) return last_error;
    return fmt::format("rauc install exited with status {}", status);
  }

  const Options& o_;
  Client client_;
  cl::SlotLayout layout_;
  MenderClient mender_;
  std::optional<SuricattaClient> suricatta_;
  cl::BootResult booted_;
  bool already_running_ = false;
};

// What the board needs before it can play the device; empty when all is there.
// A board that lacks them stops at power-on (exit status 3) instead of
// refusing every update: a missing tool is the bench's failure, not the device's.
std::string missing_requirements(const Options& o) {
  std::vector<std::string> tools{"fw_printenv", "fw_setenv"};
  if (o.client == "swupdate")
    tools.push_back("swupdate");
  else if (o.client == "mender")
    tools.push_back("mender");
  else
    tools = {"rauc", "dbus-run-session"};
  std::string missing;
  for (const auto& t : tools)
    if (cl::find_tool(t).empty()) missing += (missing.empty() ? "" : ", ") + t;
  if (!missing.empty()) return "not installed: " + missing + " (ci/setup with OTARIG_SETUP_EXTRA=clients)";
  // A private mount namespace (root, or CAP_SYS_ADMIN).
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(::unshare(CLONE_NEWNS) == 0 ? 0 : 1);
  int st = 0;
  if (pid < 0 || ::waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
    return "cannot make a private mount namespace (unshare(CLONE_NEWNS) needs root or CAP_SYS_ADMIN)";
  return {};
}

int run_device(const Options& o) {
  if (auto problem = missing_requirements(o); !problem.empty()) {
    std::cerr << "otarig-clientboard: " << problem << "\n";
    return 3;
  }
  // Orphans of the client's helpers come to us, not to init: we reap them.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  Device device(o);
  device.power_on();
  otarig::drivers::process::serve_console([&](std::string line) { device.line(std::move(line)); },
                                          [] {
                                            while (::waitpid(-1, nullptr, WNOHANG) > 0) {
                                            }
                                          });
  return 0;
}

// Inside dbus-run-session: rauc service, then rauc install, on this bus.
int run_rauc_session(const std::string& storage, const std::string& booted, const std::string& bundle) {
  const auto conf = (std::filesystem::path(storage) / "rauc" / "system.conf").string();
  ::setenv("DBUS_STARTER_BUS_TYPE", "session", 1);
  std::cout.setf(std::ios::unitbuf);
  Child service({"rauc", "service", "--conf=" + conf, "--override-boot-slot=" + booted}, nullptr);
  // The service is up once `rauc status` gets an answer from it.
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  bool up = false;
  while (Clock::now() < deadline) {
    auto r = cl::run_tool({"rauc", "status", "--conf=" + conf}, std::chrono::seconds(5));
    if (r.ok()) {
      up = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  int status = 1;
  if (!up) {
    std::cout << "LastError: rauc service did not come up on the session bus\n";
  } else {
    Child install({"rauc", "install", bundle}, nullptr);
    while (auto l = install.line(Clock::now() + std::chrono::minutes(10))) std::cout << *l << "\n";
    status = install.wait();
  }
  service.signal(SIGTERM);
  while (auto l = service.line(Clock::now() + std::chrono::seconds(3))) std::cout << "service: " << *l << "\n";
  service.wait(std::chrono::seconds(3));
  return status;
}

// RAUC pre-install handler: refuse a bundle whose version is older than the
// running one (RAUC itself has no such check).
int run_rauc_preinstall(const std::string& storage) {
  const char* mount = std::getenv("RAUC_BUNDLE_MOUNT_POINT");
  const char* current = std::getenv("RAUC_CURRENT_BOOTNAME");
  if (!mount || !current) {
    std::cerr << "otarig pre-install: RAUC_BUNDLE_MOUNT_POINT and RAUC_CURRENT_BOOTNAME are not set\n";
    return 1;
  }
  std::ifstream in(std::filesystem::path(mount) / "manifest.raucm");
  std::string line, version;
  bool in_update = false;
  while (std::getline(in, line)) {
    line = trim(line);
    if (!line.empty() && line.front() == '[') in_update = line == "[update]";
    if (in_update && line.rfind("version=", 0) == 0) version = line.substr(8);
  }
  cl::SlotLayout layout{storage};
  const int slot = cl::slot_index(current);
  if (slot < 0) {
    std::cerr << "otarig pre-install: unknown booted slot '" << current << "'\n";
    return 1;
  }
  const auto running = cl::inspect_slot(layout.slot(slot));
  auto parse = [](const std::string& v) {
    std::vector<unsigned long> parts;
    std::stringstream ss(v);
    std::string p;
    while (std::getline(ss, p, '.')) {
      try {
        parts.push_back(std::stoul(p));
      } catch (const std::exception&) {
        return std::vector<unsigned long>{};
      }
    }
    return parts;
  };
  const auto nv = parse(version), rv = parse(running.client_version);
  if (nv.empty()) {
    std::cerr << "otarig pre-install: the bundle's version '" << version << "' is not MAJOR.MINOR.PATCH.BUILD\n";
    return 1;
  }
  // As SWUpdate's -N: an older version is refused; the running one may be
  // installed again (a retry).
  if (running.parsed && nv < rv) {
    std::cerr << "otarig pre-install: no downgrading allowed: bundle version " << version << " < running "
              << running.client_version << "\n";
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  Options o;
  CLI::App app{"otarig-clientboard: a device whose OTA client is SWUpdate, RAUC or Mender (console on stdin/stdout)"};
  app.add_option("--client", o.client, "the OTA client: swupdate, rauc or mender")
      ->check(CLI::IsMember({"swupdate", "rauc", "mender"}))
      ->capture_default_str();
  app.add_option("--storage", o.storage, "the device's storage folder (default $OTARIG_STORAGE)");
  app.add_option("--dir", o.dir, "slots and boot state (default: the storage folder)");
  app.add_option("--ca", o.ca, "the CA that signs packages (default $OTARIG_PACKAGE_CA)");
  app.add_option("--hardware", o.hardware, "swupdate: board:revision (-H)")->capture_default_str();
  app.add_option("--aes-key", o.aes_key,
                 "swupdate: the AES key file (\"KEY IV\" in hex) SWUpdate decrypts encrypted images with (-K)")
      ->check(CLI::ExistingFile);
  app.add_option("--compatible", o.compatible, "rauc: the system's compatible")->capture_default_str();
  app.add_flag("--no-downgrade-check", o.no_downgrade_check,
               "flawed: install older versions (swupdate without -N; rauc without the pre-install check)");
  app.add_option("--bootlimit", o.bootlimit, "boot attempts of a new slot before falling back")
      ->capture_default_str();
  app.add_flag("--halt-when-exhausted", o.halt_when_exhausted,
               "flawed: rauc's boot ROM halts when no slot has boot attempts left, instead of giving every enabled "
               "slot its attempts back (bootchooser reset_attempts=all-zero); brown-outs brick the board");
  app.add_flag("--mender-unsynced-store", o.mender_unsynced_store,
               "flawed: Mender creates its database in place at its first run (LMDB writes the first pages without "
               "a barrier), instead of the board creating it whole before");
  app.add_flag("--mender-managed", o.mender_managed,
               "mender: managed mode: `update` runs `mender daemon` against the rig's server, which published the "
               "deployment; the daemon carries a deployment on across reboots");
  app.add_flag("--swupdate-suricatta", o.swupdate_suricatta,
               "swupdate: `update` runs suricatta, SWUpdate's daemon, in hawkBit mode against the rig's DDI server "
               "($OTARIG_UPDATE_URL, $OTARIG_DDI_TENANT, $OTARIG_DDI_CONTROLLER_ID, the target token "
               "$OTARIG_TARGET_TOKEN; over TLS $OTARIG_CA, and $OTARIG_CLIENT_CERT/KEY for mutual TLS), which "
               "published the deployment; every boot reports what SWUpdate's ustate holds");
  app.add_flag("--suricatta-no-token", o.suricatta_no_token,
               "suricatta: send no target token (a device the rig's server does not know)");
  app.add_option("--mender-server", o.mender_server, "mender managed: the server URL (default $OTARIG_UPDATE_URL)");
  app.add_option("--mender-device-key", o.mender_device_key,
                 "mender managed: the device's key (default $OTARIG_DEVICE_KEY)");
  app.add_flag("--mender-own-key", o.mender_own_key,
               "mender managed: Mender makes a device key of its own (a device the rig's server does not know)");
  app.add_flag("--mender-fallback-keeps-upgrade", o.mender_fallback_keeps_upgrade,
               "flawed: the boot ROM's altbootcmd switches mender_boot_part back but leaves upgrade_available=1, "
               "so Mender takes the old slot for the update, commits it and reports success");
  app.add_option("--client-timeout", o.client_timeout_ms, "deadline of one client run, ms")->capture_default_str();
  app.add_option("--download-timeout", o.download_timeout_ms, "rauc: deadline of a whole download, ms")
      ->capture_default_str();
  app.add_option("--step-timeout", o.step_timeout_ms, "rauc: deadline of each network step, ms")
      ->capture_default_str();

  std::vector<std::string> backend_args;
  auto* backend = app.add_subcommand("rauc-backend", "RAUC's custom bootloader backend (internal)");
  backend->add_option("args", backend_args, "get-primary | set-primary S | get-state S | set-state S good|bad");
  backend->allow_extras();
  std::string booted, bundle;
  auto* session = app.add_subcommand("rauc-session", "rauc service + rauc install on this bus (internal)");
  session->add_option("--booted", booted, "the booted slot")->required();
  session->add_option("--bundle", bundle, "the bundle file")->required();
  auto* preinstall = app.add_subcommand("rauc-preinstall", "RAUC pre-install handler: the downgrade check (internal)");
  preinstall->allow_extras();
  for (auto* sub : {backend, session, preinstall}) {
    sub->add_option("--storage", o.storage, "the device's storage folder");
    sub->add_option("--bootlimit", o.bootlimit, "boot attempts of a new slot");
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (!o.aes_key.empty() && o.client != "swupdate") {
    std::cerr << "otarig-clientboard: --aes-key is SWUpdate's -K key file; the " << o.client
              << " client takes no symmetric key\n";
    return 2;
  }
  if (o.storage.empty()) o.storage = env_or("OTARIG_STORAGE");
  if (o.storage.empty()) {
    std::cerr << "otarig-clientboard: no storage folder (--storage or $OTARIG_STORAGE)\n";
    return 2;
  }
  try {
    if (*backend) {
      std::string out;
      const int rc = cl::rauc_backend(cl::SlotLayout{o.storage}, o.bootlimit, backend_args, out);
      std::cout << out;
      return rc;
    }
    if (*session) return run_rauc_session(o.storage, booted, bundle);
    if (*preinstall) return run_rauc_preinstall(o.storage);
    return run_device(o);
  } catch (const otarig::InputError& e) {
    std::cerr << "otarig-clientboard: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "otarig-clientboard: " << e.what() << "\n";
    return 3;
  }
}
