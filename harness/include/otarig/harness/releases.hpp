#pragma once
// The images a campaign delivers: the profile's releases, signed with its key,
// and the damaged or hostile variants a fault asks for.
#include <map>
#include <optional>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "otarig/core/crypto.hpp"
#include "otarig/core/image.hpp"
#include "otarig/harness/profile.hpp"
#include "otarig/harness/rng.hpp"
#include "otarig/drivers/package_format.hpp"

namespace otarig::drivers {
class DriverRegistry;
class PackageFormat;
}  // namespace otarig::drivers

namespace otarig::harness {

struct BuiltImage {
  std::string name;          ///< release name, or release name + "/" + variant
  image::Bytes bytes;
  std::string digest;        ///< hex SHA-256 of header+payload: what the device reports running it
  std::string version;
  std::uint32_t security_counter = 0;
  bool authentic = true;     ///< validly signed by a trusted key, unmodified
  bool fails_self_test = false;
  /// The images the bytes carry (one, or a bundle's, in order): what the
  /// dependency oracle reads (docs/scenarios.md, "Images and dependencies").
  struct Component {
    std::uint8_t image_index = 0;
    std::string digest;
    std::string version;
    std::uint8_t needs_image = 0;  ///< index + 1; 0 none
    std::string needs_version;
  };
  std::vector<Component> components;
  /// On a board whose releases are encrypted (the profile's `encryption:`):
  /// the 32 bytes the rig planted at the start of the plaintext payload, which
  /// must never cross the link or sit at rest before verification (oracle
  /// confidential); empty otherwise. `bytes` is then the plaintext image the
  /// device boots and `package` the encrypted image delivered.
  image::Bytes marker;
  /// Made for this device (its header's device_type is the profile's or
  /// any); false for the wrong-device variant, validly signed for another.
  bool compatible = true;
  std::string variant;       ///< "" for a release as built
  /// On a board that takes packages (the profile's `package:`,
  /// docs/ota-clients.md): the artifact delivered (.swu, .raucb); `bytes`
  /// stays the slot image the device boots, on which `digest` is computed.
  /// Empty: `bytes` is what is delivered.
  image::Bytes package;
  /// device_digest of the `bytes` the package was made for (a copy whose
  /// bytes changed since needs a package of its own: ReleaseSet::artifact()).
  std::string package_of;
  /// A delta release of `bytes` (docs/image-format.md, "Delta releases"):
  /// delivered instead of `bytes` on a board that takes otarig images as they
  /// are; the device assembles `bytes` from it and the image it runs.
  image::Bytes delta;
  /// device_digest of the `bytes` the delta assembles, and the name of the
  /// image it was made against.
  std::string delta_of;
  std::string delta_base;
  /// On a packaged board, the files the delta package's device fetches
  /// besides it (a zchunk file of the new image), published on the update
  /// server beside the delivery (UpdateLinkProtocol::publish_beside).
  std::vector<drivers::PublishedFile> delta_files;
};

/// Loads a key reference: "test:LABEL" (deterministic test key) or a PEM path
/// relative to `dir`.
crypto::Ed25519Key load_key_ref(const std::string& ref, const std::filesystem::path& dir);

class ReleaseSet {
 public:
  /// The profile's releases; a `package:` section names a package format
  /// of `drivers` (docs/ota-clients.md).
  ReleaseSet(const BoardProfile& profile, const drivers::DriverRegistry& drivers);
  /// With the built-in drivers.
  explicit ReleaseSet(const BoardProfile& profile);
  const BuiltImage& get(const std::string& name) const;
  const std::vector<BuiltImage>& all() const { return releases_; }
  const std::vector<crypto::PublicKey>& trusted() const { return trusted_; }
  /// The trusted keys with their validity periods (the signing key's from the profile).
  std::vector<image::TrustEntry> trust() const;
  /// The key the releases are signed with.
  const crypto::Ed25519Key& signing_key() const { return *key_; }
  /// Digests of every validly signed image the rig can deliver (releases and
  /// their self-test-failing twins).
  const std::vector<std::string>& authentic_digests() const { return authentic_; }

  /// A variant of `base` for fault `kind` ("tamper" with `variant`, "unsigned",
  /// "wrong-key", "self-test-fail", "wrong-device": validly signed for
  /// another device type, other_device_type()); offsets are drawn from `rng`. On a
  /// packaged board the damage is done to the package and the slot image
  /// inside an inauthentic package carries one flipped payload bit
  /// (docs/ota-clients.md).
  BuiltImage make_variant(const BuiltImage& base, const std::string& kind, const std::string& variant,
                          Rng& rng, std::string* detail) const;

  /// `target` delivered as a delta release made against `base` (name
  /// TARGET/delta; `bytes` stay the target's, so the oracles judge what the
  /// device assembles). On a board that takes packages the package format
  /// makes the delta package (PackageFormat::delta_package).
  /// `files_url`: where the device reaches the files published beside a
  /// delivery (UpdateLinkProtocol::files_url), which a package format's
  /// signed description names (SWUpdate's delta handler).
  BuiltImage delta(const BuiltImage& target, const BuiltImage& base, const std::string& files_url = {}) const;
  /// `target` as a delta against `base` with a seeded bit of one seeded
  /// chunk of its literal data flipped (the payload of an INSERT op; on a
  /// packaged board, the format's own delta data): an inauthentic image whose
  /// `bytes` are what the device would assemble from it.
  BuiltImage corrupt_delta(const BuiltImage& target, const BuiltImage& base, Rng& rng, std::string* detail,
                           const std::string& files_url = {}) const;
  /// The files to publish beside the delivery of `img` (its delta_files
  /// when its delta is what is delivered; else none).
  std::vector<drivers::PublishedFile> files_beside(const BuiltImage& img) const;
  /// Whether the releases are encrypted for the device (the profile's `encryption:`).
  bool encrypted() const { return encrypt_for_.has_value() || package_encrypted_; }
  /// The encrypted image of `plaintext` for this device, signed by the release key (a seed from its digest).
  image::Bytes encrypt(std::span<const std::uint8_t> plaintext) const;
  /// The same, the encrypted image signed by `key` (a re-signed release or a
  /// key-rotation message: the device verifies the outer image against its
  /// key store before it decrypts).
  image::Bytes encrypt(std::span<const std::uint8_t> plaintext, const crypto::Ed25519Key& key) const;

