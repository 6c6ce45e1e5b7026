#include "otarig/harness/plan.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "otarig/harness/rng.hpp"

namespace otarig::harness {

nlohmann::json TrialSpec::fault_json() const {
  nlohmann::json j;
  j["kind"] = scenario->fault.kind;
  if (scenario->fault.kind == "power-cut") {
    j["at"] = scenario->fault.at;
    j["before_op"] = cut_op;
    j["ops_total"] = ops_total;
    j["torn"] = torn;
    if (torn) j["torn_seed"] = torn_seed;
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
    if (f.kind == "power-cut") {
      if (!count_ops)
        throw InputError(fmt::format("{}: scenario '{}' cuts power at counted flash operations, which this board "
                                     "does not count",
                                     f.where, s->name));
      auto key = s->start + "->" + s->deliver;
      auto it = plan.ops_per_update.find(key);
      std::uint64_t n = it != plan.ops_per_update.end() ? it->second : count_ops(s->start, s->deliver);
      plan.ops_per_update[key] = n;
      if (n == 0) throw BenchError(fmt::format("{}: the update from {} to {} did no flash operation", s->name,
                                               s->start, s->deliver));
      if (f.at == "every-flash-op") {
        for (std::uint64_t k = 1; k <= n; ++k) {
          auto& t = add(s);
          t.cut_op = k;
          t.ops_total = n;
          if (f.torn > 0) {
            auto& torn = add(s);
            torn.cut_op = k;
            torn.ops_total = n;
            torn.torn = true;
            torn.torn_seed = Rng(torn.seed).next();
          }
        }
      } else {
        for (std::uint64_t i = 0; i < s->trials; ++i) {
          auto& t = add(s);
          Rng rng(t.seed);
          t.cut_op = rng.between(1, n);
          t.ops_total = n;
          t.torn = rng.chance(f.torn);
          t.torn_seed = rng.next();
        }
      }
    } else if (f.kind == "tamper") {
      for (const auto& v : f.variants) add(s).variant = v;
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
