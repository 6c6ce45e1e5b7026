#pragma once
// The release manifest the update server publishes (docs/network.md):
//
//   {"name":"v2","version":"1.2.0","security_counter":3,"size":70000,
//    "sha256":"<64 lowercase hex>","url":"/images/v2.bin"}
//
// Exactly these six keys, each once; nothing else. A device fetches
// /manifest.json (the release the controller set as latest) and then `url`.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace otarig::drivers::net {

struct Manifest {
  /// Release name: 1..64 of [A-Za-z0-9._-], not "." or "..".
  std::string name;
  /// "MAJOR.MINOR.PATCH" or "MAJOR.MINOR.PATCH+BUILD" (MAJOR, MINOR <= 255,
  /// PATCH <= 65535, BUILD < 2^32), as in the image header.
  std::string version;
  /// The image's anti-rollback counter.
  std::uint32_t security_counter = 0;
  /// Image size in bytes.
  std::uint64_t size = 0;
  /// SHA-256 of the whole image file, 64 lowercase hex digits.
  std::string sha256;
  /// Where the image is: an absolute path on the same server ("/images/v2.bin")
  /// or an http:// or https:// URL.
  std::string url;

  bool operator==(const Manifest&) const = default;
};

/// Parses and checks a manifest. Any deviation (malformed JSON, a missing,
/// unknown or repeated key, a wrong type, a value out of range) throws
/// otarig::InputError "<origin>: <field>: <what is wrong>".
Manifest parse_manifest(std::string_view text, std::string_view origin);

/// Canonical JSON text of a manifest (keys in the order above, no spaces);
/// parse_manifest() accepts it. Throws InputError when a field is invalid.
std::string to_json_text(const Manifest& manifest);

/// The manifest of an image: size and SHA-256 computed from `image`.
Manifest make_manifest(std::string name, std::string version, std::uint32_t security_counter,
                       std::span<const std::uint8_t> image, std::string url);

}  // namespace otarig::drivers::net
