#pragma once
// Running the clients' command-line tools (fw_setenv, rauc, mksquashfs,
// unsquashfs) from the rig: spawn_process (otarig/core/spawn.hpp), output
// captured, a deadline.
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace otarig::drivers::clients {

struct ToolResult {
  int status = -1;     ///< exit status; 128+N when killed by signal N
  std::string output;  ///< stdout and stderr, interleaved
  bool ok() const { return status == 0; }
};

/// Runs argv[0] (looked up on $PATH) with `argv`; stdin is /dev/null. After
/// `timeout` the tool is killed (status 137). BenchError when it cannot start.
ToolResult run_tool(const std::vector<std::string>& argv, std::chrono::milliseconds timeout = std::chrono::seconds(60),
                    const std::filesystem::path& cwd = {});

/// The path of `tool` on $PATH (or `tool` itself when it has a slash and is
/// executable); empty when there is none.
std::string find_tool(const std::string& tool);

/// A fresh temporary folder, removed with the object.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "otarig-pkg");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

/// Whole-file helpers; errors throw BenchError naming the file.
std::vector<std::uint8_t> read_bytes(const std::filesystem::path& file);
void write_bytes(const std::filesystem::path& file, const void* data, std::size_t size);
void write_text(const std::filesystem::path& file, const std::string& text);
/// Writes to FILE.tmp, syncs it, renames it over FILE and syncs the folder:
/// durable when it returns, as a bootloader's or a boot-state tool's write is
/// (U-Boot's saveenv, fw_setenv, grub-editenv). Under the crash model
/// (docs/crash-model.md) a cut leaves the old or the new FILE, never less.
void write_text_atomically(const std::filesystem::path& file, const std::string& text);

}  // namespace otarig::drivers::clients
