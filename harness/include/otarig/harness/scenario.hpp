#pragma once
// Scenarios (scenarios/*.yaml): what a trial does and which fault it injects.
// Schema: docs/scenarios.md.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "otarig/core/config.hpp"

namespace otarig::harness {

struct FaultSpec {
  std::string kind;                   ///< a name from scenarios/faults.cpp (otarig list faults)
  /// power-cut: every-flash-op | random-flash-op (counted flash operations),
  /// download-byte | random-time | console (cuts placed in a delivery);
  /// flash-error: every-flash-op | random-flash-op
  std::string at;
  std::uint32_t points = 16;          ///< power-cut at download-byte: cut points spread over the image
  std::string pattern;                ///< power-cut at console: RE2 of the line (${banner}: the profile's)
  std::uint32_t delay_ms = 0;         ///< power-cut at console: the cut falls 0..delay_ms after the line
  std::string faults;                 ///< network: fault proxy spec (${b}: a seeded byte of the image)
  std::string probe;                  ///< network: "" | no-client-certificate
  /// network: what the device must do through the fault: `installed` (finish
  /// the update), `stays-up` (answer the update command within the link's
  /// timeout and its status right after, before any power cycle).
  std::vector<std::string> expect;
  std::string serve;                  ///< stale: the release the server answers with
  double torn = 0.0;                  ///< power-cut: probability that a cut is a torn write;
                                      ///< flash-error: that the failing op partly lands
  std::uint32_t recovery_cuts = 0;    ///< power-cut: up to this many more cuts while recovering (brown-out)
  std::string image;                  ///< power-cut: "" the release itself, "self-test-fail" its failing twin
  std::vector<std::string> variants;  ///< tamper: which damages
  std::string slot;                   ///< bit-rot: running | other | any
  std::uint32_t bits = 1;             ///< bit-rot: at most this many bits flipped per trial
  std::string where;

  bool expects(std::string_view what) const {
    for (const auto& e : expect)
      if (e == what) return true;
    return false;
  }
};

struct Scenario {
  std::filesystem::path path;
  std::string name;
  std::string title;
  std::vector<std::string> classes;       ///< S1..S15 of COMPLIANCE.md
  std::vector<std::string> requirements;  ///< requirement ids of COMPLIANCE.md
  std::string start;                      ///< release installed before each trial
  std::vector<std::string> before;        ///< clean updates done first
  std::string deliver;                    ///< release the faulted step delivers
  FaultSpec fault;
  std::string retry;                      ///< clean update that must succeed afterwards ("" = none)
  std::uint64_t trials = 0;               ///< randomized scenarios: trial count
  std::vector<Scenario> parts;            ///< a suite (nightly): its scenarios, in order
  std::string where_start, where_deliver, where_retry;

  bool is_suite() const { return !parts.empty(); }
  /// The scenarios a campaign runs: the parts of a suite, or itself.
  std::vector<const Scenario*> leaves() const;
};

/// Loads scenarios/NAME.yaml (or a path); a suite's `include` entries are
/// loaded from the same directory. Errors name file and line.
Scenario load_scenario(const std::string& name_or_path);

/// Names of the scenarios in the catalog.
std::vector<std::filesystem::path> catalog_scenarios();

}  // namespace otarig::harness
