#include "otarig/harness/releases.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <iterator>

#include "otarig/core/encryption.hpp"
#include "otarig/drivers/registry.hpp"
#include "otarig/harness/composition.hpp"
#include "otarig/core/delta.hpp"
#include "otarig/core/read_file.hpp"

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

std::vector<std::span<const std::uint8_t>> bundle_images(std::span<const std::uint8_t> bytes,
                                                        const std::string& name) {
  std::vector<std::span<const std::uint8_t>> out;
  std::size_t at = 0;
  while (at < bytes.size()) {
    const auto rest = bytes.subspan(at);
    if (!out.empty() && (rest.size() < image::kHeaderSize ||
                         image::decode_header(rest.first<image::kHeaderSize>()).magic != image::kHeaderMagic))
      break;
    image::Parsed p;
    try {
      p = image::parse(rest, out.empty() ? name : fmt::format("{}: image {}", name, out.size() + 1));
    } catch (const InputError&) {
      if (out.empty()) throw;
      break;
    }
    out.push_back(rest.first(p.total_size));
    at += p.total_size;
  }
  return out;
}

std::vector<BuiltImage::Component> components_of(std::span<const std::uint8_t> bytes, const std::string& name) {
  std::vector<BuiltImage::Component> out;
  if (bytes.size() < image::kHeaderSize) return out;
  std::vector<std::span<const std::uint8_t>> parts;
  try {
    parts = bundle_images(bytes, name);
  } catch (const InputError&) {
    return out;  // a damaged image: nothing to say about its dependencies
  }
  for (const auto& part : parts) {
    const auto h = image::decode_header(part.first<image::kHeaderSize>());
    out.push_back({h.image_index, device_digest(part), h.version.str(), h.needs_image,
                   h.needs_image ? h.needs_version.str() : std::string()});
  }
  return out;
}

std::string other_device_type(const std::string& own) {
  std::string other = "otarig-other-device";
  if (other == own) other += "-2";
  return other;
}

namespace {

// The profile's `package:` section as a format of the registry.
std::shared_ptr<const drivers::PackageFormat> read_package_format(const BoardProfile& profile,
                                                                   const drivers::DriverRegistry& drivers,
                                                                   std::string& name) {
  auto section = profile.root.find("package");
  if (!section) return nullptr;
  name = section->at("format").as_string();
  const auto* factory = drivers.package_format(name);
  if (!factory) {
    std::string known;
    for (const auto& f : drivers.package_formats()) known += (known.empty() ? "" : ", ") + f;
    section->at("format").fail(fmt::format("unknown package format '{}' (known: {})", name,
                                           known.empty() ? "none in this build" : known));
  }
  auto format = (*factory)(*section, profile.name, profile.path.parent_path());
  if (!profile.encryption_aes_key.empty()) {
    try {
      format->encrypt_for(encryption::AesKey::load_ref(profile.encryption_aes_key));
    } catch (const InputError& e) {
      profile.root.at("encryption").at("aes_key").fail(fmt::format("package format {}: {}", name, e.what()));
    }
  }
  return format;
}

}  // namespace

image::Bytes derived_payload(std::span<const std::uint8_t> base, image::Bytes own) {
  constexpr std::size_t kBlock = 4096;
  const std::size_t shared = std::min(base.size(), own.size());
  for (std::size_t block = 0; block * kBlock < shared; ++block) {
    if (block % 16 == 15) continue;  // the rewritten blocks keep the release's own bytes
    const std::size_t at = block * kBlock;
    const std::size_t n = std::min(kBlock, shared - at);
    std::copy_n(base.begin() + static_cast<std::ptrdiff_t>(at), n, own.begin() + static_cast<std::ptrdiff_t>(at));
  }
  return own;
}

ReleaseSet::ReleaseSet(const BoardProfile& profile) : ReleaseSet(profile, builtin_registries().drivers) {}

