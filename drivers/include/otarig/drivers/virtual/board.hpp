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

#include "otarig/drivers/clock.hpp"
#include "otarig/drivers/config.hpp"
#include "otarig/drivers/crypto.hpp"
#include "otarig/drivers/protocols.hpp"
#include "otarig/drivers/registry.hpp"
#include "otarig/drivers/virtual/flash.hpp"

namespace otarig::drivers::vboard {

/// How the bootloader chooses and installs images. Only `ab` is implemented;
/// the others are named so a profile asking for them gets a clear error.
enum class BootMode { ab, swap_scratch, swap_move, overwrite_only, direct_xip };
const char* to_string(BootMode mode);
bool is_implemented(BootMode mode);

/// Deliberate flaws a board variant can carry (profile `device.defects`).
/// Each is checked at the one place in the firmware where the flaw lives.
enum class Defect {
  inplace_overwrite,  ///< agent: writes the running slot in place (single-slot updater)
  no_rollback_check,  ///< agent + bootloader: never compares security counter or version
  no_signature_check,
  hash_only,
  verify_on_stage_only,
  no_revert,
  confirm_before_selftest,
  counter_raised_on_stage,
  counter_not_persisted,
  version_ignores_major,
  copy_unverified,
  wrong_write_order,
  stale_trailer,
  any_key,
};
inline constexpr std::size_t kDefectCount = 14;
/// The profile name, e.g. "inplace-overwrite".
const char* to_string(Defect defect);
std::optional<Defect> defect_from_string(std::string_view name);
bool is_implemented(Defect defect);

/// The board's configuration (profile `device` section).
struct BoardConfig {
  BootMode mode = BootMode::ab;
  FlashGeometry flash;
  std::uint64_t chunk_size = 4096;
  std::chrono::milliseconds boot_time{200};
  std::bitset<kDefectCount> defects;
  /// Materialize counted power cuts from a recorded uncut delivery.
  bool fast_sweep = true;
  /// Boots within one power-on without a healthy application before the device gives up.
  unsigned max_boots = 8;

  bool has(Defect d) const { return defects.test(static_cast<std::size_t>(d)); }
  BoardConfig& with(Defect d) {
    defects.set(static_cast<std::size_t>(d));
    return *this;
  }
  /// Empty when usable, else what is wrong.
  std::string problem() const;
  /// Reads `kind, mode, flash{slot_size, sector_size, program_align,
  /// metadata_sectors}, chunk_size, boot_time, defects, fast_sweep`; every
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
                           public FlashFaultProtocol {
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

  const BoardConfig& config() const;
  RunState run_state() const;
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
