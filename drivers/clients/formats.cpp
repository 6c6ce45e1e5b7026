// The package formats of the clients family: SWUpdate's .swu and RAUC's
// bundle, each with the damages the campaign's hostile variants deliver
// (docs/ota-clients.md, "variants").
#include <fmt/format.h>

#include <functional>
#include <map>
#include <mutex>
#include <set>

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

  // Delta packages (SWUpdate's delta handler, docs/ota-clients.md): the .swu
  // carries the zchunk header of the new image and names the .zck, which the
  // update server publishes beside it; the device assembles the new image
  // from its running slot and the chunks it lacks, fetched in byte ranges.
  bool makes_deltas() const override { return !encrypts() && have_tool("zck") && have_tool("zck_read_header"); }
  std::string no_deltas() const override {
    if (encrypts())
      return "the rig makes no SWUpdate delta package of encrypted images (its .zck would carry the plaintext)";
    return "SWUpdate delta packages need zchunk's zck and zck_read_header, which are not installed (ci/setup with "
           "OTARIG_SETUP_EXTRA=clients)";
  }
  bool delta_fetches_ranges() const override { return true; }

  DeltaPackage delta_package(std::span<const std::uint8_t> base, std::span<const std::uint8_t> target,
                             const std::string& files_url) const override {
    // A zchunk package names no base: the device finds in its running slot
    // the chunks it holds.
    (void)base;
    const auto z = zchunk_of(target);
    auto d = delta_of(target, z.file, z.header_size, files_url);
    d.what = fmt::format("a SWUpdate delta package: the zchunk header of the new image ({} chunks) in the .swu, "
                         "the .zck at {}",
                         z.chunks.size(), files_url + d.files.front().path);
    return d;
  }

  DeltaPackage corrupt_delta(std::span<const std::uint8_t> base, std::span<const std::uint8_t> target,
                             const std::string& files_url, core::Rng& rng) const override {
    const auto z = zchunk_of(target);
    std::set<std::string> held;
    for (const auto& c : zchunk_of(base).chunks) held.insert(c.uncompressed_sha256);
    std::vector<std::size_t> fetched;
    for (std::size_t i = 0; i < z.chunks.size(); ++i)
      if (!held.count(z.chunks[i].uncompressed_sha256)) fetched.push_back(i);
    if (fetched.empty())
      throw InputError("the running image holds every chunk of the new one: a SWUpdate delta fetches none to corrupt");
    const auto k = fetched[rng.below(fetched.size())];
    const auto& chunk = z.chunks[k];
    const auto at = chunk.start + rng.below(chunk.comp_size);
    const auto bit = static_cast<unsigned>(rng.below(8));
    auto file = z.file;
    file[at] = static_cast<std::uint8_t>(file[at] ^ (1u << bit));
    auto d = delta_of(target, file, z.header_size, files_url);
    // What a device that took the chunk unchecked would assemble stands as
    // the new image with a seeded bit of that chunk's bytes flipped.
    d.slot_image.assign(target.begin(), target.end());
    const auto pos = chunk.image_at + rng.below(chunk.size);
    d.slot_image[pos] = static_cast<std::uint8_t>(d.slot_image[pos] ^ (1u << rng.below(8)));
    d.what = fmt::format("a SWUpdate delta package whose .zck ({}) has bit {} of byte {} flipped, in chunk {} of {} "
                         "({} compressed bytes from byte {}; image bytes {}..{}), which the running image lacks; the "
                         "signed header in the .swu keeps the chunk's digest",
                         files_url + d.files.front().path, bit, at, k + 1, z.chunks.size(), chunk.comp_size,
                         chunk.start, chunk.image_at, chunk.image_at + chunk.size - 1);
    return d;
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
  // The zchunk file of an image, made once per image.
  Zchunk zchunk_of(std::span<const std::uint8_t> image) const {
    const auto key = crypto::hex(crypto::sha256(image));
    {
      std::lock_guard lock(zck_mutex_);
      if (auto it = zcks_.find(key); it != zcks_.end()) return it->second;
    }
    auto z = zchunk(image);
    std::lock_guard lock(zck_mutex_);
    return zcks_.emplace(key, std::move(z)).first->second;
  }

  // The signed .swu of the delta whose .zck is `zck` (its header the first
  // `header_size` bytes), and the .zck to publish at the path it names.
  DeltaPackage delta_of(std::span<const std::uint8_t> target, const Bytes& zck, std::size_t header_size,
                        const std::string& files_url) const {
    if (files_url.empty())
      throw BenchError("a SWUpdate delta package names the URL of its .zck on the update server, and the board's "
                       "link publishes no files beside a delivery (it needs the update server: `serve: http`)");
    const std::string path = "/deltas/" + crypto::hex(crypto::sha256(zck)).substr(0, 32) + ".zck";
    const Bytes header(zck.begin(), zck.begin() + static_cast<std::ptrdiff_t>(header_size));
    const auto target_sha = crypto::hex(crypto::sha256(target));
    std::string scripts[2], script_sha[2];
    for (int s = 0; s < 2; ++s) {
      scripts[s] = swu_verify_script(s, target.size(), target_sha);
      script_sha[s] = crypto::hex(crypto::sha256(std::string_view(scripts[s])));
    }
    const auto description =
        swu_delta_description(package_content(target), hardware_, handler_, kSwuDeltaHeaderName,
                              crypto::hex(crypto::sha256(header)), files_url + path, script_sha);
    std::vector<cpio::Entry> entries;
    entries.push_back({"sw-description", Bytes(description.begin(), description.end())});
    entries.push_back({"sw-description.sig", cms_sign({reinterpret_cast<const std::uint8_t*>(description.data()),
                                                       description.size()},
                                                      pki_.signer)});
    entries.push_back({kSwuDeltaHeaderName, header});
    for (int s = 0; s < 2; ++s) entries.push_back({swu_verify_script_name(s), Bytes(scripts[s].begin(), scripts[s].end())});
    // A file sw-description does not name, which SWUpdate skips: it keeps
    // the .swu larger than the downloader's IPC socket buffer (about 200
    // KiB), below which SWUpdate 2022.12's downloader can finish before the
    // installer thread runs and fail a clean install (docs/ota-clients.md,
    // "SWUpdate 2022.12 fails small images now and then").
    entries.push_back({kSwuPaddingName, Bytes(256 * 1024, 0)});
    DeltaPackage d;
    d.package = cpio::write(entries);
    d.files.push_back({path, zck});
    return d;
  }

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
  mutable std::mutex zck_mutex_;
  mutable std::map<std::string, Zchunk> zcks_;
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
