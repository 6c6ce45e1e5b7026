// The recording FUSE layer end to end: a device process joins the layer's
// mount namespace and makes real file system calls; the log the rig takes
// holds them. Needs root and /dev/fuse (skipped, with the reason, without).
#include "otarig/drivers/storage/recorder.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdio.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>

#include "otarig/core/errors.hpp"
#include "otarig/core/fd_passing.hpp"
#include "otarig/drivers/storage/crash_model.hpp"
#include "test_support.hpp"

namespace otarig::drivers::storage {
namespace {

namespace fs = std::filesystem;
using test::put_file;
using test::read_file;
using test::Scratch;

std::string fuse_missing() {
  if (::geteuid() != 0) return "not root: the FUSE layer mounts in a private mount namespace";
  if (::access("/dev/fuse", R_OK | W_OK) != 0) return "no usable /dev/fuse";
  return {};
}

#define REQUIRE_FUSE()                               \
  do {                                               \
    if (auto why = fuse_missing(); !why.empty()) GTEST_SKIP() << why; \
  } while (0)

/// Runs `body` as a device would run: a child process that joined the
/// layer's mount namespace and works in the mount point. Its exit status.
int run_device(const Recorder& r, const std::function<int()>& body) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (enter_mount_namespace(r.mount_namespace_fd()) != 0) ::_exit(90);
    if (::chdir(r.mount_point().c_str()) != 0) ::_exit(91);
    ::_exit(body());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool mounted_here(const fs::path& p) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.find(" " + p.string() + " ") != std::string::npos) return true;
  return false;
}

std::vector<std::string> kinds(const OpLog& log) {
  std::vector<std::string> out;
  for (const auto& op : log.ops()) out.push_back(std::string(to_string(op.kind)) + " " + op.path);
  return out;
}

int write_str(int fd, const std::string& s) { return ::write(fd, s.data(), s.size()) == static_cast<ssize_t>(s.size()) ? 0 : 1; }

TEST(Recorder, RecordsTheDevicesOperationsThroughTheMount) {
  REQUIRE_FUSE();
  Scratch s;
  fs::create_directories(s / "backing");
  fs::create_directories(s / "mnt");
  put_file(s / "backing" / "old", "old");
  Recorder r = Recorder::start(s / "backing", s / "mnt");
  EXPECT_FALSE(mounted_here(s / "mnt")) << "the mount must stay in the layer's own namespace";

  int rc = run_device(r, [] {
    int fd = ::open("a.tmp", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0 || write_str(fd, "hello") || ::fsync(fd) || ::close(fd)) return 1;
    if (::rename("a.tmp", "a")) return 2;
    int dir = ::open(".", O_RDONLY | O_DIRECTORY);
    if (dir < 0 || ::fsync(dir) || ::close(dir)) return 3;
    if (::unlink("old")) return 4;
    fd = ::open("env", O_CREAT | O_WRONLY | O_SYNC, 0644);
    if (fd < 0 || write_str(fd, "x") || ::close(fd)) return 5;
    if (::mkdir("d", 0755)) return 6;
    fd = ::open("a", O_WRONLY);
    if (fd < 0 || ::pwrite(fd, "J", 1, 5) != 1 || ::fdatasync(fd) || ::ftruncate(fd, 3)) return 7;
    if (::fallocate(fd, 0, 0, 8192) || ::close(fd)) return 8;
    if (::chmod("a", 0600) || ::symlink("a", "d/link") || ::link("a", "d/hard")) return 9;
    if (::rmdir("d") == 0) return 10;  // not empty: fails, not recorded
    return 0;
  });
  ASSERT_EQ(rc, 0);
  OpLog log = r.take_log();
  EXPECT_EQ(kinds(log), (std::vector<std::string>{
                            "create /a.tmp", "write /a.tmp", "fsync /a.tmp", "rename /a.tmp", "fsync_dir /",
                            "unlink /old", "create /env", "write /env", "fsync /env", "mkdir /d", "write /a",
                            "fdatasync /a", "truncate /a", "fallocate /a", "chmod /a", "symlink /d/link",
                            "link /a"}));
  ASSERT_GE(log.size(), 17u);
  EXPECT_EQ(log.at(4).path2, "/a");
  EXPECT_EQ(log.at(8).flags & op_flag_o_sync, op_flag_o_sync);
  EXPECT_TRUE(log.at(9).flags & op_flag_implied);
  EXPECT_EQ(log.at(11).offset, 5u);
  EXPECT_EQ(log.at(13).offset, 3u);
  EXPECT_EQ(log.at(14).length, 8192u);
  EXPECT_EQ(log.at(15).mode, 0600u);
  EXPECT_EQ(log.at(16).path2, "a");
  EXPECT_EQ(log.at(17).path2, "/d/hard");
  // The backing folder holds what the device did; the rig's view of the
  // mount point is the plain (empty) folder under it.
  EXPECT_EQ(fs::file_size(s / "backing" / "a"), 8192u);
  EXPECT_FALSE(fs::exists(s / "backing" / "old"));
  EXPECT_TRUE(fs::is_empty(s / "mnt"));
  r.stop();
  EXPECT_FALSE(r.running());
}

