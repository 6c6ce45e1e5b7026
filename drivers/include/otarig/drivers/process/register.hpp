#pragma once
// Registration of the process-board drivers (called by register_all_drivers).
#include "otarig/drivers/registry.hpp"

namespace otarig::drivers {

/// Registers device kind `process`, power driver `process`, console driver
/// `pty` and link driver `console-command` (docs/process-boards.md).
void register_process_drivers(DriverRegistry& registry);

}  // namespace otarig::drivers
