#pragma once
// The in-process virtual board (docs/virtual-board.md): an emulated MCU with
// NOR flash, a bootloader, an OTA agent and an application, deterministic and
// driven synchronously. One VirtualBoard implements every protocol the
// harness needs: power, console, update link, provisioning and counted flash
// faults.
#include <bitset>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "otarig/core/clock.hpp"
#include "otarig/core/config.hpp"
#include "otarig/core/crypto.hpp"
#include "otarig/core/image.hpp"
#include "otarig/drivers/protocols.hpp"
#include "otarig/drivers/registry.hpp"
#include "otarig/drivers/virtual/flash.hpp"

namespace otarig::drivers::vboard {

/// How the bootloader chooses and installs images (the MCUboot families;
/// docs/virtual-board.md): A/B with trial boot, swap using a scratch sector,
/// swap by moving sectors up by one, overwrite-only, and direct-XIP A/B.
enum class BootMode { ab, swap_scratch, swap_move, overwrite_only, direct_xip };
const char* to_string(BootMode mode);
std::optional<BootMode> mode_from_string(std::string_view name);
bool is_implemented(BootMode mode);
/// The boot-state record magic of a mode (each mode has its own layout).
std::uint32_t record_magic(BootMode mode);

/// Deliberate flaws a board variant can carry (profile `device.defects`).
/// Each is checked at the one place in the firmware where the flaw lives;
/// boards/README.md lists the oracle that catches each.
enum class Defect {
  inplace_overwrite,        ///< agent: writes the running slot in place (single-slot updater)
  no_rollback_check,        ///< agent + bootloader: never compares security counter or version
  no_signature_check,       ///< verification: structure only, no hash, key or signature
  hash_only,                ///< verification: SHA-256 checked, key and signature not
  verify_on_stage_only,     ///< bootloader: boots without verifying (the agent verified when staging)
  no_revert,                ///< ab bootloader: an unconfirmed trial boots again instead of being reverted
  confirm_before_selftest,  ///< application: confirms a trial before its self-test runs
  counter_raised_on_stage,  ///< agent: raises the counter when staging, before the trial is confirmed
  counter_not_persisted,    ///< counter raises live in RAM only
  version_ignores_major,    ///< version comparison ignores the major number
  copy_unverified,          ///< overwrite-only bootloader: trusts a copied primary, never verifies it again
  wrong_write_order,        ///< ab agent: commits (new slot primary, counter raised) before writing the image
  stale_trailer,            ///< swap bootloader: a new swap starts from the progress the last one left
  any_key,                  ///< verification: a signature by an unknown key is accepted
  trusts_stated_digest,     ///< verification: the signature over the trailer's SHA-256 is checked, the
                            ///< SHA-256 of header+payload is never recomputed and compared
  version_string_compare,   ///< version comparison compares the texts ("1.1.9" after "1.1.10" is newer)
  ignores_revocation,       ///< key store: a trust update's revocations are skipped (additions still apply)
  validity_by_raw_clock,    ///< agent: the signer's validity is judged against the raw device clock, whatever
                            ///< the declared policy (a clock at 1970 refuses every update)
  delta_in_place,           ///< ab agent: patches a delta release over the running slot (the base read into RAM first)
  ignores_device_type,      ///< agent + bootloader: never compare the image's device type with the device's
  ignores_dependency,       ///< agent + bootloader: never check an image's dependency on the other image
  image1_in_place,          ///< agent: writes the second image over its running slot (no A/B for it)
  decrypt_before_verify,    ///< agent: decrypts an encrypted image into the slot before verifying it
};
inline constexpr std::size_t kDefectCount = 23;

/// How the agent judges a signer's validity period (`device.policy.signer_expiry`).
enum class SignerExpiry { enforced, signing_time, ignored };
/// The profile name, e.g. "inplace-overwrite".
const char* to_string(Defect defect);
std::optional<Defect> defect_from_string(std::string_view name);
bool is_implemented(Defect defect);
/// Whether the flaw is modelled in `mode` (some flaws live in one bootloader only).
bool applies_to(Defect defect, BootMode mode);

/// The board's configuration (profile `device` section).
struct BoardConfig {
  BootMode mode = BootMode::ab;
  FlashGeometry flash;
  std::uint64_t chunk_size = 4096;
  std::chrono::milliseconds boot_time{200};
  std::bitset<kDefectCount> defects;
  /// Materialize counted power cuts from a recorded uncut delivery.
  bool fast_sweep = true;
  /// The status line also names the SHA-256 of the running payload alone
  /// (` payload=HEX`), as a device that knows only its payload's hash does.
  bool status_payload = false;
  /// Boots within one power-on without a healthy application before the device gives up.
  unsigned max_boots = 8;
  /// `device.policy.signer_expiry` (default enforced).
  SignerExpiry signer_expiry = SignerExpiry::enforced;
  /// `device.policy.clock_1970: recovers`: the agent never takes its clock to
  /// be earlier than the signing time of the last image it confirmed (as
  /// systemd keeps the clock at or after its last known time).
  bool clock_floor = false;
  /// The device's type (the profile's `device_type`): an image for another
  /// type is refused. All zero: none declared, every image's type is taken.
  image::DeviceType device_type{};
  /// The name `device_type` was made from, for messages.
  std::string device_type_name;
  /// The second updatable image (profile `device.second_image: {name,
  /// slot_size}`): its name in messages and the status line's `image1=`;
  /// empty when the device has none (flash.image1_slot_size is then 0).
  std::string image1_name;
  /// The device's X25519 secret for encrypted images (docs/image-format.md,
  /// "Encrypted payloads"); nullopt: it refuses encrypted images.
  std::optional<std::array<std::uint8_t, 32>> encryption_secret;

