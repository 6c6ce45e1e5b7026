// Image faults: what the rig delivers is itself the fault. A damaged copy of
// the release (tamper), the release unsigned or signed by an unknown key, a
// validly signed twin that fails its self-test, an older release (replay), a
// major-number downgrade, the version edges, and the clean baseline (none).
#include "image.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "otarig/core/image.hpp"
#include "otarig/harness/bench.hpp"
#include "otarig/harness/oracles.hpp"
#include "otarig/harness/plan.hpp"
#include "otarig/harness/releases.hpp"
#include "otarig/harness/rng.hpp"
#include "otarig/harness/scenario.hpp"
#include "otarig/harness/trial.hpp"

namespace otarig::scenarios::image_faults {
namespace {

using harness::FaultParseContext;
using harness::PlanContext;
using harness::Rng;
using harness::TrialPort;
using harness::TrialSpec;

struct TamperOptions final : harness::FaultOptions {
  std::vector<std::string> variants;
  nlohmann::json json() const override { return {{"variants", variants}}; }
};

/// A trial that delivers one variant of the release ("" for the kinds with one).
struct VariantPoint final : harness::FaultPoint {
  std::string kind;
  std::string variant;
  nlohmann::json json() const override {
    nlohmann::json j = nlohmann::json::object();
    if (!variant.empty()) j["variant"] = variant;
    return j;
  }
  std::string label() const override { return variant.empty() ? kind : kind + ":" + variant; }
  std::string text() const override { return variant.empty() ? kind : kind + ": " + variant; }
};

void plan_plain(PlanContext& ctx, const std::string& kind) {
  const std::uint64_t count = std::max<std::uint64_t>(1, ctx.scenario().trials);
  for (std::uint64_t i = 0; i < count; ++i) {
    auto p = std::make_shared<VariantPoint>();
    p->kind = kind;
    ctx.add().point = std::move(p);
  }
}

/// The release, as the scenario names it.
class ReleaseRun final : public harness::FaultRun {
 public:
  explicit ReleaseRun(bool replay) : replay_(replay) {}
  std::string inject(TrialPort& port) override {
    if (!replay_) return {};
    const auto& base = port.image();
    return fmt::format("replay of older release {} ({})", base.name, base.version);
  }

 private:
  bool replay_;
};

/// A variant the release set makes (tamper, unsigned, wrong-key, self-test-fail).
class VariantRun final : public harness::FaultRun {
 public:
  VariantRun(std::string kind, std::string variant) : kind_(std::move(kind)), variant_(std::move(variant)) {}
  std::string inject(TrialPort& port) override {
    Rng rng(port.spec().seed ^ 0x696d616765ULL);
    std::string detail;
    port.use_image(port.releases().make_variant(port.image(), kind_, variant_, rng, &detail));
    return detail;
  }
  // An encrypted image the device cannot or must not decrypt is never taken:
  // one it accepted was installed without its encryption being honoured.
  void judge(TrialPort& port, std::vector<harness::OracleResult>& oracles) override {
    if ((kind_ != "tampered-ciphertext" && kind_ != "other-device-key") || port.outcome().delivery_status != "accepted")
      return;
    for (auto& o : oracles)
      if (o.name == "confidential" && o.held) {
        o.held = false;
        o.detail = fmt::format("deliver: the device accepted {} ({})", port.image().name,
                               kind_ == "other-device-key" ? "encrypted for another device's key"
                                                           : "a ciphertext that does not match its signature");
      }
  }

