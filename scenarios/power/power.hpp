#pragma once
// Power faults: cuts before (or tearing) a counted flash operation, cuts
// placed in a delivery (a download byte, a time, a console line), brown-outs
// while the device recovers, and flash operations that fail with an error.
#include <cstdint>
#include <string>
#include <vector>

#include "otarig/harness/fault_kind.hpp"

namespace otarig::scenarios::power {

/// The scenario section of `power-cut` and `flash-error`.
struct CutOptions final : harness::FaultOptions {
  bool flash_error = false;         ///< flash-error: op k fails instead of losing power
  std::string at;                   ///< every-flash-op | random-flash-op | download-byte | random-time | console
  std::uint32_t points = 16;        ///< download-byte: cut points spread over the image
  std::string pattern;              ///< console: RE2 of the line (${banner}: the profile's)
  /// console, `pattern` given as a list: trial i cuts after patterns[i % n]
  /// (a cut in each of several states the device marks on its console).
  std::vector<std::string> patterns;
  std::uint32_t delay_ms = 0;       ///< console: the cut falls 0..delay_ms after the line
  double torn = 0.0;                ///< probability that a counted cut tears the op
  std::uint32_t recovery_cuts = 0;  ///< up to this many more cuts while recovering (brown-out)
  std::string image;                ///< "" the release itself, "self-test-fail" its failing twin
  /// Crash modes on boards whose storage is under the crash model: what the
  /// storage keeps of the operations after their last barrier
  /// (lost, prefix, reorder, torn; docs/crash-model.md).
  std::vector<std::string> modes{"lost", "prefix", "reorder", "torn"};

  bool counted() const { return at == "every-flash-op" || at == "random-flash-op"; }
  nlohmann::json json() const override;
};

/// A cut before (or tearing, or failing) counted flash operation `before_op`.
struct CountedCut final : harness::FaultPoint {
  std::string kind;                 ///< power-cut | flash-error
  std::string at;
  std::uint64_t before_op = 0;
  std::uint64_t ops_total = 0;
  bool torn = false;
  std::uint64_t torn_seed = 0;
  bool flash_error = false;
  std::uint32_t recovery_cuts = 0;
  std::string image;

  nlohmann::json json() const override;
  std::string label() const override;
  std::string text() const override;
};

/// A cut placed in a delivery, on a board whose flash the rig cannot count.
struct PlacedCut final : harness::FaultPoint {
  std::string at;                   ///< download-byte | time | console
  std::string mapped_from;          ///< the scenario's `at` when it was another
  std::uint64_t byte = 0;           ///< download-byte: image byte (from 0) the cut falls before
  std::uint64_t image_size = 0;
  std::uint32_t delay_ms = 0;       ///< time: after the update command; console: after the line
  std::uint64_t update_ms = 0;      ///< time: how long a clean update took when measured
  std::string pattern;              ///< console
  std::uint32_t recovery_cuts = 0;
  std::string image;
  std::string crash_mode;           ///< under the crash model: what the cut's power loss keeps
  std::uint64_t crash_seed = 0;

  nlohmann::json json() const override;
  std::string label() const override;
  std::string text() const override;
};

/// A cut before recorded storage operation `before_op` (1..ops+1) of a
/// clean update, on a board whose storage is under the crash model.
struct StorageCut final : harness::FaultPoint {
  std::string at;                   ///< the scenario's (every-flash-op, random-flash-op)
  std::string key;                  ///< the recording: "START->DELIVER"
  std::uint64_t before_op = 0;
  std::uint64_t ops_total = 0;
  std::string mode;                 ///< lost | prefix | reorder | torn
  std::uint64_t seed = 0;           ///< the crash model's choices
  nlohmann::json op;                ///< the operation the cut falls before (null: after the last)
  std::vector<std::string> same_as; ///< modes that give the same crash state at this cut
  std::string image;                ///< "" the release, "self-test-fail" its failing twin
  std::uint32_t recovery_cuts = 0;  ///< brown-out: this many more cuts while it recovers
  /// at: console: the cut falls at the `after_line`-th operation (1..
  /// ops_after_line+1) the device made after the first console line
  /// matching `pattern` that followed the update command in the recording
  /// (`line`, printed after `ops_before_line` operations); `line` empty: no
  /// line matched, and the cut falls after the last operation.
  std::string pattern;
  std::string line;
  std::uint64_t ops_before_line = 0;
  std::uint64_t after_line = 0;
  std::uint64_t ops_after_line = 0;

  nlohmann::json json() const override;
  std::string label() const override;
  std::string text() const override;
};

/// Plans cuts at every (or a seeded) recorded storage operation.
void plan_storage_cuts(harness::PlanContext& ctx, const CutOptions& f, const std::string& delivered);
/// Plans cuts placed after a console line (at: console) at the storage
/// operations the device made after that line in a recording of the clean
/// update, so the same operation is cut on any host. False (nothing
/// planned) when the board's console is not traced with its storage.
bool plan_console_storage_cuts(harness::PlanContext& ctx, const CutOptions& f, const std::string& delivered);

/// How many recovery boots a brown-out trial cuts again: 1..max, from a
/// stream of the trial's own.
std::uint32_t recovery_cut_count(std::uint64_t trial_seed, std::uint32_t max);

void register_power_faults(harness::FaultRegistry& registry);

}  // namespace otarig::scenarios::power
