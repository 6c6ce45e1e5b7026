#pragma once
// Scenarios (scenarios/*.yaml): what a trial does and which fault it injects.
// Schema: docs/scenarios.md.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "otarig/core/config.hpp"
#include "otarig/harness/fault_kind.hpp"

namespace otarig::harness {

/// A scenario's `needs:` value: the board has a second updatable image and
/// reports it (its status pattern has the group `image1_version`).
inline constexpr const char* kNeedsSecondImage = "second-image";
/// A scenario's `needs:` value: the board's releases are encrypted for the device (`encryption:`).
inline constexpr const char* kNeedsEncryption = "encryption";

struct Scenario {
  std::filesystem::path path;
  /// SHA-256 (hex) of the file's bytes; a suite's covers its own file and
  /// each included scenario's digest, so editing any part changes it.
  std::string sha256;
  std::string name;
  std::string title;
  std::vector<std::string> classes;       ///< S1..S16 of the requirement catalog (docs/compliance.md)
  std::vector<std::string> requirements;  ///< requirement ids of the catalog (docs/compliance.md)
  std::string start;                      ///< release installed before each trial
  std::vector<std::string> before;        ///< clean updates done first
  std::string deliver;                    ///< release the faulted step delivers
  /// `delivery: delta`: the faulted step delivers `deliver` as a delta
  /// release made against the image the device runs then (the last `before`
  /// release, else `start`); the board must take deltas (profile `delta:`).
  bool delta = false;
  FaultSpec fault;
  std::string retry;                      ///< clean update that must succeed afterwards ("" = none)
  std::uint64_t trials = 0;               ///< randomized scenarios: trial count
  /// What the board must have (`needs: [second-image]`); a suite skips the
  /// scenario on a board without it, with the reason.
  std::vector<std::string> needs;
  std::vector<Scenario> parts;            ///< a suite (nightly): its scenarios, in order
  std::string where_start, where_deliver, where_retry;

  /// The image the faulted step's delta is made against (the last `before`, else `start`).
  const std::string& delta_base() const { return before.empty() ? start : before.back(); }
  /// The name the faulted step's image is measured under: `deliver`, or
  /// `deliver/delta` for a delta delivery.
  std::string delivered() const { return delta ? deliver + "/delta" : deliver; }

  bool is_suite() const { return !parts.empty(); }
  /// The scenarios a campaign runs: the parts of a suite, or itself.
  std::vector<const Scenario*> leaves() const;
};

/// Parses a scenario's `fault` section with the kind it names in `faults`.
FaultSpec parse_fault(const Config& section, const FaultRegistry& faults, const FaultParseContext& ctx);

/// Loads scenarios/NAME.yaml (or a path); a suite's `include` entries are
/// loaded from the same directory. Each fault section is parsed by the kind
/// it names in `faults`. Errors name file and line.
Scenario load_scenario(const std::string& name_or_path, const FaultRegistry& faults);
/// The same with the fault kinds otarig is built with (the composition root's).
Scenario load_scenario(const std::string& name_or_path);

/// Names of the scenarios in the catalog.
std::vector<std::filesystem::path> catalog_scenarios();

}  // namespace otarig::harness
