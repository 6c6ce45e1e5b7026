#include "otarig/core/encryption.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <functional>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "otarig/core/errors.hpp"
#include "otarig/core/openssl_ptr.hpp"

namespace otarig::encryption {
namespace {

using ossl::PkeyCtxPtr;
using ossl::PkeyPtr;
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, ossl::Deleter<EVP_CIPHER_CTX, EVP_CIPHER_CTX_free>>;

PkeyPtr private_key(const X25519Private& secret) {
  PkeyPtr k(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, secret.data(), secret.size()));
  if (!k) throw std::runtime_error("X25519: bad private key: " + ossl::last_error());
  return k;
}

PkeyPtr public_key(const X25519Public& pub) {
  PkeyPtr k(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, pub.data(), pub.size()));
  if (!k) throw std::runtime_error("X25519: bad public key: " + ossl::last_error());
  return k;
}

X25519Public public_of(EVP_PKEY* k) {
  X25519Public pub{};
  std::size_t len = pub.size();
  if (EVP_PKEY_get_raw_public_key(k, pub.data(), &len) != 1 || len != pub.size())
    throw std::runtime_error("X25519: cannot read public key: " + ossl::last_error());
  return pub;
}

// X25519(secret, peer); nullopt for a peer key that gives the all-zero secret.
std::optional<std::array<std::uint8_t, 32>> agree(const X25519Private& secret, const X25519Public& peer) {
  auto mine = private_key(secret);
  auto theirs = public_key(peer);
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new(mine.get(), nullptr));
  std::array<std::uint8_t, 32> out{};
  std::size_t len = out.size();
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 || EVP_PKEY_derive_set_peer(ctx.get(), theirs.get()) != 1 ||
      EVP_PKEY_derive(ctx.get(), out.data(), &len) != 1 || len != out.size())
    return std::nullopt;
  return out;
}

std::array<std::uint8_t, 32> kek(const std::array<std::uint8_t, 32>& shared, const X25519Public& ephemeral,
                                 const X25519Public& device) {
  Bytes info(kKdfInfo.begin(), kKdfInfo.end());
  info.insert(info.end(), ephemeral.begin(), ephemeral.end());
  info.insert(info.end(), device.begin(), device.end());
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr));
  std::array<std::uint8_t, 32> out{};
  std::size_t len = out.size();
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 || EVP_PKEY_CTX_set_hkdf_md(ctx.get(), EVP_sha256()) != 1 ||
      EVP_PKEY_CTX_set1_hkdf_key(ctx.get(), shared.data(), static_cast<int>(shared.size())) != 1 ||
      EVP_PKEY_CTX_add1_hkdf_info(ctx.get(), info.data(), static_cast<int>(info.size())) != 1 ||
      EVP_PKEY_derive(ctx.get(), out.data(), &len) != 1 || len != out.size())
    throw std::runtime_error("HKDF-SHA256 failed: " + ossl::last_error());
  return out;
}

// AES-256 key wrap (RFC 3394) of a 32-byte key: 40 bytes; unwrap: nullopt
// when the integrity check fails (another KEK).
std::optional<Bytes> key_wrap(const std::array<std::uint8_t, 32>& kek_bytes, std::span<const std::uint8_t> in,
                              bool wrap) {
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) throw std::runtime_error("AES key wrap: no context");
  EVP_CIPHER_CTX_set_flags(ctx.get(), EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  Bytes out(in.size() + 16);
  int len = 0, fin = 0;
  if (EVP_CipherInit_ex(ctx.get(), EVP_aes_256_wrap(), nullptr, kek_bytes.data(), nullptr, wrap ? 1 : 0) != 1)
    throw std::runtime_error("AES key wrap: " + ossl::last_error());
  if (EVP_CipherUpdate(ctx.get(), out.data(), &len, in.data(), static_cast<int>(in.size())) != 1 ||
      EVP_CipherFinal_ex(ctx.get(), out.data() + len, &fin) != 1) {
    if (wrap) throw std::runtime_error("AES key wrap: " + ossl::last_error());
    ossl::last_error();  // clear the queue
    return std::nullopt;
  }
  out.resize(static_cast<std::size_t>(len + fin));
  return out;
}

