#include "otarig/harness/composition.hpp"

#include "faults.hpp"
#include "otarig/harness/scenario.hpp"

namespace otarig::harness {

Registries make_registries() {
  Registries r;
  drivers::register_all_drivers(r.drivers);
  scenarios::register_builtin_fault_kinds(r.faults);
  return r;
}

const Registries& builtin_registries() {
  static const Registries registries = make_registries();
  return registries;
}

Scenario load_scenario(const std::string& name_or_path) {
  return load_scenario(name_or_path, builtin_registries().faults);
}

}  // namespace otarig::harness
