#include "otarig/harness/composition.hpp"

#include "faults.hpp"
#include "otarig/harness/scenario.hpp"
#include "otarig/harness/trial.hpp"

namespace otarig::harness {

Registries make_registries() {
  Registries r;
  drivers::register_all_drivers(r.drivers);
  scenarios::register_builtin_fault_kinds(r.faults);
  register_builtin_oracles(r.oracles);
  reports::register_builtin_report_writers(r.reports);
  return r;
}

void use_registries(const Registries& registries, TrialHooks& hooks, reports::BundleOptions& bundle) {
  hooks.registered_oracles = &registries.oracles;
  bundle.writers = &registries.reports;
}

const Registries& builtin_registries() {
  static const Registries registries = make_registries();
  return registries;
}

Scenario load_scenario(const std::string& name_or_path) {
  return load_scenario(name_or_path, builtin_registries().faults);
}

}  // namespace otarig::harness
