#pragma once
// A Plan turns a scenario (or a suite) and a seed into trials. Every random
// choice of a trial comes from trial_seed(seed, index).
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "otarig/harness/scenario.hpp"

namespace otarig::harness {

struct TrialSpec {
  std::uint64_t index = 0;
  std::string id;                   ///< zero-padded index, also the evidence folder name
  const Scenario* scenario = nullptr;
  std::uint64_t seed = 0;           ///< this trial's stream
  // power-cut, flash-error
  std::uint64_t cut_op = 0;         ///< 0: no counted cut
  std::uint64_t ops_total = 0;      ///< flash ops of the whole update (for where the cut fell)
  bool torn = false;
  std::uint64_t torn_seed = 0;
  bool flash_error = false;         ///< op cut_op fails with an error instead of a power loss
  std::uint32_t recovery_cuts = 0;  ///< brown-out: cuts again during this many recovery boots
  // bit-rot
  bool rot_running = true;          ///< the slot the device runs, else the other one
  std::uint32_t rot_bits = 0;
  std::uint64_t rot_seed = 0;
  // image faults
  std::string variant;

  /// The fault as recorded in the evidence.
  nlohmann::json fault_json() const;
};

struct Plan {
  std::vector<TrialSpec> trials;
  /// Flash operations one update takes, per "start->deliver" pair measured.
  std::map<std::string, std::uint64_t> ops_per_update;
};

/// Measures the flash operations of a clean update from `start` to `deliver`
/// (a release name, or "NAME/self-test-fail" for its twin that fails its self-test).
using CountOps = std::function<std::uint64_t(const std::string& start, const std::string& deliver)>;

/// Builds the plan. `count_ops` is called only for power-cut and flash-error
/// scenarios; it may be empty when the board does not count flash operations,
/// in which case such scenarios are an InputError naming the scenario.
Plan make_plan(const Scenario& scenario, std::uint64_t seed, const CountOps& count_ops);

/// Keeps `n` trials chosen by the seed (in index order), for --trials.
void limit_plan(Plan& plan, std::uint64_t n, std::uint64_t seed);
/// Keeps trials whose index % count == shard.
void shard_plan(Plan& plan, unsigned shard, unsigned count);

}  // namespace otarig::harness
