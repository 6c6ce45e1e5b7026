#pragma once
// Child processes for bench tools (PDU command lines, uhubctl, OpenOCD):
// posix_spawn into a process group of their own, exit watched through a
// pidfd on the bench io_context, the whole group killed on timeout.
#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <exception>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "otarig/drivers/bench/io.hpp"
#include "otarig/core/exit_status.hpp"

namespace otarig::drivers::bench {

/// A command line: the program and its arguments, no shell involved.
struct CommandSpec {
  std::vector<std::string> argv;
  /// `/bin/sh -c line`: for profile commands written as one string.
  static CommandSpec shell(std::string line);
  /// The command as a user wrote it, for messages: the shell line, or the
  /// arguments quoted as command_text() quotes them.
  std::string text() const;
};


/// A spawned child and its process group. Move-only; the destructor kills the
/// group and reaps the child when it is still running.
class ChildProcess {
 public:
  struct Options {
    /// stdout and stderr go to a pipe the caller reads (take_output()).
    bool capture_output = false;
    /// Otherwise stdout and stderr are appended to this file; /dev/null when empty.
    std::filesystem::path output_file;
  };

  ChildProcess() = default;
  /// Spawns `command` (looked up in PATH) as leader of a new process group,
  /// stdin from /dev/null, no descriptors but 0-2 inherited.
  /// std::system_error when it cannot be started (ENOENT for a missing program).
  static ChildProcess spawn(const CommandSpec& command, const Options& options);

  ChildProcess(ChildProcess&&) noexcept = default;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  bool valid() const noexcept { return pid_ > 0; }
  pid_t pid() const noexcept { return pid_; }
  /// A pidfd that turns readable when the child exits.
  int pidfd() const noexcept { return pidfd_.get(); }
  /// The read end of the output pipe (capture_output only).
  UniqueFd take_output() noexcept { return std::move(output_); }

  /// Reaps the child when it has exited; never blocks.
  std::optional<ExitStatus> try_reap();
  /// The status once reaped.
  const std::optional<ExitStatus>& status() const noexcept { return status_; }
  /// Sends `sig` to the whole process group while the child is unreaped.
  void signal_group(int sig) noexcept;
  /// SIGKILL to the group, then reaps the child (blocks only until the kernel
  /// has delivered the kill).
  ExitStatus kill_and_reap() noexcept;

 private:
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  UniqueFd output_;
  std::optional<ExitStatus> status_;
};

/// What a finished command left behind.
struct CommandResult {
  ExitStatus status;
  bool timed_out = false;  ///< the deadline passed and the group was killed
  std::string output;      ///< the last few KiB of stdout+stderr
  std::chrono::nanoseconds elapsed{0};
};

/// Runs `command` on the io thread: spawns it (synchronously, before this
/// returns), then completes when it exits, or kills its process group when
/// `timeout` passes (timed_out = true). A spawn failure completes with the
/// std::system_error. Call on the io thread.
void async_run_command(boost::asio::io_context& io, const CommandSpec& command,
                       std::chrono::milliseconds timeout,
                       std::function<void(std::exception_ptr, CommandResult)> handler);

/// Completes with the exit status once `child` exits, or with nullopt when
/// `timeout` passes first. The child must outlive the wait. Io thread only.
void async_wait_exit(boost::asio::io_context& io, ChildProcess& child, std::chrono::milliseconds timeout,
                     std::function<void(std::optional<ExitStatus>)> handler);

}  // namespace otarig::drivers::bench
