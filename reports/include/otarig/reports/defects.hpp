#pragma once
// One device defect often fails many trials: a copy-in-place updater bricks
// the device for every power cut along its slot write. The failed trials of a
// run are grouped into defects, each with a one-line title, one trial that
// stands for it (with its replay command) and the list of trials behind it.
// run.json's `defects`, the command line, summary.md and report.html lead with
// them; docs/evidence.md says how trials are grouped.
#include <cstddef>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "otarig/reports/run_view.hpp"

namespace otarig::reports {

/// Groups the trials of a run, read one at a time, into defects. Two failed
/// trials are one defect when they have the same scenario, the same fault
/// (its kind and the fields that say which fault it is: `at`, `variant`,
/// `torn`, `error`, `mode`, `crash_mode`, `image`, `pattern`), the same
/// phase (where the cut fell: `cut.phase`; a console-line cut: its pattern;
/// a download-byte cut: the download; a fault without a cut: the delivery's
/// status; a failed flash operation: none), the same set of broken oracles and
/// the same state after the fault (the `after-fault` observation's `booted`,
/// `slot` and `version`), and, for faults placed at an index (`storage_op`,
/// `before_op`, `byte` of the trial's fault), when no trial of the same
/// scenario and fault that passed lies between them in the order of that
/// index (ties by trial id). Trials that passed are counted only for that.
class DefectTally {
 public:
  /// A trial of run.json (its `id`, `scenario`, `fault`, `verdict`,
  /// `broken`, `cut`, `delivery`, `observed`).
  void add(const nlohmann::json& trial);

  /// run.json's `defects` without the fields findings give (see
  /// `attach_findings`): one object per defect, ordered by scenario, then
  /// first index, then first trial id: `id` (D0001, ...), `title`,
  /// `scenario`, `fault` (the fields that tell the fault apart), `phase`,
  /// `oracles` (the broken ones, the five standard ones in their order
  /// first), `observed` (`booted`, `slot`, `version` after the fault),
  /// `window` (`axis`: "flash operation", "storage operation" or "download
  /// byte", `first`, `last`, `of`; null for faults not placed at an index),
  /// `trials` (their ids, in the order of the index), `count` and
  /// `representative`: the first of `trials`.
  nlohmann::json results() const;

 private:
  struct Entry {
    std::size_t line = 0;  ///< the scenario, fault and axis it lies on
    std::uint64_t index = 0;
    std::string id;
    std::size_t key = 0;  ///< its defect's key (failed trials only)
    bool passed = false;
  };
  struct Line {
    nlohmann::json fault;
    std::string scenario, axis;
    std::uint64_t of = 0;
    bool indexed = false;
  };
  struct Key {
    std::size_t line = 0;
    std::string phase;
    std::vector<std::string> oracles;
    nlohmann::json observed;
  };
  std::vector<Line> lines_;
  std::map<std::string, std::size_t> line_of_;
  std::vector<Key> keys_;
  std::map<std::string, std::size_t> key_of_;
  std::vector<Entry> entries_;
};

/// Where a trial's fault was placed along the update, for faults placed at an
/// index (as DefectTally sees it): `row` names the scenario and the fault
/// ("power-cut-sweep: power cuts"), `axis` is "flash operation", "storage
/// operation" or "download byte" ("" when the fault is not placed at an
/// index), `index` where it was placed and `of` how many there were (0 when
/// the trial does not say).
struct FaultPosition {
  std::string row, axis;
  std::uint64_t index = 0, of = 0;
};
FaultPosition fault_position(const nlohmann::json& trial);

/// Completes `defects` (DefectTally::results) from run.json's findings: each
/// defect's `finding` (the id of its representative's finding) and `replay`
/// (that finding's replay command; "" when the run lists no finding for it).
void attach_findings(nlohmann::json& defects, const RecordList& findings);

/// run.json's `defects` for every trial and finding of `run`.
nlohmann::json defect_results(const RunView& run);

/// "1 defect: TITLE" or "3 defects" (0: "no defect").
std::string defects_headline(const nlohmann::json& defects);

/// The trial ids of a defect as a short text: "00002, 00003, ..., 00512"
/// (at most `shown` ids named).
std::string trial_list_text(const nlohmann::json& defect, std::size_t shown);

}  // namespace otarig::reports
