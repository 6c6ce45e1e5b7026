#pragma once
// The otarig command line (DESIGN.md): run, list, image, report.
#include "otarig/drivers/registry.hpp"

namespace otarig::harness {

/// Runs the command line; returns the exit status (0, 1 findings, 2 bad input, 3 bench failure).
int cli_main(int argc, char** argv);

/// The registry with every built-in driver.
}  // namespace otarig::harness
