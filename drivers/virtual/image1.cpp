// The virtual board's second updatable image (docs/virtual-board.md, "A
// second image"): a second-stage bootloader or a co-processor's firmware
// with A/B slots and a boot-state log of its own. The first stage chooses
// which of its slots runs before the application's bootloader does (a staged
// slot boots as a trial, an unconfirmed trial is reverted, a slot that does
// not verify falls back to the other), and the application's dependency on
// it (header.needs_image, needs_version) is checked by the agent before it
// stages a bundle and by the bootloader before it boots an application.
#include <fmt/format.h>

#include <algorithm>

#include "board_impl.hpp"

namespace otarig::drivers::vboard {

SlotVerdict VirtualBoard::Impl::image1_verdict(int slot) {
  const auto& g = flash.geometry();
  const auto offset = g.image1_offset(slot);
  const auto key = std::make_pair(flash.area_generation(offset, g.image1_slot_size / g.sector_size),
                                  g.image1_slot_size + 1);  // never an application slot's key
  const std::string name = fmt::format("{} slot {}", cfg.image1_name, slot_name(slot));
  auto named = [&](SlotVerdict v) {
    if (!v.structure_ok) v.structure_error = name + v.structure_error;
    return v;
  };
  if (auto it = verdicts.find(key); it != verdicts.end()) return named(it->second);
  auto v = judge_image(flash.read(offset, g.image1_slot_size));
  verdicts.emplace(key, v);
  return named(v);
}

std::string VirtualBoard::Impl::image1_failure(const SlotVerdict& v, const std::optional<image::Version>& floor) const {
  std::string reason = authenticity_failure(v);
  if (reason.empty() && v.header.image_index != 1)
    reason = fmt::format("image {} is not the {} (image 1)", v.header.image_index, cfg.image1_name);
  if (reason.empty()) reason = compatibility_failure(v.header);
  if (reason.empty() && floor && !cfg.has(Defect::no_rollback_check) && v.header.version < *floor)
    reason = fmt::format("downgrade: {} {} is older than {}", cfg.image1_name, v.header.version.str(), floor->str());
  return reason;
}

std::optional<image::Version> VirtualBoard::Impl::image1_running() const {
  if (!has_image1() || ram.image1_slot < 0) return std::nullopt;
  return ram.image1_header.version;
}

std::string VirtualBoard::Impl::dependency_failure(const image::Header& h,
                                                   const std::optional<image::Version>& image1) const {
  if (h.needs_image == 0 || cfg.has(Defect::ignores_dependency)) return {};
  const unsigned needed = h.needs_image - 1u;
  if (needed == h.image_index) return {};  // parse refuses this; never here
  if (needed != 0 && needed != 1)
    return fmt::format("dependency: image {} needs image {}, which this device does not have", h.image_index, needed);
  if (needed == 1) {
    if (!image1)
      return fmt::format("dependency: image {} needs image 1 >= {}, which this device does not have", h.image_index,
                         h.needs_version.str());
    if (*image1 < h.needs_version)
      return fmt::format("dependency: image {} {} needs {} >= {}, the device would run {}", h.image_index,
                         h.version.str(), cfg.image1_name, h.needs_version.str(), image1->str());
    return {};
  }
  // The second image needs the application: the one that runs now.
  if (ram.header.version < h.needs_version)
    return fmt::format("dependency: {} {} needs the application >= {}, the device runs {}", cfg.image1_name,
                       h.version.str(), h.needs_version.str(), ram.header.version.str());
  return {};
}

bool VirtualBoard::Impl::boot_image1() {
  auto stored = image1_log.read();
  BootRecord st = stored ? *stored : BootRecord{};
  if (st.primary >= FlashGeometry::kSlots) st.primary = 0;
  const bool has_pending = st.pending < FlashGeometry::kSlots && st.pending != st.primary;
  auto choose = [&](int slot, bool trial, const SlotVerdict& v) {
    ram.image1_slot = slot;
    ram.image1_trial = trial;
    ram.image1_header = v.header;
    ram.image1_digest = v.digest;
    print(fmt::format("{} {} slot {}: running{}", cfg.image1_name, v.header.version.str(), slot_name(slot),
                      trial ? " (trial)" : ""));
    return true;
  };
  if (has_pending && st.trial_active) {
    print(fmt::format("{}: trial of slot {} not confirmed: revert to slot {}", cfg.image1_name, slot_name(st.pending),
                      slot_name(st.primary)));
    image1_log.append(BootRecord{0, st.primary, kNoSlot, false, true}, "revert");
  } else if (has_pending) {
    const auto v = image1_verdict(st.pending);
    const auto primary = image1_verdict(st.primary);
    std::optional<image::Version> floor;
    if (authenticity_failure(primary).empty()) floor = primary.header.version;
    const auto reason = image1_failure(v, floor);
    if (reason.empty()) {
      image1_log.append(BootRecord{0, st.primary, st.pending, true, true}, "trial-boot");
      return choose(st.pending, true, v);
    }
    print(fmt::format("{}: verify slot {}: refused: {}", cfg.image1_name, slot_name(st.pending), reason));
    image1_log.append(BootRecord{0, st.primary, kNoSlot, false, true}, "reject");
  }
  for (int attempt = 0; attempt < FlashGeometry::kSlots; ++attempt) {
    const int slot = attempt == 0 ? st.primary : 1 - st.primary;
    const auto v = image1_verdict(slot);
    const auto reason = image1_failure(v, std::nullopt);
    if (reason.empty()) {
      if (attempt != 0) {
        print(fmt::format("{}: slot {} does not verify: falling back to slot {}", cfg.image1_name,
                          slot_name(st.primary), slot_name(slot)));
        image1_log.append(BootRecord{0, static_cast<std::uint8_t>(slot), kNoSlot, false, true}, "fallback");
      }
      return choose(slot, false, v);
    }
    print(fmt::format("{}: slot {}: {}", cfg.image1_name, slot_name(slot), reason));
  }
  return false;
}

void VirtualBoard::Impl::write_area(std::uint64_t base, std::span<const std::uint8_t> bytes, bool from_link) {
  const auto& g = flash.geometry();
  std::vector<bool> erased((bytes.size() + g.sector_size - 1) / g.sector_size, false);
  Bytes chunk;
  for (std::uint64_t off = 0; off < bytes.size(); off += cfg.chunk_size) {
    const std::uint64_t len = std::min<std::uint64_t>(cfg.chunk_size, bytes.size() - off);
    if (from_link) link_bytes += len;
    for (auto s = off / g.sector_size; s <= (off + len - 1) / g.sector_size; ++s) {
      if (erased[s]) continue;
      flash.erase(base + s * g.sector_size, "download");
      erased[s] = true;
    }
    const std::uint64_t padded = (len + g.program_align - 1) / g.program_align * g.program_align;
    chunk.assign(padded, 0xFF);
    std::copy_n(bytes.begin() + static_cast<std::ptrdiff_t>(off), len, chunk.begin());
    flash.program(base + off, chunk, "download");
  }
}

}  // namespace otarig::drivers::vboard