ReleaseSet::ReleaseSet(const BoardProfile& profile, const drivers::DriverRegistry& drivers) {
  auto dir = profile.path.parent_path();
  device_type_ = profile.device_type;
  board_name_ = profile.name;
  if (!profile.encryption_key.empty())
    encrypt_for_ = encryption::DeviceKey::load_ref(profile.encryption_key).pub;
  format_ = read_package_format(profile, drivers, package_format_);
  package_encrypted_ = format_ && !profile.encryption_aes_key.empty();
  key_ = std::make_unique<crypto::Ed25519Key>(load_key_ref(profile.signing_key, dir));
  wrong_key_ = std::make_unique<crypto::Ed25519Key>(crypto::Ed25519Key::test_key("otarig untrusted signer"));
  key_not_before_ = profile.key_not_before;
  key_not_after_ = profile.key_not_after;
  for (const auto& ref : profile.trusted_keys) {
    if (ref.rfind("test:", 0) == 0) {
      trusted_.push_back(crypto::Ed25519Key::test_key(ref.substr(5)).public_key());
    } else {
      std::filesystem::path p(ref);
      if (p.is_relative()) p = dir / p;
      trusted_.push_back(crypto::load_public_pem(p));
    }
  }
  std::map<std::string, image::Bytes> payloads;  // of the generated releases, for derived_from
  for (const auto& spec : profile.releases) {
    if (!spec.bundle.empty()) continue;  // below, from the releases it names
    BuiltImage b;
    b.name = spec.name;
    if (spec.file) {
      try {
        const auto data = read_regular_file(*spec.file, kMaxImageBytes, "release image");
        b.bytes.assign(data.begin(), data.end());
      } catch (const InputError& e) {
        throw InputError(fmt::format("{}: release {}: {}", spec.where, spec.name, e.what()));
      }
      auto parsed = image::parse(b.bytes, spec.file->string());
      b.version = parsed.header.version.str();
      b.security_counter = parsed.header.security_counter;
      b.fails_self_test = parsed.header.flags & image::kFlagSelfTestFails;
      b.authentic = image::check(b.bytes, trusted_).ok();
      b.compatible = image::compatible(parsed.header.device_type, image::device_type_id(profile.device_type));
    } else {
      image::Header h;
      h.version = spec.version;
      h.security_counter = spec.security_counter;
      h.payload_size = static_cast<std::uint32_t>(spec.payload_size);
      h.signing_time = profile.signing_time;
      h.device_type = image::device_type_id(profile.device_type);
      h.image_index = spec.image_index;
      h.needs_image = spec.needs_image;
      h.needs_version = spec.needs_version;
      auto payload = image::synthetic_payload(spec.payload_size, profile.name + "/" + spec.name);
      if (!spec.derived_from.empty()) payload = derived_payload(payloads.at(spec.derived_from), std::move(payload));
      if (encrypted()) {
        // The marker (docs/scenarios.md, "Encrypted images"): 32 bytes no other release carries.
        const auto m = crypto::sha256("otarig plaintext marker:" + profile.name + "/" + spec.name);
        b.marker.assign(m.begin(), m.begin() + static_cast<std::ptrdiff_t>(std::min<std::size_t>(32, payload.size())));
        std::copy(b.marker.begin(), b.marker.end(), payload.begin());
      }
      b.bytes = image::build(h, payload, *key_);
      payloads[spec.name] = std::move(payload);
      b.version = spec.version.str();
      b.security_counter = spec.security_counter;
    }
    b.digest = device_digest(b.bytes);
    if (b.authentic) authentic_.push_back(b.digest);
    if (format_ && b.authentic) {
      b.package = package(b.bytes);
      b.package_of = b.digest;
    }
    if (encrypt_for_ && b.authentic) {
      b.package = encrypt(b.bytes);
      b.package_of = b.digest;
    }
    b.components = components_of(b.bytes, b.name);
    releases_.push_back(std::move(b));
  }
  for (const auto& spec : profile.releases) {
    if (spec.bundle.empty()) continue;
    BuiltImage b;
    b.name = spec.name;
    b.authentic = true;
    const BuiltImage* first = nullptr;
    for (const auto& part : spec.bundle) {
      const auto& c = get(part);
      b.bytes.insert(b.bytes.end(), c.bytes.begin(), c.bytes.end());
      b.authentic = b.authentic && c.authentic;
      b.compatible = b.compatible && c.compatible;
      const auto h = image::parse(c.bytes, c.name).header;
      if (!first || (h.image_index == 0 && image::parse(first->bytes, first->name).header.image_index != 0))
        first = &c;
    }
    // What the device names running it: its application's image (else the first).
    b.version = first->version;
    b.security_counter = first->security_counter;
    b.fails_self_test = first->fails_self_test;
    b.digest = first->digest;
    b.components = components_of(b.bytes, b.name);
    if (format_ && b.authentic) {
      b.package = package(b.bytes);
      b.package_of = device_digest(b.bytes);
    }
    releases_.push_back(std::move(b));
  }
  // The self-test-failing twin of every generated release is authentic too.
  for (const auto& r : releases_) {
    if (r.bytes.size() < image::kHeaderSize) continue;
    authentic_.push_back(self_test_twin(r).digest);
  }
}

