#pragma once
// One trial as an explicit state machine:
//   prepare -> inject -> deliver -> recover -> observe -> retry -> judge -> record
// A step that fails because of the bench (not the device) ends the trial in
// `bench-error` and stops the campaign; device misbehaviour is judged, never
// retried.
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "otarig/drivers/protocols.hpp"
#include "otarig/harness/bench.hpp"
#include "otarig/harness/oracles.hpp"
#include "otarig/harness/plan.hpp"
#include "otarig/harness/releases.hpp"

namespace otarig::harness {

enum class TrialStep { prepare, inject, deliver, recover, observe, retry, judge, record, done };
const char* to_string(TrialStep);

/// A custom step (Python or C++) run after the standard observe step; it may
/// add observations or events.
struct TrialContext;
using CustomStep = std::function<void(TrialContext&)>;
/// A custom oracle judged beside the five standard ones.
using CustomOracle = std::function<OracleResult(const TrialContext&)>;

struct TrialOutcome {
  TrialSpec spec;
  bool passed = false;
  std::vector<OracleResult> oracles;
  std::vector<Observation> observations;
  std::vector<TranscriptLine> transcript;
  /// The trial wrote console.log (and console.raw) itself, as it read the
  /// console (TrialHooks::evidence_root): the evidence writer leaves them.
  bool console_logged = false;
  nlohmann::json events = nlohmann::json::array();  ///< state changes and details, in order
  /// Where a counted cut fell: {op, ops_total, kind, address, phase, torn}
  /// (run.json `cut`, the report's charts); null when none fell.
  nlohmann::json cut;
  std::string delivered;             ///< name of the delivered image
  std::string fault_detail;          ///< what the fault did
  std::string delivery_status;       ///< accepted, refused, power-lost, unreachable
  std::string delivery_detail;
  std::vector<std::uint32_t> erase_counts;
  double duration_ms = 0;
  std::vector<std::string> broken() const;
};

/// Per-sector erase counts as runs of equal non-zero counts:
/// `[{"sectors": [first, last], "erases": n}, ...]` (sector indices of the flash).
nlohmann::json erase_runs(const std::vector<std::uint32_t>& counts);

/// What custom steps and oracles see.
struct TrialContext {
  Bench& bench;
  const TrialSpec& spec;
  TrialOutcome& outcome;
};

struct TrialHooks {
  std::vector<CustomStep> steps;
  std::vector<CustomOracle> oracles;
  /// The oracles every trial is judged by before the custom ones: the
  /// composition root's `Registries::oracles`; null means the built-in five.
  const OracleRegistry* registered_oracles = nullptr;
  /// The campaign's --out: a trial writes OUT/trials/ID/console.log as it
  /// reads the console, so a rig stopped in the middle of a trial leaves
  /// what the device printed. Empty: the transcript is only kept in memory.
  std::filesystem::path evidence_root;
};

/// Runs one trial on `bench`. Throws BenchError when the bench fails.
/// The bench failed a trial before it could judge it (the device did not
/// come up on its provisioned release): the error, with what the trial saw
/// so far (its console transcript, its events, the device's exit status),
/// which the campaign keeps in the trial's evidence folder
/// (write_bench_failure_evidence).
class TrialBenchError : public BenchError {
 public:
  TrialBenchError(const std::string& what, TrialOutcome partial, nlohmann::json failure)
      : BenchError(what),
        partial_(std::make_shared<TrialOutcome>(std::move(partial))),
        failure_(std::make_shared<nlohmann::json>(std::move(failure))) {}
  const TrialOutcome& partial() const { return *partial_; }
  /// {step, detail, release, device_exit, observed}
  const nlohmann::json& failure() const { return *failure_; }

 private:
  std::shared_ptr<const TrialOutcome> partial_;
  std::shared_ptr<const nlohmann::json> failure_;
};

TrialOutcome run_trial(Bench& bench, const ReleaseSet& releases, const TrialSpec& spec,
                       const TrialHooks* hooks = nullptr);

/// Measures the flash operations of a clean update (FlashFaultProtocol).
std::uint64_t count_update_ops(Bench& bench, const ReleaseSet& releases, const std::string& start,
                               const std::string& deliver);

/// Times a clean update from `start` to `deliver` (a release, or
/// "NAME/self-test-fail"): from handing it to the link to its answer.
std::uint64_t measure_update_ms(Bench& bench, const ReleaseSet& releases, const std::string& start,
                                const std::string& deliver);

/// Records the storage operations of a clean update from `start` to
/// `deliver` on a board under the crash model (CrashStorageProtocol::
/// keep_recording as "START->DELIVER"); 0 on a board without it.
std::uint64_t record_update_storage(Bench& bench, const ReleaseSet& releases, const std::string& start,
                                    const std::string& deliver);

/// What `bench` can do, for make_plan (measurements run on `bench`, which
/// and `releases` must outlive the result).
BoardAbilities board_abilities(Bench& bench, const ReleaseSet& releases);

}  // namespace otarig::harness
