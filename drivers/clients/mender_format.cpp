// Mender's artifacts as a package format (docs/ota-clients.md, "Mender"):
// the releases as signed rootfs-image artifacts with the board's state
// scripts, and their hostile variants.
#include <fmt/format.h>

#include "formats.hpp"
#include "otarig/core/errors.hpp"
#include "otarig/drivers/clients/mender.hpp"
#include "otarig/drivers/clients/package.hpp"

namespace otarig::drivers::clients {
namespace {


// Where `text` lies in the artifact; the artifacts are written without
// compression, so the header and the manifest are plain text inside it.
std::size_t locate(const image::Bytes& artifact, const std::string& text, const char* what) {
  const auto at = mender::find(artifact, text);
  if (at == std::string::npos) throw BenchError(fmt::format("mender artifact: no {} ('{}') in it", what, text));
  return at;
}

// The value of "KEY":"VALUE" in the artifact's header: {offset, length}.
std::pair<std::size_t, std::size_t> header_value(const image::Bytes& artifact, const std::string& key) {
  const auto at = locate(artifact, "\"" + key + "\":\"", "header field") + key.size() + 4;
  std::size_t end = at;
  while (end < artifact.size() && artifact[end] != '"') ++end;
  return {at, end - at};
}

std::size_t image_offset(const image::Bytes& artifact, std::span<const std::uint8_t> image) {
  const auto at = mender::find(artifact, image);
  if (at == std::string::npos) throw BenchError("mender artifact: the slot image is not stored in it as is");
  return at;
}

// A ustar header's size field set to `size`, its checksum made again.
void set_tar_size(image::Bytes& a, std::size_t header, std::uint64_t size) {
  const auto octal = fmt::format("{:011o}", size);
  std::copy(octal.begin(), octal.end(), a.begin() + static_cast<std::ptrdiff_t>(header + 124));
  a[header + 135] = 0;
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i < 512; ++i) sum += (i >= 148 && i < 156) ? ' ' : a[header + i];
  const auto text = fmt::format("{:06o}", sum);
  std::copy(text.begin(), text.end(), a.begin() + static_cast<std::ptrdiff_t>(header + 148));
  a[header + 154] = 0;
  a[header + 155] = ' ';
}

std::uint64_t tar_size(const image::Bytes& a, std::size_t header) {
  return std::stoull(std::string(a.begin() + static_cast<std::ptrdiff_t>(header + 124),
                                 a.begin() + static_cast<std::ptrdiff_t>(header + 135)),
                     nullptr, 8);
}

const std::string kBase64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";


class MenderFormat : public PackageFormat {
 public:
  MenderFormat(const Config& section, const std::string& board_name, const std::filesystem::path& dir)
      : pki_(signing_pki(section, board_name, dir)) {
    section.only_keys({"format", "signer", "device_type", "downgrade_check"});
    read_word(section, "device_type", device_type_);
    downgrade_check_ = section.bool_or("downgrade_check", true);
  }

  // Mender verifies an artifact against one key (ArtifactVerifyKey), not a chain.
  std::string trust_pem() const override { return mender::public_key_pem(pki_.signer.key_pem); }

  std::string no_signer_validity() const override {
    return "Mender artifacts are signed with a bare key checked against ArtifactVerifyKey: no signer certificate, "
           "so no validity period to end or begin";
  }

  image::Bytes package(std::span<const std::uint8_t> slot_image) const override {
    return artifact(slot_image, &pki_.signer);
  }

  PackageDamage damage(std::span<const std::uint8_t> release_bytes, image::Bytes damaged, const std::string& kind,
                       const std::string& variant, core::Rng& rng) const override {
    const image::Bytes base(release_bytes.begin(), release_bytes.end());
    std::string what;
    auto a = damaged_artifact(base, damaged, kind, variant, rng, what);
    return {std::move(a), std::move(damaged), std::move(what)};
  }

 private:
  // A rootfs-image artifact of `slot_image` with the board's state scripts,
  // signed by `signer` (nullptr: unsigned).
  image::Bytes artifact(std::span<const std::uint8_t> slot_image, const PemPair* signer,
                        const std::string* device_type = nullptr) const {
    const auto content = package_content(slot_image);
    mender::ArtifactSpec spec;
    spec.name = mender::artifact_name(content.version);
    spec.device_type = device_type ? *device_type : device_type_;
    spec.version = content.version;
    spec.image = content.image;
    spec.scripts = mender::state_scripts(content.version, downgrade_check_);
    return mender::write_artifact(spec, signer ? signer->key_pem : std::string());
  }

