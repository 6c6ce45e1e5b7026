// The virtual board's bootloaders, one per mode (docs/virtual-board.md):
// ab (trial boot from either slot), swap-scratch and swap-move (the primary
// always runs; a staged image is swapped in for a trial and swapped back when
// it is not confirmed), overwrite-only (the staged image is copied over the
// primary; no revert) and direct-xip (the higher valid version runs in place;
// an unconfirmed trial is invalidated). Every copy between slots records its
// progress in the boot-state log, so a cut at any point resumes at the next boot.
#include <fmt/format.h>

#include "board_impl.hpp"

namespace otarig::drivers::vboard {
namespace {

std::string slot_text(std::uint8_t slot) {
  if (slot == kNoSlot) return "none";
  return std::string(1, slot_name(slot));
}

const char* yes_no(bool b) { return b ? "yes" : "no"; }

// The phase a copy's flash ops are counted under.
const char* swap_phase(SwapKind kind) {
  switch (kind) {
    case SwapKind::test: return "swap";
    case SwapKind::revert: return "revert";
    case SwapKind::permanent: return "fallback";
    case SwapKind::install: return "install";
    case SwapKind::restore: return "restore";
    case SwapKind::none: break;
  }
  return "swap";
}

}  // namespace

// ---------------------------------------------------------------------------- ab

std::optional<BootSelection> VirtualBoard::Impl::boot_ab() {
  auto stored = log.read();
  BootRecord st = read_state();
  if (stored)
    print(fmt::format("boot state: seq={} primary={} pending={} trial={}", st.seq, slot_text(st.primary),
                      slot_text(st.pending), yes_no(st.trial_active)));
  else
    print("boot state: none (primary=A)");
  const bool has_pending = st.pending < FlashGeometry::kSlots && st.pending != st.primary;

  if (has_pending && st.trial_active) {
    if (cfg.has(Defect::no_revert)) {
      // The flaw: an unconfirmed trial is booted again instead of reverted.
      print(fmt::format("trial of slot {} not confirmed: booting it again", slot_name(st.pending)));
      return BootSelection{st.pending, true};
    }
    // The trial image rebooted without confirming itself.
    print(fmt::format("trial of slot {} not confirmed: revert to slot {}", slot_name(st.pending),
                      slot_name(st.primary)));
    log.append(BootRecord{0, st.primary, kNoSlot, false, st.confirmed}, "revert");
  } else if (has_pending) {
    const auto v = verdict(st.pending);
    const auto primary = verdict(st.primary);
    std::optional<image::Version> floor;
    if (authenticity_failure(primary).empty()) floor = primary.header.version;
    const std::string reason = boot_failure(v, floor);
    if (reason.empty()) {
      print(fmt::format("verify slot {}: ok (version {}, counter {})", slot_name(st.pending),
                        v.header.version.str(), v.header.security_counter));
      log.append(BootRecord{0, st.primary, st.pending, true, st.confirmed}, "trial-boot");
      print(fmt::format("trial boot slot {}", slot_name(st.pending)));
      return BootSelection{st.pending, true};
    }
    print(fmt::format("verify slot {}: refused: {}", slot_name(st.pending), reason));
    log.append(BootRecord{0, st.primary, kNoSlot, false, st.confirmed}, "reject");
  }

  // The primary, else whichever other slot verifies.
  for (int attempt = 0; attempt < FlashGeometry::kSlots; ++attempt) {
    const int slot = attempt == 0 ? st.primary : 1 - st.primary;
    const auto v = verdict(slot);
    const std::string reason = boot_failure(v, std::nullopt);
    if (!reason.empty()) {
      print(fmt::format("verify slot {}: refused: {}", slot_name(slot), reason));
      continue;
    }
    print(fmt::format("verify slot {}: ok (version {}, counter {})", slot_name(slot), v.header.version.str(),
                      v.header.security_counter));
    if (attempt == 0) {
      // Heals a cut between confirm and the counter raise.
      if (st.confirmed) raise_counter(v.header.security_counter, false);
      print(fmt::format("boot slot {}", slot_name(slot)));
    } else {
      print(fmt::format("fall back to slot {}", slot_name(slot)));
    }
    return BootSelection{slot, false};
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------- copies between slots

void VirtualBoard::Impl::copy_sector(std::uint64_t dst, std::uint64_t src, std::string_view phase) {
  flash.erase(dst, phase);
  flash.program_copy(dst, src, flash.geometry().sector_size, phase);
}

BootRecord VirtualBoard::Impl::start_swap(BootRecord st, SwapKind kind) {
  const std::uint64_t sectors = std::max(image_sectors(0), image_sectors(1));
  st.swap = kind;
  st.sectors = static_cast<std::uint32_t>(sectors);
  st.pending = kNoSlot;
  // stale-trailer: the progress the previous swap left in the record is kept,
  // so the new swap starts where the old one ended.
  if (!cfg.has(Defect::stale_trailer)) st.done = 0;
  print(fmt::format("{} swap of {} sectors: start", to_string(kind), sectors));
  return log.append(st, swap_phase(kind));
}

BootRecord VirtualBoard::Impl::run_swap(BootRecord st) {
  const auto& g = flash.geometry();
  const std::uint64_t n = std::min<std::uint64_t>(st.sectors, g.slot_sectors());
  const std::uint64_t steps = 3 * n;
  const char* phase = swap_phase(st.swap);
  auto a = [&](std::uint64_t i) { return i < g.slot_sectors() ? g.slot_offset(0) + i * g.sector_size : g.swap_offset(); };
  auto b = [&](std::uint64_t i) { return g.slot_offset(1) + i * g.sector_size; };
  // Each step erases one sector and programs it from a source no earlier
  // step of this swap has overwritten, so redoing an interrupted step is safe.
  for (std::uint64_t j = st.done; j < steps; ++j) {
    if (cfg.mode == BootMode::swap_scratch) {
      const std::uint64_t i = j / 3;
      switch (j % 3) {
        case 0: copy_sector(g.swap_offset(), b(i), phase); break;  // scratch <- B[i]
        case 1: copy_sector(b(i), a(i), phase); break;             // B[i] <- A[i]
        default: copy_sector(a(i), g.swap_offset(), phase); break; // A[i] <- scratch
      }
    } else if (j < n) {
      const std::uint64_t i = n - 1 - j;  // move the primary up by one sector, top first
      copy_sector(a(i + 1), a(i), phase);
    } else {
      const std::uint64_t i = (j - n) / 2;
      if ((j - n) % 2 == 0) copy_sector(a(i), b(i), phase);  // A[i] <- B[i]
      else copy_sector(b(i), a(i + 1), phase);               // B[i] <- old A[i], moved to A[i+1]
    }
    st.done = static_cast<std::uint32_t>(j + 1);
    st = log.append(st, phase);
  }
  const SwapKind kind = st.swap;
  st.swap = SwapKind::none;
  st.pending = kNoSlot;
  st.trial_active = kind == SwapKind::test;
  st.confirmed = kind != SwapKind::test;
  st = log.append(st, phase);
  print(fmt::format("{} swap done", to_string(kind)));
  return st;
}

BootRecord VirtualBoard::Impl::run_copy(BootRecord st) {
  const auto& g = flash.geometry();
  const std::uint64_t n = std::min<std::uint64_t>(st.sectors, g.slot_sectors());
  const char* phase = swap_phase(st.swap);
  // The source never changes during the copy: after a cut it starts over.
  for (std::uint64_t i = 0; i < n; ++i)
    copy_sector(g.slot_offset(0) + i * g.sector_size, g.slot_offset(1) + i * g.sector_size, phase);
  const SwapKind kind = st.swap;
  st.swap = SwapKind::none;
  st.pending = kNoSlot;
  st.confirmed = true;
  st.flags |= kRecordCopied;
  st = log.append(st, phase);
  print(fmt::format("{} copy of {} sectors done", to_string(kind), n));
  return st;
}

// ---------------------------------------------------------------------------- swap-scratch, swap-move

std::optional<BootSelection> VirtualBoard::Impl::boot_swap() {
  BootRecord st = read_state();
  print(fmt::format("boot state: seq={} pending={} trial={} confirmed={} swap={} step={}/{}", st.seq,
                    slot_text(st.pending), yes_no(st.trial_active), yes_no(st.confirmed), to_string(st.swap),
                    st.done, 3 * st.sectors));
  if (st.swap != SwapKind::none) {
    print(fmt::format("resume {} swap at step {}", to_string(st.swap), st.done));
    st = run_swap(st);
  } else if (st.trial_active && !st.confirmed) {
    print("trial of slot A not confirmed: swap back");
    st = run_swap(start_swap(st, SwapKind::revert));
  } else if (st.pending == 1) {
    const auto v = verdict(1);
    const auto primary = verdict(0);
    std::optional<image::Version> floor;
    if (authenticity_failure(primary).empty()) floor = primary.header.version;
    const std::string reason = boot_failure(v, floor);
    if (reason.empty()) {
      print(fmt::format("verify slot B: ok (version {}, counter {})", v.header.version.str(),
                        v.header.security_counter));
      st = run_swap(start_swap(st, SwapKind::test));
    } else {
      print(fmt::format("verify slot B: refused: {}", reason));
      st.pending = kNoSlot;
      st = log.append(st, "reject");
    }
  }

  auto v = verdict(0);
  std::string reason = boot_failure(v, std::nullopt);
  if (!reason.empty()) {
    print(fmt::format("verify slot A: refused: {}", reason));
    const auto other = verdict(1);
    const std::string other_reason = boot_failure(other, std::nullopt);
    if (!other_reason.empty()) {
      print(fmt::format("verify slot B: refused: {}", other_reason));
      return std::nullopt;
    }
    print(fmt::format("fall back to slot B (version {}): swap it in", other.header.version.str()));
    st = run_swap(start_swap(st, SwapKind::permanent));
    v = verdict(0);
    reason = boot_failure(v, std::nullopt);
    if (!reason.empty()) {
      print(fmt::format("verify slot A: refused: {}", reason));
      return std::nullopt;
    }
  }
  print(fmt::format("verify slot A: ok (version {}, counter {})", v.header.version.str(),
                    v.header.security_counter));
  if (st.confirmed) raise_counter(v.header.security_counter, false);
  print(fmt::format("{} slot A", st.trial_active ? "trial boot" : "boot"));
  return BootSelection{0, st.trial_active};
}

// ---------------------------------------------------------------------------- overwrite-only

std::optional<BootSelection> VirtualBoard::Impl::boot_overwrite() {
  BootRecord st = read_state();
  print(fmt::format("boot state: seq={} pending={} copy={}", st.seq, slot_text(st.pending), to_string(st.swap)));
  if (st.swap == SwapKind::install || st.swap == SwapKind::restore) {
    print(fmt::format("resume {} copy", to_string(st.swap)));
    const bool install = st.swap == SwapKind::install;
    st = run_copy(st);
    if (install) raise_counter(verdict(0).header.security_counter, false);
  } else if (st.pending == 1) {
    const auto v = verdict(1);
    const auto primary = verdict(0);
    std::optional<image::Version> floor;
    if (authenticity_failure(primary).empty()) floor = primary.header.version;  // downgrade prevention
    const std::string reason = boot_failure(v, floor);
    if (reason.empty()) {
      print(fmt::format("verify slot B: ok (version {}, counter {}): install", v.header.version.str(),
                        v.header.security_counter));
      st.swap = SwapKind::install;
      st.sectors = static_cast<std::uint32_t>(image_sectors(1));
      st.done = 0;
      st = run_copy(log.append(st, "install"));
      raise_counter(v.header.security_counter, false);
    } else {
      print(fmt::format("verify slot B: refused: {}", reason));
      st.pending = kNoSlot;
      st = log.append(st, "reject");
    }
  }

  auto v = verdict(0);
  // copy-unverified: a primary the bootloader copied from a verified image is trusted as it is.
  const bool trust_copy = cfg.has(Defect::copy_unverified) && (st.flags & kRecordCopied) != 0;
  std::string reason = trust_copy ? (v.structure_ok ? "" : v.structure_error) : boot_failure(v, std::nullopt);
  if (!reason.empty()) {
    print(fmt::format("verify slot A: refused: {}", reason));
    const auto other = verdict(1);
    const std::string other_reason = boot_failure(other, std::nullopt);
    if (!other_reason.empty()) {
      print(fmt::format("verify slot B: refused: {}", other_reason));
      return std::nullopt;
    }
    print(fmt::format("restore slot A from slot B (version {})", other.header.version.str()));
    st.swap = SwapKind::restore;
    st.sectors = static_cast<std::uint32_t>(image_sectors(1));
    st.done = 0;
    st = run_copy(log.append(st, "restore"));
    v = verdict(0);
    reason = boot_failure(v, std::nullopt);
    if (!reason.empty()) {
      print(fmt::format("verify slot A: refused: {}", reason));
      return std::nullopt;
    }
  }
  print(fmt::format("verify slot A: {} (version {}, counter {})", trust_copy ? "trusted" : "ok",
                    v.header.version.str(), v.header.security_counter));
  raise_counter(v.header.security_counter, false);
  print("boot slot A");
  return BootSelection{0, false};
}

// ---------------------------------------------------------------------------- direct-xip

std::optional<BootSelection> VirtualBoard::Impl::boot_xip() {
  BootRecord st = read_state();
  print(fmt::format("boot state: seq={} A={} B={}", st.seq, to_string(st.slot_state[0]),
                    to_string(st.slot_state[1])));
  for (int s = 0; s < FlashGeometry::kSlots; ++s) {
    auto& state = st.slot_state[static_cast<std::size_t>(s)];
    if (state != SlotState::trial) continue;
    print(fmt::format("trial of slot {} not confirmed: invalidate it", slot_name(s)));
    state = SlotState::rejected;
    st = log.append(st, "revert");
  }
  // The higher valid version wins; on a tie a pending image, then the last confirmed slot.
  std::optional<int> best;
  std::optional<SlotVerdict> best_v;
  auto better = [&](int s, const SlotVerdict& v) {
    if (!best) return true;
    if (best_v->header.version < v.header.version) return true;
    if (v.header.version < best_v->header.version) return false;
    const bool pending = st.slot_state[static_cast<std::size_t>(s)] == SlotState::pending;
    const bool best_pending = st.slot_state[static_cast<std::size_t>(*best)] == SlotState::pending;
    if (pending != best_pending) return pending;
    return s == st.primary;
  };
  for (int s = 0; s < FlashGeometry::kSlots; ++s) {
    auto& state = st.slot_state[static_cast<std::size_t>(s)];
    if (state != SlotState::pending && state != SlotState::confirmed) continue;
    const auto v = verdict(s);
    const std::string reason = boot_failure(v, std::nullopt);
    if (!reason.empty()) {
      print(fmt::format("verify slot {}: refused: {}", slot_name(s), reason));
      if (state == SlotState::pending) {
        state = SlotState::rejected;
        st = log.append(st, "reject");
      }
      continue;
    }
    print(fmt::format("verify slot {}: ok (version {}, counter {})", slot_name(s), v.header.version.str(),
                      v.header.security_counter));
    if (better(s, v)) {
      best = s;
      best_v = v;
    }
  }
  if (!best) return std::nullopt;
  for (int s = 0; s < FlashGeometry::kSlots; ++s) {
    auto& state = st.slot_state[static_cast<std::size_t>(s)];
    if (s == *best || state != SlotState::pending) continue;
    // A staged image older than the running one never boots: reject it.
    print(fmt::format("slot {}: staged version is not above slot {}: rejected", slot_name(s), slot_name(*best)));
    state = SlotState::rejected;
    st = log.append(st, "reject");
  }
  auto& chosen = st.slot_state[static_cast<std::size_t>(*best)];
  if (chosen == SlotState::pending) {
    chosen = SlotState::trial;
    log.append(st, "trial-boot");
    print(fmt::format("trial boot slot {}", slot_name(*best)));
    return BootSelection{*best, true};
  }
  raise_counter(best_v->header.security_counter, false);
  print(fmt::format("boot slot {}", slot_name(*best)));
  return BootSelection{*best, false};
}

}  // namespace otarig::drivers::vboard
