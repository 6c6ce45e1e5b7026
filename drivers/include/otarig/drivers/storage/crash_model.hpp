#pragma once
// The crash model (docs/crash-model.md): from a snapshot of a storage folder
// at the start of a power-on and the operation log of that power-on, the
// storage the device finds after a power cut that falls before operation k:
// its durable state (what the barriers before k made durable) plus a seeded
// choice of the pending operations (those after the last barrier covering
// them) in one of four modes.
//
// Operations are resolved to files (inodes) once, as they happened, so a
// write through a name that was renamed or unlinked lands where the data
// went. Durability is per inode and per directory:
//   write, truncate, fallocate   durable by fsync/fdatasync of the file, or sync
//   chmod                        durable by fsync of the file, or sync
//   create, mkdir, symlink, link, unlink, rmdir
//                                durable by fsync of the parent directory, or sync
//   rename                       durable once both parent directories are
//                                fsynced (one, when the same), or sync
//   O_SYNC/O_DSYNC write         its implied fsync/fdatasync follows it in the log
// A file whose directory entry is not durable does not exist after the cut,
// whatever its data's state (ALICE's conservative model of ext4).
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "otarig/drivers/storage/oplog.hpp"

namespace otarig::drivers::storage {

/// What becomes of the pending operations.
enum class CrashMode : std::uint8_t {
  lost,     ///< none persists
  prefix,   ///< a seeded in-order prefix persists
  reorder,  ///< a seeded subset persists (applied in log order: the last writer of a region wins)
  torn,     ///< a seeded prefix persists and its last write is torn at 512-byte sectors
};
std::string_view to_string(CrashMode mode);
std::optional<CrashMode> parse_crash_mode(std::string_view name);
inline constexpr CrashMode kAllCrashModes[] = {CrashMode::lost, CrashMode::prefix, CrashMode::reorder, CrashMode::torn};

/// Sector size of torn writes.
inline constexpr std::uint64_t kSectorSize = 512;

/// Where and how the power is cut.
struct CrashPoint {
  std::uint64_t cut = 1;  ///< the cut falls before this operation: 1 ≤ cut ≤ ops + 1
  CrashMode mode = CrashMode::lost;
  std::uint64_t seed = 0;
};

/// The choice made for one crash point (plan()).
struct CrashPlan {
  CrashPoint point;
  std::vector<std::uint64_t> durable;    ///< non-barrier ops before the cut made durable by a barrier
  std::vector<std::uint64_t> pending;    ///< non-barrier ops before the cut no barrier covers
  std::vector<std::uint64_t> kept;       ///< pending ops that persist (whole or torn)
  std::vector<std::uint64_t> dropped;    ///< pending ops that do not
  std::uint64_t torn_op = 0;             ///< the torn write (0: none)
  std::vector<std::uint64_t> torn_landed;  ///< its sectors that landed (0 = its first sector)
  std::uint64_t torn_sectors = 0;        ///< its sector count
};

/// How files no persisted operation touched are placed in the target.
enum class UntouchedFiles : std::uint8_t {
  reflink_or_copy,  ///< FICLONE where the file system can, else copy_file_range (default)
  copy,             ///< always copy
  hardlink,         ///< hard link to the snapshot: only for a target nothing writes to
};

struct MaterializeOptions {
  UntouchedFiles untouched = UntouchedFiles::reflink_or_copy;
  /// Empty an existing target folder first (the folder itself stays: a
  /// recorder holds it open). False: the target must not exist or be empty.
  bool clear_target = true;
};

class CrashModel {
 public:
  /// Scans `snapshot` (the storage folder as it was when the log's epoch
  /// began; the model reads it again when materializing, so it must stay)
  /// and resolves every entry of `log` (which must outlive the model).
  /// std::runtime_error naming the snapshot when it cannot be read.
  CrashModel(std::filesystem::path snapshot, const OpLog& log);
  ~CrashModel();
  CrashModel(const CrashModel&) = delete;
  CrashModel& operator=(const CrashModel&) = delete;

  std::uint64_t op_count() const;
  /// Cut points: 1 .. op_count() + 1.
  std::uint64_t cut_points() const { return op_count() + 1; }

  /// What persists at `point` (deterministic in point). std::invalid_argument
  /// for a cut out of range.
  CrashPlan plan(const CrashPoint& point) const;

  /// Builds the crash state of `point` in `target` and describes it:
  ///   {"cut", "mode", "seed", "ops", "durable": [[first,last],...],
  ///    "pending": [{op, kind, path, ..., "kept": bool}...],
  ///    "torn": null | {op, path, offset, length, sector_size, sectors, landed: [...]},
  ///    "lost_files": [paths at which the device had a file, when the power
  ///                   went, whose data a barrier had made durable but whose
  ///                   name did not persist (the path may now name an older
  ///                   file, or nothing)],
  ///    "unresolved": [ops naming no file that existed] (only when any)}
  /// Same (snapshot, log, point) → byte-identical target and description.
  nlohmann::json materialize(const CrashPoint& point, const std::filesystem::path& target,
                             const MaterializeOptions& options = {}) const;

  /// Plan as evidence (the description without materializing).
  nlohmann::json describe(const CrashPlan& plan) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Copies the folder `from` to `to` (created; must not exist), regular files
/// by reflink where possible, keeping modes and symlinks: a snapshot at the
/// start of an epoch.
void snapshot_folder(const std::filesystem::path& from, const std::filesystem::path& to);

}  // namespace otarig::drivers::storage
