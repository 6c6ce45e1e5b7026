// A storage folder whose mutations are applied to a backing directory and
// recorded in an operation log. See recording_folder.hpp.
#include "otarig/drivers/storage/recording_folder.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <utility>
#include <vector>

namespace otarig::drivers::storage {

namespace {

int neg_errno() { return -errno; }

std::uint8_t sync_flags_of(int flags) {
  if ((flags & O_SYNC) == O_SYNC) return op_flag_o_sync;
  if (flags & O_DSYNC) return op_flag_o_dsync;
  return 0;
}

// The inode a name refers to now (0 when it cannot be read): recorded with
// name operations so later operations through an open handle of the same
// file can be matched to it.
std::uint64_t ino_at(int dir, const std::string& rel) {
  struct stat st {};
  return ::fstatat(dir, rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 ? static_cast<std::uint64_t>(st.st_ino) : 0;
}

}  // namespace

RecordingFolder::RecordingFolder(const std::filesystem::path& backing, OpLog log, RecordingOptions options)
    : backing_(backing), options_(options), log_(std::move(log)) {
  dir_ = ::open(backing.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_ < 0) throw std::system_error(errno, std::generic_category(), "storage folder " + backing.string());
}

RecordingFolder::~RecordingFolder() {
  if (dir_ >= 0) ::close(dir_);
}

std::string RecordingFolder::relative(std::string_view path) {
  while (!path.empty() && path.front() == '/') path.remove_prefix(1);
  if (path.empty()) return ".";
  return std::string(path);
}

std::uint64_t RecordingFolder::record(Op op, std::span<const std::byte> data) {
  std::lock_guard lock(mu_);
  implied_ino_ = 0;
  return log_.append(std::move(op), data);
}

Op RecordingFolder::file_op(OpKind kind, std::string_view path, const Handle& h) const {
  Op op;
  op.kind = kind;
  op.path = std::string(path);
  op.ino = h.ino;
  if (path.empty()) op.flags |= op_flag_by_handle;
  return op;
}

int RecordingFolder::open(std::string_view path, int flags, Handle& out) {
  int backing_flags = flags | O_CLOEXEC;
  backing_flags &= ~(O_CREAT | O_EXCL);
  if (!options_.apply_barriers) backing_flags &= ~(O_SYNC | O_DSYNC);
  int fd = ::openat(dir_, relative(path).c_str(), backing_flags);
  if (fd < 0) return neg_errno();
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = neg_errno();
    ::close(fd);
    return err;
  }
  out = Handle{fd, static_cast<std::uint64_t>(st.st_ino), sync_flags_of(flags)};
  if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY && S_ISREG(st.st_mode)) {
    Op op = file_op(OpKind::truncate, path, out);
    op.offset = 0;
    record(std::move(op));
  }
  return 0;
}

int RecordingFolder::create(std::string_view path, int flags, mode_t mode, Handle& out) {
  int backing_flags = (flags | O_CLOEXEC | O_CREAT | O_EXCL) & ~O_TRUNC;
  if (!options_.apply_barriers) backing_flags &= ~(O_SYNC | O_DSYNC);
  const std::string rel = relative(path);
  int fd = ::openat(dir_, rel.c_str(), backing_flags, mode);
  if (fd < 0) {
    if (errno == EEXIST && !(flags & O_EXCL)) return open(path, flags & ~(O_CREAT | O_EXCL), out);
    return neg_errno();
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = neg_errno();
    ::close(fd);
    return err;
  }
  out = Handle{fd, static_cast<std::uint64_t>(st.st_ino), sync_flags_of(flags)};
  Op op = file_op(OpKind::create, path, out);
  op.mode = static_cast<std::uint32_t>(st.st_mode);
  record(std::move(op));
  return 0;
}

ssize_t RecordingFolder::write(Handle& h, std::string_view path, std::span<const std::byte> data, off_t offset) {
  ssize_t n = ::pwrite(h.fd, data.data(), data.size(), offset);
  if (n < 0) return neg_errno();
  Op op = file_op(OpKind::write, path, h);
  op.offset = static_cast<std::uint64_t>(offset);
  op.flags |= h.sync_flags;
  std::lock_guard lock(mu_);
  implied_ino_ = 0;
  log_.append(op, data.first(static_cast<std::size_t>(n)));
  if (h.sync_flags != 0) {
    Op barrier = file_op(h.sync_flags == op_flag_o_sync ? OpKind::fsync : OpKind::fdatasync, path, h);
    barrier.flags |= op_flag_implied;
    implied_index_ = log_.append(barrier);
    implied_ino_ = h.ino;
    implied_kind_ = barrier.kind;
  }
  return n;
}