TEST(Recorder, BackingFolderMayBeTheMountPointItself) {
  REQUIRE_FUSE();
  Scratch s;
  fs::create_directories(s / "storage");
  put_file(s / "storage" / "slot", "A");
  Recorder r = Recorder::start(s / "storage", s / "storage");
  ASSERT_EQ(run_device(r, [] {
              int fd = ::open("slot", O_WRONLY);
              return fd >= 0 && ::pwrite(fd, "B", 1, 0) == 1 && ::fsync(fd) == 0 ? 0 : 1;
            }),
            0);
  EXPECT_EQ(read_file(s / "storage" / "slot"), "B");  // the rig sees the backing file at the same path
  EXPECT_EQ(kinds(r.take_log()), (std::vector<std::string>{"write /slot", "fsync /slot"}));
}

TEST(Recorder, AFileUnlinkedWhileOpenIsRecordedByItsInode) {
  REQUIRE_FUSE();
  Scratch s;
  fs::create_directories(s / "storage");
  put_file(s / "storage" / "log", "");
  Recorder r = Recorder::start(s / "storage", s / "storage");
  ASSERT_EQ(run_device(r, [] {
              int fd = ::open("log", O_WRONLY);
              if (fd < 0 || ::unlink("log")) return 1;
              return write_str(fd, "late") == 0 && ::fsync(fd) == 0 && ::close(fd) == 0 ? 0 : 2;
            }),
            0);
  OpLog log = r.take_log();
  ASSERT_EQ(kinds(log), (std::vector<std::string>{"unlink /log", "write ", "fsync "}));
  EXPECT_NE(log.at(1).ino, 0u);
  EXPECT_EQ(log.at(2).ino, log.at(1).ino);
  EXPECT_TRUE(log.at(2).flags & op_flag_by_handle);
}

TEST(Recorder, EpochsNumberTheirOperationsFromOne) {
  REQUIRE_FUSE();
  Scratch s;
  fs::create_directories(s / "storage");
  RecorderOptions options;
  options.log_dir = s / "logs";
  Recorder r = Recorder::start(s / "storage", s / "storage", options);
  auto touch = [](const char* name) {
    return [name] {
      int fd = ::open(name, O_CREAT | O_WRONLY, 0644);
      return fd >= 0 && ::close(fd) == 0 ? 0 : 1;
    };
  };
  ASSERT_EQ(run_device(r, touch("one")), 0);
  EXPECT_EQ(r.op_count(), 1u);
  EXPECT_EQ(r.begin_epoch(), 2u);
  EXPECT_EQ(r.op_count(), 0u);
  ASSERT_EQ(run_device(r, touch("two")), 0);
  ASSERT_EQ(run_device(r, touch("three")), 0);
  OpLog log = r.take_log();
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log.at(1).index, 1u);
  EXPECT_EQ(log.at(1).path, "/two");
  EXPECT_EQ(OpLog::load(r.entries_file(1), r.data_file(1)).at(1).path, "/one");
  r.stop();
  EXPECT_TRUE(fs::exists(s / "logs" / "epoch-2.ops")) << "a log folder the rig named stays";
}

