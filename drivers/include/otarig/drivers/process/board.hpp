#pragma once
// Process boards (docs/process-boards.md): a device program run as its own
// process. Power on starts it on a fresh pty the rig owns, power off is
// SIGKILL to its process group; the pty is its console; updates reach it over
// real TCP from the rig's update server through the fault proxy.
//
// The drivers of one board share a DeviceHost (device_host.hpp): its storage
// folder, environment, update server and fault proxy, and provisioning. A
// process board's is a ProcessDevice; a lab board's (`kind: lab`) is a plain
// DeviceHost, and the console-command link drives its bench power and console
// through CountedPower and HeldConsole (link_sides.hpp).
//
//   device  kind process         ProcessDevice   storage, network, provisioning
//   device  kind lab             DeviceHost      storage, network, provisioning
//   power   driver process       ProcessPower    start / SIGKILL the program
//   console driver pty           PtyConsole      the current run's pty
//   link    driver console-command ConsoleCommandLink  serve image, type the command, watch
//
// Thread safety: power may be cut from a fault proxy thread while the
// harness thread reads the console or waits in deliver(); everything else is
// driven by one caller.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "otarig/core/clock.hpp"
#include "otarig/core/config.hpp"
#include "otarig/drivers/process/cut.hpp"
#include "otarig/drivers/process/device_host.hpp"
#include "otarig/drivers/process/link_sides.hpp"
#include "otarig/drivers/process/pty_process.hpp"
#include "otarig/drivers/protocols.hpp"
#include "otarig/drivers/registry.hpp"
#include "otarig/drivers/virtual/board.hpp"
#include "otarig/drivers/virtual/flash.hpp"

namespace re2 {
class RE2;
}

namespace otarig::drivers::process {

class ProcessPower;

/// The DeviceHost of a process board (`kind: process`): the program's
/// power driver is a ProcessPower, which its pty console follows.
///
/// Under the crash model (`device.power_loss: crash`, the default) it is
/// also the board's CrashStorageProtocol: a Recorder (docs/crash-model.md)
/// runs over the storage folder (backing = mount point) from the bind to the
/// board's end; each power-on begins an epoch and snapshots the storage
/// first (into a rig-private folder); each power-off applies the crash
/// model to the epoch's log (cut after everything the device did, with the
/// mode and seed of set_power_loss) and materializes the result into the
/// storage folder while the device is off. The rig itself (provisioning, TLS
/// material, `serve: file` images) writes the backing folder directly, so
/// what it writes while the device is off is outside any epoch.
///
/// Also the board's StorageScanProtocol: the rig searches the files of the
/// storage folder (what the device keeps, its slots and state) for a
/// decrypted payload left at rest (oracle `confidential`).
class ProcessDevice final : public DeviceHost, public CrashStorageProtocol, public drivers::StorageScanProtocol {
 public:
  /// Starts the recording layer when the profile keeps the crash model:
  /// BenchError naming the board, the mount point and the reason when the
  /// FUSE mount fails (no /dev/fuse, not root).
  ProcessDevice(DeviceConfig config, const BindContext& context);
  /// Stops the recorder (the mount goes with its namespace) and removes the
  /// rig-private folder of snapshots and logs.
  ~ProcessDevice() override;

  /// The power driver (also the switch provision() turns off).
  void attach_power(const std::shared_ptr<ProcessPower>& power);
  std::shared_ptr<ProcessPower> power() const { return process_power_.lock(); }

  /// The crash model is on (a Recorder runs over the storage).
  bool records_storage() const { return static_cast<bool>(crash_); }
  /// The layer's daemon pid (0 without one): for tests and evidence.
  pid_t recorder_pid() const;

  /// For ProcessPower::on(), before the program starts: begins an epoch and
  /// snapshots the storage; returns the mount namespace the program joins
  /// (-1 without the crash model).
  int storage_power_on();
  /// For ProcessPower::on(), once the program runs (started with
  /// LaunchSpec::watch_syncs under the crash model): hands the program's
  /// sync listener to the recorder, so its sync(2) and syncfs(2) become
  /// `sync` barriers of the epoch. A filter the kernel refused leaves the
  /// device's syncs unseen: said once on stderr and in every crash state's
  /// description (`sync_not_seen`). BenchError when the recorder does not
  /// take the listener.
  void storage_device_started(PtyProcess& process);
  /// For ProcessPower's power-off, once the program is reaped: applies the
  /// crash model to the epoch's operations (cut = ops + 1) in the storage.
  void storage_power_off();