ssize_t RecordingFolder::write(Handle& h, std::string_view path, std::string_view data, off_t offset) {
  return write(h, path, std::as_bytes(std::span(data.data(), data.size())), offset);
}

int RecordingFolder::truncate(std::string_view path, off_t size, const Handle* h) {
  Handle tmp;
  if (h != nullptr) {
    if (::ftruncate(h->fd, size) != 0) return neg_errno();
    tmp = *h;
  } else {
    int fd = ::openat(dir_, relative(path).c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return neg_errno();
    struct stat st {};
    ::fstat(fd, &st);
    int rc = ::ftruncate(fd, size);
    int err = errno;
    ::close(fd);
    if (rc != 0) return -err;
    tmp.ino = static_cast<std::uint64_t>(st.st_ino);
  }
  Op op = file_op(OpKind::truncate, path, tmp);
  op.offset = static_cast<std::uint64_t>(size);
  record(std::move(op));
  return 0;
}

int RecordingFolder::fallocate(Handle& h, std::string_view path, int mode, off_t offset, off_t length) {
  if (::fallocate(h.fd, mode, offset, length) != 0) return neg_errno();
  Op op = file_op(OpKind::fallocate, path, h);
  op.mode = static_cast<std::uint32_t>(mode);
  op.offset = static_cast<std::uint64_t>(offset);
  op.length = static_cast<std::uint64_t>(length);
  record(std::move(op));
  return 0;
}

int RecordingFolder::fsync(Handle& h, std::string_view path, bool datasync) {
  if (options_.apply_barriers && (datasync ? ::fdatasync(h.fd) : ::fsync(h.fd)) != 0) return neg_errno();
  const OpKind kind = datasync ? OpKind::fdatasync : OpKind::fsync;
  std::lock_guard lock(mu_);
  // The kernel follows a write through an O_SYNC/O_DSYNC file with an
  // fsync of its own; the layer has recorded that barrier already.
  if (implied_ino_ != 0 && implied_ino_ == h.ino && implied_index_ == log_.size() &&
      (implied_kind_ == OpKind::fsync || kind == OpKind::fdatasync))
    return 0;
  implied_ino_ = 0;
  log_.append(file_op(kind, path, h));
  return 0;
}

ssize_t RecordingFolder::copy_file_range(Handle& in, off_t in_offset, Handle& out, std::string_view out_path,
                                         off_t out_offset, std::size_t length, unsigned flags) {
  loff_t in_off = in_offset, out_off = out_offset;
  ssize_t n = ::copy_file_range(in.fd, &in_off, out.fd, &out_off, length, flags);
  if (n < 0) return neg_errno();
  // Recorded as writes of the bytes that landed, at most 1 MiB an entry.
  std::vector<std::byte> buf;
  std::size_t done = 0;
  while (done < static_cast<std::size_t>(n)) {
    std::size_t chunk = std::min<std::size_t>(static_cast<std::size_t>(n) - done, 1u << 20);
    buf.resize(chunk);
    ssize_t r = ::pread(out.fd, buf.data(), chunk, out_offset + static_cast<off_t>(done));
    if (r != static_cast<ssize_t>(chunk)) return r < 0 ? neg_errno() : -EIO;
    Op op = file_op(OpKind::write, out_path, out);
    op.offset = static_cast<std::uint64_t>(out_offset) + done;
    record(std::move(op), buf);
    done += chunk;
  }
  return n;
}

int RecordingFolder::close(Handle& h) {
  int rc = h.fd >= 0 ? ::close(h.fd) : 0;
  h.fd = -1;
  return rc == 0 ? 0 : neg_errno();
}

int RecordingFolder::opendir(std::string_view path, Handle& out) {
  int fd = ::openat(dir_, relative(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return neg_errno();
  struct stat st {};
  ::fstat(fd, &st);
  out = Handle{fd, static_cast<std::uint64_t>(st.st_ino), 0};
  return 0;
}

int RecordingFolder::fsync_dir(std::string_view path, const Handle* h) {
  if (options_.apply_barriers) {
    int fd = h != nullptr ? h->fd : ::openat(dir_, relative(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return neg_errno();
    int rc = ::fsync(fd);
    int err = errno;
    if (h == nullptr) ::close(fd);
    if (rc != 0) return -err;
  } else if (h == nullptr) {
    struct stat st {};
    if (::fstatat(dir_, relative(path).c_str(), &st, 0) != 0) return neg_errno();
    if (!S_ISDIR(st.st_mode)) return -ENOTDIR;
  }
  Op op;
  op.kind = OpKind::fsync_dir;
  op.path = path.empty() ? "/" : std::string(path);
  if (h != nullptr) op.ino = h->ino;
  record(std::move(op));
  return 0;
}

// Records a new directory entry as it now stands (mode and inode).
void RecordingFolder::record_new_entry(OpKind kind, std::string_view path, const std::string& rel) {
  struct stat st {};
  ::fstatat(dir_, rel.c_str(), &st, AT_SYMLINK_NOFOLLOW);
  Op op;
  op.kind = kind;
  op.path = std::string(path);
  op.mode = static_cast<std::uint32_t>(st.st_mode);
  op.ino = static_cast<std::uint64_t>(st.st_ino);
  record(std::move(op));
}

int RecordingFolder::mkdir(std::string_view path, mode_t mode) {
  const std::string rel = relative(path);
  if (::mkdirat(dir_, rel.c_str(), mode) != 0) return neg_errno();
  record_new_entry(OpKind::mkdir, path, rel);
  return 0;
}

int RecordingFolder::mknod(std::string_view path, mode_t mode, dev_t rdev) {
  const std::string rel = relative(path);
  if (::mknodat(dir_, rel.c_str(), mode, rdev) != 0) return neg_errno();
  record_new_entry(OpKind::create, path, rel);
  return 0;
}

int RecordingFolder::rmdir(std::string_view path) {
  if (::unlinkat(dir_, relative(path).c_str(), AT_REMOVEDIR) != 0) return neg_errno();
  Op op;
  op.kind = OpKind::rmdir;
  op.path = std::string(path);
  record(std::move(op));
  return 0;
}

int RecordingFolder::unlink(std::string_view path) {
  const std::uint64_t ino = ino_at(dir_, relative(path));
  if (::unlinkat(dir_, relative(path).c_str(), 0) != 0) return neg_errno();
  Op op;
  op.ino = ino;
  op.kind = OpKind::unlink;
  op.path = std::string(path);
  record(std::move(op));
  return 0;
}

int RecordingFolder::rename(std::string_view from, std::string_view to, unsigned flags) {
  const std::uint64_t ino = ino_at(dir_, relative(from));
  if (::renameat2(dir_, relative(from).c_str(), dir_, relative(to).c_str(), flags) != 0) return neg_errno();
  Op op;
  op.kind = OpKind::rename;
  op.path = std::string(from);
  op.path2 = std::string(to);
  op.rename_flags = flags;
  op.ino = ino;
  record(std::move(op));
  return 0;
}

int RecordingFolder::link(std::string_view existing, std::string_view new_path) {
  const std::uint64_t ino = ino_at(dir_, relative(existing));
  if (::linkat(dir_, relative(existing).c_str(), dir_, relative(new_path).c_str(), 0) != 0) return neg_errno();
  Op op;
  op.kind = OpKind::link;
  op.path = std::string(existing);
  op.path2 = std::string(new_path);
  op.ino = ino;
  record(std::move(op));
  return 0;
}

int RecordingFolder::symlink(std::string_view target, std::string_view link_path) {
  if (::symlinkat(std::string(target).c_str(), dir_, relative(link_path).c_str()) != 0) return neg_errno();
  Op op;
  op.kind = OpKind::symlink;
  op.path = std::string(link_path);
  op.path2 = std::string(target);
  record(std::move(op));
  return 0;
}

int RecordingFolder::chmod(std::string_view path, mode_t mode, const Handle* h) {
  int rc = h != nullptr ? ::fchmod(h->fd, mode) : ::fchmodat(dir_, relative(path).c_str(), mode, 0);
  if (rc != 0) return neg_errno();
  Op op;
  op.kind = OpKind::chmod;
  op.path = std::string(path);
  op.mode = static_cast<std::uint32_t>(mode & 07777);
  if (h != nullptr) {
    op.ino = h->ino;
    if (path.empty()) op.flags |= op_flag_by_handle;
  }
  record(std::move(op));
  return 0;
}

int RecordingFolder::sync(std::uint8_t flags) {
  if (options_.apply_barriers && ::syncfs(dir_) != 0) return neg_errno();
  Op op;
  op.kind = OpKind::sync;
  op.flags = flags;
  record(std::move(op));
  return 0;
}

std::uint64_t RecordingFolder::op_count() const {
  std::lock_guard lock(mu_);
  return log_.size();
}

OpLog RecordingFolder::replace_log(OpLog log) {
  std::lock_guard lock(mu_);
  implied_ino_ = 0;
  return std::exchange(log_, std::move(log));
}

}  // namespace otarig::drivers::storage
