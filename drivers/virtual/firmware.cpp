// The virtual board's firmware: verification, the boot chain, OTA agent,
// application, console. The bootloaders of the five modes are in
// bootloaders.cpp. Every defect is a flag tested at the one place its flaw lives.
#include <fmt/format.h>

#include <algorithm>
#include <tuple>

#include "board_impl.hpp"
#include "otarig/core/delta.hpp"
#include "otarig/core/encryption.hpp"
#include "otarig/core/errors.hpp"

namespace otarig::drivers::vboard {
namespace {

constexpr std::string_view kBanner = "otarig-vboard bootloader 1.0 mode=";

bool all_zero(std::span<const std::uint8_t> bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](std::uint8_t b) { return b == 0; });
}

// version-ignores-major and version-string-compare: the comparisons the
// flawed firmwares make.
bool older_than(const image::Version& a, const image::Version& b, bool ignore_major, bool as_text) {
  if (as_text) return a.str() < b.str();
  if (!ignore_major) return a < b;
  return std::tie(a.minor, a.patch, a.build) < std::tie(b.minor, b.patch, b.build);
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

SlotVerdict VirtualBoard::Impl::judge_image(std::span<const std::uint8_t> bytes) {
  SlotVerdict v;
  try {
    auto p = image::parse(bytes, "");
    v.structure_ok = true;
    v.header = p.header;
    v.trailer = p.trailer;
    v.signed_size = p.signed_part.size();
    v.total_size = p.total_size;
    v.digest = crypto::sha256(p.signed_part);
    stats.sha256_bytes += p.signed_part.size();
    v.hash_ok = v.digest == v.trailer.sha256;
    const auto* entry = key_entry(v.trailer.key_id);
    v.key_known = entry != nullptr;
    if (v.key_known)
      v.signature_ok =
          crypto::ed25519_verify(entry->key, image::signing_message(v.trailer.sha256), v.trailer.signature);
  } catch (const InputError& e) {
    v.structure_error = e.what();  // ": field: ..." (the image's name goes in front)
  }
  return v;
}

SlotVerdict VirtualBoard::Impl::verdict(int slot) {
  const auto& g = flash.geometry();
  // Keyed on the content, not the slot: an image a swap moved from B to A
  // keeps its verdict.
  const auto key = std::make_pair(flash.generation(slot), g.slot_size);
  const std::string name = fmt::format("slot {}", slot_name(slot));
  auto named = [&](SlotVerdict v) {
    if (!v.structure_ok) v.structure_error = name + v.structure_error;
    return v;
  };
  if (auto it = verdicts.find(key); it != verdicts.end()) return named(it->second);

  auto v = judge_image(flash.read(g.slot_offset(slot), g.slot_size));
  if (verdicts.size() >= 64) {
    // Keep the verdicts for what the slots hold now.
    std::erase_if(verdicts, [&](const auto& entry) {
      return entry.first.first != flash.generation(0) && entry.first.first != flash.generation(1);
    });
  }
  verdicts.emplace(key, v);
  return named(v);
}

std::string VirtualBoard::Impl::authenticity_failure(const SlotVerdict& v) const {
  if (!v.structure_ok) return v.structure_error;
  if (cfg.has(Defect::no_signature_check)) return {};
  // trusts-stated-digest: the signature is checked over the digest the
  // trailer states, and nobody asks whether that digest is the image's.
  if (!v.hash_ok && !cfg.has(Defect::trusts_stated_digest)) return "hash mismatch: header+payload do not match the trailer's SHA-256";
  if (cfg.has(Defect::hash_only)) return {};
  if (!v.key_known) {
    // any-key: an unknown key is taken at its word; only a missing signature is refused.
    if (cfg.has(Defect::any_key) && !all_zero(v.trailer.signature)) return {};
    return fmt::format("untrusted key {}", crypto::hex(v.trailer.key_id));
  }
  if (!v.signature_ok) return fmt::format("bad signature by key {}", crypto::hex(v.trailer.key_id));
  if (const auto* e = key_entry(v.trailer.key_id); e && e->revoked)
    return fmt::format("revoked key {}", crypto::hex(v.trailer.key_id));
  return {};
}

std::string VirtualBoard::Impl::validity_failure(const SlotVerdict& v) const {
  const auto* e = key_entry(v.trailer.key_id);
  if (!e) return {};
  std::uint64_t at = 0;
  const char* against = "";
  if (cfg.has(Defect::validity_by_raw_clock)) {
    at = now_seconds(), against = "the device clock";
  } else if (cfg.signer_expiry == SignerExpiry::ignored) {
    return {};
  } else if (cfg.signer_expiry == SignerExpiry::signing_time && v.header.signing_time) {
    at = v.header.signing_time, against = "the image's signing time";
  } else {
    at = now_seconds(), against = "the device clock";
    if (cfg.clock_floor && at < time_floor) at = time_floor, against = "the last confirmed signing time";
  }
  const auto f = image::validity_failure(*e, at);
  if (f.empty()) return {};
  return fmt::format("signer key {} is {} ({})", crypto::hex(v.trailer.key_id), f, against);
}

std::string VirtualBoard::Impl::apply_trust_update(int slot) {
  const auto v = verdict(slot);
  const auto& g = flash.geometry();
  const auto payload = flash.read(g.slot_offset(slot) + image::kHeaderSize, v.header.payload_size);
  std::vector<image::TrustChange> changes;
  try {
    changes = image::decode_trust_block(payload, "trust update");
  } catch (const InputError& e) {
    return e.what();
  }
  auto next = keys;
  auto next_cas = server_cas;
  for (const auto& c : changes) {
    if (c.action == image::TrustAction::add_server_ca) {
      if (std::find(next_cas.begin(), next_cas.end(), c.certificate) == next_cas.end()) next_cas.push_back(c.certificate);
      print(fmt::format("ota: trust: added server CA {} ({})", crypto::hex(c.entry.key).substr(0, 16),
                        image::certificate_subject(c.certificate)));
      continue;
    }
    auto it = std::find_if(next.begin(), next.end(), [&](const image::TrustEntry& e) { return e.key == c.entry.key; });
    if (c.action == image::TrustAction::revoke) {
      if (cfg.has(Defect::ignores_revocation)) continue;
      if (it != next.end()) it->revoked = true;
      else next.push_back(image::TrustEntry{c.entry.key, 0, 0, true});
      print(fmt::format("ota: trust: revoked key {}", crypto::hex(crypto::key_id(c.entry.key))));
    } else if (it == next.end()) {
      next.push_back(c.entry);
      print(fmt::format("ota: trust: added key {}", crypto::hex(crypto::key_id(c.entry.key))));
    } else if (!it->revoked) {
      it->not_before = c.entry.not_before, it->not_after = c.entry.not_after;
    }
  }
  set_keys(std::move(next));
  server_cas = std::move(next_cas);
  return {};
}

std::string VirtualBoard::Impl::rollback_failure(const image::Header& h,
                                                 const std::optional<image::Version>& floor) const {
  if (h.security_counter > counter.capacity())
    return fmt::format("security counter {} exceeds the device's counter capacity {}", h.security_counter,
                       counter.capacity());
  if (cfg.has(Defect::no_rollback_check)) return {};
  if (h.security_counter < counter_value())
    return fmt::format("rollback: security counter {} is below the device's counter {}", h.security_counter,
                       counter_value());
  if (floor && older_than(h.version, *floor, cfg.has(Defect::version_ignores_major),
                          cfg.has(Defect::version_string_compare)))
    return fmt::format("downgrade: version {} is older than {}", h.version.str(), floor->str());
  return {};
}

std::string VirtualBoard::Impl::compatibility_failure(const image::Header& h) const {
  if (cfg.has(Defect::ignores_device_type) || image::compatible(h.device_type, cfg.device_type)) return {};
  return fmt::format("incompatible: the image is for device type {}, this device is {} ({})",
                     crypto::hex(h.device_type), cfg.device_type_name, crypto::hex(cfg.device_type));
}

std::string VirtualBoard::Impl::decrypt_slot(int target) {
  const auto& g = flash.geometry();
  if (!cfg.encryption_secret) return "encrypted image, and this device has no decryption key";
  const auto base = g.slot_offset(target);
  const auto slot = flash.read(base, g.slot_size);
  const Bytes outer(slot.begin(), slot.end());  // the flash changes under it below
  std::string why;
  std::optional<Bytes> plain;
  try {
    plain = encryption::decrypt(image::parse(outer, "encrypted image"), encryption::DeviceKey::from_secret(*cfg.encryption_secret), &why);
  } catch (const InputError& e) {
    return e.what();
  }
  if (!plain) return "cannot decrypt: " + why;
  print(fmt::format("ota: decrypting {} bytes into slot {}", plain->size(), slot_name(target)));
  write_area(base, *plain, false);
  return {};
}

std::string VirtualBoard::Impl::boot_failure(const SlotVerdict& v, const std::optional<image::Version>& floor) const {
  // verify-on-stage-only: the agent verified the image when it staged it; the
  // bootloader only parses what it boots.
  std::string reason = cfg.has(Defect::verify_on_stage_only) ? (v.structure_ok ? "" : v.structure_error)
                                                              : authenticity_failure(v);
  if (reason.empty() && !cfg.has(Defect::verify_on_stage_only)) reason = compatibility_failure(v.header);
  if (reason.empty() && v.structure_ok && (v.header.flags & image::kFlagEncrypted))
    reason = "an encrypted image is not bootable (it was never decrypted)";
  if (reason.empty()) reason = rollback_failure(v.header, floor);
  if (reason.empty() && v.structure_ok) reason = dependency_failure(v.header, image1_running());
  return reason;
}

std::uint32_t VirtualBoard::Impl::counter_value() const { return std::max(counter.value(), ram.counter_raised); }

void VirtualBoard::Impl::raise_counter(std::uint32_t n, bool by_application) {
  if (n <= counter_value() || n > counter.capacity()) return;
  if (cfg.has(Defect::counter_not_persisted)) {
    // The raise never reaches the counter area: the application keeps it in
    // RAM, the bootloader's RAM is gone when it hands over.
    if (by_application) ram.counter_raised = n;
    print(fmt::format("anti-rollback counter raised to {}", n));
    return;
  }
  counter.raise_to(n, "counter");
  print(fmt::format("anti-rollback counter raised to {}", counter.value()));
}

BootRecord VirtualBoard::Impl::read_state() {
  auto stored = log.read();
  BootRecord st;
  if (cfg.mode == BootMode::direct_xip && !stored) st.slot_state = {SlotState::confirmed, SlotState::confirmed};
  if (stored) st = *stored;
  if (st.primary >= FlashGeometry::kSlots) st.primary = 0;
  return st;
}

std::uint64_t VirtualBoard::Impl::image_sectors(int slot) const {
  const auto& g = flash.geometry();
  const auto head = flash.read(g.slot_offset(slot), image::kHeaderSize);
  if (std::all_of(head.begin(), head.end(), [](std::uint8_t b) { return b == 0xFF; })) return 0;  // erased
  const auto h = image::decode_header(head.first<image::kHeaderSize>());
  if (h.magic != image::kHeaderMagic) return g.slot_sectors();
  const std::uint64_t size = std::uint64_t{image::kHeaderSize} + h.payload_size + image::kTrailerSize;
  return std::min<std::uint64_t>(g.slot_sectors(), (size + g.sector_size - 1) / g.sector_size);
}

// ---------------------------------------------------------------------------- boot chain

void VirtualBoard::Impl::boot_chain() {
  while (true) {
    ++ram.boots;
    print(std::string(kBanner) + to_string(cfg.mode));
    advance(cfg.boot_time);
    std::optional<BootSelection> selection;
    bool reboot = false;
    try {
      if (has_image1() && !boot_image1()) {
        print(fmt::format("BOOT FAILED: no bootable {}", cfg.image1_name));
        ram.state = RunState::bricked;
        return;
      }
      selection = bootloader();
      if (!selection) {
        print("BOOT FAILED: no bootable image");
        ram.state = RunState::bricked;
        return;
      }
      reboot = application(*selection);
    } catch (const FlashError& e) {
      // The flash reported a failed write: reset and let the bootloader resume
      // from its records, as after a power cut.
      print(std::string(e.what()) + "; resetting");
      reboot = true;
    }
    if (!reboot) return;
    if (ram.boots >= cfg.max_boots) {
      print(fmt::format("reboot limit: {} boots without a healthy application, staying up", ram.boots));
      if (ram.state == RunState::running) print(status_line());
      else ram.state = RunState::bricked;
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
    case BootMode::ab: return boot_ab();
    case BootMode::swap_scratch:
    case BootMode::swap_move: return boot_swap();
    case BootMode::overwrite_only: return boot_overwrite();
    case BootMode::direct_xip: return boot_xip();
  }
  throw std::logic_error(fmt::format("virtual board: boot mode {} is not implemented", to_string(cfg.mode)));
}

// ---------------------------------------------------------------------------- application

bool VirtualBoard::Impl::application(const BootSelection& selection) {
  const auto v = verdict(selection.slot);
  last_slot = selection.slot;
  if (!v.structure_ok) {
    // Only a bootloader that does not verify gets here: nothing runnable.
    print(fmt::format("app: slot {} holds no runnable image: halted", slot_name(selection.slot)));
    ram.state = RunState::bricked;
    return false;
  }
  if (ram.image1_trial && (ram.image1_header.flags & image::kFlagSelfTestFails)) {
    // The second image on trial failed its own check: the watchdog resets,
    // the first stage reverts it.
    print(fmt::format("{} self-test failed", cfg.image1_name));
    return true;
  }
  ram.state = RunState::running;
  ram.slot = selection.slot;
  ram.trial = selection.trial;
  ram.header = v.header;
  ram.key = v.trailer.key_id;
  ram.signed_size = v.signed_size;
  print(fmt::format("app {} slot {}: running{}", v.header.version.str(), slot_name(selection.slot),
                    selection.trial ? " (trial)" : ""));
  // confirm-before-selftest: the trial is made permanent before it proved itself.
  if (ram.trial && cfg.has(Defect::confirm_before_selftest)) confirm();
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
  if (ram.image1_trial) {
    // The application runs healthy beside the second image on trial: it is
    // kept, before the application is. A cut between the two leaves the new
    // second image beside the old application (which it still serves), never
    // the new application beside the old second image it does not run with.
    image1_log.append(BootRecord{0, static_cast<std::uint8_t>(ram.image1_slot), kNoSlot, false, true}, "confirm");
    ram.image1_trial = false;
    print(fmt::format("confirmed {} slot {}", cfg.image1_name, slot_name(ram.image1_slot)));
  }
  if (ram.trial) confirm();
  print(status_line());
  return false;
}

void VirtualBoard::Impl::confirm() {
  auto st = read_state();
  switch (cfg.mode) {
    case BootMode::ab:
      st = BootRecord{0, static_cast<std::uint8_t>(ram.slot), kNoSlot, false, true};
      break;
    case BootMode::swap_scratch:
    case BootMode::swap_move:
    case BootMode::overwrite_only:
      st.trial_active = false;
      st.confirmed = true;
      break;
    case BootMode::direct_xip:
      st.slot_state[static_cast<std::size_t>(ram.slot)] = SlotState::confirmed;
      st.primary = static_cast<std::uint8_t>(ram.slot);
      st.confirmed = true;
      break;
  }
  log.append(st, "confirm");
  ram.trial = false;
  print(fmt::format("confirmed slot {}", slot_name(ram.slot)));
  time_floor = std::max(time_floor, ram.header.signing_time);
  raise_counter(ram.header.security_counter, true);
}

// ---------------------------------------------------------------------------- agent

int VirtualBoard::Impl::update_target() const {
  switch (cfg.mode) {
    case BootMode::ab: return cfg.has(Defect::inplace_overwrite) ? ram.slot : 1 - ram.slot;
    case BootMode::direct_xip: return 1 - ram.slot;
    case BootMode::swap_scratch:
    case BootMode::swap_move:
    case BootMode::overwrite_only: return 1;  // the secondary; the primary always runs
  }
  return 1 - ram.slot;
}

void VirtualBoard::Impl::stage(int target) {
  const auto t = static_cast<std::uint8_t>(target);
  auto st = read_state();
  switch (cfg.mode) {
    case BootMode::ab:
      if (target == ram.slot) return;  // written in place (inplace-overwrite, delta-in-place): nothing to stage
      st = BootRecord{0, static_cast<std::uint8_t>(ram.slot), t, false, true};
      break;
    case BootMode::swap_scratch:
    case BootMode::swap_move:
    case BootMode::overwrite_only:
      st.pending = t;
      break;
    case BootMode::direct_xip:
      st.slot_state[t] = SlotState::pending;
      break;
  }
  log.append(st, "stage");
}

DeliveryResult VirtualBoard::Impl::agent(std::span<const std::uint8_t> delivered) {
  const auto& g = flash.geometry();
  link_bytes = 0;
  auto refuse = [&](std::string reason) {
    print("ota: refused: " + reason);
    return DeliveryResult{DeliveryStatus::refused, std::move(reason), link_bytes};
  };
  if (ram.trial) return refuse(fmt::format("slot {} runs as an unconfirmed trial", slot_name(ram.slot)));

  // A device with a second image takes bundles (docs/image-format.md): whole
  // images back to back, at most one of each index; bytes after the last
  // that do not start another image are ignored. A device without one takes
  // the delivered bytes as the application's image, as they are.
  std::span<const std::uint8_t> image = delivered;
  std::span<const std::uint8_t> second;
  if (has_image1()) {
    image = {};
    std::size_t at = 0;
    for (int part = 1; at < delivered.size(); ++part) {
      const auto rest = delivered.subspan(at);
      if (part > 1 && (rest.size() < image::kHeaderSize ||
                       image::decode_header(rest.first<image::kHeaderSize>()).magic != image::kHeaderMagic))
        return refuse(fmt::format("bundle: {} bytes after image {} are no image", rest.size(), part - 1));
      image::Parsed p;
      try {
        p = image::parse(rest, fmt::format("bundle image {}", part));
      } catch (const InputError& e) {
        if (part == 1) {
          image = rest;  // not an image at all: the agent's checks below name what is wrong
          break;
        }
        return refuse(e.what());
      }
      auto& slot = p.header.image_index == 1 ? second : image;
      if (p.header.image_index > 1)
        return refuse(fmt::format("bundle image {}: image index {}: this device has images 0 and 1 only", part,
                                  p.header.image_index));
      if (!slot.empty())
        return refuse(fmt::format("bundle image {}: a second image {} in one bundle", part, p.header.image_index));
      slot = rest.first(p.total_size);
      at += p.total_size;
    }
  }

  // The second image first: written into its other slot (second-image-in-place:
  // over the slot it runs from) and verified, not staged until the whole
  // bundle is.
  std::optional<image::Version> image1_after = image1_running();
  int image1_target = -1;
  if (!second.empty()) {
    image1_target = cfg.has(Defect::image1_in_place) ? ram.image1_slot : 1 - ram.image1_slot;
    if (second.size() > g.image1_slot_size)
      return refuse(fmt::format("{} image of {} bytes exceeds its slot size {}", cfg.image1_name, second.size(),
                                g.image1_slot_size));
    print(fmt::format("ota: receiving {} bytes into {} slot {}", second.size(), cfg.image1_name,
                      slot_name(image1_target)));
    try {
      write_area(g.image1_offset(image1_target), second);
    } catch (const FlashError& e) {
      return refuse(e.what());
    }
    const auto v = image1_verdict(image1_target);
    std::string reason = image1_failure(v, image1_running());
    if (reason.empty() && image.empty()) reason = dependency_failure(v.header, image1_running());
    if (!reason.empty()) return refuse(fmt::format("{}: {}", cfg.image1_name, reason));
    // The running application must run beside it when the bundle brings no new one.
    if (image.empty()) {
      if (auto dep = dependency_failure(ram.header, v.header.version); !dep.empty())
        return refuse(fmt::format("{} {}: the running application: {}", cfg.image1_name, v.header.version.str(), dep));
    }
    print(fmt::format("ota: verify {} slot {}: ok (version {})", cfg.image1_name, slot_name(image1_target),
                      v.header.version.str()));
    image1_after = v.header.version;
  }

  int target = -1;
  SlotVerdict v;
  Bytes assembled;
  if (!image.empty() || second.empty()) {
    const bool is_delta = image::delta::is_delta(image);
    // delta-in-place: a delta release is patched over the running slot.
    target = is_delta && cfg.has(Defect::delta_in_place) ? ram.slot : update_target();
    if (is_delta) {
      // A delta release (docs/image-format.md): the patch applies to the image
      // this device runs, and what it assembles is verified below as a whole,
      // as a full image is.
      link_bytes += image.size();
      try {
        const auto d = image::delta::parse(image, "delta", g.slot_size);
        const auto running = verdict(ram.slot);
        if (!running.structure_ok || running.signed_size != d.patch.base_size ||
            running.digest != d.patch.base_sha256)
          return refuse(fmt::format("delta: wrong base: it was made against {}, slot {} runs {}",
                                    crypto::hex(d.patch.base_sha256), slot_name(ram.slot),
                                    crypto::hex(running.digest)));
        // The base goes to RAM before anything is written (it may be the slot written).
        const auto base_bytes = flash.read(g.slot_offset(ram.slot), d.patch.base_size);
        const Bytes base_copy(base_bytes.begin(), base_bytes.end());
        assembled = image::delta::assemble(d, base_copy, "delta");
        const auto st = image::delta::stats(d.patch);
        print(fmt::format("ota: delta of {} bytes against slot {}: {} bytes copied, {} inserted", image.size(),
                          slot_name(ram.slot), st.copied, st.inserted));
      } catch (const InputError& e) {
        return refuse(e.what());
      }
      image = assembled;
    }
    if (image.size() > g.slot_size)
      return refuse(fmt::format("image of {} bytes exceeds the slot size {}", image.size(), g.slot_size));

    print(fmt::format("ota: {} {} bytes into slot {}", is_delta ? "patching" : "receiving", image.size(),
                      slot_name(target)));
    const char* phase = is_delta ? "patch" : "download";
    const auto base = g.slot_offset(target);
    const auto bytes_before = link_bytes;
    try {
      if (cfg.has(Defect::wrong_write_order) && image.size() >= image::kHeaderSize) {
        // The commit goes first: the new slot becomes the confirmed primary and
        // the counter rises before a byte of the image is written.
        const auto h = image::decode_header(image.first<image::kHeaderSize>());
        log.append(BootRecord{0, static_cast<std::uint8_t>(target), kNoSlot, false, true}, "stage");
        if (h.magic == image::kHeaderMagic && h.security_counter <= counter.capacity())
          raise_counter(h.security_counter, true);
      }
      if (cfg.mode == BootMode::direct_xip) {
        // The slot's old state must not outlive its old image.
        auto st = read_state();
        if (st.slot_state[static_cast<std::size_t>(target)] != SlotState::empty) {
          st.slot_state[static_cast<std::size_t>(target)] = SlotState::empty;
          log.append(st, "invalidate");
        }
      }
      std::vector<bool> erased(g.slot_sectors(), false);
      Bytes chunk;
      for (std::uint64_t off = 0; off < image.size(); off += cfg.chunk_size) {
        const std::uint64_t len = std::min<std::uint64_t>(cfg.chunk_size, image.size() - off);
        if (!is_delta) link_bytes = bytes_before + off + len;
        for (auto s = off / g.sector_size; s <= (off + len - 1) / g.sector_size; ++s) {
          if (erased[s]) continue;
          flash.erase(base + s * g.sector_size, phase);
          erased[s] = true;
        }
        const std::uint64_t padded = (len + g.program_align - 1) / g.program_align * g.program_align;
        chunk.assign(padded, 0xFF);
        std::copy_n(image.begin() + static_cast<std::ptrdiff_t>(off), len, chunk.begin());
        flash.program(base + off, chunk, phase);
      }
    } catch (const FlashError& e) {
      return refuse(e.what());
    }

    v = verdict(target);
    std::string reason;
    if (image.size() >= image::kHeaderSize) {
      // The size the header declares, before anything past the received bytes is read.
      auto h = image::decode_header(flash.read(base, g.slot_size).first<image::kHeaderSize>());
      const std::uint64_t declared = std::uint64_t{image::kHeaderSize} + h.payload_size + image::kTrailerSize;
      if (h.magic == image::kHeaderMagic && declared > image.size())
        reason = fmt::format("incomplete image: it declares {} bytes, {} arrived", declared, image.size());
    }
    auto checks = [&] {
      if (reason.empty()) reason = authenticity_failure(v);
      if (reason.empty()) reason = validity_failure(v);
      if (reason.empty() && has_image1() && v.header.image_index != 0)
        reason = fmt::format("image {} is not the application (image 0)", v.header.image_index);
      if (reason.empty()) reason = compatibility_failure(v.header);
      if (reason.empty()) reason = rollback_failure(v.header, ram.header.version);
      if (reason.empty()) reason = dependency_failure(v.header, image1_after);
    };
    // An encrypted image (docs/image-format.md, "Encrypted payloads"): the
    // outer image is verified as it sits in the slot (ciphertext at rest),
    // then decrypted into the slot and the plaintext image verified again.
    // decrypt-before-verify: the plaintext goes into the slot first.
    const bool encrypted = reason.empty() && v.structure_ok && (v.header.flags & image::kFlagEncrypted);
    if (encrypted) {
      if (!cfg.has(Defect::decrypt_before_verify)) checks();
      if (reason.empty()) {
        try {
          reason = decrypt_slot(target);
        } catch (const FlashError& e) {
          return refuse(e.what());
        }
      }
      if (reason.empty()) {
        v = verdict(target);
        if (v.structure_ok && (v.header.flags & image::kFlagEncrypted)) reason = "the decrypted image is encrypted again";
      }
    }
    checks();
    // A key-rotation message: its keys take effect once it verified.
    if (reason.empty() && (v.header.flags & image::kFlagTrustUpdate)) reason = apply_trust_update(target);
    if (!reason.empty()) return refuse(std::move(reason));
    print(fmt::format("ota: verify slot {}: ok (version {}, counter {})", slot_name(target), v.header.version.str(),
                      v.header.security_counter));
  }

  std::string detail;
  try {
    if (image1_target >= 0 && image1_target != ram.image1_slot) {
      image1_log.append(BootRecord{0, static_cast<std::uint8_t>(ram.image1_slot),
                                   static_cast<std::uint8_t>(image1_target), false, true},
                        "stage");
      print(fmt::format("ota: staged {} slot {}", cfg.image1_name, slot_name(image1_target)));
    }
    if (image1_target >= 0) detail = fmt::format("{} {}", cfg.image1_name, image1_after ? image1_after->str() : "");
    if (target >= 0) {
      if (!cfg.has(Defect::wrong_write_order)) stage(target);
      // counter-raised-on-stage: the counter rises before the new image ever ran.
      if (cfg.has(Defect::counter_raised_on_stage)) raise_counter(v.header.security_counter, true);
    }
  } catch (const FlashError& e) {
    return refuse(e.what());
  }
  if (target >= 0) {
    print(fmt::format("ota: staged slot {}, rebooting", slot_name(target)));
    detail = fmt::format("staged {} in slot {}{}{}", v.header.version.str(), slot_name(target),
                         detail.empty() ? "" : " and ", detail);
  } else {
    print(fmt::format("ota: staged {} slot {}, rebooting", cfg.image1_name, slot_name(image1_target)));
    detail = "staged " + detail + " in slot " + std::string(1, slot_name(image1_target));
  }
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
  auto line = fmt::format("STATUS slot={} version={} digest={} counter={} state={} health={} key={}",
                          slot_name(ram.slot), ram.header.version.str(), crypto::hex(digest), counter_value(),
                          ram.trial ? "trial" : "confirmed", ram.healthy ? "ok" : "failed", crypto::hex(ram.key));
  if (has_image1() && ram.image1_slot >= 0)
    line += fmt::format(" image1={} image1_digest={}", ram.image1_header.version.str(), crypto::hex(ram.image1_digest));
  if (cfg.status_payload) {
    // payload=: the SHA-256 of the payload alone, as a device that knows
    // only its payload's hash reports it (docs/board-profile.md, "Identity").
    const auto header_size = std::min<std::uint64_t>(image::kHeaderSize, ram.signed_size);
    const auto payload =
        flash.read(flash.geometry().slot_offset(ram.slot) + header_size, ram.signed_size - header_size);
    stats.sha256_bytes += payload.size();
    line += " payload=" + crypto::hex(crypto::sha256(payload));
  }
  return line;
}

}  // namespace otarig::drivers::vboard
