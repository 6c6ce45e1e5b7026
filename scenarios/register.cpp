#include "faults.hpp"
#include "delta/delta.hpp"
#include "image/image.hpp"
#include "lifecycle/lifecycle.hpp"
#include "network/network.hpp"
#include "power/power.hpp"
#include "storage/storage.hpp"

namespace otarig::scenarios {

void register_builtin_fault_kinds(harness::FaultRegistry& registry) {
  image_faults::register_image_faults(registry);
  delta_faults::register_delta_faults(registry);
  power::register_power_faults(registry);
  network::register_network_faults(registry);
  storage::register_storage_faults(registry);
  lifecycle::register_lifecycle_faults(registry);
}

}  // namespace otarig::scenarios
