#pragma once
// The rig's side of a board whose updates come over the network: the
// device's storage folder, the update server and the fault proxy in front of
// it, TLS material, the ${name} variables of profile commands, and the
// provisioning of a known-good image. Shared by the drivers of one board.
//
//   device kind process   ProcessDevice (a DeviceHost whose power is a program, board.hpp)
//   device kind lab       DeviceHost (a physical board: any power and console driver)
//
// The console-command link (board.hpp) publishes images on the host's server
// and cuts power through the proxy's watches.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "otarig/core/clock.hpp"
#include "otarig/core/config.hpp"
#include "otarig/drivers/protocols.hpp"
#include "otarig/drivers/registry.hpp"
#include "otarig/drivers/virtual/board.hpp"

namespace otarig::drivers::net {
class UpdateServer;
class FaultProxy;
class DeviceManagementApi;
class HawkbitDdiApi;
}  // namespace otarig::drivers::net

namespace otarig::drivers::process {

/// The profile's `device` section for `kind: process` and `kind: lab`.
struct DeviceConfig {
  /// `process` (the device is a program the rig runs) or `lab` (a physical board).
  std::string kind = "process";
  /// Storage folder (${storage}); empty: a fresh temporary folder per bench,
  /// removed with the board.
  std::string storage;
  bool keep_storage = false;

  /// What a power cut does to the storage folder (kind process only):
  /// `crash` (the default) records it through the FUSE layer and applies the
  /// crash model at every power-off (docs/crash-model.md); `kill` only kills
  /// the process, which keeps every write (`power_loss: {model: kill,
  /// reason: "..."}`, the reason required and shown in run.json).
  enum class PowerLoss { crash, kill };
  PowerLoss power_loss = PowerLoss::crash;
  std::string power_loss_reason;
  /// "crash" or "kill: REASON" (BoardParts::power_loss).
  std::string power_loss_text() const;

  /// The rig's update server for this device (${update_url}).
  bool server = true;
  enum class Tls { off, tls, mutual };
  Tls tls = Tls::off;
  /// The device reaches the server through the fault proxy.
  bool proxy = true;
  /// network.legacy_ciphers: the update server also offers TLS 1.2 CBC-mode
  /// suites (net::TlsConfig::legacy_ciphers); AEAD suites only otherwise.
  bool legacy_ciphers = false;
  /// The address the device connects to listens here (the proxy, or the
  /// server without the proxy): empty = 127.0.0.1; "0.0.0.0" = every
  /// address; else one address of the rig (the bench network's).
  std::string listen;
  /// Its port; 0 = an ephemeral one (${update_port}).
  std::uint16_t port = 0;
  /// With TLS: a folder with the certificates the device was provisioned
  /// with (ca.pem, server.pem, server.key; client.pem, client.key for
  /// mutual TLS). Empty: fresh test certificates per bench.
  std::string pki;
  /// network.device_api: the update server also plays a device-management
  /// server: `mender` (Mender's device API, net::MenderDeviceApi) or
  /// `hawkbit` (hawkBit's DDI API, net::HawkbitDdiApi, with its tenant and
  /// controller id); for Mender with the
  /// device type its deployments name; empty: none.
  std::string device_api;
  std::string device_type = "otarig-board";
  std::string ddi_tenant = "DEFAULT";
  std::string ddi_controller_id = "otarig-device";
  std::string ddi_artifact = "update.swu";  ///< the artifact's file name in the deployment
  /// DNS names and IP addresses the fresh test certificates carry besides
  /// localhost, 127.0.0.1, ::1 and the `listen` address.
  std::vector<std::string> names;

