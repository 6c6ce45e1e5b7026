#include "otarig/harness/releases.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <iterator>

#include "otarig/drivers/clients/mender.hpp"
#include "otarig/drivers/clients/package.hpp"
#include "releases_mender.hpp"
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

namespace {

namespace clients = drivers::clients;

PackageSettings read_package_settings(const BoardProfile& profile) {
  PackageSettings s;
  auto section = profile.root.find("package");
  if (!section) return s;
  section->only_keys({"format", "hardware", "compatible", "handler", "device_type", "downgrade_check"});
  s.format = section->at("format").as_string();
  if (s.format != "swu" && s.format != "raucb" && s.format != "mender")
    section->at("format").fail(fmt::format("unknown package format '{}' (known: swu, raucb, mender)", s.format));
  for (const char* key : {"device_type", "downgrade_check"})
    if (s.format != "mender" && section->has(key)) section->at(key).fail(fmt::format("`{}` applies to mender only", key));
  if (section->has("downgrade_check")) s.downgrade_check = section->at("downgrade_check").as_bool();
  if (s.format != "swu" && section->has("hardware")) section->at("hardware").fail("`hardware` applies to swu only");
  if (s.format != "swu" && section->has("handler")) section->at("handler").fail("`handler` applies to swu only");
  if (section->has("handler")) {
    s.swu_handler = section->at("handler").as_string();
    if (s.swu_handler != "raw" && s.swu_handler != "rawfile")
      section->at("handler").fail(fmt::format("unknown SWUpdate handler '{}' (known: raw, rawfile)", s.swu_handler));
  }
  if (s.format != "raucb" && section->has("compatible"))
    section->at("compatible").fail("`compatible` applies to raucb only");
  auto word = [&](const char* key, std::string& value) {
    if (!section->has(key)) return;
    value = section->at(key).as_string();
    const bool ok = !value.empty() && value.size() <= 64 &&
                    std::all_of(value.begin(), value.end(), [](char c) {
                      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                             c == '-' || c == '_' || c == '.';
                    });
    if (!ok) section->at(key).fail("must be 1-64 of [A-Za-z0-9._-]");
  };
  word("hardware", s.hardware_revision);
  word("compatible", s.compatible);
  word("device_type", s.device_type);
  return s;
}

clients::PackageContent content_of(std::span<const std::uint8_t> slot_image) {
  return clients::package_content(slot_image);
}

// A version text with a seeded bit of one of its digits flipped (bit 0: it stays a digit).
std::string flip_version_digit(const std::string& version, Rng& rng, std::string* what) {
  std::vector<std::size_t> digits;
  for (std::size_t i = 0; i < version.size(); ++i)
    if (version[i] >= '0' && version[i] <= '9') digits.push_back(i);
  auto out = version;
  if (digits.empty()) return out;
  const auto at = digits[rng.below(digits.size())];
  out[at] = static_cast<char>(out[at] ^ 1);
  if (what) *what = fmt::format("version {} -> {}", version, out);
  return out;
}

std::string major_up(const std::string& version) {
  auto dot = version.find('.');
  try {
    return std::to_string(std::stoul(version.substr(0, dot)) + 1) + version.substr(dot);
  } catch (const std::exception&) {
    return "9" + version;
  }
}

// Replaces every `key` value in `text` by `edit(value)`. The value runs from
// after `key` up to `end` (exclusive).
std::string edit_values(const std::string& text, const std::string& key, char end,
                        const std::function<std::string(const std::string&)>& edit) {
  std::string out;
  std::size_t at = 0;
  while (true) {
    auto k = text.find(key, at);
    if (k == std::string::npos) break;
    const auto v = k + key.size();
    auto e = text.find(end, v);
    if (e == std::string::npos) break;
    out += text.substr(at, v - at);
    out += edit(text.substr(v, e - v));
    at = e;
  }
  out += text.substr(at);
  return out;
}

std::string change_hex_digit(const std::string& hex, std::size_t at) {
  auto out = hex;
  if (at < out.size()) out[at] = out[at] == '0' ? '1' : '0';
  return out;
}

}  // namespace

ReleaseSet::ReleaseSet(const BoardProfile& profile) {
  auto dir = profile.path.parent_path();
  package_ = read_package_settings(profile);
  if (!package_.format.empty())
    pki_ = std::make_shared<const clients::SigningPki>(clients::SigningPki::generate(profile.name + " package"));
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
    if (pki_ && b.authentic) {
      b.package = package(b.bytes);
      b.package_of = b.digest;
    }
    releases_.push_back(std::move(b));
  }
  // The self-test-failing twin of every generated release is authentic too.
  for (const auto& r : releases_) {
    if (r.bytes.size() < image::kHeaderSize) continue;
    authentic_.push_back(self_test_twin(r).digest);
  }
}

