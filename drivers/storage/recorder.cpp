// The recording FUSE layer: a libfuse3 passthrough daemon in a mount
// namespace of its own. See recorder.hpp.
#define FUSE_USE_VERSION 312
#include "otarig/drivers/storage/recorder.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <fuse.h>
#include <fuse_lowlevel.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <condition_variable>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "otarig/core/errors.hpp"
#include "otarig/core/fd_passing.hpp"

namespace otarig::drivers::storage {

namespace {

std::string errno_text(int err) { return std::strerror(err); }

// ---- the daemon (child process) ------------------------------------------

struct DirHandle {
  Handle h;
  DIR* dp = nullptr;
};

// A device's seccomp listener (install_sync_filter) and the epoch it was
// started in.
struct SyncListener {
  int fd = -1;
  std::uint64_t epoch = 0;
};

// What the device prints on its console (a terminal on its descriptor 1 or
// 2, seen through the seccomp filter), line by line, each with the number of
// storage operations recorded when the line ended: "L OPS TEXT" per line and
// "M OPS" per mark of the rig, in epoch-N.console. A device that prints and
// then writes in one thread has printed the line before the operations that
// follow it, on any host: cuts planned "k operations after a console line"
// come from this file.
struct ConsoleTrace {
  static constexpr std::size_t line_max = 512;            // bytes kept of a line
  static constexpr std::uint64_t file_max = 4ULL << 20;  // bytes of an epoch's file
  int fd = -1;
  std::string partial;
  std::uint64_t written = 0;
  bool full = false;

