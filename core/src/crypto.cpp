#include "otarig/core/crypto.hpp"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <stdexcept>

#include "otarig/core/errors.hpp"
#include "otarig/core/openssl_ptr.hpp"

namespace otarig::ossl {

std::string last_error() {
  unsigned long e = ERR_get_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

}  // namespace otarig::ossl

namespace otarig::crypto {
namespace {

using ossl::BioPtr;
using ossl::Deleter;
using ossl::MdCtxPtr;
using ossl::PkeyPtr;
void close_file(FILE* f) { std::fclose(f); }
using FilePtr = std::unique_ptr<FILE, Deleter<FILE, close_file>>;

std::string openssl_error() { return ossl::last_error(); }

PublicKey raw_public(EVP_PKEY* key) {
  PublicKey pub{};
  std::size_t len = pub.size();
  if (EVP_PKEY_get_raw_public_key(key, pub.data(), &len) != 1 || len != pub.size())
    throw std::runtime_error("Ed25519: cannot read public key: " + openssl_error());
  return pub;
}

std::string pem_of(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), key) != 1)
    throw std::runtime_error("cannot encode public key: " + openssl_error());
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
  if (bytes.size() > static_cast<std::size_t>(INT_MAX) / 4 * 3)
    throw std::length_error("base64: more than 1.5 GiB to encode");
  std::string out((bytes.size() + 2) / 3 * 4 + 1, '\0');  // EVP_EncodeBlock writes a terminating NUL
  const int n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0 || text.size() > static_cast<std::size_t>(INT_MAX)) return std::nullopt;
  std::string out(text.size() / 4 * 3, '\0');
  const int n =
      EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock turns the padding into zero bytes, skips surrounding
  // whitespace and leaves unused bits unchecked: the text is accepted only
  // when it is exactly what encoding the bytes gives back.
  const std::size_t pad = text.ends_with("==") ? 2 : text.ends_with('=') ? 1 : 0;
  if (static_cast<std::size_t>(n) < pad) return std::nullopt;
  out.resize(static_cast<std::size_t>(n) - pad);
  if (base64_encode(out) != text) return std::nullopt;
  return out;
}

Digest sha256(std::span<const std::uint8_t> data) {
  Digest d{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), d.data(), &len, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("SHA-256 failed: " + openssl_error());
  return d;
}

Digest sha256(std::string_view data) {
  return sha256(std::span(reinterpret_cast<const std::uint8_t*>(data.data()), data.size()));
}

std::string hex(std::span<const std::uint8_t> data) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.resize(data.size() * 2);
  for (std::size_t i = 0; i < data.size(); ++i) {
    out[2 * i] = digits[data[i] >> 4];
    out[2 * i + 1] = digits[data[i] & 15];
  }
  return out;
}

Bytes from_hex(std::string_view text) {
  auto nibble = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    throw std::invalid_argument(fmt::format("not a hex digit: '{}'", c));
  };
  if (text.size() % 2) throw std::invalid_argument("odd number of hex digits");
  Bytes out(text.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<std::uint8_t>(nibble(text[2 * i]) << 4 | nibble(text[2 * i + 1]));
  return out;
}

struct Sha256::Impl {
  MdCtxPtr ctx{EVP_MD_CTX_new()};
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  if (!impl_->ctx || EVP_DigestInit_ex(impl_->ctx.get(), EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("SHA-256 init failed: " + openssl_error());
}
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::update(std::span<const std::uint8_t> data) {
  if (!impl_) throw std::logic_error("Sha256 used after move");
  if (EVP_DigestUpdate(impl_->ctx.get(), data.data(), data.size()) != 1)
    throw std::runtime_error("SHA-256 update failed: " + openssl_error());
}
void Sha256::update(std::string_view data) {
  update(std::span(reinterpret_cast<const std::uint8_t*>(data.data()), data.size()));
}
Digest Sha256::finish() {
  if (!impl_) throw std::logic_error("Sha256 used after move");
  Digest d{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(impl_->ctx.get(), d.data(), &len) != 1)
    throw std::runtime_error("SHA-256 final failed: " + openssl_error());
  return d;
}

KeyId key_id(const PublicKey& key) {
  auto d = sha256(std::span<const std::uint8_t>(key));
  KeyId id{};
  std::copy_n(d.begin(), id.size(), id.begin());
  return id;
}

struct Ed25519Key::Impl {
  PkeyPtr key;
};

Ed25519Key::Ed25519Key(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
  public_ = raw_public(impl_->key.get());
}
Ed25519Key::~Ed25519Key() = default;
Ed25519Key::Ed25519Key(Ed25519Key&&) noexcept = default;
Ed25519Key& Ed25519Key::operator=(Ed25519Key&&) noexcept = default;

Ed25519Key Ed25519Key::generate() {
  EVP_PKEY* raw = nullptr;
  ossl::PkeyCtxPtr ctx(
      EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr));
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_keygen(ctx.get(), &raw) != 1)
    throw std::runtime_error("Ed25519 key generation failed: " + openssl_error());
  auto impl = std::make_unique<Impl>();
  impl->key.reset(raw);
  return Ed25519Key(std::move(impl));
}

