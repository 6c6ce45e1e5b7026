#pragma once
// The otarig image format (docs/image-format.md): a 64-byte header, the
// payload, and a 112-byte trailer with the SHA-256 of header+payload and an
// Ed25519 signature over that digest. Little-endian throughout.
#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "otarig/core/crypto.hpp"

namespace otarig::image {

using Bytes = std::vector<std::uint8_t>;

inline constexpr std::uint32_t kHeaderMagic = 0x3141544f;   // "OTA1"
inline constexpr std::uint32_t kTrailerMagic = 0x5452544f;  // "OTRT"
inline constexpr std::size_t kHeaderSize = 64;
inline constexpr std::size_t kTrailerSize = 112;
/// Domain separation for the signature: Ed25519 signs kSignContext || sha256.
inline constexpr std::string_view kSignContext = "otarig-image-v1";

/// major.minor.patch+build.
struct Version {
  std::uint8_t major = 0;
  std::uint8_t minor = 0;
  std::uint16_t patch = 0;
  std::uint32_t build = 0;
  /// Parses "1.2.3" or "1.2.3+4"; throws otarig::InputError.
  static Version parse(std::string_view text);
  std::string str() const;
  auto operator<=>(const Version&) const = default;
};

enum Flags : std::uint32_t {
  /// The image's self-test fails when it runs (a signed image that must be reverted).
  kFlagSelfTestFails = 1u << 0,
  /// The payload begins with a trust block (a key-rotation message): keys the
  /// device is to add to its trusted set or revoke (docs/image-format.md).
  kFlagTrustUpdate = 1u << 1,
  /// The payload is a patch from a base image to the signed image (otarig/core/delta.hpp).
  kFlagDelta = 1u << 2,
  /// The payload is an encrypted block (docs/image-format.md, "Encrypted
  /// payloads"): a key wrapped for one device and the ciphertext of a
  /// complete signed plaintext image.
  kFlagEncrypted = 1u << 3,
};

/// The flag bits this part of the format owns (3..7); bits 3 is defined, 4..7 must be zero.
inline constexpr std::uint32_t kFlagsMultiReserved = 0xF0u;

/// A device type as the header carries it: the first 8 bytes of SHA-256 over
/// the device-type name. All zero: the image is for any device.
using DeviceType = std::array<std::uint8_t, 8>;
/// The id of a device-type name ("" gives the all-zero id: any device).
DeviceType device_type_id(std::string_view name);
inline bool any_device(const DeviceType& t) {
  for (auto b : t)
    if (b) return false;
  return true;
}
/// Whether an image for `image_type` may be installed on a device of `device_type`.
inline bool compatible(const DeviceType& image_type, const DeviceType& device_type) {
  return any_device(image_type) || image_type == device_type;
}

/// The most images one device may carry (image indexes 0..kMaxImages-1).
inline constexpr std::uint8_t kMaxImages = 8;

struct Header {
  std::uint32_t magic = kHeaderMagic;
  std::uint16_t header_size = kHeaderSize;
  std::uint16_t format = 1;
  Version version;
  std::uint32_t security_counter = 0;
  std::uint32_t payload_size = 0;
  std::uint32_t flags = 0;
  /// Offset 28: the device type the image is for (zero: any).
  DeviceType device_type{};
  /// Offset 36: which of the device's images this is (0: the application;
  /// 1: the second image, e.g. a second-stage bootloader).
  std::uint8_t image_index = 0;
  /// Offset 37: 1 + the index of the image this one needs, 0 for none.
  std::uint8_t needs_image = 0;
  /// Offset 40: the lowest version of that image this one runs with.
  Version needs_version;
  /// Offset 48..55: a delta's base id, the first 8 bytes of the base image's
  /// SHA-256 over header+payload; zero when the image is no delta.
  std::array<std::uint8_t, 8> delta_base{};
  /// When the image was signed, UNIX seconds (header offset 56..63); 0: absent.
  std::uint64_t signing_time = 0;
};

struct Trailer {
  std::uint32_t magic = kTrailerMagic;
  crypto::KeyId key_id{};
  crypto::Digest sha256{};
  crypto::Signature signature{};
};

/// A structurally parsed image (nothing verified yet).
struct Parsed {
  Header header;
  Trailer trailer;
  std::span<const std::uint8_t> signed_part;  ///< header + payload
  std::span<const std::uint8_t> payload;
  std::size_t total_size = 0;  ///< header + payload + trailer
};

/// Writes/reads the fixed-layout header and trailer.
void encode_header(const Header& h, std::span<std::uint8_t, kHeaderSize> out);
Header decode_header(std::span<const std::uint8_t, kHeaderSize> in);
void encode_trailer(const Trailer& t, std::span<std::uint8_t, kTrailerSize> out);
Trailer decode_trailer(std::span<const std::uint8_t, kTrailerSize> in);

/// Parses structure: magics, header size, payload size against the buffer.
/// Bytes after the trailer are allowed (they are reported by `total_size`).
/// Throws otarig::InputError naming `name` and the field that is wrong.
Parsed parse(std::span<const std::uint8_t> bytes, std::string_view name = "image");

/// The message Ed25519 signs: kSignContext || digest.
Bytes signing_message(const crypto::Digest& digest);

/// Builds a signed image.
Bytes build(const Header& header, std::span<const std::uint8_t> payload, const crypto::Ed25519Key& key);

/// The result of checking an image against a set of trusted keys.
struct Check {
  bool structure_ok = false;
  bool hash_ok = false;
  bool key_known = false;
  bool signature_ok = false;
  std::string reason;  ///< empty when everything holds
  bool ok() const { return structure_ok && hash_ok && key_known && signature_ok; }
};
Check check(std::span<const std::uint8_t> bytes, std::span<const crypto::PublicKey> trusted);

/// Deterministic payload of `size` bytes for a release (test content).
Bytes synthetic_payload(std::size_t size, std::string_view label);

/// A key a device trusts, with its validity period (UNIX seconds; 0: no
/// bound) and whether it was revoked.
struct TrustEntry {
  crypto::PublicKey key{};
  std::uint64_t not_before = 0;
  std::uint64_t not_after = 0;
  bool revoked = false;
  bool operator==(const TrustEntry&) const = default;
};

/// What a trust block asks of the device for one key, or (add_server_ca) of
/// its TLS trust store: a CA the update server's certificate may chain to.
enum class TrustAction : std::uint8_t { add = 1, revoke = 2, add_server_ca = 3 };

struct TrustChange {
  TrustAction action = TrustAction::add;
  TrustEntry entry;  ///< for revoke, only `key` counts; for add_server_ca, `key` is SHA-256 of `certificate`
  /// add_server_ca: the CA certificate, DER (a self-signed or intermediate
  /// CA: basicConstraints CA:TRUE); empty for the key actions.
  Bytes certificate{};
};

inline constexpr std::uint32_t kTrustBlockMagic = 0x424b544f;  // "OTKB"
inline constexpr std::size_t kTrustEntrySize = 56;
inline constexpr std::size_t kTrustBlockMaxEntries = 16;
/// The largest CA certificate (DER) an add_server_ca entry carries.
inline constexpr std::size_t kTrustCertificateMaxSize = 8192;

/// Encodes a trust block (the start of a kFlagTrustUpdate image's payload).
/// Throws InputError for no changes or more than kTrustBlockMaxEntries.
Bytes encode_trust_block(std::span<const TrustChange> changes);
/// Decodes the trust block at the start of `payload`; throws InputError
/// naming `name` and what is wrong (magic, count, action, reserved bytes, size).
std::vector<TrustChange> decode_trust_block(std::span<const std::uint8_t> payload, std::string_view name = "image");

/// An add_server_ca change for `certificate` (PEM or DER): InputError naming
/// `name` when it is not one X.509 CA certificate (basicConstraints CA:TRUE)
/// of at most kTrustCertificateMaxSize bytes of DER.
TrustChange server_ca_change(std::span<const std::uint8_t> certificate, std::string_view name);
/// Why `der` is not a CA certificate an add_server_ca entry may carry, or "".
std::string server_ca_problem(std::span<const std::uint8_t> der);
/// The certificate's subject, one line (e.g. "CN=otarig test CA 2"), or "?".
std::string certificate_subject(std::span<const std::uint8_t> der);

/// Why `entry` is not valid at UNIX time `at` ("not yet valid until ...",
/// "expired at ..."), or empty.
std::string validity_failure(const TrustEntry& entry, std::uint64_t at);
/// UNIX seconds as "YYYY-MM-DDTHH:MM:SSZ".
std::string utc_text(std::uint64_t seconds);
/// Parses "YYYY-MM-DD", "YYYY-MM-DDTHH:MM:SSZ" or "@SECONDS" (UNIX seconds);
/// nullopt when it is none of them or out of range (before 1970, after 9999).
std::optional<std::uint64_t> parse_utc(std::string_view text);

/// Ways to damage an image (otarig image tamper; the tamper scenarios).
namespace tamper {
Bytes flip_bit(std::span<const std::uint8_t> img, std::size_t offset, unsigned bit);
Bytes truncate(std::span<const std::uint8_t> img, std::size_t new_size);
Bytes append(std::span<const std::uint8_t> img, std::span<const std::uint8_t> extra);
/// Re-signs header+payload with another key (a valid signature by an unknown key).
Bytes resign(std::span<const std::uint8_t> img, const crypto::Ed25519Key& key);
/// Zeroes the signature and key id (an unsigned image).
Bytes strip_signature(std::span<const std::uint8_t> img);
/// Edits the header's version without re-signing (hash and signature no longer match).
Bytes set_version(std::span<const std::uint8_t> img, const Version& v);
}  // namespace tamper

}  // namespace otarig::image
