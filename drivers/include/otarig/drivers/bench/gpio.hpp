#pragma once
// Power, reset and boot-mode lines on GPIO outputs (a relay board, a
// transistor on the reset pin, a strap on BOOT0).
//
// Every libgpiod call sits behind GpioLineAdapter: the libgpiod 1.6 C++
// bindings implement it today (gpio_libgpiod1.cpp) and a libgpiod 2 build can
// add its own implementation of the same interface. FakeGpio implements it in
// memory for tests.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "otarig/core/clock.hpp"
#include "otarig/drivers/bench/io.hpp"
#include "otarig/drivers/protocols.hpp"

namespace otarig::drivers::bench {

/// Which GPIO line: a chip and an offset, or a line name.
struct GpioLineSpec {
  /// Chip by name ("gpiochip0"), path ("/dev/gpiochip0"), label or number.
  /// May be empty when `name` is given: then every chip is searched.
  std::string chip;
  std::optional<unsigned> offset;
  /// Line name as the device tree or gpio-line-names gives it.
  std::string name;
  /// The line is active (relay on, reset asserted) at low level.
  bool active_low = false;

  /// "chip 'gpiochip0' line 17", "line 'RELAY_1'", "chip 'gpiochip2' line 'RESET'".
  std::string describe() const;
};

/// One requested output line. Values are logical: true = active; the adapter
/// applies active-low. Errors are std::system_error carrying the errno.
class GpioLineAdapter {
 public:
  virtual ~GpioLineAdapter() = default;
  virtual void set_active(bool active) = 0;
  virtual bool active() const = 0;
};

/// Requests `spec` as an output driven to `initial_active`; `consumer` is the
/// label shown by gpioinfo. Throws std::system_error (ENOENT: no such chip or line).
using GpioLineOpener = std::function<std::unique_ptr<GpioLineAdapter>(
    const GpioLineSpec& spec, bool initial_active, const std::string& consumer)>;

/// The libgpiod implementation of this build.
std::unique_ptr<GpioLineAdapter> open_libgpiod_line(const GpioLineSpec& spec, bool initial_active,
                                                    const std::string& consumer);
/// libgpiod's version, for the evidence bundle.
std::string libgpiod_version();

/// GPIO lines in memory, for tests: records every change with its time.
class FakeGpio {
 public:
  struct Change {
    Clock::duration at{};  ///< the clock's now() when the line changed
    bool active = false;
    bool level = false;  ///< the physical level (active-low applied)
  };

  /// `clock` stamps the changes (a steady clock when null; it must outlive
  /// this object).
  explicit FakeGpio(const Clock* clock = nullptr);

  /// An opener whose lines live in this object (which must outlive them).
  GpioLineOpener opener();
  /// Opening `spec.describe()` fails with `error` (an errno value).
  void fail_open(const std::string& line, int error);

  bool exists(const std::string& line) const;
  bool level(const std::string& line) const;
  std::vector<Change> history(const std::string& line) const;
  std::string consumer(const std::string& line) const;

 private:
  struct Line {
    bool active_low = false;
    std::string consumer;
    std::vector<Change> history;
  };
  class Adapter;
  const Clock& clock_;
  mutable std::mutex mutex_;
  std::map<std::string, Line> lines_;
  std::map<std::string, int> failures_;
};

/// A line pulsed for a time: reset held asserted for `pulse`, boot mode held
/// for `pulse` after reset is released.
struct GpioPulse {
  GpioLineSpec line;
  std::chrono::milliseconds pulse{100};
};

struct GpioPowerConfig {
  std::string device = "power";  ///< names the device in errors
  GpioLineSpec power;
  /// Shortest time the supply stays off in a cycle (relay, capacitors);
  /// cycle(t) waits max(t, off_time).
  std::chrono::milliseconds off_time{1000};
  /// Waited after switching on, before on() returns.
  std::chrono::milliseconds settle{0};
  /// State the power line is driven to when it is requested.
  bool initial_on = false;
  std::optional<GpioPulse> reset;
  std::optional<GpioPulse> boot_mode;
  std::string consumer = "otarig";
};

/// PowerProtocol on a GPIO line, with optional reset and boot-mode lines.
/// Lines are requested when it is built (a missing chip or line is a
/// BenchError naming both) and released when it goes.
class GpioPower final : public PowerProtocol {
 public:
  GpioPower(std::shared_ptr<BenchIo> io, GpioPowerConfig config, GpioLineOpener opener = open_libgpiod_line);
  ~GpioPower() override;
  GpioPower(const GpioPower&) = delete;
  GpioPower& operator=(const GpioPower&) = delete;

  void on() override;
  void off() override;
  void cycle(std::chrono::milliseconds off_time) override;
  bool is_on() const override;

  /// Asserts reset for reset.pulse, then releases it. BenchError without a reset line.
  void reset();
  /// Asserts the boot-mode line, pulses reset (or cycles power when there is
  /// no reset line), keeps boot mode asserted for boot_mode.pulse, releases it.
  void reset_into_boot_mode();
  /// Drives the boot-mode line directly.
  void set_boot_mode(bool active);

  // Asynchronous forms, for the io thread (console triggers).
  void async_on(Done done);
  void async_off(Done done);
  void async_cycle(std::chrono::milliseconds off_time, Done done);
  void async_reset(Done done);

  const GpioPowerConfig& config() const { return config_; }

 private:
  struct Impl;
  std::shared_ptr<BenchIo> io_;
  GpioPowerConfig config_;
  std::shared_ptr<Impl> impl_;
};

}  // namespace otarig::drivers::bench
