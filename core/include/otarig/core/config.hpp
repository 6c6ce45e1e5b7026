#pragma once
// Strict access to a YAML document: every error names the file and line, every
// unknown key is an error, types are checked. Used by the profile and scenario
// loaders and by each driver for its own section.
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "otarig/core/errors.hpp"

namespace otarig {

/// One node of a YAML document together with where it came from.
class Config {
 public:
  /// Parses a file; malformed YAML throws InputError "FILE:LINE:COL: ...".
  static Config load_file(const std::filesystem::path& file);
  /// Parses text; `origin` names it in errors.
  static Config load_string(std::string_view text, std::string origin);

  Config(YAML::Node node, std::shared_ptr<const std::string> origin, std::string path);

  const YAML::Node& node() const { return node_; }
  /// "FILE:LINE" of this node (1-based line).
  std::string where() const;
  /// Dotted path of this node inside the document, e.g. "console.status".
  const std::string& path() const { return path_; }
  const std::string& origin() const { return *origin_; }
  std::filesystem::path directory() const;

  bool is_map() const { return node_.IsMap(); }
  bool is_sequence() const { return node_.IsSequence(); }
  bool is_scalar() const { return node_.IsScalar(); }
  bool has(const std::string& key) const;

  /// Errors when a key outside `allowed` is present (names the key and its line).
  void only_keys(std::initializer_list<std::string_view> allowed) const;
  /// The value under `key`; missing -> InputError naming the key.
  Config at(const std::string& key) const;
  std::optional<Config> find(const std::string& key) const;
  /// Elements of a sequence (errors when this is not a sequence).
  std::vector<Config> items() const;
  /// Key/value pairs of a map, in document order.
  std::vector<std::pair<std::string, Config>> entries() const;

  std::string as_string() const;
  bool as_bool() const;
  std::int64_t as_int() const;
  std::uint64_t as_uint() const;
  double as_double() const;
  /// "250ms", "5s", "2m", "1h" or a bare number of milliseconds.
  std::chrono::milliseconds as_duration() const;
  /// "1MiB", "4KiB", "4096" ...
  std::uint64_t as_size() const;
  std::vector<std::string> as_string_list() const;

  std::string string_or(const std::string& key, std::string fallback) const;
  bool bool_or(const std::string& key, bool fallback) const;
  std::int64_t int_or(const std::string& key, std::int64_t fallback) const;
  std::uint64_t size_or(const std::string& key, std::uint64_t fallback) const;
  double double_or(const std::string& key, double fallback) const;
  std::chrono::milliseconds duration_or(const std::string& key, std::chrono::milliseconds fallback) const;

  /// Throws InputError "FILE:LINE: <path>: message".
  [[noreturn]] void fail(const std::string& message) const;

 private:
  YAML::Node node_;
  std::shared_ptr<const std::string> origin_;
  std::string path_;
};

}  // namespace otarig
