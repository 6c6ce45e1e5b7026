#pragma once
// Injected time. Drivers and harness read time only through a Clock, so tests
// (and the in-process virtual board) advance time instead of waiting.
#include <atomic>
#include <chrono>
#include <thread>

namespace otarig {

class Clock {
 public:
  using duration = std::chrono::nanoseconds;
  virtual ~Clock() = default;
  /// Monotonic time since an arbitrary epoch.
  virtual duration now() const = 0;
  /// True when the clock only moves when told to (no real waiting happens).
  virtual bool is_manual() const = 0;
  /// Moves a manual clock forward; a real clock ignores this.
  virtual void advance(duration) {}
  /// Lets `d` pass: a real clock waits, a manual one moves forward at once.
  virtual void sleep_for(duration d) { advance(d); }
};

/// std::chrono::steady_clock.
class SteadyClock final : public Clock {
 public:
  duration now() const override {
    return std::chrono::duration_cast<duration>(std::chrono::steady_clock::now().time_since_epoch());
  }
  bool is_manual() const override { return false; }
  void sleep_for(duration d) override { std::this_thread::sleep_for(d); }
};

/// A clock that moves only when advanced: virtual devices and tests.
class ManualClock final : public Clock {
 public:
  duration now() const override { return duration(now_.load()); }
  bool is_manual() const override { return true; }
  void advance(duration d) override { now_ += d.count(); }

 private:
  std::atomic<duration::rep> now_{0};
};

}  // namespace otarig