  bool has(Defect d) const { return defects.test(static_cast<std::size_t>(d)); }
  /// The flash layout the mode needs: `flash` plus the swap area of the swap modes.
  FlashGeometry layout() const;
  BoardConfig& with(Defect d) {
    defects.set(static_cast<std::size_t>(d));
    return *this;
  }
  /// Empty when usable, else what is wrong.
  std::string problem() const;
  /// Reads `kind, mode, flash{slot_size, sector_size, program_align,
  /// metadata_sectors}, second_image{name, slot_size}, chunk_size, boot_time, defects, fast_sweep, status_payload`; every
  /// error is an InputError naming file and line.
  static BoardConfig from_config(const Config& device);
};

/// Where the device is, as seen from outside.
enum class RunState {
  off,      ///< no power
  bricked,  ///< powered, but the bootloader found nothing to boot (silent)
  running,  ///< an application is up (healthy or not)
};

class VirtualBoard final : public PowerProtocol,
                           public ConsoleProtocol,
                           public UpdateLinkProtocol,
                           public ProvisionProtocol,
                           public FlashFaultProtocol,
                           public DeviceClockProtocol,
                           public StorageScanProtocol {
 public:
  /// `clock` (optional, not owned) receives the modelled time: boots, and
  /// console reads that find nothing.
  VirtualBoard(BoardConfig config, std::vector<crypto::PublicKey> trusted_keys, Clock* clock = nullptr);
  ~VirtualBoard() override;
  VirtualBoard(const VirtualBoard&) = delete;
  VirtualBoard& operator=(const VirtualBoard&) = delete;

  // PowerProtocol
  void on() override;
  void off() override;
  void cycle(std::chrono::milliseconds off_time) override;
  bool is_on() const override;

  // ConsoleProtocol: accepts `status\n`.
  void write(std::string_view bytes) override;
  std::string read(std::chrono::milliseconds timeout) override;

  // UpdateLinkProtocol: the OTA agent; runs the whole update (stream, verify,
  // stage, reboot, trial boot, self-test, confirm) before returning.
  DeliveryResult deliver(std::span<const std::uint8_t> image) override;

  // ProvisionProtocol: slot A = image, confirmed, counter = its security
  // counter, power off. InputError when the image cannot be parsed or does not fit.
  void provision(std::span<const std::uint8_t> image) override;

  // FlashFaultProtocol
  void arm(const FlashCut& cut) override;
  void disarm() override;
  std::uint64_t ops_counted() const override;
  std::optional<FlashOp> fired() const override;
  std::vector<std::uint32_t> erase_counts() const override;

  // StorageScanProtocol: the whole flash.
  bool storage_contains(std::span<const std::uint8_t> needle, std::string* where) const override;
  /// Flips seeded bits of the image in a slot (the device is switched off first).
  std::optional<std::string> flip_at_rest(const StorageFlip& flip) override;

  /// DeviceClockProtocol: the RTC the agent reads from the next power-on
  /// (host: the host's system clock, which libfaketime fakes under a process).
  void set_device_time(const DeviceTime& time) override;

  /// The factory key store (the trusted keys with their validity periods);
  /// provisioning restores it. Without a call: `trusted_keys`, unbounded.
  void set_trust(std::vector<image::TrustEntry> trust);
  /// The key store as it is now (factory keys, keys added and revoked by trust updates).
  const std::vector<image::TrustEntry>& key_store() const;
  /// What outlives power loss besides the flash: the key store, the clock
  /// floor, and the server CAs trust updates added (DER, in the order added;
  /// the in-process board keeps them, though it has no TLS client: a process
  /// board's (otarig-vboard) TLS client trusts them).
  struct KeyState {
    std::vector<image::TrustEntry> keys;
    std::uint64_t time_floor = 0;
    std::vector<std::vector<std::uint8_t>> server_cas;
  };
  KeyState key_state() const;
  void restore_key_state(const KeyState& state);
  /// The device's clock now, UNIX seconds.
  std::uint64_t device_now() const;

  const BoardConfig& config() const;
  RunState run_state() const;
  /// The header of the image the application runs from, while it runs (what
  /// the firmware knows of itself: version and anti-rollback counter).
  std::optional<image::Header> running() const;
  /// The flash, for inspection and for writes at rest (a debug probe's view).
  NorFlash& flash();
  const NorFlash& flash() const;

  /// Work counters (evidence that the caches and the fast sweep hold).
  struct Stats {
    std::uint64_t sha256_bytes = 0;  ///< bytes hashed to verify slots or report digests
    std::uint64_t recorded_deliveries = 0;
    std::uint64_t replayed_cuts = 0;  ///< deliveries answered by the fast sweep
    std::uint64_t slow_deliveries = 0;
  };
  Stats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The board a profile's `device` section describes (the "virtual" device
/// factory): trusted keys and clock come from `context`.
std::shared_ptr<VirtualBoard> make_virtual_board(const Config& device, const BindContext& context);

}  // namespace otarig::drivers::vboard
