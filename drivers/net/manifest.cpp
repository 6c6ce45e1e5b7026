// Strict manifest parser: exactly six keys, typed, range-checked.
#include "otarig/drivers/net/manifest.hpp"

#include <nlohmann/json.hpp>

#include <array>
#include <charconv>
#include <limits>
#include <string>

#include "otarig/core/crypto.hpp"
#include "otarig/core/errors.hpp"

namespace otarig::drivers::net {
namespace {

constexpr std::size_t kMaxManifestBytes = 64 * 1024;
constexpr std::size_t kMaxUrlBytes = 2048;
constexpr std::array<std::string_view, 6> kKeys = {"name", "version", "security_counter", "size", "sha256", "url"};

[[noreturn]] void fail(std::string_view origin, std::string_view field, const std::string& message) {
  throw InputError(std::string(origin) + ": " + std::string(field) + ": " + message);
}

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

void check_name(std::string_view origin, const std::string& name) {
  if (name.empty() || name.size() > 64) fail(origin, "name", "must be 1 to 64 characters");
  for (char c : name)
    if (!is_name_char(c)) fail(origin, "name", "only letters, digits, '.', '_' and '-' are allowed");
  if (name == "." || name == "..") fail(origin, "name", "must not be '.' or '..'");
}

// Reads decimal digits (no sign, no leading zero unless "0") up to `max`.
bool read_component(std::string_view& s, std::uint64_t max, std::uint64_t& out) {
  std::size_t n = 0;
  while (n < s.size() && s[n] >= '0' && s[n] <= '9') ++n;
  if (n == 0 || (n > 1 && s[0] == '0')) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + n, out);
  if (ec != std::errc() || out > max) return false;
  s.remove_prefix(n);
  return true;
}

void check_version(std::string_view origin, const std::string& version) {
  std::string_view s = version;
  std::uint64_t v = 0;
  auto bad = [&] {
    fail(origin, "version", "expected MAJOR.MINOR.PATCH[+BUILD] (MAJOR, MINOR <= 255, PATCH <= 65535), got '" +
                                version.substr(0, 40) + "'");
  };
  if (!read_component(s, 255, v) || !s.starts_with('.')) bad();
  s.remove_prefix(1);
  if (!read_component(s, 255, v) || !s.starts_with('.')) bad();
  s.remove_prefix(1);
  if (!read_component(s, 65535, v)) bad();
  if (s.starts_with('+')) {
    s.remove_prefix(1);
    if (!read_component(s, std::numeric_limits<std::uint32_t>::max(), v)) bad();
  }
  if (!s.empty()) bad();
}

void check_sha256(std::string_view origin, const std::string& digest) {
  if (digest.size() != 64) fail(origin, "sha256", "expected 64 lowercase hex digits, got " + std::to_string(digest.size()) + " characters");
  for (char c : digest)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      fail(origin, "sha256", "expected 64 lowercase hex digits");
}

bool is_url_char(char c) {
  // RFC 3986 unreserved, sub-delims, ':', '@', '/', '?', '%'.
  return is_name_char(c) || c == '~' || c == '!' || c == '$' || c == '&' || c == '\'' || c == '(' || c == ')' ||
         c == '*' || c == '+' || c == ',' || c == ';' || c == '=' || c == ':' || c == '@' || c == '/' || c == '?' ||
         c == '%';
}

void check_url(std::string_view origin, const std::string& url) {
  if (url.empty() || url.size() > kMaxUrlBytes) fail(origin, "url", "must be 1 to 2048 characters");
  for (char c : url)
    if (!is_url_char(c)) fail(origin, "url", "character outside RFC 3986 (spaces and controls are not allowed)");
  std::string_view path = url;
  if (url.starts_with("http://") || url.starts_with("https://")) {
    std::string_view rest = std::string_view(url).substr(url.find("//") + 2);
    std::size_t slash = rest.find('/');
    if (rest.empty() || slash == 0) fail(origin, "url", "missing host");
    path = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
  } else if (!url.starts_with('/') || url.starts_with("//")) {
    fail(origin, "url", "expected an absolute path (\"/images/x.bin\") or an http:// or https:// URL");
  }
  // No dot segments: the server refuses them and a device must not need them.
  std::string_view p = path.substr(0, path.find('?'));
  std::size_t pos = 0;
  while (pos <= p.size()) {
    std::size_t end = p.find('/', pos);
    if (end == std::string_view::npos) end = p.size();
    std::string_view seg = p.substr(pos, end - pos);
    if (seg == "." || seg == "..") fail(origin, "url", "dot segments ('.', '..') are not allowed");
    pos = end + 1;
  }
}

const char* type_name(const nlohmann::json& v) {
  if (v.is_number_float()) return "a fractional or out-of-range number";
  if (v.is_number_integer() && !v.is_number_unsigned()) return "a negative number";
  return v.type_name();
}

}  // namespace

