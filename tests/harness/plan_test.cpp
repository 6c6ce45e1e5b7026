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
  // Alone, a scenario the board cannot run is bad input naming it.
  auto single = leaf("sweep", "power-cut", "every-flash-op");
  single.fault.where = "scenarios/sweep.yaml:9";
  try {
    make_plan(single, 1, nullptr);
    FAIL() << "expected an InputError";
  } catch (const otarig::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("scenarios/sweep.yaml:9: scenario 'sweep' cannot run"), std::string::npos)
        << e.what();
  }
  // In a suite it is skipped, with the reason.
  auto s = suite();
  auto plan = make_plan(s, 1, nullptr);
  ASSERT_EQ(plan.skipped.size(), 2u);
  EXPECT_EQ(plan.skipped[0].scenario, "sweep");
  EXPECT_EQ(plan.skipped[1].scenario, "random");
  EXPECT_NE(plan.skipped[0].reason.find("neither counts flash operations"), std::string::npos);
  EXPECT_EQ(plan.trials.size(), 3u);  // tamper x2, unsigned
}

namespace {

BoardAbilities process_board(std::string tls = "mutual") {
  BoardAbilities b;
  b.delivery_cuts = true;
  b.network = std::move(tls);
  b.image_size = [](const std::string&) -> std::uint64_t { return 1000; };
  b.update_ms = [](const std::string&, const std::string&) -> std::uint64_t { return 80; };
  return b;
}

}  // namespace

TEST(Plan, CountedCutsBecomeDeliveryCutsOnAProcessBoard) {
  auto s = suite();
  auto plan = make_plan(s, 5, process_board());
  EXPECT_TRUE(plan.skipped.empty());
  std::vector<const TrialSpec*> sweep, random;
  for (const auto& t : plan.trials) {
    if (t.scenario->name == "sweep") sweep.push_back(&t);
    if (t.scenario->name == "random") random.push_back(&t);
  }
  // 16 download points spread over the image, then 8 times spread over 1.25 x 80 ms.
  ASSERT_EQ(sweep.size(), 24u);
  for (std::size_t i = 0; i < 16; ++i) {
    EXPECT_EQ(sweep[i]->cut_at, "download-byte");
    EXPECT_EQ(sweep[i]->cut_byte, 1000 * i / 16);
    EXPECT_EQ(sweep[i]->fault_json()["mapped_from"], "every-flash-op");
  }
  for (std::size_t i = 0; i < 8; ++i) {
    EXPECT_EQ(sweep[16 + i]->cut_at, "time");
    EXPECT_EQ(sweep[16 + i]->cut_delay_ms, 100 * (2 * i + 1) / 16);
  }
  EXPECT_EQ(plan.update_ms.at("factory->update"), 80u);
  ASSERT_EQ(random.size(), 40u);
  std::set<std::string> kinds;
  for (const auto* t : random) {
    kinds.insert(t->cut_at);
    if (t->cut_at == "download-byte") {
      EXPECT_LT(t->cut_byte, 1000u);
    }
    if (t->cut_at == "time") {
      EXPECT_LT(t->cut_delay_ms, 100u);
    }
    EXPECT_EQ(t->cut_op, 0u) << "no counted cut on a process board";
    EXPECT_FALSE(t->torn);
  }
  EXPECT_EQ(kinds, (std::set<std::string>{"download-byte", "time"}));
  // Same seed, same plan.
  auto again = make_plan(s, 5, process_board());
  for (std::size_t i = 0; i < plan.trials.size(); ++i)
    EXPECT_EQ(plan.trials[i].fault_json(), again.trials[i].fault_json());
}

TEST(Plan, NetworkFaultsFillASeededByteAndNeedTheProxy) {
  Scenario s;
  s.name = "suite";
  auto corrupt = leaf("corrupt", "network", "", 0, 6);
  corrupt.fault.faults = "down:corrupt@offset=${b},count=1";
  auto mtls = leaf("mtls", "network");
  mtls.fault.probe = "no-client-certificate";
  auto impostor = leaf("impostor", "network");
  impostor.fault.faults = "impostor";
  auto stale = leaf("stale", "stale");
  stale.fault.serve = "factory";
  s.parts = {corrupt, mtls, impostor, stale};

  auto plan = make_plan(s, 9, process_board());
  ASSERT_EQ(plan.trials.size(), 6u + 3u);
  std::set<std::string> specs;
  for (const auto& t : plan.trials) {
    if (t.scenario->name != "corrupt") continue;
    ASSERT_EQ(t.network.rfind("down:corrupt@offset=", 0), 0u) << t.network;
    const auto b = std::stoull(t.network.substr(20));
    EXPECT_LT(b, 1000u);
    specs.insert(t.network);
  }
  EXPECT_GT(specs.size(), 1u) << "each trial draws its own byte";

  // Plain HTTP: the TLS scenarios are skipped, the others run.
  auto plain = make_plan(s, 9, process_board("off"));
  ASSERT_EQ(plain.skipped.size(), 2u);
  EXPECT_EQ(plain.skipped[0].scenario, "mtls");
  EXPECT_EQ(plain.skipped[1].scenario, "impostor");
  EXPECT_NE(plain.skipped[0].reason.find("without TLS"), std::string::npos);
  // No fault proxy at all (a virtual board): every network scenario is skipped.
  auto virt = make_plan(s, 9, kTenOps);
  EXPECT_EQ(virt.skipped.size(), 4u);
  EXPECT_TRUE(virt.trials.empty());
}
