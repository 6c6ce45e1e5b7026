#include "otarig/harness/rng.hpp"

#include <gtest/gtest.h>

#include <set>

using namespace otarig::harness;

TEST(Rng, StreamsArePortable) {
  // Fixed values: any standard library, any machine gives these.
  EXPECT_EQ(mix64(0), 0xe220a8397b1dcdafULL);
  Rng r(trial_seed(1, 0));
  Rng again(trial_seed(1, 0));
  for (int i = 0; i < 100; ++i) EXPECT_EQ(r.next(), again.next());
  EXPECT_EQ(std::mt19937_64(5489u)(), 14514284786278117030ULL) << "mt19937_64 is specified by the standard";
}

TEST(Rng, TrialSeedsDiffer) {
  std::set<std::uint64_t> seen;
  for (std::uint64_t seed = 0; seed < 8; ++seed)
    for (std::uint64_t i = 0; i < 1000; ++i) seen.insert(trial_seed(seed, i));
  EXPECT_EQ(seen.size(), 8000u);
}

TEST(Rng, BelowIsInRangeAndCoversIt) {
  Rng r(42);
  std::vector<int> hits(7);
  for (int i = 0; i < 7000; ++i) {
    auto v = r.below(7);
    ASSERT_LT(v, 7u);
    ++hits[v];
  }
  for (int h : hits) EXPECT_GT(h, 800);
  EXPECT_EQ(r.below(1), 0u);
  for (int i = 0; i < 100; ++i) {
    auto v = r.between(5, 9);
    EXPECT_GE(v, 5u);
    EXPECT_LE(v, 9u);
  }
}

TEST(Rng, UnitAndChance) {
  Rng r(7);
  int yes = 0;
  for (int i = 0; i < 10000; ++i) {
    double u = r.unit();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    yes += r.chance(0.25);
  }
  EXPECT_NEAR(yes, 2500, 250);
  EXPECT_FALSE(Rng(1).chance(0.0));
}