Bytes ctr(const std::array<std::uint8_t, 32>& key, std::span<const std::uint8_t, 16> counter,
          std::span<const std::uint8_t> in) {
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  Bytes out(in.size());
  int len = 0, fin = 0;
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_ctr(), nullptr, key.data(), counter.data()) != 1 ||
      (!in.empty() && EVP_EncryptUpdate(ctx.get(), out.data(), &len, in.data(), static_cast<int>(in.size())) != 1) ||
      EVP_EncryptFinal_ex(ctx.get(), out.data() + len, &fin) != 1)
    throw std::runtime_error("AES-256-CTR: " + ossl::last_error());
  return out;
}

template <std::size_t N>
std::array<std::uint8_t, N> derived(const std::optional<crypto::Digest>& seed, std::string_view what) {
  std::array<std::uint8_t, N> out{};
  if (seed) {
    static_assert(N <= 32);
    std::string label(what);
    label.append(reinterpret_cast<const char*>(seed->data()), seed->size());
    const auto d = crypto::sha256(label);
    std::copy_n(d.begin(), N, out.begin());
  } else if (RAND_bytes(out.data(), static_cast<int>(N)) != 1) {
    throw std::runtime_error("no random bytes: " + ossl::last_error());
  }
  return out;
}

}  // namespace

DeviceKey DeviceKey::from_secret(std::span<const std::uint8_t, 32> secret) {
  DeviceKey k;
  std::copy(secret.begin(), secret.end(), k.secret.begin());
  k.pub = public_of(private_key(k.secret).get());
  return k;
}

DeviceKey DeviceKey::test_key(std::string_view label) {
  const auto seed = crypto::sha256(std::string("otarig test device key:") + std::string(label));
  return from_secret(std::span<const std::uint8_t, 32>(seed));
}

DeviceKey DeviceKey::load_pem(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot read the device key", file));
  std::stringstream ss;
  ss << in.rdbuf();
  const auto pem = ss.str();
  ossl::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  X25519Private secret{};
  std::size_t len = secret.size();
  if (!key || EVP_PKEY_get_id(key.get()) != EVP_PKEY_X25519 ||
      EVP_PKEY_get_raw_private_key(key.get(), secret.data(), &len) != 1 || len != secret.size()) {
    ossl::last_error();
    throw InputError(fmt::format("{}: not an X25519 private key in PEM", file));
  }
  return from_secret(secret);
}

DeviceKey DeviceKey::load_ref(const std::string& ref) {
  if (ref.rfind("test:", 0) == 0) return test_key(ref.substr(5));
  return load_pem(ref);
}

X25519Public load_public(const std::string& text, const std::string& what) {
  if (text.size() == 64 && std::all_of(text.begin(), text.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); })) {
    const auto raw = crypto::from_hex(text);
    X25519Public pub{};
    std::copy(raw.begin(), raw.end(), pub.begin());
    return pub;
  }
  std::ifstream in(text, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: '{}' is neither 64 hex digits nor a readable PEM file", what, text));
  std::stringstream ss;
  ss << in.rdbuf();
  const auto pem = ss.str();
  ossl::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  PkeyPtr key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    ossl::last_error();
    ossl::BioPtr again(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    key.reset(PEM_read_bio_PrivateKey(again.get(), nullptr, nullptr, nullptr));
  }
  if (!key || EVP_PKEY_get_id(key.get()) != EVP_PKEY_X25519)
    throw InputError(fmt::format("{}: {}: not an X25519 key in PEM", what, text));
  return public_of(key.get());
}

