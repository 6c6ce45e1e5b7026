#include "otarig/core/config.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <sstream>

#include "otarig/core/read_file.hpp"

namespace otarig {
namespace {

std::string join_path(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

std::string kind_of(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Scalar: return "a scalar";
    case YAML::NodeType::Null: return "empty";
    default: return "undefined";
  }
}

}  // namespace

Config Config::load_file(const std::filesystem::path& file) {
  return load_string(read_regular_file(file, kMaxDocumentBytes, "YAML document"), file.string());
}

Config Config::load_string(std::string_view text, std::string origin) {
  auto name = std::make_shared<const std::string>(std::move(origin));
  try {
    YAML::Node root = YAML::Load(std::string(text));
    return Config(root, name, "");
  } catch (const YAML::Exception& e) {
    throw InputError(fmt::format("{}:{}:{}: malformed YAML: {}", *name, e.mark.line + 1, e.mark.column + 1, e.msg));
  }
}

Config::Config(YAML::Node node, std::shared_ptr<const std::string> origin, std::string path)
    : node_(std::move(node)), origin_(std::move(origin)), path_(std::move(path)) {}

std::string Config::where() const {
  auto m = node_.Mark();
  if (m.is_null()) return *origin_;
  return fmt::format("{}:{}", *origin_, m.line + 1);
}

std::filesystem::path Config::directory() const { return std::filesystem::path(*origin_).parent_path(); }

void Config::fail(const std::string& message) const {
  if (path_.empty()) throw InputError(fmt::format("{}: {}", where(), message));
  throw InputError(fmt::format("{}: {}: {}", where(), path_, message));
}

bool Config::has(const std::string& key) const { return node_.IsMap() && node_[key].IsDefined(); }

void Config::only_keys(std::initializer_list<std::string_view> allowed) const {
  if (!node_.IsMap()) fail(fmt::format("expected a map, found {}", kind_of(node_)));
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    auto key = it->first.as<std::string>();
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string list;
      for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      Config(it->first, origin_, join_path(path_, key))
          .fail(fmt::format("unknown key '{}' (allowed: {})", key, list));
    }
  }
}

std::optional<Config> Config::find(const std::string& key) const {
  if (!node_.IsMap()) fail(fmt::format("expected a map, found {}", kind_of(node_)));
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    if (it->first.as<std::string>() == key) {
      // An empty value keeps the key's position so errors still point at it.
      YAML::Node v = it->second;
      if (v.IsNull() && v.Mark().is_null()) return Config(it->first, origin_, join_path(path_, key));
      return Config(v, origin_, join_path(path_, key));
    }
  }
  return std::nullopt;
}

Config Config::at(const std::string& key) const {
  auto c = find(key);
  if (!c) fail(fmt::format("missing required key '{}'", key));
  return *c;
}

std::vector<Config> Config::items() const {
  if (!node_.IsSequence()) fail(fmt::format("expected a list, found {}", kind_of(node_)));
  std::vector<Config> out;
  std::size_t i = 0;
  for (const auto& n : node_) out.emplace_back(n, origin_, fmt::format("{}[{}]", path_, i++));
  return out;
}

std::vector<std::pair<std::string, Config>> Config::entries() const {
  if (!node_.IsMap()) fail(fmt::format("expected a map, found {}", kind_of(node_)));
  std::vector<std::pair<std::string, Config>> out;
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    auto key = it->first.as<std::string>();
    out.emplace_back(key, Config(it->second, origin_, join_path(path_, key)));
  }
  return out;
}

std::string Config::as_string() const {
  if (!node_.IsScalar()) fail(fmt::format("expected a string, found {}", kind_of(node_)));
  return node_.Scalar();
}

bool Config::as_bool() const {
  auto s = as_string();
  if (s == "true" || s == "yes" || s == "on") return true;
  if (s == "false" || s == "no" || s == "off") return false;
  fail(fmt::format("expected true or false, found '{}'", s));
}

std::int64_t Config::as_int() const {
  auto s = as_string();
  bool hex = s.rfind("0x", 0) == 0 || s.rfind("0X", 0) == 0;
  const char* first = s.data() + (hex ? 2 : 0);
  const char* last = s.data() + s.size();
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(first, last, v, hex ? 16 : 10);
  if (first == last || ec != std::errc() || p != last) fail(fmt::format("expected an integer, found '{}'", s));
  return v;
}

std::uint64_t Config::as_uint() const {
  auto v = as_int();
  if (v < 0) fail(fmt::format("expected a non-negative integer, found {}", v));
  return static_cast<std::uint64_t>(v);
}

double Config::as_double() const {
  auto s = as_string();
  try {
    std::size_t used = 0;
    double v = std::stod(s, &used);
    if (used != s.size()) throw std::invalid_argument(s);
    return v;
  } catch (const std::exception&) {
    fail(fmt::format("expected a number, found '{}'", s));
  }
}

std::chrono::milliseconds Config::as_duration() const {
  auto s = as_string();
  std::size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  if (i == 0) fail(fmt::format("expected a duration like 500ms, 5s or 2m, found '{}'", s));
  double value = 0;
  try {
    value = std::stod(s.substr(0, i));
  } catch (const std::exception&) {
    fail(fmt::format("expected a duration, found '{}'", s));
  }
  auto unit = s.substr(i);
  double ms = 0;
  if (unit.empty() || unit == "ms") ms = value;
  else if (unit == "us") ms = value / 1000.0;
  else if (unit == "s") ms = value * 1000.0;
  else if (unit == "m" || unit == "min") ms = value * 60000.0;
  else if (unit == "h") ms = value * 3600000.0;
  else fail(fmt::format("unknown duration unit '{}' in '{}' (use us, ms, s, m, h)", unit, s));
  return std::chrono::milliseconds(static_cast<std::int64_t>(ms));
}

std::uint64_t Config::as_size() const {
  auto s = as_string();
  std::size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  if (i == 0) fail(fmt::format("expected a size like 4096, 4KiB or 1MiB, found '{}'", s));
  std::uint64_t v = std::stoull(s.substr(0, i));
  auto unit = s.substr(i);
  if (unit.empty() || unit == "B") return v;
  if (unit == "KiB" || unit == "K") return v << 10;
  if (unit == "MiB" || unit == "M") return v << 20;
  if (unit == "GiB" || unit == "G") return v << 30;
  fail(fmt::format("unknown size unit '{}' in '{}' (use B, KiB, MiB, GiB)", unit, s));
}

std::vector<std::string> Config::as_string_list() const {
  std::vector<std::string> out;
  for (const auto& c : items()) out.push_back(c.as_string());
  return out;
}

std::string Config::string_or(const std::string& key, std::string fallback) const {
  auto c = find(key);
  return c ? c->as_string() : std::move(fallback);
}
bool Config::bool_or(const std::string& key, bool fallback) const {
  auto c = find(key);
  return c ? c->as_bool() : fallback;
}
std::int64_t Config::int_or(const std::string& key, std::int64_t fallback) const {
  auto c = find(key);
  return c ? c->as_int() : fallback;
}
std::uint64_t Config::size_or(const std::string& key, std::uint64_t fallback) const {
  auto c = find(key);
  return c ? c->as_size() : fallback;
}
double Config::double_or(const std::string& key, double fallback) const {
  auto c = find(key);
  return c ? c->as_double() : fallback;
}
std::chrono::milliseconds Config::duration_or(const std::string& key, std::chrono::milliseconds fallback) const {
  auto c = find(key);
  return c ? c->as_duration() : fallback;
}

}  // namespace otarig
