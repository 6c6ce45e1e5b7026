#pragma once
// The composition root: the one place that knows every concrete driver,
// fault kind, oracle and report writer otarig is built with. The command
// line, `otarig detect` and the Python module all start from it; the rest of
// the harness speaks to the registries only.
#include "otarig/drivers/registry.hpp"
#include "otarig/harness/fault_kind.hpp"
#include "otarig/harness/oracles.hpp"
#include "otarig/reports/bundle.hpp"

namespace otarig::harness {

struct TrialHooks;

/// What a campaign can bind and inject, what judges its trials and what
/// reports it.
struct Registries {
  drivers::DriverRegistry drivers;
  FaultRegistry faults;
  OracleRegistry oracles;            ///< every trial is judged by each, in order
  reports::ReportWriterRegistry reports;  ///< each writes one file of the bundle
};

/// Every built-in driver, fault kind, oracle and report writer (made once,
/// then shared).
const Registries& builtin_registries();

/// A fresh copy of the built-ins, for a caller that adds its own (a test's
/// fault kind or oracle, a lab's driver or report format) before running a
/// campaign with it.
Registries make_registries();

/// Points a campaign's trial hooks and bundle options at the registries'
/// oracles and report writers (`registries` must outlive them).
void use_registries(const Registries& registries, TrialHooks& hooks, reports::BundleOptions& bundle);

}  // namespace otarig::harness
