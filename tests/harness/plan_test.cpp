#include "otarig/harness/plan.hpp"

#include <gtest/gtest.h>

#include <set>

using namespace otarig::harness;

namespace {

Scenario leaf(const std::string& name, const std::string& kind, const std::string& at = "", double torn = 0,
              std::uint64_t trials = 0) {
  Scenario s;
  s.name = name;
  s.start = "factory";
  s.deliver = "update";
  s.fault.kind = kind;
  s.fault.at = at;
  s.fault.torn = torn;
  s.trials = trials;
  if (kind == "tamper") s.fault.variants = {"truncated", "appended"};
  return s;
}

Scenario suite() {
  Scenario s;
  s.name = "suite";
  s.parts = {leaf("sweep", "power-cut", "every-flash-op"), leaf("random", "power-cut", "random-flash-op", 0.5, 40),
             leaf("tamper", "tamper"), leaf("unsigned", "unsigned")};
  return s;
}

const CountOps kTenOps = [](const std::string&, const std::string&) -> std::uint64_t { return 10; };

}  // namespace

TEST(Plan, SweepCoversEveryOpOnce) {
  auto s = suite();
  auto plan = make_plan(s, 1, kTenOps);
  ASSERT_EQ(plan.trials.size(), 10u + 40u + 2u + 1u);
  for (std::uint64_t k = 1; k <= 10; ++k) {
    EXPECT_EQ(plan.trials[k - 1].cut_op, k);
    EXPECT_FALSE(plan.trials[k - 1].torn);
  }
  for (std::size_t i = 0; i < plan.trials.size(); ++i) EXPECT_EQ(plan.trials[i].index, i);
  EXPECT_EQ(plan.trials[0].id, "00000");
  EXPECT_EQ(plan.ops_per_update.at("factory->update"), 10u);
}

TEST(Plan, TornSweepDoublesTheTrials) {
  Scenario s = leaf("sweep", "power-cut", "every-flash-op", 1.0);
  auto plan = make_plan(s, 1, kTenOps);
  ASSERT_EQ(plan.trials.size(), 20u);
  EXPECT_FALSE(plan.trials[0].torn);
  EXPECT_TRUE(plan.trials[1].torn);
  EXPECT_EQ(plan.trials[1].cut_op, 1u);
}

TEST(Plan, SameSeedSamePlanOtherSeedOtherDraws) {
  auto s = suite();
  auto a = make_plan(s, 7, kTenOps), b = make_plan(s, 7, kTenOps), c = make_plan(s, 8, kTenOps);
  ASSERT_EQ(a.trials.size(), b.trials.size());
  bool differs = false;
  for (std::size_t i = 0; i < a.trials.size(); ++i) {
    EXPECT_EQ(a.trials[i].cut_op, b.trials[i].cut_op);
    EXPECT_EQ(a.trials[i].torn, b.trials[i].torn);
    EXPECT_EQ(a.trials[i].seed, b.trials[i].seed);
    differs = differs || a.trials[i].cut_op != c.trials[i].cut_op;
  }
  EXPECT_TRUE(differs);
  std::set<std::uint64_t> ops;
  int torn = 0;
  for (const auto& t : a.trials)
    if (t.scenario->name == "random") {
      ASSERT_GE(t.cut_op, 1u);
      ASSERT_LE(t.cut_op, 10u);
      ops.insert(t.cut_op);
      torn += t.torn;
    }
  EXPECT_GT(ops.size(), 5u);
  EXPECT_GT(torn, 5);
  EXPECT_LT(torn, 35);
}

TEST(Plan, ShardsAreDisjointAndCoverThePlan) {
  auto s = suite();
  auto whole = make_plan(s, 3, kTenOps);
  std::multiset<std::uint64_t> seen;
  for (unsigned i = 0; i < 3; ++i) {
    auto p = make_plan(s, 3, kTenOps);
    shard_plan(p, i, 3);
    for (const auto& t : p.trials) {
      seen.insert(t.index);
      EXPECT_EQ(t.seed, whole.trials[t.index].seed);
    }
  }
  EXPECT_EQ(seen.size(), whole.trials.size());
  EXPECT_EQ(std::set<std::uint64_t>(seen.begin(), seen.end()).size(), whole.trials.size());
}

TEST(Plan, LimitKeepsASeededSubsetInOrder) {
  auto s = suite();
  auto p = make_plan(s, 3, kTenOps);
  limit_plan(p, 5, 3);
  ASSERT_EQ(p.trials.size(), 5u);
  for (std::size_t i = 1; i < p.trials.size(); ++i) EXPECT_LT(p.trials[i - 1].index, p.trials[i].index);
  auto q = make_plan(s, 3, kTenOps);
  limit_plan(q, 5, 3);
  for (std::size_t i = 0; i < 5; ++i) EXPECT_EQ(p.trials[i].index, q.trials[i].index);
}

TEST(Plan, PowerCutNeedsACountingBoard) {
  auto s = suite();
  EXPECT_THROW(make_plan(s, 1, nullptr), otarig::InputError);
}