  void open(const std::filesystem::path& file) {
    if (fd >= 0) ::close(fd);
    fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    partial.clear();
    written = 0;
    full = false;
  }
  void put(const std::string& record) {
    if (fd < 0 || full) return;
    if (written + record.size() > file_max) {
      full = true;
      const std::string note = "T\n";  // the rest of the epoch's console is not traced
      (void)!::write(fd, note.data(), note.size());
      return;
    }
    if (::write(fd, record.data(), record.size()) == static_cast<ssize_t>(record.size())) written += record.size();
  }
  void bytes(std::string_view data, std::uint64_t ops) {
    for (char c : data) {
      if (c == '\n') {
        if (!partial.empty() && partial.back() == '\r') partial.pop_back();
        put("L " + std::to_string(ops) + " " + partial + "\n");
        partial.clear();
      } else if (partial.size() < line_max) {
        partial += c;
      }
    }
  }
  void mark(std::uint64_t ops) { put("M " + std::to_string(ops) + "\n"); }
};

struct Daemon {
  RecordingFolder* folder = nullptr;
  std::string mount_point;
  std::filesystem::path log_dir;
  // The epoch switch and a seccomp-seen sync are serialised by epoch_mu, so
  // a sync is recorded in the epoch of the device that made it or not at all.
  std::mutex epoch_mu;
  std::uint64_t epoch = 1;
  RecordingOptions options;
  struct fuse* fuse = nullptr;
  // The layer's mount id in the daemon's (and the device's) namespace: a
  // syncfs(2) whose descriptor is on this mount syncs the storage.
  int layer_mnt_id = -1;
  ConsoleTrace console;
};

Daemon* daemon_of() { return static_cast<Daemon*>(fuse_get_context()->private_data); }
RecordingFolder& folder() { return *daemon_of()->folder; }
std::string_view p(const char* path) { return path != nullptr ? std::string_view(path) : std::string_view(); }
Handle& handle(fuse_file_info* fi) { return *reinterpret_cast<Handle*>(fi->fh); }
DirHandle& dir_handle(fuse_file_info* fi) { return *reinterpret_cast<DirHandle*>(fi->fh); }
std::string rel(const char* path) { return RecordingFolder::relative(p(path)); }

void* op_init(fuse_conn_info* conn, fuse_config* cfg) {
  cfg->use_ino = 1;
  cfg->hard_remove = 1;  // unlink is unlink (no .fuse_hidden files)
  // Operations on an open file get its current path; one unlinked while
  // open gets none and is recorded by its inode.
  cfg->nullpath_ok = 0;
  cfg->direct_io = 0;
  cfg->kernel_cache = 0;  // a crash state put into the backing folder is read afresh at the next open
  cfg->auto_cache = 0;
  cfg->entry_timeout = 0;
  cfg->attr_timeout = 0;
  cfg->negative_timeout = 0;
  conn->want &= ~static_cast<unsigned>(FUSE_CAP_WRITEBACK_CACHE);  // every write reaches the layer at once
  return fuse_get_context()->private_data;
}

int op_getattr(const char* path, struct stat* st, fuse_file_info* fi) {
  int rc = fi != nullptr ? ::fstat(handle(fi).fd, st)
                         : ::fstatat(folder().backing_fd(), rel(path).c_str(), st, AT_SYMLINK_NOFOLLOW);
  return rc == 0 ? 0 : -errno;
}

int op_readlink(const char* path, char* buf, size_t size) {
  ssize_t n = ::readlinkat(folder().backing_fd(), rel(path).c_str(), buf, size - 1);
  if (n < 0) return -errno;
  buf[n] = '\0';
  return 0;
}

int op_mknod(const char* path, mode_t mode, dev_t rdev) { return folder().mknod(p(path), mode, rdev); }
int op_mkdir(const char* path, mode_t mode) { return folder().mkdir(p(path), mode); }
int op_unlink(const char* path) { return folder().unlink(p(path)); }
int op_rmdir(const char* path) { return folder().rmdir(p(path)); }
int op_symlink(const char* target, const char* link) { return folder().symlink(p(target), p(link)); }
int op_rename(const char* from, const char* to, unsigned flags) { return folder().rename(p(from), p(to), flags); }
int op_link(const char* from, const char* to) { return folder().link(p(from), p(to)); }

int op_chmod(const char* path, mode_t mode, fuse_file_info* fi) {
  return folder().chmod(p(path), mode, fi != nullptr ? &handle(fi) : nullptr);
}

// Ownership and times pass through unrecorded (docs/crash-model.md).
int op_chown(const char* path, uid_t uid, gid_t gid, fuse_file_info* fi) {
  int rc = fi != nullptr ? ::fchown(handle(fi).fd, uid, gid)
                         : ::fchownat(folder().backing_fd(), rel(path).c_str(), uid, gid, AT_SYMLINK_NOFOLLOW);
  return rc == 0 ? 0 : -errno;
}

int op_utimens(const char* path, const struct timespec tv[2], fuse_file_info* fi) {
  int rc = fi != nullptr ? ::futimens(handle(fi).fd, tv)
                         : ::utimensat(folder().backing_fd(), rel(path).c_str(), tv, AT_SYMLINK_NOFOLLOW);
  return rc == 0 ? 0 : -errno;
}

int op_truncate(const char* path, off_t size, fuse_file_info* fi) {
  return folder().truncate(p(path), size, fi != nullptr ? &handle(fi) : nullptr);
}

// Opens (or creates) through the recording folder and hands the handle to
// the kernel's file: released in op_release. The page cache is not kept, so
// the device reads what a crash state left.
template <class OpenFn>
int open_handle(fuse_file_info* fi, OpenFn&& open) {
  auto h = std::make_unique<Handle>();
  if (int rc = open(*h); rc != 0) return rc;
  fi->fh = reinterpret_cast<std::uint64_t>(h.release());
  fi->direct_io = 0;
  fi->keep_cache = 0;
  return 0;
}

int op_open(const char* path, fuse_file_info* fi) {
  return open_handle(fi, [&](Handle& h) { return folder().open(p(path), fi->flags, h); });
}

int op_create(const char* path, mode_t mode, fuse_file_info* fi) {
  return open_handle(fi, [&](Handle& h) { return folder().create(p(path), fi->flags, mode, h); });
}

int op_read(const char*, char* buf, size_t size, off_t offset, fuse_file_info* fi) {
  ssize_t n = ::pread(handle(fi).fd, buf, size, offset);
  return n < 0 ? -errno : static_cast<int>(n);
}

int op_write(const char* path, const char* buf, size_t size, off_t offset, fuse_file_info* fi) {
  ssize_t n = folder().write(handle(fi), p(path), std::string_view(buf, size), offset);
  return static_cast<int>(n);
}

int op_statfs(const char*, struct statvfs* st) { return ::fstatvfs(folder().backing_fd(), st) == 0 ? 0 : -errno; }

int op_flush(const char*, fuse_file_info*) { return 0; }

int op_release(const char*, fuse_file_info* fi) {
  Handle* h = reinterpret_cast<Handle*>(fi->fh);
  folder().close(*h);
  delete h;
  return 0;
}

int op_fsync(const char* path, int datasync, fuse_file_info* fi) {
  return folder().fsync(handle(fi), p(path), datasync != 0);
}

int op_opendir(const char* path, fuse_file_info* fi) {
  auto* d = new DirHandle;
  int rc = folder().opendir(p(path), d->h);
  if (rc != 0) {
    delete d;
    return rc;
  }
  int fd2 = ::dup(d->h.fd);
  d->dp = fd2 >= 0 ? ::fdopendir(fd2) : nullptr;
  if (d->dp == nullptr) {
    int err = errno;
    if (fd2 >= 0) ::close(fd2);
    folder().close(d->h);
    delete d;
    return -err;
  }
  fi->fh = reinterpret_cast<std::uint64_t>(d);
  return 0;
}

int op_readdir(const char*, void* buf, fuse_fill_dir_t filler, off_t, fuse_file_info* fi, fuse_readdir_flags) {
  DirHandle& d = dir_handle(fi);
  ::rewinddir(d.dp);
  while (dirent* e = ::readdir(d.dp)) {
    struct stat st {};
    st.st_ino = e->d_ino;
    st.st_mode = static_cast<mode_t>(DTTOIF(e->d_type));
    if (filler(buf, e->d_name, &st, 0, static_cast<fuse_fill_dir_flags>(0)) != 0) break;
  }
  return 0;
}

int op_releasedir(const char*, fuse_file_info* fi) {
  DirHandle* d = reinterpret_cast<DirHandle*>(fi->fh);
  ::closedir(d->dp);
  folder().close(d->h);
  delete d;
  return 0;
}

int op_fsyncdir(const char* path, int, fuse_file_info* fi) {
  return folder().fsync_dir(path != nullptr ? p(path) : std::string_view("/"), fi != nullptr ? &dir_handle(fi).h : nullptr);
}

int op_access(const char* path, int mask) {
  return ::faccessat(folder().backing_fd(), rel(path).c_str(), mask, 0) == 0 ? 0 : -errno;
}

int op_fallocate(const char* path, int mode, off_t offset, off_t length, fuse_file_info* fi) {
  if (fi == nullptr) return -EOPNOTSUPP;
  return folder().fallocate(handle(fi), p(path), mode, offset, length);
}

ssize_t op_copy_file_range(const char*, fuse_file_info* fi_in, off_t off_in, const char* path_out,
                           fuse_file_info* fi_out, off_t off_out, size_t len, int flags) {
  return folder().copy_file_range(handle(fi_in), off_in, handle(fi_out), p(path_out), off_out, len,
                                  static_cast<unsigned>(flags));
}

off_t op_lseek(const char*, off_t off, int whence, fuse_file_info* fi) {
  off_t r = ::lseek(handle(fi).fd, off, whence);
  return r < 0 ? -errno : r;
}

fuse_operations make_ops() {
  fuse_operations ops{};
  ops.init = op_init;
  ops.getattr = op_getattr;
  ops.readlink = op_readlink;
  ops.mknod = op_mknod;
  ops.mkdir = op_mkdir;
  ops.unlink = op_unlink;
  ops.rmdir = op_rmdir;
  ops.symlink = op_symlink;
  ops.rename = op_rename;
  ops.link = op_link;
  ops.chmod = op_chmod;
  ops.chown = op_chown;
  ops.truncate = op_truncate;
  ops.open = op_open;
  ops.read = op_read;
  ops.write = op_write;
  ops.statfs = op_statfs;
  ops.flush = op_flush;
  ops.release = op_release;
  ops.fsync = op_fsync;
  ops.opendir = op_opendir;
  ops.readdir = op_readdir;
  ops.releasedir = op_releasedir;
  ops.fsyncdir = op_fsyncdir;
  ops.access = op_access;
  ops.create = op_create;
  ops.utimens = op_utimens;
  ops.fallocate = op_fallocate;
  ops.copy_file_range = op_copy_file_range;
  ops.lseek = op_lseek;
  return ops;
}

// Control messages (SOCK_SEQPACKET, one message each).
void send_msg(int fd, const std::string& msg) {
  while (::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL) < 0 && errno == EINTR) {
  }
}

std::optional<std::string> recv_msg(int fd, int timeout_ms) {
  if (timeout_ms >= 0) {
    pollfd pfd{fd, POLLIN, 0};
    int rc;
    do rc = ::poll(&pfd, 1, timeout_ms);
    while (rc < 0 && errno == EINTR);
    if (rc <= 0) return std::nullopt;
  }
  char buf[4096];
  ssize_t n;
  do n = ::recv(fd, buf, sizeof buf, 0);
  while (n < 0 && errno == EINTR);
  if (n <= 0) return std::nullopt;
  return std::string(buf, static_cast<std::size_t>(n));
}

// A message that may carry one descriptor (SCM_RIGHTS): `passed` gets it
// (close-on-exec), or -1.
std::optional<std::string> recv_msg_with_fd(int fd, int& passed) {
  char buf[4096];
  UniqueFd got;
  const ssize_t n = receive_with_fd(fd, buf, sizeof buf, got);
  passed = got.release();
  if (n <= 0) return std::nullopt;
  return std::string(buf, static_cast<std::size_t>(n));
}

bool send_msg_with_fd(int fd, const std::string& msg, int passed) {
  return send_with_fd(fd, msg.data(), msg.size(), passed) == static_cast<ssize_t>(msg.size());
}

// ---- sync(2) and syncfs(2) through seccomp --------------------------------

// The mount id of the last FUSE mount of this layer at `mount_point` in the
// calling process's namespace (/proc/self/mountinfo), or -1.
int layer_mount_id(const std::string& mount_point) {
  char resolved[PATH_MAX];
  const std::string where = ::realpath(mount_point.c_str(), resolved) != nullptr ? resolved : mount_point;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  int found = -1;
  while (std::getline(in, line)) {
    // ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS
    std::istringstream fields(line);
    std::string id, parent, dev, root, point;
    fields >> id >> parent >> dev >> root >> point;
    const auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream tail(line.substr(dash + 3));
    std::string fstype;
    tail >> fstype;
    // Octal escapes (\040 for a space) in the mount point.
    std::string unescaped;
    for (std::size_t i = 0; i < point.size(); ++i) {
      if (point[i] == '\\' && i + 3 < point.size()) {
        unescaped += static_cast<char>(std::stoi(point.substr(i + 1, 3), nullptr, 8));
        i += 3;
      } else {
        unescaped += point[i];
      }
    }
    if (fstype == "fuse.otarig" && unescaped == where) found = std::stoi(id);
  }
  return found;
}

// The mount id of the file `fd` of process `pid` (/proc/PID/fdinfo/FD), or -1.
int mount_id_of(pid_t pid, std::uint64_t fd) {
  if (fd > static_cast<std::uint64_t>(INT32_MAX)) return -1;
  std::ifstream in("/proc/" + std::to_string(pid) + "/fdinfo/" + std::to_string(fd));
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("mnt_id:", 0) == 0) return std::atoi(line.c_str() + 7);
  return -1;
}

