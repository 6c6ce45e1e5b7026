#pragma once
// The small protocols the harness speaks to. A virtual board, a process board
// and a lab board implement the same protocols, so they travel one code path.
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace otarig::drivers {

/// Switches the device's power (relay, PDU, process, virtual supply).
class PowerProtocol {
 public:
  virtual ~PowerProtocol() = default;
  virtual void on() = 0;
  virtual void off() = 0;
  /// off, keep it off for `off_time`, on.
  virtual void cycle(std::chrono::milliseconds off_time) = 0;
  virtual bool is_on() const = 0;
  /// The device program ended by itself although the power is on (a process
  /// board's program exited): how it ended, e.g. "exited with status 2".
  /// nullopt for a board that cannot tell (a physical board: a dead board
  /// just stops answering).
  virtual std::optional<std::string> device_exit() const { return std::nullopt; }
};

/// The device's console as a byte stream.
class ConsoleProtocol {
 public:
  virtual ~ConsoleProtocol() = default;
  virtual void write(std::string_view bytes) = 0;
  /// Bytes the device printed since the last read. Waits at most `timeout`
  /// for the first byte; returns an empty string when none came.
  virtual std::string read(std::chrono::milliseconds timeout) = 0;
};

/// What a console keeps of one line the device prints (docs/evidence.md,
/// "Limits"): the bytes of a line beyond it are counted, not kept, so a device
/// that prints a line without end cannot fill the rig's memory.
inline constexpr std::size_t kConsoleLineMaxBytes = 64 * 1024;
/// What a stamping console holds of finished lines between two takes of its
/// record: beyond it the oldest lines are counted (ConsoleRecord::dropped_*)
/// and let go.
inline constexpr std::size_t kConsolePendingMaxBytes = 8 * 1024 * 1024;
/// What a console's read side holds for a reader that has not read yet
/// (bytes peeked during a delivery): beyond it the oldest are let go.
inline constexpr std::size_t kConsoleHeldMaxBytes = 1024 * 1024;
/// Bytes a kept line costs besides its text (what the transcript budgets count).
inline constexpr std::size_t kConsoleLineOverheadBytes = 64;

/// One entry of what a console driver recorded as it arrived: a line the
/// device printed, or an event of the driver itself (the device vanished,
/// came back, a trigger callback failed).
struct ConsoleEntry {
  enum class Kind { line, event };
  ConsoleEntry() = default;
  ConsoleEntry(std::chrono::nanoseconds at_, Kind kind_, std::string text_, bool complete_ = true,
               std::string event_ = {})
      : at(at_), kind(kind_), text(std::move(text_)), complete(complete_), event(std::move(event_)) {}

  /// For a line, when its first byte arrived; for an event, when it
  /// happened. On the clock the driver was bound with (BindContext::clock).
  std::chrono::nanoseconds at{0};
  Kind kind = Kind::line;
  /// The line without its line ending ('\r' dropped), or the event described.
  std::string text;
  /// False for a line cut short: still arriving, or interrupted by a disconnect.
  bool complete = true;
  /// For an event: what happened, "disconnected", "reconnected" or "trigger-failed".
  std::string event;
  /// For a line: bytes it had beyond kConsoleLineMaxBytes, counted and not kept.
  std::uint64_t cut = 0;
};

/// What a console recorded since it was last asked.
struct ConsoleRecord {
  /// Finished lines and events, in the order they came.
  std::vector<ConsoleEntry> entries;
  /// The line still arriving (complete = false), if any. Once finished it
  /// comes again, whole, among the entries of a later record.
  std::optional<ConsoleEntry> arriving;
  /// Finished lines let go before this record was taken (more than
  /// kConsolePendingMaxBytes waited), and their bytes.
  std::uint64_t dropped_lines = 0, dropped_bytes = 0;
};

/// A console driver that stamps what the device prints as it arrives (one
/// asynchronous reader per console), so a transcript carries arrival times
/// rather than the times someone read the bytes. Alongside ConsoleProtocol:
/// read() still returns every byte.
class StampedConsoleProtocol {
 public:
  virtual ~StampedConsoleProtocol() = default;
  /// The entries recorded since the last call (the first call: since the
  /// console was opened), and the line arriving now.
  virtual ConsoleRecord take_record() = 0;
};

/// How a delivery to the device's updater ended.
enum class DeliveryStatus {
  accepted,     ///< the updater took the image and asked for a reboot
  refused,      ///< the updater rejected it (the device stays up)
  power_lost,   ///< power was cut while the update was in progress
  unreachable,  ///< the device did not answer (off, hung, vanished)
};

const char* to_string(DeliveryStatus);

struct DeliveryResult {
  DeliveryStatus status = DeliveryStatus::unreachable;
  std::string detail;          ///< the updater's reason, or where the cut fell
  std::uint64_t bytes_sent = 0;
};

/// Hands an update image to the device's OTA agent (in-process stream,
/// HTTP through the update server, a client's command line).
/// A file published on the update server beside a delivery (a delta
/// package's chunk file, which the package's signed description names by URL).
struct PublishedFile {
  std::string path;  ///< on the update server, "/deltas/NAME.zck"
  std::vector<std::uint8_t> bytes;
};

class UpdateLinkProtocol {
 public:
  virtual ~UpdateLinkProtocol() = default;
  virtual DeliveryResult deliver(std::span<const std::uint8_t> image) = 0;
  /// Where the device reaches a file published beside a delivery: this URL
  /// followed by the file's path (publish_beside). Empty when the link
  /// publishes no such files.
  virtual std::string files_url() const { return {}; }
  /// The next delivery (or update check) also publishes `files`, each at
  /// its path, until the delivery after it. Returns false, publishing
  /// nothing, when the link publishes no such files.
  virtual bool publish_beside(std::vector<PublishedFile> files) { return files.empty(); }
};

/// Writes a known-good image outside the updater (factory programming, a
/// debug probe), leaving the device confirmed on that image and powered off.
class ProvisionProtocol {
 public:
  virtual ~ProvisionProtocol() = default;
  virtual void provision(std::span<const std::uint8_t> image) = 0;
};

/// One counted flash operation, as reported by a device that counts them.
struct FlashOp {
  enum class Kind { erase, program };
  std::uint64_t index = 0;   ///< 1-based, counted from arm()
  Kind kind = Kind::program;
  std::uint64_t address = 0;
  std::uint64_t length = 0;
  std::string phase;         ///< download, stage, trial-boot, confirm, revert, swap, ...
};

/// Where a counted power cut is to fall.
struct FlashCut {
  std::uint64_t before_op = 0;  ///< cut before this op (1-based); 0 = count only, never cut
  bool torn = false;            ///< the op itself is partly applied, then power goes
  std::uint64_t torn_seed = 0;  ///< which bits/bytes of a torn op land
  /// Op `before_op` fails with an error the flash reports instead of losing
  /// power (with `torn`, part of it landed first); the device stays powered.
  bool error = false;
};

/// A storage fault at rest: bits of a stored image flipped while the device is off.
struct StorageFlip {
  bool running_slot = true;  ///< the slot the device last ran from, else the other one
  std::uint32_t bits = 1;    ///< how many bits to flip
  std::uint64_t seed = 0;    ///< which bits
};

/// The device's storage as bytes the rig may search (virtual boards: the
/// whole flash): what the `confidential` oracle reads for a decrypted
/// payload left at rest (docs/scenarios.md, "Encrypted images").
class StorageScanProtocol {
 public:
  virtual ~StorageScanProtocol() = default;
  /// Whether `needle` occurs anywhere in the device's storage now; `where` names the place.
  virtual bool storage_contains(std::span<const std::uint8_t> needle, std::string* where) const = 0;
};

/// Counted flash faults: virtual boards, whose every erase/program is counted.
class FlashFaultProtocol {
 public:
  virtual ~FlashFaultProtocol() = default;
  /// Starts counting flash operations from 1; cuts power as `cut` says.
  virtual void arm(const FlashCut& cut) = 0;
  virtual void disarm() = 0;
  /// Operations done since arm().
  virtual std::uint64_t ops_counted() const = 0;
  /// The operation at which the cut fell, once it has.
  virtual std::optional<FlashOp> fired() const = 0;
  /// Erase count per sector since the last provision (wear evidence).
  virtual std::vector<std::uint32_t> erase_counts() const = 0;
  /// Flips stored bits while the device is off; returns what was flipped, or
  /// nullopt when the board cannot (the default).
  virtual std::optional<std::string> flip_at_rest(const StorageFlip&) { return std::nullopt; }
};

/// A debug probe (OpenOCD): raw commands and memory reads.
class ProbeProtocol {
 public:
  virtual ~ProbeProtocol() = default;
  virtual std::string command(std::string_view cmd, std::chrono::milliseconds timeout) = 0;
  virtual std::vector<std::uint32_t> read_words(std::uint64_t address, std::size_t count) = 0;
};

/// What the device's wall clock (its RTC) reads from the next power-on.
struct DeviceTime {
  enum class Kind {
    host,    ///< the host's time (the default: a device whose clock is right)
    at,      ///< `seconds` (UNIX time) at power-on, running on from there: 0 is a dead RTC at 1970
    offset,  ///< the host's time plus `seconds` (negative: behind)
  };
  Kind kind = Kind::host;
  std::int64_t seconds = 0;
};

/// Sets the device's clock for a trial: the virtual board's injected clock,
/// libfaketime under a process board, a lab board's console command. Takes
/// effect at the next power-on and holds until set again.
class DeviceClockProtocol {
 public:
  virtual ~DeviceClockProtocol() = default;
  virtual void set_device_time(const DeviceTime& time) = 0;
  /// Called after every power-on the rig makes (a lab board's console
  /// command is written then); nothing by default.
  virtual void powered_on() {}
};

// ---- Parts a board may lack: the harness finds them in BoardParts (cuts,
// network, feed), empty when the board has none.


/// Where the next delivery's power cut falls.
struct PlacedCut {
  enum class Trigger {
    none,           ///< no cut
    time,           ///< `delay` after the update command was written
    download_byte,  ///< when byte `byte` of the image (from 0) is about to reach the device
    console,        ///< `delay` after the first console line matching `pattern`
  };
  Trigger trigger = Trigger::none;
  std::chrono::milliseconds delay{0};
  std::uint64_t byte = 0;
  std::string pattern;  ///< RE2, matched anywhere in each console line

  static PlacedCut after(std::chrono::milliseconds d) { return {Trigger::time, d, 0, {}}; }
  static PlacedCut at_byte(std::uint64_t b) { return {Trigger::download_byte, {}, b, {}}; }
  static PlacedCut on_console(std::string re, std::chrono::milliseconds d = {}) {
    return {Trigger::console, d, 0, std::move(re)};
  }
};

/// What an armed cut did.
struct CutReport {
  /// "power cut at byte 524288 of the download (connection 1)",
  /// "power cut 250 ms after the update command",
  /// "power cut 5 ms after console line 'ota: receiving ...'".
  std::string detail;
  /// From writing the update command to the cut.
  std::chrono::milliseconds at{0};
  /// Image bytes delivered to the device before the cut (download_byte: the
  /// armed byte; otherwise what the update server had sent, as known).
  std::uint64_t bytes = 0;
};

/// Arms power cuts during the next deliveries (until disarm()). The cut
/// switches the board's power off exactly as PowerProtocol::off() does; the
/// delivery then returns DeliveryStatus::power_lost.
class CutProtocol {
 public:
  virtual ~CutProtocol() = default;
  virtual void arm(const PlacedCut& cut) = 0;
  virtual void disarm() = 0;
  /// Where the cut fell, once it has (reset by arm()).
  virtual std::optional<CutReport> fired() const = 0;
};

/// What the update server did with a client that presented no certificate.
struct ProbeResult {
  bool answered = false;  ///< the server sent an HTTP response
  std::string detail;     ///< the status line, or why the connection failed
};

/// What the fault proxy's plaintext watch saw of the update server's bytes
/// to the device (docs/network.md, "Plaintext watch").
struct PlaintextWatchReport {
  /// One line a sighting: "update at byte 4608 of connection 1".
  std::vector<std::string> sightings;
  std::uint64_t scanned = 0;  ///< connections whose bytes the proxy could read
  std::uint64_t opaque = 0;   ///< connections relayed as TLS it did not terminate
  std::uint64_t bytes = 0;    ///< server bytes scanned
};

/// Network faults between the device and the rig's update server (the fault
/// proxy of drivers/net). `spec` is the fault spec text of docs/network.md.
class NetworkFaultProtocol {
 public:
  virtual ~NetworkFaultProtocol() = default;
  /// "off", "tls" or "mutual": how the device reaches the update server.
  virtual std::string tls_mode() const = 0;
  /// Connects to the update server the way the device does (through the
  /// proxy), trusting its CA but presenting no client certificate, and asks
  /// for the image last published. A server that requires mutual TLS refuses.
  virtual ProbeResult probe_without_client_certificate() = 0;
  /// Asks the update server for the image last published as the device
  /// does (through the proxy, trusting its CA) presenting the rig's test
  /// client certificate `name` instead of the device's: "expired" (from the
  /// CA the server trusts, whose validity ended a day ago). BenchError when
  /// the board has no such certificate (its certificates are the profile's).
  virtual ProbeResult probe_with_client_certificate(const std::string& name);
  /// The device's client certificate from its next connection on: "expired"
  /// (the rig's expired one), "renewed" (a new key and certificate from the
  /// same CA, valid now) or "provisioned" (the one it was given). The device
  /// reads it where it was provisioned (process boards: the files
  /// $OTARIG_CLIENT_CERT and $OTARIG_CLIENT_KEY name). BenchError when the
  /// board has no such certificate.
  virtual void use_client_certificate(const std::string& name);
  /// The CA certificate (PEM) that issued the server certificate a
  /// `certificate=NAME` rule presents, for a certificate whose CA the
  /// device does not trust from the start ("rotated-ca": the rotated CA);
  /// "" when the proxy has no such certificate.
  virtual std::string certificate_issuer_pem(const std::string& name) const;
  /// Faults for connections from now on (connection numbers restart at 1);
  /// an empty spec removes them. InputError for a bad spec.
  virtual void set_network_faults(const std::string& spec, std::uint64_t seed) = 0;
  /// A trial starts: no faults, and what connections of earlier trials do
  /// from now on (one still open closes late) is no event of this trial.
  virtual void begin_network_trial() = 0;
  /// What the proxy did since the last call, one JSON object per line
  /// (drivers::net::to_json(FaultEvent)).
  virtual std::vector<std::string> take_network_events() = 0;
  /// The proxy looks for each named byte string in what the update server
  /// sends the device on connections from now on (the plaintext markers of
  /// encrypted releases); an empty list stops. Nothing by default.
  virtual void watch_plaintext(const std::vector<std::pair<std::string, std::vector<std::uint8_t>>>& watched) {
    (void)watched;
  }
  /// What the watch saw since it was set or last taken; nullopt when the
  /// board's network has no watch (the default).
  virtual std::optional<PlaintextWatchReport> take_plaintext_watch() { return std::nullopt; }
};

/// A device that checks its update server for new releases by itself, at
/// the interval its profile declares (observe.update_check_interval): the
/// link starts its checks with nothing new on the server, and a later
/// delivery is only published, for the device to find by its own check (the
/// outage scenarios, docs/scenarios.md).
class UpdateCheckProtocol {
 public:
  virtual ~UpdateCheckProtocol() = default;
  /// The update server offers `running` (the image the device runs) as its
  /// latest release, and no deployment on a device-management API; then the
  /// link's check command tells the device to check the server by itself
  /// from now on. BenchError when the device is off or its program exited.
  virtual void start_checks(std::span<const std::uint8_t> running) = 0;
  /// The next delivery publishes its image and types nothing: the device is
  /// to find it by its own check. It ends as a delivery does (accepted,
  /// refused, power_lost), or `unreachable` when none of the device's checks
  /// reached the update server within `check_within` of the delivery's
  /// start, or the device decided nothing within `timeout`.
  virtual void found_by_check_next(std::chrono::milliseconds check_within, std::chrono::milliseconds timeout) = 0;
  /// The update server's request log since the last call: one JSON object a
  /// request or dropped connection (docs/network.md, "Request log"), with
  /// `check`: whether it is one of the device's checks for a new release
  /// (the feed, or a device-management API's poll for a deployment). Its
  /// `time_ns` is on the same clock as the fault proxy's events.
  virtual std::vector<std::string> take_requests() = 0;
};

/// What a lying mirror's manifest states in place of the truth
/// (ReleaseFeedProtocol::claim_next); an empty field is told truly.
struct ManifestClaim {
  std::optional<std::string> version;
  std::optional<std::uint32_t> security_counter;
  std::optional<std::uint64_t> size;
  std::optional<std::string> sha256;  ///< 64 lowercase hex digits
};

/// A device that follows the update server's release feed: its update
/// command names ${feed_url} (the server's /manifest.json, the release the
/// controller calls latest) or ${manifest_url}, and it reads the manifest
/// (docs/network.md) before it fetches the image the manifest names.
class ReleaseFeedProtocol {
 public:
  virtual ~ReleaseFeedProtocol() = default;
  /// Whether the device's update command reads a manifest first.
  virtual bool follows_feed() const = 0;
  /// The release the next delivery stands for: its manifest carries this
  /// version and counter when the image's own header cannot say them (a
  /// damaged header). Once; the delivery after it goes without.
  virtual void describe_next(const std::string& version, std::uint32_t security_counter) = 0;
  /// The next delivery only: its image is published as release `name` of
  /// the server's repository (/manifests/NAME.json, /images/NAME.bin), and
  /// the feed (/manifest.json) answers with that release's manifest: a frozen
  /// or replaying mirror. Later deliveries make their own manifest latest
  /// again. InputError for a name that is not [A-Za-z0-9._-].
  virtual void serve_as_release(const std::string& name) = 0;
  /// The next delivery only: its manifest states these fields instead of
  /// what the image's header and bytes say (a lying mirror: a newer version
  /// over an older image, another release's digest). A field left empty
  /// keeps what the image says.
  virtual void claim_next(const ManifestClaim& claim) = 0;
};

/// A board whose update server plays a device-management server (Mender's
/// device API, docs/network.md): the deployments its link published and
/// what the device told the server about them.
class DeviceReportsProtocol {
 public:
  virtual ~DeviceReportsProtocol() = default;
  /// The deployment the last delivery published; empty when none.
  virtual std::string last_deployment() const = 0;
  /// The last final status (success, failure, already-installed) the device
  /// reported for `deployment`; empty when it reported none.
  virtual std::string final_status(const std::string& deployment) const = 0;
  /// Every status the device reported for `deployment`, in order.
  virtual std::vector<std::string> statuses(const std::string& deployment) const = 0;
  /// What the device did on the server's API since the last call (JSON
  /// objects: authentication requests, deployment checks, status reports,
  /// logs, inventory, refused requests).
  virtual std::vector<std::string> take_device_records() = 0;
};

/// Storage that loses what real power loss loses (docs/crash-model.md): a
/// process board whose storage is a folder, under the recording FUSE layer.
/// Found in BoardParts::crash_storage (docs/process-boards.md, "Power loss").
/// Cuts are numbered by operation: a cut `k` falls before operation k of a
/// recording (1..ops+1; ops+1 = after everything the device did).
class CrashStorageProtocol {
 public:
  virtual ~CrashStorageProtocol() = default;
  /// What every later power-off does to the operations the device made
  /// after their last barrier: "lost", "prefix", "reorder" or "torn" (the
  /// crash model's modes), choices drawn from `seed`. Default: lost.
  /// InputError for an unknown mode.
  virtual void set_power_loss(const std::string& mode, std::uint64_t seed) = 0;
  /// What the last power-off dropped/kept (the crash model's description),
  /// or null when it applied nothing (no operation pending).
  virtual nlohmann::json last_power_loss() const = 0;
  /// Keeps the current power-on's snapshot and its operations so far as
  /// recording `key` (e.g. "factory->update"); returns its operation count.
  /// Keeping a key again replaces it. BenchError while the device is off.
  virtual std::uint64_t keep_recording(const std::string& key) = 0;
  /// The operations of recording `key`, one JSON object each (index, kind, path, offset, length...).
  virtual nlohmann::json recorded_ops(const std::string& key) const = 0;
  /// Marks the current power-on's console trace: the rig is about to send
  /// the device an update command. BenchError while the device is off.
  virtual void mark_console() = 0;
  /// What the device printed on its console in recording `key` after the
  /// first mark_console() of its power-on, in order: {"line": TEXT, "ops":
  /// N} per line, N being the operations of the recording made before the
  /// line ended (the device printed the line before operation N+1). Empty
  /// when the device's console was not traced (no seccomp filter) or the
  /// recording has no mark.
  virtual nlohmann::json recorded_console(const std::string& key) const = 0;
  /// What a cut before op `before_op` (1..ops+1) of recording `key` in
  /// `mode` with `seed` keeps and drops, without building it (the crash
  /// model's plan as JSON, including "kept", "dropped", "pending", "torn").
  virtual nlohmann::json plan_crash(const std::string& key, std::uint64_t before_op, const std::string& mode,
                                    std::uint64_t seed) const = 0;
  /// With the device off: its storage becomes the crash state of recording
  /// `key` cut before `before_op`; returns the crash model's description.
  /// The next power-on starts a new epoch from it. BenchError while the
  /// device is on; std::out_of_range for an unknown key; std::invalid_argument
  /// for a cut outside 1..ops+1.
  virtual nlohmann::json apply_crash(const std::string& key, std::uint64_t before_op, const std::string& mode,
                                     std::uint64_t seed) = 0;
};

}  // namespace otarig::drivers
