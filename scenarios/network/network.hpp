#pragma once
// Network faults: `network` (the fault proxy's spec, probes, expectations)
// and `stale` (the update server answers with an older release).
#include "otarig/harness/fault_kind.hpp"

namespace otarig::scenarios::network {

void register_network_faults(harness::FaultRegistry& registry);

}  // namespace otarig::scenarios::network
