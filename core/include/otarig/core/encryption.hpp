#pragma once
// Encrypted images (docs/image-format.md, "Encrypted payloads"), after
// MCUboot's X25519 scheme: a fresh content key per image, wrapped for one
// device with an ephemeral X25519 key agreement, HKDF-SHA256 and AES-256 key
// wrap (RFC 3394); the plaintext image encrypted with AES-256-CTR. OpenSSL
// only.
//
// An encrypted image is itself an otarig image (the outer image): its header
// is the plaintext image's with kFlagEncrypted set, its payload the encrypted
// block below, and it is signed like any image, so a device verifies it
// before it decrypts anything. The block's plaintext is the whole signed
// plaintext image (sign, encrypt, sign), which the device verifies again
// after it decrypted it and at every boot.
//
//   encrypted block = ephemeral X25519 public key (32)
//                   | AES-256-KW(KEK, content key) (40)
//                   | CTR initial counter (16)
//                   | AES-256-CTR(content key, counter, plaintext image)
//   KEK = HKDF-SHA256(IKM = X25519(ephemeral, device), salt = "",
//                     info = "otarig-image-encryption-v1" | ephemeral public | device public), 32 bytes
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "otarig/core/crypto.hpp"
#include "otarig/core/image.hpp"

namespace otarig::encryption {

using Bytes = std::vector<std::uint8_t>;
using X25519Public = std::array<std::uint8_t, 32>;
using X25519Private = std::array<std::uint8_t, 32>;

inline constexpr std::size_t kBlockHeaderSize = 32 + 40 + 16;
inline constexpr std::string_view kKdfInfo = "otarig-image-encryption-v1";

/// A device's X25519 key pair.
struct DeviceKey {
  X25519Private secret{};
  X25519Public pub{};
  /// Deterministic key pair from a label ("test:LABEL" keys of a profile).
  static DeviceKey test_key(std::string_view label);
  /// A key pair from 32 secret bytes.
  static DeviceKey from_secret(std::span<const std::uint8_t, 32> secret);
  /// An X25519 private key in PEM; InputError naming the file otherwise.
  static DeviceKey load_pem(const std::string& file);
  /// "test:LABEL" or a PEM file.
  static DeviceKey load_ref(const std::string& ref);
};

/// The X25519 public key of a PEM file (a public or a private key) or of raw
/// hex (64 digits). InputError naming `what` otherwise.
X25519Public load_public(const std::string& text_or_path, const std::string& what);

/// The outer image: `plaintext_image` (a complete signed image) encrypted for
/// `device` and signed with `key`. The content key, ephemeral key and counter
/// come from `seed` when given (the rig's releases: the same bytes on every
/// machine), else from OpenSSL's random generator.
Bytes encrypt(std::span<const std::uint8_t> plaintext_image, const X25519Public& device, const crypto::Ed25519Key& key,
              const std::optional<crypto::Digest>& seed = std::nullopt);

/// Decrypts the outer image's block with the device's key: the plaintext
/// image, or nullopt with `why` (a key wrapped for another device fails the
/// key unwrap's integrity check; a block too short to hold its header).
/// Neither verifies nor parses the plaintext: the caller does, and must have
/// verified the outer image first.
std::optional<Bytes> decrypt(const image::Parsed& outer, const DeviceKey& device, std::string* why);

/// Whether `bytes` contain `needle` anywhere.
bool contains(std::span<const std::uint8_t> bytes, std::span<const std::uint8_t> needle);

/// Finds `needle` in a stream fed in pieces of any size, a match split
/// across pieces included, in memory bounded by the needle's length (the
/// fault proxy's watch for a release's plaintext in the bytes it relays).
class StreamSearch {
 public:
  /// std::invalid_argument for an empty needle.
  explicit StreamSearch(Bytes needle);
  /// The next piece of the stream. Returns the stream offset of the first
  /// match once it is complete (then again on every later call).
  std::optional<std::uint64_t> feed(std::span<const std::uint8_t> piece);
  std::optional<std::uint64_t> found() const { return found_; }
  std::uint64_t fed() const { return fed_; }
  const Bytes& needle() const { return needle_; }

 private:
  Bytes needle_;
  Bytes tail_;  ///< the stream's last needle.size()-1 bytes (fewer at its start)
  std::uint64_t fed_ = 0;
  std::optional<std::uint64_t> found_;
};

/// A symmetric key for SWUpdate's encrypted images (its -K key file,
/// docs/ota-clients.md, "Encrypted images"): an AES-128, -192 or -256 key
/// and a 16-byte IV, written as "KEY IV" in hex on one line.
struct AesKey {
  Bytes key;
  std::array<std::uint8_t, 16> iv{};
  /// AES-256 key and IV derived from a label ("test:LABEL" in a profile).
  static AesKey test_key(std::string_view label);
  /// SWUpdate's key file text: two hex words, the key (32, 48 or 64 digits)
  /// and the IV (32 digits). InputError naming `origin` otherwise.
  static AesKey parse(std::string_view text, const std::string& origin);
  /// "test:LABEL" or a key file; InputError naming the file.
  static AesKey load_ref(const std::string& ref);
  /// "KEYHEX IVHEX\n", as SWUpdate reads it.
  std::string file_text() const;
};

/// AES-CBC (the key's size picks AES-128/192/256) with PKCS#7 padding, as
/// `openssl enc -aes-256-cbc -K KEY -iv IV` writes it.
Bytes aes_cbc_encrypt(std::span<const std::uint8_t> plaintext, const AesKey& key, std::span<const std::uint8_t, 16> iv);
/// The inverse, block by block, without checking or removing the padding:
/// what a device that decrypts with `key` writes, whatever the ciphertext
/// (its length must be a multiple of 16; std::invalid_argument otherwise).
Bytes aes_cbc_decrypt_raw(std::span<const std::uint8_t> ciphertext, const AesKey& key,
                          std::span<const std::uint8_t, 16> iv);

}  // namespace otarig::encryption
