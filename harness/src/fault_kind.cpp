#include "otarig/harness/fault_kind.hpp"

#include <fmt/format.h>

#include "otarig/harness/plan.hpp"
#include "otarig/harness/scenario.hpp"

namespace otarig::harness {

std::shared_ptr<const FaultPoint> FaultKind::point_with(const TrialSpec& trial, const nlohmann::json& fields) const {
  if (fields.empty()) return trial.point;
  throw InputError(fmt::format("{}: a {} trial takes no fields (given: {})", trial.scenario->name, name(),
                               fields.begin().key()));
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
