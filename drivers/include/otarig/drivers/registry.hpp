#pragma once
// Explicit driver registration: a board profile names drivers by kind, the
// registry builds them. No static self-registration (linkers drop it from
// static libraries).
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "otarig/core/clock.hpp"
#include "otarig/core/config.hpp"
#include "otarig/core/crypto.hpp"
#include "otarig/core/image.hpp"
#include "otarig/drivers/package_format.hpp"
#include "otarig/drivers/protocols.hpp"

namespace CLI {
class App;
}

namespace otarig::drivers {

/// The protocols bound for one board. Any may be null when the board lacks it.
struct BoardParts {
  std::shared_ptr<PowerProtocol> power;
  std::shared_ptr<ConsoleProtocol> console;
  std::shared_ptr<UpdateLinkProtocol> link;
  std::shared_ptr<ProvisionProtocol> provision;
  std::shared_ptr<FlashFaultProtocol> flash_faults;
  /// The device's storage the rig can search (StorageScanProtocol); empty when it cannot.
  std::shared_ptr<StorageScanProtocol> storage_scan;
  std::shared_ptr<ProbeProtocol> probe;
  /// Power cuts placed in a delivery (a download byte, a time, a console
  /// line): boards whose flash the rig cannot count.
  std::shared_ptr<CutProtocol> cuts;
  /// The fault proxy between the device and the rig's update server; null
  /// when the device reaches the server directly or has none.
  std::shared_ptr<NetworkFaultProtocol> network;
  /// The rig's update server as the device's release feed: null when the
  /// device does not download from the rig's server.
  std::shared_ptr<ReleaseFeedProtocol> feed;
  /// The update server as a device-management server (Mender's device
  /// API): the deployments published and the device's reports; null when
  /// the board's server plays none.
  std::shared_ptr<DeviceReportsProtocol> device_reports;
  /// A device that checks the update server for new releases by itself (its
  /// link has a check command); null otherwise.
  std::shared_ptr<UpdateCheckProtocol> update_check;
  /// Storage under the crash model (a process board whose storage is a
  /// folder and whose profile keeps `device.power_loss: crash`, the
  /// default); null otherwise.
  std::shared_ptr<CrashStorageProtocol> crash_storage;
  /// The device's wall clock, settable for a trial; null when the rig cannot set it.
  std::shared_ptr<DeviceClockProtocol> device_clock;
  /// How a power cut treats the device's storage, for run.json: "crash"
  /// (the crash model, docs/crash-model.md), "kill: REASON" (the profile
  /// turned it off: the process is killed and keeps every write), or empty
  /// (a board whose storage is not a folder the rig records: virtual, lab).
  std::string power_loss;
  /// The console's own arrival stamps, when its driver records them as the
  /// bytes arrive (ConsoleReader: `serial`, `tty`); null for a console that
  /// cannot (the harness then stamps lines when it reads them). Kept apart
  /// from `console`, which an update link may wrap.
  std::shared_ptr<StampedConsoleProtocol> console_stamps;
  /// Keeps the device object (virtual board, process) alive with its parts.
  std::shared_ptr<void> device;
  /// Versions of external components this board ran (for run.json).
  std::map<std::string, std::string> component_versions;
  /// A validate-only bind (BindContext::validate_only) builds no part; each
  /// factory that checked its section records here what it would have bound,
  /// by part ("device", "power", "console", "probe", "link") -> kind or driver.
  std::map<std::string, std::string, std::less<>> checked;

  /// The part is bound, or (validate-only) a factory checked a driver for it.
  bool has(std::string_view part) const;
};

/// What a driver factory may use besides its own config section.
struct BindContext {
  Clock* clock = nullptr;
  std::string board_name;
  std::filesystem::path profile_dir;
  /// Public keys the device trusts (from the profile's signing keys).
  std::vector<crypto::PublicKey> trusted_keys;
  /// The same keys with their validity periods (docs/board-profile.md, "Signing").
  std::vector<image::TrustEntry> trust;
  /// The device's type (the profile's `device_type`); empty: none declared.
  std::string device_type;
  /// The device's X25519 secret for encrypted images (the profile's
  /// `encryption.device_key`); nullopt when it takes no encrypted images.
  std::optional<std::array<std::uint8_t, 32>> encryption_secret;
  /// The device's AES key file for SWUpdate's encrypted images (the
  /// profile's `encryption.aes_key`: "KEY IV" in hex), written into its
  /// storage for ${aes_key}; empty when it has none.
  std::string aes_key_file;
  /// For a board whose updates come as signed packages (the profile's
  /// `package:`, docs/ota-clients.md): the CA certificate (PEM) its OTA
  /// client is to trust. Empty otherwise.
  std::string package_trust_pem;
  /// Seed for any randomness of the device model (derived per trial).
  std::uint64_t seed = 0;
  /// Check only: each factory parses and checks its section exactly as when
  /// binding, and builds nothing (no process started, no device, port, line
  /// or probe opened, no server listening); see BoardParts::checked. How
  /// `otarig list boards` checks the driver sections.
  bool validate_only = false;
};

class DriverRegistry {
 public:
  /// Builds the device described by the profile's `device` section.
  using DeviceFactory = std::function<void(const Config& section, const BindContext&, BoardParts&)>;
  /// Builds one protocol driver from its section (power, console, link, probe).
  using PartFactory = std::function<void(const Config& section, const BindContext&, BoardParts&)>;

  void add_device(std::string kind, DeviceFactory factory);
  void add_power(std::string driver, PartFactory factory);
  void add_console(std::string driver, PartFactory factory);
  void add_link(std::string driver, PartFactory factory);
  void add_probe(std::string driver, PartFactory factory);
  /// A real OTA client's package format (`package: {format: NAME}`).
  void add_package_format(std::string name, PackageFormatFactory factory);
  /// A command of a driver family's own (`otarig serve`, `otarig proxy`):
  /// adds its subcommand to the command line and returns what runs it when
  /// that subcommand is chosen (its exit status; errors as exceptions).
  using CommandFactory = std::function<std::function<int()>(CLI::App& cli)>;
  void add_command(std::string name, CommandFactory factory);
  const std::map<std::string, CommandFactory>& commands() const { return commands_; }

  const DeviceFactory* device(const std::string& kind) const;
  const PartFactory* power(const std::string& driver) const;
  const PartFactory* console(const std::string& driver) const;
  const PartFactory* link(const std::string& driver) const;
  const PartFactory* probe(const std::string& driver) const;
  const PackageFormatFactory* package_format(const std::string& name) const;

  std::vector<std::string> device_kinds() const;
  std::vector<std::string> power_drivers() const;
  std::vector<std::string> console_drivers() const;
  std::vector<std::string> package_formats() const;

 private:
  std::map<std::string, DeviceFactory> devices_;
  std::map<std::string, PartFactory> power_, console_, link_, probe_;
  std::map<std::string, PackageFormatFactory> package_formats_;
  std::map<std::string, CommandFactory> commands_;
};

/// Registers every driver built into this library.
void register_all_drivers(DriverRegistry& registry);
/// The in-process virtual board (device kind "virtual"; power/console/link "virtual").
void register_virtual_drivers(DriverRegistry& registry);

}  // namespace otarig::drivers
