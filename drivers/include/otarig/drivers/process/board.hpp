#pragma once
// Process boards (docs/process-boards.md): a device program run as its own
// process. Power on starts it on a fresh pty the rig owns, power off is
// SIGKILL to its process group; the pty is its console; updates reach it over
// real TCP from the rig's update server through the fault proxy.
//
// The drivers of one board share a ProcessDevice (profile `device: {kind:
// process}`): its storage folder, environment, update server and fault
// proxy, and the provisioning of its flash file.
//
//   device  kind process         ProcessDevice   storage, network, provisioning
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

#include "otarig/drivers/clock.hpp"
#include "otarig/drivers/config.hpp"
#include "otarig/drivers/process/cut.hpp"
#include "otarig/drivers/process/pty_process.hpp"
#include "otarig/drivers/protocols.hpp"
#include "otarig/drivers/registry.hpp"
#include "otarig/drivers/virtual/board.hpp"
#include "otarig/drivers/virtual/flash.hpp"

namespace re2 {
class RE2;
}

namespace otarig::drivers::net {
class UpdateServer;
class FaultProxy;
}  // namespace otarig::drivers::net

namespace otarig::drivers::process {

class ProcessPower;

/// The profile's `device` section for `kind: process`.
struct DeviceConfig {
  /// Storage folder (${storage}); empty: a fresh temporary folder per bench,
  /// removed with the board.
  std::string storage;
  bool keep_storage = false;

  /// The rig's update server for this device (${update_url}).
  bool server = true;
  enum class Tls { off, tls, mutual };
  Tls tls = Tls::off;
  /// The device reaches the server through the fault proxy.
  bool proxy = true;

  /// How provision() writes a known-good image while the device is off.
  enum class ProvisionFormat {
    none,          ///< the board cannot be provisioned
    vboard_flash,  ///< otarig-vboard flash file (flash_file.hpp): slot A, boot record, counter
    image_file,    ///< the image bytes as the file
    client_slots,  ///< a real-client board's slot files and boot state (clients/device.hpp)
  };
  ProvisionFormat provision = ProvisionFormat::none;
  std::string provision_file;  ///< may use ${storage}
  /// vboard_flash: the board the flash is made for (mode and geometry).
  vboard::BoardConfig vboard;
  /// client_slots: the folder holding the slots and boot state (may use
  /// ${storage}; default ${storage}), the boot state format, slot size and
  /// boot limit.
  std::string client_dir;
  std::string client_bootloader = "uboot-env";
  std::uint64_t client_slot_size = 4u << 20;
  std::uint32_t client_bootlimit = 3;

  /// Reads `kind, storage, keep_storage, network{server, tls, proxy},
  /// provision{format, file, mode, slot_size, sector_size, program_align,
  /// metadata_sectors}`; InputError naming file and line.
  static DeviceConfig from_config(const Config& device);
};

/// The state every driver of one process board shares.
class ProcessDevice final : public ProvisionProtocol {
 public:
  /// Creates the storage folder and starts the update server (and proxy).
  /// BenchError naming the board when either fails.
  ProcessDevice(DeviceConfig config, const BindContext& context);
  /// Stops the network and removes a temporary storage folder.
  ~ProcessDevice() override;
  ProcessDevice(const ProcessDevice&) = delete;
  ProcessDevice& operator=(const ProcessDevice&) = delete;

  const DeviceConfig& config() const { return cfg_; }
  const std::string& board_name() const { return board_; }
  const std::filesystem::path& profile_dir() const { return profile_dir_; }
  const std::filesystem::path& storage() const { return storage_; }
  /// A real-time clock: the injected one unless it is manual (a process
  /// cannot run on modelled time).
  Clock& clock() const { return *clock_; }

