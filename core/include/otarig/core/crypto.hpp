#pragma once
// SHA-256, Ed25519, base64 and PEM through OpenSSL 3, with RAII handles.
#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace otarig::crypto {

using Bytes = std::vector<std::uint8_t>;
using Digest = std::array<std::uint8_t, 32>;
using PublicKey = std::array<std::uint8_t, 32>;
using Signature = std::array<std::uint8_t, 64>;
/// First 8 bytes of SHA-256 over the raw public key.
using KeyId = std::array<std::uint8_t, 8>;

Digest sha256(std::span<const std::uint8_t> data);
Digest sha256(std::string_view data);
std::string hex(std::span<const std::uint8_t> data);
/// Parses lowercase or uppercase hex; throws std::invalid_argument.
Bytes from_hex(std::string_view hex);

/// Standard base64 with padding and no line breaks (OpenSSL's EVP_EncodeBlock).
std::string base64_encode(std::string_view bytes);
/// Strict standard base64: only the text base64_encode writes (padding
/// required, no whitespace, unused bits zero); nullopt for anything else.
std::optional<std::string> base64_decode(std::string_view text);

/// Incremental SHA-256.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::span<const std::uint8_t> data);
  void update(std::string_view data);
  Digest finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

KeyId key_id(const PublicKey& key);

/// An Ed25519 private key. Move-only; the secret never leaves this object
/// except through save_pem().
class Ed25519Key {
 public:
  static Ed25519Key generate();
  /// Deterministic key from a 32-byte seed (test keys derived from a label).
  static Ed25519Key from_seed(std::span<const std::uint8_t, 32> seed);
  /// Deterministic test key for a label: seed = SHA-256("otarig test key:" + label).
  static Ed25519Key test_key(std::string_view label);
  /// Loads a PKCS#8 PEM private key; errors throw otarig::InputError naming the file.
  static Ed25519Key load_pem(const std::filesystem::path& file);

  ~Ed25519Key();
  Ed25519Key(Ed25519Key&&) noexcept;
  Ed25519Key& operator=(Ed25519Key&&) noexcept;
  Ed25519Key(const Ed25519Key&) = delete;
  Ed25519Key& operator=(const Ed25519Key&) = delete;

  void save_pem(const std::filesystem::path& file) const;
  std::string public_pem() const;
  const PublicKey& public_key() const { return public_; }
  KeyId id() const { return key_id(public_); }
  Signature sign(std::span<const std::uint8_t> message) const;

 private:
  struct Impl;
  explicit Ed25519Key(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  PublicKey public_{};
};

bool ed25519_verify(const PublicKey& key, std::span<const std::uint8_t> message, const Signature& signature);
/// Loads a public key from a PEM file (SubjectPublicKeyInfo) or a private key PEM.
PublicKey load_public_pem(const std::filesystem::path& file);
/// The Ed25519 public key as PEM (SubjectPublicKeyInfo), as OpenSSL's
/// PEM_write_bio_PUBKEY writes it.
std::string public_key_pem(const PublicKey& key);

}  // namespace otarig::crypto