// Whether descriptor `fd` of `pid` is a terminal: the device's console (its
// children's pipes to it are not).
bool is_console(pid_t pid, std::uint64_t fd) {
  char target[128];
  const std::string link = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
  const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
  if (n <= 0) return false;
  const std::string_view t(target, static_cast<std::size_t>(n));
  return t.starts_with("/dev/pts/") || t.starts_with("/dev/tty") || t == "/dev/console";
}

// The bytes a write(2) or writev(2) of `pid` is about to write (at most
// 64 KiB: a line is kept to its first 512 bytes anyway).
std::string bytes_written(pid_t pid, const seccomp_data& call) {
  constexpr std::size_t cap = 64 * 1024;
  std::vector<iovec> remote;
  if (call.nr == __NR_write) {
    remote.push_back(iovec{reinterpret_cast<void*>(call.args[1]), std::min<std::size_t>(call.args[2], cap)});
  } else {
    const std::size_t count = std::min<std::uint64_t>(call.args[2], 64);
    std::vector<iovec> iov(count);
    iovec local{iov.data(), count * sizeof(iovec)};
    iovec from{reinterpret_cast<void*>(call.args[1]), count * sizeof(iovec)};
    if (count == 0 || ::process_vm_readv(pid, &local, 1, &from, 1, 0) != static_cast<ssize_t>(local.iov_len))
      return {};
    std::size_t total = 0;
    for (auto& v : iov) {
      v.iov_len = std::min(v.iov_len, cap - total);
      total += v.iov_len;
      if (v.iov_len) remote.push_back(v);
    }
  }
  std::size_t total = 0;
  for (const auto& v : remote) total += v.iov_len;
  std::string out(total, '\0');
  if (total == 0) return out;
  iovec local{out.data(), total};
  const ssize_t n = ::process_vm_readv(pid, &local, 1, remote.data(), remote.size(), 0);
  out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  return out;
}

