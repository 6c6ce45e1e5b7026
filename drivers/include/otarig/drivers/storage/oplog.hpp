#pragma once
// The operation log of a storage folder (docs/crash-model.md): each mutating
// file operation and each durability barrier the device made, in the order
// the file system applied them, numbered from 1 within one power-on (an
// "epoch"). Write payloads live in a data file (a spill file), not in RAM, so
// a log of a large slot write costs memory per operation, not per byte.
//
// On disk a log is two files: the entries (a compact binary record per
// operation, appended as each operation happens) and the data (the payloads,
// concatenated; an entry names its payload by offset and length). A log
// whose writer was killed mid-append loads up to its last whole entry.
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace otarig::drivers::storage {

/// What an entry records. Mutations first, then barriers.
enum class OpKind : std::uint8_t {
  write = 1,      ///< path, offset, length bytes (payload in the data file)
  truncate,       ///< path, offset = new size
  fallocate,      ///< path, offset, length, mode = fallocate(2) mode bits
  create,         ///< path, mode (S_IFREG|perm, or S_IFIFO... for mknod)
  mkdir,          ///< path, mode
  rmdir,          ///< path
  rename,         ///< path -> path2, flags = renameat2(2) flags
  link,           ///< path (existing) -> path2 (new name)
  symlink,        ///< path (new name), path2 = link target
  unlink,         ///< path
  chmod,          ///< path, mode (setattr of permissions; utimens/chown are not recorded)
  fsync,          ///< barrier: path's data, size and metadata
  fdatasync,      ///< barrier: path's data and size
  fsync_dir,      ///< barrier: path (a directory)'s entries
  sync,           ///< barrier: everything (sync(2)/syncfs(2) where seen)
};

/// Entry flags.
enum OpFlag : std::uint8_t {
  op_flag_o_sync = 1,   ///< a write through an O_SYNC handle (an fsync entry follows it)
  op_flag_o_dsync = 2,  ///< a write through an O_DSYNC handle (an fdatasync entry follows it)
  op_flag_implied = 4,  ///< a barrier the layer added for an O_SYNC/O_DSYNC write
  op_flag_by_handle = 8,  ///< a file that was no longer reachable by name (unlinked while open): path is empty, ino names it
  op_flag_seccomp = 16,   ///< a sync barrier seen by the device's seccomp filter (recorder.hpp), not by the layer
  op_flag_syncfs = 32,    ///< with op_flag_seccomp: the device called syncfs(2) on a file of the storage, not sync(2)
};

std::string_view to_string(OpKind kind);
std::optional<OpKind> parse_op_kind(std::string_view name);
/// fsync, fdatasync, fsync_dir, sync.
bool is_barrier(OpKind kind);

/// One entry. Paths are relative to the storage folder's root and start with
/// "/" ("/" is the root itself), as the device's file system saw them at the
/// time of the operation.
struct Op {
  std::uint64_t index = 0;  ///< 1-based within the epoch
  OpKind kind = OpKind::write;
  std::uint8_t flags = 0;
  std::uint32_t mode = 0;   ///< create/mkdir/chmod mode; fallocate mode
  std::uint32_t rename_flags = 0;
  std::uint64_t offset = 0;  ///< write/fallocate offset; truncate size
  std::uint64_t length = 0;  ///< write/fallocate length
  std::uint64_t data_offset = 0;  ///< where a write's payload starts in the data file
  std::uint64_t ino = 0;     ///< the backing file's inode number where known (0 unknown)
  std::string path;
  std::string path2;

  bool barrier() const { return is_barrier(kind); }
};

/// One entry as evidence: {"op": index, "kind": ..., "path": ..., ...}.
nlohmann::json to_json(const Op& op);

/// An in-order log of operations with payloads in a data file.
///
/// Thread safety: none; the recorder serialises appends itself.
class OpLog {
 public:
  /// An empty log whose payloads spill to an unnamed temporary file in
  /// `spill_dir` (default: the system temporary directory).
  OpLog();
  explicit OpLog(const std::filesystem::path& spill_dir);
  /// A log that appends every entry to `entries_file` and every payload to
  /// `data_file` as it is appended (both created or truncated), each with
  /// one write(2) before append() returns. With keep_entries false it holds
  /// no entries in memory (a recorder's writer): size() still counts them.
  static OpLog streaming(const std::filesystem::path& entries_file, const std::filesystem::path& data_file,
                         bool keep_entries);
  /// Loads the first `count` entries (all when nullopt) of a log written by
  /// save() or streaming(); a trailing partial entry is ignored. Payloads
  /// stay in `data_file`, which is read on demand. std::runtime_error naming
  /// the file when it is not a log or has fewer than `count` entries.
  static OpLog load(const std::filesystem::path& entries_file, const std::filesystem::path& data_file,
                    std::optional<std::uint64_t> count = std::nullopt);

  OpLog(OpLog&&) noexcept;
  OpLog& operator=(OpLog&&) noexcept;
  ~OpLog();

  /// Appends `op` (its index and data_offset are assigned; for a write,
  /// length is data.size()) and returns its index.
  std::uint64_t append(Op op, std::span<const std::byte> data = {});

  /// Entries appended (or loaded).
  std::uint64_t size() const { return count_; }
  bool empty() const { return count_ == 0; }
  /// Entries held in memory (all of them unless a streaming writer).
  const std::vector<Op>& ops() const { return ops_; }
  /// Entry by 1-based index.
  const Op& at(std::uint64_t index) const;
  /// A write's payload (length bytes).
  std::vector<std::byte> payload(const Op& op) const;
  /// Part of a write's payload: `out.size()` bytes starting `from` bytes into it.
  void read_payload(const Op& op, std::uint64_t from, std::span<std::byte> out) const;
  /// Bytes of payload stored.
  std::uint64_t data_bytes() const { return data_end_; }

  /// Writes the log as entries + data files (see load()).
  void save(const std::filesystem::path& entries_file, const std::filesystem::path& data_file) const;
  /// One JSON object per line (to_json of each entry), for people.
  void write_jsonl(const std::filesystem::path& file) const;

 private:
  struct Files;
  std::unique_ptr<Files> files_;
  std::vector<Op> ops_;
  bool keep_ = true;
  std::uint64_t count_ = 0;
  std::uint64_t data_end_ = 0;
};

/// The binary encoding of one entry (as streaming() writes it), appended to `out`.
void encode_op(const Op& op, std::string& out);

}  // namespace otarig::drivers::storage
