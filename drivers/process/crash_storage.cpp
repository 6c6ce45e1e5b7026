// A process board's storage under the crash model (docs/crash-model.md,
// docs/process-boards.md "Power loss"): the recording layer over the storage
// folder, an epoch and a snapshot per power-on, the crash model applied at
// every power-off, and recordings kept for sweeps (CrashStorageProtocol).
#include <fmt/format.h>
#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <system_error>

#include "temp_names.hpp"
#include "otarig/core/encryption.hpp"
#include "otarig/core/errors.hpp"
#include "otarig/drivers/process/board.hpp"
#include "otarig/drivers/storage/crash_model.hpp"
#include "otarig/drivers/storage/recorder.hpp"

namespace otarig::drivers::process {

namespace fs = std::filesystem;
using storage::CrashMode;
using storage::CrashModel;
using storage::CrashPoint;
using storage::OpLog;

namespace {

CrashMode mode_from(const std::string& name) {
  auto mode = storage::parse_crash_mode(name);
  if (!mode)
    throw InputError(fmt::format("unknown power-loss mode '{}' (known: lost, prefix, reorder, torn)", name));
  return *mode;
}

}  // namespace

struct ProcessDevice::Crash {
  /// One kept recording: an epoch's snapshot and its first `ops` operations.
  struct Recording {
    std::uint64_t epoch = 0;
    std::uint64_t ops = 0;
    fs::path snapshot;
    // Built on first use (the log outlives the model).
    std::unique_ptr<OpLog> log;
    std::unique_ptr<CrashModel> model;
  };

  fs::path dir;  ///< rig-private: log/ (the recorder's epochs), snapshots/
  std::unique_ptr<storage::Recorder> rec;  ///< set once started
  mutable std::mutex mu;
  CrashMode mode = CrashMode::lost;
  std::uint64_t seed = 0;
  bool in_epoch = false;
  std::uint64_t epoch = 0;           ///< the current (or last) epoch
  std::uint64_t last_epoch_ops = 0;  ///< its operations, once it ended
  nlohmann::json last = nullptr;
  /// Why the device's sync(2)/syncfs(2) are not recorded (the kernel refused
  /// the seccomp filter), empty while they are: every crash state says so.
  std::string sync_not_seen;
  std::map<std::string, std::unique_ptr<Recording>, std::less<>> recordings;

  fs::path snapshot_of(std::uint64_t e) const { return dir / "snapshots" / fmt::format("epoch-{}", e); }

  bool kept(std::uint64_t e) const {
    for (const auto& [key, r] : recordings)
      if (r->epoch == e) return true;
    return false;
  }

  /// Removes an epoch's snapshot and log files unless a recording keeps them.
  void forget(std::uint64_t e) {
    if (e == 0 || kept(e)) return;
    std::error_code ec;
    fs::remove_all(snapshot_of(e), ec);
    fs::remove(rec->entries_file(e), ec);
    fs::remove(rec->data_file(e), ec);
    fs::remove(rec->console_file(e), ec);
  }

  Recording& recording(std::string_view key) {
    auto it = recordings.find(key);
    if (it == recordings.end()) throw std::out_of_range(fmt::format("no recording '{}' was kept", key));
    auto& r = *it->second;
    if (!r.model) {
      r.log = std::make_unique<OpLog>(OpLog::load(rec->entries_file(r.epoch), rec->data_file(r.epoch), r.ops));
      r.model = std::make_unique<CrashModel>(r.snapshot, *r.log);
    }
    return r;
  }
};

bool ProcessDevice::storage_contains(std::span<const std::uint8_t> needle, std::string* where) const {
  if (needle.empty()) return true;
  std::error_code ec;
  std::vector<fs::path> files;
  for (fs::recursive_directory_iterator it(storage(), fs::directory_options::skip_permission_denied, ec), end;
       !ec && it != end; it.increment(ec))
    if (it->is_regular_file(ec) && !it->is_symlink(ec)) files.push_back(it->path());
  std::sort(files.begin(), files.end());  // the first place found is the same on every run
  std::vector<char> buf(64 * 1024);
  for (const auto& file : files) {
    std::ifstream in(file, std::ios::binary);
    encryption::StreamSearch search(encryption::Bytes(needle.begin(), needle.end()));
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      const auto n = static_cast<std::size_t>(in.gcount());
      if (n == 0) break;
      if (auto at = search.feed({reinterpret_cast<const std::uint8_t*>(buf.data()), n})) {
        if (where) *where = fmt::format("byte {} of {} in the device's storage", *at, fs::relative(file, storage()).string());
        return true;
      }
    }
  }
  return false;
}

