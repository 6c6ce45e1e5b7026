#pragma once
// Delta faults: the delta release delivered is the fault (corrupt-chunk,
// wrong-base); docs/scenarios.md.
#include "otarig/harness/fault_kind.hpp"

namespace otarig::scenarios::delta_faults {

void register_delta_faults(harness::FaultRegistry& registry);

}  // namespace otarig::scenarios::delta_faults