  // The artifact of a tamper, unsigned or wrong-key variant; `damaged` becomes
  // what the variant would install when that differs (`appended`).
  image::Bytes damaged_artifact(const image::Bytes& base, image::Bytes& damaged, const std::string& kind,
                                const std::string& variant, core::Rng& rng, std::string& what) const {
    if (kind == "wrong-device") {
      const auto other = other_device(device_type_);
      what = fmt::format("a validly signed artifact for device_type {} (the device is {})", other, device_type_);
      return artifact(damaged, &pki_.signer, &other);
    }
    if (kind == "unsigned") {
      what = "the artifact written without a signature (no manifest.sig)";
      return artifact(damaged, nullptr);
    }
    if (kind == "wrong-key") {
      what = "the artifact signed with the key of a signer of an unrelated CA";
      return artifact(damaged, &pki_.wrong_signer);
    }
    if (variant == "payload-bit-flip" || variant == "digest-resigned") {
      // The release's artifact, its signed manifest and header as they are,
      // carrying the flipped image in place of the release's.
      auto a = artifact(base, &pki_.signer);
      const auto at = image_offset(a, base);
      std::copy(damaged.begin(), damaged.end(), a.begin() + static_cast<std::ptrdiff_t>(at));
      what = "the release's signed artifact carrying another image (its manifest's checksum is the release's)";
      return a;
    }
    auto a = artifact(damaged, &pki_.signer);
    if (variant == "header-bit-flip" || variant == "version-edited") {
      const auto [at, len] = header_value(a, "rootfs-image.version");
      const std::string version(a.begin() + static_cast<std::ptrdiff_t>(at),
                                a.begin() + static_cast<std::ptrdiff_t>(at + len));
      std::size_t digit = 0;
      if (variant == "version-edited" && version.front() >= '0' && version.front() < '9') {
        a[at] = static_cast<std::uint8_t>(a[at] + 1);  // major + 1, same length
      } else {
        std::vector<std::size_t> digits;
        for (std::size_t i = 0; i < len; ++i)
          if (version[i] >= '0' && version[i] <= '9') digits.push_back(i);
        if (digits.empty()) throw BenchError("mender artifact: the header's version has no digit");
        digit = digits[rng.below(digits.size())];
        a[at + digit] = static_cast<std::uint8_t>(a[at + digit] ^ 1);
      }
      what = fmt::format("header edited after signing: rootfs-image.version {} -> {}", version,
                         std::string(a.begin() + static_cast<std::ptrdiff_t>(at),
                                     a.begin() + static_cast<std::ptrdiff_t>(at + len)));
    } else if (variant == "digest-bit-flip") {
      // The manifest's first line: the payload's sha256 (64 hex digits).
      const auto line = locate(a, "  data/0000/", "manifest line") - 64;
      const auto at = line + static_cast<std::size_t>(rng.below(64));
      a[at] = a[at] == '0' ? '1' : '0';
      what = fmt::format("manifest edited after signing: hex digit {} of the payload's sha256", at - line);
    } else if (variant == "signature-bit-flip") {
      // manifest.sig is the signature in base64; a data character (not the
      // last one, whose low bits may be padding) becomes another.
      const auto manifest = locate(a, "  version\n", "manifest end") + 10;
      std::size_t sig = manifest;
      while (sig < a.size() && a[sig] == 0) ++sig;  // tar padding
      sig += 512;                                   // manifest.sig's tar header
      std::size_t len = 0;
      while (sig + len < a.size() && kBase64.find(static_cast<char>(a[sig + len])) != std::string::npos) ++len;
      if (len < 8) throw BenchError("mender artifact: no base64 signature after the manifest");
      const auto at = sig + static_cast<std::size_t>(rng.below(len - 4));
      const auto old_char = static_cast<char>(a[at]);
      auto next = kBase64[(kBase64.find(old_char) + 1 + rng.below(kBase64.size() - 1)) % kBase64.size()];
      a[at] = static_cast<std::uint8_t>(next);
      what = fmt::format("manifest.sig: base64 character {} changed from '{}' to '{}'", at - sig, old_char, next);
    } else if (variant == "truncated") {
      const auto at = image_offset(a, damaged);
      const auto cut = at + static_cast<std::size_t>(rng.below(damaged.size()));
      what = fmt::format("artifact truncated to {} of {} bytes (inside the image)", cut, a.size());
      a.resize(cut);
    } else if (variant == "appended") {
      // Appended to the payload file inside data/0000.tar (its tar entry and
      // data/0000.tar's grown by 4096 bytes, a multiple of the tar block): the
      // signed manifest gives the checksum of the payload without them.
      a = artifact(damaged, &pki_.signer);
      const auto at = image_offset(a, damaged);
      const std::size_t outer = locate(a, "data/0000.tar", "data/0000.tar entry");
      if (at < 512 || outer % 512 != 0 || (at - 512) % 512 != 0)
        throw BenchError("mender artifact: the payload's tar entries are not where a ustar archive has them");
      image::Bytes extra(4096);
      for (auto& b : extra) b = static_cast<std::uint8_t>(rng.next());
      a.insert(a.begin() + static_cast<std::ptrdiff_t>(at + damaged.size()), extra.begin(), extra.end());
      set_tar_size(a, at - 512, tar_size(a, at - 512) + extra.size());
      set_tar_size(a, outer, tar_size(a, outer) + extra.size());
      damaged.insert(damaged.end(), extra.begin(), extra.end());
      what = "4096 bytes appended to the payload inside the artifact (not in its signed checksum)";
    } else {
      throw InputError(fmt::format("unknown tamper variant '{}'", variant));
    }
    return a;
  }

  SigningPki pki_;
  std::string device_type_ = mender::kDeviceType;
  /// Every artifact carries the device's downgrade check
  /// (ArtifactInstall_Enter_10_otarig-no-downgrade); Mender compares no versions.
  bool downgrade_check_ = true;
};

}  // namespace

std::unique_ptr<PackageFormat> make_mender_format(const Config& section, const std::string& board_name,
                                                  const std::filesystem::path& dir) {
  return std::make_unique<MenderFormat>(section, board_name, dir);
}

}  // namespace otarig::drivers::clients
