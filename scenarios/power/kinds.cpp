// The `power-cut` and `flash-error` fault kinds: their scenario sections and
// their plans. The trial side is in runs.cpp.
#include <fmt/format.h>
#include <re2/re2.h>

#include <algorithm>

#include "otarig/harness/plan.hpp"
#include "otarig/harness/rng.hpp"
#include "otarig/harness/scenario.hpp"
#include "power.hpp"
#include "runs.hpp"

namespace otarig::scenarios::power {
namespace {

using harness::BoardAbilities;
using harness::FaultParseContext;
using harness::PlanContext;
using harness::Rng;
using harness::Scenario;
using harness::TrialSpec;

std::shared_ptr<CutOptions> parse_cut(const Config& c, const FaultParseContext& ctx, bool flash_error) {
  auto f = std::make_shared<CutOptions>();
  f->flash_error = flash_error;
  const std::string kind = flash_error ? "flash-error" : "power-cut";
  f->at = c.at("at").as_string();
  const bool placed = f->at == "download-byte" || f->at == "random-time" || f->at == "console";
  if (!f->counted() && !(!flash_error && placed))
    c.at("at").fail(fmt::format("unknown cut point '{}' (known: every-flash-op, random-flash-op{})", f->at,
                                flash_error ? "" : ", download-byte, random-time, console"));
  f->torn = c.double_or("torn", 0.0);
  if (f->torn < 0 || f->torn > 1) c.at("torn").fail("a probability between 0 and 1");
  if (placed && c.has("torn"))
    c.at("torn").fail("torn writes need counted flash operations (at: every-flash-op or random-flash-op)");
  if (auto im = c.find("image")) {
    f->image = im->as_string();
    if (f->image != "release" && f->image != "self-test-fail")
      im->fail(fmt::format("unknown image '{}' (known: release, self-test-fail)", f->image));
    if (f->image == "release") f->image.clear();
  }
  if (auto r = c.find("recovery_cuts")) {
    const auto n = r->as_uint();
    if (n > 16) r->fail(fmt::format("recovery_cuts {} must be 0..16", n));
    f->recovery_cuts = static_cast<std::uint32_t>(n);
  }
  if (auto p = c.find("points")) {
    if (f->at != "download-byte" && f->at != "every-flash-op")
      p->fail("`points` applies to at: download-byte (and every-flash-op on boards that cut downloads)");
    const auto n = p->as_uint();
    if (n < 1 || n > 4096) p->fail(fmt::format("points {} must be 1..4096", n));
    f->points = static_cast<std::uint32_t>(n);
  }
  if (f->at == "console") {
    const auto node = c.at("pattern");
    std::vector<Config> items = node.is_sequence() ? node.items() : std::vector<Config>{node};
    if (items.empty()) node.fail("name at least one console pattern");
    for (const auto& item : items) {
      auto pattern = item.as_string();
      if (pattern.empty()) item.fail("the console pattern is empty");
      if (pattern != "${banner}") {
        re2::RE2 re(pattern, re2::RE2::Quiet);
        if (!re.ok()) item.fail(fmt::format("invalid RE2 pattern: {}", re.error()));
      }
      f->patterns.push_back(std::move(pattern));
    }
    f->pattern = f->patterns.front();
    f->delay_ms = static_cast<std::uint32_t>(c.duration_or("delay", std::chrono::milliseconds(0)).count());
  } else {
    for (const char* k : {"pattern", "delay"})
      if (c.has(k)) c.at(k).fail(fmt::format("`{}` applies to at: console", k));
  }
  if (auto m = c.find("modes")) {
    if (flash_error) m->fail("`modes` applies to power-cut");
    f->modes.clear();
    for (const auto& item : m->items()) {
      auto mode = item.as_string();
      if (mode != "lost" && mode != "prefix" && mode != "reorder" && mode != "torn")
        item.fail(fmt::format("unknown crash mode '{}' (known: lost, prefix, reorder, torn)", mode));
      if (std::find(f->modes.begin(), f->modes.end(), mode) != f->modes.end())
        item.fail(fmt::format("crash mode '{}' named twice", mode));
      f->modes.push_back(mode);
    }
    if (f->modes.empty()) m->fail("name at least one crash mode (known: lost, prefix, reorder, torn)");
  }
  if (f->at == "random-flash-op" && ctx.trials == 0 && ctx.root)
    ctx.root->fail(fmt::format("a random {} scenario needs `trials`", kind));
  return f;
}

// The update under the cuts: the release, or its twin that fails its self-test.
std::string delivered_name(const Scenario& s, const CutOptions& f) {
  return f.image.empty() ? s.delivered() : s.deliver + "/" + f.image;
}

// Cuts placed in the delivery: at a download byte, a time, a console line.
void plan_placed(PlanContext& ctx, const CutOptions& f) {
  const Scenario& s = ctx.scenario();
  const auto& board = ctx.board();
  // Cuts by download byte fall within the bytes delivered: the delta's with `delivery: delta`.
  const std::uint64_t size = f.image.empty() ? board.delivered_size(s) : board.image_size ? board.image_size(s.deliver) : 0;
  const bool timed = f.at == "random-time" || f.at == "every-flash-op" || f.at == "random-flash-op";
  const std::uint64_t ms = timed ? ctx.update_ms(delivered_name(s, f)) : 0;
  // The window of time cuts: the clean update and a quarter more (the reboot after it).
  const std::uint64_t window = std::max<std::uint64_t>(1, ms + ms / 4);
  auto placed = [&](const TrialSpec& t, const std::string& at) {
    auto p = std::make_shared<PlacedCut>();
    p->at = at;
    if (at != f.at) p->mapped_from = f.at;
    p->image_size = size;
    p->update_ms = ms;
    p->image = f.image;
    p->recovery_cuts = recovery_cut_count(t.seed, f.recovery_cuts);
    if (board.crash_storage) {
      // Under the crash model the cut's power loss keeps a seeded part of what
      // the device had not made durable.
      Rng rng(harness::mix64(t.seed ^ 0x6d6f6465ULL));
      p->crash_mode = f.modes[rng.below(f.modes.size())];
      p->crash_seed = rng.next();
    }
    return p;
  };
  if (f.at == "download-byte" || f.at == "every-flash-op") {
    if (size == 0) throw BenchError(fmt::format("{}: the image of {} is empty", s.name, s.deliver));
    for (std::uint32_t i = 0; i < f.points; ++i) {
      auto& t = ctx.add();
      auto p = placed(t, "download-byte");
      p->byte = size * i / f.points;
      t.point = std::move(p);
    }
    if (f.at == "every-flash-op") {
      const std::uint32_t n = std::max<std::uint32_t>(1, f.points / 2);
      for (std::uint32_t i = 0; i < n; ++i) {
        auto& t = ctx.add();
        auto p = placed(t, "time");
        p->delay_ms = static_cast<std::uint32_t>(window * (2 * i + 1) / (2 * n));
        t.point = std::move(p);
      }
    }
    return;
  }
  for (std::uint64_t i = 0; i < std::max<std::uint64_t>(1, s.trials); ++i) {
    auto& t = ctx.add();
    Rng rng(t.seed);
    std::shared_ptr<PlacedCut> p;
    if (f.at == "console") {
      p = placed(t, "console");
      p->pattern = f.patterns.empty() ? f.pattern : f.patterns[i % f.patterns.size()];
      p->delay_ms = static_cast<std::uint32_t>(rng.between(0, f.delay_ms));
    } else if (f.at == "random-flash-op" && size > 0 && rng.chance(0.5)) {
      p = placed(t, "download-byte");
      p->byte = rng.below(size);
    } else {
      p = placed(t, "time");
      p->delay_ms = static_cast<std::uint32_t>(rng.below(window));
    }
    t.point = std::move(p);
  }
}

void plan_counted(PlanContext& ctx, const CutOptions& f) {
  const Scenario& s = ctx.scenario();
  const auto delivered = delivered_name(s, f);
  const std::uint64_t n = ctx.ops_per_update(delivered);
  if (n == 0)
    throw BenchError(fmt::format("{}: the update from {} to {} did no flash operation", s.name, s.start, delivered));
  auto cut = [&](const TrialSpec& t, std::uint64_t op) {
    auto p = std::make_shared<CountedCut>();
    p->kind = f.flash_error ? "flash-error" : "power-cut";
    p->at = f.at;
    p->before_op = op;
    p->ops_total = n;
    p->flash_error = f.flash_error;
    p->image = f.image;
    p->recovery_cuts = recovery_cut_count(t.seed, f.recovery_cuts);
    return p;
  };
  if (f.at == "every-flash-op") {
    for (std::uint64_t k = 1; k <= n; ++k) {
      auto& t = ctx.add();
      t.point = cut(t, k);
      if (f.torn > 0) {
        auto& torn = ctx.add();
        auto p = cut(torn, k);
        p->torn = true;
        p->torn_seed = Rng(torn.seed).next();
        torn.point = std::move(p);
      }
    }
    return;
  }
  for (std::uint64_t i = 0; i < s.trials; ++i) {
    auto& t = ctx.add();
    Rng rng(t.seed);
    auto p = cut(t, rng.between(1, n));
    p->torn = rng.chance(f.torn);
    p->torn_seed = rng.next();
    t.point = std::move(p);
  }
}

class CutKind final : public harness::FaultKind {
 public:
  explicit CutKind(bool flash_error) : flash_error_(flash_error) {}

