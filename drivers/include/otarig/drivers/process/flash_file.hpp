#pragma once
// The flash file of otarig-vboard: the virtual board's NOR flash persisted in
// a file, so a process board keeps its flash across power cycles and the rig
// can provision it while the device is off (docs/process-boards.md).
//
//   offset 0     4096-byte header (little-endian):
//                  0  8  magic "OTVBFLSH"
//                  8  4  format version (1)
//                 12  4  header size (4096)
//                 16  8  slot_size
//                 24  8  sector_size
//                 32  8  program_align
//                 40  4  metadata_sectors
//                 44  4  counter_sectors
//                 48  8  flash size in bytes (geometry.total_size())
//                 56  4  swap_sectors (the swap area of the swap modes)
//                 60..   zero
//   offset 4096  the flash bytes, address 0 first
//
// The flash starts on a page boundary, so an erase or program of one sector
// is one aligned pwrite.
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "otarig/drivers/process/pty_process.hpp"
#include "otarig/drivers/virtual/board.hpp"
#include "otarig/drivers/virtual/flash.hpp"

namespace otarig::drivers::process {

inline constexpr std::size_t kFlashFileHeaderSize = 4096;

/// The flash file of one device, open for reading and write-through updates.
class FlashFile {
 public:
  /// Opens an existing flash file. InputError naming the file when it is not
  /// one (magic, version, geometry, size); std::system_error when it cannot be opened.
  static FlashFile open(const std::filesystem::path& file);
  /// Creates (or truncates) a file holding an erased flash of `geometry`.
  static FlashFile create(const std::filesystem::path& file, const vboard::FlashGeometry& geometry);

  const vboard::FlashGeometry& geometry() const { return geometry_; }
  const std::filesystem::path& path() const { return path_; }

  /// The whole flash.
  std::vector<std::uint8_t> read_all() const;
  /// Writes `data` at flash address `address` (one pwrite). With `sync`,
  /// fdatasync follows. std::system_error on failure.
  void write(std::uint64_t address, std::span<const std::uint8_t> data, bool sync) const;

 private:
  FlashFile() = default;
  std::filesystem::path path_;
  vboard::FlashGeometry geometry_;
  UniqueFd fd_;
};

/// The virtual board configuration otarig-vboard runs with: the boot `mode`
/// and `defects` named as a profile's device section names them, on the
/// flash geometry `flash` (its swap area follows the mode), without the fast
/// sweep. InputError naming `origin` for an unknown or unimplemented name.
vboard::BoardConfig vboard_config(const std::string& mode, const std::vector<std::string>& defects,
                                  std::uint64_t chunk_size, const vboard::FlashGeometry& flash,
                                  const std::string& origin);

/// Whether two layouts describe the same flash.
bool same_layout(const vboard::FlashGeometry& a, const vboard::FlashGeometry& b);

/// A factory-programmed flash of `config.layout()`: exactly what
/// VirtualBoard::provision() leaves (the image in the first slot, confirmed,
/// the anti-rollback counter at its security counter, in the mode's own
/// boot-state format). InputError when the image does not parse or fit.
std::vector<std::uint8_t> provisioned_flash(const vboard::BoardConfig& config,
                                            std::span<const std::uint8_t> image);

/// Writes a flash file holding `flash` (geometry().total_size() bytes)
/// atomically (a temporary file in the same folder, then rename), so a device
/// never sees half a file. No fsync: the rig models power cuts of the device,
/// not crashes of its own host.
void write_flash_file(const std::filesystem::path& file, const vboard::FlashGeometry& geometry,
                      std::span<const std::uint8_t> flash);

}  // namespace otarig::drivers::process