// A write of the device to its console: traced with the operations so far,
// then let run.
void answer_console(Daemon& d, const SyncListener& l, const seccomp_notif& req) {
  const auto pid = static_cast<pid_t>(req.pid);
  if (l.epoch == d.epoch && is_console(pid, req.data.args[0])) {
    const auto text = bytes_written(pid, req.data);
    // Read before the id is checked: a caller killed meanwhile (and its pid
    // reused) fails the check, and what was read is not traced.
    if (::ioctl(l.fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &req.id) == 0) d.console.bytes(text, d.folder->op_count());
  }
  seccomp_notif_resp resp;
  std::memset(&resp, 0, sizeof resp);
  resp.id = req.id;
  resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
  ::ioctl(l.fd, SECCOMP_IOCTL_NOTIF_SEND, &resp);
}

// Answers one notification of `l`: a console write is traced; a sync
// records a `sync` barrier when the call syncs the storage and its caller
// still waits in the epoch `l` belongs to. Then the call runs.
void answer_call(Daemon& d, const SyncListener& l) {
  seccomp_notif req;
  std::memset(&req, 0, sizeof req);
  // ENOENT: the caller was killed between the wakeup and now.
  if (::ioctl(l.fd, SECCOMP_IOCTL_NOTIF_RECV, &req) != 0) return;
  if (req.data.nr == __NR_write || req.data.nr == __NR_writev) {
    answer_console(d, l, req);
    return;
  }
  std::uint8_t flags = op_flag_seccomp;
  bool barrier = false;
  if (req.data.nr == __NR_sync) {
    barrier = true;
  } else if (req.data.nr == __NR_syncfs) {
    flags |= op_flag_syncfs;
    // The descriptor is read before the id is checked below: if the caller
    // died and its pid was reused in between, the check fails.
    barrier = d.layer_mnt_id >= 0 && mount_id_of(static_cast<pid_t>(req.pid), req.data.args[0]) == d.layer_mnt_id;
  }
  seccomp_notif_resp resp;
  std::memset(&resp, 0, sizeof resp);
  resp.id = req.id;
  resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
  if (barrier) {
    std::lock_guard lock(d.epoch_mu);
    // Still waiting (not killed by a power-off), and in this epoch: every
    // write it made before the call has been answered, so is in the log.
    if (l.epoch == d.epoch && ::ioctl(l.fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &req.id) == 0) {
      int rc = -EIO;
      try {
        rc = d.folder->sync(flags);
      } catch (const std::exception&) {
      }
      if (rc != 0) {
        // Not recorded: the call fails rather than pass unrecorded.
        resp.flags = 0;
        resp.error = rc;
      } else if (!d.options.apply_barriers) {
        // As the layer's fsync: the rig models the device's power, not its
        // own host's, so the call is answered done without flushing the
        // host's disks (a real sync(2) takes the whole host's dirty pages
        // with it, ~0.1 s on a busy machine, per flash operation).
        resp.flags = 0;
        resp.val = 0;
      }
    }
  }
  // ENOENT: the caller was killed meanwhile.
  ::ioctl(l.fd, SECCOMP_IOCTL_NOTIF_SEND, &resp);
}