Bytes encrypt(std::span<const std::uint8_t> plaintext_image, const X25519Public& device, const crypto::Ed25519Key& key,
              const std::optional<crypto::Digest>& seed) {
  const auto inner = image::parse(plaintext_image, "plaintext image");
  if (inner.header.flags & image::kFlagEncrypted)
    throw InputError("plaintext image: it is encrypted already (header.flags has kFlagEncrypted)");
  const auto plain = plaintext_image.first(inner.total_size);
  const auto ephemeral = DeviceKey::from_secret(derived<32>(seed, "ephemeral"));
  const auto content_key = derived<32>(seed, "content key");
  const auto counter = derived<16>(seed, "counter");
  const auto shared = agree(ephemeral.secret, device);
  if (!shared) throw InputError("encrypt: the device's X25519 public key is not usable (a small-order point)");
  const auto wrapped = key_wrap(kek(*shared, ephemeral.pub, device), content_key, true);
  Bytes block(ephemeral.pub.begin(), ephemeral.pub.end());
  block.insert(block.end(), wrapped->begin(), wrapped->end());
  block.insert(block.end(), counter.begin(), counter.end());
  const auto cipher = ctr(content_key, counter, plain);
  block.insert(block.end(), cipher.begin(), cipher.end());
  image::Header h = inner.header;
  h.flags |= image::kFlagEncrypted;
  return image::build(h, block, key);
}

std::optional<Bytes> decrypt(const image::Parsed& outer, const DeviceKey& device, std::string* why) {
  auto fail = [&](std::string s) -> std::optional<Bytes> {
    if (why) *why = std::move(s);
    return std::nullopt;
  };
  if (!(outer.header.flags & image::kFlagEncrypted)) return fail("not an encrypted image");
  if (outer.payload.size() < kBlockHeaderSize)
    return fail(fmt::format("encrypted block of {} bytes is shorter than its {}-byte header", outer.payload.size(),
                            kBlockHeaderSize));
  X25519Public ephemeral{};
  std::copy_n(outer.payload.begin(), 32, ephemeral.begin());
  const auto shared = agree(device.secret, ephemeral);
  if (!shared) return fail("the ephemeral key is not usable");
  const auto content_key = key_wrap(kek(*shared, ephemeral, device.pub), outer.payload.subspan(32, 40), false);
  if (!content_key || content_key->size() != 32)
    return fail("the content key does not unwrap with this device's key (encrypted for another device)");
  std::array<std::uint8_t, 32> k{};
  std::copy(content_key->begin(), content_key->end(), k.begin());
  return ctr(k, outer.payload.subspan(72).first<16>(), outer.payload.subspan(kBlockHeaderSize));
}

bool contains(std::span<const std::uint8_t> bytes, std::span<const std::uint8_t> needle) {
  if (needle.empty()) return true;
  return std::search(bytes.begin(), bytes.end(), std::boyer_moore_horspool_searcher(needle.begin(), needle.end())) !=
         bytes.end();
}

StreamSearch::StreamSearch(Bytes needle) : needle_(std::move(needle)) {
  if (needle_.empty()) throw std::invalid_argument("StreamSearch: empty needle");
  tail_.reserve(needle_.size() - 1);
}

std::optional<std::uint64_t> StreamSearch::feed(std::span<const std::uint8_t> piece) {
  if (found_ || piece.empty()) {
    fed_ += piece.size();
    return found_;
  }
  const std::size_t n = needle_.size();
  // A match that starts in the tail ends within the piece's first n-1 bytes:
  // search the tail joined to them (at most 2n-2 bytes), then the piece itself.
  if (!tail_.empty()) {
    Bytes seam(tail_);
    seam.insert(seam.end(), piece.begin(), piece.begin() + static_cast<std::ptrdiff_t>(std::min(piece.size(), n - 1)));
    auto it = std::search(seam.begin(), seam.end(), needle_.begin(), needle_.end());
    if (it != seam.end() && static_cast<std::size_t>(it - seam.begin()) < tail_.size())
      found_ = fed_ - tail_.size() + static_cast<std::uint64_t>(it - seam.begin());
  }
  if (!found_) {
    auto it = std::search(piece.begin(), piece.end(), std::boyer_moore_horspool_searcher(needle_.begin(), needle_.end()));
    if (it != piece.end()) found_ = fed_ + static_cast<std::uint64_t>(it - piece.begin());
  }
  fed_ += piece.size();
  // Keep the stream's last n-1 bytes.
  if (piece.size() >= n - 1) {
    tail_.assign(piece.end() - static_cast<std::ptrdiff_t>(n - 1), piece.end());
  } else {
    tail_.insert(tail_.end(), piece.begin(), piece.end());
    if (tail_.size() > n - 1) tail_.erase(tail_.begin(), tail_.end() - static_cast<std::ptrdiff_t>(n - 1));
  }
  return found_;
}

