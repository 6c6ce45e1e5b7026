// key-lifecycle: the device's trusted keys over its support period. A
// key-rotation message is an otarig image with flags bit 1 whose payload
// begins with a trust block (docs/image-format.md): keys to add, with their
// validity periods, and keys to revoke. The rig makes the keys on demand
// (deterministic test keys) and signs each image as the variant needs:
//   key-rotation          a release adding a new key, signed by the old one;
//                         then a release signed by the new key must install
//   revoked-key           after the new key was added and the old one revoked
//                         (by a release signed by the new key), a release
//                         signed by the old key must be refused
//   untrusted-rotation    a rotation message signed by a key the device does
//                         not trust must be refused
//   signer-expired        a release signed by a key the device was given with
//   signer-not-yet-valid  a validity period that has ended / not begun: refused
//                         unless the device declares signer_expiry: ignored
// On a board that takes packages (SWUpdate's .swu, RAUC's bundle) the signer
// variants need no rotation: the release goes in a package whose CMS
// signature is made now by a signer certificate the device's CA issued with
// the same validity periods (PackageFormat::signed_outside_validity). The
// rotation variants are skipped there: the clients take no key rotation
// inside an update.
#include <fmt/format.h>

#include <algorithm>

#include "common.hpp"
#include "lifecycle.hpp"
#include "otarig/core/crypto.hpp"
#include "otarig/core/image.hpp"
#include "otarig/harness/releases.hpp"
#include "otarig/harness/scenario.hpp"

namespace otarig::scenarios::lifecycle {
namespace {

// 2001-01-01 .. 2002-01-01 and 2200-01-01 .. 2300-01-01.
constexpr std::uint64_t kExpiredFrom = 978307200, kExpiredUntil = 1009843200;
constexpr std::uint64_t kFutureFrom = 7258118400, kFutureUntil = 10413792000;

struct KeyPoint final : harness::FaultPoint {
  std::string variant;
  nlohmann::json json() const override { return {{"variant", variant}}; }
  std::string label() const override { return "key-lifecycle:" + variant; }
  std::string text() const override { return "key-lifecycle: " + variant; }
};

std::string key_hex(const crypto::Ed25519Key& k) { return crypto::hex(k.id()); }

class KeyRun final : public harness::FaultRun {
 public:
  explicit KeyRun(std::string variant) : variant_(std::move(variant)) {}