std::vector<image::TrustEntry> ReleaseSet::trust() const {
  std::vector<image::TrustEntry> out;
  for (const auto& k : trusted_) {
    image::TrustEntry e{k, 0, 0, false};
    if (k == key_->public_key()) e.not_before = key_not_before_, e.not_after = key_not_after_;
    out.push_back(e);
  }
  return out;
}

std::string ReleaseSet::package_trust_pem() const { return format_ ? format_->trust_pem() : std::string(); }

image::Bytes ReleaseSet::package(std::span<const std::uint8_t> slot_image) const {
  if (!format_) throw BenchError("the board takes no packages (no `package:` in its profile)");
  return format_->package(slot_image);
}

image::Bytes ReleaseSet::encrypt(std::span<const std::uint8_t> plaintext) const { return encrypt(plaintext, *key_); }

image::Bytes ReleaseSet::encrypt(std::span<const std::uint8_t> plaintext, const crypto::Ed25519Key& key) const {
  if (!encrypt_for_) throw BenchError("the board takes no encrypted images (no `encryption:` in its profile)");
  return encryption::encrypt(plaintext, *encrypt_for_, key,
                             crypto::sha256("otarig encryption seed:" + board_name_ + ":" + device_digest(plaintext)));
}

image::Bytes ReleaseSet::artifact(const BuiltImage& img) const {
  // A copy whose bytes changed since has another digest (every variant sets it).
  if (!img.delta.empty() && img.delta_of == img.digest) return img.delta;
  if (!format_ && encrypt_for_) {
    if (!img.package.empty() && img.package_of == device_digest(img.bytes)) return img.package;
    if (!img.authentic)
      throw BenchError(fmt::format("{}: an inauthentic image has no encrypted image of its own (the rig signs only "
                                   "authentic images)",
                                   img.name));
    return encrypt(img.bytes);
  }
  if (!format_) return img.bytes;
  const auto digest = device_digest(img.bytes);
  if (!img.package.empty() && img.package_of == digest) return img.package;
  if (!img.authentic)
    throw BenchError(fmt::format("{}: an inauthentic image has no package of its own (the rig signs only "
                                 "authentic images)",
                                 img.name));
  return package(img.bytes);
}

