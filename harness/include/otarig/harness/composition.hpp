#pragma once
// The composition root: the one place that knows every concrete driver,
// fault kind, oracle and report writer otarig is built with. The command
// line, `otarig detect` and the Python module all start from it; the rest of
// the harness speaks to the registries only.
#include "otarig/drivers/registry.hpp"
#include "otarig/harness/fault_kind.hpp"

namespace otarig::harness {

/// What a campaign can bind and inject.
struct Registries {
  drivers::DriverRegistry drivers;
  FaultRegistry faults;
};

/// Every built-in driver and fault kind (made once, then shared).
const Registries& builtin_registries();

/// A fresh copy of the built-ins, for a caller that adds its own (a test's
/// fault kind, a lab's driver) before running a campaign with it.
Registries make_registries();

}  // namespace otarig::harness