AesKey AesKey::test_key(std::string_view label) {
  AesKey k;
  const auto key = crypto::sha256(std::string("otarig test aes key:") + std::string(label));
  const auto iv = crypto::sha256(std::string("otarig test aes iv:") + std::string(label));
  k.key.assign(key.begin(), key.end());
  std::copy_n(iv.begin(), k.iv.size(), k.iv.begin());
  return k;
}

AesKey AesKey::parse(std::string_view text, const std::string& origin) {
  std::vector<std::string> words;
  std::string word;
  for (char c : text) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      if (!word.empty()) words.push_back(std::move(word));
      word.clear();
    } else {
      word += c;
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  if (words.size() != 2)
    throw InputError(fmt::format("{}: expected SWUpdate's key file, two hex words: the key and the IV (found {} words)",
                                 origin, words.size()));
  AesKey k;
  try {
    k.key = crypto::from_hex(words[0]);
    const auto iv = crypto::from_hex(words[1]);
    if (iv.size() != k.iv.size()) throw std::invalid_argument("size");
    std::copy(iv.begin(), iv.end(), k.iv.begin());
  } catch (const std::invalid_argument&) {
    throw InputError(fmt::format("{}: the key and the IV must be hex, the IV 32 digits", origin));
  }
  if (k.key.size() != 16 && k.key.size() != 24 && k.key.size() != 32)
    throw InputError(fmt::format("{}: the key has {} hex digits; AES takes 32, 48 or 64", origin, 2 * k.key.size()));
  return k;
}

AesKey AesKey::load_ref(const std::string& ref) {
  if (ref.rfind("test:", 0) == 0) return test_key(ref.substr(5));
  std::ifstream in(ref, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot read the AES key file", ref));
  std::stringstream ss;
  ss << in.rdbuf();
  const auto text = ss.str();
  if (text.size() > 4096) throw InputError(fmt::format("{}: not an AES key file (over 4 KiB)", ref));
  return parse(text, ref);
}

std::string AesKey::file_text() const { return crypto::hex(key) + " " + crypto::hex(iv) + "\n"; }

namespace {

const EVP_CIPHER* cbc_cipher(const AesKey& key) {
  switch (key.key.size()) {
    case 16: return EVP_aes_128_cbc();
    case 24: return EVP_aes_192_cbc();
    case 32: return EVP_aes_256_cbc();
    default: throw std::invalid_argument(fmt::format("AES-CBC: a {}-byte key", key.key.size()));
  }
}

Bytes cbc(std::span<const std::uint8_t> in, const AesKey& key, std::span<const std::uint8_t, 16> iv, bool encrypt) {
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  Bytes out(in.size() + 16);
  int len = 0, fin = 0;
  if (!ctx || EVP_CipherInit_ex(ctx.get(), cbc_cipher(key), nullptr, key.key.data(), iv.data(), encrypt ? 1 : 0) != 1 ||
      (!encrypt && EVP_CIPHER_CTX_set_padding(ctx.get(), 0) != 1) ||
      (!in.empty() && EVP_CipherUpdate(ctx.get(), out.data(), &len, in.data(), static_cast<int>(in.size())) != 1) ||
      EVP_CipherFinal_ex(ctx.get(), out.data() + len, &fin) != 1)
    throw std::runtime_error("AES-CBC: " + ossl::last_error());
  out.resize(static_cast<std::size_t>(len + fin));
  return out;
}

}  // namespace

Bytes aes_cbc_encrypt(std::span<const std::uint8_t> plaintext, const AesKey& key, std::span<const std::uint8_t, 16> iv) {
  return cbc(plaintext, key, iv, true);
}

Bytes aes_cbc_decrypt_raw(std::span<const std::uint8_t> ciphertext, const AesKey& key,
                          std::span<const std::uint8_t, 16> iv) {
  if (ciphertext.size() % 16 != 0) throw std::invalid_argument("AES-CBC: ciphertext not a multiple of 16 bytes");
  return cbc(ciphertext, key, iv, false);
}

}  // namespace otarig::encryption
