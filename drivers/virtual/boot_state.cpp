#include "otarig/drivers/virtual/boot_state.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

namespace otarig::drivers::vboard {
namespace {

// Record layout: magic u32, seq u32, primary u8, pending u8, trial u8,
// confirmed u8, swap u8, flags u8, slot_state[2] u8, done u32, sectors u32,
// 4 reserved bytes (0), crc32 u32 over bytes 0..27.
constexpr std::size_t kCrcOffset = 28;

constexpr std::array<std::uint32_t, 256> make_crc_table() {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr auto kCrcTable = make_crc_table();

void put32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
std::uint32_t get32(const std::uint8_t* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = v << 8 | p[i];
  return v;
}

bool all_erased(std::span<const std::uint8_t> bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](std::uint8_t b) { return b == 0xFF; });
}

}  // namespace

std::uint32_t crc32(std::span<const std::uint8_t> data) {
  std::uint32_t c = 0xFFFFFFFFu;
  for (auto b : data) c = kCrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

const char* to_string(SwapKind kind) {
  switch (kind) {
    case SwapKind::none: return "none";
    case SwapKind::test: return "test";
    case SwapKind::revert: return "revert";
    case SwapKind::permanent: return "permanent";
    case SwapKind::install: return "install";
    case SwapKind::restore: return "restore";
  }
  return "?";
}

const char* to_string(SlotState state) {
  switch (state) {
    case SlotState::empty: return "empty";
    case SlotState::pending: return "pending";
    case SlotState::trial: return "trial";
    case SlotState::confirmed: return "confirmed";
    case SlotState::rejected: return "rejected";
  }
  return "?";
}

std::array<std::uint8_t, kBootRecordSize> encode(const BootRecord& r, std::uint32_t magic) {
  std::array<std::uint8_t, kBootRecordSize> out{};
  put32(out.data(), magic);
  put32(out.data() + 4, r.seq);
  out[8] = r.primary;
  out[9] = r.pending;
  out[10] = r.trial_active ? 1 : 0;
  out[11] = r.confirmed ? 1 : 0;
  out[12] = static_cast<std::uint8_t>(r.swap);
  out[13] = r.flags;
  out[14] = static_cast<std::uint8_t>(r.slot_state[0]);
  out[15] = static_cast<std::uint8_t>(r.slot_state[1]);
  put32(out.data() + 16, r.done);
  put32(out.data() + 20, r.sectors);
  put32(out.data() + kCrcOffset, crc32(std::span<const std::uint8_t>(out.data(), kCrcOffset)));
  return out;
}

std::optional<BootRecord> decode(std::span<const std::uint8_t, kBootRecordSize> b, std::uint32_t magic) {
  if (get32(b.data()) != magic) return std::nullopt;
  if (get32(b.data() + kCrcOffset) != crc32(b.first(kCrcOffset))) return std::nullopt;
  if (b[10] > 1 || b[11] > 1 || b[12] > static_cast<std::uint8_t>(SwapKind::restore) ||
      b[14] > static_cast<std::uint8_t>(SlotState::rejected) || b[15] > static_cast<std::uint8_t>(SlotState::rejected))
    return std::nullopt;
  BootRecord r;
  r.seq = get32(b.data() + 4);
  r.primary = b[8];
  r.pending = b[9];
  r.trial_active = b[10] == 1;
  r.confirmed = b[11] == 1;
  r.swap = static_cast<SwapKind>(b[12]);
  r.flags = b[13];
  r.slot_state = {static_cast<SlotState>(b[14]), static_cast<SlotState>(b[15])};
  r.done = get32(b.data() + 16);
  r.sectors = get32(b.data() + 20);
  return r;
}

BootStateLog::BootStateLog(NorFlash& flash, std::uint32_t magic)
    : BootStateLog(flash, magic, flash.geometry().metadata_offset(), flash.geometry().metadata_sectors) {}

BootStateLog::BootStateLog(NorFlash& flash, std::uint32_t magic, std::uint64_t offset, std::uint32_t sectors)
    : flash_(flash), magic_(magic), offset_(offset), sectors_(sectors) {}

const BootStateLog::Scan& BootStateLog::scan() const {
  if (cache_generation_ != 0 && cache_generation_ == generation()) return cache_;
  const auto& g = flash_.geometry();
  const std::uint64_t per_sector = g.sector_size / kBootRecordSize;
  Scan s;
  s.next_free.assign(sectors_, 0);
  for (std::uint32_t sector = 0; sector < sectors_; ++sector) {
    const auto base = offset_ + sector * g.sector_size;
    for (std::uint64_t i = 0; i < per_sector; ++i) {
      auto bytes = flash_.read(base + i * kBootRecordSize, kBootRecordSize);
      if (all_erased(bytes)) continue;
      s.next_free[sector] = i + 1;
      auto rec = decode(bytes.first<kBootRecordSize>(), magic_);
      if (rec && (!s.newest || rec->seq > s.newest->seq)) {
        s.newest = rec;
        s.newest_sector = sector;
      }
    }
  }
  cache_ = std::move(s);
  cache_generation_ = generation();
  return cache_;
}

std::optional<BootRecord> BootStateLog::read() const { return scan().newest; }

BootRecord BootStateLog::append(BootRecord record, std::string_view phase) {
  const auto& g = flash_.geometry();
  const std::uint64_t per_sector = g.sector_size / kBootRecordSize;
  Scan s = scan();
  record.seq = s.newest ? s.newest->seq + 1 : 1;
  std::uint32_t sector = s.newest_sector;
  std::uint64_t index = s.next_free[sector];
  if (index >= per_sector) {
    // The sector with the newest record is full: start the next one. The
    // newest record stays untouched until the new one is written.
    sector = (sector + 1) % sectors_;
    flash_.erase(offset_ + sector * g.sector_size, phase);
    index = 0;
  }
  auto bytes = encode(record, magic_);
  flash_.program(offset_ + sector * g.sector_size + index * kBootRecordSize, bytes, phase);
  // Both ops applied in full: the scan after them is known without reading.
  s.newest = record;
  s.newest_sector = sector;
  s.next_free[sector] = index + 1;
  cache_ = std::move(s);
  cache_generation_ = generation();
  return record;
}

void BootStateLog::format_raw(BootRecord record) {
  const auto& g = flash_.geometry();
  Bytes erased(sectors_ * g.sector_size, 0xFF);
  flash_.write_raw(offset_, erased);
  record.seq = 1;
  auto bytes = encode(record, magic_);
  flash_.write_raw(offset_, bytes);
}

std::uint32_t AntiRollbackCounter::capacity() const {
  const auto& g = flash_.geometry();
  return static_cast<std::uint32_t>(g.counter_sectors * g.sector_size / kCounterWord);
}

std::uint32_t AntiRollbackCounter::value() const {
  const auto& g = flash_.geometry();
  auto area = flash_.read(g.counter_offset(), g.counter_sectors * g.sector_size);
  std::uint32_t n = 0;
  for (std::size_t w = 0; w + kCounterWord <= area.size(); w += kCounterWord)
    if (!all_erased(area.subspan(w, kCounterWord))) ++n;
  return n;
}

void AntiRollbackCounter::raise_to(std::uint32_t n, std::string_view phase) {
  if (n > capacity())
    throw std::logic_error(fmt::format("anti-rollback counter: {} exceeds the capacity {}", n, capacity()));
  std::uint32_t have = value();
  if (have >= n) return;
  const auto& g = flash_.geometry();
  const auto base = g.counter_offset();
  // Zero words from the first erased one until enough words count. Zeroing a
  // word a torn raise left partly programmed only clears more bits.
  std::uint64_t first = capacity(), last = 0;
  for (std::uint32_t w = 0; w < capacity() && have < n; ++w) {
    if (!all_erased(flash_.read(base + w * kCounterWord, kCounterWord))) continue;
    first = std::min<std::uint64_t>(first, w);
    last = w + 1;
    ++have;
  }
  Bytes zeros((last - first) * kCounterWord, 0x00);
  flash_.program(base + first * kCounterWord, zeros, phase);
}

void AntiRollbackCounter::set_raw(std::uint32_t n) {
  if (n > capacity())
    throw std::logic_error(fmt::format("anti-rollback counter: {} exceeds the capacity {}", n, capacity()));
  const auto& g = flash_.geometry();
  Bytes area(g.counter_sectors * g.sector_size, 0xFF);
  std::fill_n(area.begin(), n * kCounterWord, std::uint8_t{0});
  flash_.write_raw(g.counter_offset(), area);
}

}  // namespace otarig::drivers::vboard
