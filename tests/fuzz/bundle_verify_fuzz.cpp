// libFuzzer target: `otarig report verify` on any folder. The input packs a
// bundle's files (pack_bundle.py writes a real bundle so as the seed):
//   NAME '\0' LENGTH (4 bytes, little endian) CONTENT, repeated.
// Names that are not plain relative paths are skipped. Verification never
// crashes, never throws, and ends in one of its three statuses.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "otarig/reports/verify.hpp"

namespace {

bool plain_relative(std::string_view name) {
  if (name.empty() || name.size() > 200 || name.front() == '/' || name.back() == '/') return false;
  int depth = 0;
  std::size_t start = 0;
  while (start <= name.size()) {
    auto end = name.find('/', start);
    if (end == std::string_view::npos) end = name.size();
    auto part = name.substr(start, end - start);
    if (part.empty() || part == "." || part == ".." || ++depth > 4) return false;
    for (char c : part)
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
            c == '-'))
        return false;
    start = end + 1;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto dir = std::filesystem::temp_directory_path() / ("otarig-fuzz-bundle-" + std::to_string(::getpid()));
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::filesystem::create_directories(dir);
  std::string_view in(reinterpret_cast<const char*>(data), size);
  while (!in.empty()) {
    auto nul = in.find('\0');
    if (nul == std::string_view::npos || in.size() < nul + 5) break;
    std::string name(in.substr(0, nul));
    const auto* len_bytes = reinterpret_cast<const unsigned char*>(in.data() + nul + 1);
    std::size_t len = len_bytes[0] | (len_bytes[1] << 8) | (len_bytes[2] << 16) | (std::size_t{len_bytes[3]} << 24);
    in.remove_prefix(nul + 5);
    len = std::min(len, in.size());
    if (plain_relative(name)) {
      auto path = dir / name;
      std::filesystem::create_directories(path.parent_path(), ec);
      std::ofstream(path, std::ios::binary).write(in.data(), static_cast<std::streamsize>(len));
    }
    in.remove_prefix(len);
  }
  const auto result = otarig::reports::verify_bundle(dir);
  const int code = result.exit_code();
  if (code < 0 || code > 2) __builtin_trap();
  if (result.ok() != (code == 0)) __builtin_trap();
  (void)otarig::reports::format_verify(result, dir);
  return 0;
}