ProcessDevice::ProcessDevice(DeviceConfig config, const BindContext& context)
    : DeviceHost(std::move(config), context) {
  if (this->config().power_loss != DeviceConfig::PowerLoss::crash) return;
  auto crash = std::make_unique<Crash>();
  // Rig-private, beside (never inside) the storage: the device must not see it.
  auto pattern = (fs::temp_directory_path() / ("otarig-" + safe_board_name(board_name()) + "-power-XXXXXX")).string();
  if (::mkdtemp(pattern.data()) == nullptr)
    throw BenchError(fmt::format("{}: cannot create the crash model's folder {}: {}", board_name(), pattern,
                                 std::generic_category().message(errno)));
  crash->dir = pattern;
  try {
    fs::create_directories(crash->dir / "log");
    fs::create_directories(crash->dir / "snapshots");
    storage::RecorderOptions options;
    options.log_dir = crash->dir / "log";
    crash->rec = std::make_unique<storage::Recorder>(storage::Recorder::start(storage(), storage(), options));
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove_all(crash->dir, ec);
    throw BenchError(fmt::format(
        "{}: power_loss crash: cannot mount the recording layer over the storage folder {}: {} (the crash model "
        "needs FUSE: root and /dev/fuse; or set power_loss: {{model: kill, reason: \"...\"}})",
        board_name(), storage().string(), e.what()));
  }
  crash_ = std::move(crash);
}

ProcessDevice::~ProcessDevice() {
  if (!crash_) return;
  crash_->recordings.clear();
  crash_->rec->stop();
  std::error_code ec;
  fs::remove_all(crash_->dir, ec);
}

pid_t ProcessDevice::recorder_pid() const { return crash_ ? crash_->rec->daemon_pid() : 0; }

int ProcessDevice::storage_power_on() {
  if (!crash_) return -1;
  auto& c = *crash_;
  std::lock_guard lock(c.mu);
  if (c.in_epoch) return c.rec->mount_namespace_fd();
  const auto previous = c.epoch;
  c.epoch = c.rec->begin_epoch();
  if (previous != c.epoch) c.forget(previous);
  try {
    std::error_code ec;
    fs::remove_all(c.snapshot_of(c.epoch), ec);
    storage::snapshot_folder(storage(), c.snapshot_of(c.epoch));
  } catch (const std::exception& e) {
    throw BenchError(fmt::format("{}: power on: cannot snapshot the storage folder {}: {}", board_name(),
                                 storage().string(), e.what()));
  }
  c.in_epoch = true;
  c.last_epoch_ops = 0;
  return c.rec->mount_namespace_fd();
}

void ProcessDevice::storage_device_started(PtyProcess& process) {
  if (!crash_) return;
  auto& c = *crash_;
  if (auto listener = process.take_sync_listener()) {
    try {
      c.rec->watch_syncs(listener.get());
    } catch (const std::exception& e) {
      throw BenchError(fmt::format("{}: power on: the device's sync(2) and syncfs(2) cannot be recorded: {}",
                                   board_name(), e.what()));
    }
    // The daemon holds its own copy now; this one closes here.
    return;
  }
  const int err = process.sync_filter_error();
  if (err == 0) return;
  std::lock_guard lock(c.mu);
  if (!c.sync_not_seen.empty()) return;
  c.sync_not_seen = fmt::format(
      "the seccomp filter that records sync(2) and syncfs(2) as barriers was refused ({}): a device that "
      "relies on sync alone is judged as if it had not synced",
      err == EINVAL || err == ENOSYS ? fmt::format("{}; seccomp user notification needs Linux 5.5",
                                                   std::strerror(err))
                                     : std::string(std::strerror(err)));
  std::fprintf(stderr, "%s: warning: %s\n", board_name().c_str(), c.sync_not_seen.c_str());
}

void ProcessDevice::storage_power_off() {
  if (!crash_) return;
  auto& c = *crash_;
  std::lock_guard lock(c.mu);
  if (!c.in_epoch) return;
  c.in_epoch = false;
  try {
    OpLog log = c.rec->take_log();
    c.last_epoch_ops = log.size();
    c.last = nullptr;
    if (log.empty()) return;
    CrashModel model(c.snapshot_of(c.epoch), log);
    const CrashPoint point{model.cut_points(), c.mode, c.seed};
    const auto plan = model.plan(point);
    // Nothing pending: the storage already is the durable state.
    if (plan.pending.empty()) return;
    c.last = model.materialize(point, storage());
    if (!c.sync_not_seen.empty()) c.last["sync_not_seen"] = c.sync_not_seen;
  } catch (const BenchError&) {
    throw;
  } catch (const std::exception& e) {
    throw BenchError(fmt::format("{}: power off: applying the crash model to the storage folder {}: {}",
                                 board_name(), storage().string(), e.what()));
  }
}

void ProcessDevice::set_power_loss(const std::string& mode, std::uint64_t seed) {
  const auto m = mode_from(mode);
  if (!crash_)
    throw InputError(fmt::format("{}: power_loss is '{}': the board has no crash model to set", board_name(),
                                 config().power_loss_text()));
  std::lock_guard lock(crash_->mu);
  crash_->mode = m;
  crash_->seed = seed;
}

nlohmann::json ProcessDevice::last_power_loss() const {
  if (!crash_) return nullptr;
  std::lock_guard lock(crash_->mu);
  return crash_->last;
}

