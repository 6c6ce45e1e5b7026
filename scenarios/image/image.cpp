// Image faults: what the rig delivers is itself the fault. A damaged copy of
// the release (tamper), the release unsigned or signed by an unknown key, a
// validly signed twin that fails its self-test, an older release (replay), a
// major-number downgrade, and the clean baseline (none).
#include "image.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "otarig/core/image.hpp"
#include "otarig/harness/bench.hpp"
#include "otarig/harness/plan.hpp"
#include "otarig/harness/releases.hpp"
#include "otarig/harness/rng.hpp"
#include "otarig/harness/scenario.hpp"

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

class ImageKind final : public harness::FaultKind {
 public:
  ImageKind(std::string name, std::string summary) : name_(std::move(name)), summary_(std::move(summary)) {}

  std::string_view name() const override { return name_; }
  std::string_view where() const override { return name_ == "none" ? "-" : "image"; }
  std::string_view summary() const override { return summary_; }
  std::vector<std::string_view> keys() const override {
    if (name_ == "tamper") return {"variants"};
    return {};
  }
  std::shared_ptr<const harness::FaultOptions> parse(const Config& c, const FaultParseContext&) const override {
    if (name_ != "tamper") return std::make_shared<harness::FaultOptions>();
    auto o = std::make_shared<TamperOptions>();
    const auto& known = tamper_variants();
    if (auto v = c.find("variants")) {
      for (const auto& item : v->items()) {
        auto name = item.as_string();
        if (std::find(known.begin(), known.end(), name) == known.end())
          item.fail(fmt::format("unknown tamper variant '{}'", name));
        o->variants.push_back(name);
      }
    } else {
      for (auto k : known) o->variants.emplace_back(k);
    }
    return o;
  }
  void plan(PlanContext& ctx) const override {
    if (name_ != "tamper") return plan_plain(ctx, name_);
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
    return std::make_unique<VariantRun>(name_, spec.point_as<VariantPoint>().variant);
  }
  std::shared_ptr<const harness::FaultPoint> point_with(const TrialSpec& trial,
                                                        const nlohmann::json& fields) const override {
    auto p = std::make_shared<VariantPoint>(trial.point_as<VariantPoint>());
    for (const auto& [key, value] : fields.items()) {
      if (key != "variant" || name_ != "tamper")
        throw InputError(fmt::format("{}: a {} trial takes {}, not {}", trial.scenario->name, name_,
                                     name_ == "tamper" ? "variant" : "no fields", key));
      const auto v = value.get<std::string>();
      const auto& known = tamper_variants();
      if (std::find(known.begin(), known.end(), v) == known.end())
        throw InputError(fmt::format("variant '{}': unknown tamper variant", v));
      p->variant = v;
    }
    return p;
  }

 private:
  std::string name_, summary_;
};

}  // namespace

const std::vector<std::string_view>& tamper_variants() {
  static const std::vector<std::string_view> v = {"header-bit-flip",    "payload-bit-flip", "digest-bit-flip",
                                                  "digest-resigned",    "signature-bit-flip", "truncated",
                                                  "appended",           "version-edited"};
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
      {"replay", "deliver an older, validly signed release after a newer one was installed"},
      {"self-test-fail", "deliver a validly signed release whose self-test fails when it runs; it must be reverted"},
      {"major-downgrade",
       "deliver a validly signed image older than the installed one only by its major number (major - 1, "
       "minor 255, the same security counter)"},
  };
  for (const auto& [name, summary] : kinds) registry.add(std::make_shared<ImageKind>(name, summary));
}

}  // namespace otarig::scenarios::image_faults