  // StorageScanProtocol: every regular file under the storage folder, read
  // in pieces with a streaming search; `where` names the file and the byte.
  bool storage_contains(std::span<const std::uint8_t> needle, std::string* where) const override;

  // CrashStorageProtocol
  void set_power_loss(const std::string& mode, std::uint64_t seed) override;
  nlohmann::json last_power_loss() const override;
  std::uint64_t keep_recording(const std::string& key) override;
  nlohmann::json recorded_ops(const std::string& key) const override;
  void mark_console() override;
  nlohmann::json recorded_console(const std::string& key) const override;
  nlohmann::json plan_crash(const std::string& key, std::uint64_t before_op, const std::string& mode,
                            std::uint64_t seed) const override;
  nlohmann::json apply_crash(const std::string& key, std::uint64_t before_op, const std::string& mode,
                             std::uint64_t seed) override;

 private:
  struct Crash;
  std::weak_ptr<ProcessPower> process_power_;
  std::unique_ptr<Crash> crash_;
};

/// One power-on: the device process and its pty.
class PtySession {
 public:
  PtySession(PtyProcess process, std::uint64_t number) : process_(std::move(process)), number_(number) {}
  /// The pty master (non-blocking); open for the session's life.
  int master() const { return master_; }
  /// 1-based count of power-ons of this board.
  std::uint64_t number() const { return number_; }
  const std::string& tty() const { return tty_; }
  pid_t pid() const { return pid_; }
  /// How the device process ended, once it has (by itself or killed).
  std::optional<ExitStatus> exited();
  /// SIGKILL to the process group and reap.
  ExitStatus kill();
  /// kill() has run: whatever the device printed is in the pty now.
  bool killed() const { return killed_; }

 private:
  std::mutex mu_;
  std::atomic<bool> killed_{false};
  PtyProcess process_;
  std::uint64_t number_ = 0;
  int master_ = process_.master();
  std::string tty_ = process_.tty();
  pid_t pid_ = process_.pid();
};

/// The profile's `power` section for `driver: process`.
struct PowerConfig {
  std::vector<std::string> command;  ///< a list, or a string split into words (no shell)
  std::string cwd;                   ///< default: ${storage}
  std::vector<std::pair<std::string, std::string>> env;
  bool inherit_env = true;
  bool raw = true;  ///< `pty: raw` (default) or `cooked`
  static PowerConfig from_config(const Config& power);
};

/// Power kind `process`: on = start the command on a new pty, off = SIGKILL
/// to its process group and reap. is_on() reports the switch, as a relay
/// would: a program that exits by itself leaves the power on (a crashed
/// device) and shows as end of file on the console; the next off() reaps it.
/// libfaketime's preload library: $OTARIG_LIBFAKETIME, else Debian's
/// (package libfaketime); nullopt when neither exists.
std::optional<std::filesystem::path> libfaketime();

/// The environment libfaketime reads for `time` (LD_PRELOAD, FAKETIME,
/// FAKETIME_DONT_FAKE_MONOTONIC), before `preload` (the LD_PRELOAD already set).
std::vector<std::pair<std::string, std::string>> faketime_env(const DeviceTime& time,
                                                               const std::filesystem::path& library,
                                                               const std::string& preload);

class ProcessPower final : public CuttablePower, public DeviceClockProtocol {
 public:
  ProcessPower(std::shared_ptr<ProcessDevice> device, PowerConfig config);
  ~ProcessPower() override;

  /// BenchError naming the board and the command when it cannot be started.
  void on() override;
  void off() override;
  /// off, wait `off_time` (the clock's deadline, no sleep), on.
  void cycle(std::chrono::milliseconds off_time) override;
  bool is_on() const override;

