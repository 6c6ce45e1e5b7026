#pragma once
// A campaign: a board, a scenario, a seed -> trials run on one or more benches,
// journaled as they finish, and the evidence bundle written at the end.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "otarig/drivers/registry.hpp"
#include "otarig/harness/composition.hpp"
#include "otarig/harness/trial.hpp"
#include "otarig/reports/bundle.hpp"

namespace otarig::harness {

struct Progress {
  std::uint64_t done = 0;
  std::uint64_t total = 0;
  std::uint64_t findings = 0;
  double elapsed_s = 0;
  double eta_s = 0;
  std::string last_trial;
  bool last_passed = true;
};

struct CampaignOptions {
  std::string board;     ///< path or name, as the user gave it (replay commands repeat it)
  std::string scenario;  ///< path or name
  std::uint64_t seed = 1;
  std::optional<std::uint64_t> trials;   ///< --trials: keep this many, chosen by the seed
  std::optional<std::uint64_t> only;     ///< --trial: just this index
  unsigned shard = 0, shards = 1;        ///< --shard I/N
  std::filesystem::path out = "otarig-out";
  bool resume = false;
  /// --force: an evidence folder already in `out` (one holding a journal or
  /// run.json) is emptied first; a folder holding anything else is refused.
  bool force = false;
  /// How the caller spells the options an error may point to: the command
  /// line's flags, or a binding's keyword arguments.
  struct Spelling {
    std::string resume = "--resume", force = "--force", out = "--out";
  } spelling;
  /// --calibration: an earlier run's evidence folder (or its journal.jsonl or
  /// run.json) whose clean-update timings place this run's time cuts, so a
  /// replay cuts where that run did. Its board profile must be this one.
  std::optional<std::filesystem::path> calibration;
  unsigned jobs = 0;                     ///< 0: 2 for in-process boards (or the core count if fewer), else 1
  std::function<void(const Progress&)> on_progress;
  std::function<void(const std::string&)> on_finding;  ///< receives each finding's one-line replay command
  TrialHooks hooks;
  /// How the evidence bundle is signed (--signing-key); a test key otherwise.
  reports::BundleOptions bundle;
  /// The result's `run` is run.json whole, every trial and finding read back
  /// into memory; false: run.json without its trials and findings (the
  /// command line, whose campaigns may have 100,000 trials).
  bool whole_run_in_result = true;
};

struct CampaignResult {
  nlohmann::json run;  ///< run.json as written (without trials and findings unless whole_run_in_result)
  std::uint64_t trials = 0, passed = 0, failed = 0, findings = 0;
  /// Findings the profile's active waivers accept, and its expired waivers.
  std::uint64_t waived = 0, expired_waivers = 0;
  std::string aborted;  ///< the bench failure that stopped the campaign, if any
  std::filesystem::path out;
  /// 0 no finding, 1 findings, 3 bench failure.
  /// 0 no finding (or every finding waived), 1 findings or an expired
  /// waiver, 3 bench failure.
  int exit_code() const { return !aborted.empty() ? 3 : (findings > waived || expired_waivers ? 1 : 0); }
};

/// The summary of one trial: its verdict event in the journal, its entry in
/// run.json ("evidence" names its folder, trials/ID).
nlohmann::json trial_summary(const TrialOutcome& trial);

/// Runs a campaign and writes the evidence into options.out. InputError for
/// bad profiles/scenarios/arguments; bench failures end up in `aborted`.
CampaignResult run_campaign(const CampaignOptions& options, const Registries& registries);
/// The same with these drivers and the built-in fault kinds.
CampaignResult run_campaign(const CampaignOptions& options, const drivers::DriverRegistry& drivers);

/// InputError when a scenario names a release the board does not define
/// (start, before, deliver, retry, and those its fault section names).
void check_release_names(const Scenario& scenario, const BoardProfile& profile);

/// "PASS: 606 trials, 606 passed, 0 failed, 0 findings (board B, scenario S, seed N)".
std::string summary_line(const nlohmann::json& run, const std::string& aborted);

/// The one command that replays a trial. `timed`: the campaign placed cuts
/// by time, so the replay takes its calibration from options.out.
std::string replay_command(const CampaignOptions& options, const std::string& trial_id, bool timed = false);
/// The evidence folder a replay of `trial_id` from `out` writes: OUT-replay-ID,
/// and a replay of that replay OUT-replay-ID-2, -3, ...
std::string replay_out(const std::string& out, const std::string& trial_id);

/// What a resume must match, as the campaign-start event records it: board
/// (name and profile digest), scenario (name and digest), seed, shard, trial
/// selection (--trials, --trial) and otarig version.
nlohmann::json campaign_identity(const CampaignOptions& options, const BoardProfile& profile,
                                 const Scenario& scenario);

/// InputError naming the field and both values when the journaled
/// campaign-start `journaled` is not the campaign `identity` describes (also
/// when it records no such field: a journal older than the check).
void check_resume(const std::filesystem::path& journal, const nlohmann::json& journaled,
                  const nlohmann::json& identity);

/// The clean-update timings recorded in an evidence folder, a journal.jsonl
/// or a run.json ({"START->DELIVER": ms}); InputError when it holds none or
/// belongs to another board profile.
nlohmann::json load_calibration(const std::filesystem::path& from, const BoardProfile& profile);

/// otarig version and the git revision it was built from.
const char* version_string();
const char* git_revision();

}  // namespace otarig::harness