  std::string inject(harness::TrialPort& port) override {
    const auto& profile = port.bench().profile();
    const auto& old_key = port.releases().signing_key();
    const auto& start = port.releases().get(port.scenario().start);
    const harness::BuiltImage base = port.image();  // a copy: use_image() replaces what image() names
    const auto new_key = crypto::Ed25519Key::test_key("otarig rotated signer");
    const image::TrustEntry new_entry{new_key.public_key(), profile.key_not_before, profile.key_not_after, false};
    // A rotation message: the running release's application image, its
    // payload behind the trust block, one build newer, signed by `by`.
    auto rotation = [&](std::vector<image::TrustChange> changes, const crypto::Ed25519Key& by,
                        const harness::BuiltImage& from, std::uint32_t build_add, const std::string& role,
                        bool authentic = true) {
      const auto app = application_of(from);  // the parsed image points into it
      auto parsed = image::parse(app, from.name);
      image::Header h = parsed.header;
      if (h.version.build > 0xFFFFFFFFu - build_add)
        throw InputError(fmt::format("{}: scenario '{}': release {} has no build number left for a rotation message",
                                     port.scenario().fault.where, port.scenario().name, from.name));
      h.version.build += build_add;
      h.flags |= image::kFlagTrustUpdate;
      h.signing_time = profile.signing_time;
      auto block = image::encode_trust_block(changes);
      image::Bytes payload(parsed.payload.begin(), parsed.payload.end());
      if (payload.size() < block.size())
        throw InputError(fmt::format("{}: scenario '{}': release {} has a {}-byte payload, a trust block needs {}",
                                     port.scenario().fault.where, port.scenario().name, from.name, payload.size(),
                                     block.size()));
      std::copy(block.begin(), block.end(), payload.begin());
      // On a board with a second image, the message is a bundle: the
      // application with the trust block, and the release's other images
      // re-signed by the same key, so that no image the device keeps still
      // depends on a key the message revokes.
      auto bytes = image::build(h, payload, by);
      for (const auto& part : harness::bundle_images(from.bytes, from.name)) {
        auto other = image::parse(part, from.name);
        if (other.header.image_index == h.image_index) continue;
        image::Header oh = other.header;
        oh.signing_time = profile.signing_time;
        const auto one = image::build(oh, other.payload, by);
        bytes.insert(bytes.end(), one.begin(), one.end());
      }
      // The trust block covers the start of the payload, where an encrypted
      // release's plaintext marker was: this message carries none.
      return make(port, from, std::move(bytes), by, role, authentic, false);
    };
    // Every image of `from` (one, or a bundle's) re-signed by `by`.
    auto resigned = [&](const harness::BuiltImage& from, const crypto::Ed25519Key& by, const std::string& role,
                        bool authentic) {
      image::Bytes bytes;
      for (const auto& part : harness::bundle_images(from.bytes, from.name)) {
        auto parsed = image::parse(part, from.name);
        image::Header h = parsed.header;
        h.signing_time = profile.signing_time;
        const auto one = image::build(h, parsed.payload, by);
        bytes.insert(bytes.end(), one.begin(), one.end());
      }
      return make(port, from, std::move(bytes), by, role, authentic, true);
    };
    const auto add = [](const image::TrustEntry& e) { return image::TrustChange{image::TrustAction::add, e}; };
    const auto& policy = profile.policy;

    if (variant_ == "key-rotation") {
      const auto r1 = rotation({add(new_entry)}, old_key, start, 1, "rotation");
      if (!port.update_before_fault(r1)) return "the rotation message adding the new key did not install";
      expect_installed_ = true;
      port.use_image(resigned(base, new_key, "new-key", true));
      return fmt::format("{} (signed by the old key {}) added key {}; {} signed by the new key must install",
                         r1.name, key_hex(old_key), key_hex(new_key), base.name);
    }
    if (variant_ == "revoked-key") {
      const auto r1 = rotation({add(new_entry)}, old_key, start, 1, "rotation");
      if (!port.update_before_fault(r1)) return "the rotation message adding the new key did not install";
      const auto r2 = rotation({image::TrustChange{image::TrustAction::revoke, {old_key.public_key(), 0, 0, true}}},
                               new_key, start, 2, "revocation");
      if (!port.update_before_fault(r2)) return "the rotation message revoking the old key did not install";
      port.use_image(resigned(base, old_key, "revoked-key", false));
      // The retry: the same release signed by the new key (the refused one
      // changed nothing, so it is as new as it was).
      if (!port.scenario().retry.empty()) port.use_retry_image(resigned(base, new_key, "new-key", true));
      return fmt::format("{} (signed by {}) added key {}, {} (signed by the new key) revoked {}; {} signed by the "
                         "revoked key must be refused (revoked_keys: {}); the retry is it signed by the new key",
                         r1.name, key_hex(old_key), key_hex(new_key), r2.name, key_hex(old_key), base.name,
                         policy.get("revoked_keys").value_or("refused"));
    }
    if (variant_ == "untrusted-rotation") {
      const auto rogue = crypto::Ed25519Key::test_key("otarig untrusted rotation signer");
      const image::TrustEntry rogue_entry{rogue.public_key(), 0, 0, false};
      // One build above the delivered release: newer, so only its signer refuses it.
      port.use_image(rotation({add(rogue_entry)}, rogue, base, 1, "untrusted-rotation", false));
      // The retry: the delivered release as built (the refused message changed nothing).
      if (!port.scenario().retry.empty()) port.use_retry_image(base);
      return fmt::format("a rotation message adding key {}, signed by that untrusted key: it must be refused",
                         key_hex(rogue));
    }
    // signer-expired, signer-not-yet-valid
    const bool expired = variant_ == "signer-expired";
    const auto from = expired ? kExpiredFrom : kFutureFrom, until = expired ? kExpiredUntil : kFutureUntil;
    if (!port.releases().package_format().empty()) {
      // A packaged board: the client checks a signer certificate its CA
      // issued (CMS), so the release goes in a package signed by one whose
      // validity has ended / not begun.
      const auto expiry = policy.get("signer_expiry").value_or("");
      const bool refuse = expiry != "ignored";
      std::string what;
      port.use_image(port.releases().signer_outside_validity(base, static_cast<std::int64_t>(from),
                                                             static_cast<std::int64_t>(until), variant_, !refuse,
                                                             &what));
      return fmt::format("{} as a {} package {} (the package signed now): signer_expiry: {}, so it {}", base.name,
                         port.releases().package_format(), what, expiry,
                         refuse ? "must be refused" : "may be installed");
    }
    const auto signer = crypto::Ed25519Key::test_key(expired ? "otarig expired signer" : "otarig future signer");
    const image::TrustEntry e{signer.public_key(), from, until, false};
    const auto r1 = rotation({add(e)}, old_key, start, 1, "rotation");
    if (!port.update_before_fault(r1)) return "the rotation message adding the signer did not install";
    const auto expiry = policy.get("signer_expiry").value_or("");
    const bool refuse = expiry != "ignored";
    port.use_image(resigned(base, signer, variant_, !refuse));
    // Where it must be refused, the retry is the delivered release as built;
    // where it may install, the scenario's (newer) retry release.
    if (refuse && !port.scenario().retry.empty()) port.use_retry_image(base);
    return fmt::format("{} (signed by {}) added key {} valid {} .. {}; {} signed by it (signing time {}): "
                       "signer_expiry: {}, so it {}",
                       r1.name, key_hex(old_key), key_hex(signer), image::utc_text(e.not_before),
                       image::utc_text(e.not_after), base.name,
                       profile.signing_time ? image::utc_text(profile.signing_time) : std::string("none"), expiry,
                       refuse ? "must be refused" : "may be installed");
  }