  /// How provision() writes a known-good image while the device is off.
  enum class ProvisionFormat {
    none,          ///< the board cannot be provisioned
    vboard_flash,  ///< otarig-vboard flash file (flash_file.hpp): slot A, boot record, counter
    image_file,    ///< the image bytes as the file
    client_slots,  ///< a real-client board's slot files and boot state (clients/device.hpp)
    command,       ///< a command writes ${image} to the device (a flasher, an SD-card mux)
    probe,         ///< the board's OpenOCD probe programs the image at an address
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
  /// command: run by /bin/sh -c (a string) or as a list of arguments, after
  /// ${image} (the image written into the storage), ${size}, ${sha256} and
  /// the host's variables are replaced; `provision_timeout` is its deadline
  /// (and each probe command's).
  std::vector<std::string> provision_command;
  bool provision_shell = false;
  std::chrono::milliseconds provision_timeout{300000};
  /// command: the board is powered while the command runs (a debug probe
  /// needs a powered target); either way it is off afterwards.
  bool provision_powered = false;
  /// probe: where the image goes (`program FILE ADDRESS`), the regions
  /// erased before it (both slots with their trailers, a scratch area: no
  /// update left pending), whether OpenOCD verifies what it wrote.
  std::uint64_t provision_address = 0;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> provision_erase;
  bool provision_verify = true;

  /// Reads `kind, storage, keep_storage, power_loss (process only), network{server, tls, proxy, listen,
  /// port, pki, names, legacy_ciphers}, provision{format, file, mode, slot_size, sector_size,
  /// program_align, metadata_sectors, dir, bootloader, bootlimit, command,
  /// timeout, powered, address, erase, verify}`, and for `kind: lab` the record keys `model, serial_number,
  /// notes`. `kind` is the kind the section must name. InputError naming
  /// file and line.
  static DeviceConfig from_config(const Config& device, const std::string& kind = "process");
};

/// Whether a profile path (before ${...} expansion) stays inside the
/// storage folder: under ${storage}, under the literal `storage` path, or
/// relative (relative paths resolve against the storage), and no ".." leads
/// out. What the crash model can see (docs/crash-model.md).
bool inside_storage(std::string_view path, std::string_view storage);

/// The state every driver of one networked board shares.
class DeviceHost : public ProvisionProtocol {
 public:
  /// Creates the storage folder and starts the update server (and proxy).
  /// BenchError naming the board when either fails.
  DeviceHost(DeviceConfig config, const BindContext& context);
  /// Stops the network and removes a temporary storage folder.
  ~DeviceHost() override;
  DeviceHost(const DeviceHost&) = delete;
  DeviceHost& operator=(const DeviceHost&) = delete;

  const DeviceConfig& config() const { return cfg_; }
  const std::string& board_name() const { return board_; }
  const std::filesystem::path& profile_dir() const { return profile_dir_; }
  const std::filesystem::path& storage() const { return storage_; }
  /// A real-time clock: the injected one unless it is manual (a process
  /// cannot run on modelled time).
  Clock& clock() const { return *clock_; }

  /// The base URL the device downloads from ("http://127.0.0.1:PORT", the
  /// proxy's port when the proxy is on; the `listen` address when it names
  /// one); empty without a server.
  const std::string& update_url() const { return update_url_; }
  /// The port of update_url() (${update_port}); 0 without a server.
  std::uint16_t update_port() const { return update_port_; }
  /// The address the rig itself connects to for update_port(): the
  /// `listen` address, or 127.0.0.1 when it listens on loopback or on every
  /// address.
  const std::string& connect_address() const { return connect_address_; }
  /// The base URL of the server itself (bypassing the proxy).
  std::string server_url() const;
  net::UpdateServer* server() const { return server_.get(); }
  net::FaultProxy* proxy() const { return proxy_.get(); }
  /// The CA (PEM file) the server's certificate chains to; empty without TLS.
  const std::filesystem::path& ca_file() const { return ca_; }

  /// With network.device_api: the server's device API and the device's own
  /// key (the rig provisions it: ${device_key}, $OTARIG_DEVICE_KEY, the only
  /// key the API accepts); null / empty otherwise.
  net::DeviceManagementApi* device_api() const { return device_api_.get(); }
  const std::filesystem::path& device_key_file() const { return device_key_; }
  /// With network.device_api hawkbit: the device's target token, a file the
  /// rig provisions into its storage (${target_token}, $OTARIG_TARGET_TOKEN,
  /// the only token the DDI API accepts); empty otherwise.
  const std::filesystem::path& target_token_file() const { return target_token_; }

