#pragma once
// The virtual board's persistent state besides the slots: the power-fail-safe
// boot-state log (metadata area) and the increment-only anti-rollback counter
// (counter area). Layouts: docs/virtual-board.md.
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "otarig/drivers/virtual/flash.hpp"

namespace otarig::drivers::vboard {

/// Record magic per boot mode: each mode keeps its own status layout, so a
/// flash written by one mode reads as "no state" to another.
inline constexpr std::uint32_t kBootRecordMagic = 0x5342544f;     // "OTBS" ab
inline constexpr std::uint32_t kSwapScratchMagic = 0x4353544f;    // "OTSC" swap-scratch
inline constexpr std::uint32_t kSwapMoveMagic = 0x4d53544f;       // "OTSM" swap-move
inline constexpr std::uint32_t kOverwriteMagic = 0x574f544f;      // "OTOW" overwrite-only
inline constexpr std::uint32_t kDirectXipMagic = 0x5844544f;      // "OTDX" direct-xip
inline constexpr std::uint32_t kImage1Magic = 0x3149544f;         // "OTI1" the second image's A/B state
inline constexpr std::size_t kBootRecordSize = 32;
/// `pending` value meaning "no slot".
inline constexpr std::uint8_t kNoSlot = 0xFF;
/// Size of one anti-rollback counter word.
inline constexpr std::size_t kCounterWord = 8;

/// What a copy between slots that is in progress is for (swap and overwrite modes).
enum class SwapKind : std::uint8_t {
  none = 0,
  test = 1,       ///< swap a staged image in for a trial boot
  revert = 2,     ///< swap an unconfirmed trial image back out
  permanent = 3,  ///< swap a valid secondary in because the primary does not verify
  install = 4,    ///< overwrite-only: copy the staged image over the primary
  restore = 5,    ///< overwrite-only: copy the secondary back over a corrupt primary
};
const char* to_string(SwapKind kind);

/// direct-xip: what a slot holds.
enum class SlotState : std::uint8_t {
  empty = 0,      ///< nothing to boot (or being downloaded)
  pending = 1,    ///< staged, not tried yet
  trial = 2,      ///< booted once as a trial, not confirmed
  confirmed = 3,  ///< confirmed by its application
  rejected = 4,   ///< failed verification or its trial
};
const char* to_string(SlotState state);

/// Record flag (overwrite-only): the primary was installed by a copy of a verified image.
inline constexpr std::uint8_t kRecordCopied = 0x01;

/// One boot-state record. The newest valid record (highest seq) is the state.
/// Layout (docs/virtual-board.md): magic u32, seq u32, primary u8, pending u8,
/// trial u8, confirmed u8, swap u8, flags u8, slot_state[2] u8, done u32,
/// sectors u32, 4 reserved bytes (zero), CRC-32 u32 over bytes 0..27.
struct BootRecord {
  std::uint32_t seq = 0;
  std::uint8_t primary = 0;        ///< the slot that boots normally
  std::uint8_t pending = kNoSlot;  ///< a staged slot to try next, or kNoSlot
  bool trial_active = false;       ///< ab: `pending` runs as a trial; swap modes: the primary does
  bool confirmed = true;           ///< `primary` has been confirmed
  SwapKind swap = SwapKind::none;  ///< a copy in progress
  std::uint8_t flags = 0;          ///< kRecordCopied
  std::array<SlotState, 2> slot_state{SlotState::empty, SlotState::empty};  ///< direct-xip
  std::uint32_t done = 0;          ///< steps of the copy in progress completed
  std::uint32_t sectors = 0;       ///< sectors the copy in progress covers
  bool operator==(const BootRecord&) const = default;
};

/// CRC-32 (IEEE 802.3, reflected, as zlib's crc32).
std::uint32_t crc32(std::span<const std::uint8_t> data);
std::array<std::uint8_t, kBootRecordSize> encode(const BootRecord& record, std::uint32_t magic = kBootRecordMagic);
/// nullopt for an erased, torn or foreign record (magic or CRC wrong).
std::optional<BootRecord> decode(std::span<const std::uint8_t, kBootRecordSize> bytes,
                                 std::uint32_t magic = kBootRecordMagic);

/// The boot-state log: fixed-size records appended in erased space of one
/// metadata sector; when that sector is full the next sector (in ring order) is
/// erased and the new record written at its start. A cut at any point leaves
/// the last valid record readable: the sector holding it is never erased
/// while it is the newest. The scan is cached on the metadata area's write
/// generation, so appending many records (a swap's progress) stays cheap.
class BootStateLog {
 public:
  explicit BootStateLog(NorFlash& flash, std::uint32_t magic = kBootRecordMagic);
  /// A log in `sectors` sectors from `offset` (the second image's area).
  BootStateLog(NorFlash& flash, std::uint32_t magic, std::uint64_t offset, std::uint32_t sectors);
  /// The valid record with the highest seq, if any.
  std::optional<BootRecord> read() const;
  /// Appends `record` with seq = newest + 1 (counted ops with `phase`); returns what was written.
  BootRecord append(BootRecord record, std::string_view phase);
  /// Factory programming (uncounted): the log holds only `record` (seq 1).
  void format_raw(BootRecord record);
  std::uint32_t magic() const { return magic_; }

  struct Scan {
    std::optional<BootRecord> newest;
    std::uint32_t newest_sector = 0;
    /// Per sector: index of the first record position after the last non-erased one.
    std::vector<std::uint64_t> next_free;
  };

 private:
  const Scan& scan() const;
  std::uint64_t generation() const { return flash_.area_generation(offset_, sectors_); }
  NorFlash& flash_;
  std::uint32_t magic_;
  std::uint64_t offset_ = 0;
  std::uint32_t sectors_ = 0;
  mutable Scan cache_;
  mutable std::uint64_t cache_generation_ = 0;  ///< 0: nothing cached
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