  /// Power off from any thread (a cut), recording why.
  void cut(std::string cause) override;
  /// The running session; null while off.
  std::shared_ptr<PtySession> session() const;
  /// The oldest recent session numbered above `number` (the console reads
  /// them in order, so what a run printed before it was cut is not lost),
  /// waiting up to `timeout` for one to start. Null when none.
  std::shared_ptr<PtySession> session_after(std::uint64_t number, std::chrono::milliseconds timeout) const;
  /// Power-ons so far.
  std::uint64_t power_ons() const override;
  /// Power-offs by cut() so far, and the last cause.
  std::uint64_t cuts() const override;
  std::string last_cut() const override;
  /// The running program exited by itself: its exit status, described.
  std::optional<std::string> device_exit() const override;
  /// The command as it runs (expanded), for messages and evidence.
  std::string command_text() const;
  /// The program the command starts: its first word resolved as power-on
  /// resolves it (a path, or a bare name through the tool folders and
  /// $PATH); "not found (NAME)" when nothing matches yet.
  std::string program_text() const;
  ProcessDevice& device() const { return *device_; }

  /// DeviceClockProtocol: the program starts under libfaketime from the next
  /// power-on (BenchError then when libfaketime is missing).
  void set_device_time(const DeviceTime& time) override;

 private:
  void off_locked(std::unique_lock<std::mutex>& lock);
  DeviceTime device_time_;

  std::shared_ptr<ProcessDevice> device_;
  PowerConfig cfg_;
  std::vector<std::filesystem::path> tool_dirs_;
  mutable std::mutex mu_;
  mutable std::condition_variable changed_;
  std::shared_ptr<PtySession> session_;
  /// The last few sessions (the current one included), oldest first.
  std::deque<std::shared_ptr<PtySession>> recent_;
  bool on_ = false;
  std::uint64_t power_ons_ = 0;
  std::uint64_t cuts_ = 0;
  std::string last_cut_;
};

/// Console kind `pty`: the current run's pty. Reads follow the power driver
/// across power cycles (what the old run printed before it died is read
/// first); writes go to the device's stdin, and are dropped while off.
class PtyConsole final : public WatchedConsole, public StampedConsoleProtocol {
 public:
  /// With a clock, each line is stamped when its first byte is fetched from
  /// the pty (by read() or by a watcher's peek(), which the update link calls
  /// all through a delivery), so a transcript carries when lines came, not
  /// when the harness got round to reading them.
  explicit PtyConsole(std::shared_ptr<ProcessPower> power, Clock* clock = nullptr);

  void write(std::string_view bytes) override;
  /// What arrived since the last read (including what peek() saw), waiting
  /// at most `timeout` for the first byte.
  std::string read(std::chrono::milliseconds timeout) override;
  /// Like read(), for a watcher (the update link): returns only bytes no
  /// peek() returned before, and keeps them for the next read(), so the
  /// harness's transcript misses nothing.
  std::string peek(std::chrono::milliseconds timeout) override;
  /// The session read last ended: its device process closed the console.
  bool at_eof() const override;
  /// Lines fetched since the last call, stamped as they were fetched; a line
  /// a run's end cut short comes incomplete.
  ConsoleRecord take_record() override;

 private:
  std::string fetch(std::chrono::milliseconds timeout);
  void stamp(std::string_view bytes);
  void end_line(bool complete);

  Clock* clock_ = nullptr;
  std::vector<ConsoleEntry> entries_;
  std::optional<ConsoleEntry> line_;  ///< the line arriving
  std::size_t pending_bytes_ = 0;     ///< what entries_ costs (kConsolePendingMaxBytes)
  std::uint64_t dropped_lines_ = 0, dropped_bytes_ = 0;  ///< let go since the last take

