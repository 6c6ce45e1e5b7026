// CountedPower and HeldConsole: any board's power and console as the sides
// the console-command link drives.
#include "otarig/drivers/process/link_sides.hpp"

#include <fmt/format.h>

#include <utility>

#include "otarig/core/errors.hpp"

namespace otarig::drivers::process {

// ---------------------------------------------------------------------------- CountedPower

CountedPower::CountedPower(std::shared_ptr<PowerProtocol> inner, std::string board)
    : inner_(std::move(inner)), board_(std::move(board)) {}

void CountedPower::rethrow_failed_cut() {
  std::string failed;
  {
    std::lock_guard lock(mu_);
    failed = std::exchange(failed_cut_, {});
  }
  if (!failed.empty()) throw BenchError(fmt::format("{}: a power cut failed: {}", board_, failed));
}

void CountedPower::on() {
  std::lock_guard sw(switch_mu_);
  rethrow_failed_cut();
  if (inner_->is_on()) return;
  inner_->on();
  std::lock_guard lock(mu_);
  ++power_ons_;
}

void CountedPower::off() {
  std::lock_guard sw(switch_mu_);
  rethrow_failed_cut();
  inner_->off();
}

void CountedPower::cycle(std::chrono::milliseconds off_time) {
  std::lock_guard sw(switch_mu_);
  rethrow_failed_cut();
  inner_->cycle(off_time);
  std::lock_guard lock(mu_);
  ++power_ons_;
}

bool CountedPower::is_on() const { return inner_->is_on(); }

void CountedPower::cut(std::string cause) {
  std::lock_guard sw(switch_mu_);
  if (!inner_->is_on()) return;
  std::string failure;
  try {
    inner_->off();
  } catch (const std::exception& e) {
    // The caller is another thread (the fault proxy's): the harness hears of
    // it at its next switch.
    failure = e.what();
  }
  std::lock_guard lock(mu_);
  ++cuts_;
  last_cut_ = failure.empty() ? std::move(cause) : fmt::format("{} (switching off failed: {})", cause, failure);
  if (!failure.empty()) failed_cut_ = std::move(failure);
}

std::uint64_t CountedPower::power_ons() const {
  std::lock_guard lock(mu_);
  return power_ons_;
}

std::uint64_t CountedPower::cuts() const {
  std::lock_guard lock(mu_);
  return cuts_;
}

std::string CountedPower::last_cut() const {
  std::lock_guard lock(mu_);
  return last_cut_;
}

// ---------------------------------------------------------------------------- HeldConsole

HeldConsole::HeldConsole(std::shared_ptr<ConsoleProtocol> inner) : inner_(std::move(inner)) {}

void HeldConsole::write(std::string_view bytes) { inner_->write(bytes); }

std::string HeldConsole::read(std::chrono::milliseconds timeout) {
  std::lock_guard lock(mu_);
  if (!held_.empty()) return std::exchange(held_, {});
  return inner_->read(timeout);
}

std::string HeldConsole::peek(std::chrono::milliseconds timeout) {
  std::lock_guard lock(mu_);
  auto bytes = inner_->read(timeout);
  held_ += bytes;
  return bytes;
}

}  // namespace otarig::drivers::process
