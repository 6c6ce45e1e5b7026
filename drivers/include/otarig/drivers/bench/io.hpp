#pragma once
// The event loop of one bench. Every bench driver (GPIO, command power, serial
// console, OpenOCD) runs its I/O and timers on the single io_context of its
// bench, served by one thread; there is no thread per device and no sleeping.
//
// Two forms of every operation, as in Asio:
//  - asynchronous (`async_*`): called on the io thread (from a console trigger,
//    for example), completes through a Done callback on the io thread;
//  - synchronous: called from any other thread (the harness), posts the
//    asynchronous form to the io thread and waits for it. Each one has a
//    deadline; calling a synchronous form on the io thread is a logic_error
//    (it would wait for itself).
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "otarig/core/unique_fd.hpp"

namespace otarig::drivers::bench {

/// Completion of an asynchronous bench operation: null on success, else the error.
using Done = std::function<void(std::exception_ptr)>;
/// One asynchronous step: starts its work and calls its Done exactly once.
using Step = std::function<void(Done)>;


/// The io_context of one bench and the thread that runs it.
class BenchIo {
 public:
  explicit BenchIo(std::string name = "bench");
  /// Stops the loop and joins its thread; pending operations are abandoned.
  ~BenchIo();
  BenchIo(const BenchIo&) = delete;
  BenchIo& operator=(const BenchIo&) = delete;

  /// The loop shared by every driver bound for the bench `bench_name`; created
  /// on first use, gone when the last driver holding it is.
  static std::shared_ptr<BenchIo> for_bench(const std::string& bench_name);

  boost::asio::io_context& context() noexcept { return *io_; }
  const std::string& name() const noexcept { return name_; }
  bool on_io_thread() const noexcept;

  /// Runs `start` on the io thread and blocks until the Done it was given is
  /// called; rethrows the error passed to Done. `limit` is the operation's own
  /// deadline: the caller waits a grace period longer before it reports the
  /// io thread as stuck (TimeoutError).
  void call(std::string_view what, std::chrono::milliseconds limit, Step start);

  /// call() for an operation that produces a value.
  template <class T>
  T call_value(std::string_view what, std::chrono::milliseconds limit,
               std::function<void(std::function<void(std::exception_ptr, T)>)> start) {
    auto slot = std::make_shared<std::optional<T>>();
    call(what, limit, [slot, start = std::move(start)](Done done) {
      start([slot, done = std::move(done)](std::exception_ptr error, T value) {
        if (!error) *slot = std::move(value);
        done(error);
      });
    });
    return std::move(**slot);
  }

  /// Runs a short non-blocking function on the io thread and returns its result.
  template <class F>
  auto run(std::string_view what, F fn) -> decltype(fn()) {
    using R = decltype(fn());
    if constexpr (std::is_void_v<R>) {
      call(what, std::chrono::milliseconds(0), [fn = std::move(fn)](Done done) mutable {
        fn();
        done(nullptr);
      });
    } else {
      auto slot = std::make_shared<std::optional<R>>();
      call(what, std::chrono::milliseconds(0), [slot, fn = std::move(fn)](Done done) mutable {
        *slot = fn();
        done(nullptr);
      });
      return std::move(**slot);
    }
  }

  /// Waits `duration` on an io timer (for callers off the io thread).
  void wait(std::chrono::milliseconds duration);

 private:
  std::string name_;
  std::unique_ptr<boost::asio::io_context> io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::thread thread_;
};

/// A step that completes after `duration` on an io timer.
Step wait_step(boost::asio::io_context& io, std::chrono::milliseconds duration);

/// Runs `steps` one after another on the io thread; stops at the first error.
void run_sequence(std::vector<Step> steps, Done done);

/// Runs asynchronous operations one at a time in the order they were pushed,
/// so that, say, a power-off from a console trigger never overlaps a power-on
/// the harness asked for. Use on the io thread only.
class OpQueue {
 public:
  OpQueue();
  void push(Step op, Done done);
  /// Queues `steps` as one operation: run one after another (run_sequence).
  void push_sequence(std::vector<Step> steps, Done done);
  /// Completes `done` once every operation queued before it has finished
  /// (a driver's destructor waits so before it releases its device).
  void push_barrier(Done done);
  bool idle() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace otarig::drivers::bench
