#pragma once
// A storage folder whose mutating operations are recorded: every call is
// applied to a backing directory and, when it succeeded, appended to an
// operation log before it returns. The FUSE recorder (recorder.hpp) calls
// these for the device; unit tests and in-process boards may call them
// directly (the "fake" recorder: same code, no kernel in between).
//
// Paths are FUSE-style: relative to the folder's root, starting with "/".
// Results follow FUSE: 0 (or a byte count) on success, -errno on failure;
// nothing is recorded for a failed call.
#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <span>
#include <string>
#include <string_view>

#include "otarig/drivers/storage/oplog.hpp"

namespace otarig::drivers::storage {

/// An open file or directory of a RecordingFolder.
struct Handle {
  int fd = -1;
  std::uint64_t ino = 0;  ///< the backing inode (names the file once it is unlinked)
  std::uint8_t sync_flags = 0;  ///< op_flag_o_sync / op_flag_o_dsync when opened so
};

struct RecordingOptions {
  /// Pass fsync/fdatasync/syncfs and O_SYNC/O_DSYNC on to the backing folder.
  /// Off by default: the rig models the device's power, not its own host's
  /// (as process boards do, docs/process-boards.md), and the barriers stay
  /// in the log either way.
  bool apply_barriers = false;
};

class RecordingFolder {
 public:
  /// Opens `backing` (an existing directory) once; every later call works
  /// relative to that descriptor, so the backing folder may be the very
  /// directory a FUSE layer is then mounted over. std::system_error naming
  /// the folder when it cannot be opened.
  RecordingFolder(const std::filesystem::path& backing, OpLog log, RecordingOptions options = {});
  ~RecordingFolder();
  RecordingFolder(const RecordingFolder&) = delete;
  RecordingFolder& operator=(const RecordingFolder&) = delete;

  /// The backing directory's descriptor (for read-only calls: getattr, readdir...).
  int backing_fd() const { return dir_; }
  const std::filesystem::path& backing() const { return backing_; }
  /// "/a/b" -> "a/b"; "/" -> ".".
  static std::string relative(std::string_view path);

  // Files. open() records a truncate to 0 for O_TRUNC; create() records
  // create (and truncate for O_TRUNC of a file that existed).
  int open(std::string_view path, int flags, Handle& out);
  int create(std::string_view path, int flags, mode_t mode, Handle& out);
  /// Empty path: the file is no longer reachable by name (recorded by inode).
  ssize_t write(Handle& h, std::string_view path, std::span<const std::byte> data, off_t offset);
  ssize_t write(Handle& h, std::string_view path, std::string_view data, off_t offset);
  /// Through a handle when `h` is given, else by path.
  int truncate(std::string_view path, off_t size, const Handle* h = nullptr);
  int fallocate(Handle& h, std::string_view path, int mode, off_t offset, off_t length);
  int fsync(Handle& h, std::string_view path, bool datasync);
  /// Copies in the backing folder and records a write of the bytes copied.
  ssize_t copy_file_range(Handle& in, off_t in_offset, Handle& out, std::string_view out_path, off_t out_offset,
                          std::size_t length, unsigned flags);
  int close(Handle& h);

  // Directories and names.
  int opendir(std::string_view path, Handle& out);
  /// fsync of a directory: through `h` when given, else the directory is opened.
  int fsync_dir(std::string_view path, const Handle* h = nullptr);
  int mkdir(std::string_view path, mode_t mode);
  int mknod(std::string_view path, mode_t mode, dev_t rdev);
  int rmdir(std::string_view path);
  int unlink(std::string_view path);
  int rename(std::string_view from, std::string_view to, unsigned flags = 0);
  int link(std::string_view existing, std::string_view new_path);
  int symlink(std::string_view target, std::string_view link_path);
  int chmod(std::string_view path, mode_t mode, const Handle* h = nullptr);
  /// sync(2)/syncfs(2) of the folder: a global barrier. `flags`: the
  /// entry's flags (op_flag_seccomp, op_flag_syncfs: how it was seen).
  int sync(std::uint8_t flags = 0);

  /// Entries recorded in the current log.
  std::uint64_t op_count() const;
  /// Swaps in a new log (a new epoch) and returns the old one.
  OpLog replace_log(OpLog log);
  /// Runs `f(const OpLog&)` under the folder's lock.
  template <typename F>
  auto with_log(F&& f) const {
    std::lock_guard lock(mu_);
    return f(log_);
  }

 private:
  std::uint64_t record(Op op, std::span<const std::byte> data = {});
  void record_new_entry(OpKind kind, std::string_view path, const std::string& rel);
  Op file_op(OpKind kind, std::string_view path, const Handle& h) const;

  std::filesystem::path backing_;
  int dir_ = -1;
  RecordingOptions options_;
  mutable std::mutex mu_;
  OpLog log_;
  // The last entry was the implied barrier of an O_SYNC/O_DSYNC write on this inode.
  std::uint64_t implied_ino_ = 0;
  OpKind implied_kind_ = OpKind::fsync;
  std::uint64_t implied_index_ = 0;
};

}  // namespace otarig::drivers::storage