  /// The package CA certificate file written into the storage (from
  /// BindContext::package_trust_pem, ${package_ca}); empty without one.
  const std::filesystem::path& package_ca_file() const { return package_ca_; }

  /// Replaces ${storage}, ${board}, ${update_url}, ${update_port}, ${profile_dir},
  /// ${package_ca}, ${aes_key}, ${device_key}, ${target_token}, and any `extra` names; an
  /// unknown ${name} is left as it is.
  std::string expand(std::string_view text,
                     const std::vector<std::pair<std::string, std::string>>& extra = {}) const;
  /// The variables the rig passes to a device program: OTARIG_BOARD,
  /// OTARIG_STORAGE, OTARIG_UPDATE_URL, OTARIG_TRUSTED_KEYS, and with TLS
  /// OTARIG_CA (and OTARIG_CLIENT_CERT, OTARIG_CLIENT_KEY for mutual TLS);
  /// with a device API OTARIG_DEVICE_KEY (Mender) or OTARIG_TARGET_TOKEN,
  /// OTARIG_DDI_TENANT, OTARIG_DDI_CONTROLLER_ID (hawkBit).
  std::vector<std::pair<std::string, std::string>> environment() const;

  /// ProvisionProtocol: powers the device off (the switch set_power() gave),
  /// then writes the image as `provision.format` says. BenchError when the
  /// board has no provisioning or the writing fails.
  void provision(std::span<const std::uint8_t> image) override;

  /// The board's power switch, for provision() to switch off first.
  void set_power(std::weak_ptr<PowerProtocol> power);
  /// The board's debug probe, for `format: probe`.
  void set_probe(std::weak_ptr<ProbeProtocol> probe);

 private:
  /// The image as a file in the storage (for a command or a probe to read).
  std::filesystem::path provision_image_file(std::span<const std::uint8_t> image) const;
  void run_provision_command(std::span<const std::uint8_t> image);
  void program_with_probe(std::span<const std::uint8_t> image, PowerProtocol* power);

  DeviceConfig cfg_;
  std::string board_;
  std::filesystem::path profile_dir_;
  std::filesystem::path storage_;
  bool remove_storage_ = false;
  SteadyClock steady_;
  Clock* clock_ = nullptr;
  std::vector<crypto::PublicKey> trusted_;
  std::vector<image::TrustEntry> trust_;
  std::string device_type_;  ///< the profile's device_type (OTARIG_DEVICE_TYPE)
  std::string encryption_secret_;  ///< hex X25519 secret of the profile's encryption.device_key (OTARIG_ENCRYPTION_KEY)
  std::filesystem::path ca_, client_cert_, client_key_;
  std::filesystem::path package_ca_;
  std::filesystem::path aes_key_;  ///< BindContext::aes_key_file, ${aes_key}
  std::unique_ptr<net::UpdateServer> server_;
  std::shared_ptr<net::DeviceManagementApi> device_api_;
  std::shared_ptr<net::HawkbitDdiApi> ddi_;
  std::filesystem::path device_key_;
  std::filesystem::path target_token_;
  std::unique_ptr<net::FaultProxy> proxy_;
  std::string update_url_;
  std::uint16_t update_port_ = 0;
  std::string connect_address_ = "127.0.0.1";
  mutable std::mutex power_mu_;
  std::weak_ptr<PowerProtocol> power_;
  std::weak_ptr<ProbeProtocol> probe_;
  /// Makes provisioned flashes (and caches them per image).
  std::unique_ptr<vboard::VirtualBoard> provisioner_;
};

/// The DeviceHost a board's parts were built around (device kind `process`
/// or `lab`), or null.
std::shared_ptr<DeviceHost> find_device_host(const BoardParts& parts);

}  // namespace otarig::drivers::process