  std::shared_ptr<ProcessPower> power_;
  mutable std::mutex mu_;
  std::shared_ptr<PtySession> reading_;
  std::uint64_t done_ = 0;  ///< the last session read to its end
  bool eof_ = false;
  std::optional<std::chrono::steady_clock::time_point> quiet_since_;
  std::string held_;
};

/// The profile's `link` section for `driver: console-command`.
struct LinkConfig {
  /// Written to the console; ${url} is where the image is, ${manifest_url},
  /// ${size} and ${sha256} describe it, ${feed_url} is the server's feed
  /// (/manifest.json), whose latest release is this delivery's manifest.
  std::string command = "update ${url}\n";
  /// RE2 patterns matched against each console line after the command.
  std::string accepted;  ///< the updater took the image and reboots
  std::string refused;   ///< it rejected it; group `reason` (else the line) is the detail
  std::string settled;   ///< optional: after `accepted`, the device is back up
  std::string progress;  ///< optional: group `bytes` counts image bytes received
  /// The update server's base URL as the device reaches it (a VM behind
  /// user-mode networking sees the host elsewhere, e.g.
  /// "http://10.0.2.2:${update_port}"; a lab board the rig's address on the
  /// bench network, "http://192.168.7.1:${update_port}").
  std::string base_url = "${update_url}";
  std::chrono::milliseconds timeout{60000};         ///< command to accepted/refused
  std::chrono::milliseconds settle_timeout{30000};  ///< accepted to settled
  /// Typed to make the device check the update server for new releases by
  /// itself from then on (UpdateCheckProtocol); the same variables as
  /// `command`, ${url} naming the image it runs. Empty: the device checks by
  /// itself only when `command` makes it (a management daemon it starts).
  std::string check_command;
  enum class Serve { http, file };
  /// http: the update server serves the image at a path per delivery;
  /// file: the image is written into the storage folder, ${url} = file:PATH.
  Serve serve = Serve::http;
  /// With ${feed_url} or ${manifest_url}: the connections the device opens
  /// for the manifest before the image's first. A scenario's `conn=N`
  /// network faults count the image download's connections from 1.
  unsigned feed_connections = 1;
  /// The command names ${feed_url} or ${manifest_url}: the device reads a manifest first.
  bool names_a_manifest() const;
  static LinkConfig from_config(const Config& link);
};

/// Link kind `console-command`: makes the image available, types the update
/// command on the console and watches the console for the outcome. Also the
/// board's CutProtocol and NetworkFaultProtocol. Works on any board with a
/// DeviceHost: a process board's ProcessPower and PtyConsole, or a lab
/// board's power and console drivers wrapped in CountedPower and HeldConsole.
class ConsoleCommandLink final : public UpdateLinkProtocol,
                                 public CutProtocol,
                                 public NetworkFaultProtocol,
                                 public ReleaseFeedProtocol,
                                 public DeviceReportsProtocol,
                                 public UpdateCheckProtocol {
 public:
  ConsoleCommandLink(std::shared_ptr<DeviceHost> device, std::shared_ptr<CuttablePower> power,
                     std::shared_ptr<WatchedConsole> console, LinkConfig config);
  ~ConsoleCommandLink() override;

  /// accepted / refused as the console says; power_lost when power went off
  /// during the delivery (an armed cut, or anyone's off()); unreachable when
  /// the device is off, its program exited, or it did not answer in time.
  DeliveryResult deliver(std::span<const std::uint8_t> image) override;
  /// With `serve: http`: the update server's URL as the device reaches it
  /// (link.base_url, through the fault proxy when there is one).
  std::string files_url() const override;
  bool publish_beside(std::vector<PublishedFile> files) override;

  void arm(const ProcessCut& cut) override;
  void disarm() override;
  std::optional<CutReport> fired() const override;

  void set_network_faults(const std::string& spec, std::uint64_t seed) override;
  void begin_network_trial() override;
  std::vector<std::string> take_network_events() override;
  void watch_plaintext(const std::vector<std::pair<std::string, std::vector<std::uint8_t>>>& watched) override;
  std::optional<PlaintextWatchReport> take_plaintext_watch() override;
  std::string tls_mode() const override;
  ProbeResult probe_without_client_certificate() override;
  ProbeResult probe_with_client_certificate(const std::string& name) override;
  void use_client_certificate(const std::string& name) override;
  std::string certificate_issuer_pem(const std::string& name) const override;

  bool follows_feed() const override;
  void describe_next(const std::string& version, std::uint32_t security_counter) override;
  void claim_next(const ManifestClaim& claim) override;
  void serve_as_release(const std::string& name) override;

  /// With the server's device API (network.device_api): every delivery is
  /// also published as a deployment of the image's URL.
  std::string last_deployment() const override { return deployment_; }
  std::string final_status(const std::string& deployment) const override;
  std::vector<std::string> statuses(const std::string& deployment) const override;
  std::vector<std::string> take_device_records() override;

  void start_checks(std::span<const std::uint8_t> running) override;
  void found_by_check_next(std::chrono::milliseconds check_within, std::chrono::milliseconds timeout) override;
  std::vector<std::string> take_requests() override;
  /// Whether a request is one of a device's checks for a new release: a GET
  /// of the feed (/manifest.json), Mender's deployments/next, or hawkBit's
  /// controller base (GET /TENANT/controller/v1/ID).
  static bool is_update_check(const std::string& method, const std::string& target);

  /// The link has a check command: the device checks the server by itself.
  bool checks_by_itself() const { return !cfg_.check_command.empty(); }

  /// Deliveries so far (the per-delivery path number).
  std::uint64_t deliveries() const { return deliveries_; }

 private:
  struct Shared;
  struct Publication {
    std::string url, manifest_url, path, sha256;
  };
  Publication publish(std::span<const std::uint8_t> image);
  /// The deployment of `pub` on the server's device API (when it has one).
  void publish_deployment(const Publication& pub, std::span<const std::uint8_t> image);
  Publication publish_files(std::span<const std::uint8_t> image);
  struct CutWatch;
  /// Arms a cut at image byte `cut_.byte` (server hook, proxy watch or the
  /// device's progress lines); true when the device's progress lines place it.
  bool arm_download_cut(const Publication& pub, CutWatch& watch);
  std::uint64_t served_bytes(const std::string& path) const;
  std::uint64_t response_header_size(const std::string& path) const;

  std::shared_ptr<DeviceHost> device_;
  std::shared_ptr<CuttablePower> power_;
  std::shared_ptr<WatchedConsole> console_;
  LinkConfig cfg_;
  std::unique_ptr<re2::RE2> accepted_, refused_, settled_, progress_;
  ProcessCut cut_;
  std::unique_ptr<re2::RE2> cut_re_;
  std::shared_ptr<Shared> shared_;
  std::uint64_t deliveries_ = 0;
  std::string published_path_, published_manifest_;
  std::vector<PublishedFile> next_files_;       ///< publish_beside(): for the next publication
  std::vector<std::string> published_files_;    ///< their paths, removed at the publication after
  std::uint64_t wrong_ranges_seen_ = 0;         ///< the last wrong-ranges record take_network_events() returned (seq)
  std::string deployment_;
  struct Description {
    std::string version;
    std::uint32_t security_counter = 0;
  };
  std::optional<Description> next_description_;
  std::optional<std::string> next_as_release_;
  std::optional<ManifestClaim> next_claim_;
  struct FoundByCheck {
    std::chrono::milliseconds check_within{0}, timeout{0};
  };
  std::optional<FoundByCheck> next_found_;
  std::uint64_t requests_taken_ = 0;  ///< the last request record take_requests() returned (seq)
  /// The expanded command for `pub` (the link's command or check command).
  std::string command_for(const std::string& text, const Publication& pub, std::size_t size) const;
};

/// The ProcessDevice a board's parts were built around (device kind
/// `process`), or null.
std::shared_ptr<ProcessDevice> find_process_device(const BoardParts& parts);

/// Binds the console-command link on a board whose device section made a
/// DeviceHost: a process board's ProcessPower and PtyConsole as they are,
/// any other power and console driver wrapped in CountedPower and
/// HeldConsole, which replace them in `parts` (so the harness switches and
/// reads through the objects the link watches), and the board's probe (bound
/// before the link) goes to the host for `provision.format: probe`.
/// InputError naming the section's file and line when the board has no
/// DeviceHost, power or console.
void bind_console_command_link(const Config& section, BoardParts& parts);

/// Directories searched for a bare program name before $PATH: $OTARIG_TOOL_PATH
/// (colon-separated), the running executable's folder, otarig's own tool
/// folders (build tree, installed bindir).
std::vector<std::filesystem::path> tool_dirs();

/// Splits a command string into words: whitespace separates, '...' and "..."
/// quote, backslash escapes the next character. No shell is involved.
std::vector<std::string> split_command(std::string_view text);

}  // namespace otarig::drivers::process
