#pragma once
// A device program running as its own process: started in a new session
// (setsid) whose controlling terminal is a pty the rig owns, so its stdin,
// stdout and stderr are the device's console. Power off is SIGKILL to the
// whole process group, then the child is reaped. See docs/process-boards.md.
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "otarig/core/exit_status.hpp"
#include "otarig/core/unique_fd.hpp"

namespace otarig::drivers::process {


/// What to start.
struct LaunchSpec {
  /// Program and arguments; argv[0] is looked up as find_program() says.
  std::vector<std::string> argv;
  /// Working directory of the process (empty: the rig's).
  std::filesystem::path cwd;
  /// The complete environment ("NAME=value").
  std::vector<std::string> env;
  /// Raw pty (no echo, no line editing, no CR/LF translation, no signal keys),
  /// as a serial console at the rig's end usually is. False: the terminal's
  /// defaults (cooked).
  bool raw = true;
  /// A mount namespace the program joins before it changes to `cwd` (the
  /// storage recorder's, storage/recorder.hpp): -1 for the rig's own.
  int mount_namespace_fd = -1;
  /// Install the seccomp filter that makes sync(2) and syncfs(2) wait for
  /// the rig (storage::install_sync_filter) just before exec, and hand its
  /// listener to the rig (PtyProcess::take_sync_listener). For a device
  /// under the crash model.
  bool watch_syncs = false;
  /// Terminal size reported to the program.
  unsigned short rows = 24, cols = 200;
};

/// Where a program name is found: a name with a slash is taken as it is
/// (relative to `base` when relative); a bare name is searched in `dirs`,
/// then in $PATH. nullopt when it is not an executable file anywhere.
std::optional<std::filesystem::path> find_program(const std::string& name, const std::filesystem::path& base,
                                                  const std::vector<std::filesystem::path>& dirs);

/// One run of a device program on a fresh pty. Move-only. The destructor
/// kills the process group and reaps the child when it is still running, and
/// closes the pty master.
class PtyProcess {
 public:
  /// Opens a pty (posix_openpt, grantpt, unlockpt), forks, and in the child:
  /// setsid, makes the pty slave its controlling terminal and stdin/stdout/
  /// stderr, closes every other descriptor, restores default signal
  /// dispositions and an empty signal mask, joins `spec.mount_namespace_fd`
  /// when it names one, changes to `cwd` and execs
  /// `program` with `spec.argv` and `spec.env`. Returns once the exec has
  /// happened or failed: std::system_error with the child's errno ("exec
  /// PROGRAM", "chdir DIR", "join the storage's mount namespace") when it failed.
  /// With `spec.watch_syncs` the filter goes in last, after chdir; a filter
  /// the kernel refuses does not stop the program (sync_filter_error()).
  static PtyProcess start(const std::filesystem::path& program, const LaunchSpec& spec);

  PtyProcess() = default;
  PtyProcess(PtyProcess&& other) noexcept;
  PtyProcess& operator=(PtyProcess&& other) noexcept;
  PtyProcess(const PtyProcess&) = delete;
  PtyProcess& operator=(const PtyProcess&) = delete;
  ~PtyProcess();

  bool valid() const noexcept { return pid_ > 0; }
  pid_t pid() const noexcept { return pid_; }
  /// The pty master, non-blocking and close-on-exec.
  int master() const noexcept { return master_.get(); }
  /// The slave's path (/dev/pts/N), for messages.
  const std::string& tty() const noexcept { return tty_; }
  /// With LaunchSpec::watch_syncs: the seccomp listener of the program's
  /// sync filter (once; then empty). The program's sync(2) and syncfs(2)
  /// wait until someone answers on it, or fail with ENOSYS once it is closed.
  UniqueFd take_sync_listener() noexcept { return std::move(sync_listener_); }
  /// With LaunchSpec::watch_syncs: 0, or the errno the filter's installation
  /// failed with (the program runs without it).
  int sync_filter_error() const noexcept { return sync_filter_error_; }

  /// Reaps the child when it has exited; never blocks.
  std::optional<ExitStatus> poll_exit();
  /// The status once reaped.
  const std::optional<ExitStatus>& status() const noexcept { return status_; }
  /// SIGKILL to the process group, then waits for the child (the kernel
  /// delivers SIGKILL at once). Returns how it ended. Never throws.
  ExitStatus kill() noexcept;

 private:
  pid_t pid_ = -1;
  UniqueFd master_;
  std::string tty_;
  std::optional<ExitStatus> status_;
  UniqueFd sync_listener_;
  int sync_filter_error_ = 0;
};

/// Result of reading a pty master.
struct PtyRead {
  std::string bytes;
  /// The slave side is closed (every process holding it has exited): no
  /// more bytes will come from this pty.
  bool eof = false;
};

/// Reads what the master has now without blocking (at most `limit` bytes).
PtyRead read_available(int master, std::size_t limit = 1 << 20);
/// Waits until `master` is readable or `timeout` passes. True when readable
/// (data or hang-up).
bool wait_readable(int master, std::chrono::milliseconds timeout);
/// Writes all of `bytes`, waiting at most `timeout` for room in the pty.
/// Returns the bytes written (fewer when the deadline passed or the device is gone).
std::size_t write_all(int master, std::string_view bytes, std::chrono::milliseconds timeout);

}  // namespace otarig::drivers::process
