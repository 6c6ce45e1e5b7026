#pragma once
// Shared pieces of the _otarig extension module: JSON <-> Python conversion,
// the error mapping, and the state shared between a bench and the driver
// handles it gives out.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "otarig/core/errors.hpp"
#include "otarig/harness/bench.hpp"
#include "otarig/harness/campaign.hpp"
#include "otarig/harness/plan.hpp"
#include "otarig/harness/profile.hpp"
#include "otarig/harness/releases.hpp"
#include "otarig/harness/scenario.hpp"
#include "otarig/harness/trial.hpp"

namespace otarig::python {

namespace py = pybind11;
using json = nlohmann::json;

/// run.json values as Python objects (dict, list, str, int, float, bool, None).
py::object to_py(const json& value);
/// A Python value (dict, list, tuple, str, int, float, bool, None, os.PathLike)
/// as JSON; TypeError for anything else.
json to_json(py::handle value);

/// A duration given in seconds (int or float) or as a datetime.timedelta.
std::chrono::milliseconds seconds_arg(py::handle value, const char* what);

/// The exception types of the module (set once at import).
struct ErrorTypes {
  py::object input_error;    ///< otarig.InputError(ValueError)
  py::object bench_error;    ///< otarig.BenchError(RuntimeError)
  py::object timeout_error;  ///< otarig.BenchTimeout(TimeoutError)
  py::object bench_failure;  ///< otarig.BenchFailure(BenchError): a campaign stopped by its bench
};
ErrorTypes& error_types();
void register_errors(py::module_& m);

/// Thrown from a hook wrapper to stop a trial or campaign after a Python
/// callback raised; the Python exception itself waits in HookState.
class HookAbort : public BenchError {
 public:
  using BenchError::BenchError;
};

/// The first Python exception raised by a callback during a blocking call
/// (custom steps, custom oracles, progress), re-raised once the call returns.
class HookState {
 public:
  /// Keeps `error` (the first one wins; the GIL is held) and returns the
  /// exception that unwinds the C++ side.
  HookAbort capture(py::error_already_set error, const std::string& where);
  /// Re-raises the recorded exception, if any (the GIL is held).
  void rethrow_if_failed();

 private:
  std::mutex mu_;
  std::optional<py::error_already_set> error_;
};

/// A bench bound to drivers, shared by otarig.Bench and the handles it gives
/// out (power, console). A campaign's hooks see its worker's bench through a
/// borrowed BoundBench that is valid only during the hook.
class BoundBench {
 public:
  /// Owns a new harness::Bench.
  BoundBench(std::shared_ptr<const harness::BoardProfile> profile,
             std::shared_ptr<const harness::ReleaseSet> releases, std::uint64_t seed);
  /// Borrows `bench` (a campaign worker's) until invalidate().
  BoundBench(std::shared_ptr<const harness::BoardProfile> profile,
             std::shared_ptr<const harness::ReleaseSet> releases, harness::Bench& bench);
  ~BoundBench();

  /// The bench; RuntimeError once closed or once its hook has returned.
  harness::Bench& bench();
  const harness::BoardProfile& profile() const { return *profile_; }
  const harness::ReleaseSet& releases() const { return *releases_; }
  bool borrowed() const { return !owning_; }
  void invalidate();
  bool valid() const { return valid_; }

  /// Serialises driver calls from several Python threads.
  std::recursive_mutex mu;
  /// Console bytes read but not consumed by expect(); dropped when a bench
  /// call reads the console itself (its output would come out of order).
  std::string console_buffer;

 private:
  std::shared_ptr<const harness::BoardProfile> profile_;
  std::shared_ptr<const harness::ReleaseSet> releases_;
  std::unique_ptr<harness::Bench> owned_;
  harness::Bench* borrowed_ = nullptr;
  bool owning_ = false;
  std::atomic<bool> valid_{true};
};

/// The registry of every built-in driver (the command line's).
const drivers::DriverRegistry& registry();

void register_data(py::module_& m);     // Observation, Scenario, Profile, results
void register_bench(py::module_& m);    // Bench, drivers, Plan, TrialContext
void register_network(py::module_& m);  // UpdateServer, FaultProxy (when built)

// Result objects shared between data.cpp and bench.cpp.

/// A trial as recorded in run.json (or built from a trial run directly).
struct Trial {
  json raw;
  std::filesystem::path out;  ///< evidence folder of the campaign; empty for a direct trial
  std::vector<harness::TranscriptLine> transcript;  ///< direct trials only
  json events = json::array();                      ///< direct trials only
};

struct Finding {
  json raw;
  std::filesystem::path out;
};

/// A defect: failed trials grouped (run.json's `defects`).
struct Defect {
  json raw;
};

struct CampaignResult {
  json run;
  std::filesystem::path out;
  int exit_code = 0;
  std::string aborted;
  std::vector<Trial> trials;
  std::vector<Finding> findings;
  std::vector<Defect> defects;
};

/// Builds the Python result of a campaign.
CampaignResult make_result(const harness::CampaignResult& result);
/// The run.json entry of a trial run directly (the fields campaign.cpp writes).
json trial_json(const harness::TrialOutcome& outcome);
harness::Observation observation_from_json(const json& j);

/// A scenario kept alive for the plans and trial specs that point into it.
struct ScenarioRef {
  std::shared_ptr<const harness::Scenario> root;
  const harness::Scenario* node = nullptr;
  const harness::Scenario& get() const { return *node; }
};
ScenarioRef load_scenario_ref(const std::string& name_or_path);

/// A trial of a plan, with the scenario it points into.
struct TrialSpecRef {
  std::shared_ptr<const harness::Scenario> owner;
  harness::TrialSpec spec;
};

/// A line of the summary the command line prints.
std::string summary_line(const CampaignResult& r);

}  // namespace otarig::python
