// The virtual board's firmware: bootloader, OTA agent, application, console.
// Every defect is a flag tested at the one place its flaw lives.
#include <fmt/format.h>

#include <algorithm>

#include "board_impl.hpp"
#include "otarig/drivers/errors.hpp"

namespace otarig::drivers::vboard {
namespace {

constexpr std::string_view kBanner = "otarig-vboard bootloader 1.0 mode=";

std::string slot_text(std::uint8_t slot) {
  if (slot == kNoSlot) return "none";
  return std::string(1, slot_name(slot));
}

}  // namespace

char slot_name(int slot) { return static_cast<char>('A' + slot); }

// ---------------------------------------------------------------------------- basics

void VirtualBoard::Impl::print(std::string_view line) {
  out.append(line);
  out.push_back('\n');
}

void VirtualBoard::Impl::advance(Clock::duration d) {
  elapsed += d;
  if (clock) clock->advance(d);
}

void VirtualBoard::Impl::lose_power() {
  powered = false;
  ram = Ram{};
}

// ---------------------------------------------------------------------------- verification

SlotVerdict VirtualBoard::Impl::verdict(int slot) {
  const auto& g = flash.geometry();
  const auto key = std::make_tuple(slot, flash.generation(slot), g.slot_size);
  if (auto it = verdicts.find(key); it != verdicts.end()) return it->second;

  SlotVerdict v;
  auto bytes = flash.read(g.slot_offset(slot), g.slot_size);
  try {
    auto p = image::parse(bytes, fmt::format("slot {}", slot_name(slot)));
    v.structure_ok = true;
    v.header = p.header;
    v.trailer = p.trailer;
    v.signed_size = p.signed_part.size();
    v.total_size = p.total_size;
    v.digest = crypto::sha256(p.signed_part);
    stats.sha256_bytes += p.signed_part.size();
    v.hash_ok = v.digest == v.trailer.sha256;
    auto it = std::find(trusted_ids.begin(), trusted_ids.end(), v.trailer.key_id);
    v.key_known = it != trusted_ids.end();
    if (v.key_known) {
      const auto& pub = trusted[static_cast<std::size_t>(it - trusted_ids.begin())];
      v.signature_ok =
          crypto::ed25519_verify(pub, image::signing_message(v.trailer.sha256), v.trailer.signature);
    }
  } catch (const InputError& e) {
    v.structure_error = e.what();
  }
  if (verdicts.size() >= 64) {
    // Keep the verdicts for what the slots hold now.
    std::erase_if(verdicts, [&](const auto& entry) {
      const auto& [s, gen, len] = entry.first;
      return gen != flash.generation(s);
    });
  }
  verdicts.emplace(key, v);
  return v;
}

std::string VirtualBoard::Impl::authenticity_failure(const SlotVerdict& v) const {
  if (!v.structure_ok) return v.structure_error;
  if (!v.hash_ok) return "hash mismatch: header+payload do not match the trailer's SHA-256";
  if (!v.key_known) return fmt::format("untrusted key {}", crypto::hex(v.trailer.key_id));
  if (!v.signature_ok) return fmt::format("bad signature by key {}", crypto::hex(v.trailer.key_id));
  return {};
}

std::string VirtualBoard::Impl::rollback_failure(const image::Header& h,
                                                 const std::optional<image::Version>& floor) const {
  if (h.security_counter > counter.capacity())
    return fmt::format("security counter {} exceeds the device's counter capacity {}", h.security_counter,
                       counter.capacity());
  if (cfg.has(Defect::no_rollback_check)) return {};
  if (h.security_counter < counter.value())
    return fmt::format("rollback: security counter {} is below the device's counter {}", h.security_counter,
                       counter.value());
  if (floor && h.version < *floor)
    return fmt::format("downgrade: version {} is older than {}", h.version.str(), floor->str());
  return {};
}

// ---------------------------------------------------------------------------- bootloader

void VirtualBoard::Impl::boot_chain() {
  while (true) {
    ++ram.boots;
    print(std::string(kBanner) + to_string(cfg.mode));
    advance(cfg.boot_time);
    auto selection = bootloader();
    if (!selection) {
      print("BOOT FAILED: no bootable image");
      ram.state = RunState::bricked;
      return;
    }
    if (!application(*selection)) return;
    if (ram.boots >= cfg.max_boots) {
      print(fmt::format("reboot limit: {} boots without a healthy application, staying up", ram.boots));
      print(status_line());
      return;
    }
    print("reboot (watchdog)");
    const unsigned boots = ram.boots;
    ram = Ram{};
    ram.boots = boots;
  }
}

std::optional<BootSelection> VirtualBoard::Impl::bootloader() {
  switch (cfg.mode) {
    case BootMode::ab:
      return boot_ab();
    case BootMode::swap_scratch:
    case BootMode::swap_move:
    case BootMode::overwrite_only:
    case BootMode::direct_xip:
      break;
  }
  throw std::logic_error(fmt::format("virtual board: boot mode {} is not implemented", to_string(cfg.mode)));
}

std::optional<BootSelection> VirtualBoard::Impl::boot_ab() {
  auto stored = log.read();
  BootRecord st = stored.value_or(BootRecord{});
  if (stored)
    print(fmt::format("boot state: seq={} primary={} pending={} trial={}", st.seq, slot_text(st.primary),
                      slot_text(st.pending), st.trial_active ? "yes" : "no"));
  else
    print("boot state: none (primary=A)");
  if (st.primary >= FlashGeometry::kSlots) st.primary = 0;
  const bool has_pending = st.pending < FlashGeometry::kSlots && st.pending != st.primary;

  if (has_pending && st.trial_active) {
    // The trial image rebooted without confirming itself.
    print(fmt::format("trial of slot {} not confirmed: revert to slot {}", slot_name(st.pending),
                      slot_name(st.primary)));
    log.append(BootRecord{0, st.primary, kNoSlot, false, st.confirmed}, "revert");
  } else if (has_pending) {
    const auto v = verdict(st.pending);
    std::string reason = authenticity_failure(v);
    if (reason.empty()) {
      const auto primary = verdict(st.primary);
      std::optional<image::Version> floor;
      if (authenticity_failure(primary).empty()) floor = primary.header.version;
      reason = rollback_failure(v.header, floor);
    }
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
    std::string reason = authenticity_failure(v);
    if (reason.empty()) reason = rollback_failure(v.header, std::nullopt);
    if (!reason.empty()) {
      print(fmt::format("verify slot {}: refused: {}", slot_name(slot), reason));
      continue;
    }
    print(fmt::format("verify slot {}: ok (version {}, counter {})", slot_name(slot), v.header.version.str(),
                      v.header.security_counter));
    if (attempt == 0) {
      // Heals a cut between confirm and the counter raise.
      if (st.confirmed && v.header.security_counter > counter.value()) {
        counter.raise_to(v.header.security_counter, "counter");
        print(fmt::format("anti-rollback counter raised to {}", counter.value()));
      }
      print(fmt::format("boot slot {}", slot_name(slot)));
    } else {
      print(fmt::format("fall back to slot {}", slot_name(slot)));
    }
    return BootSelection{slot, false};
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------- application

bool VirtualBoard::Impl::application(const BootSelection& selection) {
  const auto v = verdict(selection.slot);
  ram.state = RunState::running;
  ram.slot = selection.slot;
  ram.trial = selection.trial;
  ram.header = v.header;
  ram.key = v.trailer.key_id;
  ram.signed_size = v.signed_size;
  print(fmt::format("app {} slot {}: running{}", v.header.version.str(), slot_name(selection.slot),
                    selection.trial ? " (trial)" : ""));
  const bool passed = (v.header.flags & image::kFlagSelfTestFails) == 0;
  if (!passed) {
    print("self-test failed");
    ram.healthy = false;
    if (ram.trial) return true;  // the watchdog reboots; the bootloader reverts
    print(status_line());
    return false;
  }
  print("self-test passed");
  ram.healthy = true;
  ram.boots = 0;
  if (ram.trial) confirm();
  print(status_line());
  return false;
}

void VirtualBoard::Impl::confirm() {
  log.append(BootRecord{0, static_cast<std::uint8_t>(ram.slot), kNoSlot, false, true}, "confirm");
  ram.trial = false;
  print(fmt::format("confirmed slot {}", slot_name(ram.slot)));
  if (ram.header.security_counter > counter.value()) {
    counter.raise_to(ram.header.security_counter, "counter");
    print(fmt::format("anti-rollback counter raised to {}", counter.value()));
  }
}

// ---------------------------------------------------------------------------- agent

DeliveryResult VirtualBoard::Impl::agent(std::span<const std::uint8_t> image) {
  const auto& g = flash.geometry();
  link_bytes = 0;
  auto refuse = [&](std::string reason) {
    print("ota: refused: " + reason);
    return DeliveryResult{DeliveryStatus::refused, std::move(reason), link_bytes};
  };
  if (ram.trial) return refuse(fmt::format("slot {} runs as an unconfirmed trial", slot_name(ram.slot)));
  const int target = cfg.has(Defect::inplace_overwrite) ? ram.slot : 1 - ram.slot;
  if (image.size() > g.slot_size)
    return refuse(fmt::format("image of {} bytes exceeds the slot size {}", image.size(), g.slot_size));

  print(fmt::format("ota: receiving {} bytes into slot {}", image.size(), slot_name(target)));
  const auto base = g.slot_offset(target);
  std::vector<bool> erased(g.slot_size / g.sector_size, false);
  Bytes chunk;
  for (std::uint64_t off = 0; off < image.size(); off += cfg.chunk_size) {
    const std::uint64_t len = std::min<std::uint64_t>(cfg.chunk_size, image.size() - off);
    link_bytes = off + len;
    for (auto s = off / g.sector_size; s <= (off + len - 1) / g.sector_size; ++s) {
      if (erased[s]) continue;
      flash.erase(base + s * g.sector_size, "download");
      erased[s] = true;
    }
    const std::uint64_t padded = (len + g.program_align - 1) / g.program_align * g.program_align;
    chunk.assign(padded, 0xFF);
    std::copy_n(image.begin() + static_cast<std::ptrdiff_t>(off), len, chunk.begin());
    flash.program(base + off, chunk, "download");
  }

  const auto v = verdict(target);
  std::string reason;
  if (image.size() >= image::kHeaderSize) {
    // The size the header declares, before anything past the received bytes is read.
    auto h = image::decode_header(flash.read(base, g.slot_size).first<image::kHeaderSize>());
    const std::uint64_t declared = std::uint64_t{image::kHeaderSize} + h.payload_size + image::kTrailerSize;
    if (h.magic == image::kHeaderMagic && declared > image.size())
      reason = fmt::format("incomplete image: it declares {} bytes, {} arrived", declared, image.size());
  }
  if (reason.empty()) reason = authenticity_failure(v);
  if (reason.empty()) reason = rollback_failure(v.header, ram.header.version);
  if (!reason.empty()) return refuse(std::move(reason));
  print(fmt::format("ota: verify slot {}: ok (version {}, counter {})", slot_name(target),
                    v.header.version.str(), v.header.security_counter));

  if (!cfg.has(Defect::inplace_overwrite))
    log.append(
        BootRecord{0, static_cast<std::uint8_t>(ram.slot), static_cast<std::uint8_t>(target), false, true},
        "stage");
  print(fmt::format("ota: staged slot {}, rebooting", slot_name(target)));
  const std::string detail = fmt::format("staged {} in slot {}", v.header.version.str(), slot_name(target));
  ram = Ram{};
  boot_chain();
  return DeliveryResult{DeliveryStatus::accepted, detail, link_bytes};
}

// ---------------------------------------------------------------------------- console

void VirtualBoard::Impl::command(std::string_view line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
  while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
  if (line.empty()) return;
  if (line == "status") {
    print(status_line());
    return;
  }
  print(fmt::format("unknown command '{}' (try: status)", line));
}

std::string VirtualBoard::Impl::status_line() {
  crypto::Digest digest{};
  const auto v = verdict(ram.slot);
  if (v.structure_ok && v.signed_size == ram.signed_size) {
    digest = v.digest;
  } else {
    // The slot changed under the running image: hash what is there now.
    auto bytes = flash.read(flash.geometry().slot_offset(ram.slot), ram.signed_size);
    digest = crypto::sha256(bytes);
    stats.sha256_bytes += bytes.size();
  }
  return fmt::format("STATUS slot={} version={} digest={} counter={} state={} health={} key={}",
                     slot_name(ram.slot), ram.header.version.str(), crypto::hex(digest), counter.value(),
                     ram.trial ? "trial" : "confirmed", ram.healthy ? "ok" : "failed", crypto::hex(ram.key));
}

}  // namespace otarig::drivers::vboard
