#pragma once
// Profile sections of the bench drivers and their registration. Each parser
// checks its own section strictly (unknown keys, types, ranges) and reports
// errors as InputError naming the file and line. docs/bench-drivers.md lists
// every key.
#include <filesystem>

#include "otarig/drivers/bench/console.hpp"
#include "otarig/drivers/bench/external_power.hpp"
#include "otarig/drivers/bench/gpio.hpp"
#include "otarig/drivers/bench/openocd.hpp"
#include "otarig/drivers/bench/serial.hpp"
#include "otarig/core/config.hpp"
#include "otarig/drivers/registry.hpp"

namespace otarig::drivers::bench {

/// `power: {driver: gpio, ...}`
GpioPowerConfig parse_gpio_power(const Config& section);
/// `power: {driver: command, ...}`
CommandPowerConfig parse_command_power(const Config& section);
/// `console: {driver: serial, ...}`
SerialConsoleConfig parse_serial_console(const Config& section);

struct TtyConsoleConfig {
  std::filesystem::path path;
  unsigned baud = 0;  ///< 0: keep the speed the tty has
  ConsoleReaderOptions reader;
};
/// `console: {driver: tty, ...}`: any tty device by path (/dev/ttyS1, a pty
/// that QEMU or the user made), without libserialport.
TtyConsoleConfig parse_tty_console(const Config& section);
/// `probe: {driver: openocd, ...}`; relative files are looked up beside the
/// profile first (`profile_dir`).
OpenOcdConfig parse_openocd(const Config& section, const std::filesystem::path& profile_dir);

}  // namespace otarig::drivers::bench

namespace otarig::drivers {

/// Power "gpio" and "command", console "serial" (libserialport) and "tty" (a
/// tty device by path), probe "openocd". A lab board's device kind `lab` is
/// registered by the process family (register_process_drivers).
void register_bench_drivers(DriverRegistry& registry);

}  // namespace otarig::drivers
