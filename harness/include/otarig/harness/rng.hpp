#pragma once
// The campaign's seeded randomness lives in core (drivers draw from it too).
#include "otarig/core/rng.hpp"

namespace otarig::harness {
using core::mix64;
using core::Rng;
using core::trial_seed;
}  // namespace otarig::harness