  /// The base URL the device downloads from ("http://127.0.0.1:PORT", the
  /// proxy's port when the proxy is on); empty without a server.
  const std::string& update_url() const { return update_url_; }
  /// The port of update_url() (${update_port}); 0 without a server.
  std::uint16_t update_port() const { return update_port_; }
  /// The base URL of the server itself (bypassing the proxy).
  std::string server_url() const;
  net::UpdateServer* server() const { return server_.get(); }
  net::FaultProxy* proxy() const { return proxy_.get(); }
  /// The CA (PEM file) the server's certificate chains to; empty without TLS.
  const std::filesystem::path& ca_file() const { return ca_; }

  /// The package CA certificate file written into the storage (from
  /// BindContext::package_trust_pem, ${package_ca}); empty without one.
  const std::filesystem::path& package_ca_file() const { return package_ca_; }

  /// Replaces ${storage}, ${board}, ${update_url}, ${update_port}, ${profile_dir}, and any
  /// `extra` names; an unknown ${name} is left as it is.
  std::string expand(std::string_view text,
                     const std::vector<std::pair<std::string, std::string>>& extra = {}) const;
  /// The variables the rig passes to the device: OTARIG_BOARD,
  /// OTARIG_STORAGE, OTARIG_UPDATE_URL, OTARIG_TRUSTED_KEYS, and with TLS
  /// OTARIG_CA (and OTARIG_CLIENT_CERT, OTARIG_CLIENT_KEY for mutual TLS).
  std::vector<std::pair<std::string, std::string>> environment() const;

  /// ProvisionProtocol: powers the device off, then writes the image as
  /// `provision.format` says. BenchError when the board has no provisioning.
  void provision(std::span<const std::uint8_t> image) override;

  void attach_power(const std::shared_ptr<ProcessPower>& power) { power_ = power; }
  std::shared_ptr<ProcessPower> power() const { return power_.lock(); }

 private:
  DeviceConfig cfg_;
  std::string board_;
  std::filesystem::path profile_dir_;
  std::filesystem::path storage_;
  bool remove_storage_ = false;
  SteadyClock steady_;
  Clock* clock_ = nullptr;
  std::vector<crypto::PublicKey> trusted_;
  std::filesystem::path ca_, client_cert_, client_key_;
  std::filesystem::path package_ca_;
  std::unique_ptr<net::UpdateServer> server_;
  std::unique_ptr<net::FaultProxy> proxy_;
  std::string update_url_;
  std::uint16_t update_port_ = 0;
  std::weak_ptr<ProcessPower> power_;
  /// Makes provisioned flashes (and caches them per image).
  std::unique_ptr<vboard::VirtualBoard> provisioner_;
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
class ProcessPower final : public PowerProtocol {
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
  void cut(std::string cause);
  /// The running session; null while off.
  std::shared_ptr<PtySession> session() const;
  /// The oldest recent session numbered above `number` (the console reads
  /// them in order, so what a run printed before it was cut is not lost),
  /// waiting up to `timeout` for one to start. Null when none.
  std::shared_ptr<PtySession> session_after(std::uint64_t number, std::chrono::milliseconds timeout) const;
  /// Power-ons so far.
  std::uint64_t power_ons() const;
  /// Power-offs by cut() so far, and the last cause.
  std::uint64_t cuts() const;
  std::string last_cut() const;
  /// The command as it runs (expanded), for messages and evidence.
  std::string command_text() const;
  ProcessDevice& device() const { return *device_; }

 private:
  void off_locked(std::unique_lock<std::mutex>& lock);

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
class PtyConsole final : public ConsoleProtocol {
 public:
  explicit PtyConsole(std::shared_ptr<ProcessPower> power);

  void write(std::string_view bytes) override;
  /// What arrived since the last read (including what peek() saw), waiting
  /// at most `timeout` for the first byte.
  std::string read(std::chrono::milliseconds timeout) override;
  /// Like read(), for a watcher (the update link): returns only bytes no
  /// peek() returned before, and keeps them for the next read(), so the
  /// harness's transcript misses nothing.
  std::string peek(std::chrono::milliseconds timeout);
  /// The session read last ended: its device process closed the console.
  bool at_eof() const;

