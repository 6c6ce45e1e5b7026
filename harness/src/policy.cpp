#include "otarig/harness/policy.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

namespace otarig::harness {

const std::vector<PolicyKey>& policy_keys() {
  static const std::vector<PolicyKey> keys = {
      {"signer_expiry",
       {"enforced", "signing-time", "ignored"},
       "whether an expired or not yet valid signer is refused, judged against the device clock (enforced) or the "
       "image's signing time (signing-time), or not at all (ignored)"},
      {"revoked_keys", {"refused"}, "a release signed by a revoked key is refused"},
      {"server_ca_updates",
       {"trust-block", "none"},
       "the device adds a CA for its update server's certificate from a signed key-rotation message's "
       "add-server-ca entry and keeps it through power loss (trust-block), or learns no server CA from an "
       "update (none)"},
      {"clock_1970",
       {"recovers", "refuses-updates"},
       "with its clock at 1970 (a dead RTC) the device still installs a validly signed release (recovers), or "
       "refuses updates until its clock is right (refuses-updates)"},
      {"clock_future",
       {"recovers", "refuses-updates"},
       "with its clock far in the future the device still installs a validly signed release, or refuses "
       "updates until its clock is right"},
      {"clock_skew",
       {"recovers", "refuses-updates"},
       "with its clock off by a seeded amount (minutes to weeks) the device still installs a validly signed "
       "release, or refuses updates until its clock is right"},
  };
  return keys;
}

std::optional<std::string> DevicePolicy::get(std::string_view key) const {
  auto it = values.find(key);
  if (it == values.end()) return std::nullopt;
  return it->second;
}

bool DevicePolicy::is(std::string_view key, std::string_view value) const {
  auto it = values.find(key);
  return it != values.end() && it->second == value;
}

nlohmann::json DevicePolicy::json() const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : values) j[k] = v;
  return j;
}

DevicePolicy parse_policy(const Config& section) {
  if (!section.is_map()) section.fail("policy: a map of policy keys (known: " + [] {
    std::vector<std::string_view> names;
    for (const auto& k : policy_keys()) names.push_back(k.name);
    return fmt::format("{}", fmt::join(names, ", "));
  }() + ")");
  DevicePolicy p;
  for (const auto& [name, value] : section.entries()) {
    const auto& keys = policy_keys();
    auto key = std::find_if(keys.begin(), keys.end(), [&](const PolicyKey& k) { return k.name == name; });
    if (key == keys.end()) {
      std::vector<std::string_view> names;
      for (const auto& k : keys) names.push_back(k.name);
      value.fail(fmt::format("unknown policy key '{}' (known: {})", name, fmt::join(names, ", ")));
    }
    if (!value.is_scalar()) value.fail(fmt::format("one of {}", fmt::join(key->values, ", ")));
    const auto v = value.as_string();
    if (std::find(key->values.begin(), key->values.end(), v) == key->values.end())
      value.fail(fmt::format("'{}' is not one of {}", v, fmt::join(key->values, ", ")));
    p.values[name] = v;
    p.where[name] = value.where();
  }
  return p;
}

}  // namespace otarig::harness