std::filesystem::path epoch_entries(const std::filesystem::path& dir, std::uint64_t e) {
  return dir / ("epoch-" + std::to_string(e) + ".ops");
}
std::filesystem::path epoch_data(const std::filesystem::path& dir, std::uint64_t e) {
  return dir / ("epoch-" + std::to_string(e) + ".data");
}
std::filesystem::path epoch_console(const std::filesystem::path& dir, std::uint64_t e) {
  return dir / ("epoch-" + std::to_string(e) + ".console");
}

// One request of the rig: epochs, counts, a device's sync listener. False
// for a stop, or end of file (the rig is gone).
bool handle_control(Daemon& d, int sock, std::vector<SyncListener>& listeners) {
  int passed = -1;
  auto msg = recv_msg_with_fd(sock, passed);
  if (!msg || *msg == "stop") {
    if (passed >= 0) ::close(passed);
    return false;
  }
  try {
    if (*msg == "sync-listener") {
      if (passed < 0) {
        send_msg(sock, "error no listener came with the request");
        return true;
      }
      // A device's listener replaces those of earlier epochs (devices gone).
      std::vector<SyncListener> current;
      for (const auto& l : listeners) {
        if (l.epoch < d.epoch)
          ::close(l.fd);
        else
          current.push_back(l);
      }
      current.push_back(SyncListener{passed, d.epoch});
      listeners = std::move(current);
      send_msg(sock, "ok");
      return true;
    }
    if (passed >= 0) ::close(passed);
    if (*msg == "epoch") {
      std::lock_guard lock(d.epoch_mu);
      std::uint64_t next = d.epoch + 1;
      OpLog log = OpLog::streaming(epoch_entries(d.log_dir, next), epoch_data(d.log_dir, next), false);
      d.folder->replace_log(std::move(log));
      d.epoch = next;
      d.console.open(epoch_console(d.log_dir, next));
      send_msg(sock, "ok " + std::to_string(next));
    } else if (*msg == "mark") {
      d.console.mark(d.folder->op_count());
      send_msg(sock, "ok");
    } else if (*msg == "count") {
      send_msg(sock, "ok " + std::to_string(d.epoch) + " " + std::to_string(d.folder->op_count()));
    } else {
      send_msg(sock, "error unknown request");
    }
  } catch (const std::exception& e) {
    send_msg(sock, std::string("error ") + e.what());
  }
  return true;
}

