#pragma once
// Reading a whole input file with a bound: only a regular file (never a FIFO,
// a device such as /dev/zero, or a folder) of at most a documented size, so
// no input can make the rig read without end or allocate without limit.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace otarig {

/// Largest YAML document (board profile, scenario) the rig reads.
inline constexpr std::uintmax_t kMaxDocumentBytes = std::uintmax_t{4} << 20;  // 4 MiB
/// Largest image, payload or package file the rig reads, and the largest
/// image it builds or writes (docs/image-format.md).
inline constexpr std::uintmax_t kMaxImageBytes = std::uintmax_t{512} << 20;  // 512 MiB

/// The bytes of `file`. InputError "FILE: ..." when it cannot be opened, is not
/// a regular file, or holds more than `max_bytes`; `what` names it in the
/// message ("image", "board profile").
std::string read_regular_file(const std::filesystem::path& file, std::uintmax_t max_bytes, std::string_view what);

}  // namespace otarig
