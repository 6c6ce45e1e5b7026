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

}  // namespace otarig::encryption
