#include "otarig/drivers/virtual/flash.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <random>
#include <stdexcept>

namespace otarig::drivers::vboard {
namespace {

bool is_power_of_two(std::uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// Bytes drawn eight at a time from a std::mt19937_64 (the engine's output is
// specified by the standard; the distributions are not).
class RandomBytes {
 public:
  explicit RandomBytes(std::uint64_t seed) : rng_(seed) {}
  std::uint64_t word() { return rng_(); }
  std::uint8_t byte() {
    if (left_ == 0) {
      bits_ = rng_();
      left_ = 8;
    }
    auto b = static_cast<std::uint8_t>(bits_);
    bits_ >>= 8;
    --left_;
    return b;
  }

 private:
  std::mt19937_64 rng_;
  std::uint64_t bits_ = 0;
  int left_ = 0;
};

// Every sector the op touches gets a fresh content id.
void fresh_ids(const FlashGeometry& g, FlashState& s, std::uint64_t address, std::uint64_t length) {
  if (length == 0) return;
  for (auto sec = address / g.sector_size; sec <= (address + length - 1) / g.sector_size; ++sec)
    s.sector_ids[sec] = next_generation();
}

// Whether every sector the range touches is erased (content id 0).
bool all_erased_sectors(const FlashGeometry& g, const FlashState& s, std::uint64_t address, std::uint64_t length) {
  if (length == 0) return true;
  for (auto sec = address / g.sector_size; sec <= (address + length - 1) / g.sector_size; ++sec)
    if (s.sector_ids[sec] != 0) return false;
  return true;
}

std::uint64_t combine_ids(const std::vector<std::uint64_t>& ids, std::uint64_t first, std::uint64_t count) {
  std::uint64_t h = 0x6f746172696721ULL;
  for (std::uint64_t i = first; i < first + count; ++i) {
    h ^= ids[i];
    h *= 0x100000001b3ULL;
    h ^= h >> 29;
  }
  return h;
}

}  // namespace

std::uint64_t next_generation() {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

const char* to_string(FlashOp::Kind kind) { return kind == FlashOp::Kind::erase ? "erase" : "program"; }

std::string describe(const FlashOp& op) {
  return fmt::format("{} {:#010x}+{} (phase {})", to_string(op.kind), op.address, op.length,
                     op.phase.empty() ? "-" : op.phase);
}

int FlashGeometry::slot_of(std::uint64_t address) const {
  if (address >= metadata_offset()) return -1;
  return static_cast<int>(address / slot_size);
}

std::string FlashGeometry::problem() const {
  if (!is_power_of_two(program_align) || program_align > 8)
    return fmt::format("program_align {} must be 1, 2, 4 or 8", program_align);
  if (sector_size < 64 || sector_size % program_align != 0)
    return fmt::format("sector_size {} must be at least 64 and a multiple of program_align {}", sector_size,
                       program_align);
  if (slot_size == 0 || slot_size % sector_size != 0)
    return fmt::format("slot_size {} must be a nonzero multiple of sector_size {}", slot_size, sector_size);
  if (metadata_sectors < 2) return fmt::format("metadata_sectors {} must be at least 2", metadata_sectors);
  if (counter_sectors < 1) return fmt::format("counter_sectors {} must be at least 1", counter_sectors);
  if (swap_sectors > 64) return fmt::format("swap_sectors {} must be at most 64", swap_sectors);
  if (image1_slot_size % sector_size != 0)
    return fmt::format("the second image's slot_size {} must be a multiple of sector_size {}", image1_slot_size,
                       sector_size);
  if (image1_slot_size && image1_meta_sectors < 2)
    return fmt::format("the second image's metadata_sectors {} must be at least 2", image1_meta_sectors);
  if (total_size() > (std::uint64_t{1} << 32))
    return fmt::format("flash of {} bytes exceeds 4 GiB", total_size());
  return {};
}

NorFlash::NorFlash(const FlashGeometry& geometry) : geometry_(geometry) {
  if (auto p = geometry_.problem(); !p.empty()) throw std::invalid_argument("flash geometry: " + p);
  erase_all_raw();
  mutations_ = 0;
}

std::span<const std::uint8_t> NorFlash::read(std::uint64_t address, std::uint64_t length) const {
  if (address > state_.bytes.size() || length > state_.bytes.size() - address)
    throw std::logic_error(fmt::format("flash: read {:#010x}+{} leaves the flash ({} bytes)", address, length,
                                       state_.bytes.size()));
  return std::span<const std::uint8_t>(state_.bytes).subspan(address, length);
}

void NorFlash::check_op(const FlashGeometry& g, const FlashState& s, const FlashOp& op,
                        std::span<const std::uint8_t> data) {
  const auto size = g.total_size();
  if (op.address > size || op.length > size - op.address)
    throw std::logic_error(fmt::format("flash: {} at {:#010x}+{} leaves the flash ({} bytes)",
                                       to_string(op.kind), op.address, op.length, size));
  if (op.kind == FlashOp::Kind::erase) {
    if (op.address % g.sector_size != 0 || op.length != g.sector_size)
      throw std::logic_error(fmt::format("flash: erase at {:#010x}+{} is not one {}-byte sector", op.address,
                                         op.length, g.sector_size));
    return;
  }
  if (op.address % g.program_align != 0 || op.length % g.program_align != 0)
    throw std::logic_error(fmt::format("flash: program at {:#010x}+{} is not aligned to {} bytes", op.address,
                                       op.length, g.program_align));
  if (data.size() != op.length)
    throw std::logic_error(fmt::format("flash: program at {:#010x}: {} data bytes for length {}", op.address,
                                       data.size(), op.length));
  if (all_erased_sectors(g, s, op.address, op.length)) return;  // nothing to set back from 0 to 1
  const std::uint8_t* cur = s.bytes.data() + op.address;
  // One pass eight bytes at a time; the byte is looked for only on failure.
  std::uint64_t sets = 0;
  std::size_t i = 0;
  for (; i + 8 <= data.size(); i += 8) {
    std::uint64_t c, d;
    std::memcpy(&c, cur + i, 8);
    std::memcpy(&d, data.data() + i, 8);
    sets |= ~c & d;
  }
  for (; i < data.size(); ++i) sets |= static_cast<std::uint8_t>(~cur[i] & data[i]);
  if (sets == 0) return;
  for (std::size_t at = 0; at < data.size(); ++at) {
    if (static_cast<std::uint8_t>(~cur[at] & data[at]) != 0)
      throw std::logic_error(fmt::format(
          "flash: program at {:#010x} would set bits from 0 to 1 (flash {:#04x}, data {:#04x}); erase first",
          op.address + at, cur[at], data[at]));
  }
}

void NorFlash::apply_op(const FlashGeometry& g, FlashState& s, const FlashOp& op,
                        std::span<const std::uint8_t> data, std::optional<std::uint64_t> source_id) {
  auto* dst = s.bytes.data() + op.address;
  if (op.kind == FlashOp::Kind::erase) {
    std::fill_n(dst, op.length, std::uint8_t{0xFF});
    ++s.erase_counts[op.address / g.sector_size];
    s.sector_ids[op.address / g.sector_size] = 0;
    return;
  }
  if (all_erased_sectors(g, s, op.address, op.length)) {
    std::copy(data.begin(), data.end(), dst);  // 0xFF & d == d
  } else {
    std::size_t i = 0;
    for (; i + 8 <= data.size(); i += 8) {
      std::uint64_t c, d;
      std::memcpy(&c, dst + i, 8);
      std::memcpy(&d, data.data() + i, 8);
      c &= d;
      std::memcpy(dst + i, &c, 8);
    }
    for (; i < data.size(); ++i) dst[i] &= data[i];
  }
  const auto sector = op.address / g.sector_size;
  if (source_id && op.address % g.sector_size == 0 && op.length == g.sector_size && s.sector_ids[sector] == 0)
    s.sector_ids[sector] = *source_id;  // an exact copy onto erased flash
  else
    fresh_ids(g, s, op.address, op.length);
}

void NorFlash::apply_torn(const FlashGeometry& g, FlashState& s, const FlashOp& op,
                          std::span<const std::uint8_t> data, std::uint64_t seed) {
  RandomBytes rnd(seed);
  // How far the op got: 0 (nothing) .. 256 (everything), then each byte (erase)
  // or bit (program) lands with that probability.
  const unsigned landed = static_cast<unsigned>(rnd.word() % 257);
  auto* dst = s.bytes.data() + op.address;
  if (op.kind == FlashOp::Kind::erase) {
    for (std::uint64_t i = 0; i < op.length; ++i)
      if (rnd.byte() < landed) dst[i] = 0xFF;
    ++s.erase_counts[op.address / g.sector_size];
  } else {
    for (std::size_t i = 0; i < data.size(); ++i) {
      const auto clears = static_cast<std::uint8_t>(dst[i] & ~data[i]);
      std::uint8_t applied = 0;
      for (int bit = 0; bit < 8; ++bit)
        if (rnd.byte() < landed) applied = static_cast<std::uint8_t>(applied | 1u << bit);
      dst[i] = static_cast<std::uint8_t>(dst[i] & ~(clears & applied));
    }
  }
  fresh_ids(g, s, op.address, op.length);
}

std::uint64_t NorFlash::generation(int slot) const {
  const auto per_slot = geometry_.slot_sectors();
  return combine_ids(state_.sector_ids, static_cast<std::uint64_t>(slot) * per_slot, per_slot);
}

std::uint64_t NorFlash::metadata_generation() const {
  return combine_ids(state_.sector_ids, geometry_.metadata_offset() / geometry_.sector_size, geometry_.metadata_sectors);
}

std::uint64_t NorFlash::area_generation(std::uint64_t offset, std::uint64_t sectors) const {
  return combine_ids(state_.sector_ids, offset / geometry_.sector_size, sectors);
}

void NorFlash::counted(FlashOp op, std::span<const std::uint8_t> data, std::optional<std::uint64_t> source_id) {
  check_op(geometry_, state_, op, data);
  op.index = ++issued_;
  if (!fired_ && cut_.before_op != 0 && cut_.before_op == op.index) {
    fired_ = op;
    if (cut_.torn) {
      apply_torn(geometry_, state_, op, data, cut_.torn_seed);
      ++completed_;
      ++mutations_;
    }
    if (cut_.error)
      throw FlashError(op, fmt::format("flash error: {} failed{}", describe(op), cut_.torn ? " (partly written)" : ""));
    throw PowerLoss{std::move(op), cut_.torn};
  }
  if (observer_) observer_(op, data);
  apply_op(geometry_, state_, op, data, source_id);
  ++completed_;
  ++mutations_;
}

void NorFlash::erase(std::uint64_t sector_address, std::string_view phase) {
  FlashOp op;
  op.kind = FlashOp::Kind::erase;
  op.address = sector_address;
  op.length = geometry_.sector_size;
  op.phase = std::string(phase);
  counted(std::move(op), {});
}

void NorFlash::program(std::uint64_t address, std::span<const std::uint8_t> data, std::string_view phase) {
  FlashOp op;
  op.kind = FlashOp::Kind::program;
  op.address = address;
  op.length = data.size();
  op.phase = std::string(phase);
  counted(std::move(op), data);
}

void NorFlash::program_copy(std::uint64_t address, std::uint64_t source, std::uint64_t length,
                            std::string_view phase) {
  const auto from = read(source, length);
  copy_buffer_.assign(from.begin(), from.end());
  std::optional<std::uint64_t> source_id;
  if (source % geometry_.sector_size == 0 && length == geometry_.sector_size)
    source_id = state_.sector_ids[source / geometry_.sector_size];
  FlashOp op;
  op.kind = FlashOp::Kind::program;
  op.address = address;
  op.length = length;
  op.phase = std::string(phase);
  counted(std::move(op), copy_buffer_, source_id);
}

void NorFlash::arm(const FlashCut& cut) {
  cut_ = cut;
  issued_ = 0;
  completed_ = 0;
  fired_.reset();
}

void NorFlash::disarm() { cut_ = FlashCut{}; }

void NorFlash::restore(const FlashState& state) {
  if (state.bytes.size() != geometry_.total_size() || state.erase_counts.size() != geometry_.sector_count() ||
      state.sector_ids.size() != geometry_.sector_count())
    throw std::logic_error("flash: restoring a state of another geometry");
  // Equal content ids mean equal bytes: only the sectors that differ are copied,
  // so a restore costs what the trial changed, not the size of the flash.
  const std::uint64_t size = geometry_.sector_size;
  for (std::uint64_t sec = 0; sec < geometry_.sector_count(); ++sec) {
    if (state_.sector_ids[sec] == state.sector_ids[sec]) continue;
    const auto at = static_cast<std::ptrdiff_t>(sec * size);
    std::copy_n(state.bytes.begin() + at, size, state_.bytes.begin() + at);
    state_.sector_ids[sec] = state.sector_ids[sec];
  }
  state_.erase_counts.assign(state.erase_counts.begin(), state.erase_counts.end());
  ++mutations_;
}

void NorFlash::replay_cut(const FlashState& before, const FlashOp& op, std::span<const std::uint8_t> data) {
  if (fired_ || cut_.error || cut_.before_op == 0 || cut_.before_op != op.index)
    throw std::logic_error(
        fmt::format("flash: replaying a cut at op {} that is not the armed one", op.index));
  restore(before);
  check_op(geometry_, state_, op, data);
  issued_ = op.index;
  completed_ = op.index - 1;
  fired_ = op;
  if (cut_.torn) {
    apply_torn(geometry_, state_, op, data, cut_.torn_seed);
    ++completed_;
  }
}

void NorFlash::write_raw(std::uint64_t address, std::span<const std::uint8_t> data) {
  if (address > state_.bytes.size() || data.size() > state_.bytes.size() - address)
    throw std::logic_error(
        fmt::format("flash: raw write {:#010x}+{} leaves the flash", address, data.size()));
  std::copy(data.begin(), data.end(), state_.bytes.begin() + static_cast<std::ptrdiff_t>(address));
  fresh_ids(geometry_, state_, address, data.size());
  ++mutations_;
}

void NorFlash::flip_bit_raw(std::uint64_t address, unsigned bit) {
  if (address >= state_.bytes.size() || bit > 7)
    throw std::logic_error(fmt::format("flash: raw bit flip at {:#010x} bit {} leaves the flash", address, bit));
  const std::uint8_t b = static_cast<std::uint8_t>(state_.bytes[address] ^ (1u << bit));
  write_raw(address, std::span<const std::uint8_t>(&b, 1));
}

void NorFlash::erase_all_raw() {
  state_.bytes.assign(geometry_.total_size(), 0xFF);
  state_.erase_counts.assign(geometry_.sector_count(), 0);
  state_.sector_ids.assign(geometry_.sector_count(), 0);
  ++mutations_;
}

void NorFlash::reset_erase_counts() { std::fill(state_.erase_counts.begin(), state_.erase_counts.end(), 0u); }

}  // namespace otarig::drivers::vboard
