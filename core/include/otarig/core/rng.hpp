#pragma once
// Portable seeded randomness. A campaign has one seed; each trial draws from
// its own stream derived from (seed, trial index), so a trial is the same on
// any machine, standard library and thread count.
#include <cstdint>
#include <random>

namespace otarig::core {

/// SplitMix64 finaliser: a bijective mix of 64 bits.
constexpr std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// The seed of trial `index` in a campaign seeded with `seed`.
constexpr std::uint64_t trial_seed(std::uint64_t seed, std::uint64_t index) {
  return mix64(mix64(seed) ^ mix64(index + 0x6f746172ULL));
}

/// std::mt19937_64 with its own bounded mappings (std::*_distribution differs
/// between standard libraries; these do not).
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : engine_(seed) {}
  std::uint64_t next() { return engine_(); }
  /// Uniform in [0, n); n > 0. Rejection sampling, no modulo bias.
  std::uint64_t below(std::uint64_t n) {
    if (n == 0) return 0;
    const std::uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    std::uint64_t x;
    do x = engine_();
    while (x >= limit);
    return x % n;
  }
  /// Uniform in [lo, hi].
  std::uint64_t between(std::uint64_t lo, std::uint64_t hi) { return lo + below(hi - lo + 1); }
  /// Uniform in [0, 1) with 53 bits.
  double unit() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  bool chance(double p) { return unit() < p; }

 private:
  std::mt19937_64 engine_;
};

}  // namespace otarig::core