  std::string_view name() const override { return flash_error_ ? "flash-error" : "power-cut"; }
  std::string_view where() const override { return flash_error_ ? "storage" : "power"; }
  std::string_view summary() const override {
    if (flash_error_)
      return "flash op k of the update fails with an error the flash reports (at: every-flash-op or "
             "random-flash-op; torn: the probability that part of it landed); the device must report it and stay "
             "healthy";
    return "cut power before flash operation k of the update (at: every-flash-op sweeps every k; at: "
           "random-flash-op draws k from the seed); torn: the probability that op k is left half-done; "
           "recovery_cuts: K cuts again at seeded ops of the recovery boots, 1..K per trial (brown-out); image: "
           "self-test-fail cuts an update that is reverted. Boards that cut a delivery instead (process and lab "
           "boards): at: download-byte (points cut points spread over the image), random-time (a seeded time "
           "within a measured clean update), console (0..delay after a console line matching pattern; a list of patterns: one per trial in turn; "
           "under the crash model: at a seeded storage operation the device makes after that line); counted "
           "cuts map to these there";
  }
  std::vector<std::string_view> keys() const override {
    if (flash_error_) return {"at", "torn"};
    return {"at", "torn", "recovery_cuts", "image", "points", "pattern", "delay", "modes"};
  }
  std::shared_ptr<const harness::FaultOptions> parse(const Config& c, const FaultParseContext& ctx) const override {
    return parse_cut(c, ctx, flash_error_);
  }
  std::string inapplicable(const Scenario& s, const BoardAbilities& board) const override {
    const auto& f = s.fault.as<CutOptions>();
    if (flash_error_)
      return board.count_ops ? "" : "the board does not count flash operations, so none can be made to fail";
    if (f.counted() && !board.count_ops && !board.storage_ops && !board.delivery_cuts)
      return "the board neither counts flash operations nor records its storage nor can cut power during a "
             "delivery";
    if (!f.counted() && !board.delivery_cuts)
      return fmt::format("the board cannot cut power during a delivery (at: {}); it cuts at counted flash "
                         "operations instead",
                         f.at);
    return {};
  }
  // Brown-outs (recovery_cuts) on a board whose storage is under the crash
  // model cut at recorded storage operations, the recovery boots' too; on a
  // board with neither counted flash operations nor that, they stay cuts
  // placed in the delivery, whose recovery cuts fall a seeded time into each
  // recovery boot.
  void plan(PlanContext& ctx) const override {
    const auto& f = ctx.scenario().fault.as<CutOptions>();
    const auto& board = ctx.board();
    if (flash_error_ || (f.counted() && board.count_ops))
      plan_counted(ctx, f);
    else if (f.counted() && board.storage_ops && (f.recovery_cuts == 0 || f.at == "random-flash-op"))
      plan_storage_cuts(ctx, f, delivered_name(ctx.scenario(), f));
    else if (f.at == "console" && board.storage_ops && f.recovery_cuts == 0 &&
             plan_console_storage_cuts(ctx, f, delivered_name(ctx.scenario(), f)))
      return;
    else
      plan_placed(ctx, f);
  }
  std::unique_ptr<harness::FaultRun> start(const TrialSpec& spec) const override {
    if (auto* placed = dynamic_cast<const PlacedCut*>(spec.point.get())) return make_placed_run(*placed);
    if (auto* storage = dynamic_cast<const StorageCut*>(spec.point.get())) return make_storage_run(*storage);
    return make_counted_run(spec.point_as<CountedCut>());
  }
  std::shared_ptr<const harness::FaultPoint> point_with(const TrialSpec& trial,
                                                        const nlohmann::json& fields) const override {
    const auto* planned = dynamic_cast<const CountedCut*>(trial.point.get());
    if (!planned) return harness::FaultKind::point_with(trial, fields);
    auto p = std::make_shared<CountedCut>(*planned);
    for (const auto& [key, value] : fields.items()) {
      if (key == "cut_op") {
        const auto op = value.get<std::uint64_t>();
        if (p->ops_total && op > p->ops_total)
          throw InputError(fmt::format("cut_op {}: the update from {} to {} has {} flash operations", op,
                                       trial.scenario->start, trial.scenario->deliver, p->ops_total));
        p->before_op = op;
      } else if (key == "torn") {
        p->torn = value.get<bool>();
        if (p->torn && !planned->torn) p->torn_seed = Rng(trial.seed).next();
      } else if (key == "torn_seed") {
        p->torn_seed = value.get<std::uint64_t>();
      } else {
        throw InputError(fmt::format("{}: a {} trial takes cut_op, torn and torn_seed, not {}",
                                     trial.scenario->name, name(), key));
      }
    }
    return p;
  }

 private:
  bool flash_error_;
};

}  // namespace

void register_power_faults(harness::FaultRegistry& registry) {
  registry.add(std::make_shared<CutKind>(false));
  registry.add(std::make_shared<CutKind>(true));
}

}  // namespace otarig::scenarios::power
