// The virtual board's configuration: names of modes and defects, and the
// profile's `device` section.
#include <fmt/format.h>

#include <array>

#include "otarig/drivers/virtual/board.hpp"

namespace otarig::drivers::vboard {
namespace {

struct ModeName {
  BootMode mode;
  const char* name;
  bool implemented;
};
constexpr std::array kModes{
    ModeName{BootMode::ab, "ab", true},
    ModeName{BootMode::swap_scratch, "swap-scratch", false},
    ModeName{BootMode::swap_move, "swap-move", false},
    ModeName{BootMode::overwrite_only, "overwrite-only", false},
    ModeName{BootMode::direct_xip, "direct-xip", false},
};

struct DefectName {
  Defect defect;
  const char* name;
  bool implemented;
};
constexpr std::array kDefects{
    DefectName{Defect::inplace_overwrite, "inplace-overwrite", true},
    DefectName{Defect::no_rollback_check, "no-rollback-check", true},
    DefectName{Defect::no_signature_check, "no-signature-check", false},
    DefectName{Defect::hash_only, "hash-only", false},
    DefectName{Defect::verify_on_stage_only, "verify-on-stage-only", false},
    DefectName{Defect::no_revert, "no-revert", false},
    DefectName{Defect::confirm_before_selftest, "confirm-before-selftest", false},
    DefectName{Defect::counter_raised_on_stage, "counter-raised-on-stage", false},
    DefectName{Defect::counter_not_persisted, "counter-not-persisted", false},
    DefectName{Defect::version_ignores_major, "version-ignores-major", false},
    DefectName{Defect::copy_unverified, "copy-unverified", false},
    DefectName{Defect::wrong_write_order, "wrong-write-order", false},
    DefectName{Defect::stale_trailer, "stale-trailer", false},
    DefectName{Defect::any_key, "any-key", false},
};
static_assert(kDefects.size() == kDefectCount);

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
  if (auto p = flash.problem(); !p.empty()) return "flash: " + p;
  if (chunk_size == 0 || chunk_size % flash.program_align != 0)
    return fmt::format("chunk_size {} must be a nonzero multiple of program_align {}", chunk_size,
                       flash.program_align);
  if (max_boots == 0) return "max_boots must be at least 1";
  for (std::size_t i = 0; i < kDefectCount; ++i)
    if (defects.test(i) && !is_implemented(static_cast<Defect>(i)))
      return fmt::format("defect '{}' is not implemented", to_string(static_cast<Defect>(i)));
  return {};
}

BoardConfig BoardConfig::from_config(const Config& device) {
  device.only_keys({"kind", "mode", "flash", "chunk_size", "boot_time", "defects", "fast_sweep"});
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
        cfg.with(*d);
      }
    }
  }

  cfg.fast_sweep = device.bool_or("fast_sweep", cfg.fast_sweep);
  if (auto p = cfg.problem(); !p.empty()) device.fail(p);
  return cfg;
}

}  // namespace otarig::drivers::vboard
