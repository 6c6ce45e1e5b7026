#pragma once
// What a run gives evidence for, per requirement id: the scenarios that ran
// (with their trials), apart from those that did not (with the reason), the
// scenario classes exercised and missing, and one status. run.json's
// `requirements`, report.html's traceability matrix and summary.md print it.
#include <cstddef>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "otarig/reports/run_view.hpp"

namespace otarig::reports {

/// Counts the trials of a run one at a time, then states per requirement
/// what they give evidence for. The classes a requirement needs are those
/// of the run's scenarios (run.json's `scenario.parts`, and any scenario a
/// trial names) that map to it, and those the run's catalog names for it.
class RequirementTally {
 public:
  /// A trial of run.json (its `scenario`, `requirements`, `classes`, `verdict`).
  void add(const nlohmann::json& trial);

  /// run.json's `requirements`: one object per requirement id, in the order
  /// the run's scenarios name them: `id`, `status` ("pass": every class
  /// mapped to it was exercised by trials that ran and none failed; "fail":
  /// a trial that ran for it failed; "partly-exercised": some trials ran,
  /// classes are missing; "not-exercised": none of its scenarios ran),
  /// `trials`, `passed`, `failed`, `scenarios_run` {name: trials},
  /// `skipped` [{scenario, reason}] (its scenarios without a trial in this
  /// run), `classes_required`, `classes_exercised`, `classes_missing`,
  /// `in_catalog`. The classes required are those of the run's scenarios
  /// that name the requirement and, for a requirement of the catalog the
  /// run recorded (run.json's `compliance`), the catalog's classes for it.
  /// `head` is run.json without its trials (its `scenario.parts`, `skipped`
  /// and `compliance`).
  nlohmann::json results(const nlohmann::json& head) const;

 private:
  struct Scenario {
    std::size_t trials = 0, passed = 0, failed = 0;
    std::vector<std::string> classes;
    std::vector<std::string> requirements;
  };
  std::map<std::string, Scenario> scenarios_;
  std::vector<std::string> order_;  ///< scenarios in the order their first trial came
};

/// The tally of every trial of `run`, read one at a time.
nlohmann::json requirement_results(const RunView& run);

/// The status as the report prints it: PASS, FAIL, PARTLY EXERCISED, NOT EXERCISED.
std::string requirement_status_text(const std::string& status);

}  // namespace otarig::reports
