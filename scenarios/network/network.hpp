#pragma once
// Network faults: `network` (the fault proxy's spec, probes, expectations)
// `stale` (the update server answers with an older release) and
// `lying-mirror` (its manifest disagrees with the image it names).
#include "otarig/harness/fault_kind.hpp"

namespace otarig::scenarios::network {

void register_network_faults(harness::FaultRegistry& registry);
/// `lying-mirror` (lying_mirror.cpp): a manifest that disagrees with the image it names.
void register_lying_mirror(harness::FaultRegistry& registry);

}  // namespace otarig::scenarios::network
