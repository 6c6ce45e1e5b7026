#pragma once
// The virtual board's NOR flash (docs/virtual-board.md): erase sectors, aligned
// programs that can only clear bits, erased value 0xFF. Every erase and program
// goes through one counted path where an armed FlashCut stops the device
// before (or in the middle of) operation k.
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "otarig/drivers/protocols.hpp"

namespace otarig::drivers::vboard {

using Bytes = std::vector<std::uint8_t>;

/// Layout: slot A, slot B, the boot-state (metadata) area, the counter area,
/// and the swap area (the scratch sector of swap-scratch, the primary's extra
/// sector of swap-move; absent in the other modes).
struct FlashGeometry {
  static constexpr int kSlots = 2;

  std::uint64_t slot_size = 1u << 20;
  std::uint64_t sector_size = 4096;
  std::uint64_t program_align = 8;
  std::uint32_t metadata_sectors = 2;
  std::uint32_t counter_sectors = 1;
  std::uint32_t swap_sectors = 0;
  /// The second image's slots (docs/virtual-board.md, "A second image"):
  /// two slots of this size after the swap area, then its own boot-state
  /// area of `image1_meta_sectors`; 0 when the device has no second image.
  std::uint64_t image1_slot_size = 0;
  std::uint32_t image1_meta_sectors = 2;

  std::uint64_t slot_offset(int slot) const { return static_cast<std::uint64_t>(slot) * slot_size; }
  std::uint64_t slot_sectors() const { return slot_size / sector_size; }
  std::uint64_t metadata_offset() const { return kSlots * slot_size; }
  std::uint64_t counter_offset() const { return metadata_offset() + metadata_sectors * sector_size; }
  std::uint64_t swap_offset() const { return counter_offset() + counter_sectors * sector_size; }
  std::uint64_t image1_offset(int slot) const {
    return swap_offset() + swap_sectors * sector_size + static_cast<std::uint64_t>(slot) * image1_slot_size;
  }
  std::uint64_t image1_meta_offset() const { return image1_offset(kSlots); }
  std::uint64_t total_size() const {
    return image1_slot_size ? image1_meta_offset() + image1_meta_sectors * sector_size
                            : swap_offset() + swap_sectors * sector_size;
  }
  std::uint64_t sector_count() const { return total_size() / sector_size; }
  /// The slot holding `address`, or -1 outside the slots.
  int slot_of(std::uint64_t address) const;
  /// Empty when the geometry is usable, else what is wrong with it.
  std::string problem() const;
};

/// Everything a snapshot of the flash holds: the bytes, each sector's content
/// id and the per-sector erase counts.
struct FlashState {
  Bytes bytes;
  /// Per sector, a name for its content: 0 for an erased sector; a whole
  /// sector programmed onto an erased one as a copy of another sector
  /// (NorFlash::program_copy) takes that sector's id; any other change takes a
  /// fresh process-wide unique id. Equal ids mean equal bytes, so verification
  /// results can be memoized on the ids of a slot (NorFlash::generation).
  std::vector<std::uint64_t> sector_ids;
  std::vector<std::uint32_t> erase_counts;
};

/// Thrown by a counted flash operation when the armed cut falls: the device
/// loses power, its RAM state unwinds (destructors run), the flash keeps what
/// was written. Deliberately not a std::exception, so device code that handles
/// std::exception cannot swallow a power loss.
struct PowerLoss {
  FlashOp op;
  bool torn = false;
};

/// Thrown by a counted flash operation armed to fail (FlashCut::error): the
/// flash controller reports an erase or program that did not complete. The
/// device keeps its power; what the op left is as FlashCut::torn says.
class FlashError : public std::runtime_error {
 public:
  FlashError(FlashOp failed, const std::string& what) : std::runtime_error(what), op(std::move(failed)) {}
  FlashOp op;
};

const char* to_string(FlashOp::Kind kind);
/// "program 0x00010000+4096 (phase download)".
std::string describe(const FlashOp& op);

/// The NOR flash with counted operations.
class NorFlash {
 public:
  /// Called for every counted operation that is applied in full, before it is
  /// applied, with the data a program writes (empty for an erase).
  using Observer = std::function<void(const FlashOp&, std::span<const std::uint8_t>)>;

  /// An erased flash. The geometry must have no problem() (std::invalid_argument).
  explicit NorFlash(const FlashGeometry& geometry);