BuiltImage ReleaseSet::self_test_twin(const BuiltImage& base) const {
  BuiltImage v = base;
  v.variant = "self-test-fail";
  v.name = base.name + "/self-test-fail";
  auto parsed = image::parse(base.bytes, base.name);
  image::Header h = parsed.header;
  h.flags |= image::kFlagSelfTestFails;
  v.bytes = image::build(h, parsed.payload, *key_);
  // A bundle keeps its other images as they are.
  v.bytes.insert(v.bytes.end(), base.bytes.begin() + static_cast<std::ptrdiff_t>(parsed.total_size), base.bytes.end());
  v.components = components_of(v.bytes, v.name);
  if (encrypt_for_) {
    v.package = encrypt(v.bytes);
    v.package_of = device_digest(v.bytes);
  }
  v.fails_self_test = true;
  v.authentic = true;
  v.digest = device_digest(v.bytes);
  v.package.clear();
  v.package_of.clear();
  return v;
}

// Package-level damage (docs/ota-clients.md, "variants"). The slot image
// inside is the base image with one seeded payload bit flipped: should the
// client install it anyway, the device boots a digest no trusted key signed.
BuiltImage ReleaseSet::package_variant(const BuiltImage& base, const std::string& kind, const std::string& variant,
                                       Rng& rng, std::string* detail) const {
  BuiltImage v = base;
  v.variant = variant.empty() ? kind : variant;
  v.name = base.name + "/" + v.variant;
  v.authentic = false;
  v.package.clear();
  auto parsed = image::parse(base.bytes, base.name);
  const std::size_t payload_size = parsed.header.payload_size;
  if (payload_size == 0) throw InputError(fmt::format("{}: an empty payload has no bit to flip", base.name));
  const std::size_t flip_at = image::kHeaderSize + rng.below(payload_size);
  const unsigned flip_bit = static_cast<unsigned>(rng.below(8));
  image::Bytes inner = image::tamper::flip_bit(base.bytes, flip_at, flip_bit);
  const auto inner_note = fmt::format("slot image with payload bit {} of byte {} flipped", flip_bit, flip_at);
  auto damage = format_->damage(base.bytes, std::move(inner), kind, variant, rng);
  v.package = std::move(damage.package);
  v.bytes = std::move(damage.slot_image);
  v.digest = device_digest(v.bytes);
  v.package_of = v.digest;
  // The encrypted variants' slot image is what the device would decrypt (the format's), not the flipped one.
  const bool decrypted = kind == "tampered-ciphertext" || kind == "other-device-key";
  if (detail) *detail = decrypted ? damage.what : damage.what + "; " + inner_note;
  return v;
}

// The slot image stays the release's own: should the client take the
// package when it must not, the device runs the delivered digest between the
// delivery and the retry, which oracle authentic reads.
BuiltImage ReleaseSet::signer_outside_validity(const BuiltImage& base, std::int64_t not_before, std::int64_t not_after,
                                               const std::string& role, bool authentic, std::string* detail) const {
  if (!format_) throw InputError("the board takes no packages (no `package:` in its profile)");
  BuiltImage v = base;
  v.variant = role;
  v.name = base.name + "/" + role;
  v.authentic = authentic;
  v.fails_self_test = false;
  v.delta.clear();
  v.delta_of.clear();
  v.package = format_->signed_outside_validity(base.bytes, not_before, not_after, detail);
  v.package_of = v.digest;
  return v;
}

BuiltImage ReleaseSet::delta(const BuiltImage& target, const BuiltImage& base, const std::string& files_url) const {
  BuiltImage v = target;
  v.name = target.name + "/delta";
  v.variant = target.variant.empty() ? "delta" : target.variant + "+delta";
  v.delta_base = base.name;
  v.delta_of = v.digest;
  const auto key = std::make_tuple(target.digest, base.digest, format_ ? files_url : std::string());
  std::optional<drivers::DeltaPackage> made;
  {
    std::lock_guard lock(delta_mutex_);
    if (auto it = deltas_.find(key); it != deltas_.end()) made = it->second;
  }
  if (!made) {
    if (format_) {
      made = format_->delta_package(base.bytes, target.bytes, files_url);
    } else {
      made.emplace();
      made->package = image::delta::make(base.bytes, target.bytes);
    }
    std::lock_guard lock(delta_mutex_);
    deltas_.emplace(key, *made);
  }
  v.delta = std::move(made->package);
  v.delta_files = std::move(made->files);
  v.package.clear();
  v.package_of.clear();
  return v;
}

