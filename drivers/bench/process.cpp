#include "otarig/drivers/bench/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <system_error>

#include "otarig/core/spawn.hpp"

namespace otarig::drivers::bench {
namespace {

constexpr std::size_t kOutputTail = 4096;

void append_tail(std::string& tail, const char* data, std::size_t n) {
  tail.append(data, n);
  if (tail.size() > kOutputTail) tail.erase(0, tail.size() - kOutputTail);
}

}  // namespace

CommandSpec CommandSpec::shell(std::string line) { return CommandSpec{{"/bin/sh", "-c", std::move(line)}}; }

std::string CommandSpec::text() const {
  if (argv.size() == 3 && argv[0] == "/bin/sh" && argv[1] == "-c") return argv[2];
  return command_text(argv);
}

ChildProcess ChildProcess::spawn(const CommandSpec& command, const Options& options) {
  auto spawned = spawn_process(command.argv, {.program = {},
                                              .capture_output = options.capture_output,
                                              .output_file = options.output_file,
                                              .cwd = {},
                                              .new_process_group = true});
  ChildProcess child;
  child.pid_ = spawned.pid;
  // glibc 2.36's <sys/pidfd.h> lacks extern "C" for C++; the system call is the same.
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, child.pid_, 0));
  if (pidfd < 0) {
    int err = errno;
    child.kill_and_reap();
    throw std::system_error(err, std::generic_category(), "pidfd_open");
  }
  ::fcntl(pidfd, F_SETFD, FD_CLOEXEC);
  child.pidfd_.reset(pidfd);
  child.output_ = std::move(spawned.output);
  return child;
}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    if (valid() && !status_) kill_and_reap();
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::move(other.pidfd_);
    output_ = std::move(other.output_);
    status_ = std::exchange(other.status_, std::nullopt);
  }
  return *this;
}

ChildProcess::~ChildProcess() {
  if (valid() && !status_) kill_and_reap();
}

std::optional<ExitStatus> ChildProcess::try_reap() {
  if (!valid() || status_) return status_;
  int st = 0;
  pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_)
    status_ = ExitStatus::from_wait_status(st);
  else if (r < 0 && errno == ECHILD)
    status_ = ExitStatus{-1, 0};  // reaped elsewhere
  return status_;
}

void ChildProcess::signal_group(int sig) noexcept {
  // An exited but unreaped leader still holds the group id, so the group
  // cannot have been reused while status_ is empty.
  if (valid() && !status_) ::kill(-pid_, sig);
}

ExitStatus ChildProcess::kill_and_reap() noexcept {
  if (!valid()) return ExitStatus{-1, 0};
  if (status_) return *status_;
  signal_group(SIGKILL);
  int st = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &st, 0);
  } while (r < 0 && errno == EINTR);
  status_ = r == pid_ ? ExitStatus::from_wait_status(st) : ExitStatus{-1, 0};
  return *status_;
}

namespace {

using boost::asio::posix::stream_descriptor;

struct RunOp : std::enable_shared_from_this<RunOp> {
  explicit RunOp(boost::asio::io_context& io) : exit_watch(io), output(io), timer(io) {}

  ChildProcess child;
  stream_descriptor exit_watch;
  stream_descriptor output;
  boost::asio::steady_timer timer;
  std::array<char, 1024> buffer{};
  CommandResult result;
  std::chrono::steady_clock::time_point started;
  std::function<void(std::exception_ptr, CommandResult)> handler;
  bool finished = false;

  void read_output() {
    output.async_read_some(boost::asio::buffer(buffer),
                           [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
                             if (ec || self->finished) return;
                             append_tail(self->result.output, self->buffer.data(), n);
                             self->read_output();
                           });
  }

  void watch_exit() {
    exit_watch.async_wait(stream_descriptor::wait_read,
                          [self = shared_from_this()](const boost::system::error_code& ec) {
                            if (ec || self->finished) return;
                            auto status = self->child.try_reap();
                            if (!status) {
                              self->watch_exit();
                              return;
                            }
                            self->result.status = *status;
                            self->finish();
                          });
  }

  void finish() {
    finished = true;
    timer.cancel();
    // What the command printed just before it exited may still sit in the pipe.
    if (output.is_open()) {
      boost::system::error_code ec;
      output.non_blocking(true, ec);
      while (!ec) {
        std::size_t n = output.read_some(boost::asio::buffer(buffer), ec);
        if (!ec) append_tail(result.output, buffer.data(), n);
      }
      output.close(ec);
    }
    boost::system::error_code ignored;
    exit_watch.close(ignored);
    result.elapsed = std::chrono::steady_clock::now() - started;
    auto h = std::move(handler);
    h(nullptr, std::move(result));
  }
};

}  // namespace

void async_run_command(boost::asio::io_context& io, const CommandSpec& command,
                       std::chrono::milliseconds timeout,
                       std::function<void(std::exception_ptr, CommandResult)> handler) {
  auto op = std::make_shared<RunOp>(io);
  op->handler = std::move(handler);
  op->started = std::chrono::steady_clock::now();
  try {
    op->child = ChildProcess::spawn(command, {.capture_output = true, .output_file = {}});
    op->exit_watch.assign(UniqueFd::duplicate(op->child.pidfd()).release());
    op->output.assign(op->child.take_output().release());
  } catch (...) {
    auto h = std::move(op->handler);
    h(std::current_exception(), CommandResult{});
    return;
  }
  op->read_output();
  op->watch_exit();
  op->timer.expires_after(timeout);
  op->timer.async_wait([op](const boost::system::error_code& ec) {
    if (ec || op->finished) return;
    op->result.timed_out = true;
    op->child.signal_group(SIGKILL);  // the exit watch completes the operation
  });
}

void async_wait_exit(boost::asio::io_context& io, ChildProcess& child, std::chrono::milliseconds timeout,
                     std::function<void(std::optional<ExitStatus>)> handler) {
  if (auto status = child.try_reap()) {
    handler(status);
    return;
  }
  struct WaitOp {
    WaitOp(boost::asio::io_context& ctx) : watch(ctx), timer(ctx) {}
    stream_descriptor watch;
    boost::asio::steady_timer timer;
    bool finished = false;
  };
  auto op = std::make_shared<WaitOp>(io);
  auto shared_handler = std::make_shared<std::function<void(std::optional<ExitStatus>)>>(std::move(handler));
  auto complete = [op, shared_handler](std::optional<ExitStatus> status) {
    if (op->finished) return;
    op->finished = true;
    boost::system::error_code ignored;
    op->timer.cancel();
    op->watch.close(ignored);
    (*shared_handler)(status);
  };
  op->watch.assign(UniqueFd::duplicate(child.pidfd()).release());
  // A pidfd turns readable once and stays readable: one wait is enough.
  op->watch.async_wait(stream_descriptor::wait_read, [&child, complete](const boost::system::error_code& ec) {
    if (ec) return;
    complete(child.try_reap());
  });
  op->timer.expires_after(timeout);
  op->timer.async_wait([complete](const boost::system::error_code& ec) {
    if (!ec) complete(std::nullopt);
  });
}

}  // namespace otarig::drivers::bench