  const FlashGeometry& geometry() const { return geometry_; }
  const FlashState& state() const { return state_; }
  std::span<const std::uint8_t> bytes() const { return state_.bytes; }
  /// A range of the flash; std::logic_error when it leaves the flash.
  std::span<const std::uint8_t> read(std::uint64_t address, std::uint64_t length) const;
  /// A name for the contents of a slot (or of the metadata area): equal names,
  /// equal bytes (a combination of the sector ids).
  std::uint64_t generation(int slot) const;
  std::uint64_t metadata_generation() const;
  /// The same for `sectors` sectors from `offset` (a sector boundary).
  std::uint64_t area_generation(std::uint64_t offset, std::uint64_t sectors) const;

  // Counted operations. Misuse (out of range, misaligned, a program that would
  // set a bit from 0 to 1) is a bug of the device model: std::logic_error
  // naming the address. An armed cut throws PowerLoss, an armed error FlashError.
  void erase(std::uint64_t sector_address, std::string_view phase);
  void program(std::uint64_t address, std::span<const std::uint8_t> data, std::string_view phase);
  /// A counted program of `length` bytes at `address` with the bytes now at
  /// `source` (a copy between areas, e.g. a bootloader's swap). A whole sector
  /// copied onto an erased sector keeps its content id.
  void program_copy(std::uint64_t address, std::uint64_t source, std::uint64_t length, std::string_view phase);

  // Fault control (FlashFaultProtocol).
  void arm(const FlashCut& cut);
  void disarm();
  const FlashCut& cut() const { return cut_; }
  /// Operations applied since arm(); a torn operation counts, a cut before an op does not
  /// (nor a failed op that left nothing).
  std::uint64_t ops_counted() const { return completed_; }
  /// Operations issued since arm(), the cut one included.
  std::uint64_t ops_issued() const { return issued_; }
  std::optional<FlashOp> fired() const { return fired_; }
  void set_observer(Observer observer) { observer_ = std::move(observer); }

  /// Replaces the contents, content ids and erase counts with `state`
  /// (which must match the geometry); the fault counters stay as they are.
  void restore(const FlashState& state);
  /// Restores `before` (the state after ops 1..op.index-1), then lets the cut
  /// at `op` fall exactly as the counted path would: the counters, fired()
  /// and, for a torn cut, the partly applied op. Used by the fast sweep.
  void replay_cut(const FlashState& before, const FlashOp& op, std::span<const std::uint8_t> data);

  // Uncounted access: factory programming, debug-probe writes, faults at rest.
  /// Overwrites bytes without NOR rules.
  void write_raw(std::uint64_t address, std::span<const std::uint8_t> data);
  /// Inverts one bit without NOR rules (a storage fault at rest).
  void flip_bit_raw(std::uint64_t address, unsigned bit);
  /// Every byte 0xFF, erase counts zero.
  void erase_all_raw();
  void reset_erase_counts();

  /// Bumped by every change of contents (counted or not), so an owner can
  /// tell whether the flash is still as it left it.
  std::uint64_t mutations() const { return mutations_; }

  // The operations themselves, on any state of this geometry (the fast sweep
  // advances its own copy with them). `source_id`: the content id of the
  // sector a whole-sector program copies (see FlashState::sector_ids).
  static void check_op(const FlashGeometry& g, const FlashState& s, const FlashOp& op,
                       std::span<const std::uint8_t> data);
  static void apply_op(const FlashGeometry& g, FlashState& s, const FlashOp& op,
                       std::span<const std::uint8_t> data, std::optional<std::uint64_t> source_id = std::nullopt);
  /// Applies a seeded part of `op`: an erase sets a subset of the sector's
  /// bytes to 0xFF, a program applies a subset of its bit clears.
  static void apply_torn(const FlashGeometry& g, FlashState& s, const FlashOp& op,
                         std::span<const std::uint8_t> data, std::uint64_t seed);

 private:
  void counted(FlashOp op, std::span<const std::uint8_t> data, std::optional<std::uint64_t> source_id = std::nullopt);

  FlashGeometry geometry_;
  FlashState state_;
  FlashCut cut_;
  std::uint64_t issued_ = 0;
  std::uint64_t completed_ = 0;
  std::optional<FlashOp> fired_;
  Observer observer_;
  std::uint64_t mutations_ = 0;
  Bytes copy_buffer_;
};

/// A fresh process-wide unique content id (never 0, the id of an erased sector).
std::uint64_t next_generation();

}  // namespace otarig::drivers::vboard
