// The lying mirror (TUF's malicious mirror and mix-and-match): the update
// server's manifest disagrees with the image it names. The signed image
// header is the only truth: what the device runs is judged by the header of
// the image it runs, never by what the manifest said of it.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <map>
#include <optional>

#include "network.hpp"
#include "otarig/core/crypto.hpp"
#include "otarig/core/image.hpp"
#include "otarig/harness/bench.hpp"
#include "otarig/harness/oracles.hpp"
#include "otarig/harness/plan.hpp"
#include "otarig/harness/releases.hpp"
#include "otarig/harness/rng.hpp"
#include "otarig/harness/scenario.hpp"
#include "otarig/harness/trial.hpp"

namespace otarig::scenarios::network {
namespace {

using harness::BuiltImage;
using harness::FaultParseContext;
using harness::OracleResult;
using harness::PlanContext;
using harness::Rng;
using harness::TrialPort;
using harness::TrialSpec;

const std::vector<std::string_view>& mirror_lies() {
  static const std::vector<std::string_view> v = {"older-image-newer-manifest", "mix-and-match", "manifest-digest"};
  return v;
}

struct MirrorOptions final : harness::FaultOptions {
  std::vector<std::string> lies;
  std::string older;  ///< the validly signed older release the mirror serves
  nlohmann::json json() const override { return {{"lies", lies}, {"older", older}}; }
};

struct MirrorPoint final : harness::FaultPoint {
  std::string lie;
  std::string older;
  nlohmann::json json() const override { return {{"lie", lie}, {"older", older}}; }
  std::string label() const override { return "lying-mirror:" + lie; }
  std::string text() const override { return "lying mirror: " + lie; }
};

/// What an image's signed header says of it.
struct SignedFacts {
  image::Version version;
  std::uint32_t counter = 0;
  std::string name;
};

class MirrorRun final : public harness::FaultRun {
 public:
  explicit MirrorRun(const MirrorPoint& p) : p_(p) {}

  std::string inject(TrialPort& port) override {
    const BuiltImage named = port.image();  // the release the manifest stands for
    for (const auto& r : port.releases().all()) remember(r);
    auto* feed = port.bench().parts().feed.get();
    if (!feed || !feed->follows_feed())
      throw BenchError(fmt::format("{}: the device reads no manifest for a lying mirror to lie in",
                                   port.bench().profile().name));
    std::string detail;
    if (p_.lie == "older-image-newer-manifest" || p_.lie == "mix-and-match") {
      const auto& older = port.releases().get(p_.older);
      const auto older_bytes = port.releases().artifact(older);
      claim_.version = named.version;
      claim_.security_counter = named.security_counter;
      if (p_.lie == "mix-and-match") {
        const auto named_bytes = port.releases().artifact(named);
        claim_.size = named_bytes.size();
        claim_.sha256 = crypto::hex(crypto::sha256(named_bytes));
        detail = fmt::format("mix-and-match: the manifest of {} ({}, counter {}, its size and SHA-256) names the "
                             "image of {} ({}, counter {}, validly signed); the image's header is the truth: it is "
                             "older and must be refused",
                             named.name, named.version, named.security_counter, older.name, older.version,
                             older.security_counter);
      } else {
        detail = fmt::format("a validly signed older image under a newer manifest: the manifest says {} (counter "
                             "{}) with the size and SHA-256 of {}'s image, whose signed header says {} (counter "
                             "{}); it must be refused",
                             named.version, named.security_counter, older.name, older.version,
                             older.security_counter);
      }
      port.use_release(p_.older);
    } else {  // manifest-digest
      Rng rng(harness::mix64(port.spec().seed ^ 0x6d6972726f72ULL));
      std::string damage;
      auto changed = port.releases().make_variant(named, "tamper", "payload-bit-flip", rng, &damage);
      detail = fmt::format("the manifest vouches for a changed image: it names {} ({}, counter {}) with the size "
                           "and SHA-256 of the bytes served, whose payload differs from what the header's signed "
                           "digest covers ({}); it must be refused",
                           named.name, named.version, named.security_counter, damage);
      port.use_image(std::move(changed));
    }
    remember(port.image());
    return detail;
  }

  void deliver(TrialPort& port, const std::string& step) override {
    port.bench().parts().feed->claim_next(claim_);
    (void)port.deliver(port.image(), step);
  }

