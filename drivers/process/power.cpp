// Power kind `process`: power on starts the device program on a fresh pty,
// power off kills its process group.
#include <fmt/format.h>
#include <poll.h>
#include <unistd.h>

#include <cstdlib>
#include <set>
#include <system_error>

#include "otarig/core/errors.hpp"
#include "otarig/core/image.hpp"
#include "otarig/drivers/process/board.hpp"

extern char** environ;

#ifndef OTARIG_PROCESS_TOOL_DIRS
#define OTARIG_PROCESS_TOOL_DIRS ""
#endif

namespace otarig::drivers::process {
namespace {

void append_path_list(std::vector<std::filesystem::path>& out, std::string_view list) {
  while (!list.empty()) {
    auto colon = list.find(':');
    auto item = list.substr(0, colon);
    if (!item.empty()) out.emplace_back(std::string(item));
    if (colon == std::string_view::npos) break;
    list.remove_prefix(colon + 1);
  }
}

// Waits `d` of real time on a clock that is not manual, with a deadline (no
// sleep_for): poll() on nothing, rounding up so the wait is never shorter
// than asked. The device program runs in real time, so the wait is real.
void wait_real(const Clock& clock, std::chrono::milliseconds d) {
  const auto deadline = clock.now() + d;
  while (true) {
    const auto left = deadline - clock.now();
    if (left <= Clock::duration::zero()) return;
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    ::poll(nullptr, 0, static_cast<int>(std::min<std::int64_t>(ms, 1 << 30)));
  }
}

}  // namespace

std::optional<std::filesystem::path> libfaketime() {
  std::error_code ec;
  if (const char* env = std::getenv("OTARIG_LIBFAKETIME"); env && *env) {
    if (std::filesystem::is_regular_file(env, ec)) return std::filesystem::path(env);
    return std::nullopt;
  }
  for (const char* p : {"/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1"})
    if (std::filesystem::is_regular_file(p, ec)) return std::filesystem::path(p);
  return std::nullopt;
}

std::vector<std::pair<std::string, std::string>> faketime_env(const DeviceTime& time,
                                                               const std::filesystem::path& library,
                                                               const std::string& preload) {
  std::string spec;
  if (time.kind == DeviceTime::Kind::at) {
    // "@" starts the clock there and lets it run on.
    auto text = image::utc_text(static_cast<std::uint64_t>(std::max<std::int64_t>(0, time.seconds)));
    text[10] = ' ';
    text.pop_back();
    spec = "@" + text;
  } else {
    spec = fmt::format("{}{}s", time.seconds < 0 ? "" : "+", time.seconds);
  }
  return {{"LD_PRELOAD", preload.empty() ? library.string() : library.string() + ":" + preload},
          {"FAKETIME", spec},
          // Timeouts and deadlines run on the monotonic clock: only the wall clock is wrong.
          {"FAKETIME_DONT_FAKE_MONOTONIC", "1"},
          {"FAKETIME_DONT_RESET", "1"}};
}

void ProcessPower::set_device_time(const DeviceTime& time) {
  std::lock_guard lock(mu_);
  device_time_ = time;
}

std::vector<std::filesystem::path> tool_dirs() {
  std::vector<std::filesystem::path> dirs;
  if (const char* env = std::getenv("OTARIG_TOOL_PATH")) append_path_list(dirs, env);
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) dirs.push_back(self.parent_path());
  append_path_list(dirs, OTARIG_PROCESS_TOOL_DIRS);
  return dirs;
}

std::vector<std::string> split_command(std::string_view text) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  char quote = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quote) {
      if (c == quote)
        quote = 0;
      else if (c == '\\' && quote == '"' && i + 1 < text.size())
        word += text[++i];
      else
        word += c;
    } else if (c == '\'' || c == '"') {
      quote = c;
      in_word = true;
    } else if (c == '\\' && i + 1 < text.size()) {
      word += text[++i];
      in_word = true;
    } else if (c == ' ' || c == '\t' || c == '\n') {
      if (in_word) words.push_back(std::exchange(word, {}));
      in_word = false;
    } else {
      word += c;
      in_word = true;
    }
  }
  if (in_word) words.push_back(std::move(word));
  return words;
}