  /// The profile's package format ("swu", "raucb", ...); empty when the
  /// device takes otarig images as they are.
  const std::string& package_format() const { return package_format_; }
  /// Whether delta() can make a delta of a release for this board.
  bool makes_deltas() const { return !format_ || format_->makes_deltas(); }
  /// Why not, when makes_deltas() is false.
  std::string no_deltas() const;
  /// Whether the device fetches a delta's data in byte ranges (a package
  /// format's delta, PackageFormat::delta_fetches_ranges); otarig's own
  /// delta releases are delivered whole.
  bool delta_fetches_ranges() const { return format_ && format_->delta_fetches_ranges(); }
  /// The CA certificate (PEM) the device's client trusts; empty without `package:`.
  std::string package_trust_pem() const;
  /// The bytes to deliver for `img`: `img.bytes` on a board without
  /// packages; else its package, or a fresh validly signed package of
  /// `img.bytes` when they changed since (an authentic image made by
  /// copying a release). BenchError for an inauthentic image without its
  /// own package (the rig never signs one by accident).
  image::Bytes artifact(const BuiltImage& img) const;
  /// A validly signed package of `slot_image`, described as its header says.
  image::Bytes package(std::span<const std::uint8_t> slot_image) const;
  /// Why the board's packages cannot be signed by a signer certificate
  /// outside its validity (PackageFormat::no_signer_validity); "" when they
  /// can, and on a board that takes no packages.
  std::string no_signer_validity() const { return format_ ? format_->no_signer_validity() : std::string(); }
  /// `base` (its slot image unchanged) delivered in a package signed by a
  /// signer certificate the device's CA issued, valid only from `not_before`
  /// until `not_after` (UNIX seconds): name BASE/`role`, `authentic` as the
  /// declared policy says the device may take it. InputError when the
  /// format makes no such package.
  BuiltImage signer_outside_validity(const BuiltImage& base, std::int64_t not_before, std::int64_t not_after,
                                     const std::string& role, bool authentic, std::string* detail) const;

 private:
  BuiltImage self_test_twin(const BuiltImage& base) const;
  BuiltImage wrong_device(const BuiltImage& base, Rng& rng, std::string* detail) const;
  BuiltImage plain_variant(const BuiltImage& base, const std::string& kind, const std::string& variant, Rng& rng,
                           std::string* detail) const;
  BuiltImage encrypted_variant(const BuiltImage& base, const std::string& kind, const std::string& variant, Rng& rng,
                               std::string* detail) const;
  /// The device's X25519 public key when the profile encrypts its releases.
  std::optional<std::array<std::uint8_t, 32>> encrypt_for_;
  /// The package format encrypts the images with the device's AES key (encryption.aes_key).
  bool package_encrypted_ = false;
  std::string board_name_;
  std::string device_type_;
  BuiltImage package_variant(const BuiltImage& base, const std::string& kind, const std::string& variant, Rng& rng,
                             std::string* detail) const;
  std::string package_format_;
  std::shared_ptr<const drivers::PackageFormat> format_;

  // delta(): the deltas made so far, by (target digest, base digest); campaigns
  // with --jobs make them from several threads.
  mutable std::mutex delta_mutex_;
  // (target digest, base digest, files URL) -> the delta (a package's with its files).
  mutable std::map<std::tuple<std::string, std::string, std::string>, drivers::DeltaPackage> deltas_;

  std::vector<BuiltImage> releases_;
  std::vector<crypto::PublicKey> trusted_;
  std::vector<std::string> authentic_;
  std::unique_ptr<crypto::Ed25519Key> key_;
  std::unique_ptr<crypto::Ed25519Key> wrong_key_;
  std::uint64_t key_not_before_ = 0, key_not_after_ = 0;
};

/// A derived release's payload (`derived_from`): `own` with every 4 KiB block
/// it shares with `base` copied from `base`, but every 16th (blocks 15, 31, ...).
image::Bytes derived_payload(std::span<const std::uint8_t> base, image::Bytes own);

/// The device type the wrong-device variant is built for (another when the
/// profile's is this one).
std::string other_device_type(const std::string& own);

/// The images of a bundle (docs/image-format.md): whole images back to back;
/// bytes after the last that do not start another image are not one. A
/// single image is a bundle of one. InputError naming `name` when the first
/// does not parse.
std::vector<std::span<const std::uint8_t>> bundle_images(std::span<const std::uint8_t> bytes, const std::string& name);
/// The components of `bytes` as BuiltImage::components.
std::vector<BuiltImage::Component> components_of(std::span<const std::uint8_t> bytes, const std::string& name);

/// SHA-256 (hex) of the header+payload part of an image, as far as it is present.
std::string device_digest(std::span<const std::uint8_t> image);

}  // namespace otarig::harness