// What the device trusts packages by: the CA (SWUpdate, RAUC verify a CMS
// signer's chain), or the signer's public key (Mender verifies an artifact
// against one key, ArtifactVerifyKey).
std::string ReleaseSet::package_trust_pem() const {
  if (!pki_) return {};
  return package_.format == "mender" ? clients::mender::public_key_pem(pki_->signer.key_pem) : pki_->ca.cert_pem;
}

image::Bytes ReleaseSet::package(std::span<const std::uint8_t> slot_image) const {
  if (!pki_) throw BenchError("the board takes no packages (no `package:` in its profile)");
  if (package_.format == "mender") return mender_packages::artifact(package_, slot_image, &pki_->signer);
  auto content = content_of(slot_image);
  if (package_.format == "swu")
    return clients::swu_archive(
        clients::swu_parts(content, &pki_->signer, package_.hardware_revision, package_.swu_handler));
  return clients::rauc_bundle(clients::rauc_manifest(content, package_.compatible), content.image, pki_->signer,
                              pki_->ca.cert_pem);
}

image::Bytes ReleaseSet::artifact(const BuiltImage& img) const {
  if (!pki_) return img.bytes;
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
  auto content = content_of(inner);
  std::string what;
  const auto& hw = package_.hardware_revision;
  if (package_.format == "mender") {
    v.package = mender_packages::variant(package_, *pki_, base.bytes, inner, kind, variant, rng, what);
  } else if (package_.format == "swu") {
    auto parts = clients::swu_parts(content, &pki_->signer, hw, package_.swu_handler);
    if (kind == "unsigned") {
      parts = clients::swu_parts(content, nullptr, hw, package_.swu_handler);
      what = "no sw-description.sig";
    } else if (kind == "wrong-key") {
      parts = clients::swu_parts(content, &pki_->wrong_signer, hw, package_.swu_handler);
      what = "sw-description signed by a signer of an unrelated CA";
    } else if (variant == "payload-bit-flip" || variant == "digest-resigned") {
      content.described_image = base.bytes;
      parts = clients::swu_parts(content, &pki_->signer, hw, package_.swu_handler);
      what = "sw-description (signed) gives the sha256 of the release; the archive carries another image";
    } else if (variant == "header-bit-flip") {
      parts.description = edit_values(parts.description, "version = \"", '"',
                                      [&](const std::string& ver) { return flip_version_digit(ver, rng, &what); });
      what = "sw-description edited after signing: " + what;
    } else if (variant == "version-edited") {
      parts.description = edit_values(parts.description, "version = \"", '"', [&](const std::string& ver) {
        what = fmt::format("sw-description edited after signing: version {} -> {}", ver, major_up(ver));
        return major_up(ver);
      });
    } else if (variant == "digest-bit-flip") {
      const auto at = static_cast<std::size_t>(rng.below(64));
      parts.description = edit_values(parts.description, "sha256 = \"", '"',
                                      [&](const std::string& hex) { return change_hex_digit(hex, at); });
      what = fmt::format("sw-description edited after signing: hex digit {} of the image's sha256", at);
    } else if (variant == "signature-bit-flip") {
      // In the signature value itself: elsewhere in the CMS structure a bit
      // may sit in a field the check does not cover, and the package would
      // still be validly signed (by the rig, over the flipped image).
      auto& sig = *parts.signature;
      const auto [value_at, value_len] = clients::cms_signature_value(sig);
      const auto at = value_at + static_cast<std::size_t>(rng.below(value_len));
      const auto bit = static_cast<unsigned>(rng.below(8));
      sig[at] = static_cast<std::uint8_t>(sig[at] ^ (1u << bit));
      what = fmt::format("bit {} of byte {} of sw-description.sig flipped (in its signature value)", bit, at);
    } else if (variant == "truncated") {
      // Cut inside the image's data: never a whole image left.
      std::vector<clients::cpio::Entry> entries{{"sw-description", {}}, {"sw-description.sig", *parts.signature},
                                                {clients::kSwuImageName, parts.image}};
      entries[0].data.assign(parts.description.begin(), parts.description.end());
      const auto image_at = clients::cpio::data_offsets(entries)[2];
      auto archive = clients::swu_archive(parts);
      const auto cut = image_at + rng.below(parts.image.size());
      v.package.assign(archive.begin(), archive.begin() + static_cast<std::ptrdiff_t>(cut));
      what = fmt::format("archive truncated to {} of {} bytes (inside the image)", cut, archive.size());
    } else if (variant == "appended") {
      // Bytes after the archive's trailer are outside everything the client
      // reads (SWUpdate ignores them, harmlessly); appended to the image
      // inside the archive they are outside what the signature covers.
      image::Bytes extra(4096);
      for (auto& b : extra) b = static_cast<std::uint8_t>(rng.next());
      parts.image.insert(parts.image.end(), extra.begin(), extra.end());
      inner = parts.image;
      what = "4096 bytes appended to the image inside the archive (not in its signed sha256)";
    } else {
      throw InputError(fmt::format("unknown tamper variant '{}'", variant));
    }
    if (v.package.empty()) v.package = clients::swu_archive(parts);
  } else {
    const auto manifest = clients::rauc_manifest(content, package_.compatible);
    auto signed_bundle = [&] { return clients::rauc_bundle(manifest, inner, pki_->signer, pki_->ca.cert_pem); };
    // The bundle's content with its manifest edited, under the original signature.
    auto edited = [&](const std::function<std::string(const std::string&)>& edit) {
      auto bundle = signed_bundle();
      auto parts = clients::rauc_split(bundle);
      const auto signed_manifest = clients::rauc_bundle_manifest(bundle);
      const auto m = edit(signed_manifest);
      parts.squashfs = clients::squashfs({{"manifest.raucm", image::Bytes(m.begin(), m.end())},
                                          {clients::kRaucImageName, inner}});
      return clients::rauc_join(parts);
    };
    if (kind == "unsigned") {
      v.package = clients::rauc_split(signed_bundle()).squashfs;
      what = "the bundle's squashfs without signature";
    } else if (kind == "wrong-key") {
      v.package = clients::rauc_bundle(manifest, inner, pki_->wrong_signer, pki_->wrong_ca.cert_pem);
      what = "bundle signed by a signer of an unrelated CA";
    } else if (variant == "payload-bit-flip" || variant == "digest-resigned") {
      auto good = clients::rauc_bundle(clients::rauc_manifest(content_of(base.bytes), package_.compatible),
                                       base.bytes, pki_->signer, pki_->ca.cert_pem);
      auto parts = clients::rauc_split(good);
      const auto m = clients::rauc_bundle_manifest(good);
      parts.squashfs = clients::squashfs({{"manifest.raucm", image::Bytes(m.begin(), m.end())},
                                          {clients::kRaucImageName, inner}});
      v.package = clients::rauc_join(parts);
      what = "the release's signature and manifest over a squashfs carrying another image";
    } else if (variant == "header-bit-flip") {
      v.package = edited([&](const std::string& m) {
        return edit_values(m, "version=", '\n', [&](const std::string& ver) { return flip_version_digit(ver, rng, &what); });
      });
      what = "manifest edited after signing: " + what;
    } else if (variant == "version-edited") {
      v.package = edited([&](const std::string& m) {
        return edit_values(m, "version=", '\n', [&](const std::string& ver) {
          what = fmt::format("manifest edited after signing: version {} -> {}", ver, major_up(ver));
          return major_up(ver);
        });
      });
    } else if (variant == "digest-bit-flip") {
      const auto at = static_cast<std::size_t>(rng.below(64));
      v.package = edited([&](const std::string& m) {
        return edit_values(m, "sha256=", '\n', [&](const std::string& hex) { return change_hex_digit(hex, at); });
      });
      what = fmt::format("manifest edited after signing: hex digit {} of the image's sha256", at);
    } else if (variant == "signature-bit-flip") {
      auto parts = clients::rauc_split(signed_bundle());
      const auto [value_at, value_len] = clients::cms_signature_value(parts.signature);
      const auto at = value_at + static_cast<std::size_t>(rng.below(value_len));
      const auto bit = static_cast<unsigned>(rng.below(8));
      parts.signature[at] = static_cast<std::uint8_t>(parts.signature[at] ^ (1u << bit));
      v.package = clients::rauc_join(parts);
      what = fmt::format("bit {} of byte {} of the bundle's CMS signature flipped (in its signature value)", bit, at);
    } else if (variant == "truncated") {
      auto bundle = signed_bundle();
      const auto squashfs_size = bundle.size() - clients::rauc_split(bundle).signature.size() - 8;
      const auto cut = rng.below(squashfs_size);
      v.package.assign(bundle.begin(), bundle.begin() + static_cast<std::ptrdiff_t>(cut));
      what = fmt::format("bundle truncated to {} of {} bytes", cut, bundle.size());
    } else if (variant == "appended") {
      v.package = signed_bundle();
      for (int i = 0; i < 4096; ++i) v.package.push_back(static_cast<std::uint8_t>(rng.next()));
      what = "4096 bytes appended after the bundle";
    } else {
      throw InputError(fmt::format("unknown tamper variant '{}'", variant));
    }
  }
  v.bytes = std::move(inner);
  v.digest = device_digest(v.bytes);
  v.package_of = v.digest;
  if (detail) *detail = what + "; " + inner_note;
  return v;
}

const BuiltImage& ReleaseSet::get(const std::string& name) const {
  for (const auto& r : releases_)
    if (r.name == name) return r;
  throw InputError(fmt::format("no release named '{}' in the board profile", name));
}

BuiltImage ReleaseSet::make_variant(const BuiltImage& base, const std::string& kind, const std::string& variant,
                                    Rng& rng, std::string* detail) const {
  if (pki_ && (kind == "unsigned" || kind == "wrong-key" || kind == "tamper"))
    return package_variant(base, kind, variant, rng, detail);
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
    if (pki_) {
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
      const std::size_t off = f.at + rng.below(f.size);
      const unsigned bit = static_cast<unsigned>(rng.below(8));
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