TEST(Recorder, AKilledDeviceLosesNoRecordedWrite) {
  REQUIRE_FUSE();
  Scratch s;
  fs::create_directories(s / "storage");
  Recorder r = Recorder::start(s / "storage", s / "storage");
  pid_t pid = ::fork();
  if (pid == 0) {
    if (enter_mount_namespace(r.mount_namespace_fd()) != 0 || ::chdir(r.mount_point().c_str()) != 0) ::_exit(90);
    int fd = ::open("slot", O_CREAT | O_WRONLY | O_APPEND, 0644);
    std::string block(4096, 'w');
    for (;;)
      if (::write(fd, block.data(), block.size()) < 0) ::_exit(91);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  OpLog log = r.take_log();
  std::uint64_t recorded = 0;
  for (const auto& op : log.ops())
    if (op.kind == OpKind::write) {
      EXPECT_EQ(op.offset, recorded) << "op " << op.index;
      recorded += op.length;
    }
  EXPECT_GT(recorded, 0u);
  EXPECT_EQ(fs::file_size(s / "storage" / "slot"), recorded);
}

TEST(Recorder, SyncAndSyncfsAreNotSeenByTheLayer) {
  // Why the device's seccomp filter is needed (docs/crash-model.md): the
  // kernel sends no FUSE request for sync(2) or syncfs(2) on a /dev/fuse
  // mount, so a device without the filter leaves no barrier. If this fails,
  // a kernel now delivers them: each sync would be recorded twice.
  REQUIRE_FUSE();
  Scratch s;
  fs::create_directories(s / "storage");
  Recorder r = Recorder::start(s / "storage", s / "storage");
  ASSERT_EQ(run_device(r, [] {
              int fd = ::open("f", O_CREAT | O_WRONLY, 0644);
              if (fd < 0 || write_str(fd, "data")) return 1;
              ::sync();
              return ::syncfs(fd) == 0 && ::close(fd) == 0 ? 0 : 2;
            }),
            0);
  EXPECT_EQ(kinds(r.take_log()), (std::vector<std::string>{"create /f", "write /f"}));
}

/// A device whose sync(2) and syncfs(2) the recorder sees, as a process
/// board's is: a child that joined the layer's namespace, installed the sync
/// filter and handed its listener over (to `r` when `hand_over`, else the
/// parent just closes it), then waits for run() before it runs `body`.
class SyncingDevice {
 public:
  SyncingDevice(Recorder& r, const std::function<int()>& body, bool hand_over = true) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) throw std::runtime_error("socketpair");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(sv[0]);
      if (enter_mount_namespace(r.mount_namespace_fd()) != 0 || ::chdir(r.mount_point().c_str()) != 0) ::_exit(90);
      const int listener = install_sync_filter();
      int refused = listener < 0 ? -listener : 0;
      if (otarig::send_with_fd(sv[1], &refused, sizeof refused, listener) < 0) ::_exit(92);
      if (listener >= 0) ::close(listener);
      char go = 0;
      if (::read(sv[1], &go, 1) != 1 || refused != 0) ::_exit(93);
      ::_exit(body());
    }
    ::close(sv[1]);
    sock_ = sv[0];
    int refused = 0;
    otarig::UniqueFd listener;
    if (otarig::receive_with_fd(sock_, &refused, sizeof refused, listener) != static_cast<ssize_t>(sizeof refused)) {
      refused_ = "the device reported nothing";
      return;
    }
    if (refused != 0) {
      refused_ = std::string("the kernel refused the seccomp user-notification filter: ") + std::strerror(refused);
      return;
    }
    if (!listener) {
      refused_ = "no listener came";
      return;
    }
    if (hand_over) r.watch_syncs(listener.get());
  }
  ~SyncingDevice() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (sock_ >= 0) ::close(sock_);
  }
  SyncingDevice(const SyncingDevice&) = delete;
  SyncingDevice& operator=(const SyncingDevice&) = delete;

  /// Why the filter could not be used (empty when it is).
  const std::string& refused() const { return refused_; }
  /// Lets the device run its body and waits at most 10 s for its exit
  /// status; 124 when it hangs (then it is killed).
  int run() {
    const char go = 1;
    if (::write(sock_, &go, 1) != 1) return 125;
    for (int i = 0; i < 1000; ++i) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        reaped_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return 124;
  }

 private:
  pid_t pid_ = -1;
  int sock_ = -1;
  bool reaped_ = false;
  std::string refused_;
};

