#include "otarig/drivers/bench/gpio.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <system_error>

#include "otarig/core/errors.hpp"

namespace otarig::drivers::bench {

std::string GpioLineSpec::describe() const {
  if (!chip.empty() && offset) return fmt::format("chip '{}' line {}", chip, *offset);
  if (!chip.empty()) return fmt::format("chip '{}' line '{}'", chip, name);
  return fmt::format("line '{}'", name);
}

// ---- FakeGpio ----

namespace {
const Clock& steady() {
  static const SteadyClock clock;
  return clock;
}
}  // namespace

FakeGpio::FakeGpio(const Clock* clock) : clock_(clock != nullptr ? *clock : steady()) {}

class FakeGpio::Adapter final : public GpioLineAdapter {
 public:
  Adapter(FakeGpio& owner, std::string key) : owner_(owner), key_(std::move(key)) {}
  void set_active(bool active) override {
    std::lock_guard lock(owner_.mutex_);
    auto& line = owner_.lines_.at(key_);
    line.history.push_back({owner_.clock_.now(), active, active != line.active_low});
  }
  bool active() const override {
    std::lock_guard lock(owner_.mutex_);
    const auto& line = owner_.lines_.at(key_);
    return !line.history.empty() && line.history.back().active;
  }

 private:
  FakeGpio& owner_;
  std::string key_;
};

GpioLineOpener FakeGpio::opener() {
  return [this](const GpioLineSpec& spec, bool initial_active,
                const std::string& consumer) -> std::unique_ptr<GpioLineAdapter> {
    auto key = spec.describe();
    {
      std::lock_guard lock(mutex_);
      if (auto it = failures_.find(key); it != failures_.end()) {
        throw std::system_error(it->second, std::generic_category(), "cannot request line");
      }
      auto& line = lines_[key];
      line.active_low = spec.active_low;
      line.consumer = consumer;
    }
    auto adapter = std::make_unique<Adapter>(*this, key);
    adapter->set_active(initial_active);
    return adapter;
  };
}

void FakeGpio::fail_open(const std::string& line, int error) {
  std::lock_guard lock(mutex_);
  failures_[line] = error;
}

bool FakeGpio::exists(const std::string& line) const {
  std::lock_guard lock(mutex_);
  return lines_.count(line) != 0;
}

bool FakeGpio::level(const std::string& line) const {
  std::lock_guard lock(mutex_);
  const auto& l = lines_.at(line);
  return !l.history.empty() && l.history.back().level;
}

std::vector<FakeGpio::Change> FakeGpio::history(const std::string& line) const {
  std::lock_guard lock(mutex_);
  return lines_.at(line).history;
}

std::string FakeGpio::consumer(const std::string& line) const {
  std::lock_guard lock(mutex_);
  return lines_.at(line).consumer;
}

// ---- GpioPower ----

struct GpioPower::Impl : std::enable_shared_from_this<GpioPower::Impl> {
  Impl(boost::asio::io_context& context, GpioPowerConfig cfg) : io(context), config(std::move(cfg)) {}

  boost::asio::io_context& io;
  GpioPowerConfig config;
  std::unique_ptr<GpioLineAdapter> power, reset, boot;
  OpQueue queue;
  std::atomic<bool> powered{false};

  Step drive(GpioLineAdapter* line, const GpioLineSpec* spec, bool active, const char* step) {
    return [self = shared_from_this(), line, spec, active, step](Done done) {
      try {
        line->set_active(active);
      } catch (const std::exception& e) {
        throw BenchError(
            fmt::format("{}: gpio {}: {}: {}", self->config.device, spec->describe(), step, e.what()));
      }
      if (line == self->power.get()) self->powered = active;
      done(nullptr);
    };
  }

  Step switch_power(bool on) {
    return drive(power.get(), &config.power, on, on ? "switch on" : "switch off");
  }

  std::vector<Step> on_steps() {
    std::vector<Step> steps{switch_power(true)};
    if (config.settle.count() > 0) steps.push_back(wait_step(io, config.settle));
    return steps;
  }

  std::vector<Step> cycle_steps(std::chrono::milliseconds off_time) {
    std::vector<Step> steps{switch_power(false), wait_step(io, std::max(off_time, config.off_time))};
    for (auto& s : on_steps()) steps.push_back(std::move(s));
    return steps;
  }

  std::vector<Step> reset_steps() {
    if (!reset) throw BenchError(fmt::format("{}: no reset line in the profile", config.device));
    return {drive(reset.get(), &config.reset->line, true, "assert reset"), wait_step(io, config.reset->pulse),
            drive(reset.get(), &config.reset->line, false, "release reset")};
  }

