// Delta faults: the delta release the faulted step delivers is itself the
// fault. A chunk of the patch corrupted (the literal bytes of one seeded
// INSERT op, or on a packaged board a seeded chunk of the package's delta
// file), and a delta made against another base than the image the device
// runs: a validly signed image that differs from it in a few seeded blocks.
#include "delta.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "otarig/core/delta.hpp"
#include "otarig/core/image.hpp"
#include "otarig/harness/bench.hpp"
#include "otarig/harness/oracles.hpp"
#include "otarig/harness/plan.hpp"
#include "otarig/harness/releases.hpp"
#include "otarig/harness/rng.hpp"
#include "otarig/harness/scenario.hpp"
#include "otarig/harness/trial.hpp"

namespace otarig::scenarios::delta_faults {
namespace {

using harness::BuiltImage;
using harness::FaultParseContext;
using harness::PlanContext;
using harness::Rng;
using harness::TrialPort;
using harness::TrialSpec;

const std::vector<std::string_view>& variants() {
  static const std::vector<std::string_view> v = {"corrupt-chunk", "wrong-base"};
  return v;
}

struct DeltaOptions final : harness::FaultOptions {
  std::vector<std::string> variants;
  nlohmann::json json() const override { return {{"variants", variants}}; }
};

struct DeltaPoint final : harness::FaultPoint {
  std::string variant;
  nlohmann::json json() const override { return {{"variant", variant}}; }
  std::string label() const override { return "delta:" + variant; }
  std::string text() const override { return "delta: " + variant; }
};

// The image the device runs when the faulted step begins, with `blocks`
// seeded 4 KiB blocks of its payload rewritten, validly signed: another base.
BuiltImage other_base(TrialPort& port, Rng& rng, std::string& what) {
  const auto& releases = port.releases();
  const auto& running = releases.get(port.scenario().delta_base());
  const auto parsed = image::parse(running.bytes, running.name);
  image::Bytes payload(parsed.payload.begin(), parsed.payload.end());
  if (payload.empty()) throw InputError(fmt::format("{}: an empty payload makes no other base", running.name));
  const std::size_t blocks = (payload.size() + 4095) / 4096;
  std::vector<std::size_t> changed;
  for (int i = 0; i < 3; ++i) {
    const std::size_t b = rng.below(blocks);
    changed.push_back(b);
    const std::size_t at = b * 4096;
    const auto fresh = image::synthetic_payload(std::min<std::size_t>(4096, payload.size() - at),
                                                fmt::format("other base {}", rng.next()));
    std::copy(fresh.begin(), fresh.end(), payload.begin() + static_cast<std::ptrdiff_t>(at));
  }
  const auto& profile = port.bench().profile();
  const auto key = harness::load_key_ref(profile.signing_key, profile.path.parent_path());
  BuiltImage b = running;
  b.name = running.name + "/other-base";
  b.variant = "other-base";
  b.bytes = image::build(parsed.header, payload, key);
  b.digest = harness::device_digest(b.bytes);
  what = fmt::format("a delta made against {} with payload blocks {} (4 KiB) rewritten and signed again ({}), not "
                     "against the {} the device runs ({})",
                     running.name, fmt::join(changed, ", "), b.digest.substr(0, 16), running.name,
                     running.digest.substr(0, 16));
  return b;
}

class DeltaRun final : public harness::FaultRun {
 public:
  explicit DeltaRun(std::string variant) : variant_(std::move(variant)) {}

  std::string inject(TrialPort& port) override {
    Rng rng(port.spec().seed ^ 0x64656c7461ULL);
    const auto& releases = port.releases();
    const BuiltImage target = port.image();
    if (target.delta.empty())
      throw InputError(fmt::format("{}: scenario '{}': fault kind delta needs `delivery: delta`",
                                   port.scenario().fault.where, port.scenario().name));
    std::string what;
    if (variant_ == "wrong-base") {
      const auto base = other_base(port, rng, what);
      const auto url = port.bench().parts().link->files_url();
      auto v = releases.delta(releases.get(port.scenario().deliver), base, url);
      // A zchunk package (SWUpdate's delta) names no base: it carries the
      // new image's chunk digests, and the device takes from its running
      // slot the chunks it holds and fetches the rest.
      if (!releases.package_format().empty())
        what += fmt::format("; a {} delta package names no base: the device takes from its running slot the "
                            "chunks it holds and fetches the rest",
                            releases.package_format());
      v.name = target.name + "/wrong-base";
      v.variant = "delta-wrong-base";
      port.use_image(std::move(v));
      return what;
    }
    BuiltImage v = releases.corrupt_delta(target, releases.get(port.scenario().delta_base()), rng, &what,
                                          port.bench().parts().link->files_url());
    port.use_image(std::move(v));
    return what;
  }

