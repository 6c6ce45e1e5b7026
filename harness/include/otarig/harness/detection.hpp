#pragma once
// The detection table: a scenario (nightly) run on every board profile of a
// catalog, and for each board which oracles broke and the first trial that
// broke each. Flawed boards must be caught, reference boards must not be.
// `otarig detect` prints it as Markdown (docs/detection.md).
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <functional>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "otarig/harness/composition.hpp"

namespace otarig::harness {

struct DetectionOptions {
  /// Profiles, or folders searched recursively for *.yaml profiles.
  std::vector<std::filesystem::path> boards;
  std::string scenario = "nightly";
  std::uint64_t seed = 1;
  unsigned jobs = 0;  ///< per campaign; 0: the campaign's default
  /// Evidence of each campaign goes to OUT/<board name>/; empty: a temporary
  /// folder, removed afterwards.
  std::filesystem::path out;
  /// Only boards of these device kinds (empty: every kind).
  std::vector<std::string> kinds;
  /// Called with one line per board as it finishes.
  std::function<void(const std::string&)> on_board;
};

/// The first trial that broke an oracle, and how many trials broke it.
struct Catch {
  std::string trial;
  std::string scenario;
  std::uint64_t trials = 0;
};

struct DetectionRow {
  std::string board;  ///< profile name
  std::filesystem::path profile;
  std::string description;
  std::string mode;                  ///< device.mode, when the device has one
  std::vector<std::string> defects;  ///< device.defects; empty for a reference board
  bool flawed = false;               ///< has defects, or lives under a `flawed` folder
  int exit_code = 0;                 ///< the campaign's: 0 no finding, 1 findings, 3 bench failure
  std::uint64_t trials = 0, findings = 0;
  std::map<std::string, Catch> caught;  ///< by oracle name
  std::string aborted;

  /// A flawed board with findings, or a reference board without.
  bool as_expected() const;
};

struct DetectionTable {
  std::string scenario;
  std::uint64_t seed = 1;
  std::vector<DetectionRow> rows;
  bool as_expected() const;
};

/// The board profiles `options.boards` names, sorted, filtered by kind.
std::vector<std::filesystem::path> detection_boards(const DetectionOptions& options);

/// Runs the scenario on every board. InputError for a bad profile or scenario.
DetectionTable run_detection(const DetectionOptions& options, const Registries& registries);

/// The table as Markdown: board, mode, defect, trials, findings, and per
/// oracle the first trial that broke it (trial id, scenario, how many trials).
std::string detection_markdown(const DetectionTable& table);
/// The table as JSON (`otarig detect --json`): scenario, seed, as_expected
/// and per board its profile, flawed, exit code, trials, findings and the
/// oracles that caught it with the first trial of each.
nlohmann::json detection_json(const DetectionTable& table);

/// `otarig detect`: runs the table with the CLI's drivers, prints the
/// Markdown to `out`. Returns 0 when every flawed board was caught and no
/// reference board was, 1 otherwise, 3 when a campaign failed on the bench.
int detection_main(const DetectionOptions& options, std::ostream& out, bool json = false);

}  // namespace otarig::harness
