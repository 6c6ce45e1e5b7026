#include "otarig/core/image.hpp"

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>

#include "otarig/core/errors.hpp"

namespace otarig::image {
namespace {

// Header field offsets (docs/image-format.md).
constexpr std::size_t kOffMagic = 0;
constexpr std::size_t kOffHeaderSize = 4;
constexpr std::size_t kOffFormat = 6;
constexpr std::size_t kOffMajor = 8;
constexpr std::size_t kOffMinor = 9;
constexpr std::size_t kOffPatch = 10;
constexpr std::size_t kOffBuild = 12;
constexpr std::size_t kOffCounter = 16;
constexpr std::size_t kOffPayloadSize = 20;
constexpr std::size_t kOffFlags = 24;
constexpr std::size_t kOffDeviceType = 28;
constexpr std::size_t kOffImageIndex = 36;
constexpr std::size_t kOffNeedsImage = 37;
constexpr std::size_t kOffNeedsReserved = 38;  // 38..39: zero
constexpr std::size_t kOffNeedsVersion = 40;   // major, minor, patch (2), build (4)
// The delta work's part of the reserved bytes: the base id of a delta (docs/image-format.md).
constexpr std::size_t kOffDeltaBase = 48;
constexpr std::size_t kDeltaBaseEnd = 56;
constexpr std::size_t kOffSigningTime = 56;  // u64, UNIX seconds; 0 = absent

// Trailer field offsets.
constexpr std::size_t kOffTrailerMagic = 0;
constexpr std::size_t kOffKeyId = 4;
constexpr std::size_t kOffTrailerReserved = 12;
constexpr std::size_t kOffDigest = 16;
constexpr std::size_t kOffSignature = 48;
static_assert(kOffSignature + 64 == kTrailerSize);

constexpr std::uint16_t kFormat = 1;

void put64(std::uint8_t* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
std::uint64_t get64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
  return v;
}
void put16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v);
  p[1] = static_cast<std::uint8_t>(v >> 8);
}
void put32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
std::uint16_t get16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] | p[1] << 8); }
std::uint32_t get32(const std::uint8_t* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = v << 8 | p[i];
  return v;
}

// Index of the first nonzero byte in [first, last), or `last`.
std::size_t first_nonzero(std::span<const std::uint8_t> bytes, std::size_t first, std::size_t last) {
  for (std::size_t i = first; i < last; ++i)
    if (bytes[i] != 0) return i;
  return last;
}

template <class T>
T parse_component(std::string_view text, std::string_view part, std::string_view whole) {
  std::uint64_t v = 0;
  const char* first = text.data();
  const char* last = text.data() + text.size();
  auto [p, ec] = std::from_chars(first, last, v);
  if (text.empty() || ec != std::errc() || p != last)
    throw InputError(fmt::format("version '{}': {} '{}' is not a decimal number", whole, part, text));
  if (v > std::numeric_limits<T>::max())
    throw InputError(fmt::format("version '{}': {} {} is out of range (at most {})", whole, part, v,
                                 std::numeric_limits<T>::max()));
  return static_cast<T>(v);
}

Bytes copy_of(std::span<const std::uint8_t> img) { return Bytes(img.begin(), img.end()); }

// Offset of the trailer of a structurally valid image.
std::size_t trailer_offset(const Parsed& p) { return p.signed_part.size(); }

}  // namespace

// ---------------------------------------------------------------------------- Version