#define SKIP_IF_REFUSED(device) \
  do {                           \
    if (!(device).refused().empty()) GTEST_SKIP() << (device).refused(); \
  } while (0)

int write_file(const char* name, const std::string& text) {
  int fd = ::open(name, O_CREAT | O_WRONLY | O_TRUNC, 0644);
  if (fd < 0 || write_str(fd, text)) return -1;
  return fd;
}

TEST(Recorder, ASyncOrSyncfsOfTheStorageIsABarrierSeenThroughTheSeccompFilter) {
  REQUIRE_FUSE();
  Scratch s;
  fs::create_directories(s / "storage");
  snapshot_folder(s / "storage", s / "snapshot");
  Recorder r = Recorder::start(s / "storage", s / "storage");
  SyncingDevice device(r, [] {
    int f = write_file("f", "data");
    if (f < 0) return 1;
    ::sync();
    int g = write_file("g", "more");
    if (g < 0 || ::syncfs(g) != 0) return 2;
    // A syncfs of another file system syncs nothing of the storage.
    int root = ::open("/", O_RDONLY | O_DIRECTORY);
    if (root < 0 || ::syncfs(root) != 0) return 3;
    return write_file("h", "late") < 0 ? 4 : 0;
  });
  SKIP_IF_REFUSED(device);
  ASSERT_EQ(device.run(), 0);
  OpLog log = r.take_log();
  EXPECT_EQ(kinds(log), (std::vector<std::string>{"create /f", "write /f", "sync ", "create /g", "write /g", "sync ",
                                                  "create /h", "write /h"}));
  ASSERT_EQ(log.size(), 8u);
  EXPECT_EQ(to_json(log.at(3)), (nlohmann::json{{"op", 3}, {"kind", "sync"}, {"source", "seccomp"}, {"syscall", "sync"}}));
  EXPECT_EQ(to_json(log.at(6)).at("syscall"), "syncfs");
  // Cut after everything: what a sync made durable stays, the rest is lost.
  CrashModel model(s / "snapshot", log);
  model.materialize({model.cut_points(), CrashMode::lost, 1}, s / "after-cut");
  EXPECT_EQ(read_file(s / "after-cut" / "f"), "data");
  EXPECT_EQ(read_file(s / "after-cut" / "g"), "more");
  EXPECT_EQ(read_file(s / "after-cut" / "h"), std::nullopt) << "written after the last barrier";
  // Cut before the first sync: nothing was durable yet.
  model.materialize({3, CrashMode::lost, 1}, s / "after-cut");
  EXPECT_EQ(read_file(s / "after-cut" / "f"), std::nullopt);
}

TEST(Recorder, WithoutASyncTheSameWritesAreLost) {
  REQUIRE_FUSE();
  Scratch s;
  fs::create_directories(s / "storage");
  snapshot_folder(s / "storage", s / "snapshot");
  Recorder r = Recorder::start(s / "storage", s / "storage");
  SyncingDevice device(r, [] { return write_file("f", "data") < 0 ? 1 : 0; });
  SKIP_IF_REFUSED(device);
  ASSERT_EQ(device.run(), 0);
  OpLog log = r.take_log();
  EXPECT_EQ(kinds(log), (std::vector<std::string>{"create /f", "write /f"}));
  CrashModel model(s / "snapshot", log);
  model.materialize({model.cut_points(), CrashMode::lost, 1}, s / "after-cut");
  EXPECT_EQ(read_file(s / "after-cut" / "f"), std::nullopt);
}

TEST(Recorder, ASyncOfADeviceFromAnEarlierEpochIsNotRecordedInTheNext) {
  REQUIRE_FUSE();
  Scratch s;
  fs::create_directories(s / "storage");
  Recorder r = Recorder::start(s / "storage", s / "storage");
  SyncingDevice device(r, [] {
    ::sync();
    return 0;
  });
  SKIP_IF_REFUSED(device);
  r.begin_epoch();  // a power-on whose device is not this one
  ASSERT_EQ(device.run(), 0) << "answered, not stopped";
  EXPECT_TRUE(kinds(r.take_log()).empty());
}

