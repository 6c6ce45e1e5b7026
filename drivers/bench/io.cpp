#include "otarig/drivers/bench/io.hpp"

#include <fmt/format.h>

#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <future>
#include <map>
#include <mutex>

#include "otarig/core/errors.hpp"

namespace otarig::drivers::bench {
namespace {

// How long a synchronous caller waits beyond an operation's own deadline
// before it reports the io thread as stuck (a trigger callback that blocks,
// for example).
constexpr std::chrono::milliseconds kStuckGrace{5000};

}  // namespace

BenchIo::BenchIo(std::string name)
    : name_(std::move(name)), io_(std::make_unique<boost::asio::io_context>(1)) {
  work_.emplace(io_->get_executor());
  thread_ = std::thread([io = io_.get()] {
    for (;;) {
      try {
        io->run();
        return;
      } catch (...) {
        // A handler let an exception escape. The drivers catch their own, so
        // this is a user callback; the loop keeps serving the other devices.
      }
    }
  });
}

BenchIo::~BenchIo() {
  work_.reset();
  io_->stop();
  if (on_io_thread()) {
    // The last owner went away inside a handler: the loop cannot join itself,
    // so a helper joins it and then destroys the io_context.
    std::thread([io = std::move(io_), thread = std::move(thread_)]() mutable {
      thread.join();
      io.reset();
    }).detach();
    return;
  }
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<BenchIo> BenchIo::for_bench(const std::string& bench_name) {
  static std::mutex mutex;
  static std::map<std::string, std::weak_ptr<BenchIo>> loops;
  std::lock_guard lock(mutex);
  auto& slot = loops[bench_name];
  if (auto io = slot.lock()) return io;
  auto io = std::make_shared<BenchIo>(bench_name.empty() ? "bench" : bench_name);
  slot = io;
  return io;
}

bool BenchIo::on_io_thread() const noexcept { return io_ && io_->get_executor().running_in_this_thread(); }

void BenchIo::call(std::string_view what, std::chrono::milliseconds limit, Step start) {
  if (on_io_thread()) {
    throw std::logic_error(
        fmt::format("{}: synchronous {} called on the bench io thread (from a callback); use its async form",
                    name_, what));
  }
  auto promise = std::make_shared<std::promise<void>>();
  auto fired = std::make_shared<std::atomic<bool>>(false);
  auto future = promise->get_future();
  boost::asio::post(*io_, [promise, fired, start = std::move(start)]() mutable {
    Done done = [promise, fired](std::exception_ptr error) {
      if (fired->exchange(true)) return;
      if (error)
        promise->set_exception(error);
      else
        promise->set_value();
    };
    try {
      start(done);
    } catch (...) {
      done(std::current_exception());
    }
  });
  if (future.wait_for(limit + kStuckGrace) != std::future_status::ready) {
    throw TimeoutError(fmt::format("{}: {} did not finish within {} ms: the bench io thread is stuck", name_,
                                   what, (limit + kStuckGrace).count()));
  }
  future.get();
}

void BenchIo::wait(std::chrono::milliseconds duration) { call("wait", duration, wait_step(*io_, duration)); }

Step wait_step(boost::asio::io_context& io, std::chrono::milliseconds duration) {
  return [&io, duration](Done done) {
    auto timer = std::make_shared<boost::asio::steady_timer>(io, duration);
    timer->async_wait([timer, done = std::move(done)](const boost::system::error_code&) { done(nullptr); });
  };
}

namespace {

void run_from(std::shared_ptr<std::vector<Step>> steps, std::size_t index, Done done) {
  if (index == steps->size()) {
    done(nullptr);
    return;
  }
  Step& step = (*steps)[index];
  try {
    step([steps, index, done](std::exception_ptr error) {
      if (error)
        done(error);
      else
        run_from(steps, index + 1, done);
    });
  } catch (...) {
    done(std::current_exception());
  }
}

}  // namespace

void run_sequence(std::vector<Step> steps, Done done) {
  run_from(std::make_shared<std::vector<Step>>(std::move(steps)), 0, std::move(done));
}

struct OpQueue::State : std::enable_shared_from_this<OpQueue::State> {
  struct Item {
    Step op;
    Done done;
  };
  std::deque<Item> items;
  bool busy = false;

  void next() {
    if (busy || items.empty()) return;
    busy = true;
    Item item = std::move(items.front());
    items.pop_front();
    auto self = shared_from_this();
    auto finish = [self, done = std::move(item.done)](std::exception_ptr error) {
      self->busy = false;
      done(error);
      self->next();
    };
    try {
      item.op(finish);
    } catch (...) {
      finish(std::current_exception());
    }
  }
};

OpQueue::OpQueue() : state_(std::make_shared<State>()) {}

void OpQueue::push(Step op, Done done) {
  state_->items.push_back({std::move(op), std::move(done)});
  state_->next();
}

void OpQueue::push_sequence(std::vector<Step> steps, Done done) {
  push([steps = std::move(steps)](Done d) mutable { run_sequence(std::move(steps), std::move(d)); },
       std::move(done));
}

void OpQueue::push_barrier(Done done) {
  push([](Done d) { d(nullptr); }, std::move(done));
}

bool OpQueue::idle() const { return !state_->busy && state_->items.empty(); }

}  // namespace otarig::drivers::bench