std::vector<drivers::PublishedFile> ReleaseSet::files_beside(const BuiltImage& img) const {
  if (!img.delta.empty() && img.delta_of == img.digest) return img.delta_files;
  return {};
}

std::string ReleaseSet::no_deltas() const {
  if (makes_deltas()) return {};
  return fmt::format("package format {}: {}", package_format_, format_->no_deltas());
}

BuiltImage ReleaseSet::corrupt_delta(const BuiltImage& target, const BuiltImage& base, Rng& rng,
                                     std::string* detail, const std::string& files_url) const {
  BuiltImage v = delta(target, base, files_url);
  v.name = target.name + "/delta-corrupt-chunk";
  v.variant = "delta-corrupt-chunk";
  v.authentic = false;
  if (format_) {
    auto damage = format_->corrupt_delta(base.bytes, target.bytes, files_url, rng);
    v.delta = std::move(damage.package);
    v.delta_files = std::move(damage.files);
    v.bytes = std::move(damage.slot_image);
    if (detail) *detail = damage.what;
  } else {
    const auto parsed = image::delta::parse(v.delta, v.name, image::kHeaderSize + image::delta::kPatchHeaderSize +
                                                                  v.delta.size() + target.bytes.size());
    std::vector<const image::delta::Op*> inserts;
    for (const auto& op : parsed.patch.ops)
      if (op.kind == image::delta::OpKind::insert) inserts.push_back(&op);
    if (inserts.empty())
      throw InputError(fmt::format("{}: the delta from {} copies every byte: no chunk to corrupt", target.name,
                                   base.name));
    const auto* op = inserts[rng.below(inserts.size())];
    const std::size_t at = image::kHeaderSize + op->data_at + rng.below(op->length);
    const unsigned bit = static_cast<unsigned>(rng.below(8));
    v.delta = image::tamper::flip_bit(v.delta, at, bit);
    const auto flipped = image::delta::parse(v.delta, v.name, target.bytes.size() + v.delta.size());
    v.bytes = image::delta::assemble(flipped, base.bytes, v.name);
    if (detail)
      *detail = fmt::format("delta against {}: bit {} of byte {} flipped, in the {}-byte chunk of INSERT op {} of {}",
                            base.name, bit, at, op->length, op - parsed.patch.ops.data(), parsed.patch.ops.size());
  }
  v.digest = device_digest(v.bytes);
  v.delta_of = v.digest;
  return v;
}

const BuiltImage& ReleaseSet::get(const std::string& name) const {
  for (const auto& r : releases_)
    if (r.name == name) return r;
  throw InputError(fmt::format("no release named '{}' in the board profile", name));
}

BuiltImage ReleaseSet::wrong_device(const BuiltImage& base, Rng& rng, std::string* detail) const {
  BuiltImage v = base;
  v.variant = "wrong-device";
  v.name = base.name + "/wrong-device";
  auto parsed = image::parse(base.bytes, base.name);
  image::Header h = parsed.header;
  const auto other = other_device_type(device_type_);
  h.device_type = image::device_type_id(other);
  v.bytes = image::build(h, parsed.payload, *key_);
  v.components = components_of(v.bytes, v.name);
  v.authentic = true;
  v.compatible = false;
  v.digest = device_digest(v.bytes);
  std::string what = fmt::format("validly signed for device type {} ({}), not this device's {}", other,
                                 crypto::hex(h.device_type), device_type_.empty() ? "(none declared)" : device_type_);
  v.package.clear();
  v.package_of.clear();
  if (format_) {
    auto damage = format_->damage(base.bytes, v.bytes, "wrong-device", "", rng);
    v.package = std::move(damage.package);
    v.package_of = v.digest;
    what = damage.what + "; its slot image " + what;
  }
  if (detail) *detail = std::move(what);
  return v;
}

