#pragma once
// A trial's evidence folder, OUT/trials/ID/, as a campaign and a single trial
// (the Python module's Bench.trial(out=...)) both write it.
#include <filesystem>
#include <nlohmann/json.hpp>

#include "otarig/harness/trial.hpp"

namespace otarig::harness {

/// Writes OUT/trials/ID/: console.log (the transcript with control bytes
/// escaped), console.raw (the bytes as the device sent them, only when
/// anything needed escaping), events.jsonl and verdict.json (`summary`, as
/// trial_summary makes it). BenchError when a file cannot be written or the
/// trial id is not a plain file name.
void write_trial_evidence(const std::filesystem::path& out, const TrialOutcome& trial,
                          const nlohmann::json& summary);
/// OUT/trials/ID/ of a trial the bench failed before its verdict: its
/// console.log (and console.raw), events.jsonl and bench-failure.json (the
/// step, the error, the device's exit status, what was observed). Returns
/// the folder relative to `out` ("trials/ID").
std::string write_bench_failure_evidence(const std::filesystem::path& out, const TrialOutcome& partial,
                                         const nlohmann::json& failure);

}  // namespace otarig::harness