 private:
  std::string fetch(std::chrono::milliseconds timeout);

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
  /// ${size} and ${sha256} describe it.
  std::string command = "update ${url}\n";
  /// RE2 patterns matched against each console line after the command.
  std::string accepted;  ///< the updater took the image and reboots
  std::string refused;   ///< it rejected it; group `reason` (else the line) is the detail
  std::string settled;   ///< optional: after `accepted`, the device is back up
  std::string progress;  ///< optional: group `bytes` counts image bytes received
  /// The update server's base URL as the device reaches it (a VM behind
  /// user-mode networking sees the host elsewhere, e.g.
  /// "http://10.0.2.2:${update_port}").
  std::string base_url = "${update_url}";
  std::chrono::milliseconds timeout{60000};         ///< command to accepted/refused
  std::chrono::milliseconds settle_timeout{30000};  ///< accepted to settled
  enum class Serve { http, file };
  /// http: the update server serves the image at a path per delivery;
  /// file: the image is written into the storage folder, ${url} = file:PATH.
  Serve serve = Serve::http;
  static LinkConfig from_config(const Config& link);
};

/// Link kind `console-command`: makes the image available, types the update
/// command on the console and watches the console for the outcome. Also the
/// board's CutProtocol and NetworkFaultProtocol.
class ConsoleCommandLink final : public UpdateLinkProtocol, public CutProtocol, public NetworkFaultProtocol {
 public:
  ConsoleCommandLink(std::shared_ptr<ProcessDevice> device, std::shared_ptr<ProcessPower> power,
                     std::shared_ptr<PtyConsole> console, LinkConfig config);
  ~ConsoleCommandLink() override;

  /// accepted / refused as the console says; power_lost when power went off
  /// during the delivery (an armed cut, or anyone's off()); unreachable when
  /// the device is off, its process exited, or it did not answer in time.
  DeliveryResult deliver(std::span<const std::uint8_t> image) override;

  void arm(const ProcessCut& cut) override;
  void disarm() override;
  std::optional<CutReport> fired() const override;

  void set_network_faults(const std::string& spec, std::uint64_t seed) override;
  std::vector<std::string> take_network_events() override;
  std::string tls_mode() const override;
  ProbeResult probe_without_client_certificate() override;

  /// Deliveries so far (the per-delivery path number).
  std::uint64_t deliveries() const { return deliveries_; }

 private:
  struct Shared;
  struct Publication {
    std::string url, manifest_url, path, sha256;
  };
  Publication publish(std::span<const std::uint8_t> image);
  std::uint64_t served_bytes(const std::string& path) const;
  std::uint64_t response_header_size(const std::string& path) const;

  std::shared_ptr<ProcessDevice> device_;
  std::shared_ptr<ProcessPower> power_;
  std::shared_ptr<PtyConsole> console_;
  LinkConfig cfg_;
  std::unique_ptr<re2::RE2> accepted_, refused_, settled_, progress_;
  ProcessCut cut_;
  std::unique_ptr<re2::RE2> cut_re_;
  std::shared_ptr<Shared> shared_;
  std::uint64_t deliveries_ = 0;
  std::string published_path_, published_manifest_;
};

/// The ProcessDevice a board's parts were built around (device kind
/// `process`), or null.
std::shared_ptr<ProcessDevice> find_process_device(const BoardParts& parts);

/// Directories searched for a bare program name before $PATH: $OTARIG_TOOL_PATH
/// (colon-separated), the running executable's folder, otarig's own tool
/// folders (build tree, installed bindir).
std::vector<std::filesystem::path> tool_dirs();

/// Splits a command string into words: whitespace separates, '...' and "..."
/// quote, backslash escapes the next character. No shell is involved.
std::vector<std::string> split_command(std::string_view text);

}  // namespace otarig::drivers::process