Version Version::parse(std::string_view text) {
  std::string_view core = text;
  std::string_view build_text;
  if (auto plus = text.find('+'); plus != std::string_view::npos) {
    core = text.substr(0, plus);
    build_text = text.substr(plus + 1);
    if (build_text.empty()) throw InputError(fmt::format("version '{}': empty build number after '+'", text));
  }
  std::string_view parts[3];
  std::size_t n = 0;
  std::size_t start = 0;
  while (true) {
    auto dot = core.find('.', start);
    if (n == 3) throw InputError(fmt::format("version '{}': expected MAJOR.MINOR.PATCH[+BUILD]", text));
    parts[n++] = core.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (n != 3) throw InputError(fmt::format("version '{}': expected MAJOR.MINOR.PATCH[+BUILD]", text));
  Version v;
  v.major = parse_component<std::uint8_t>(parts[0], "major", text);
  v.minor = parse_component<std::uint8_t>(parts[1], "minor", text);
  v.patch = parse_component<std::uint16_t>(parts[2], "patch", text);
  if (!build_text.empty()) v.build = parse_component<std::uint32_t>(build_text, "build", text);
  return v;
}

std::string Version::str() const {
  if (build == 0) return fmt::format("{}.{}.{}", major, minor, patch);
  return fmt::format("{}.{}.{}+{}", major, minor, patch, build);
}

// ---------------------------------------------------------------------------- layout

DeviceType device_type_id(std::string_view name) {
  DeviceType out{};
  if (name.empty()) return out;
  const auto d = crypto::sha256(name);
  std::copy_n(d.begin(), out.size(), out.begin());
  return out;
}

void encode_header(const Header& h, std::span<std::uint8_t, kHeaderSize> out) {
  std::fill(out.begin(), out.end(), std::uint8_t{0});
  auto* p = out.data();
  put32(p + kOffMagic, h.magic);
  put16(p + kOffHeaderSize, h.header_size);
  put16(p + kOffFormat, h.format);
  p[kOffMajor] = h.version.major;
  p[kOffMinor] = h.version.minor;
  put16(p + kOffPatch, h.version.patch);
  put32(p + kOffBuild, h.version.build);
  put32(p + kOffCounter, h.security_counter);
  put32(p + kOffPayloadSize, h.payload_size);
  put32(p + kOffFlags, h.flags);
  put64(p + kOffSigningTime, h.signing_time);
  std::copy(h.device_type.begin(), h.device_type.end(), p + kOffDeviceType);
  p[kOffImageIndex] = h.image_index;
  p[kOffNeedsImage] = h.needs_image;
  p[kOffNeedsVersion] = h.needs_version.major;
  p[kOffNeedsVersion + 1] = h.needs_version.minor;
  put16(p + kOffNeedsVersion + 2, h.needs_version.patch);
  put32(p + kOffNeedsVersion + 4, h.needs_version.build);
  std::copy(h.delta_base.begin(), h.delta_base.end(), p + kOffDeltaBase);
}

Header decode_header(std::span<const std::uint8_t, kHeaderSize> in) {
  const auto* p = in.data();
  Header h;
  h.magic = get32(p + kOffMagic);
  h.header_size = get16(p + kOffHeaderSize);
  h.format = get16(p + kOffFormat);
  h.version.major = p[kOffMajor];
  h.version.minor = p[kOffMinor];
  h.version.patch = get16(p + kOffPatch);
  h.version.build = get32(p + kOffBuild);
  h.security_counter = get32(p + kOffCounter);
  h.payload_size = get32(p + kOffPayloadSize);
  h.flags = get32(p + kOffFlags);
  h.signing_time = get64(p + kOffSigningTime);
  std::copy_n(p + kOffDeviceType, h.device_type.size(), h.device_type.begin());
  h.image_index = p[kOffImageIndex];
  h.needs_image = p[kOffNeedsImage];
  h.needs_version.major = p[kOffNeedsVersion];
  h.needs_version.minor = p[kOffNeedsVersion + 1];
  h.needs_version.patch = get16(p + kOffNeedsVersion + 2);
  h.needs_version.build = get32(p + kOffNeedsVersion + 4);
  std::copy_n(p + kOffDeltaBase, h.delta_base.size(), h.delta_base.begin());
  return h;
}

void encode_trailer(const Trailer& t, std::span<std::uint8_t, kTrailerSize> out) {
  std::fill(out.begin(), out.end(), std::uint8_t{0});
  auto* p = out.data();
  put32(p + kOffTrailerMagic, t.magic);
  std::copy(t.key_id.begin(), t.key_id.end(), p + kOffKeyId);
  std::copy(t.sha256.begin(), t.sha256.end(), p + kOffDigest);
  std::copy(t.signature.begin(), t.signature.end(), p + kOffSignature);
}

Trailer decode_trailer(std::span<const std::uint8_t, kTrailerSize> in) {
  const auto* p = in.data();
  Trailer t;
  t.magic = get32(p + kOffTrailerMagic);
  std::copy_n(p + kOffKeyId, t.key_id.size(), t.key_id.begin());
  std::copy_n(p + kOffDigest, t.sha256.size(), t.sha256.begin());
  std::copy_n(p + kOffSignature, t.signature.size(), t.signature.begin());
  return t;
}

Parsed parse(std::span<const std::uint8_t> bytes, std::string_view name) {
  if (bytes.size() < kHeaderSize)
    throw InputError(fmt::format("{}: header: {} bytes is shorter than the {}-byte header", name,
                                 bytes.size(), kHeaderSize));
  Parsed out;
  out.header = decode_header(bytes.first<kHeaderSize>());
  const Header& h = out.header;
  if (h.magic != kHeaderMagic)
    throw InputError(
        fmt::format("{}: header.magic: expected {:#010x}, found {:#010x}", name, kHeaderMagic, h.magic));
  if (h.header_size != kHeaderSize)
    throw InputError(
        fmt::format("{}: header.header_size: expected {}, found {}", name, kHeaderSize, h.header_size));
  if (h.format != kFormat)
    throw InputError(fmt::format("{}: header.format: expected {}, found {}", name, kFormat, h.format));
  if (auto i = first_nonzero(bytes, kOffNeedsReserved, kOffNeedsVersion); i != kOffNeedsVersion)
    throw InputError(
        fmt::format("{}: header.reserved: byte at offset {} is {:#04x}, expected zero", name, i, bytes[i]));
  if (h.flags & kFlagsMultiReserved)
    throw InputError(fmt::format("{}: header.flags: {:#x} sets a reserved bit (bits 4..7 must be zero)", name,
                                 h.flags & kFlagsMultiReserved));
  if (h.image_index >= kMaxImages)
    throw InputError(fmt::format("{}: header.image_index: {} is not 0..{}", name, h.image_index, kMaxImages - 1));
  if (h.needs_image > kMaxImages)
    throw InputError(fmt::format("{}: header.needs_image: {} is not 0 (none) or 1..{} (image index + 1)", name,
                                 h.needs_image, kMaxImages));
  if (h.needs_image == h.image_index + 1u)
    throw InputError(fmt::format("{}: header.needs_image: image {} cannot need itself", name, h.image_index));
  if (h.needs_image == 0 && h.needs_version != Version{})
    throw InputError(fmt::format("{}: header.needs_version: {} without header.needs_image", name,
                                 h.needs_version.str()));
  const bool names_base = first_nonzero(bytes, kOffDeltaBase, kDeltaBaseEnd) != kDeltaBaseEnd;
  if (names_base && !(h.flags & kFlagDelta))
    throw InputError(fmt::format("{}: header.delta_base: nonzero, but the delta flag (bit 2) is clear", name));
  if (!names_base && (h.flags & kFlagDelta))
    throw InputError(fmt::format("{}: header.delta_base: zero, but the delta flag (bit 2) is set", name));
  const std::size_t after_header = bytes.size() - kHeaderSize;
  if (h.payload_size > after_header)
    throw InputError(fmt::format("{}: header.payload_size: {} bytes, but only {} bytes follow the header",
                                 name, h.payload_size, after_header));
  const std::size_t signed_size = kHeaderSize + h.payload_size;
  if (bytes.size() - signed_size < kTrailerSize)
    throw InputError(fmt::format("{}: trailer: missing ({} bytes after the payload, the trailer needs {})",
                                 name, bytes.size() - signed_size, kTrailerSize));
  auto trailer_bytes = bytes.subspan(signed_size).first<kTrailerSize>();
  out.trailer = decode_trailer(trailer_bytes);
  if (out.trailer.magic != kTrailerMagic)
    throw InputError(fmt::format("{}: trailer.magic: expected {:#010x}, found {:#010x}", name, kTrailerMagic,
                                 out.trailer.magic));
  if (auto i = first_nonzero(trailer_bytes, kOffTrailerReserved, kOffDigest); i != kOffDigest)
    throw InputError(fmt::format("{}: trailer.reserved: byte at offset {} is {:#04x}, expected zero", name,
                                 signed_size + i, trailer_bytes[i]));
  out.signed_part = bytes.first(signed_size);
  out.payload = bytes.subspan(kHeaderSize, h.payload_size);
  out.total_size = signed_size + kTrailerSize;
  return out;
}

// ---------------------------------------------------------------------------- signing

Bytes signing_message(const crypto::Digest& digest) {
  Bytes m(kSignContext.size() + digest.size());
  std::memcpy(m.data(), kSignContext.data(), kSignContext.size());
  std::memcpy(m.data() + kSignContext.size(), digest.data(), digest.size());
  return m;
}

Bytes build(const Header& header, std::span<const std::uint8_t> payload, const crypto::Ed25519Key& key) {
  if (payload.size() > std::numeric_limits<std::uint32_t>::max())
    throw InputError(
        fmt::format("image payload of {} bytes does not fit the 32-bit payload_size", payload.size()));
  Header h = header;
  h.payload_size = static_cast<std::uint32_t>(payload.size());
  Bytes out(kHeaderSize + payload.size() + kTrailerSize);
  encode_header(h, std::span<std::uint8_t, kHeaderSize>(out.data(), kHeaderSize));
  std::copy(payload.begin(), payload.end(), out.begin() + kHeaderSize);
  Trailer t;
  t.key_id = key.id();
  t.sha256 = crypto::sha256(std::span<const std::uint8_t>(out.data(), kHeaderSize + payload.size()));
  t.signature = key.sign(signing_message(t.sha256));
  encode_trailer(
      t, std::span<std::uint8_t, kTrailerSize>(out.data() + kHeaderSize + payload.size(), kTrailerSize));
  return out;
}

Check check(std::span<const std::uint8_t> bytes, std::span<const crypto::PublicKey> trusted) {
  Check c;
  Parsed p;
  try {
    p = parse(bytes, "image");
  } catch (const InputError& e) {
    c.reason = e.what();
    return c;
  }
  c.structure_ok = true;
  crypto::Digest actual{};
  try {
    actual = crypto::sha256(p.signed_part);
  } catch (const std::exception& e) {
    c.reason = fmt::format("image: SHA-256 failed: {}", e.what());
    return c;
  }
  c.hash_ok = actual == p.trailer.sha256;
  const crypto::PublicKey* key = nullptr;
  for (const auto& k : trusted) {
    if (crypto::key_id(k) == p.trailer.key_id) {
      key = &k;
      break;
    }
  }
  c.key_known = key != nullptr;
  // The signature covers the digest the trailer states; hash_ok says whether the content matches it.
  if (key)
    c.signature_ok = crypto::ed25519_verify(*key, signing_message(p.trailer.sha256), p.trailer.signature);
  if (!c.hash_ok && (p.header.flags & kFlagDelta))
    c.reason = "image: a delta: its trailer states the digest of the image it assembles, checked only once it is "
               "applied to its base (otarig image apply)";
  else if (!c.hash_ok)
    c.reason = fmt::format("image: trailer.sha256: header+payload hash to {}, the trailer states {}",
                           crypto::hex(actual), crypto::hex(p.trailer.sha256));
  else if (!c.key_known)
    c.reason = fmt::format("image: trailer.key_id: {} is not a trusted key", crypto::hex(p.trailer.key_id));
  else if (!c.signature_ok)
    c.reason = fmt::format("image: trailer.signature: not a valid signature by key {}",
                           crypto::hex(p.trailer.key_id));
  return c;
}

// ---------------------------------------------------------------------------- test content

Bytes synthetic_payload(std::size_t size, std::string_view label) {
  // Block i is SHA-256(seed || u64le(i)) with seed = SHA-256("otarig synthetic payload:" || label).
  std::string prefix = "otarig synthetic payload:";
  prefix.append(label);
  const crypto::Digest seed = crypto::sha256(prefix);

  struct MdDeleter {
    void operator()(EVP_MD* p) const noexcept { EVP_MD_free(p); }
  };
  struct CtxDeleter {
    void operator()(EVP_MD_CTX* p) const noexcept { EVP_MD_CTX_free(p); }
  };
  std::unique_ptr<EVP_MD, MdDeleter> md(EVP_MD_fetch(nullptr, "SHA256", nullptr));
  std::unique_ptr<EVP_MD_CTX, CtxDeleter> ctx(EVP_MD_CTX_new());
  if (!md || !ctx) throw std::runtime_error("synthetic_payload: cannot set up SHA-256");

  Bytes out(size);
  std::uint8_t block_input[40];
  std::copy(seed.begin(), seed.end(), block_input);
  std::uint8_t block[32];
  for (std::size_t offset = 0, index = 0; offset < size; offset += sizeof block, ++index) {
    for (int b = 0; b < 8; ++b)
      block_input[32 + b] = static_cast<std::uint8_t>(static_cast<std::uint64_t>(index) >> (8 * b));
    unsigned int len = 0;
    if (EVP_DigestInit_ex2(ctx.get(), md.get(), nullptr) != 1 ||
        EVP_DigestUpdate(ctx.get(), block_input, sizeof block_input) != 1 ||
        EVP_DigestFinal_ex(ctx.get(), block, &len) != 1)
      throw std::runtime_error("synthetic_payload: SHA-256 failed");
    std::copy_n(block, std::min(sizeof block, size - offset),
                out.begin() + static_cast<std::ptrdiff_t>(offset));
  }
  return out;
}

// ---------------------------------------------------------------------------- tamper

namespace tamper {

Bytes flip_bit(std::span<const std::uint8_t> img, std::size_t offset, unsigned bit) {
  if (offset >= img.size())
    throw InputError(
        fmt::format("tamper flip-bit: offset {} is beyond the image ({} bytes)", offset, img.size()));
  if (bit > 7) throw InputError(fmt::format("tamper flip-bit: bit {} is not 0..7", bit));
  Bytes out = copy_of(img);
  out[offset] ^= static_cast<std::uint8_t>(1u << bit);
  return out;
}

Bytes truncate(std::span<const std::uint8_t> img, std::size_t new_size) {
  if (new_size > img.size())
    throw InputError(fmt::format("tamper truncate: new size {} is larger than the image ({} bytes)", new_size,
                                 img.size()));
  return copy_of(img.first(new_size));
}

Bytes append(std::span<const std::uint8_t> img, std::span<const std::uint8_t> extra) {
  Bytes out = copy_of(img);
  out.insert(out.end(), extra.begin(), extra.end());
  return out;
}

Bytes resign(std::span<const std::uint8_t> img, const crypto::Ed25519Key& key) {
  Parsed p = parse(img, "image");
  Bytes out = copy_of(img);
  Trailer t = p.trailer;
  t.key_id = key.id();
  t.sha256 = crypto::sha256(p.signed_part);
  t.signature = key.sign(signing_message(t.sha256));
  encode_trailer(t, std::span<std::uint8_t, kTrailerSize>(out.data() + trailer_offset(p), kTrailerSize));
  return out;
}

Bytes strip_signature(std::span<const std::uint8_t> img) {
  Parsed p = parse(img, "image");
  Bytes out = copy_of(img);
  Trailer t = p.trailer;
  t.key_id = {};
  t.signature = {};
  encode_trailer(t, std::span<std::uint8_t, kTrailerSize>(out.data() + trailer_offset(p), kTrailerSize));
  return out;
}

Bytes set_version(std::span<const std::uint8_t> img, const Version& v) {
  Parsed p = parse(img, "image");
  Bytes out = copy_of(img);
  Header h = p.header;
  h.version = v;
  encode_header(h, std::span<std::uint8_t, kHeaderSize>(out.data(), kHeaderSize));
  return out;
}

}  // namespace tamper

// ---------------------------------------------------------------------------- trust blocks

Bytes encode_trust_block(std::span<const TrustChange> changes) {
  if (changes.empty() || changes.size() > kTrustBlockMaxEntries)
    throw InputError(fmt::format("a trust block holds 1..{} changes, not {}", kTrustBlockMaxEntries, changes.size()));
  Bytes out(8 + changes.size() * kTrustEntrySize, 0);
  put32(out.data(), kTrustBlockMagic);
  put32(out.data() + 4, static_cast<std::uint32_t>(changes.size()));
  for (std::size_t i = 0; i < changes.size(); ++i) {
    auto* p = out.data() + 8 + i * kTrustEntrySize;
    const auto& c = changes[i];
    p[48] = static_cast<std::uint8_t>(c.action);
    if (c.action == TrustAction::add_server_ca) {
      // The certificate follows the entry table; the entry binds its digest and size.
      if (c.certificate.empty() || c.certificate.size() > kTrustCertificateMaxSize)
        throw InputError(fmt::format("trust block entry {}: a server CA certificate of 1..{} bytes, not {}", i,
                                     kTrustCertificateMaxSize, c.certificate.size()));
      const auto digest = crypto::sha256(c.certificate);
      std::copy(digest.begin(), digest.end(), out.data() + 8 + i * kTrustEntrySize);
      put32(out.data() + 8 + i * kTrustEntrySize + 52, static_cast<std::uint32_t>(c.certificate.size()));
      out.insert(out.end(), c.certificate.begin(), c.certificate.end());
      continue;
    }
    std::copy(c.entry.key.begin(), c.entry.key.end(), p);
    put64(p + 32, c.entry.not_before);
    put64(p + 40, c.entry.not_after);
  }
  return out;
}

std::vector<TrustChange> decode_trust_block(std::span<const std::uint8_t> payload, std::string_view name) {
  if (payload.size() < 8)
    throw InputError(fmt::format("{}: trust block: {} bytes is shorter than its 8-byte head", name, payload.size()));
  if (const auto magic = get32(payload.data()); magic != kTrustBlockMagic)
    throw InputError(fmt::format("{}: trust block.magic: expected {:#010x}, found {:#010x}", name, kTrustBlockMagic,
                                 magic));
  const std::uint32_t count = get32(payload.data() + 4);
  if (count == 0 || count > kTrustBlockMaxEntries)
    throw InputError(fmt::format("{}: trust block.count: {} (expected 1..{})", name, count, kTrustBlockMaxEntries));
  if (payload.size() < 8 + std::size_t{count} * kTrustEntrySize)
    throw InputError(fmt::format("{}: trust block: {} entries need {} bytes, the payload has {}", name, count,
                                 8 + std::size_t{count} * kTrustEntrySize, payload.size()));
  std::vector<TrustChange> out;
  // Where the next server CA certificate begins: after the entry table.
  std::size_t next_certificate = 8 + std::size_t{count} * kTrustEntrySize;
  for (std::uint32_t i = 0; i < count; ++i) {
    const auto* p = payload.data() + 8 + std::size_t{i} * kTrustEntrySize;
    TrustChange c;
    std::copy_n(p, c.entry.key.size(), c.entry.key.begin());
    c.entry.not_before = get64(p + 32);
    c.entry.not_after = get64(p + 40);
    if (p[48] < static_cast<std::uint8_t>(TrustAction::add) ||
        p[48] > static_cast<std::uint8_t>(TrustAction::add_server_ca))
      throw InputError(fmt::format("{}: trust block.entry[{}].action: {} (expected 1 add, 2 revoke or 3 add server CA)",
                                   name, i, p[48]));
    c.action = static_cast<TrustAction>(p[48]);
    const bool ca = c.action == TrustAction::add_server_ca;
    // A server CA entry keeps its certificate's size in bytes 52..55.
    for (std::size_t k = 49; k < (ca ? 52 : kTrustEntrySize); ++k)
      if (p[k] != 0)
        throw InputError(fmt::format("{}: trust block.entry[{}].reserved: byte {} is {:#04x}, expected zero", name, i,
                                     k, p[k]));
    if (ca) {
      if (c.entry.not_before || c.entry.not_after)
        throw InputError(fmt::format("{}: trust block.entry[{}]: a server CA entry's not_before and not_after are "
                                     "zero (the certificate carries its own validity)",
                                     name, i));
      const std::uint32_t size = get32(p + 52);
      if (size == 0 || size > kTrustCertificateMaxSize)
        throw InputError(fmt::format("{}: trust block.entry[{}].certificate_size: {} (expected 1..{})", name, i, size,
                                     kTrustCertificateMaxSize));
      if (payload.size() - next_certificate < size)
        throw InputError(fmt::format("{}: trust block.entry[{}]: its {}-byte certificate at byte {} runs past the "
                                     "{}-byte payload",
                                     name, i, size, next_certificate, payload.size()));
      c.certificate.assign(payload.begin() + static_cast<std::ptrdiff_t>(next_certificate),
                           payload.begin() + static_cast<std::ptrdiff_t>(next_certificate + size));
      next_certificate += size;
      const auto digest = crypto::sha256(c.certificate);
      if (!std::equal(digest.begin(), digest.end(), c.entry.key.begin()))
        throw InputError(fmt::format("{}: trust block.entry[{}]: the certificate's SHA-256 is {}, the entry names {}",
                                     name, i, crypto::hex(digest), crypto::hex(c.entry.key)));
      if (auto why = server_ca_problem(c.certificate); !why.empty())
        throw InputError(fmt::format("{}: trust block.entry[{}].certificate: {}", name, i, why));
    } else if (c.entry.not_before && c.entry.not_after && c.entry.not_after < c.entry.not_before) {
      throw InputError(fmt::format("{}: trust block.entry[{}]: not_after is before not_before", name, i));
    }
    out.push_back(c);
  }
  return out;
}

namespace {
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

// One whole DER certificate, nothing after it.
X509Ptr parse_der(std::span<const std::uint8_t> der) {
  const unsigned char* p = der.data();
  X509Ptr x(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  ERR_clear_error();
  if (x && p != der.data() + der.size()) return nullptr;
  return x;
}
}  // namespace

std::string server_ca_problem(std::span<const std::uint8_t> der) {
  if (der.empty() || der.size() > kTrustCertificateMaxSize)
    return fmt::format("{} bytes (a certificate of 1..{} bytes of DER)", der.size(), kTrustCertificateMaxSize);
  auto x = parse_der(der);
  if (!x) return "not one X.509 certificate in DER";
  // X509_check_ca: 1 for basicConstraints CA:TRUE (keyCertSign where key usage is given).
  if (X509_check_ca(x.get()) != 1) return fmt::format("{} is not a CA certificate (basicConstraints CA:TRUE)",
                                                      certificate_subject(der));
  return {};
}

std::string certificate_subject(std::span<const std::uint8_t> der) {
  auto x = parse_der(der);
  if (!x) return "?";
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  if (!bio || X509_NAME_print_ex(bio.get(), X509_get_subject_name(x.get()), 0, XN_FLAG_RFC2253) < 0) return "?";
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return len > 0 ? std::string(data, static_cast<std::size_t>(len)) : std::string("?");
}

TrustChange server_ca_change(std::span<const std::uint8_t> certificate, std::string_view name) {
  Bytes der;
  const std::string_view text(reinterpret_cast<const char*>(certificate.data()), certificate.size());
  if (text.find("-----BEGIN CERTIFICATE-----") != std::string_view::npos) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(certificate.data(), static_cast<int>(certificate.size())),
                                                  &BIO_free);
    X509Ptr x(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
    ERR_clear_error();
    if (!x) throw InputError(fmt::format("{}: the PEM certificate does not parse", name));
    unsigned char* out = nullptr;
    const int len = i2d_X509(x.get(), &out);
    if (len <= 0) throw InputError(fmt::format("{}: the certificate cannot be written as DER", name));
    der.assign(out, out + len);
    OPENSSL_free(out);
  } else {
    der.assign(certificate.begin(), certificate.end());
  }
  if (auto why = server_ca_problem(der); !why.empty()) throw InputError(fmt::format("{}: {}", name, why));
  TrustChange c;
  c.action = TrustAction::add_server_ca;
  const auto digest = crypto::sha256(der);
  std::copy(digest.begin(), digest.end(), c.entry.key.begin());
  c.certificate = std::move(der);
  return c;
}

std::string utc_text(std::uint64_t seconds) {
  // Civil from days (Howard Hinnant's algorithm), no time zone involved.
  const std::int64_t days = static_cast<std::int64_t>(seconds / 86400);
  const std::uint64_t rem = seconds % 86400;
  const std::int64_t z = days + 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const std::int64_t doe = z - era * 146097;
  const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  std::int64_t y = yoe + era * 400;
  const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const std::int64_t mp = (5 * doy + 2) / 153;
  const std::int64_t d = doy - (153 * mp + 2) / 5 + 1;
  const std::int64_t m = mp < 10 ? mp + 3 : mp - 9;
  if (m <= 2) ++y;
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", y, m, d, rem / 3600, rem / 60 % 60, rem % 60);
}

std::optional<std::uint64_t> parse_utc(std::string_view text) {
  if (!text.empty() && text.front() == '@') {
    std::uint64_t v = 0;
    auto [p, ec] = std::from_chars(text.data() + 1, text.data() + text.size(), v);
    if (text.size() < 2 || ec != std::errc() || p != text.data() + text.size() || v > 253402300799ULL)
      return std::nullopt;
    return v;
  }
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  auto num = [&](std::size_t at, std::size_t n, int& out) {
    if (at + n > text.size()) return false;
    auto [p, ec] = std::from_chars(text.data() + at, text.data() + at + n, out);
    return ec == std::errc() && p == text.data() + at + n;
  };
  if (text.size() != 10 && text.size() != 20) return std::nullopt;
  if (!num(0, 4, y) || text[4] != '-' || !num(5, 2, mo) || text[7] != '-' || !num(8, 2, d)) return std::nullopt;
  if (text.size() == 20 && (text[10] != 'T' || !num(11, 2, h) || text[13] != ':' || !num(14, 2, mi) ||
                            text[16] != ':' || !num(17, 2, s) || text[19] != 'Z'))
    return std::nullopt;
  static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > kDays[mo - 1] || (mo == 2 && d == 29 && !leap) || h > 23 ||
      mi > 59 || s > 59)
    return std::nullopt;
  // Days from civil (Howard Hinnant's algorithm).
  const int yy = mo <= 2 ? y - 1 : y;
  const int era = yy / 400;
  const int yoe = yy - era * 400;
  const int doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  const std::int64_t days = std::int64_t{era} * 146097 + doe - 719468;
  return static_cast<std::uint64_t>(days * 86400 + h * 3600 + mi * 60 + s);
}

std::string validity_failure(const TrustEntry& entry, std::uint64_t at) {
  if (entry.not_before && at < entry.not_before)
    return fmt::format("not yet valid at {} (valid from {})", utc_text(at), utc_text(entry.not_before));
  if (entry.not_after && at > entry.not_after)
    return fmt::format("expired at {} (valid until {})", utc_text(at), utc_text(entry.not_after));
  return {};
}

}  // namespace otarig::image