  void judge(TrialPort& port, std::vector<harness::OracleResult>& oracles) override {
    if (variant_ != "wrong-base") return;
    const auto& profile = port.bench().profile();
    if (!profile.delta) return;
    const auto& out = port.outcome();
    const auto i = port.fault_index();
    if (i >= out.observations.size()) return;
    const auto& o = out.observations[i];
    const auto& old_digest = port.releases().get(port.scenario().delta_base()).digest;
    const auto runs = o.booted ? o.version + " " + o.digest.substr(0, 12) : std::string("nothing");
    harness::OracleResult r{"delta-base", true, ""};
    if (profile.delta->wrong_base == harness::WrongBase::refuse) {
      if (out.delivery_status == drivers::to_string(drivers::DeliveryStatus::accepted) ||
          !o.booted || o.digest != old_digest) {
        r.held = false;
        r.detail = fmt::format("the profile declares that a delta against another base is refused ({}), but the "
                               "delivery was {} ({}) and the device runs {}",
                               profile.delta->where, out.delivery_status, out.delivery_detail, runs);
      }
    } else if (!o.booted || o.digest != port.image().digest) {
      r.held = false;
      r.detail = fmt::format("the profile declares that a delta against another base falls back to the full image "
                             "({}), but the device runs {} after the delivery ({}: {})",
                             profile.delta->where, runs, out.delivery_status, out.delivery_detail);
    }
    oracles.push_back(std::move(r));
  }

 private:
  std::string variant_;
};

class DeltaKind final : public harness::FaultKind {
 public:
  std::string_view name() const override { return "delta"; }
  std::string_view where() const override { return "image"; }
  std::string_view summary() const override {
    return "deliver a damaged delta release (the scenario's `delivery: delta`): corrupt-chunk (a seeded bit of one "
           "seeded chunk of the patch's literal bytes), wrong-base (a delta made against a validly signed image "
           "that differs from the running one in three seeded blocks; judged by oracle delta-base against the "
           "profile's delta.wrong_base)";
  }
  std::vector<std::string_view> keys() const override { return {"variants"}; }
  std::shared_ptr<const harness::FaultOptions> parse(const Config& c, const FaultParseContext& ctx) const override {
    if (ctx.root) {
      const auto how = ctx.root->find("delivery");
      if (!how || how->as_string() != "delta")
        c.fail("fault kind delta damages a delta release: the scenario needs `delivery: delta`");
    }
    auto o = std::make_shared<DeltaOptions>();
    const auto& known = variants();
    if (auto v = c.find("variants")) {
      for (const auto& item : v->items()) {
        auto name = item.as_string();
        if (std::find(known.begin(), known.end(), name) == known.end())
          item.fail(fmt::format("unknown delta variant '{}' (known: {})", name, fmt::join(known, ", ")));
        o->variants.push_back(name);
      }
      if (o->variants.empty()) v->fail("variants: name at least one");
    } else {
      for (auto k : known) o->variants.emplace_back(k);
    }
    return o;
  }
  void plan(PlanContext& ctx) const override {
    for (const auto& v : ctx.scenario().fault.as<DeltaOptions>().variants) {
      auto p = std::make_shared<DeltaPoint>();
      p->variant = v;
      ctx.add().point = std::move(p);
    }
  }
  std::unique_ptr<harness::FaultRun> start(const TrialSpec& spec) const override {
    return std::make_unique<DeltaRun>(spec.point_as<DeltaPoint>().variant);
  }
  std::shared_ptr<const harness::FaultPoint> point_with(const TrialSpec& trial,
                                                        const nlohmann::json& fields) const override {
    auto p = std::make_shared<DeltaPoint>(trial.point_as<DeltaPoint>());
    if (auto v = harness::chosen_field(trial, fields, name(), "variant", variants()); !v.empty()) p->variant = v;
    return p;
  }
};

}  // namespace

void register_delta_faults(harness::FaultRegistry& registry) { registry.add(std::make_shared<DeltaKind>()); }

}  // namespace otarig::scenarios::delta_faults
