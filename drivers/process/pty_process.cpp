// Device processes on ptys: fork/exec into a new session with the pty slave
// as controlling terminal; SIGKILL to the group; reaping.
#include "otarig/drivers/process/pty_process.hpp"

#include "otarig/drivers/storage/recorder.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <system_error>

#include "otarig/core/fd_passing.hpp"

namespace otarig::drivers::process {
namespace {

using SteadyTime = std::chrono::steady_clock;

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}

ExitStatus from_siginfo(const siginfo_t& info) {
  ExitStatus s;
  if (info.si_code == CLD_EXITED)
    s.code = info.si_status;
  else
    s.signal = info.si_status;
  return s;
}

bool is_executable_file(const std::filesystem::path& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
}

// What the child reports through the exec socket: a failure that stops it
// (stages 1-4), the sync filter's listener (stage 5, SCM_RIGHTS), or a
// filter the kernel refused (stage 6, not fatal). Nothing, when the exec
// worked and the socket closed with it.
struct ChildFailure {
  int stage = 0;  // 1 terminal, 2 chdir, 3 exec, 4 mount namespace, 5 sync listener, 6 sync filter refused
  int error = 0;
};
constexpr int kStageSyncListener = 5;
constexpr int kStageSyncFilterRefused = 6;

// sendmsg is async-signal-safe: the child hands its listener over this way.
bool send_listener(int sock, int listener) {
  ChildFailure msg{kStageSyncListener, 0};
  return send_with_fd(sock, &msg, sizeof msg, listener) == static_cast<ssize_t>(sizeof msg);
}

// One report of the child; `listener` gets a descriptor that came with it.
// 0 at end of file (the exec happened).
ssize_t receive_report(int sock, ChildFailure& out, UniqueFd& listener) {
  return receive_with_fd(sock, &out, sizeof out, listener);
}

// The child side between fork and exec: async-signal-safe calls only.
[[noreturn]] void child_after_fork(int slave, int report, const char* program, char* const* argv,
                                   char* const* envp, const char* cwd, int max_fd, int mount_ns,
                                   bool watch_syncs) {
  auto fail = [report](int stage) {
    ChildFailure f{stage, errno};
    [[maybe_unused]] auto n = ::write(report, &f, sizeof f);
    ::_exit(127);
  };
  // Default dispositions and an empty mask: the rig may ignore SIGPIPE or
  // block signals on its threads; a device must not inherit that.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);

  if (::setsid() < 0) fail(1);
  if (::ioctl(slave, TIOCSCTTY, 0) < 0) fail(1);
  for (int fd = 0; fd < 3; ++fd)
    if (::dup2(slave, fd) < 0) fail(1);
  // Everything else closes at exec; the report pipe stays usable until then.
  if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    for (int fd = 3; fd < max_fd; ++fd) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  // The storage recorder's mount namespace: the device sees the recording
  // layer over its storage folder. setns moves the cwd to the namespace's
  // root, so the chdir comes after it.
  if (mount_ns >= 0) {
    if (int err = storage::enter_mount_namespace(mount_ns); err != 0) {
      errno = err;
      fail(4);
    }
    if (!(cwd && *cwd) && ::chdir("/") != 0) fail(2);
  }
  if (cwd && *cwd && ::chdir(cwd) != 0) fail(2);
  // Last: from here on the child's own sync(2) would wait for the rig. The
  // listener is close-on-exec; the rig holds it (and then the recorder) as
  // long as the device may call.
  if (watch_syncs) {
    int listener = storage::install_sync_filter();
    if (listener >= 0) {
      if (!send_listener(report, listener)) {
        // Nobody will answer: with the listener closed the device's syncs
        // fail with ENOSYS; say so and stop, rather than run unrecorded.
        fail(kStageSyncListener);
      }
      ::close(listener);
    } else {
      ChildFailure refused{kStageSyncFilterRefused, -listener};
      [[maybe_unused]] auto n = ::write(report, &refused, sizeof refused);
    }
  }
  ::execve(program, argv, envp);
  fail(3);
  ::_exit(127);
}

void make_raw(int fd) {
  termios tio{};
  if (::tcgetattr(fd, &tio) != 0) throw_errno(errno, "tcgetattr");
  ::cfmakeraw(&tio);
  if (::tcsetattr(fd, TCSANOW, &tio) != 0) throw_errno(errno, "tcsetattr");
}

}  // namespace

