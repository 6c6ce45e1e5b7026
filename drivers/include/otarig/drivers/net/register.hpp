#pragma once
// Registration of the network drivers (called by register_all_drivers).
#include "otarig/drivers/registry.hpp"

namespace otarig::drivers {

/// Registers the drivers of drivers/net. The update server and the fault proxy
/// are owned by the harness directly, so no board-profile driver kind is
/// registered yet.
void register_net_drivers(DriverRegistry& registry);

}  // namespace otarig::drivers