  void judge(harness::TrialPort& port, std::vector<harness::OracleResult>& oracles) override {
    if (expect_installed_)
      require_installed(port, oracles, port.image(), "the release is signed by a key a trusted rotation added");
  }

 private:
  // The application image of a release (a bundle's image 0, else its first image).
  static image::Bytes application_of(const harness::BuiltImage& from) {
    const auto parts = harness::bundle_images(from.bytes, from.name);
    for (const auto& part : parts)
      if (image::decode_header(part.first<image::kHeaderSize>()).image_index == 0)
        return image::Bytes(part.begin(), part.end());
    return image::Bytes(parts.front().begin(), parts.front().end());
  }

  // `bytes` (an image or a bundle, signed by `by`) as a release to deliver:
  // on a board whose releases are encrypted, its encrypted image is made
  // here, the outer image signed by `by` too.
  harness::BuiltImage make(harness::TrialPort& port, const harness::BuiltImage& from, image::Bytes bytes,
                           const crypto::Ed25519Key& by, const std::string& role, bool authentic,
                           bool keeps_marker) const {
    harness::BuiltImage img = from;
    img.variant = variant_ + "/" + role;
    img.name = from.name + "/" + role;
    img.bytes = std::move(bytes);
    const auto app = application_of(img);
    const auto h = image::decode_header(std::span<const std::uint8_t>(app).first<image::kHeaderSize>());
    img.version = h.version.str();
    img.security_counter = h.security_counter;
    img.digest = harness::device_digest(app);
    img.components = harness::components_of(img.bytes, img.name);
    img.authentic = authentic;
    img.fails_self_test = false;
    img.package.clear();
    img.package_of.clear();
    img.delta.clear();
    img.delta_of.clear();
    if (!keeps_marker) img.marker.clear();
    if (port.releases().encrypted()) {
      img.package = port.releases().encrypt(img.bytes, by);
      img.package_of = harness::device_digest(img.bytes);
    }
    return img;
  }

