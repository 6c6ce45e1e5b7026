#include "otarig/harness/plan.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <set>

#include "otarig/harness/composition.hpp"

using namespace otarig::harness;

namespace {

// A scenario whose fault section is `fault` (YAML), parsed by its kind.
Scenario with_fault(const std::string& name, const std::string& fault, std::uint64_t trials = 0) {
  Scenario s;
  s.name = name;
  s.start = "factory";
  s.deliver = "update";
  s.trials = trials;
  const auto root = otarig::Config::load_string(fault, "scenarios/" + name + ".yaml");
  s.fault = parse_fault(root, builtin_registries().faults, FaultParseContext{name, trials, &root});
  return s;
}

Scenario leaf(const std::string& name, const std::string& kind, const std::string& at = "", double torn = 0,
              std::uint64_t trials = 0) {
  std::string fault = "kind: " + kind + "\n";
  if (!at.empty()) fault += "at: " + at + "\n";
  if (torn > 0) fault += fmt::format("torn: {}\n", torn);
  if (kind == "tamper") fault += "variants: [truncated, appended]\n";
  return with_fault(name, fault, trials);
}

// The planned fault's fields, as the evidence records them.
std::uint64_t cut_op(const TrialSpec& t) { return t.fault_json().value("before_op", std::uint64_t{0}); }
bool torn_of(const TrialSpec& t) { return t.fault_json().value("torn", false); }
std::string cut_at(const TrialSpec& t) {
  const auto j = t.fault_json();
  return j.contains("before_op") ? "" : j.value("at", "");
}
std::uint64_t cut_byte(const TrialSpec& t) { return t.fault_json().value("byte", std::uint64_t{0}); }
std::uint64_t cut_delay_ms(const TrialSpec& t) { return t.fault_json().value("delay_ms", std::uint64_t{0}); }
std::string network(const TrialSpec& t) { return t.fault_json().value("faults", ""); }

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
    EXPECT_EQ(cut_op(plan.trials[k - 1]), k);
    EXPECT_FALSE(torn_of(plan.trials[k - 1]));
  }
  for (std::size_t i = 0; i < plan.trials.size(); ++i) EXPECT_EQ(plan.trials[i].index, i);
  EXPECT_EQ(plan.trials[0].id, "00000");
  EXPECT_EQ(plan.ops_per_update.at("factory->update"), 10u);
}

TEST(Plan, TornSweepDoublesTheTrials) {
  Scenario s = leaf("sweep", "power-cut", "every-flash-op", 1.0);
  auto plan = make_plan(s, 1, kTenOps);
  ASSERT_EQ(plan.trials.size(), 20u);
  EXPECT_FALSE(torn_of(plan.trials[0]));
  EXPECT_TRUE(torn_of(plan.trials[1]));
  EXPECT_EQ(cut_op(plan.trials[1]), 1u);
}

TEST(Plan, SameSeedSamePlanOtherSeedOtherDraws) {
  auto s = suite();
  auto a = make_plan(s, 7, kTenOps), b = make_plan(s, 7, kTenOps), c = make_plan(s, 8, kTenOps);
  ASSERT_EQ(a.trials.size(), b.trials.size());
  bool differs = false;
  for (std::size_t i = 0; i < a.trials.size(); ++i) {
    EXPECT_EQ(cut_op(a.trials[i]), cut_op(b.trials[i]));
    EXPECT_EQ(torn_of(a.trials[i]), torn_of(b.trials[i]));
    EXPECT_EQ(a.trials[i].seed, b.trials[i].seed);
    differs = differs || cut_op(a.trials[i]) != cut_op(c.trials[i]);
  }
  EXPECT_TRUE(differs);
  std::set<std::uint64_t> ops;
  int torn = 0;
  for (const auto& t : a.trials)
    if (t.scenario->name == "random") {
      ASSERT_GE(cut_op(t), 1u);
      ASSERT_LE(cut_op(t), 10u);
      ops.insert(cut_op(t));
      torn += torn_of(t);
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

TEST(Plan, LimitOnASuiteKeepsEveryScenario) {
  // 10 sweep + 40 random trials dwarf the two one-trial scenarios; a sample
  // of a suite still runs each scenario at least once, whatever the seed.
  auto s = suite();
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    auto p = make_plan(s, seed, kTenOps);
    std::set<std::string> all;
    for (const auto& t : p.trials) all.insert(t.scenario->name);
    limit_plan(p, 4, seed);
    ASSERT_EQ(p.trials.size(), 4u);
    std::set<std::string> kept;
    for (const auto& t : p.trials) kept.insert(t.scenario->name);
    EXPECT_EQ(kept, all) << "seed " << seed;
    for (std::size_t i = 1; i < p.trials.size(); ++i) EXPECT_LT(p.trials[i - 1].index, p.trials[i].index);
  }
  // Fewer trials than scenarios: a plain seeded sample.
  auto p = make_plan(s, 1, kTenOps);
  limit_plan(p, 2, 1);
  EXPECT_EQ(p.trials.size(), 2u);
}

TEST(Plan, PowerCutNeedsACountingBoard) {
  // Alone, a scenario the board cannot run is bad input naming it.
  auto single = with_fault("sweep", "\n\n\n\n\n\n\n\nkind: power-cut\nat: every-flash-op\n");
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
  b.server = true;
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
    EXPECT_EQ(cut_at(*sweep[i]), "download-byte");
    EXPECT_EQ(cut_byte(*sweep[i]), 1000 * i / 16);
    EXPECT_EQ(sweep[i]->fault_json()["mapped_from"], "every-flash-op");
  }
  for (std::size_t i = 0; i < 8; ++i) {
    EXPECT_EQ(cut_at(*sweep[16 + i]), "time");
    EXPECT_EQ(cut_delay_ms(*sweep[16 + i]), 100 * (2 * i + 1) / 16);
  }
  EXPECT_EQ(plan.update_ms.at("factory->update"), 80u);
  ASSERT_EQ(random.size(), 40u);
  std::set<std::string> kinds;
  for (const auto* t : random) {
    kinds.insert(cut_at(*t));
    if (cut_at(*t) == "download-byte") {
      EXPECT_LT(cut_byte(*t), 1000u);
    }
    if (cut_at(*t) == "time") {
      EXPECT_LT(cut_delay_ms(*t), 100u);
    }
    EXPECT_EQ(cut_op(*t), 0u) << "no counted cut on a process board";
    EXPECT_FALSE(torn_of(*t));
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
  auto corrupt = with_fault("corrupt", "kind: network\nfaults: down:corrupt@offset=${b},count=1\n", 6);
  auto mtls = with_fault("mtls", "kind: network\nprobe: no-client-certificate\n");
  auto impostor = with_fault("impostor", "kind: network\nfaults: impostor\n");
  auto stale = with_fault("stale", "kind: stale\nserve: factory\n");
  s.parts = {corrupt, mtls, impostor, stale};

  auto plan = make_plan(s, 9, process_board());
  ASSERT_EQ(plan.trials.size(), 6u + 3u);
  std::set<std::string> specs;
  for (const auto& t : plan.trials) {
    if (t.scenario->name != "corrupt") continue;
    ASSERT_EQ(network(t).rfind("down:corrupt@offset=", 0), 0u) << network(t);
    const auto b = std::stoull(network(t).substr(20));
    EXPECT_LT(b, 1000u);
    specs.insert(network(t));
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
