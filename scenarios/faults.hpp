#pragma once
// The fault kinds otarig is built with, one folder a family (power/, image/,
// network/, storage/). The composition root registers them all.
#include "otarig/harness/fault_kind.hpp"

namespace otarig::scenarios {

/// Registers every built-in fault kind.
void register_builtin_fault_kinds(harness::FaultRegistry& registry);

}  // namespace otarig::scenarios
