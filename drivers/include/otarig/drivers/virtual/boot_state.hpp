#pragma once
// The virtual board's persistent state besides the slots: the power-fail-safe
// boot-state log (metadata area) and the increment-only anti-rollback counter
// (counter area). Layouts: docs/virtual-board.md.
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "otarig/drivers/virtual/flash.hpp"

namespace otarig::drivers::vboard {

inline constexpr std::uint32_t kBootRecordMagic = 0x5342544f;  // "OTBS"
inline constexpr std::size_t kBootRecordSize = 32;
/// `pending` value meaning "no slot".
inline constexpr std::uint8_t kNoSlot = 0xFF;
/// Size of one anti-rollback counter word.
inline constexpr std::size_t kCounterWord = 8;

/// One boot-state record. The newest valid record (highest seq) is the state.
struct BootRecord {
  std::uint32_t seq = 0;
  std::uint8_t primary = 0;        ///< the slot that boots normally
  std::uint8_t pending = kNoSlot;  ///< a staged slot to try next, or kNoSlot
  bool trial_active = false;       ///< `pending` is booted as a trial and not yet confirmed
  bool confirmed = true;           ///< `primary` has been confirmed
  bool operator==(const BootRecord&) const = default;
};

/// CRC-32 (IEEE 802.3, reflected, as zlib's crc32).
std::uint32_t crc32(std::span<const std::uint8_t> data);
std::array<std::uint8_t, kBootRecordSize> encode(const BootRecord& record);
/// nullopt for an erased, torn or foreign record (magic or CRC wrong).
std::optional<BootRecord> decode(std::span<const std::uint8_t, kBootRecordSize> bytes);

/// The boot-state log: fixed-size records appended in erased space of one
/// metadata sector; when that sector is full the next sector (in ring order) is
/// erased and the new record written at its start. A cut at any point leaves
/// the last valid record readable: the sector holding it is never erased
/// while it is the newest.
class BootStateLog {
 public:
  explicit BootStateLog(NorFlash& flash) : flash_(flash) {}
  /// The valid record with the highest seq, if any.
  std::optional<BootRecord> read() const;
  /// Appends `record` with seq = newest + 1 (counted ops with `phase`); returns what was written.
  BootRecord append(BootRecord record, std::string_view phase);
  /// Factory programming (uncounted): the log holds only `record` (seq 1).
  void format_raw(BootRecord record);

 private:
  NorFlash& flash_;
};

/// The anti-rollback counter: like OTP fuses, its value is the number of
/// 8-byte words in the counter area with any bit cleared, so it can only grow.
class AntiRollbackCounter {
 public:
  explicit AntiRollbackCounter(NorFlash& flash) : flash_(flash) {}
  std::uint32_t value() const;
  /// The highest value the area can hold.
  std::uint32_t capacity() const;
  /// Programs words until value() >= n (one counted op); std::logic_error beyond capacity().
  void raise_to(std::uint32_t n, std::string_view phase);
  /// Factory programming (uncounted).
  void set_raw(std::uint32_t n);

 private:
  NorFlash& flash_;
};

}  // namespace otarig::drivers::vboard
