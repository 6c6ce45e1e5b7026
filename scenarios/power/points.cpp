// How power-fault points describe themselves in the evidence.
#include <fmt/format.h>

#include "power.hpp"
#include "otarig/harness/rng.hpp"

namespace otarig::scenarios::power {

nlohmann::json CutOptions::json() const {
  nlohmann::json j{{"at", at}, {"torn", torn}};
  if (!flash_error) {
    j["modes"] = modes;
    j["recovery_cuts"] = recovery_cuts;
    j["image"] = image.empty() ? "release" : image;
    if (at == "download-byte" || at == "every-flash-op") j["points"] = points;
    if (at == "console") {
      j["pattern"] = pattern;
      if (patterns.size() > 1) j["patterns"] = patterns;
      j["delay_ms"] = delay_ms;
    }
  }
  return j;
}

nlohmann::json CountedCut::json() const {
  nlohmann::json j;
  j["at"] = at;
  j["before_op"] = before_op;
  j["ops_total"] = ops_total;
  j["torn"] = torn;
  if (torn) j["torn_seed"] = torn_seed;
  if (!image.empty()) j["image"] = image;
  if (flash_error) j["error"] = true;
  if (recovery_cuts) j["recovery_cuts"] = recovery_cuts;
  return j;
}

std::string CountedCut::label() const {
  return fmt::format("{} op {}/{}{}", kind, before_op, ops_total, torn ? " torn" : "");
}

std::string CountedCut::text() const {
  if (flash_error) return fmt::format("{} at op {}/{}{}", kind, before_op, ops_total, torn ? " (part landed)" : "");
  return fmt::format("{} before op {}/{}{} [{}]", kind, before_op, ops_total, torn ? " (torn write)" : "", at);
}

nlohmann::json PlacedCut::json() const {
  nlohmann::json j;
  j["at"] = at;
  if (!mapped_from.empty()) j["mapped_from"] = mapped_from;
  if (at == "download-byte") {
    j["byte"] = byte;
    j["image_size"] = image_size;
  }
  if (at == "time") {
    j["delay_ms"] = delay_ms;
    j["update_ms"] = update_ms;
  }
  if (at == "console") {
    j["pattern"] = pattern;
    j["delay_ms"] = delay_ms;
  }
  if (!image.empty()) j["image"] = image;
  if (recovery_cuts) j["recovery_cuts"] = recovery_cuts;
  if (!crash_mode.empty()) {
    j["crash_mode"] = crash_mode;
    j["crash_seed"] = crash_seed;
  }
  return j;
}

std::string PlacedCut::label() const {
  if (at == "download-byte") return fmt::format("power-cut at byte {}/{}", byte, image_size);
  if (at == "time") return fmt::format("power-cut at {} ms", delay_ms);
  return fmt::format("power-cut {} ms after /{}/", delay_ms, pattern);
}

std::string PlacedCut::text() const {
  if (at == "download-byte") return fmt::format("power-cut at byte {} of {} [download-byte]", byte, image_size);
  if (at == "time") return fmt::format("power-cut {} ms after the update command [time]", delay_ms);
  return fmt::format("power-cut {} ms after a console line [console]", delay_ms);
}

std::uint32_t recovery_cut_count(std::uint64_t trial_seed, std::uint32_t max) {
  if (max == 0) return 0;
  return static_cast<std::uint32_t>(harness::Rng(harness::mix64(trial_seed ^ 0x62726f776e6f7574ULL)).between(1, max));
}

}  // namespace otarig::scenarios::power