 private:
  std::string kind_, variant_;
};

// A validly signed image older than `base` only by its major number.
class MajorDowngradeRun final : public harness::FaultRun {
 public:
  std::string inject(TrialPort& port) override {
    const auto& base = port.image();
    const auto& s = port.scenario();
    auto parsed = image::parse(base.bytes, base.name);
    image::Header h = parsed.header;
    if (h.version.major == 0)
      throw InputError(fmt::format("{}: scenario '{}': release {} ({}) has major version 0, nothing is older by "
                                   "its major number",
                                   s.fault.where, s.name, base.name, base.version));
    h.version.major = static_cast<std::uint8_t>(h.version.major - 1);
    h.version.minor = 255;
    const auto& profile = port.bench().profile();
    const auto key = harness::load_key_ref(profile.signing_key, profile.path.parent_path());
    harness::BuiltImage v = base;
    v.variant = "major-downgrade";
    v.name = base.name + "/major-downgrade";
    v.bytes = image::build(h, parsed.payload, key);
    v.version = h.version.str();
    v.digest = harness::device_digest(v.bytes);
    v.authentic = true;
    auto detail = fmt::format("{} signed as {} (older than {} only by its major number, security counter {})",
                              base.name, v.version, base.version, h.security_counter);
    port.use_image(std::move(v));
    return detail;
  }
};

enum class Field { patch, minor, major };

const char* field_name(Field f) { return f == Field::patch ? "patch" : f == Field::minor ? "minor" : "major"; }

std::uint32_t value_of(const image::Version& v, Field f) {
  return f == Field::patch ? v.patch : f == Field::minor ? v.minor : v.major;
}

// `v` with `f` set to `value` and the fields below it zero (1.9.3 -> 1.10.0).
image::Version with(image::Version v, Field f, std::uint32_t value) {
  if (f == Field::major) {
    v.major = static_cast<std::uint8_t>(value);
    v.minor = 0;
    v.patch = 0;
  } else if (f == Field::minor) {
    v.minor = static_cast<std::uint8_t>(value);
    v.patch = 0;
  } else {
    v.patch = static_cast<std::uint16_t>(value);
  }
  return v;
}

// The delivered release at another version and counter, validly signed:
// the edges a version comparison gets wrong (docs/scenarios.md, "Version
// edges"). Some need the device to run a made-up version first (a clean
// update to it before the faulted delivery). The patch edges stay between
// the delivered release and the retry, which must be newer than all of them;
// the minor and major edges cross their digit boundary above the retry
// release, so the kind retries with the retry release signed newer still.
class VersionEdgeRun final : public harness::FaultRun {
 public:
  explicit VersionEdgeRun(std::string variant) : variant_(std::move(variant)) {}

  std::string inject(TrialPort& port) override {
    const auto& base = port.image();
    const auto& s = port.scenario();
    const auto parsed = image::parse(base.bytes, base.name);
    const image::Header h = parsed.header;
    const auto bad = [&](const std::string& why) {
      return InputError(fmt::format("{}: scenario '{}': version edge {}: {}", s.fault.where, s.name, variant_, why));
    };
    // The field whose digits the edge crosses, and the smallest all-nines
    // value above the release's: 9 -> 10 crosses a digit.
    const Field field = variant_.rfind("minor-", 0) == 0   ? Field::minor
                        : variant_.rfind("major-", 0) == 0 ? Field::major
                                                           : Field::patch;
    const std::uint32_t current = value_of(h.version, field), limit = field == Field::patch ? 0xFFFF : 0xFF;
    std::uint32_t nines = 9;
    while (nines < current + 1) nines = nines * 10 + 9;
    if (nines + (field == Field::patch ? 1 : 2) > limit)
      throw bad(fmt::format("{} {} leaves no room below {}", field_name(field), current, limit));
    if (h.version.build == 0xFFFFFFFFu) throw bad("the release's build number is at its maximum");
    auto at = [&](std::uint32_t patch, std::uint32_t build_add) {
      image::Version v = h.version;
      v.patch = static_cast<std::uint16_t>(patch);
      v.build += build_add;
      return v;
    };
    const std::uint32_t p = h.version.patch, c = h.security_counter;
    image::Version step_v{}, edge_v{};
    std::uint32_t edge_counter = c;
    bool step = true;
    if (field != Field::patch) {
      const bool up = variant_.ends_with("-up");
      step_v = with(h.version, field, up ? nines : nines + 1), edge_v = with(h.version, field, up ? nines + 1 : nines);
      expect_installed_ = up;
    } else if (variant_ == "patch-digits-up") {
      step_v = at(nines, 0), edge_v = at(nines + 1, 0), expect_installed_ = true;
    } else if (variant_ == "patch-digits-down") {
      step_v = at(nines + 1, 0), edge_v = at(nines, 0);
    } else if (variant_ == "higher-build") {
      step = false, edge_v = at(p, 1), either_ = true;
    } else if (variant_ == "higher-version-equal-counter") {
      step = false, edge_v = at(p + 1, 0), expect_installed_ = true;
    } else {  // lower-version-higher-counter
      step_v = at(p + 1, 0), edge_v = at(p, 0), edge_counter = c + 1;
    }
    const auto& profile = port.bench().profile();
    const auto key = harness::load_key_ref(profile.signing_key, profile.path.parent_path());
    auto make = [&](const harness::BuiltImage& from, const image::Version& v, std::uint32_t counter,
                    const std::string& role) {
      const auto f = image::parse(from.bytes, from.name);
      image::Header hv = f.header;
      hv.version = v;
      hv.security_counter = counter;
      harness::BuiltImage img = from;
      img.variant = variant_ + "/" + role;
      img.name = from.name + "/" + variant_ + "/" + role;
      img.bytes = image::build(hv, f.payload, key);
      img.version = v.str();
      img.security_counter = counter;
      img.digest = harness::device_digest(img.bytes);
      img.authentic = true;
      img.fails_self_test = false;
      img.package.clear();
      img.package_of.clear();
      return img;
    };
    std::string retry_note;
    if (!s.retry.empty()) {
      const auto& retry = port.releases().get(s.retry);
      const auto rv = image::parse(retry.bytes, retry.name).header;
      if (field != Field::patch) {
        // Newer than every edge: the crossed field one above the highest.
        auto r = make(retry, with(h.version, field, nines + 2), std::max(rv.security_counter, edge_counter), "retry");
        retry_note = fmt::format("; the retry installs {} signed as {} (counter {})", retry.name, r.version,
                                 r.security_counter);
        port.use_retry_image(std::move(r));
      } else {
        const auto highest = std::max(step ? step_v : edge_v, edge_v);
        if (!(highest < rv.version) || rv.security_counter < edge_counter)
          throw bad(fmt::format("the retry release {} ({}, counter {}) must be newer than {} and have a counter of "
                                "at least {}",
                                retry.name, retry.version, rv.security_counter, highest.str(), edge_counter));
      }
    }
    std::string from = fmt::format("{} (counter {})", base.version, c);
    if (step) {
      const auto running = make(base, step_v, c, "running");
      from = fmt::format("{} (counter {}), installed first", running.version, c);
      if (!port.update_before_fault(running)) step_failed_ = true;
    }
    auto edge = make(base, edge_v, edge_counter, "delivered");
    expected_ = edge.version;
    const auto verdict = either_ ? "either taking or refusing it is right"
                         : expect_installed_ ? "it is newer and must be installed"
                                             : "it is older and must be refused";
    auto detail = fmt::format("{}: {} (counter {}) validly signed, delivered after {}: {}{}", variant_, edge.version,
                              edge_counter, from, verdict, retry_note);
    port.use_image(std::move(edge));
    return detail;
  }

