#pragma once
// Faults of a device's support period on the network side: `outage` (the
// update server unreachable for a seeded while, the device checking by
// itself; outage.cpp).
#include "otarig/harness/fault_kind.hpp"

namespace otarig::scenarios::lifecycle {

void register_lifecycle_faults(harness::FaultRegistry& registry);

}  // namespace otarig::scenarios::lifecycle
