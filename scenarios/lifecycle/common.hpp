#pragma once
// What the lifecycle kinds share: their options and points, the policy
// lookups, and the check that a release the policy says the device takes was
// installed.
#include <fmt/format.h>

#include <string>
#include <vector>

#include "otarig/harness/bench.hpp"
#include "otarig/harness/fault_kind.hpp"
#include "otarig/harness/oracles.hpp"
#include "otarig/harness/plan.hpp"
#include "otarig/harness/releases.hpp"
#include "otarig/harness/trial.hpp"

namespace otarig::scenarios::lifecycle {

struct VariantOptions final : harness::FaultOptions {
  std::vector<std::string> variants;
  nlohmann::json json() const override { return {{"variants", variants}}; }
};

/// Parses `variants:` (default: every one of `known`).
std::shared_ptr<const harness::FaultOptions> parse_variants(const Config& c, std::string_view kind,
                                                           const std::vector<std::string_view>& known);

/// Why a board declares no `device.policy.KEY` ("" when it does).
std::string missing_policy(const harness::BoardAbilities& board, std::string_view key);

/// Breaks `still-updatable` unless the observation after the fault runs
/// `expected` (a release the declared policy says the device installs).
void require_installed(harness::TrialPort& port, std::vector<harness::OracleResult>& oracles,
                       const harness::BuiltImage& expected, const std::string& why);

}  // namespace otarig::scenarios::lifecycle
