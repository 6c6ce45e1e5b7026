#include "otarig/harness/fault_kind.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "otarig/harness/plan.hpp"
#include "otarig/harness/scenario.hpp"

namespace otarig::harness {

std::shared_ptr<const FaultPoint> FaultKind::point_with(const TrialSpec& trial, const nlohmann::json& fields) const {
  if (fields.empty()) return trial.point;
  throw InputError(fmt::format("{}: a {} trial takes no fields (given: {})", trial.scenario->name, name(),
                               fields.begin().key()));
}

std::string chosen_field(const TrialSpec& trial, const nlohmann::json& fields, std::string_view kind,
                         std::string_view key, const std::vector<std::string_view>& known) {
  std::string chosen;
  for (const auto& [name, value] : fields.items()) {
    if (name != key) throw InputError(fmt::format("{}: a {} trial takes {}, not {}", trial.scenario->name, kind, key, name));
    if (!value.is_string())
      throw InputError(fmt::format("{}: {} is a name (one of {}), not {}", trial.scenario->name, key,
                                   fmt::join(known, ", "), value.dump()));
    chosen = value.get<std::string>();
    if (std::find(known.begin(), known.end(), chosen) == known.end())
      throw InputError(fmt::format("{}: {} '{}': unknown {} {} (known: {})", trial.scenario->name, key, chosen, kind,
                                   key, fmt::join(known, ", ")));
  }
  return chosen;
}

void FaultRegistry::add(std::shared_ptr<const FaultKind> kind) {
  std::string name(kind->name());
  if (kinds_.count(name)) throw std::logic_error("fault kind registered twice: " + name);
  kinds_.emplace(std::move(name), std::move(kind));
}

const FaultKind* FaultRegistry::find(std::string_view name) const {
  auto it = kinds_.find(name);
  return it == kinds_.end() ? nullptr : it->second.get();
}

std::vector<const FaultKind*> FaultRegistry::all() const {
  std::vector<const FaultKind*> out;
  for (const auto& [name, kind] : kinds_) out.push_back(kind.get());
  return out;
}

std::string FaultRegistry::names() const {
  std::string out;
  for (const auto& [name, kind] : kinds_) out += (out.empty() ? "" : ", ") + name;
  return out;
}

}  // namespace otarig::harness
