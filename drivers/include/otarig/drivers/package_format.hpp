#pragma once
// A real OTA client's package format (SWUpdate's .swu, RAUC's bundle, ...):
// how the rig wraps a slot image for the client and signs it, and how it
// damages one for the campaign's hostile variants. A profile names its
// format (`package: {format: NAME}`, docs/ota-clients.md); the format's
// driver family registers it by that name (DriverRegistry).
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "otarig/core/config.hpp"
#include "otarig/core/errors.hpp"
#include "otarig/core/image.hpp"
#include "otarig/core/rng.hpp"
#include "otarig/drivers/protocols.hpp"

namespace otarig::encryption {
struct AesKey;
}  // namespace otarig::encryption

namespace otarig::drivers {

/// A damaged package and what it carries.
struct PackageDamage {
  image::Bytes package;     ///< what the client is served
  image::Bytes slot_image;  ///< the slot image inside it: what the device would boot, should the client install it
  std::string what;         ///< the damage, for the evidence
};

/// A delta package and what it carries.
struct DeltaPackage {
  image::Bytes package;              ///< what the client is served
  std::vector<PublishedFile> files;  ///< what the update server publishes beside it
  image::Bytes slot_image;           ///< corrupt_delta: what the device would boot, should it install it
  std::string what;                  ///< for the evidence
};

class PackageFormat {
 public:
  virtual ~PackageFormat() = default;
  /// The CA certificate (PEM) the device's client trusts.
  virtual std::string trust_pem() const = 0;
  /// A validly signed package of `slot_image`, described as its header says.
  virtual image::Bytes package(std::span<const std::uint8_t> slot_image) const = 0;
  /// A package the client must refuse. `kind` is `unsigned`, `wrong-key` or
  /// `tamper` (with `variant`, the tamper class: docs/scenarios.md);
  /// `damaged` is the release's slot image with one seeded payload bit
  /// flipped, `release` the release's own. Every random choice comes from
  /// `rng`. InputError for a variant the format does not know.
  /// `wrong-device`: a validly signed package of `damaged` (then the release
  /// built validly for another device type) that names another device in
  /// the package's own field (SWUpdate's hardware-compatibility, RAUC's
  /// compatible, Mender's device_type).
  virtual PackageDamage damage(std::span<const std::uint8_t> release, image::Bytes damaged, const std::string& kind,
                               const std::string& variant, core::Rng& rng) const = 0;
  /// A board whose releases are encrypted with a symmetric key the device
  /// holds (the profile's `encryption.aes_key`; SWUpdate's -K): every
  /// package from now on carries its image encrypted with `key`, and
  /// damage() also makes `tampered-ciphertext` (a ciphertext bit flipped
  /// under a valid signature) and `other-device-key` (validly signed, the
  /// image encrypted with another device's key). InputError when the format
  /// encrypts no images (the default), naming what it supports.
  virtual void encrypt_for(const encryption::AesKey& key) {
    (void)key;
    throw InputError("this package format encrypts no images with a symmetric key");
  }
  /// Why the format cannot sign with a signer certificate outside its
  /// validity period ("" when it can: signed_outside_validity).
  virtual std::string no_signer_validity() const { return "the package format's signer has no validity period"; }
  /// A package of `slot_image`, as package() makes it but signed by a signer
  /// certificate the device's CA issued for a new key, valid from
  /// `not_before` until `not_after` (UNIX seconds, UTC): a signer whose
  /// validity has ended or not yet begun (scenarios signer-expired,
  /// signer-not-yet-valid). `what` (when set) names the signer and its
  /// validity. InputError when the format has no such signer.
  virtual image::Bytes signed_outside_validity(std::span<const std::uint8_t> slot_image, std::int64_t not_before,
                                               std::int64_t not_after, std::string* what) const {
    (void)slot_image;
    (void)not_before;
    (void)not_after;
    (void)what;
    throw InputError(no_signer_validity());
  }
  /// Whether the format makes delta packages (delta_package).
  virtual bool makes_deltas() const { return false; }
  /// Why it makes none (when makes_deltas() is false).
  virtual std::string no_deltas() const { return "it makes no delta packages"; }
  /// Whether the device fetches a delta package's data in byte ranges from
  /// the update server (SWUpdate's delta handler), rather than as one file.
  virtual bool delta_fetches_ranges() const { return false; }
  /// A validly signed package that delivers `target` as a delta against
  /// `base`, the slot image the device runs (docs/ota-clients.md): the
  /// package, and the files the device fetches besides it, which its signed
  /// description names under `files_url` (UpdateLinkProtocol::files_url).
  /// InputError when the format makes none; BenchError when `files_url` is
  /// empty and the package needs files beside it.
  virtual DeltaPackage delta_package(std::span<const std::uint8_t> base, std::span<const std::uint8_t> target,
                                     const std::string& files_url) const {
    (void)base;
    (void)target;
    (void)files_url;
    throw InputError("this package format makes no delta packages");
  }
  /// A delta package of `target` against `base` with one seeded chunk of its
  /// delta data corrupted (scenario delta-corrupt-chunk), a chunk the
  /// device must fetch (not one it holds in `base`); `slot_image` is what
  /// the device would boot should it install what it assembled.
  virtual DeltaPackage corrupt_delta(std::span<const std::uint8_t> base, std::span<const std::uint8_t> target,
                                     const std::string& files_url, core::Rng& rng) const {
    (void)base;
    (void)target;
    (void)files_url;
    (void)rng;
    throw InputError("this package format makes no delta packages");
  }
};

/// Builds a format from the profile's `package:` section: checks the keys it
/// takes (InputError at the line of one it does not) and makes its signing
/// PKI: from the section's `signer` folder (relative to `dir`; a fresh test
/// PKI is written there when it has none), else a fresh one named after
/// `board_name`.
using PackageFormatFactory = std::function<std::unique_ptr<PackageFormat>(
    const Config& section, const std::string& board_name, const std::filesystem::path& dir)>;

}  // namespace otarig::drivers