  void judge(TrialPort& port, std::vector<harness::OracleResult>& oracles) override {
    if (!expect_installed_ || step_failed_) return;
    const auto& obs = port.outcome().observations;
    const auto i = port.fault_index();
    if (i < obs.size() && obs[i].booted && obs[i].digest == port.image().digest) return;
    for (auto& o : oracles)
      if (o.name == "still-updatable" && o.held) {
        o.held = false;
        o.detail = fmt::format("after-fault: the validly signed, newer {} was not installed (the device runs {})",
                               expected_, i < obs.size() && obs[i].booted ? obs[i].version : "nothing");
      }
  }

 private:
  std::string variant_;
  std::string expected_;
  bool expect_installed_ = false;
  bool either_ = false;
  bool step_failed_ = false;
};

class ImageKind final : public harness::FaultKind {
 public:
  ImageKind(std::string name, std::string summary) : name_(std::move(name)), summary_(std::move(summary)) {}

  std::string_view name() const override { return name_; }
  std::string_view where() const override { return name_ == "none" ? "-" : "image"; }
  std::string_view summary() const override { return summary_; }
  std::string inapplicable(const harness::Scenario&, const harness::BoardAbilities& board) const override {
    if ((name_ == "tampered-ciphertext" || name_ == "other-device-key") && !board.encryption)
      return "the board's releases are not encrypted (no `encryption:` in its profile)";
    if (name_ == "wrong-device" && !board.device_type)
      return "the board declares no device type (the profile's device_type, or a package format that names one): "
             "any device's image is its own";
    return {};
  }
  std::vector<std::string_view> keys() const override {
    if (has_variants()) return {"variants"};
    return {};
  }
  std::shared_ptr<const harness::FaultOptions> parse(const Config& c, const FaultParseContext&) const override {
    if (!has_variants()) return std::make_shared<harness::FaultOptions>();
    auto o = std::make_shared<TamperOptions>();
    const auto& known = variants();
    if (auto v = c.find("variants")) {
      for (const auto& item : v->items()) {
        auto name = item.as_string();
        if (std::find(known.begin(), known.end(), name) == known.end())
          item.fail(fmt::format("unknown {} variant '{}' (known: {})", name_, name, fmt::join(known, ", ")));
        o->variants.push_back(name);
      }
    } else {
      for (auto k : known) o->variants.emplace_back(k);
    }
    return o;
  }
  void plan(PlanContext& ctx) const override {
    if (!has_variants()) return plan_plain(ctx, name_);
    for (const auto& v : ctx.scenario().fault.as<TamperOptions>().variants) {
      auto p = std::make_shared<VariantPoint>();
      p->kind = name_;
      p->variant = v;
      ctx.add().point = std::move(p);
    }
  }
  std::unique_ptr<harness::FaultRun> start(const TrialSpec& spec) const override {
    if (name_ == "none" || name_ == "replay") return std::make_unique<ReleaseRun>(name_ == "replay");
    if (name_ == "major-downgrade") return std::make_unique<MajorDowngradeRun>();
    if (name_ == "version-edge") return std::make_unique<VersionEdgeRun>(spec.point_as<VariantPoint>().variant);
    return std::make_unique<VariantRun>(name_, spec.point_as<VariantPoint>().variant);
  }
  std::shared_ptr<const harness::FaultPoint> point_with(const TrialSpec& trial,
                                                        const nlohmann::json& fields) const override {
    if (!has_variants()) return harness::FaultKind::point_with(trial, fields);
    auto p = std::make_shared<VariantPoint>(trial.point_as<VariantPoint>());
    if (auto v = harness::chosen_field(trial, fields, name_, "variant", variants()); !v.empty()) p->variant = v;
    return p;
  }

