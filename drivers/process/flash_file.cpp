// otarig-vboard's flash file: header, read, write-through, provisioning.
#include "otarig/drivers/process/flash_file.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "otarig/core/config.hpp"
#include "otarig/core/errors.hpp"

namespace otarig::drivers::process {
namespace {

constexpr std::array<char, 8> kMagic{'O', 'T', 'V', 'B', 'F', 'L', 'S', 'H'};
constexpr std::uint32_t kVersion = 1;

void put_le(std::uint8_t* p, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
std::uint64_t get_le(const std::uint8_t* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::array<std::uint8_t, kFlashFileHeaderSize> encode_header(const vboard::FlashGeometry& g) {
  std::array<std::uint8_t, kFlashFileHeaderSize> h{};
  std::memcpy(h.data(), kMagic.data(), kMagic.size());
  put_le(h.data() + 8, kVersion, 4);
  put_le(h.data() + 12, kFlashFileHeaderSize, 4);
  put_le(h.data() + 16, g.slot_size, 8);
  put_le(h.data() + 24, g.sector_size, 8);
  put_le(h.data() + 32, g.program_align, 8);
  put_le(h.data() + 40, g.metadata_sectors, 4);
  put_le(h.data() + 44, g.counter_sectors, 4);
  put_le(h.data() + 48, g.total_size(), 8);
  put_le(h.data() + 56, g.swap_sectors, 4);
  return h;
}

void pwrite_all(int fd, const std::uint8_t* data, std::size_t n, off_t offset,
                const std::filesystem::path& file) {
  while (n > 0) {
    ssize_t w = ::pwrite(fd, data, n, offset);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0)
      throw std::system_error(errno, std::generic_category(), fmt::format("write {}", file.string()));
    data += w;
    n -= static_cast<std::size_t>(w);
    offset += w;
  }
}

void pread_all(int fd, std::uint8_t* data, std::size_t n, off_t offset, const std::filesystem::path& file) {
  while (n > 0) {
    ssize_t r = ::pread(fd, data, n, offset);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw std::system_error(errno, std::generic_category(), fmt::format("read {}", file.string()));
    if (r == 0)
      throw InputError(fmt::format("{}: flash file is shorter than its header says", file.string()));
    data += r;
    n -= static_cast<std::size_t>(r);
    offset += r;
  }
}

}  // namespace

FlashFile FlashFile::open(const std::filesystem::path& file) {
  FlashFile f;
  f.path_ = file;
  f.fd_ = UniqueFd(::open(file.c_str(), O_RDWR | O_CLOEXEC));
  if (!f.fd_) throw std::system_error(errno, std::generic_category(), fmt::format("open {}", file.string()));
  std::array<std::uint8_t, kFlashFileHeaderSize> h{};
  struct stat st {};
  if (::fstat(f.fd_.get(), &st) != 0 || static_cast<std::uint64_t>(st.st_size) < kFlashFileHeaderSize)
    throw InputError(fmt::format("{}: not an otarig-vboard flash file (too short)", file.string()));
  pread_all(f.fd_.get(), h.data(), h.size(), 0, file);
  if (std::memcmp(h.data(), kMagic.data(), kMagic.size()) != 0)
    throw InputError(fmt::format("{}: not an otarig-vboard flash file (bad magic)", file.string()));
  if (auto v = get_le(h.data() + 8, 4); v != kVersion)
    throw InputError(
        fmt::format("{}: flash file format {} (this build reads {})", file.string(), v, kVersion));
  if (get_le(h.data() + 12, 4) != kFlashFileHeaderSize)
    throw InputError(
        fmt::format("{}: flash file header size is not {}", file.string(), kFlashFileHeaderSize));
  auto& g = f.geometry_;
  g.slot_size = get_le(h.data() + 16, 8);
  g.sector_size = get_le(h.data() + 24, 8);
  g.program_align = get_le(h.data() + 32, 8);
  g.metadata_sectors = static_cast<std::uint32_t>(get_le(h.data() + 40, 4));
  g.counter_sectors = static_cast<std::uint32_t>(get_le(h.data() + 44, 4));
  g.swap_sectors = static_cast<std::uint32_t>(get_le(h.data() + 56, 4));
  if (auto p = g.problem(); !p.empty())
    throw InputError(fmt::format("{}: flash geometry: {}", file.string(), p));
  if (get_le(h.data() + 48, 8) != g.total_size() ||
      static_cast<std::uint64_t>(st.st_size) != kFlashFileHeaderSize + g.total_size())
    throw InputError(fmt::format("{}: flash file size does not match its geometry ({} flash bytes)",
                                 file.string(), g.total_size()));
  return f;
}

FlashFile FlashFile::create(const std::filesystem::path& file, const vboard::FlashGeometry& geometry) {
  if (auto p = geometry.problem(); !p.empty()) throw InputError("flash geometry: " + p);
  std::vector<std::uint8_t> erased(geometry.total_size(), 0xFF);
  write_flash_file(file, geometry, erased);
  return open(file);
}

std::vector<std::uint8_t> FlashFile::read_all() const {
  std::vector<std::uint8_t> bytes(geometry_.total_size());
  pread_all(fd_.get(), bytes.data(), bytes.size(), kFlashFileHeaderSize, path_);
  return bytes;
}

void FlashFile::write(std::uint64_t address, std::span<const std::uint8_t> data, bool sync) const {
  if (address > geometry_.total_size() || data.size() > geometry_.total_size() - address)
    throw std::logic_error(
        fmt::format("flash file: write {:#010x}+{} leaves the flash", address, data.size()));
  pwrite_all(fd_.get(), data.data(), data.size(), static_cast<off_t>(kFlashFileHeaderSize + address), path_);
  if (sync && ::fdatasync(fd_.get()) != 0)
    throw std::system_error(errno, std::generic_category(), fmt::format("fdatasync {}", path_.string()));
}

vboard::BoardConfig vboard_config(const std::string& mode, const std::vector<std::string>& defects,
                                  std::uint64_t chunk_size, const vboard::FlashGeometry& flash,
                                  const std::string& origin) {
  // Through the profile reader, so names and values are checked as for an
  // in-process board.
  std::string yaml = fmt::format(
      "kind: virtual\nmode: '{}'\nchunk_size: {}\nfast_sweep: false\n"
      "flash: {{slot_size: {}, sector_size: {}, program_align: {}, metadata_sectors: {}}}\ndefects: [",
      mode, chunk_size, flash.slot_size, flash.sector_size, flash.program_align, flash.metadata_sectors);
  for (std::size_t i = 0; i < defects.size(); ++i) yaml += fmt::format("{}'{}'", i ? ", " : "", defects[i]);
  yaml += "]\n";
  return vboard::BoardConfig::from_config(Config::load_string(yaml, origin));
}

bool same_layout(const vboard::FlashGeometry& a, const vboard::FlashGeometry& b) {
  return a.slot_size == b.slot_size && a.sector_size == b.sector_size && a.program_align == b.program_align &&
         a.metadata_sectors == b.metadata_sectors && a.counter_sectors == b.counter_sectors &&
         a.swap_sectors == b.swap_sectors;
}

std::vector<std::uint8_t> provisioned_flash(const vboard::BoardConfig& config,
                                            std::span<const std::uint8_t> image) {
  vboard::VirtualBoard board(config, {});
  board.provision(image);
  auto bytes = board.flash().bytes();
  return {bytes.begin(), bytes.end()};
}

void write_flash_file(const std::filesystem::path& file, const vboard::FlashGeometry& geometry,
                      std::span<const std::uint8_t> flash) {
  if (flash.size() != geometry.total_size())
    throw std::logic_error(
        fmt::format("flash file: {} bytes for a {}-byte flash", flash.size(), geometry.total_size()));
  auto tmp = file;
  tmp += ".tmp";
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) throw std::system_error(errno, std::generic_category(), fmt::format("create {}", tmp.string()));
    auto header = encode_header(geometry);
    pwrite_all(fd.get(), header.data(), header.size(), 0, tmp);
    pwrite_all(fd.get(), flash.data(), flash.size(), static_cast<off_t>(kFlashFileHeaderSize), tmp);
  }
  if (::rename(tmp.c_str(), file.c_str()) != 0)
    throw std::system_error(errno, std::generic_category(),
                            fmt::format("rename {} to {}", tmp.string(), file.string()));
}

}  // namespace otarig::drivers::process