Manifest parse_manifest(std::string_view text, std::string_view origin) {
  if (text.size() > kMaxManifestBytes)
    throw InputError(std::string(origin) + ": manifest larger than 64 KiB");
  std::array<bool, kKeys.size()> seen{};
  // The callback sees each top-level key as it is parsed: repeated keys (which
  // a DOM would silently merge), unknown keys and nested values fail early.
  auto callback = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (event == E::key && depth == 1) {
      const std::string& key = parsed.get_ref<const std::string&>();
      std::size_t i = 0;
      while (i < kKeys.size() && kKeys[i] != key) ++i;
      if (i == kKeys.size())
        fail(origin, key.size() > 64 ? key.substr(0, 64) + "..." : key, "unknown key");
      if (seen[i]) fail(origin, key, "given twice");
      seen[i] = true;
    }
    if ((event == E::object_start || event == E::array_start) && depth >= 1)
      throw InputError(std::string(origin) + ": a value is an object or array; every field is a string or number");
    return true;
  };
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(text.begin(), text.end(), callback, true, false);
  } catch (const nlohmann::json::parse_error& e) {
    throw InputError(std::string(origin) + ": byte " + std::to_string(e.byte) + ": malformed JSON: " +
                     std::string(e.what()).substr(std::string(e.what()).find("parse error")));
  }
  if (!doc.is_object()) throw InputError(std::string(origin) + ": expected a JSON object");
  for (auto key : kKeys)
    if (!doc.contains(key)) fail(origin, key, "missing");

  auto string_field = [&](std::string_view key) -> std::string {
    const auto& v = doc.at(std::string(key));
    if (!v.is_string()) fail(origin, key, std::string("expected a string, got ") + type_name(v));
    return v.get<std::string>();
  };
  auto unsigned_field = [&](std::string_view key, std::uint64_t max) -> std::uint64_t {
    const auto& v = doc.at(std::string(key));
    if (!v.is_number_unsigned()) fail(origin, key, std::string("expected an unsigned integer, got ") + type_name(v));
    std::uint64_t u = v.get<std::uint64_t>();
    if (u > max) fail(origin, key, "out of range (at most " + std::to_string(max) + ")");
    return u;
  };

  Manifest m;
  m.name = string_field("name");
  check_name(origin, m.name);
  m.version = string_field("version");
  check_version(origin, m.version);
  m.security_counter =
      static_cast<std::uint32_t>(unsigned_field("security_counter", std::numeric_limits<std::uint32_t>::max()));
  m.size = unsigned_field("size", std::numeric_limits<std::uint64_t>::max());
  m.sha256 = string_field("sha256");
  check_sha256(origin, m.sha256);
  m.url = string_field("url");
  check_url(origin, m.url);
  return m;
}

std::string to_json_text(const Manifest& m) {
  check_name("manifest", m.name);
  check_version("manifest", m.version);
  check_sha256("manifest", m.sha256);
  check_url("manifest", m.url);
  nlohmann::ordered_json j;
  j["name"] = m.name;
  j["version"] = m.version;
  j["security_counter"] = m.security_counter;
  j["size"] = m.size;
  j["sha256"] = m.sha256;
  j["url"] = m.url;
  return j.dump();
}

Manifest make_manifest(std::string name, std::string version, std::uint32_t security_counter,
                       std::span<const std::uint8_t> image, std::string url) {
  Manifest m;
  m.name = std::move(name);
  m.version = std::move(version);
  m.security_counter = security_counter;
  m.size = image.size();
  m.sha256 = crypto::hex(crypto::sha256(image));
  m.url = std::move(url);
  check_name("manifest", m.name);
  check_version("manifest", m.version);
  check_url("manifest", m.url);
  return m;
}

}  // namespace otarig::drivers::net