// ---------------------------------------------------------------------------- PtySession

std::optional<ExitStatus> PtySession::exited() {
  std::lock_guard lock(mu_);
  return process_.poll_exit();
}

ExitStatus PtySession::kill() {
  std::lock_guard lock(mu_);
  auto status = process_.kill();
  killed_ = true;
  return status;
}

// ---------------------------------------------------------------------------- PowerConfig

PowerConfig PowerConfig::from_config(const Config& power) {
  power.only_keys({"driver", "command", "cwd", "env", "inherit_env", "pty"});
  PowerConfig cfg;
  auto cmd = power.at("command");
  if (cmd.is_sequence())
    cfg.command = cmd.as_string_list();
  else
    cfg.command = split_command(cmd.as_string());
  if (cfg.command.empty() || cfg.command.front().empty()) cmd.fail("the command is empty");
  cfg.cwd = power.string_or("cwd", "${storage}");
  if (auto env = power.find("env")) {
    if (!env->is_map()) env->fail("env must be a map of NAME: value");
    for (const auto& [name, value] : env->entries()) {
      if (name.empty() || name.find('=') != std::string::npos)
        value.fail(fmt::format("bad environment variable name '{}'", name));
      cfg.env.emplace_back(name, value.as_string());
    }
  }
  cfg.inherit_env = power.bool_or("inherit_env", true);
  const auto pty = power.string_or("pty", "raw");
  if (pty != "raw" && pty != "cooked")
    power.at("pty").fail(fmt::format("pty must be raw or cooked, not '{}'", pty));
  cfg.raw = pty == "raw";
  return cfg;
}

// ---------------------------------------------------------------------------- ProcessPower

ProcessPower::ProcessPower(std::shared_ptr<ProcessDevice> device, PowerConfig config)
    : device_(std::move(device)), cfg_(std::move(config)), tool_dirs_(tool_dirs()) {}

ProcessPower::~ProcessPower() {
  std::unique_lock lock(mu_);
  try {
    off_locked(lock);
  } catch (...) {
    // The board is going: the storage's crash state does not matter any more.
  }
}

std::string ProcessPower::command_text() const {
  std::vector<std::string> argv;
  for (const auto& a : cfg_.command) argv.push_back(device_->expand(a));
  return otarig::command_text(argv);
}

std::string ProcessPower::program_text() const {
  if (cfg_.command.empty()) return {};
  const auto name = device_->expand(cfg_.command.front());
  auto program = find_program(name, device_->profile_dir(), tool_dirs_);
  return program ? program->string() : "not found (" + name + ")";
}