std::uint64_t ProcessDevice::keep_recording(const std::string& key) {
  if (!crash_) throw BenchError(fmt::format("{}: the board records no storage (power_loss kill)", board_name()));
  auto& c = *crash_;
  std::lock_guard lock(c.mu);
  if (c.epoch == 0)
    throw BenchError(fmt::format("{}: keep_recording('{}'): the device has not been powered on", board_name(), key));
  auto r = std::make_unique<Crash::Recording>();
  r->epoch = c.epoch;
  r->ops = c.in_epoch ? c.rec->op_count() : c.last_epoch_ops;
  r->snapshot = c.snapshot_of(c.epoch);
  const auto ops = r->ops;
  std::uint64_t replaced = 0;
  if (auto it = c.recordings.find(key); it != c.recordings.end()) replaced = it->second->epoch;
  c.recordings[key] = std::move(r);
  if (replaced != 0 && replaced != c.epoch) c.forget(replaced);
  return ops;
}

nlohmann::json ProcessDevice::recorded_ops(const std::string& key) const {
  if (!crash_) throw std::out_of_range(fmt::format("no recording '{}' was kept", key));
  std::lock_guard lock(crash_->mu);
  auto& r = crash_->recording(key);
  auto out = nlohmann::json::array();
  for (const auto& op : r.log->ops()) out.push_back(storage::to_json(op));
  return out;
}

void ProcessDevice::mark_console() {
  if (!crash_) throw BenchError(fmt::format("{}: the board records no storage (power_loss kill)", board_name()));
  std::lock_guard lock(crash_->mu);
  if (!crash_->in_epoch) throw BenchError(fmt::format("{}: mark_console(): the device is off", board_name()));
  crash_->rec->mark_console();
}

nlohmann::json ProcessDevice::recorded_console(const std::string& key) const {
  if (!crash_) throw std::out_of_range(fmt::format("no recording '{}' was kept", key));
  std::lock_guard lock(crash_->mu);
  auto it = crash_->recordings.find(key);
  if (it == crash_->recordings.end()) throw std::out_of_range(fmt::format("no recording '{}' was kept", key));
  const auto& r = *it->second;
  auto out = nlohmann::json::array();
  // The daemon bounds the file (4 MiB an epoch); lines after the recording's
  // last operation that came later still say they came after it.
  std::ifstream in(crash_->rec->console_file(r.epoch), std::ios::binary);
  std::string record;
  bool marked = false;
  while (std::getline(in, record)) {
    if (record.size() < 3 || record[1] != ' ') continue;  // "T": the rest was not traced
    const auto space = record.find(' ', 2);
    std::uint64_t ops = 0;
    const auto digits = record.substr(2, space == std::string::npos ? std::string::npos : space - 2);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), ops);
    if (ec != std::errc() || end != digits.data() + digits.size()) continue;
    if (record[0] == 'M') {
      marked = true;
    } else if (record[0] == 'L' && marked) {
      out.push_back({{"line", space == std::string::npos ? std::string() : record.substr(space + 1)},
                     {"ops", std::min(ops, r.ops)}});
    }
  }
  return out;
}

nlohmann::json ProcessDevice::plan_crash(const std::string& key, std::uint64_t before_op, const std::string& mode,
                                         std::uint64_t seed) const {
  const auto m = mode_from(mode);
  if (!crash_) throw std::out_of_range(fmt::format("no recording '{}' was kept", key));
  std::lock_guard lock(crash_->mu);
  auto& r = crash_->recording(key);
  const auto plan = r.model->plan(CrashPoint{before_op, m, seed});
  auto out = r.model->describe(plan);
  auto ids = [](const std::vector<std::uint64_t>& v) { return nlohmann::json(v); };
  out["kept"] = ids(plan.kept);
  out["dropped"] = ids(plan.dropped);
  out["pending_ops"] = ids(plan.pending);
  return out;
}

nlohmann::json ProcessDevice::apply_crash(const std::string& key, std::uint64_t before_op, const std::string& mode,
                                          std::uint64_t seed) {
  const auto m = mode_from(mode);
  if (!crash_) throw std::out_of_range(fmt::format("no recording '{}' was kept", key));
  // The power lock is not taken under the storage lock (power-off takes them the other way round).
  if (auto p = power(); p && p->is_on())
    throw BenchError(fmt::format("{}: apply_crash('{}', {}): power the device off first", board_name(), key,
                                 before_op));
  std::lock_guard lock(crash_->mu);
  if (crash_->in_epoch)
    throw BenchError(fmt::format("{}: apply_crash('{}', {}): the device is on", board_name(), key, before_op));
  auto& r = crash_->recording(key);
  try {
    auto state = r.model->materialize(CrashPoint{before_op, m, seed}, storage());
    if (!crash_->sync_not_seen.empty()) state["sync_not_seen"] = crash_->sync_not_seen;
    return state;
  } catch (const std::invalid_argument&) {
    throw;
  } catch (const std::exception& e) {
    throw BenchError(fmt::format("{}: apply_crash('{}', {}): building the crash state in {}: {}", board_name(), key,
                                 before_op, storage().string(), e.what()));
  }
}

}  // namespace otarig::drivers::process
