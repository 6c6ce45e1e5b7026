#pragma once
// The recording FUSE layer (docs/crash-model.md): a passthrough file system
// mounted over a storage folder that applies every operation to a backing
// folder and records each mutating operation and barrier (recording_folder.hpp)
// before it answers the device.
//
// The FUSE daemon is a child process of the rig that has moved into a mount
// namespace of its own (unshare(CLONE_NEWNS), propagation private) and
// mounted there, so the mount is visible only to processes that join that
// namespace (setns on mount_namespace_fd(), before exec). Nothing is mounted
// in the rig's namespace: if the rig is SIGKILLed the daemon dies with it
// (PR_SET_PDEATHSIG, and end of file on its control socket), and the mount
// vanishes with the namespace's last process. The backing folder may be the
// mount point itself: the daemon opens it before mounting, the rig keeps
// seeing the backing files at that path, the device sees the layer.
//
// sync(2) and syncfs(2) send no FUSE request. A device started with
// install_sync_filter() (between fork and exec) stops at each of them until
// the daemon, given the filter's listener by watch_syncs(), has recorded a
// `sync` barrier (flag op_flag_seccomp) in the epoch's log; then the call
// runs. docs/crash-model.md, "sync and syncfs". Its writes to a terminal
// on descriptor 1 or 2 stop the same way while the daemon traces them with
// the operation count (console_file()); then they run.
//
// Logs: one pair of files per epoch (power-on) in log_dir, written by the
// daemon with one write(2) per entry before the operation returns to the
// device; after a power cut (device killed and reaped) take_log() has every
// operation the device saw complete.
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>

#include "otarig/drivers/storage/oplog.hpp"
#include "otarig/drivers/storage/recording_folder.hpp"

namespace otarig::drivers::storage {

struct RecorderOptions {
  /// Where the epochs' logs go; empty: a new temporary folder that stop() removes.
  std::filesystem::path log_dir;
  RecordingOptions recording;
  std::chrono::milliseconds start_timeout{10'000};
  std::chrono::milliseconds stop_timeout{5'000};
  /// How long a request to the running daemon (a new epoch, the operation
  /// count, a sync listener) may wait for its answer. It only tells a dead or
  /// wedged daemon from a busy one: a daemon starved by a loaded host or
  /// slowed by the sanitizers answers late, and must not fail the bench.
  std::chrono::milliseconds answer_timeout{120'000};
};

class Recorder {
 public:
  /// Starts the daemon (from a thread of its own that lives as long as the
  /// daemon, so the parent-death signal follows the rig process, not the
  /// calling thread) and waits until the layer is mounted. BenchError naming
  /// the mount point and the reason when it cannot be: not root, no
  /// /dev/fuse, a folder missing, the mount refused. Epoch 1 has begun.
  static Recorder start(const std::filesystem::path& backing_dir, const std::filesystem::path& mount_point,
                        RecorderOptions options = {});

  Recorder() = default;
  Recorder(Recorder&&) noexcept;
  Recorder& operator=(Recorder&&) noexcept;
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;
  /// stop(), never throwing.
  ~Recorder();

  bool running() const;
  pid_t daemon_pid() const;
  /// An O_CLOEXEC descriptor of the daemon's mount namespace
  /// (/proc/PID/ns/mnt), valid until stop(). A device joins it with
  /// enter_mount_namespace() between fork and exec.
  int mount_namespace_fd() const;
  const std::filesystem::path& mount_point() const;
  const std::filesystem::path& log_dir() const;

  /// Hands the seccomp listener of a device started in the current epoch
  /// (install_sync_filter) to the daemon, which from now on answers the
  /// device's sync(2) and syncfs(2) calls (and traces its console writes,
  /// console_file()): it appends a `sync` barrier
  /// (flags op_flag_seccomp, and op_flag_syncfs for syncfs) to the epoch's
  /// log, in order with the operations the layer records, then answers the
  /// call as done (0) without running it, as the layer treats an fsync; with
  /// RecordingOptions::apply_barriers it lets the call run
  /// (SECCOMP_USER_NOTIF_FLAG_CONTINUE). A syncfs(2) of a file outside the
  /// layer runs unrecorded. Notifications of a device of an
  /// earlier epoch are answered unrecorded, and the listeners of earlier
  /// epochs are closed when a new one arrives (their devices were killed at
  /// power-off). The daemon holds the listener until it stops; once nobody
  /// holds it, the kernel fails a filtered call with ENOSYS instead of
  /// stopping it, so a device never waits on a rig that is gone.
  /// BenchError when the daemon does not take it.
  void watch_syncs(int listener);

  /// Starts a new epoch (call while no device runs on the layer: at power-on)
  /// and returns its number; the next operation is its 1.
  std::uint64_t begin_epoch();
  /// The current epoch and the operations recorded in it so far.
  std::uint64_t epoch() const;
  std::uint64_t op_count();
  /// The current epoch's log as recorded so far (after a power cut: all of
  /// it). The files stay in log_dir until stop().
  OpLog take_log();
  /// Where an epoch's log is (OpLog::load).
  std::filesystem::path entries_file(std::uint64_t epoch) const;
  std::filesystem::path data_file(std::uint64_t epoch) const;
  /// What the device printed on its console in an epoch, traced through the
  /// seccomp listener (a write(2)/writev(2) to a terminal on its descriptor
  /// 1 or 2): one record a line, "L OPS TEXT", OPS being the operations
  /// recorded in the epoch when the line ended (a line's first 512 bytes,
  /// without its "\r\n"); "M OPS" for each mark_console(); "T" when the
  /// epoch's 4 MiB are used up and the rest is not traced.
  std::filesystem::path console_file(std::uint64_t epoch) const;
  /// Appends a mark to the current epoch's console trace: the rig is about
  /// to send the device an update command (the lines before it are the
  /// boot's).
  void mark_console();

  /// Unmounts (lazily, inside the namespace), ends the daemon (SIGKILL
  /// after stop_timeout), reaps it, closes the namespace descriptor and
  /// removes a temporary log_dir. Idempotent.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Joins the mount namespace `ns_fd` (setns(CLONE_NEWNS)): for a forked
/// child before exec, which must be single-threaded and then chdir to its
/// working folder again (setns moves it to the namespace's root).
/// Async-signal-safe. Returns 0 or the errno.
int enter_mount_namespace(int ns_fd) noexcept;

/// Installs in the calling process (a forked child before exec: it must be
/// single-threaded) a seccomp filter that turns sync(2) and syncfs(2) of
/// the native architecture, and write(2) and writev(2) on descriptors 1 and
/// 2 (the console, Recorder::console_file), into user notifications and
/// allows everything else; every descendant inherits it. Returns the listener (close-on-exec)
/// for Recorder::watch_syncs, or -errno: EINVAL or ENOSYS where the kernel
/// has no seccomp user notification (before Linux 5.5), EBUSY when a filter
/// of the process already has a listener (a container runtime's
/// supervisor), ENOTSUP on an architecture the filter does not know.
/// Without CAP_SYS_ADMIN it sets no_new_privs first, as the kernel requires.
/// Async-signal-safe.
int install_sync_filter() noexcept;

}  // namespace otarig::drivers::storage
