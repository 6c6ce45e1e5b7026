// `bit-rot`: seeded bits of the image in a slot flip while the device is
// off; a corrupt image must not boot.
#include <fmt/format.h>

#include <algorithm>

#include "otarig/harness/bench.hpp"
#include "otarig/harness/plan.hpp"
#include "otarig/harness/rng.hpp"
#include "otarig/harness/scenario.hpp"
#include "storage.hpp"

namespace otarig::scenarios::storage {
namespace {

using harness::TrialPort;

struct BitRotOptions final : harness::FaultOptions {
  std::string slot = "any";  ///< running | other | any
  std::uint32_t bits = 1;    ///< at most this many bits flipped per trial
  nlohmann::json json() const override { return {{"slot", slot}, {"bits", bits}}; }
};

struct BitRotPoint final : harness::FaultPoint {
  bool running = true;
  std::uint32_t bits = 0;
  std::uint64_t seed = 0;
  nlohmann::json json() const override {
    return {{"slot", running ? "running" : "other"}, {"bits", bits}, {"seed", seed}};
  }
  std::string label() const override {
    return fmt::format("bit-rot: {} bit{} of the {} slot", bits, bits == 1 ? "" : "s", running ? "running" : "other");
  }
};

class BitRotRun final : public harness::FaultRun {
 public:
  explicit BitRotRun(const BitRotPoint& p) : p_(p) {}
  std::string inject(TrialPort& port) override {
    auto& bench = port.bench();
    auto* ff = bench.parts().flash_faults.get();
    bench.power_off("inject");
    std::optional<std::string> flipped;
    if (ff) flipped = ff->flip_at_rest(drivers::StorageFlip{p_.running, p_.bits, p_.seed});
    if (!flipped) throw BenchError(fmt::format("{}: the board cannot flip stored bits at rest", bench.profile().name));
    return "storage fault at rest: " + *flipped;
  }
  // The fault is the storage itself: nothing is delivered; the device boots what it holds.
  void deliver(TrialPort& port, const std::string&) override {
    port.no_delivery("no delivery: the image at rest was corrupted");
  }

 private:
  BitRotPoint p_;
};

class BitRotKind final : public harness::FaultKind {
 public:
  std::string_view name() const override { return "bit-rot"; }
  std::string_view where() const override { return "storage"; }
  std::string_view summary() const override {
    return "flip seeded bits of the image in a slot while the device is off, then power on (slot: running, "
           "other or any; bits: at most this many per trial); a corrupt image must not boot";
  }
  std::vector<std::string_view> keys() const override { return {"slot", "bits"}; }
  std::shared_ptr<const harness::FaultOptions> parse(const Config& c,
                                                     const harness::FaultParseContext&) const override {
    auto f = std::make_shared<BitRotOptions>();
    f->slot = c.string_or("slot", "any");
    if (f->slot != "running" && f->slot != "other" && f->slot != "any")
      c.at("slot").fail(fmt::format("unknown slot '{}' (known: running, other, any)", f->slot));
    if (auto b = c.find("bits")) {
      const auto n = b->as_uint();
      if (n < 1 || n > 64) b->fail(fmt::format("bits {} must be 1..64", n));
      f->bits = static_cast<std::uint32_t>(n);
    }
    return f;
  }
  std::string inapplicable(const harness::Scenario&, const harness::BoardAbilities& board) const override {
    return board.count_ops ? "" : "the board cannot flip stored bits at rest";
  }
  void plan(harness::PlanContext& ctx) const override {
    const auto& s = ctx.scenario();
    const auto& f = s.fault.as<BitRotOptions>();
    for (std::uint64_t i = 0; i < std::max<std::uint64_t>(1, s.trials); ++i) {
      auto& t = ctx.add();
      harness::Rng rng(t.seed);
      auto p = std::make_shared<BitRotPoint>();
      p->running = f.slot == "running" || (f.slot == "any" && rng.chance(0.5));
      p->bits = static_cast<std::uint32_t>(rng.between(1, f.bits));
      p->seed = rng.next();
      t.point = std::move(p);
    }
  }
  std::unique_ptr<harness::FaultRun> start(const harness::TrialSpec& spec) const override {
    return std::make_unique<BitRotRun>(spec.point_as<BitRotPoint>());
  }
};

}  // namespace

void register_storage_faults(harness::FaultRegistry& registry) { registry.add(std::make_shared<BitRotKind>()); }

}  // namespace otarig::scenarios::storage
