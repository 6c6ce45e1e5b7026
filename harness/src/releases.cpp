#include "otarig/harness/releases.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <iterator>

namespace otarig::harness {

crypto::Ed25519Key load_key_ref(const std::string& ref, const std::filesystem::path& dir) {
  if (ref.rfind("test:", 0) == 0) return crypto::Ed25519Key::test_key(ref.substr(5));
  std::filesystem::path p(ref);
  if (p.is_relative()) p = dir / p;
  return crypto::Ed25519Key::load_pem(p);
}

std::string device_digest(std::span<const std::uint8_t> img) {
  std::size_t len = img.size();
  if (img.size() >= image::kHeaderSize) {
    auto h = image::decode_header(img.first<image::kHeaderSize>());
    len = std::min<std::size_t>(img.size(), image::kHeaderSize + h.payload_size);
  }
  return crypto::hex(crypto::sha256(img.first(len)));
}

ReleaseSet::ReleaseSet(const BoardProfile& profile) {
  auto dir = profile.path.parent_path();
  key_ = std::make_unique<crypto::Ed25519Key>(load_key_ref(profile.signing_key, dir));
  wrong_key_ = std::make_unique<crypto::Ed25519Key>(crypto::Ed25519Key::test_key("otarig untrusted signer"));
  for (const auto& ref : profile.trusted_keys) {
    if (ref.rfind("test:", 0) == 0) {
      trusted_.push_back(crypto::Ed25519Key::test_key(ref.substr(5)).public_key());
    } else {
      std::filesystem::path p(ref);
      if (p.is_relative()) p = dir / p;
      trusted_.push_back(crypto::load_public_pem(p));
    }
  }
  for (const auto& spec : profile.releases) {
    BuiltImage b;
    b.name = spec.name;
    if (spec.file) {
      std::ifstream in(*spec.file, std::ios::binary);
      b.bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      auto parsed = image::parse(b.bytes, spec.file->string());
      b.version = parsed.header.version.str();
      b.security_counter = parsed.header.security_counter;
      b.fails_self_test = parsed.header.flags & image::kFlagSelfTestFails;
      b.authentic = image::check(b.bytes, trusted_).ok();
    } else {
      image::Header h;
      h.version = spec.version;
      h.security_counter = spec.security_counter;
      h.payload_size = static_cast<std::uint32_t>(spec.payload_size);
      auto payload = image::synthetic_payload(spec.payload_size, profile.name + "/" + spec.name);
      b.bytes = image::build(h, payload, *key_);
      b.version = spec.version.str();
      b.security_counter = spec.security_counter;
    }
    b.digest = device_digest(b.bytes);
    if (b.authentic) authentic_.push_back(b.digest);
    releases_.push_back(std::move(b));
  }
  // The self-test-failing twin of every generated release is authentic too.
  for (const auto& r : releases_) {
    if (r.bytes.size() < image::kHeaderSize) continue;
    Rng unused(0);
    auto twin = make_variant(r, "self-test-fail", "", unused, nullptr);
    authentic_.push_back(twin.digest);
  }
}

const BuiltImage& ReleaseSet::get(const std::string& name) const {
  for (const auto& r : releases_)
    if (r.name == name) return r;
  throw InputError(fmt::format("no release named '{}' in the board profile", name));
}

BuiltImage ReleaseSet::make_variant(const BuiltImage& base, const std::string& kind, const std::string& variant,
                                    Rng& rng, std::string* detail) const {
  BuiltImage v = base;
  v.variant = variant.empty() ? kind : variant;
  v.name = base.name + "/" + v.variant;
  auto parsed = image::parse(base.bytes, base.name);
  const std::size_t payload_size = parsed.header.payload_size;
  const std::size_t trailer_at = image::kHeaderSize + payload_size;
  auto say = [&](std::string s) {
    if (detail) *detail = std::move(s);
  };
  if (kind == "self-test-fail") {
    image::Header h = parsed.header;
    h.flags |= image::kFlagSelfTestFails;
    v.bytes = image::build(h, parsed.payload, *key_);
    v.fails_self_test = true;
    v.authentic = true;
    say("signed image whose self-test fails");
  } else if (kind == "unsigned") {
    v.bytes = image::tamper::strip_signature(base.bytes);
    v.authentic = false;
    say("signature and key id zeroed");
  } else if (kind == "wrong-key") {
    v.bytes = image::tamper::resign(base.bytes, *wrong_key_);
    v.authentic = false;
    say(fmt::format("signed by untrusted key {}", crypto::hex(wrong_key_->id())));
  } else if (kind == "tamper") {
    v.authentic = false;
    auto flip = [&](std::size_t lo, std::size_t n, const char* what) {
      std::size_t off = lo + rng.below(n);
      unsigned bit = static_cast<unsigned>(rng.below(8));
      v.bytes = image::tamper::flip_bit(base.bytes, off, bit);
      say(fmt::format("{}: flipped bit {} of byte {}", what, bit, off));
    };
    if (variant == "header-bit-flip") {
      // Version, counter and flags: fields a device reads and acts upon.
      flip(8, 16, "header");
    } else if (variant == "payload-bit-flip") {
      flip(image::kHeaderSize, payload_size, "payload");
    } else if (variant == "digest-bit-flip") {
      flip(trailer_at + 16, 32, "trailer digest");
    } else if (variant == "signature-bit-flip") {
      flip(trailer_at + 48, 64, "trailer signature");
    } else if (variant == "truncated") {
      std::size_t cut = image::kHeaderSize + rng.below(payload_size);
      v.bytes = image::tamper::truncate(base.bytes, cut);
      say(fmt::format("truncated to {} of {} bytes", cut, base.bytes.size()));
    } else if (variant == "appended") {
      image::Bytes extra(4096);
      for (auto& b : extra) b = static_cast<std::uint8_t>(rng.next());
      v.bytes = image::tamper::append(base.bytes, extra);
      say("4096 bytes appended after the trailer");
    } else if (variant == "version-edited") {
      auto ver = parsed.header.version;
      ver.major = static_cast<std::uint8_t>(ver.major + 1);
      v.bytes = image::tamper::set_version(base.bytes, ver);
      v.version = ver.str();
      say(fmt::format("header version set to {} without re-signing", ver.str()));
    } else {
      throw InputError(fmt::format("unknown tamper variant '{}'", variant));
    }
  } else {
    throw InputError(fmt::format("fault kind '{}' makes no image variant", kind));
  }
  v.digest = device_digest(v.bytes);
  return v;
}

}  // namespace otarig::harness