TEST(Recorder, AStoppedRecorderNeverHangsASyncingDevice) {
  REQUIRE_FUSE();
  Scratch s;
  fs::create_directories(s / "storage");
  Recorder r = Recorder::start(s / "storage", s / "storage");
  SyncingDevice device(r, [] {
    ::sync();
    int root = ::open("/", O_RDONLY | O_DIRECTORY);
    // Nobody holds the listener any more: the kernel fails the call.
    return ::syncfs(root) == -1 && errno == ENOSYS ? 0 : 1;
  });
  SKIP_IF_REFUSED(device);
  r.stop();
  EXPECT_EQ(device.run(), 0);
}

TEST(Recorder, AListenerNobodyTakesFailsTheCallInsteadOfStoppingIt) {
  REQUIRE_FUSE();
  Scratch s;
  fs::create_directories(s / "storage");
  Recorder r = Recorder::start(s / "storage", s / "storage");
  SyncingDevice device(r, [] {
    int root = ::open("/", O_RDONLY | O_DIRECTORY);
    return ::syncfs(root) == -1 && errno == ENOSYS ? 0 : 1;
  }, /*hand_over=*/false);
  SKIP_IF_REFUSED(device);
  EXPECT_EQ(device.run(), 0);
}

std::string file_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(Recorder, TracesWhatTheDevicePrintsOnItsConsoleInOrderWithItsOperations) {
  REQUIRE_FUSE();
  Scratch s;
  fs::create_directories(s / "storage");
  Recorder r = Recorder::start(s / "storage", s / "storage");
  // The device's console: a terminal, as a process board's pty.
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(master, 0);
  ASSERT_EQ(::grantpt(master), 0);
  ASSERT_EQ(::unlockpt(master), 0);
  const std::string slave_name = ::ptsname(master);
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  SyncingDevice device(r, [&] {
    const int tty = ::open(slave_name.c_str(), O_RDWR | O_NOCTTY);
    if (tty < 0 || ::dup2(tty, 1) != 1 || ::dup2(pipe_fds[1], 2) != 2) return 1;
    if (write_str(1, "otarig boot ROM\r\n")) return 2;
    if (write_file("f", "data") < 0) return 3;
    // A line in two writes, the second a writev of two pieces.
    if (write_str(1, "ota: staged ")) return 4;
    char a[] = "slot B", b[] = "\n";
    iovec iov[2] = {{a, sizeof a - 1}, {b, 1}};
    if (::writev(1, iov, 2) != 7) return 5;
    // Not the console: a pipe on descriptor 2.
    if (write_str(2, "stderr to a pipe\n")) return 6;
    if (write_file("g", "more") < 0) return 7;
    return write_str(1, "STATUS ok\n") ? 8 : 0;
  });
  SKIP_IF_REFUSED(device);
  r.mark_console();
  ASSERT_EQ(device.run(), 0);
  EXPECT_EQ(r.op_count(), 4u);
  EXPECT_EQ(file_text(r.console_file(r.epoch())),
            "M 0\nL 0 otarig boot ROM\nL 2 ota: staged slot B\nL 4 STATUS ok\n");
  // The device's writes reached the terminal and the pipe as usual.
  char buf[256];
  const ssize_t n = ::read(master, buf, sizeof buf);
  ASSERT_GT(n, 0);
  EXPECT_NE(std::string(buf, static_cast<std::size_t>(n)).find("otarig boot ROM"), std::string::npos);
  const ssize_t m = ::read(pipe_fds[0], buf, sizeof buf);
  EXPECT_EQ(std::string(buf, static_cast<std::size_t>(std::max<ssize_t>(m, 0))), "stderr to a pipe\n");
  // A new epoch traces into a file of its own.
  const auto next = r.begin_epoch();
  EXPECT_EQ(file_text(r.console_file(next)), "");
  ::close(master);
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}