  std::string variant_;
  bool expect_installed_ = false;
};

class KeyKind final : public harness::FaultKind {
 public:
  std::string_view name() const override { return "key-lifecycle"; }
  std::string_view where() const override { return "time"; }
  std::string_view summary() const override {
    return "rotate, revoke, expire the device's trusted keys with signed key-rotation messages (otarig images "
           "with a trust block): key-rotation (a release signed by the new key must install), revoked-key (a "
           "release signed by a revoked key must be refused), untrusted-rotation (a rotation message signed by "
           "an untrusted key must be refused), signer-expired / signer-not-yet-valid (refused unless "
           "device.policy.signer_expiry is ignored; on a board that takes SWUpdate or RAUC packages, the package "
           "signed by a signer certificate outside its validity)";
  }
  std::vector<std::string_view> keys() const override { return {"variants"}; }
  std::shared_ptr<const harness::FaultOptions> parse(const Config& c,
                                                     const harness::FaultParseContext&) const override {
    return parse_variants(c, name(), key_variants());
  }
  std::string inapplicable(const harness::Scenario& s, const harness::BoardAbilities& board) const override {
    const auto& variants = s.fault.as<VariantOptions>().variants;
    const auto signer_only = std::all_of(variants.begin(), variants.end(), [](const std::string& v) {
      return v == "signer-expired" || v == "signer-not-yet-valid";
    });
    if (!board.package_format.empty()) {
      // The signer variants sign the board's package with a signer
      // certificate outside its validity; the rotations need a trust block.
      if (!signer_only)
        return fmt::format("the board takes {} packages, whose client takes no key rotation inside an update; "
                           "key-rotation messages are otarig images with a trust block",
                           board.package_format);
      if (!board.no_signer_validity.empty()) return board.no_signer_validity;
    }
    for (const auto& v : variants) {
      if (v == "revoked-key")
        if (auto why = missing_policy(board, "revoked_keys"); !why.empty()) return why;
      if (v == "signer-expired" || v == "signer-not-yet-valid")
        if (auto why = missing_policy(board, "signer_expiry"); !why.empty()) return why;
    }
    return {};
  }
  void plan(harness::PlanContext& ctx) const override {
    const std::uint64_t count = std::max<std::uint64_t>(1, ctx.scenario().trials);
    for (const auto& v : ctx.scenario().fault.as<VariantOptions>().variants)
      for (std::uint64_t i = 0; i < count; ++i) {
        auto p = std::make_shared<KeyPoint>();
        p->variant = v;
        ctx.add().point = std::move(p);
      }
  }
  std::unique_ptr<harness::FaultRun> start(const harness::TrialSpec& spec) const override {
    return std::make_unique<KeyRun>(spec.point_as<KeyPoint>().variant);
  }
  std::shared_ptr<const harness::FaultPoint> point_with(const harness::TrialSpec& trial,
                                                        const nlohmann::json& fields) const override {
    auto p = std::make_shared<KeyPoint>(trial.point_as<KeyPoint>());
    if (auto v = harness::chosen_field(trial, fields, name(), "variant", key_variants()); !v.empty()) p->variant = v;
    return p;
  }
};

}  // namespace

const std::vector<std::string_view>& key_variants() {
  static const std::vector<std::string_view> v = {"key-rotation", "revoked-key", "untrusted-rotation",
                                                  "signer-expired", "signer-not-yet-valid"};
  return v;
}

std::shared_ptr<const harness::FaultKind> make_clock_kind();

void register_lifecycle_faults(harness::FaultRegistry& registry) {
  registry.add(make_clock_kind());
  registry.add(std::make_shared<KeyKind>());
  register_outage_fault(registry);
}

}  // namespace otarig::scenarios::lifecycle
