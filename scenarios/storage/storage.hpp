#pragma once
// Storage faults: bits of a stored image flipped at rest (`bit-rot`).
#include "otarig/harness/fault_kind.hpp"

namespace otarig::scenarios::storage {

void register_storage_faults(harness::FaultRegistry& registry);

}  // namespace otarig::scenarios::storage
