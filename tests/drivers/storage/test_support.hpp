#pragma once
// Shared by the storage tests: a scratch folder and file helpers.
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>

namespace otarig::drivers::storage::test {

/// A fresh folder under the temporary directory, removed at scope end.
class Scratch {
 public:
  Scratch() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "otarig-storage-test.XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp");
    dir_ = tmpl;
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path operator/(const std::string& name) const { return dir_ / name; }

 private:
  std::filesystem::path dir_;
};

inline void put_file(const std::filesystem::path& p, const std::string& content) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << content;
}

/// The file's bytes, or nullopt when it does not exist.
inline std::optional<std::string> read_file(const std::filesystem::path& p) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(std::filesystem::symlink_status(p, ec))) return std::nullopt;
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Every entry of a folder tree: relative path -> "d MODE", "l TARGET" or "f MODE CONTENT".
inline std::map<std::string, std::string> tree(const std::filesystem::path& root) {
  std::map<std::string, std::string> out;
  for (auto it = std::filesystem::recursive_directory_iterator(root); it != std::filesystem::recursive_directory_iterator();
       ++it) {
    const auto rel = std::filesystem::relative(it->path(), root).string();
    const auto st = it->symlink_status();
    const auto perms = std::to_string(static_cast<unsigned>(st.permissions()));
    if (std::filesystem::is_symlink(st))
      out[rel] = "l " + std::filesystem::read_symlink(it->path()).string();
    else if (std::filesystem::is_directory(st))
      out[rel] = "d " + perms;
    else
      out[rel] = "f " + perms + " " + read_file(it->path()).value_or("?");
  }
  return out;
}

}  // namespace otarig::drivers::storage::test
