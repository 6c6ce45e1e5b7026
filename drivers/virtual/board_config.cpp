// The virtual board's configuration: names of modes and defects, and the
// profile's `device` section.
#include <fmt/format.h>

#include <algorithm>
#include <array>

#include "otarig/drivers/virtual/board.hpp"
#include "otarig/drivers/virtual/boot_state.hpp"

namespace otarig::drivers::vboard {
namespace {

struct ModeName {
  BootMode mode;
  const char* name;
  bool implemented;
  std::uint32_t magic;
  std::uint32_t swap_sectors;  ///< scratch / extra sector
};
constexpr std::array kModes{
    ModeName{BootMode::ab, "ab", true, kBootRecordMagic, 0},
    ModeName{BootMode::swap_scratch, "swap-scratch", true, kSwapScratchMagic, 1},
    ModeName{BootMode::swap_move, "swap-move", true, kSwapMoveMagic, 1},
    ModeName{BootMode::overwrite_only, "overwrite-only", true, kOverwriteMagic, 0},
    ModeName{BootMode::direct_xip, "direct-xip", true, kDirectXipMagic, 0},
};

// Modes in which a flaw is modelled: every mode, or the one bootloader where it lives.
enum ModeSet : unsigned {
  kAllModes = 0x1F,
  kAb = 1u << static_cast<unsigned>(BootMode::ab),
  kSwapModes = (1u << static_cast<unsigned>(BootMode::swap_scratch)) | (1u << static_cast<unsigned>(BootMode::swap_move)),
  kOverwrite = 1u << static_cast<unsigned>(BootMode::overwrite_only),
};

struct DefectName {
  Defect defect;
  const char* name;
  bool implemented;
  unsigned modes;
};
constexpr std::array kDefects{
    DefectName{Defect::inplace_overwrite, "inplace-overwrite", true, kAb},
    DefectName{Defect::no_rollback_check, "no-rollback-check", true, kAllModes},
    DefectName{Defect::no_signature_check, "no-signature-check", true, kAllModes},
    DefectName{Defect::hash_only, "hash-only", true, kAllModes},
    DefectName{Defect::verify_on_stage_only, "verify-on-stage-only", true, kAllModes},
    DefectName{Defect::no_revert, "no-revert", true, kAb},
    DefectName{Defect::confirm_before_selftest, "confirm-before-selftest", true, kAllModes},
    DefectName{Defect::counter_raised_on_stage, "counter-raised-on-stage", true, kAllModes},
    DefectName{Defect::counter_not_persisted, "counter-not-persisted", true, kAllModes},
    DefectName{Defect::version_ignores_major, "version-ignores-major", true, kAllModes},
    DefectName{Defect::copy_unverified, "copy-unverified", true, kOverwrite},
    DefectName{Defect::wrong_write_order, "wrong-write-order", true, kAb},
    DefectName{Defect::stale_trailer, "stale-trailer", true, kSwapModes},
    DefectName{Defect::any_key, "any-key", true, kAllModes},
    DefectName{Defect::trusts_stated_digest, "trusts-stated-digest", true, kAllModes},
    DefectName{Defect::version_string_compare, "version-string-compare", true, kAllModes},
    DefectName{Defect::ignores_revocation, "ignores-revocation", true, kAllModes},
    DefectName{Defect::validity_by_raw_clock, "validity-by-raw-clock", true, kAllModes},
    DefectName{Defect::delta_in_place, "delta-in-place", true, kAb},
    DefectName{Defect::ignores_device_type, "ignores-device-type", true, kAllModes},
    DefectName{Defect::ignores_dependency, "ignores-dependency", true, kAllModes},
    DefectName{Defect::image1_in_place, "second-image-in-place", true, kAllModes},
    DefectName{Defect::decrypt_before_verify, "decrypt-before-verify", true, kAllModes},
};
static_assert(kDefects.size() == kDefectCount);

std::string mode_names(unsigned modes) {
  std::string out;
  for (const auto& m : kModes)
    if (modes & (1u << static_cast<unsigned>(m.mode))) out += (out.empty() ? "" : ", ") + std::string(m.name);
  return out;
}

template <class Table>
std::string names(const Table& table, bool implemented_only) {
  std::string out;
  for (const auto& e : table) {
    if (implemented_only && !e.implemented) continue;
    out += (out.empty() ? "" : ", ") + std::string(e.name);
  }
  return out;
}

}  // namespace

const char* to_string(BootMode mode) {
  for (const auto& m : kModes)
    if (m.mode == mode) return m.name;
  return "unknown";
}

bool is_implemented(BootMode mode) {
  for (const auto& m : kModes)
    if (m.mode == mode) return m.implemented;
  return false;
}

std::optional<BootMode> mode_from_string(std::string_view name) {
  for (const auto& m : kModes)
    if (name == m.name) return m.mode;
  return std::nullopt;
}

std::uint32_t record_magic(BootMode mode) {
  for (const auto& m : kModes)
    if (m.mode == mode) return m.magic;
  return kBootRecordMagic;
}

bool applies_to(Defect defect, BootMode mode) {
  for (const auto& d : kDefects)
    if (d.defect == defect) return (d.modes & (1u << static_cast<unsigned>(mode))) != 0;
  return false;
}

FlashGeometry BoardConfig::layout() const {
  FlashGeometry g = flash;
  for (const auto& m : kModes)
    if (m.mode == mode) g.swap_sectors = m.swap_sectors;
  return g;
}

const char* to_string(Defect defect) {
  for (const auto& d : kDefects)
    if (d.defect == defect) return d.name;
  return "unknown";
}

std::optional<Defect> defect_from_string(std::string_view name) {
  for (const auto& d : kDefects)
    if (name == d.name) return d.defect;
  return std::nullopt;
}

bool is_implemented(Defect defect) {
  for (const auto& d : kDefects)
    if (d.defect == defect) return d.implemented;
  return false;
}

std::string BoardConfig::problem() const {
  if (!is_implemented(mode)) return fmt::format("boot mode '{}' is not implemented", to_string(mode));
  if (auto p = layout().problem(); !p.empty()) return "flash: " + p;
  if (chunk_size == 0 || chunk_size % flash.program_align != 0)
    return fmt::format("chunk_size {} must be a nonzero multiple of program_align {}", chunk_size,
                       flash.program_align);
  if (max_boots == 0) return "max_boots must be at least 1";
  if (image1_name.empty() != (flash.image1_slot_size == 0))
    return "a second image needs both its name and its slot_size";
  for (auto d : {Defect::ignores_dependency, Defect::image1_in_place})
    if (has(d) && image1_name.empty())
      return fmt::format("defect '{}' needs a second image (device.second_image)", to_string(d));
  for (const auto& d : kDefects) {
    if (!has(d.defect)) continue;
    if (!d.implemented) return fmt::format("defect '{}' is not implemented", d.name);
    if (!applies_to(d.defect, mode))
      return fmt::format("defect '{}' is modelled in mode {} only, not in mode {}", d.name, mode_names(d.modes),
                         to_string(mode));
  }
  return {};
}

BoardConfig BoardConfig::from_config(const Config& device) {
  device.only_keys({"kind", "mode", "flash", "chunk_size", "boot_time", "defects", "fast_sweep", "status_payload",
                    "policy", "second_image"});
  BoardConfig cfg;
  if (auto kind = device.find("kind"); kind && kind->as_string() != "virtual")
    kind->fail(fmt::format("expected kind 'virtual', found '{}'", kind->as_string()));

  if (auto mode = device.find("mode")) {
    const auto name = mode->as_string();
    const ModeName* found = nullptr;
    for (const auto& m : kModes)
      if (name == m.name) found = &m;
    if (!found) mode->fail(fmt::format("unknown boot mode '{}' (known: {})", name, names(kModes, false)));
    if (!found->implemented)
      mode->fail(fmt::format("boot mode '{}' is not implemented by the virtual board yet (implemented: {})",
                             name, names(kModes, true)));
    cfg.mode = found->mode;
  }

  if (auto flash = device.find("flash")) {
    flash->only_keys({"slot_size", "sector_size", "program_align", "metadata_sectors"});
    cfg.flash.slot_size = flash->size_or("slot_size", cfg.flash.slot_size);
    cfg.flash.sector_size = flash->size_or("sector_size", cfg.flash.sector_size);
    cfg.flash.program_align = flash->size_or("program_align", cfg.flash.program_align);
    if (auto m = flash->find("metadata_sectors")) {
      const auto n = m->as_uint();
      if (n < 2 || n > 64) m->fail(fmt::format("metadata_sectors {} must be 2..64", n));
      cfg.flash.metadata_sectors = static_cast<std::uint32_t>(n);
    }
    if (auto p = cfg.flash.problem(); !p.empty()) flash->fail(p);
  }

  if (auto second = device.find("second_image")) {
    second->only_keys({"name", "slot_size"});
    cfg.image1_name = second->at("name").as_string();
    const bool word = !cfg.image1_name.empty() && cfg.image1_name.size() <= 32 &&
                      std::all_of(cfg.image1_name.begin(), cfg.image1_name.end(), [](char c) {
                        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
                      });
    if (!word) second->at("name").fail("a second image's name is 1-32 of [a-z0-9_-]");
    cfg.flash.image1_slot_size = second->at("slot_size").as_size();
    if (cfg.flash.image1_slot_size == 0 || cfg.flash.image1_slot_size % cfg.flash.sector_size != 0)
      second->at("slot_size").fail(fmt::format("must be a nonzero multiple of sector_size {}", cfg.flash.sector_size));
  }

  if (auto chunk = device.find("chunk_size")) {
    cfg.chunk_size = chunk->as_size();
    if (cfg.chunk_size == 0 || cfg.chunk_size % cfg.flash.program_align != 0)
      chunk->fail(fmt::format("chunk_size {} must be a nonzero multiple of program_align {}", cfg.chunk_size,
                              cfg.flash.program_align));
  }

  cfg.boot_time = device.duration_or("boot_time", cfg.boot_time);

  if (auto defects = device.find("defects")) {
    if (!defects->node().IsNull()) {
      for (const auto& item : defects->items()) {
        const auto name = item.as_string();
        auto d = defect_from_string(name);
        if (!d) item.fail(fmt::format("unknown defect '{}' (known: {})", name, names(kDefects, false)));
        if (!is_implemented(*d))
          item.fail(fmt::format("defect '{}' is not implemented by the virtual board yet (implemented: {})",
                                name, names(kDefects, true)));
        if (!applies_to(*d, cfg.mode))
          item.fail(fmt::format("defect '{}' is modelled in mode {} only, not in mode {}", name,
                                mode_names(kDefects[static_cast<std::size_t>(*d)].modes), to_string(cfg.mode)));
        cfg.with(*d);
      }
    }
  }

  // The firmware does what the declared policy says (the harness checks the
  // policy's keys and values; here only those the firmware acts upon).
  if (auto policy = device.find("policy"); policy && policy->is_map()) {
    if (auto e = policy->find("signer_expiry")) {
      const auto v = e->as_string();
      if (v == "enforced") cfg.signer_expiry = SignerExpiry::enforced;
      else if (v == "signing-time") cfg.signer_expiry = SignerExpiry::signing_time;
      else if (v == "ignored") cfg.signer_expiry = SignerExpiry::ignored;
      else e->fail(fmt::format("'{}' is not one of enforced, signing-time, ignored", v));
    }
    if (auto c = policy->find("clock_1970")) cfg.clock_floor = c->as_string() == "recovers";
  }
  cfg.fast_sweep = device.bool_or("fast_sweep", cfg.fast_sweep);
  cfg.status_payload = device.bool_or("status_payload", cfg.status_payload);
  if (auto p = cfg.problem(); !p.empty()) device.fail(p);
  return cfg;
}

}  // namespace otarig::drivers::vboard
