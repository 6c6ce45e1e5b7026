#include "otarig/harness/plan.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "otarig/harness/rng.hpp"
#include "otarig/harness/scenario.hpp"

namespace otarig::harness {

nlohmann::json TrialSpec::fault_json() const {
  nlohmann::json j = point ? point->json() : nlohmann::json::object();
  j["kind"] = scenario->fault.kind;
  if (point) {
    j["label"] = point->label();
    j["text"] = point->text();
  }
  return j;
}

namespace {

class ScenarioPlanContext final : public PlanContext {
 public:
  ScenarioPlanContext(Plan& plan, const Scenario& s, const BoardAbilities& board, std::uint64_t seed,
                      std::uint64_t& index)
      : plan_(plan), s_(s), board_(board), seed_(seed), index_(index) {}

  const Scenario& scenario() const override { return s_; }
  const BoardAbilities& board() const override { return board_; }

  TrialSpec& add() override {
    TrialSpec t;
    t.index = index_++;
    t.id = fmt::format("{:05d}", t.index);
    t.scenario = &s_;
    t.seed = trial_seed(seed_, t.index);
    plan_.trials.push_back(std::move(t));
    return plan_.trials.back();
  }

  std::uint64_t ops_per_update(const std::string& deliver) override {
    const auto key = s_.start + "->" + deliver;
    if (auto it = plan_.ops_per_update.find(key); it != plan_.ops_per_update.end()) return it->second;
    const std::uint64_t n = board_.count_ops ? board_.count_ops(s_.start, deliver) : 0;
    plan_.ops_per_update[key] = n;
    return n;
  }

  std::uint64_t storage_ops(const std::string& deliver) override {
    const auto key = s_.start + "->" + deliver;
    if (auto it = plan_.storage_ops_per_update.find(key); it != plan_.storage_ops_per_update.end())
      return it->second;
    const std::uint64_t n = board_.storage_ops ? board_.storage_ops(s_.start, deliver) : 0;
    plan_.storage_ops_per_update[key] = n;
    return n;
  }

  std::uint64_t seed() const override { return seed_; }

  std::uint64_t update_ms(const std::string& deliver) override {
    const auto key = s_.start + "->" + deliver;
    if (auto it = plan_.update_ms.find(key); it != plan_.update_ms.end()) return it->second;
    const std::uint64_t ms = board_.update_ms ? board_.update_ms(s_.start, deliver) : 0;
    plan_.update_ms[key] = ms;
    return ms;
  }

 private:
  Plan& plan_;
  const Scenario& s_;
  const BoardAbilities& board_;
  std::uint64_t seed_;
  std::uint64_t& index_;
};

}  // namespace

Plan make_plan(const Scenario& scenario, std::uint64_t seed, const CountOps& count_ops) {
  BoardAbilities board;
  board.count_ops = count_ops;
  return make_plan(scenario, seed, board);
}

Plan make_plan(const Scenario& scenario, std::uint64_t seed, const BoardAbilities& board) {
  Plan plan;
  std::uint64_t index = 0;
  for (const Scenario* s : scenario.leaves()) {
    const auto& f = s->fault;
    if (!f.unit) throw InputError(fmt::format("{}: scenario '{}' has no fault kind", f.where, s->name));
    std::string why = s->delta ? board.no_delta : std::string();
    for (const auto& need : s->needs)
      if (need == kNeedsSecondImage && !board.second_image)
        why = "the board reports no second updatable image (its status pattern has no image1_version group)";
      else if (need == kNeedsEncryption && !board.encryption)
        why = "the board's releases are not encrypted (no `encryption:` in its profile)";
    if (why.empty()) why = f.unit->inapplicable(*s, board);
    if (!why.empty()) {
      if (!scenario.is_suite()) throw InputError(fmt::format("{}: scenario '{}' cannot run: {}", f.where, s->name, why));
      plan.skipped.push_back({s->name, why});
      continue;
    }
    ScenarioPlanContext ctx(plan, *s, board, seed, index);
    f.unit->plan(ctx);
  }
  return plan;
}

namespace {

// A seeded partial Fisher-Yates: moves `n` entries chosen by `rng` to the front.
void draw(std::vector<std::size_t>& idx, std::size_t from, std::size_t n, Rng& rng) {
  for (std::size_t i = from; i < from + n && i < idx.size(); ++i)
    std::swap(idx[i], idx[i + rng.below(idx.size() - i)]);
}

}  // namespace

void limit_plan(Plan& plan, std::uint64_t n, std::uint64_t seed) {
  if (n >= plan.trials.size()) return;
  Rng rng(mix64(seed ^ 0x6c696d6974ULL));
  std::vector<std::size_t> idx(plan.trials.size());
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  // The scenarios of the plan, in order of their first trial.
  std::vector<const Scenario*> scenarios;
  for (const auto& t : plan.trials)
    if (std::find(scenarios.begin(), scenarios.end(), t.scenario) == scenarios.end()) scenarios.push_back(t.scenario);
  std::size_t chosen = 0;
  if (scenarios.size() > 1 && n >= scenarios.size()) {
    // A suite keeps every scenario: first one trial of each, drawn from that
    // scenario's trials, then the rest drawn from all that are left.
    for (const auto* s : scenarios) {
      std::vector<std::size_t> own;
      for (std::size_t i = chosen; i < idx.size(); ++i)
        if (plan.trials[idx[i]].scenario == s) own.push_back(i);
      std::swap(idx[chosen], idx[own[rng.below(own.size())]]);
      ++chosen;
    }
  }
  draw(idx, chosen, static_cast<std::size_t>(n) - chosen, rng);
  idx.resize(static_cast<std::size_t>(n));
  std::sort(idx.begin(), idx.end());
  std::vector<TrialSpec> kept;
  for (auto i : idx) kept.push_back(plan.trials[i]);
  plan.trials = std::move(kept);
}

void shard_plan(Plan& plan, unsigned shard, unsigned count) {
  std::erase_if(plan.trials, [&](const TrialSpec& t) { return t.index % count != shard; });
}

}  // namespace otarig::harness
