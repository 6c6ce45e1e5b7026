#pragma once
// Registration of the process-board drivers (called by register_all_drivers).
#include "otarig/drivers/registry.hpp"

namespace otarig::drivers {

/// Registers device kinds `process` and `lab` (a physical board: the rig's
/// update server, fault proxy, storage and provisioning for it), power
/// driver `process`, console driver `pty` and link driver `console-command`
/// (docs/process-boards.md, docs/bench-drivers.md).
void register_process_drivers(DriverRegistry& registry);

}  // namespace otarig::drivers