// The daemon's one thread serves the device's storage (FUSE requests), the
// devices' sync(2)/syncfs(2) calls (seccomp notifications) and the rig's
// requests, whichever is ready. No thread is started after the fork: the
// daemon is forked from a rig with many threads, and a new thread can hang
// on a lock another thread of the rig held at the fork (the sanitizers'
// runtimes keep such locks).
void serve(Daemon& d, int sock) {
  fuse_session* se = fuse_get_session(d.fuse);
  const int fuse_fd = fuse_session_fd(se);
  std::vector<SyncListener> listeners;
  fuse_buf buf{};
  std::vector<pollfd> fds;
  bool rig_here = true;
  while (rig_here && !fuse_session_exited(se)) {
    fds.assign({pollfd{fuse_fd, POLLIN, 0}, pollfd{sock, POLLIN, 0}});
    for (const auto& l : listeners) fds.push_back(pollfd{l.fd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    std::vector<SyncListener> keep;
    for (std::size_t i = 0; i < listeners.size(); ++i) {
      const short ev = fds[i + 2].revents;
      if (ev & POLLIN) answer_call(d, listeners[i]);
      // POLLHUP: the filter has no task left.
      if ((ev & (POLLHUP | POLLERR | POLLNVAL)) && !(ev & POLLIN))
        ::close(listeners[i].fd);
      else
        keep.push_back(listeners[i]);
    }
    listeners = std::move(keep);
    if (fds[0].revents & POLLIN) {
      const int n = fuse_session_receive_buf(se, &buf);
      if (n == -EINTR || n == -EAGAIN || n == -ENOENT) continue;  // nothing there (any more)
      if (n <= 0) break;  // unmounted
      fuse_session_process_buf(se, &buf);
    } else if (fds[0].revents & (POLLHUP | POLLERR | POLLNVAL)) {
      break;
    }
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) rig_here = handle_control(d, sock, listeners);
  }
  for (const auto& l : listeners) ::close(l.fd);
  std::free(buf.mem);
}

struct ChildSpec {
  std::string backing, mount_point, log_dir;
  RecordingOptions options;
  pid_t parent = 0;
};

[[noreturn]] void daemon_main(const ChildSpec& spec, int sock) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != spec.parent) ::_exit(1);
  // Keep only the control socket (as 3) and the standard descriptors: the
  // daemon must not hold the rig's ptys, pipes and sockets open.
  if (sock != 3) {
    ::dup2(sock, 3);
    sock = 3;
  }
  ::close_range(4, ~0U, 0);
  sigset_t all;
  sigemptyset(&all);
  ::sigprocmask(SIG_SETMASK, &all, nullptr);
  ::umask(0);
  auto fail = [&](const std::string& why) {
    send_msg(sock, "error " + why);
    ::_exit(1);
  };
  if (::unshare(CLONE_NEWNS) != 0) fail("unshare(CLONE_NEWNS): " + errno_text(errno));
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    fail("making mounts private: " + errno_text(errno));

  Daemon d;
  d.mount_point = spec.mount_point;
  d.log_dir = spec.log_dir;
  d.options = spec.options;
  std::optional<RecordingFolder> folder;
  try {
    folder.emplace(spec.backing, OpLog::streaming(epoch_entries(d.log_dir, 1), epoch_data(d.log_dir, 1), false),
                   spec.options);
  } catch (const std::exception& e) {
    fail(e.what());
  }
  d.folder = &*folder;
  d.console.open(epoch_console(d.log_dir, 1));

  // libfuse reports why a mount failed on stderr: catch it for the message.
  int captured = ::memfd_create("otarig-fuse-stderr", MFD_CLOEXEC);
  int saved_stderr = ::dup(2);
  if (captured >= 0) ::dup2(captured, 2);
  auto restore_stderr = [&]() -> std::string {
    std::string text;
    if (captured >= 0) {
      ::dup2(saved_stderr, 2);
      char buf[1024];
      ssize_t n = ::pread(captured, buf, sizeof buf - 1, 0);
      if (n > 0) text.assign(buf, static_cast<std::size_t>(n));
      while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    }
    return text;
  };

  std::string fsname = "fsname=otarig-storage:" + spec.backing;
  std::vector<std::string> args_text{"otarig-storage", "-o", fsname, "-o", "allow_other", "-o", "subtype=otarig"};
  std::vector<char*> argv;
  for (auto& a : args_text) argv.push_back(a.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  fuse_operations ops = make_ops();
  d.fuse = fuse_new(&args, &ops, sizeof ops, &d);
  if (d.fuse == nullptr) fail("fuse_new failed: " + restore_stderr());
  if (fuse_mount(d.fuse, spec.mount_point.c_str()) != 0) {
    std::string why = restore_stderr();
    fail("mount failed" + (why.empty() ? std::string() : ": " + why));
  }
  restore_stderr();
  d.layer_mnt_id = layer_mount_id(spec.mount_point);
  // serve() reads /dev/fuse without blocking: a request poll() saw can be
  // gone by the read (its caller, the device, killed by a power-off before
  // the kernel handed it over), and a blocking read would then wait for a
  // request that never comes, and the rig's requests with it.
  const int fuse_fd = fuse_session_fd(fuse_get_session(d.fuse));
  if (const int fl = ::fcntl(fuse_fd, F_GETFL); fl < 0 || ::fcntl(fuse_fd, F_SETFL, fl | O_NONBLOCK) != 0)
    fail("/dev/fuse: O_NONBLOCK: " + errno_text(errno));
  send_msg(sock, "ok");

  serve(d, sock);
  // Unmount inside the namespace. A device still holding files open keeps
  // the connection; its calls fail once the daemon is gone.
  ::umount2(d.mount_point.c_str(), MNT_DETACH);
  fuse_unmount(d.fuse);
  fuse_destroy(d.fuse);
  ::_exit(0);
}

}  // namespace

int enter_mount_namespace(int ns_fd) noexcept { return ::setns(ns_fd, CLONE_NEWNS) == 0 ? 0 : errno; }

