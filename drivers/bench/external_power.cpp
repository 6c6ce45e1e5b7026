#include "otarig/drivers/bench/external_power.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <mutex>

#include "otarig/core/errors.hpp"

namespace otarig::drivers::bench {
namespace {

std::string trimmed_tail(const std::string& output) {
  auto end = output.find_last_not_of(" \t\r\n");
  if (end == std::string::npos) return {};
  auto text = output.substr(0, end + 1);
  auto start = text.size() > 400 ? text.size() - 400 : 0;
  return text.substr(start);
}

}  // namespace

struct CommandPower::Impl : std::enable_shared_from_this<CommandPower::Impl> {
  Impl(boost::asio::io_context& context, CommandPowerConfig cfg) : io(context), config(std::move(cfg)) {}

  boost::asio::io_context& io;
  CommandPowerConfig config;
  OpQueue queue;
  std::atomic<bool> powered{false};
  mutable std::mutex result_mutex;
  CommandResult last;

  Step run(const CommandSpec& command, const char* step, std::optional<bool> powered_after) {
    return [self = shared_from_this(), &command, step, powered_after](Done done) {
      async_run_command(
          self->io, command, self->config.timeout,
          [self, &command, step, powered_after, done](std::exception_ptr error, CommandResult result) {
            if (error) {
              try {
                std::rethrow_exception(error);
              } catch (const std::exception& e) {
                done(std::make_exception_ptr(
                    BenchError(fmt::format("{}: {}: command '{}' could not be started: {}",
                                           self->config.device, step, command.text(), e.what()))));
              }
              return;
            }
            {
              std::lock_guard lock(self->result_mutex);
              self->last = result;
            }
            if (result.timed_out) {
              done(std::make_exception_ptr(TimeoutError(fmt::format(
                  "{}: {}: command '{}' did not finish within {} ms; its process group was killed",
                  self->config.device, step, command.text(), self->config.timeout.count()))));
              return;
            }
            if (!result.status.success()) {
              auto tail = trimmed_tail(result.output);
              done(std::make_exception_ptr(BenchError(
                  fmt::format("{}: {}: command '{}' failed with {}{}{}", self->config.device, step,
                              command.text(), result.status.describe(), tail.empty() ? "" : ": ", tail))));
              return;
            }
            if (powered_after) self->powered = *powered_after;
            done(nullptr);
          });
    };
  }

  std::vector<Step> on_steps() {
    std::vector<Step> steps{run(config.on, "power on", true)};
    if (config.settle.count() > 0) steps.push_back(wait_step(io, config.settle));
    return steps;
  }

  std::vector<Step> cycle_steps(std::chrono::milliseconds off_time) {
    if (config.cycle) {
      std::vector<Step> steps{run(*config.cycle, "power cycle", true)};
      if (config.settle.count() > 0) steps.push_back(wait_step(io, config.settle));
      return steps;
    }
    std::vector<Step> steps{run(config.off, "power off", false),
                            wait_step(io, std::max(off_time, config.off_time))};
    for (auto& s : on_steps()) steps.push_back(std::move(s));
    return steps;
  }
};

CommandPower::CommandPower(std::shared_ptr<BenchIo> io, CommandPowerConfig config)
    : io_(std::move(io)), config_(std::move(config)), impl_(std::make_shared<Impl>(io_->context(), config_)) {
  if (config_.on.argv.empty() || config_.off.argv.empty()) {
    throw std::invalid_argument("CommandPower needs an on and an off command");
  }
}

CommandPower::~CommandPower() {
  if (!io_->on_io_thread()) {
    try {
      io_->call("power close", config_.timeout * 3 + config_.off_time + config_.settle,
                [impl = impl_](Done done) { impl->queue.push_barrier(std::move(done)); });
    } catch (...) {
    }
  }
}

void CommandPower::async_on(Done done) { impl_->queue.push_sequence(impl_->on_steps(), std::move(done)); }
void CommandPower::async_off(Done done) {
  impl_->queue.push_sequence({impl_->run(impl_->config.off, "power off", false)}, std::move(done));
}
void CommandPower::async_cycle(std::chrono::milliseconds off_time, Done done) {
  impl_->queue.push_sequence(impl_->cycle_steps(off_time), std::move(done));
}

void CommandPower::on() {
  io_->call("power on", config_.timeout + config_.settle, [this](Done d) { async_on(std::move(d)); });
}

void CommandPower::off() {
  io_->call("power off", config_.timeout, [this](Done d) { async_off(std::move(d)); });
}

void CommandPower::cycle(std::chrono::milliseconds off_time) {
  io_->call("power cycle", 2 * config_.timeout + std::max(off_time, config_.off_time) + config_.settle,
            [this, off_time](Done d) { async_cycle(off_time, std::move(d)); });
}

bool CommandPower::is_on() const { return impl_->powered; }

CommandResult CommandPower::last_result() const {
  std::lock_guard lock(impl_->result_mutex);
  return impl_->last;
}

}  // namespace otarig::drivers::bench
