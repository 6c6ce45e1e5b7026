#pragma once
// The device's declared policy (a profile's `device.policy`): what it
// promises where devices legitimately differ (docs/board-profile.md,
// "Policy"). The rig judges a device against what it declared, as
// tuf-conformance's expectations do, and run.json lists the declaration
// beside the verdicts. The keys are a table: a new key is one row.
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "otarig/core/config.hpp"

namespace otarig::harness {

/// One key a policy may declare, with the values it may take.
struct PolicyKey {
  std::string_view name;
  std::vector<std::string_view> values;
  std::string_view summary;  ///< what it promises, for `otarig list` and the docs
};

/// Every key `device.policy` knows.
const std::vector<PolicyKey>& policy_keys();

struct DevicePolicy {
  /// key -> value, those the profile declared.
  std::map<std::string, std::string, std::less<>> values;
  /// key -> FILE:LINE of its declaration.
  std::map<std::string, std::string, std::less<>> where;

  /// The declared value, or nullopt when the profile does not declare the key.
  std::optional<std::string> get(std::string_view key) const;
  bool is(std::string_view key, std::string_view value) const;
  /// {key: value} as declared.
  nlohmann::json json() const;
};

/// Parses a `policy:` mapping. Unknown keys and values outside a key's table
/// are InputErrors naming file and line.
DevicePolicy parse_policy(const Config& section);

}  // namespace otarig::harness