std::optional<std::filesystem::path> find_program(const std::string& name, const std::filesystem::path& base,
                                                  const std::vector<std::filesystem::path>& dirs) {
  if (name.empty()) return std::nullopt;
  if (name.find('/') != std::string::npos) {
    std::filesystem::path p(name);
    if (p.is_relative() && !base.empty()) p = base / p;
    if (is_executable_file(p)) return p;
    return std::nullopt;
  }
  for (const auto& d : dirs)
    if (!d.empty() && is_executable_file(d / name)) return d / name;
  const char* path = std::getenv("PATH");
  std::string_view rest = path ? path : "/usr/local/bin:/usr/bin:/bin";
  while (true) {
    auto colon = rest.find(':');
    std::string_view dir = rest.substr(0, colon);
    std::filesystem::path candidate = std::filesystem::path(dir.empty() ? "." : std::string(dir)) / name;
    if (is_executable_file(candidate)) return candidate;
    if (colon == std::string_view::npos) break;
    rest.remove_prefix(colon + 1);
  }
  return std::nullopt;
}

PtyProcess PtyProcess::start(const std::filesystem::path& program, const LaunchSpec& spec) {
  if (spec.argv.empty()) throw std::invalid_argument("empty command line");

  UniqueFd master(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!master) throw_errno(errno, "posix_openpt");
  if (::grantpt(master.get()) != 0) throw_errno(errno, "grantpt");
  if (::unlockpt(master.get()) != 0) throw_errno(errno, "unlockpt");
  std::array<char, 128> name{};
  if (int rc = ::ptsname_r(master.get(), name.data(), name.size()); rc != 0) throw_errno(rc, "ptsname_r");
  UniqueFd slave(::open(name.data(), O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!slave) throw_errno(errno, fmt::format("open {}", name.data()));
  if (spec.raw) make_raw(slave.get());
  winsize ws{};
  ws.ws_row = spec.rows;
  ws.ws_col = spec.cols;
  ::ioctl(slave.get(), TIOCSWINSZ, &ws);
  if (::fcntl(master.get(), F_SETFL, ::fcntl(master.get(), F_GETFL) | O_NONBLOCK) != 0)
    throw_errno(errno, "fcntl O_NONBLOCK");

  // A socket rather than a pipe: the sync filter's listener comes over it.
  int report_fds[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, report_fds) != 0) throw_errno(errno, "socketpair");
  UniqueFd report_read(report_fds[0]), report_write(report_fds[1]);

  // Everything the child needs, prepared before fork: after it only
  // async-signal-safe calls are allowed (the rig has threads).
  std::vector<char*> argv;
  argv.reserve(spec.argv.size() + 1);
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  envp.reserve(spec.env.size() + 1);
  for (const auto& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const std::string program_text = program.string();
  const std::string cwd_text = spec.cwd.string();
  const long open_max = ::sysconf(_SC_OPEN_MAX);
  const int max_fd = open_max > 0 && open_max < 65536 ? static_cast<int>(open_max) : 65536;

  pid_t pid = ::fork();
  if (pid < 0) throw_errno(errno, "fork");
  if (pid == 0)
    child_after_fork(slave.get(), report_write.get(), program_text.c_str(), argv.data(), envp.data(),
                     cwd_text.c_str(), max_fd, spec.mount_namespace_fd, spec.watch_syncs);

  PtyProcess p;
  p.pid_ = pid;
  p.master_ = std::move(master);
  p.tty_ = name.data();
  // The parent keeps no slave: when the device's last holder exits, reading
  // the master reports end of file.
  slave.reset();
  report_write.reset();

  for (;;) {
    ChildFailure failure;
    UniqueFd listener;
    const ssize_t n = receive_report(report_read.get(), failure, listener);
    if (n != static_cast<ssize_t>(sizeof failure)) break;  // end of file: the exec happened
    if (failure.stage == kStageSyncListener && listener) {
      p.sync_listener_ = std::move(listener);
      continue;
    }
    if (failure.stage == kStageSyncFilterRefused) {
      p.sync_filter_error_ = failure.error;
      continue;
    }
    p.kill();
    const char* stage = failure.stage == 1 ? "set up the terminal" : failure.stage == 2 ? "chdir" : "exec";
    std::string what = failure.stage == 2   ? fmt::format("chdir {}", cwd_text)
                       : failure.stage == 4 ? std::string("join the storage's mount namespace")
                       : failure.stage == kStageSyncListener
                           ? std::string("hand the sync filter's listener to the rig")
                           : fmt::format("{} {}", stage, program_text);
    throw_errno(failure.error, what);
  }
  return p;
}

PtyProcess::PtyProcess(PtyProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      master_(std::move(other.master_)),
      tty_(std::move(other.tty_)),
      status_(std::exchange(other.status_, std::nullopt)),
      sync_listener_(std::move(other.sync_listener_)),
      sync_filter_error_(other.sync_filter_error_) {}

PtyProcess& PtyProcess::operator=(PtyProcess&& other) noexcept {
  if (this != &other) {
    kill();
    pid_ = std::exchange(other.pid_, -1);
    master_ = std::move(other.master_);
    tty_ = std::move(other.tty_);
    status_ = std::exchange(other.status_, std::nullopt);
    sync_listener_ = std::move(other.sync_listener_);
    sync_filter_error_ = other.sync_filter_error_;
  }
  return *this;
}

PtyProcess::~PtyProcess() { kill(); }

std::optional<ExitStatus> PtyProcess::poll_exit() {
  if (!valid() || status_) return status_;
  // WNOWAIT: the exited leader stays a zombie, so its process group id cannot
  // be reused before kill() has signalled the rest of the group and reaped it.
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
      info.si_pid == pid_)
    status_ = from_siginfo(info);
  return status_;
}

ExitStatus PtyProcess::kill() noexcept {
  if (!valid()) return status_.value_or(ExitStatus{-1, 0});
  // The leader is not reaped yet (poll_exit never reaps), so the group id is
  // still ours: signalling it cannot hit an unrelated process.
  ::kill(-pid_, SIGKILL);
  int st = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &st, 0);
  } while (r < 0 && errno == EINTR);
  if (!status_) status_ = r == pid_ ? ExitStatus::from_wait_status(st) : ExitStatus{-1, 0};
  pid_ = -1;
  return *status_;
}

