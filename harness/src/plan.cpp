#include "otarig/harness/plan.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "otarig/harness/rng.hpp"

namespace otarig::harness {

nlohmann::json TrialSpec::fault_json() const {
  nlohmann::json j;
  j["kind"] = scenario->fault.kind;
  if (scenario->fault.kind == "power-cut" || scenario->fault.kind == "flash-error") {
    j["at"] = scenario->fault.at;
    j["before_op"] = cut_op;
    j["ops_total"] = ops_total;
    j["torn"] = torn;
    if (torn) j["torn_seed"] = torn_seed;
    if (!scenario->fault.image.empty()) j["image"] = scenario->fault.image;
    if (flash_error) j["error"] = true;
    if (recovery_cuts) j["recovery_cuts"] = recovery_cuts;
  }
  if (scenario->fault.kind == "bit-rot") {
    j["slot"] = rot_running ? "running" : "other";
    j["bits"] = rot_bits;
    j["seed"] = rot_seed;
  }
  if (!variant.empty()) j["variant"] = variant;
  return j;
}

Plan make_plan(const Scenario& scenario, std::uint64_t seed, const CountOps& count_ops) {
  Plan plan;
  std::uint64_t index = 0;
  auto add = [&](const Scenario* s) -> TrialSpec& {
    TrialSpec t;
    t.index = index++;
    t.id = fmt::format("{:05d}", t.index);
    t.scenario = s;
    t.seed = trial_seed(seed, t.index);
    plan.trials.push_back(t);
    return plan.trials.back();
  };
  for (const Scenario* s : scenario.leaves()) {
    const auto& f = s->fault;
    if (f.kind == "power-cut" || f.kind == "flash-error") {
      if (!count_ops)
        throw InputError(fmt::format("{}: scenario '{}' cuts power at counted flash operations, which this board "
                                     "does not count",
                                     f.where, s->name));
      // The update under the cuts: the release, or its twin that fails its self-test ("NAME/self-test-fail").
      const auto delivered = f.image.empty() ? s->deliver : s->deliver + "/" + f.image;
      auto key = s->start + "->" + delivered;
      auto it = plan.ops_per_update.find(key);
      std::uint64_t n = it != plan.ops_per_update.end() ? it->second : count_ops(s->start, delivered);
      plan.ops_per_update[key] = n;
      if (n == 0) throw BenchError(fmt::format("{}: the update from {} to {} did no flash operation", s->name,
                                               s->start, delivered));
      // Brown-out: how many recovery boots are cut again, from a stream of its own.
      auto counted_cut = [&](TrialSpec& t) {
        t.ops_total = n;
        t.flash_error = f.kind == "flash-error";
        if (f.recovery_cuts) t.recovery_cuts = static_cast<std::uint32_t>(
                                 Rng(mix64(t.seed ^ 0x62726f776e6f7574ULL)).between(1, f.recovery_cuts));
      };
      if (f.at == "every-flash-op") {
        for (std::uint64_t k = 1; k <= n; ++k) {
          auto& t = add(s);
          t.cut_op = k;
          counted_cut(t);
          if (f.torn > 0) {
            auto& torn = add(s);
            torn.cut_op = k;
            torn.torn = true;
            torn.torn_seed = Rng(torn.seed).next();
            counted_cut(torn);
          }
        }
      } else {
        for (std::uint64_t i = 0; i < s->trials; ++i) {
          auto& t = add(s);
          Rng rng(t.seed);
          t.cut_op = rng.between(1, n);
          t.torn = rng.chance(f.torn);
          t.torn_seed = rng.next();
          counted_cut(t);
        }
      }
    } else if (f.kind == "tamper") {
      for (const auto& v : f.variants) add(s).variant = v;
    } else if (f.kind == "bit-rot") {
      for (std::uint64_t i = 0; i < std::max<std::uint64_t>(1, s->trials); ++i) {
        auto& t = add(s);
        Rng rng(t.seed);
        t.rot_running = f.slot == "running" || (f.slot == "any" && rng.chance(0.5));
        t.rot_bits = static_cast<std::uint32_t>(rng.between(1, f.bits));
        t.rot_seed = rng.next();
      }
    } else {
      std::uint64_t count = std::max<std::uint64_t>(1, s->trials);
      for (std::uint64_t i = 0; i < count; ++i) add(s);
    }
  }
  return plan;
}

void limit_plan(Plan& plan, std::uint64_t n, std::uint64_t seed) {
  if (n >= plan.trials.size()) return;
  // A seeded partial Fisher-Yates picks which trials stay; order is kept.
  std::vector<std::size_t> idx(plan.trials.size());
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  Rng rng(mix64(seed ^ 0x6c696d6974ULL));
  for (std::size_t i = 0; i < n; ++i) std::swap(idx[i], idx[i + rng.below(idx.size() - i)]);
  idx.resize(n);
  std::sort(idx.begin(), idx.end());
  std::vector<TrialSpec> kept;
  for (auto i : idx) kept.push_back(plan.trials[i]);
  plan.trials = std::move(kept);
}

void shard_plan(Plan& plan, unsigned shard, unsigned count) {
  std::erase_if(plan.trials, [&](const TrialSpec& t) { return t.index % count != shard; });
}

}  // namespace otarig::harness
