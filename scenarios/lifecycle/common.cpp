#include "common.hpp"

#include <fmt/ranges.h>

#include <algorithm>

namespace otarig::scenarios::lifecycle {

std::shared_ptr<const harness::FaultOptions> parse_variants(const Config& c, std::string_view kind,
                                                           const std::vector<std::string_view>& known) {
  auto o = std::make_shared<VariantOptions>();
  if (auto v = c.find("variants")) {
    for (const auto& item : v->items()) {
      auto name = item.as_string();
      if (std::find(known.begin(), known.end(), name) == known.end())
        item.fail(fmt::format("unknown {} variant '{}' (known: {})", kind, name, fmt::join(known, ", ")));
      o->variants.push_back(name);
    }
    if (o->variants.empty()) v->fail(fmt::format("variants: name at least one of {}", fmt::join(known, ", ")));
  } else {
    for (auto k : known) o->variants.emplace_back(k);
  }
  return o;
}

std::string missing_policy(const harness::BoardAbilities& board, std::string_view key) {
  if (board.policy && board.policy->get(key)) return {};
  return fmt::format("the profile declares no device.policy.{}, so the rig cannot tell what the device must do",
                     key);
}

void require_installed(harness::TrialPort& port, std::vector<harness::OracleResult>& oracles,
                       const harness::BuiltImage& expected, const std::string& why) {
  const auto& obs = port.outcome().observations;
  const auto i = port.fault_index();
  if (i < obs.size() && obs[i].booted && obs[i].digest == expected.digest) return;
  const auto& out = port.outcome();
  for (auto& o : oracles)
    if (o.name == "still-updatable" && o.held) {
      o.held = false;
      o.detail = fmt::format("after-fault: {}, but the device did not install {} ({}; it runs {}{})", why,
                             expected.name, out.delivery_status,
                             i < obs.size() && obs[i].booted ? obs[i].version : "nothing",
                             out.delivery_detail.empty() ? "" : "; the device said: " + out.delivery_detail);
    }
}

}  // namespace otarig::scenarios::lifecycle