 private:
  bool has_variants() const { return name_ == "tamper" || name_ == "version-edge"; }
  const std::vector<std::string_view>& variants() const {
    return name_ == "tamper" ? tamper_variants() : version_edges();
  }
  std::string name_, summary_;
};

}  // namespace

const std::vector<std::string_view>& tamper_variants() {
  static const std::vector<std::string_view> v = {"header-bit-flip",    "payload-bit-flip", "digest-bit-flip",
                                                  "digest-resigned",    "signature-bit-flip", "truncated",
                                                  "appended",           "version-edited"};
  return v;
}

const std::vector<std::string_view>& version_edges() {
  static const std::vector<std::string_view> v = {"patch-digits-up",
                                                  "patch-digits-down",
                                                  "minor-digits-up",
                                                  "minor-digits-down",
                                                  "major-digits-up",
                                                  "major-digits-down",
                                                  "higher-build",
                                                  "higher-version-equal-counter",
                                                  "lower-version-higher-counter"};
  return v;
}

void register_image_faults(harness::FaultRegistry& registry) {
  const std::pair<const char*, const char*> kinds[] = {
      {"none", "a clean update, no fault (baseline)"},
      {"tamper",
       "deliver a damaged copy of the release: header-bit-flip (a seeded bit of the version, security counter "
       "or flags), payload-bit-flip, digest-bit-flip, digest-resigned (a wrong stated digest validly signed), "
       "signature-bit-flip, truncated, appended, version-edited; each keeps the image parseable except "
       "truncated"},
      {"unsigned", "deliver the release with its signature and key id removed"},
      {"wrong-key", "deliver the release validly signed by a key the device does not trust"},
      {"tampered-ciphertext",
       "deliver the encrypted release with a seeded bit of its ciphertext flipped, not re-signed (boards whose releases "
       "are encrypted)"},
      {"other-device-key",
       "deliver the release encrypted for another device's X25519 key, validly signed (boards whose releases are "
       "encrypted)"},
      {"wrong-device",
       "deliver the release validly signed for another device type (header.device_type; on a packaged board the "
       "package's own field: SWUpdate's hardware-compatibility, RAUC's compatible, Mender's device_type)"},
      {"replay", "deliver an older, validly signed release after a newer one was installed"},
      {"self-test-fail", "deliver a validly signed release whose self-test fails when it runs; it must be reverted"},
      {"major-downgrade",
       "deliver a validly signed image older than the installed one only by its major number (major - 1, "
       "minor 255, the same security counter)"},
      {"version-edge",
       "deliver the release validly signed at another version and counter, after a clean update to a made-up "
       "version where the edge needs one: patch-digits-up (x.y.9 -> x.y.10, must install), patch-digits-down "
       "(x.y.10 -> x.y.9, must be refused), minor-digits-up/-down (x.9.0 <-> x.10.0) and major-digits-up/-down "
       "(9.0.0 <-> 10.0.0), retried with the retry release signed newer still, higher-build (either is right), higher-version-equal-counter (must "
       "install), lower-version-higher-counter (must be refused)"},
  };
  for (const auto& [name, summary] : kinds) registry.add(std::make_shared<ImageKind>(name, summary));
}

}  // namespace otarig::scenarios::image_faults
