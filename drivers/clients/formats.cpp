// The package formats of the clients family: SWUpdate's .swu and RAUC's
// bundle, each with the damages the campaign's hostile variants deliver
// (docs/ota-clients.md, "variants").
#include <fmt/format.h>

#include <functional>

#include "formats.hpp"
#include "otarig/core/crypto.hpp"
#include "otarig/core/encryption.hpp"
#include "otarig/core/errors.hpp"
#include "otarig/drivers/clients/package.hpp"
#include "otarig/drivers/registry.hpp"

namespace otarig::drivers::clients {

void read_word(const Config& section, const char* key, std::string& value) {
  if (!section.has(key)) return;
  value = section.at(key).as_string();
  const bool ok = !value.empty() && value.size() <= 64 &&
                  std::all_of(value.begin(), value.end(), [](char c) {
                    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                           c == '_' || c == '.';
                  });
  if (!ok) section.at(key).fail("must be 1-64 of [A-Za-z0-9._-]");
}

SigningPki signing_pki(const Config& section, const std::string& board_name, const std::filesystem::path& dir) {
  auto signer = section.find("signer");
  if (!signer) return SigningPki::generate(board_name + " package");
  std::filesystem::path folder = signer->as_string();
  if (folder.empty()) signer->fail("name a folder");
  if (folder.is_relative()) folder = dir / folder;
  if (!std::filesystem::exists(folder / "signer.key")) SigningPki::generate(board_name + " package").write(folder);
  return SigningPki::read(folder);
}

PemPair signer_outside_validity(const SigningPki& pki, const std::string& board_label, std::int64_t not_before,
                                std::int64_t not_after, std::string* what) {
  auto signer = issue_signer(pki.ca, board_label + " signer outside its validity", not_before, not_after);
  if (what)
    *what = fmt::format("signed by a signer certificate the device's CA issued, valid {} .. {}",
                        image::utc_text(static_cast<std::uint64_t>(not_before)),
                        image::utc_text(static_cast<std::uint64_t>(not_after)));
  return signer;
}

std::string other_device(const std::string& own) {
  std::string other = "otarig-other-device";
  if (other == own) other += "-2";
  return other;
}

namespace {

// A version text with a seeded bit of one of its digits flipped (bit 0: it stays a digit).
std::string flip_version_digit(const std::string& version, core::Rng& rng, std::string* what) {
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

class SwuFormat : public PackageFormat {
 public:
  SwuFormat(const Config& section, const std::string& board_name, const std::filesystem::path& dir)
      : pki_(signing_pki(section, board_name, dir)) {
    section.only_keys({"format", "signer", "hardware", "handler", "encrypt_images", "installed_directly"});
    if (section.has("installed_directly")) installed_directly_ = section.at("installed_directly").as_bool();
    if (section.has("encrypt_images")) {
      encrypt_images_ = section.at("encrypt_images").as_bool();
    }
    if (section.has("handler")) {
      handler_ = section.at("handler").as_string();
      if (handler_ != "raw" && handler_ != "rawfile")
        section.at("handler").fail(fmt::format("unknown SWUpdate handler '{}' (known: raw, rawfile)", handler_));
    }
    read_word(section, "hardware", hardware_);
  }

  std::string trust_pem() const override { return pki_.ca.cert_pem; }

  void encrypt_for(const encryption::AesKey& key) override { key_ = key; }

  image::Bytes package(std::span<const std::uint8_t> slot_image) const override {
    return swu_archive(swu_parts(content_of(slot_image), &pki_.signer, hardware_, handler_));
  }

  std::string no_signer_validity() const override { return {}; }
  image::Bytes signed_outside_validity(std::span<const std::uint8_t> slot_image, std::int64_t not_before,
                                       std::int64_t not_after, std::string* what) const override {
    const auto signer = signer_outside_validity(pki_, "swu", not_before, not_after, what);
    return swu_archive(swu_parts(package_content(slot_image), &signer, hardware_, handler_));
  }

  PackageDamage damage(std::span<const std::uint8_t> release, image::Bytes damaged, const std::string& kind,
                       const std::string& variant, core::Rng& rng) const override {
    PackageDamage d;
    auto content = content_of(damaged);
    auto parts = swu_parts(content, &pki_.signer, hardware_, handler_);
    std::string& what = d.what;
    if ((kind == "tampered-ciphertext" || kind == "other-device-key") && !key_)
      throw InputError(fmt::format("fault kind '{}' needs a board whose images are encrypted", kind));
    if ((kind == "tampered-ciphertext" || kind == "other-device-key") && !encrypts()) {
      // A build that encrypts nothing (encrypt_images: false): what travels
      // is the plain image, for this device or any other.
      auto plain = content_of(release);
      parts = swu_parts(plain, &pki_.signer, hardware_, handler_);
      if (kind == "tampered-ciphertext") {
        const std::size_t at = image::kHeaderSize + 32 + rng.below(plain.image.size() - image::kHeaderSize - 32);
        const auto bit = static_cast<unsigned>(rng.below(8));
        parts.image[at] = static_cast<std::uint8_t>(parts.image[at] ^ (1u << bit));
        damaged = parts.image;
        what = fmt::format("bit {} of byte {} of the image flipped after signing (the build left it unencrypted)",
                           bit, at);
      } else {
        damaged = plain.image;
        what = "the release as the build makes it for another device: unencrypted (the build encrypts nothing)";
      }
    } else if (kind == "tampered-ciphertext" || kind == "other-device-key") {
      auto good = content_of(release);
      const auto iv = crypto::from_hex(good.ivt);
      const std::span<const std::uint8_t, 16> ivs(iv.data(), 16);
      if (kind == "tampered-ciphertext") {
        // The release's valid package with one ciphertext bit flipped after
        // signing: past the header and the marker (the plaintext's first
        // image::kHeaderSize + 32 bytes, whole blocks) and before the last
        // block, so the padding stays valid and only the signed sha256 can
        // refuse it. CBC: the flipped bit's block decrypts to garbage, the
        // same bit of the next block flips.
        const std::size_t skip = image::kHeaderSize + 32;
        const std::size_t blocks_end = good.image.size() - 16;
        if (blocks_end <= skip) throw InputError("the image is too short to tamper with its ciphertext");
        const std::size_t at = skip + rng.below(blocks_end - skip);
        const auto bit = static_cast<unsigned>(rng.below(8));
        good.image[at] = static_cast<std::uint8_t>(good.image[at] ^ (1u << bit));
        parts = swu_parts(content_of(release), &pki_.signer, hardware_, handler_);
        parts.image = good.image;
        damaged = encryption::aes_cbc_decrypt_raw(good.image, *key_, ivs);
        damaged.resize(release.size());
        what = fmt::format("bit {} of ciphertext byte {} of the encrypted image flipped after signing (the signed "
                           "sha256 is the untampered ciphertext's)",
                           bit, at);
      } else {
        const auto other = encryption::AesKey::test_key("otarig another device");
        good.image = encryption::aes_cbc_encrypt(release, other, ivs);
        parts = swu_parts(good, &pki_.signer, hardware_, handler_);
        // What a device that decrypts it with its own key writes (garbage, padding included).
        damaged = encryption::aes_cbc_decrypt_raw(good.image, *key_, ivs);
        what = fmt::format("the release encrypted with another device's AES key ({}...), validly signed",
                           crypto::hex(other.key).substr(0, 16));
      }
    } else if (kind == "wrong-device") {
      const auto other = other_device(hardware_);
      parts = swu_parts(content, &pki_.signer, other, handler_);
      what = fmt::format("validly signed sw-description for hardware revision {} (the board is {})", other, hardware_);
    } else if (kind == "unsigned") {
      parts = swu_parts(content, nullptr, hardware_, handler_);
      what = "no sw-description.sig";
    } else if (kind == "wrong-key") {
      parts = swu_parts(content, &pki_.wrong_signer, hardware_, handler_);
      what = "sw-description signed by a signer of an unrelated CA";
    } else if (variant == "payload-bit-flip" || variant == "digest-resigned") {
      content.described_image = content_of(release).image;
      parts = swu_parts(content, &pki_.signer, hardware_, handler_);
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
      const auto [value_at, value_len] = cms_signature_value(sig);
      const auto at = value_at + static_cast<std::size_t>(rng.below(value_len));
      const auto bit = static_cast<unsigned>(rng.below(8));
      sig[at] = static_cast<std::uint8_t>(sig[at] ^ (1u << bit));
      what = fmt::format("bit {} of byte {} of sw-description.sig flipped (in its signature value)", bit, at);
    } else if (variant == "truncated") {
      // Cut inside the image's data: never a whole image left.
      std::vector<cpio::Entry> entries{
          {"sw-description", {}}, {"sw-description.sig", *parts.signature}, {kSwuImageName, parts.image}};
      entries[0].data.assign(parts.description.begin(), parts.description.end());
      const auto image_at = cpio::data_offsets(entries)[2];
      auto archive = swu_archive(parts);
      const auto cut = image_at + rng.below(parts.image.size());
      d.package.assign(archive.begin(), archive.begin() + static_cast<std::ptrdiff_t>(cut));
      what = fmt::format("archive truncated to {} of {} bytes (inside the image)", cut, archive.size());
    } else if (variant == "appended") {
      // Bytes after the archive's trailer are outside everything the client
      // reads (SWUpdate ignores them, harmlessly); appended to the image
      // inside the archive they are outside what the signature covers.
      image::Bytes extra(4096);
      for (auto& b : extra) b = static_cast<std::uint8_t>(rng.next());
      parts.image.insert(parts.image.end(), extra.begin(), extra.end());
      damaged = parts.image;
      what = "4096 bytes appended to the image inside the archive (not in its signed sha256)";
    } else {
      throw InputError(fmt::format("unknown tamper variant '{}'", variant));
    }
    if (d.package.empty()) d.package = swu_archive(parts);
    d.slot_image = std::move(damaged);
    return d;
  }

 private:
  bool encrypts() const { return key_ && encrypt_images_; }
  // The package's content: the slot image, encrypted when the board's images
  // are, with an IV of its own (from its digest: the same bytes on every
  // machine; SWUpdate's ivt overrides the key file's IV, CWE-329).
  PackageContent content_of(std::span<const std::uint8_t> slot_image) const {
    auto c = package_content(slot_image);
    c.installed_directly = installed_directly_;
    if (!encrypts()) return c;
    const auto d = crypto::sha256("otarig swu ivt:" + crypto::hex(crypto::sha256(slot_image)));
    const std::span<const std::uint8_t, 16> iv(d.data(), 16);
    c.image = encryption::aes_cbc_encrypt(slot_image, *key_, iv);
    c.ivt = crypto::hex(iv);
    return c;
  }

  SigningPki pki_;
  std::string hardware_ = kSwuHardwareRevision;
  std::string handler_ = "raw";
  std::optional<encryption::AesKey> key_;
  /// false: a flawed build that hands the device its key but leaves the
  /// images plain (docs/ota-clients.md, "Encrypted images").
  bool encrypt_images_ = true;
  bool installed_directly_ = true;
};

class RaucFormat : public PackageFormat {
 public:
  RaucFormat(const Config& section, const std::string& board_name, const std::filesystem::path& dir)
      : pki_(signing_pki(section, board_name, dir)) {
    section.only_keys({"format", "signer", "compatible"});
    read_word(section, "compatible", compatible_);
  }

  std::string trust_pem() const override { return pki_.ca.cert_pem; }

  image::Bytes package(std::span<const std::uint8_t> slot_image) const override {
    auto content = package_content(slot_image);
    return rauc_bundle(rauc_manifest(content, compatible_), content.image, pki_.signer, pki_.ca.cert_pem);
  }

  std::string no_signer_validity() const override { return {}; }
  // No keyring for `rauc bundle`: its own check of the new bundle would
  // refuse the signer (by the host's clock).
  image::Bytes signed_outside_validity(std::span<const std::uint8_t> slot_image, std::int64_t not_before,
                                       std::int64_t not_after, std::string* what) const override {
    const auto signer = signer_outside_validity(pki_, "raucb", not_before, not_after, what);
    auto content = package_content(slot_image);
    return rauc_bundle(rauc_manifest(content, compatible_), content.image, signer, "");
  }

  PackageDamage damage(std::span<const std::uint8_t> release, image::Bytes damaged, const std::string& kind,
                       const std::string& variant, core::Rng& rng) const override {
    PackageDamage d;
    std::string& what = d.what;
    const auto manifest = rauc_manifest(package_content(damaged), compatible_);
    auto signed_bundle = [&] { return rauc_bundle(manifest, damaged, pki_.signer, pki_.ca.cert_pem); };
    // The bundle's content with its manifest edited, under the original signature.
    auto edited = [&](const std::function<std::string(const std::string&)>& edit) {
      auto bundle = signed_bundle();
      auto parts = rauc_split(bundle);
      const auto m = edit(rauc_bundle_manifest(bundle));
      parts.squashfs = squashfs({{"manifest.raucm", image::Bytes(m.begin(), m.end())}, {kRaucImageName, damaged}});
      return rauc_join(parts);
    };
    if (kind == "wrong-device") {
      const auto other = other_device(compatible_);
      d.package = rauc_bundle(rauc_manifest(package_content(damaged), other), damaged, pki_.signer, pki_.ca.cert_pem);
      what = fmt::format("validly signed bundle for compatible {} (the system is {})", other, compatible_);
    } else if (kind == "unsigned") {
      d.package = rauc_split(signed_bundle()).squashfs;
      what = "the bundle's squashfs without signature";
    } else if (kind == "wrong-key") {
      d.package = rauc_bundle(manifest, damaged, pki_.wrong_signer, pki_.wrong_ca.cert_pem);
      what = "bundle signed by a signer of an unrelated CA";
    } else if (variant == "payload-bit-flip" || variant == "digest-resigned") {
      auto good = rauc_bundle(rauc_manifest(package_content(release), compatible_),
                              image::Bytes(release.begin(), release.end()), pki_.signer, pki_.ca.cert_pem);
      auto parts = rauc_split(good);
      const auto m = rauc_bundle_manifest(good);
      parts.squashfs = squashfs({{"manifest.raucm", image::Bytes(m.begin(), m.end())}, {kRaucImageName, damaged}});
      d.package = rauc_join(parts);
      what = "the release's signature and manifest over a squashfs carrying another image";
    } else if (variant == "header-bit-flip") {
      d.package = edited([&](const std::string& m) {
        return edit_values(m, "version=", '\n',
                           [&](const std::string& ver) { return flip_version_digit(ver, rng, &what); });
      });
      what = "manifest edited after signing: " + what;
    } else if (variant == "version-edited") {
      d.package = edited([&](const std::string& m) {
        return edit_values(m, "version=", '\n', [&](const std::string& ver) {
          what = fmt::format("manifest edited after signing: version {} -> {}", ver, major_up(ver));
          return major_up(ver);
        });
      });
    } else if (variant == "digest-bit-flip") {
      const auto at = static_cast<std::size_t>(rng.below(64));
      d.package = edited([&](const std::string& m) {
        return edit_values(m, "sha256=", '\n', [&](const std::string& hex) { return change_hex_digit(hex, at); });
      });
      what = fmt::format("manifest edited after signing: hex digit {} of the image's sha256", at);
    } else if (variant == "signature-bit-flip") {
      auto parts = rauc_split(signed_bundle());
      const auto [value_at, value_len] = cms_signature_value(parts.signature);
      const auto at = value_at + static_cast<std::size_t>(rng.below(value_len));
      const auto bit = static_cast<unsigned>(rng.below(8));
      parts.signature[at] = static_cast<std::uint8_t>(parts.signature[at] ^ (1u << bit));
      d.package = rauc_join(parts);
      what = fmt::format("bit {} of byte {} of the bundle's CMS signature flipped (in its signature value)", bit, at);
    } else if (variant == "truncated") {
      auto bundle = signed_bundle();
      const auto squashfs_size = bundle.size() - rauc_split(bundle).signature.size() - 8;
      const auto cut = rng.below(squashfs_size);
      d.package.assign(bundle.begin(), bundle.begin() + static_cast<std::ptrdiff_t>(cut));
      what = fmt::format("bundle truncated to {} of {} bytes", cut, bundle.size());
    } else if (variant == "appended") {
      d.package = signed_bundle();
      for (int i = 0; i < 4096; ++i) d.package.push_back(static_cast<std::uint8_t>(rng.next()));
      what = "4096 bytes appended after the bundle";
    } else {
      throw InputError(fmt::format("unknown tamper variant '{}'", variant));
    }
    d.slot_image = std::move(damaged);
    return d;
  }

 private:
  SigningPki pki_;
  std::string compatible_ = "otarig-board";
};

}  // namespace

void register_package_formats(DriverRegistry& registry) {
  registry.add_package_format(
      "swu", [](const Config& section, const std::string& board, const std::filesystem::path& dir) {
        return std::make_unique<SwuFormat>(section, board, dir);
      });
  registry.add_package_format(
      "raucb", [](const Config& section, const std::string& board, const std::filesystem::path& dir) {
        return std::make_unique<RaucFormat>(section, board, dir);
      });
  registry.add_package_format("mender", make_mender_format);
}

}  // namespace otarig::drivers::clients

namespace otarig::drivers {
void register_clients_drivers(DriverRegistry& registry) { clients::register_package_formats(registry); }
}  // namespace otarig::drivers