TEST(Recorder, ItsLogBuildsCrashStates) {
  REQUIRE_FUSE();
  Scratch s;
  fs::create_directories(s / "storage");
  put_file(s / "storage" / "state", "old");
  snapshot_folder(s / "storage", s / "snapshot");
  Recorder r = Recorder::start(s / "storage", s / "storage");
  // The flawed state update: the new file is synced, its directory is not.
  ASSERT_EQ(run_device(r, [] {
              int fd = ::open("state.tmp", O_CREAT | O_WRONLY | O_TRUNC, 0644);
              if (fd < 0 || write_str(fd, "new") || ::fsync(fd) || ::close(fd)) return 1;
              return ::rename("state.tmp", "state");
            }),
            0);
  OpLog log = r.take_log();
  CrashModel model(s / "snapshot", log);
  model.materialize({model.cut_points(), CrashMode::lost, 1}, s / "after-cut");
  EXPECT_EQ(read_file(s / "after-cut" / "state"), "old");
  EXPECT_EQ(read_file(s / "after-cut" / "state.tmp"), std::nullopt);
  EXPECT_EQ(read_file(s / "storage" / "state"), "new");  // what a kill-only cut would have left
}

TEST(Recorder, AKilledRigLeavesNoMountBehind) {
  REQUIRE_FUSE();
  Scratch s;
  fs::create_directories(s / "storage");
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  pid_t rig = ::fork();
  if (rig == 0) {
    ::close(pipefd[0]);
    try {
      RecorderOptions options;
      options.log_dir = s / "logs";  // a killed rig cannot remove a temporary one
      Recorder r = Recorder::start(s / "storage", s / "storage", options);
      pid_t daemon = r.daemon_pid();
      (void)!::write(pipefd[1], &daemon, sizeof daemon);
      for (;;) ::pause();
    } catch (...) {
      ::_exit(1);
    }
  }
  ::close(pipefd[1]);
  pid_t daemon = 0;
  ASSERT_EQ(::read(pipefd[0], &daemon, sizeof daemon), static_cast<ssize_t>(sizeof daemon));
  ::close(pipefd[0]);
  ASSERT_GT(daemon, 0);
  ::kill(rig, SIGKILL);
  ::waitpid(rig, nullptr, 0);
  // The daemon dies with the rig (it is not our child: watch /proc).
  auto gone = [daemon] {
    std::ifstream stat("/proc/" + std::to_string(daemon) + "/stat");
    std::string text;
    std::getline(stat, text);
    auto close_paren = text.rfind(')');
    return text.empty() || (close_paren != std::string::npos && text.size() > close_paren + 2 &&
                            text[close_paren + 2] == 'Z');
  };
  for (int i = 0; i < 100 && !gone(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(gone()) << "daemon " << daemon << " outlived the rig";
  EXPECT_FALSE(mounted_here(s / "storage"));
  // The folder is an ordinary folder again.
  put_file(s / "storage" / "after", "ok");
  EXPECT_EQ(read_file(s / "storage" / "after"), "ok");
}

struct BadInput {
  const char* name;
  bool mount_missing;
};

class RecorderBadInput : public ::testing::TestWithParam<BadInput> {};

TEST_P(RecorderBadInput, IsABenchErrorNamingTheFolder) {
  Scratch s;
  fs::create_directories(s / "present");
  const fs::path missing = s / "no-such-folder";
  const fs::path backing = GetParam().mount_missing ? s / "present" : missing;
  const fs::path mount = GetParam().mount_missing ? missing : s / "present";
  try {
    Recorder::start(backing, mount);
    FAIL() << "started";
  } catch (const BenchError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(mount.string()), std::string::npos) << what;
    if (fuse_missing().empty()) {
      EXPECT_NE(what.find(missing.string() + ":"), std::string::npos) << what;
    }
  }
  EXPECT_FALSE(mounted_here(mount));
}

INSTANTIATE_TEST_SUITE_P(Folders, RecorderBadInput,
                         ::testing::Values(BadInput{"missing_mount_point", true}, BadInput{"missing_backing", false}),
                         [](const auto& tp) { return std::string(tp.param.name); });

}  // namespace
}  // namespace otarig::drivers::storage