int install_sync_filter() noexcept {
#if defined(__x86_64__)
  constexpr std::uint32_t arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
  constexpr std::uint32_t arch = AUDIT_ARCH_AARCH64;
#elif defined(__i386__)
  constexpr std::uint32_t arch = AUDIT_ARCH_I386;
#elif defined(__arm__) && defined(__ARMEL__)
  constexpr std::uint32_t arch = AUDIT_ARCH_ARM;
#elif defined(__riscv) && __riscv_xlen == 64
  constexpr std::uint32_t arch = AUDIT_ARCH_RISCV64;
#else
  constexpr std::uint32_t arch = 0;
#endif
  if constexpr (arch == 0) return -ENOTSUP;
  // Another architecture's numbers mean other calls (a 32-bit program on a
  // 64-bit kernel): they pass unseen. On x86-64, x32 calls carry the x32
  // bit in their number and pass unseen too.
  // write(2) and writev(2) on descriptors 1 and 2 come too: the daemon
  // traces what the device prints on its console, in order with its storage
  // operations. The architectures above are little-endian: the first word
  // of an argument is its low half.
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__);
  constexpr std::uint32_t arg0_low = offsetof(seccomp_data, args[0]);
  constexpr std::uint32_t arg0_high = offsetof(seccomp_data, args[0]) + 4;
  sock_filter filter[] = {
      /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 1, 0),
      /* 2 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      /* 3 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      /* 4 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_sync, 10, 0),
      /* 5 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_syncfs, 9, 0),
      /* 6 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_write, 2, 0),
      /* 7 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_writev, 1, 0),
      /* 8 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      /* 9 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, arg0_low),
      /* 10 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 1, 1, 0),
      /* 11 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 2, 0, 2),
      /* 12 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, arg0_high),
      /* 13 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0),
      /* 14 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      /* 15 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  long fd = ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
  if (fd < 0 && errno == EACCES) {
    // Without CAP_SYS_ADMIN the kernel takes a filter only under no_new_privs.
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -errno;
    fd = ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
  }
  return fd >= 0 ? static_cast<int>(fd) : -errno;
}

// ---- the rig's side -------------------------------------------------------

struct Recorder::Impl {
  std::filesystem::path backing, mount_point, log_dir;
  bool own_log_dir = false;
  RecorderOptions options;
  int sock = -1;
  int ns_fd = -1;
  pid_t pid = 0;
  std::uint64_t epoch = 1;
  std::mutex mu;  // one request at a time
  std::thread keeper;
  std::mutex done_mu;
  std::condition_variable done_cv;
  bool done = false;
  bool stopped = false;

  std::string request(const std::string& msg) {
    std::lock_guard lock(mu);
    if (stopped) throw BenchError("storage recorder on " + mount_point.string() + ": stopped");
    send_msg(sock, msg);
    auto reply = recv_msg(sock, static_cast<int>(options.answer_timeout.count()));
    if (!reply)
      throw BenchError("storage recorder on " + mount_point.string() + ": the FUSE daemon does not answer '" + msg +
                       "' within " + std::to_string(options.answer_timeout.count() / 1000) + " s");
    if (reply->rfind("ok", 0) != 0)
      throw BenchError("storage recorder on " + mount_point.string() + ": " + reply->substr(reply->find(' ') + 1));
    return reply->size() > 3 ? reply->substr(3) : std::string();
  }

  void stop() {
    {
      std::lock_guard lock(mu);
      if (stopped) return;
      stopped = true;
      if (sock >= 0) send_msg(sock, "stop");
    }
    if (keeper.joinable()) {
      std::unique_lock lock(done_mu);
      if (!done_cv.wait_for(lock, options.stop_timeout, [&] { return done; }) && pid > 0) ::kill(pid, SIGKILL);
      lock.unlock();
      keeper.join();
    }
    if (sock >= 0) ::close(sock);
    if (ns_fd >= 0) ::close(ns_fd);
    sock = ns_fd = -1;
    if (own_log_dir) {
      std::error_code ec;
      std::filesystem::remove_all(log_dir, ec);
    }
  }
};

Recorder Recorder::start(const std::filesystem::path& backing_dir, const std::filesystem::path& mount_point,
                         RecorderOptions options) {
  const std::string where = "storage recorder on " + mount_point.string();
  if (::geteuid() != 0) throw BenchError(where + ": a FUSE mount in a private namespace needs root");
  int probe = ::open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (probe < 0) throw BenchError(where + ": /dev/fuse: " + errno_text(errno));
  ::close(probe);
  struct stat st {};
  if (::stat(mount_point.c_str(), &st) != 0)
    throw BenchError(where + ": mount point " + mount_point.string() + ": " + errno_text(errno));
  if (!S_ISDIR(st.st_mode)) throw BenchError(where + ": mount point " + mount_point.string() + " is not a folder");
  if (::stat(backing_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw BenchError(where + ": backing folder " + backing_dir.string() + ": " +
                     (S_ISDIR(st.st_mode) ? errno_text(errno) : "not a folder"));

  Recorder r;
  r.impl_ = std::make_unique<Impl>();
  Impl& im = *r.impl_;
  im.backing = std::filesystem::absolute(backing_dir);
  im.mount_point = std::filesystem::absolute(mount_point);
  im.options = options;
  if (options.log_dir.empty()) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "otarig-storage-log.XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw BenchError(where + ": log folder: " + errno_text(errno));
    im.log_dir = tmpl;
    im.own_log_dir = true;
  } else {
    im.log_dir = std::filesystem::absolute(options.log_dir);
    std::error_code ec;
    std::filesystem::create_directories(im.log_dir, ec);
    if (ec) throw BenchError(where + ": log folder " + im.log_dir.string() + ": " + ec.message());
  }

  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0)
    throw BenchError(where + ": socketpair: " + errno_text(errno));
  im.sock = pair[0];
  ChildSpec spec{im.backing.string(), im.mount_point.string(), im.log_dir.string(), options.recording, ::getpid()};

  // The keeper thread forks the daemon and reaps it: the parent-death
  // signal is tied to the thread that forked, and this one lives exactly as
  // long as the daemon.
  std::promise<pid_t> forked;
  auto forked_pid = forked.get_future();
  Impl* imp = &im;
  im.keeper = std::thread([imp, spec, child_sock = pair[1], forked = std::move(forked)]() mutable {
    pid_t pid = ::fork();
    if (pid == 0) daemon_main(spec, child_sock);
    ::close(child_sock);
    forked.set_value(pid);
    if (pid > 0) {
      int status = 0;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    }
    std::lock_guard lock(imp->done_mu);
    imp->done = true;
    imp->done_cv.notify_all();
  });
  im.pid = forked_pid.get();
  if (im.pid < 0) {
    int err = errno;
    im.stop();
    throw BenchError(where + ": fork: " + errno_text(err));
  }
  auto ready = recv_msg(im.sock, static_cast<int>(options.start_timeout.count()));
  if (!ready || *ready != "ok") {
    std::string why = !ready ? "the FUSE daemon did not start" : ready->substr(ready->find(' ') + 1);
    im.stop();
    throw BenchError(where + ": " + why);
  }
  const std::string ns = "/proc/" + std::to_string(im.pid) + "/ns/mnt";
  im.ns_fd = ::open(ns.c_str(), O_RDONLY | O_CLOEXEC);
  if (im.ns_fd < 0) {
    int err = errno;
    im.stop();
    throw BenchError(where + ": " + ns + ": " + errno_text(err));
  }
  return r;
}

Recorder::Recorder(Recorder&&) noexcept = default;
Recorder& Recorder::operator=(Recorder&& other) noexcept {
  if (this != &other) {
    if (impl_) impl_->stop();
    impl_ = std::move(other.impl_);
  }
  return *this;
}

Recorder::~Recorder() {
  if (!impl_) return;
  try {
    impl_->stop();
  } catch (...) {
  }
}

bool Recorder::running() const { return impl_ && !impl_->stopped; }
pid_t Recorder::daemon_pid() const { return impl_ ? impl_->pid : 0; }
int Recorder::mount_namespace_fd() const { return impl_ ? impl_->ns_fd : -1; }
const std::filesystem::path& Recorder::mount_point() const { return impl_->mount_point; }
const std::filesystem::path& Recorder::log_dir() const { return impl_->log_dir; }

std::uint64_t Recorder::begin_epoch() {
  impl_->epoch = std::stoull(impl_->request("epoch"));
  return impl_->epoch;
}

std::uint64_t Recorder::epoch() const { return impl_->epoch; }

void Recorder::watch_syncs(int listener) {
  Impl& im = *impl_;
  std::lock_guard lock(im.mu);
  const std::string where = "storage recorder on " + im.mount_point.string();
  if (im.stopped) throw BenchError(where + ": stopped");
  if (!send_msg_with_fd(im.sock, "sync-listener", listener))
    throw BenchError(where + ": cannot hand the device's sync listener to the FUSE daemon: " + errno_text(errno));
  auto reply = recv_msg(im.sock, static_cast<int>(im.options.answer_timeout.count()));
  if (!reply)
    throw BenchError(where + ": the FUSE daemon does not answer 'sync-listener' within " +
                     std::to_string(im.options.answer_timeout.count() / 1000) + " s");
  if (reply->rfind("ok", 0) != 0) throw BenchError(where + ": " + reply->substr(reply->find(' ') + 1));
}

std::uint64_t Recorder::op_count() {
  std::string reply = impl_->request("count");
  return std::stoull(reply.substr(reply.find(' ') + 1));
}

OpLog Recorder::take_log() {
  std::string reply = impl_->request("count");
  const std::uint64_t e = std::stoull(reply);
  const std::uint64_t n = std::stoull(reply.substr(reply.find(' ') + 1));
  // An epoch in which the device changed nothing may have no log files yet.
  if (n == 0 && !std::filesystem::exists(entries_file(e))) return OpLog(impl_->log_dir);
  try {
    return OpLog::load(entries_file(e), data_file(e), n);
  } catch (const std::exception& ex) {
    throw BenchError("storage recorder on " + impl_->mount_point.string() + ": " + ex.what());
  }
}

std::filesystem::path Recorder::entries_file(std::uint64_t e) const { return epoch_entries(impl_->log_dir, e); }
std::filesystem::path Recorder::data_file(std::uint64_t e) const { return epoch_data(impl_->log_dir, e); }
std::filesystem::path Recorder::console_file(std::uint64_t e) const { return epoch_console(impl_->log_dir, e); }

void Recorder::mark_console() { (void)impl_->request("mark"); }

void Recorder::stop() {
  if (impl_) impl_->stop();
}

}  // namespace otarig::drivers::storage