Ed25519Key Ed25519Key::from_seed(std::span<const std::uint8_t, 32> seed) {
  auto impl = std::make_unique<Impl>();
  impl->key.reset(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed.data(), seed.size()));
  if (!impl->key) throw std::runtime_error("Ed25519 key from seed failed: " + openssl_error());
  return Ed25519Key(std::move(impl));
}

Ed25519Key Ed25519Key::test_key(std::string_view label) {
  auto seed = sha256(std::string("otarig test key:") + std::string(label));
  return from_seed(std::span<const std::uint8_t, 32>(seed));
}

Ed25519Key Ed25519Key::load_pem(const std::filesystem::path& file) {
  FilePtr fp(std::fopen(file.c_str(), "rb"));
  if (!fp) throw InputError(fmt::format("{}: cannot read key file", file.string()));
  auto impl = std::make_unique<Impl>();
  impl->key.reset(PEM_read_PrivateKey(fp.get(), nullptr, nullptr, nullptr));
  if (!impl->key) throw InputError(fmt::format("{}: not a PEM private key ({})", file.string(), openssl_error()));
  if (EVP_PKEY_get_id(impl->key.get()) != EVP_PKEY_ED25519)
    throw InputError(fmt::format("{}: not an Ed25519 key", file.string()));
  return Ed25519Key(std::move(impl));
}

void Ed25519Key::save_pem(const std::filesystem::path& file) const {
  FilePtr fp(std::fopen(file.c_str(), "wb"));
  if (!fp) throw BenchError(fmt::format("{}: cannot write key file", file.string()));
  if (PEM_write_PrivateKey(fp.get(), impl_->key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
    throw BenchError(fmt::format("{}: cannot write key: {}", file.string(), openssl_error()));
}

std::string Ed25519Key::public_pem() const { return pem_of(impl_->key.get()); }

Signature Ed25519Key::sign(std::span<const std::uint8_t> message) const {
  if (!impl_) throw std::logic_error("Ed25519Key used after move");
  MdCtxPtr ctx(EVP_MD_CTX_new());
  Signature sig{};
  std::size_t len = sig.size();
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, impl_->key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), sig.data(), &len, message.data(), message.size()) != 1)
    throw std::runtime_error("Ed25519 sign failed: " + openssl_error());
  return sig;
}

bool ed25519_verify(const PublicKey& key, std::span<const std::uint8_t> message, const Signature& signature) {
  PkeyPtr pkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, key.data(), key.size()));
  if (!pkey) return false;
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()) != 1) return false;
  int rc = EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), message.data(), message.size());
  ERR_clear_error();
  return rc == 1;
}

PublicKey load_public_pem(const std::filesystem::path& file) {
  FilePtr fp(std::fopen(file.c_str(), "rb"));
  if (!fp) throw InputError(fmt::format("{}: cannot read key file", file.string()));
  PkeyPtr key(PEM_read_PUBKEY(fp.get(), nullptr, nullptr, nullptr));
  if (!key) {
    std::rewind(fp.get());
    ERR_clear_error();
    key.reset(PEM_read_PrivateKey(fp.get(), nullptr, nullptr, nullptr));
  }
  if (!key) throw InputError(fmt::format("{}: not a PEM key ({})", file.string(), openssl_error()));
  if (EVP_PKEY_get_id(key.get()) != EVP_PKEY_ED25519)
    throw InputError(fmt::format("{}: not an Ed25519 key", file.string()));
  return raw_public(key.get());
}

std::string public_key_pem(const PublicKey& key) {
  PkeyPtr pkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, key.data(), key.size()));
  if (!pkey) throw std::runtime_error("Ed25519: cannot make a public key: " + openssl_error());
  return pem_of(pkey.get());
}

}  // namespace otarig::crypto