  // The signed header is the truth: a device that runs the served image runs
  // what its header says, whatever it reports and whatever the manifest said.
  void judge(TrialPort& port, std::vector<OracleResult>& oracles) override {
    const auto& obs = port.outcome().observations;
    std::optional<SignedFacts> highest;
    for (std::size_t i = 0; i < obs.size(); ++i) {
      const auto& o = obs[i];
      if (!o.booted) continue;
      const auto it = signed_.find(o.digest);
      if (it == signed_.end()) continue;
      const auto& facts = it->second;
      if (highest && (facts.version < highest->version || facts.counter < highest->counter)) {
        const auto why = fmt::format(
            "{}: the device runs {} whose signed header says {} (counter {}), below {} (counter {}) it ran before{}",
            o.step, facts.name, facts.version.str(), facts.counter, highest->version.str(), highest->counter,
            o.version != facts.version.str() ? fmt::format(" (it reports version {})", o.version) : "");
        for (auto& r : oracles)
          if (r.name == "no-rollback") {
            r.detail = r.held ? why : r.detail + "; " + why;
            r.held = false;
          }
        break;
      }
      if (!highest || highest->version < facts.version) highest = facts;
    }
  }

 private:
  void remember(const BuiltImage& img) {
    if (!img.authentic) return;
    try {
      const auto h = image::parse(img.bytes, img.name).header;
      signed_[img.digest] = SignedFacts{h.version, h.security_counter, img.name};
    } catch (const InputError&) {
    }
  }

  MirrorPoint p_;
  drivers::ManifestClaim claim_;
  std::map<std::string, SignedFacts> signed_;
};

class LyingMirrorKind final : public harness::FaultKind {
 public:
  std::string_view name() const override { return "lying-mirror"; }
  std::string_view where() const override { return "network"; }
  std::string_view summary() const override {
    return "the update server's manifest disagrees with the image it names, one lie a trial: "
           "older-image-newer-manifest (the validly signed `older` release under a manifest stating the new "
           "release's version and counter), mix-and-match (the new release's whole manifest, the `older` "
           "release's image), manifest-digest (the new release with a seeded payload bit changed, the manifest "
           "naming the changed bytes' size and SHA-256); each must be refused: the signed header is the truth";
  }
  std::vector<std::string_view> keys() const override { return {"lies", "older"}; }
  std::shared_ptr<const harness::FaultOptions> parse(const Config& c, const FaultParseContext&) const override {
    auto o = std::make_shared<MirrorOptions>();
    o->older = c.at("older").as_string();
    if (auto v = c.find("lies")) {
      for (const auto& item : v->items()) {
        auto lie = item.as_string();
        const auto& known = mirror_lies();
        if (std::find(known.begin(), known.end(), lie) == known.end())
          item.fail(fmt::format("unknown lie '{}' (known: {})", lie, fmt::join(known, ", ")));
        if (std::find(o->lies.begin(), o->lies.end(), lie) != o->lies.end())
          item.fail(fmt::format("lie '{}' named twice", lie));
        o->lies.push_back(lie);
      }
      if (o->lies.empty()) v->fail("name at least one lie");
    } else {
      for (auto lie : mirror_lies()) o->lies.emplace_back(lie);
    }
    return o;
  }
  std::vector<std::pair<std::string, std::string>> releases_named(const harness::FaultSpec& f) const override {
    return {{f.as<MirrorOptions>().older, f.where}};
  }
  std::string inapplicable(const harness::Scenario&, const harness::BoardAbilities& board) const override {
    if (!board.server) return "the board does not download from the rig's update server";
    if (!board.reads_manifest)
      return "the device's update command reads no manifest (it names neither ${feed_url} nor ${manifest_url}): "
             "a mirror has nothing to lie in besides the image, which the image scenarios cover";
    return {};
  }
  void plan(PlanContext& ctx) const override {
    const auto& o = ctx.scenario().fault.as<MirrorOptions>();
    for (const auto& lie : o.lies) {
      auto p = std::make_shared<MirrorPoint>();
      p->lie = lie;
      p->older = o.older;
      ctx.add().point = std::move(p);
    }
  }
  std::unique_ptr<harness::FaultRun> start(const TrialSpec& spec) const override {
    return std::make_unique<MirrorRun>(spec.point_as<MirrorPoint>());
  }
  std::shared_ptr<const harness::FaultPoint> point_with(const TrialSpec& trial,
                                                        const nlohmann::json& fields) const override {
    auto p = std::make_shared<MirrorPoint>(trial.point_as<MirrorPoint>());
    if (auto lie = harness::chosen_field(trial, fields, name(), "lie", mirror_lies()); !lie.empty()) p->lie = lie;
    return p;
  }
};

}  // namespace

void register_lying_mirror(harness::FaultRegistry& registry) { registry.add(std::make_shared<LyingMirrorKind>()); }

}  // namespace otarig::scenarios::network