// On a board whose releases are encrypted, the damage is done to the
// encrypted image delivered; the plaintext image the device would boot,
// should it install it anyway, carries one flipped payload bit (as a
// package's does). tampered-ciphertext flips a bit of the ciphertext (CTR:
// the same bit of the plaintext); other-device-key encrypts the release for
// another device's key, validly signed.
BuiltImage ReleaseSet::encrypted_variant(const BuiltImage& base, const std::string& kind, const std::string& variant,
                                         Rng& rng, std::string* detail) const {
  const auto outer_bytes = artifact(base);
  BuiltImage v = base;
  v.variant = variant.empty() ? kind : variant;
  v.name = base.name + "/" + v.variant;
  v.package.clear();
  const auto outer = image::parse(outer_bytes, base.name);
  const std::size_t cipher_at = image::kHeaderSize + encryption::kBlockHeaderSize;
  const std::size_t cipher_size = outer.header.payload_size - encryption::kBlockHeaderSize;
  if (kind == "tampered-ciphertext") {
    // Past the header and the marker (the first 32 payload bytes), so the
    // plaintext of a device that decrypts it anyway still carries the marker.
    const std::size_t skip = std::min<std::size_t>(cipher_size - 1, image::kHeaderSize + 32);
    const std::size_t k = skip + rng.below(cipher_size - skip);
    const auto bit = static_cast<unsigned>(rng.below(8));
    v.package = image::tamper::flip_bit(outer_bytes, cipher_at + k, bit);
    v.bytes = image::tamper::flip_bit(base.bytes, k, bit);
    v.authentic = false;
    if (detail)
      *detail = fmt::format("bit {} of ciphertext byte {} flipped (byte {} of the encrypted image; the plaintext "
                            "image's byte {} would decrypt flipped), not re-signed",
                            bit, k, cipher_at + k, k);
  } else if (kind == "other-device-key") {
    const auto other = encryption::DeviceKey::test_key("otarig another device");
    v.package = encryption::encrypt(base.bytes, other.pub, *key_,
                                    crypto::sha256("otarig encryption seed, another device:" + base.digest));
    if (detail)
      *detail = fmt::format("the release encrypted for another device's key ({}), validly signed",
                            crypto::hex(other.pub).substr(0, 16));
  } else {
    // tamper, unsigned, wrong-key: the damage to the encrypted image of the
    // plaintext image with one flipped payload bit (past the marker), so
    // the ciphertext is what a device that skipped the outer check would
    // decrypt: the damaged plaintext, which its signature no longer covers.
    const auto payload = image::parse(base.bytes, base.name).header.payload_size;
    const std::size_t skip = std::min<std::size_t>(base.marker.size(), payload > 0 ? payload - 1 : 0);
    const std::size_t at = image::kHeaderSize + skip + rng.below(std::max<std::size_t>(1, payload - skip));
    v.bytes = image::tamper::flip_bit(base.bytes, at, 0);
    BuiltImage outer_base = base;
    outer_base.bytes = encrypt(v.bytes);
    auto damaged = plain_variant(outer_base, kind, variant, rng, detail);
    v.package = std::move(damaged.bytes);
    v.authentic = false;
    if (detail)
      *detail += fmt::format(" (to the encrypted image of the plaintext image with bit 0 of byte {} flipped)", at);
  }
  v.digest = device_digest(v.bytes);
  v.package_of = v.digest;
  v.components = components_of(v.bytes, v.name);
  return v;
}

