#pragma once
// Registration of the network drivers (called by register_all_drivers).
#include "otarig/drivers/registry.hpp"

namespace otarig::drivers {

/// Registers what drivers/net offers by name: its own commands, `serve` and
/// `proxy` (drivers/net/commands.cpp). The update server and the fault proxy
/// of a campaign are started by the device drivers that use them.
void register_net_drivers(DriverRegistry& registry);

}  // namespace otarig::drivers