PtyRead read_available(int master, std::size_t limit) {
  PtyRead out;
  std::array<char, 16384> buf{};
  while (out.bytes.size() < limit) {
    ssize_t n = ::read(master, buf.data(), std::min(buf.size(), limit - out.bytes.size()));
    if (n > 0) {
      out.bytes.append(buf.data(), static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    // EIO (Linux) or 0: no process holds the slave any more.
    out.eof = true;
    break;
  }
  return out;
}

bool wait_readable(int master, std::chrono::milliseconds timeout) {
  const auto deadline = SteadyTime::now() + timeout;
  while (true) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - SteadyTime::now());
    if (left.count() < 0) left = std::chrono::milliseconds(0);
    pollfd p{master, POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left.count(), 1 << 30)));
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) return false;
  }
}

std::size_t write_all(int master, std::string_view bytes, std::chrono::milliseconds timeout) {
  const auto deadline = SteadyTime::now() + timeout;
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(master, bytes.data() + done, bytes.size() - done);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyTime::now());
      if (left.count() <= 0) break;
      pollfd p{master, POLLOUT, 0};
      ::poll(&p, 1, static_cast<int>(left.count()));
      continue;
    }
    break;  // EIO: the device is gone
  }
  return done;
}

}  // namespace otarig::drivers::process