BuiltImage ReleaseSet::make_variant(const BuiltImage& base, const std::string& kind, const std::string& variant,
                                    Rng& rng, std::string* detail) const {
  if (kind == "wrong-device") return wrong_device(base, rng, detail);
  if (format_ && (kind == "unsigned" || kind == "wrong-key" || kind == "tamper"))
    return package_variant(base, kind, variant, rng, detail);
  if (kind == "tampered-ciphertext" || kind == "other-device-key") {
    if (!encrypted()) throw InputError(fmt::format("fault kind '{}' needs a board whose releases are encrypted", kind));
    if (format_) return package_variant(base, kind, variant, rng, detail);
    return encrypted_variant(base, kind, variant, rng, detail);
  }
  if (encrypt_for_ && (kind == "unsigned" || kind == "wrong-key" || kind == "tamper"))
    return encrypted_variant(base, kind, variant, rng, detail);
  return plain_variant(base, kind, variant, rng, detail);
}

BuiltImage ReleaseSet::plain_variant(const BuiltImage& base, const std::string& kind, const std::string& variant,
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
    v = self_test_twin(base);
    if (format_) {
      v.package = package(v.bytes);
      v.package_of = v.digest;
    }
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
      // A field a device reads and acts upon, flipped so the image still
      // parses (never the magic, sizes or reserved bytes, which a structure
      // check refuses before any digest is computed): the field from the
      // seed, then a byte and bit within it.
      struct Field {
        const char* name;
        std::size_t at, size;
      };
      static constexpr Field fields[] = {{"header.version.major", 8, 1},   {"header.version.minor", 9, 1},
                                         {"header.version.patch", 10, 2},  {"header.version.build", 12, 4},
                                         {"header.security_counter", 16, 4}, {"header.flags", 24, 4}};
      const auto& f = fields[rng.below(std::size(fields))];
      std::size_t off = f.at + rng.below(f.size);
      unsigned bit = static_cast<unsigned>(rng.below(8));
      // Flags: a defined bit (0..3); bits 4..7 are a structure error, the
      // others mean nothing to a device. The delta flag (bit 2) goes with a
      // base id: set alone it is a structure error, so that draw flips the
      // same bit of the next flags byte (flag bit 10, which means nothing).
      if (f.at == 24) off = 24, bit %= 4;
      if (off == 24 && bit == 2) off = 25;
      v.bytes = image::tamper::flip_bit(base.bytes, off, bit);
      const auto h = image::parse(v.bytes, v.name).header;
      v.version = h.version.str();
      say(fmt::format("{}: flipped bit {} of byte {} (the header now reads version {}, security counter {}, flags "
                      "{:#x}; not re-signed)",
                      f.name, bit, off, h.version.str(), h.security_counter, h.flags));
    } else if (variant == "payload-bit-flip") {
      if (payload_size == 0) throw InputError(fmt::format("{}: an empty payload has no bit to flip", base.name));
      flip(image::kHeaderSize, payload_size, "payload");
    } else if (variant == "digest-bit-flip") {
      flip(trailer_at + 16, 32, "trailer.sha256");
    } else if (variant == "digest-resigned") {
      // The stated digest is wrong and the release key signs it: the
      // signature verifies, and only recomputing the digest of header and
      // payload shows the image is not what it states.
      const std::size_t off = trailer_at + 16 + rng.below(32);
      const unsigned bit = static_cast<unsigned>(rng.below(8));
      auto bytes = image::tamper::flip_bit(base.bytes, off, bit);
      image::Trailer t = image::parse(bytes, v.name).trailer;
      const auto sig = key_->sign(image::signing_message(t.sha256));
      std::copy(sig.begin(), sig.end(), bytes.begin() + static_cast<std::ptrdiff_t>(trailer_at + 48));
      v.bytes = std::move(bytes);
      say(fmt::format("trailer.sha256: flipped bit {} of byte {} and signed the flipped digest with the release "
                      "key (the signature verifies; the digest is not the image's)",
                      bit, off));
    } else if (variant == "signature-bit-flip") {
      flip(trailer_at + 48, 64, "trailer.signature");
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