  std::vector<Step> boot_mode_steps() {
    if (!boot) throw BenchError(fmt::format("{}: no boot_mode line in the profile", config.device));
    std::vector<Step> steps{drive(boot.get(), &config.boot_mode->line, true, "assert boot mode")};
    for (auto& s : reset ? reset_steps() : cycle_steps(config.off_time)) steps.push_back(std::move(s));
    steps.push_back(wait_step(io, config.boot_mode->pulse));
    steps.push_back(drive(boot.get(), &config.boot_mode->line, false, "release boot mode"));
    return steps;
  }
};

namespace {

std::unique_ptr<GpioLineAdapter> open_line(const GpioLineOpener& opener, const std::string& device,
                                           const GpioLineSpec& spec, bool initial,
                                           const std::string& consumer, const char* role) {
  try {
    return opener(spec, initial, consumer);
  } catch (const std::exception& e) {
    throw BenchError(
        fmt::format("{}: gpio {}: cannot request the {} line: {}", device, spec.describe(), role, e.what()));
  }
}

}  // namespace

GpioPower::GpioPower(std::shared_ptr<BenchIo> io, GpioPowerConfig config, GpioLineOpener opener)
    : io_(std::move(io)), config_(std::move(config)), impl_(std::make_shared<Impl>(io_->context(), config_)) {
  impl_->power =
      open_line(opener, config_.device, config_.power, config_.initial_on, config_.consumer, "power");
  impl_->powered = config_.initial_on;
  if (config_.reset) {
    impl_->reset = open_line(opener, config_.device, config_.reset->line, false, config_.consumer, "reset");
  }
  if (config_.boot_mode) {
    impl_->boot =
        open_line(opener, config_.device, config_.boot_mode->line, false, config_.consumer, "boot_mode");
  }
}

GpioPower::~GpioPower() {
  // Let queued operations finish before the lines are released.
  if (!io_->on_io_thread()) {
    try {
      io_->call("gpio close", std::chrono::milliseconds(0),
                [impl = impl_](Done done) { impl->queue.push_barrier(std::move(done)); });
    } catch (...) {
    }
  }
}

void GpioPower::async_on(Done done) { impl_->queue.push_sequence(impl_->on_steps(), std::move(done)); }
void GpioPower::async_off(Done done) {
  impl_->queue.push_sequence({impl_->switch_power(false)}, std::move(done));
}
void GpioPower::async_cycle(std::chrono::milliseconds off_time, Done done) {
  impl_->queue.push_sequence(impl_->cycle_steps(off_time), std::move(done));
}
void GpioPower::async_reset(Done done) { impl_->queue.push_sequence(impl_->reset_steps(), std::move(done)); }

void GpioPower::on() {
  io_->call("power on", config_.settle, [this](Done d) { async_on(std::move(d)); });
}

void GpioPower::off() {
  io_->call("power off", std::chrono::milliseconds(0), [this](Done d) { async_off(std::move(d)); });
}

void GpioPower::cycle(std::chrono::milliseconds off_time) {
  io_->call("power cycle", std::max(off_time, config_.off_time) + config_.settle,
            [this, off_time](Done d) { async_cycle(off_time, std::move(d)); });
}

bool GpioPower::is_on() const { return impl_->powered; }

void GpioPower::reset() {
  auto limit = config_.reset ? config_.reset->pulse : std::chrono::milliseconds(0);
  io_->call("reset", limit, [this](Done d) { async_reset(std::move(d)); });
}

void GpioPower::reset_into_boot_mode() {
  auto limit = config_.off_time + config_.settle;
  if (config_.reset) limit += config_.reset->pulse;
  if (config_.boot_mode) limit += config_.boot_mode->pulse;
  io_->call("reset into boot mode", limit,
            [impl = impl_](Done d) { impl->queue.push_sequence(impl->boot_mode_steps(), std::move(d)); });
}

void GpioPower::set_boot_mode(bool active) {
  io_->call("set boot mode", std::chrono::milliseconds(0), [impl = impl_, active](Done d) {
    if (!impl->boot)
      throw BenchError(fmt::format("{}: no boot_mode line in the profile", impl->config.device));
    impl->queue.push_sequence(
        {impl->drive(impl->boot.get(), &impl->config.boot_mode->line, active, "set boot mode")},
        std::move(d));
  });
}

}  // namespace otarig::drivers::bench