void ProcessPower::on() {
  std::unique_lock lock(mu_);
  if (on_) return;
  auto& dev = *device_;
  LaunchSpec spec;
  for (const auto& a : cfg_.command) spec.argv.push_back(dev.expand(a));
  spec.cwd = dev.expand(cfg_.cwd);
  if (!spec.cwd.empty() && spec.cwd.is_relative()) spec.cwd = dev.profile_dir() / spec.cwd;
  spec.raw = cfg_.raw;

  // Environment: the rig's (unless not inherited), then the rig's OTARIG_*
  // variables, then the profile's, later ones replacing earlier ones.
  std::vector<std::pair<std::string, std::string>> vars;
  if (cfg_.inherit_env) {
    for (char** e = environ; e && *e; ++e) {
      std::string_view kv(*e);
      auto eq = kv.find('=');
      if (eq == std::string_view::npos) continue;
      vars.emplace_back(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
    }
  }
  for (auto& kv : dev.environment()) vars.push_back(std::move(kv));
  for (const auto& [k, v] : cfg_.env) vars.emplace_back(k, dev.expand(v));
  if (device_time_.kind != DeviceTime::Kind::host) {
    const auto library = libfaketime();
    if (!library)
      throw BenchError(fmt::format("{}: power on: the device clock is to be set, but libfaketime is missing "
                                   "(install the libfaketime package, or name it in $OTARIG_LIBFAKETIME)",
                                   dev.board_name()));
    std::string preload;
    for (const auto& [k, v] : vars)
      if (k == "LD_PRELOAD") preload = v;
    for (auto& kv : faketime_env(device_time_, *library, preload)) vars.push_back(std::move(kv));
  }
  std::set<std::string> seen;
  for (auto it = vars.rbegin(); it != vars.rend(); ++it)
    if (seen.insert(it->first).second) spec.env.push_back(it->first + "=" + it->second);

  const auto text = otarig::command_text(spec.argv);
  auto program = find_program(spec.argv.front(), dev.profile_dir(), tool_dirs_);
  if (!program) {
    std::string searched;
    for (const auto& d : tool_dirs_) searched += d.string() + ", ";
    throw BenchError(fmt::format("{}: power on: cannot start '{}': {} not found (searched {}$PATH)",
                                 dev.board_name(), text, spec.argv.front(), searched));
  }
  // Under the crash model: a new epoch, the storage snapshotted first, and
  // the program joins the recording layer's mount namespace.
  spec.mount_namespace_fd = dev.storage_power_on();
  // ... and its sync(2)/syncfs(2) calls become barriers of the epoch.
  spec.watch_syncs = spec.mount_namespace_fd >= 0;
  try {
    auto proc = PtyProcess::start(*program, spec);
    try {
      dev.storage_device_started(proc);
    } catch (...) {
      proc.kill();
      dev.storage_power_off();
      throw;
    }
    session_ = std::make_shared<PtySession>(std::move(proc), ++power_ons_);
    recent_.push_back(session_);
    // Bounded: a board without a console reader must not pile up ptys.
    while (recent_.size() > 4) recent_.pop_front();
  } catch (const std::system_error& e) {
    dev.storage_power_off();
    throw BenchError(fmt::format("{}: power on: cannot start '{}': {}", dev.board_name(), text, e.what()));
  }
  on_ = true;
  changed_.notify_all();
}

void ProcessPower::off_locked(std::unique_lock<std::mutex>&) {
  if (!on_) return;
  if (session_) session_->kill();
  // The session object stays alive while the console still reads what the
  // device printed before it died.
  session_.reset();
  on_ = false;
  changed_.notify_all();
  // The program is reaped: what its storage keeps is the crash model's to say.
  device_->storage_power_off();
}

void ProcessPower::off() {
  std::unique_lock lock(mu_);
  off_locked(lock);
}

void ProcessPower::cut(std::string cause) {
  std::unique_lock lock(mu_);
  if (!on_) return;
  ++cuts_;
  last_cut_ = std::move(cause);
  off_locked(lock);
}

void ProcessPower::cycle(std::chrono::milliseconds off_time) {
  off();
  Clock& clock = device_->clock();
  if (clock.is_manual())
    clock.advance(off_time);
  else
    wait_real(clock, off_time);
  on();
}

bool ProcessPower::is_on() const {
  std::lock_guard lock(mu_);
  return on_;
}

std::shared_ptr<PtySession> ProcessPower::session() const {
  std::lock_guard lock(mu_);
  return session_;
}

std::shared_ptr<PtySession> ProcessPower::session_after(std::uint64_t number,
                                                        std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  std::shared_ptr<PtySession> found;
  changed_.wait_for(lock, timeout, [&] {
    for (const auto& s : recent_)
      if (s->number() > number) {
        found = s;
        return true;
      }
    return false;
  });
  return found;
}

std::optional<std::string> ProcessPower::device_exit() const {
  auto s = session();
  if (!s) return std::nullopt;
  if (auto st = s->exited()) return st->describe();
  return std::nullopt;
}

std::uint64_t ProcessPower::power_ons() const {
  std::lock_guard lock(mu_);
  return power_ons_;
}

std::uint64_t ProcessPower::cuts() const {
  std::lock_guard lock(mu_);
  return cuts_;
}

std::string ProcessPower::last_cut() const {
  std::lock_guard lock(mu_);
  return last_cut_;
}

}  // namespace otarig::drivers::process
