// Plain data the module hands to Python: observations, oracle results,
// scenarios, profiles, images, and the results of trials and campaigns.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <pybind11/stl/filesystem.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "common.hpp"

namespace otarig::python {

namespace {

std::string short_digest(const std::string& d) { return d.size() > 12 ? d.substr(0, 12) : d; }

std::string repr_str(const std::string& s) { return py::repr(py::str(s)).cast<std::string>(); }

py::dict observation_dict(const harness::Observation& o) {
  py::dict d;
  d["step"] = o.step;
  d["booted"] = o.booted;
  d["slot"] = o.slot;
  d["version"] = o.version;
  d["digest"] = o.digest;
  d["counter"] = o.counter ? py::object(py::int_(*o.counter)) : py::object(py::none());
  d["state"] = o.state;
  d["health"] = o.health;
  d["key"] = o.key;
  d["line"] = o.line;
  d["waited_ms"] = o.waited_ms;
  return d;
}

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return {};
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string render_transcript(const std::vector<harness::TranscriptLine>& lines) {
  std::string out;
  for (const auto& l : lines)
    out += l.dropped_lines ? fmt::format("[{:10.3f} ms] [otarig: {} bytes dropped]\n", l.t_ms, l.cut)
           : l.cut         ? fmt::format("[{:10.3f} ms] {} [otarig: {} bytes dropped]\n", l.t_ms, l.text, l.cut)
                           : fmt::format("[{:10.3f} ms] {}\n", l.t_ms, l.text);
  return out;
}

/// Reads console.log back: "[   12.500 ms] text" per line.
std::vector<harness::TranscriptLine> parse_transcript(const std::string& text) {
  std::vector<harness::TranscriptLine> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto close = line.find(" ms] ");
    if (line.empty() || line[0] != '[' || close == std::string::npos) {
      out.push_back({0, line});
      continue;
    }
    double t = 0;
    try {
      t = std::stod(line.substr(1, close - 1));
    } catch (const std::exception&) {
    }
    out.push_back({t, line.substr(close + 5)});
  }
  return out;
}

py::list broken_list(const json& broken) {
  py::list out;
  if (broken.is_array())
    for (const auto& b : broken) out.append(py::make_tuple(b.value("oracle", ""), b.value("detail", "")));
  return out;
}

py::list observed_list(const json& observed) {
  py::list out;
  if (observed.is_array())
    for (const auto& o : observed) out.append(observation_from_json(o));
  return out;
}

py::object get_or_none(const json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() ? py::object(py::none()) : to_py(*it);
}

std::string trial_console_log(const Trial& t) {
  if (!t.transcript.empty() || t.out.empty()) return render_transcript(t.transcript);
  return read_text(t.out / t.raw.value("evidence", "trials/" + t.raw.value("id", "")) / "console.log");
}

}  // namespace

harness::Observation observation_from_json(const json& j) {
  harness::Observation o;
  o.step = j.value("step", "");
  o.booted = j.value("booted", false);
  o.slot = j.value("slot", "");
  o.version = j.value("version", "");
  o.digest = j.value("digest", "");
  o.state = j.value("state", "");
  o.health = j.value("health", "");
  o.key = j.value("key", "");
  o.line = j.value("line", "");
  o.waited_ms = j.value("waited_ms", 0.0);
  if (auto it = j.find("counter"); it != j.end() && it->is_number_unsigned()) o.counter = it->get<std::uint64_t>();
  else if (it != j.end() && it->is_number_integer() && it->get<std::int64_t>() >= 0)
    o.counter = static_cast<std::uint64_t>(it->get<std::int64_t>());
  return o;
}

// A field of a trial's planned fault, as the evidence records it (the kind's
// own point type stays in the harness).
template <class T>
T fault_field(const harness::TrialSpec& t, const char* key, T fallback) {
  const auto j = t.fault_json();
  return j.contains(key) ? j[key].get<T>() : fallback;
}

json trial_json(const harness::TrialOutcome& t) {
  // run.json's entry for the trial; a trial run alone has no evidence folder.
  json j = harness::trial_summary(t);
  j.erase("evidence");
  return j;
}

CampaignResult make_result(const harness::CampaignResult& r) {
  CampaignResult out;
  out.run = r.run;
  out.out = std::filesystem::absolute(r.out);
  out.exit_code = r.exit_code();
  out.aborted = r.aborted;
  if (auto it = r.run.find("trials"); it != r.run.end())
    for (const auto& t : *it) out.trials.push_back(Trial{t, out.out, {}, json::array()});
  if (auto it = r.run.find("findings"); it != r.run.end())
    for (const auto& f : *it) out.findings.push_back(Finding{f, out.out});
  if (auto it = r.run.find("defects"); it != r.run.end() && it->is_array())
    for (const auto& d : *it) out.defects.push_back(Defect{d});
  return out;
}

std::string summary_line(const CampaignResult& r) { return harness::summary_line(r.run, r.aborted); }

ScenarioRef load_scenario_ref(const std::string& name_or_path) {
  auto root = std::make_shared<const harness::Scenario>(harness::load_scenario(name_or_path));
  return ScenarioRef{root, root.get()};
}

namespace {

void register_observations(py::module_& m) {
  // ---------------------------------------------------------------- Observation
  py::class_<harness::Observation>(m, "Observation",
                                   "What the device said about itself after a step: its status line, parsed\n"
                                   "with the profile's RE2 status pattern (named groups slot, version, digest,\n"
                                   "counter, state, health, key).")
      .def(py::init([](std::string step, bool booted, std::string slot, std::string version, std::string digest,
                       std::optional<std::uint64_t> counter, std::string state, std::string health, std::string key,
                       std::string line, double waited_ms) {
             harness::Observation o;
             o.step = std::move(step);
             o.booted = booted;
             o.slot = std::move(slot);
             o.version = std::move(version);
             o.digest = std::move(digest);
             o.counter = counter;
             o.state = std::move(state);
             o.health = std::move(health);
             o.key = std::move(key);
             o.line = std::move(line);
             o.waited_ms = waited_ms;
             return o;
           }),
           py::kw_only(), py::arg("step") = "", py::arg("booted") = false, py::arg("slot") = "",
           py::arg("version") = "", py::arg("digest") = "", py::arg("counter") = py::none(), py::arg("state") = "",
           py::arg("health") = "", py::arg("key") = "", py::arg("line") = "", py::arg("waited_ms") = 0.0,
           "Builds an observation (for testing oracles without a device).")
      .def_readonly("step", &harness::Observation::step,
                    "The step that observed: prepare, before:NAME, after-fault, retry, or a custom step's name.")
      .def_readonly("booted", &harness::Observation::booted,
                    "True when the device answered with a status line before its boot timeout.")
      .def_readonly("slot", &harness::Observation::slot, "The slot it runs from (e.g. 'A').")
      .def_readonly("version", &harness::Observation::version, "The running version, e.g. '1.1.0+2'.")
      .def_readonly("digest", &harness::Observation::digest,
                    "SHA-256 (hex) of the running image's header and payload.")
      .def_readonly("counter", &harness::Observation::counter, "The anti-rollback counter, or None.")
      .def_readonly("state", &harness::Observation::state, "The updater's state as the device reports it.")
      .def_readonly("health", &harness::Observation::health, "The application's health as the device reports it.")
      .def_readonly("key", &harness::Observation::key, "The key id the device reports, when its pattern has one.")
      .def_readonly("line", &harness::Observation::line, "The status line as printed (empty in run.json trials).")
      .def_readonly("waited_ms", &harness::Observation::waited_ms,
                    "Bench-clock milliseconds from asking to the answer (or the timeout).")
      .def("to_dict", &observation_dict, "The fields as a dict.")
      .def("__eq__",
           [](const harness::Observation& a, const harness::Observation& b) {
             return a.step == b.step && a.booted == b.booted && a.slot == b.slot && a.version == b.version &&
                    a.digest == b.digest && a.counter == b.counter && a.state == b.state && a.health == b.health;
           })
      .def("__repr__", [](const harness::Observation& o) {
        if (!o.booted) return fmt::format("Observation(step={}, booted=False)", repr_str(o.step));
        return fmt::format("Observation(step={}, booted=True, slot={}, version={}, digest={}, counter={}, state={}, "
                           "health={})",
                           repr_str(o.step), repr_str(o.slot), repr_str(o.version),
                           repr_str(short_digest(o.digest) + (o.digest.size() > 12 ? "..." : "")),
                           o.counter ? std::to_string(*o.counter) : "None", repr_str(o.state), repr_str(o.health));
      });

  // ---------------------------------------------------------------- OracleResult
  py::class_<harness::OracleResult>(m, "OracleResult",
                                    "An oracle's judgement of one trial: its name, whether it held, and why not.")
      .def(py::init([](std::string name, bool held, std::string detail) {
             return harness::OracleResult{std::move(name), held, std::move(detail)};
           }),
           py::arg("name"), py::arg("held") = true, py::arg("detail") = "")
      .def_readwrite("name", &harness::OracleResult::name, "The oracle's name (e.g. 'atomic').")
      .def_readwrite("held", &harness::OracleResult::held, "True when the oracle held.")
      .def_readwrite("detail", &harness::OracleResult::detail, "Why it did not hold (empty when it held).")
      .def("__eq__",
           [](const harness::OracleResult& a, const harness::OracleResult& b) {
             return a.name == b.name && a.held == b.held && a.detail == b.detail;
           })
      .def("__repr__", [](const harness::OracleResult& o) {
        return fmt::format("OracleResult({}, held={}{})", repr_str(o.name), o.held ? "True" : "False",
                           o.detail.empty() ? "" : ", detail=" + repr_str(o.detail));
      });

  // ---------------------------------------------------------------- Progress
  py::class_<harness::Progress>(m, "Progress", "A campaign's progress, passed to the `progress` callback after each trial.")
      .def_readonly("done", &harness::Progress::done, "Trials finished (including those resumed from the journal).")
      .def_readonly("total", &harness::Progress::total, "Trials planned.")
      .def_readonly("findings", &harness::Progress::findings, "Failed trials so far.")
      .def_readonly("elapsed_s", &harness::Progress::elapsed_s, "Seconds since the campaign started its trials.")
      .def_readonly("eta_s", &harness::Progress::eta_s, "Estimated seconds left.")
      .def_readonly("last_trial", &harness::Progress::last_trial, "Id of the trial that just finished.")
      .def_readonly("last_passed", &harness::Progress::last_passed, "Whether it passed.")
      .def("__repr__", [](const harness::Progress& p) {
        return fmt::format("Progress(done={}, total={}, findings={}, last_trial={})", p.done, p.total, p.findings,
                           repr_str(p.last_trial));
      });
}

void register_scenarios(py::module_& m) {
  // ---------------------------------------------------------------- Scenario
  py::class_<ScenarioRef>(m, "Scenario",
                          "A scenario of the catalog (scenarios/NAME.yaml) or a suite of them (nightly).\n\n"
                          "Load one with Scenario.load(name_or_path).")
      .def_static("load", &load_scenario_ref, py::arg("name_or_path"),
                  "Loads scenarios/NAME.yaml from the data directories, or a path. A suite's\n"
                  "`include` entries load from the same directory. InputError (a ValueError)\n"
                  "names the file and line of a mistake.")
      .def_property_readonly("name", [](const ScenarioRef& s) { return s.get().name; }, "The scenario's name.")
      .def_property_readonly("title", [](const ScenarioRef& s) { return s.get().title; }, "A one-line title.")
      .def_property_readonly("path", [](const ScenarioRef& s) { return s.get().path; }, "The YAML file it came from.")
      .def_property_readonly("classes", [](const ScenarioRef& s) { return s.get().classes; },
                             "Threat classes (S1..S16 of docs/compliance.md).")
      .def_property_readonly("requirements", [](const ScenarioRef& s) { return s.get().requirements; },
                             "Requirement ids it gives evidence for.")
      .def_property_readonly("start", [](const ScenarioRef& s) { return s.get().start; },
                             "Release installed before each trial.")
      .def_property_readonly("before", [](const ScenarioRef& s) { return s.get().before; },
                             "Releases updated to cleanly before the fault.")
      .def_property_readonly("deliver", [](const ScenarioRef& s) { return s.get().deliver; },
                             "Release the faulted step delivers.")
      .def_property_readonly("retry", [](const ScenarioRef& s) { return s.get().retry; },
                             "Release of the clean update that must succeed afterwards ('' = none).")
      .def_property_readonly("trials", [](const ScenarioRef& s) { return s.get().trials; },
                             "Trial count of a randomized scenario (0 otherwise).")
      .def_property_readonly(
          "fault",
          [](const ScenarioRef& s) {
            const auto& f = s.get().fault;
            json j = f.options ? f.options->json() : json::object();
            j["kind"] = f.kind;
            return to_py(j);
          },
          "The fault section as its kind parsed it: {'kind', ...its options}.")
      .def_property_readonly("is_suite", [](const ScenarioRef& s) { return s.get().is_suite(); },
                             "True for a suite (a scenario that includes others).")
      .def_property_readonly(
          "parts",
          [](const ScenarioRef& s) {
            std::vector<ScenarioRef> out;
            for (const auto& p : s.get().parts) out.push_back(ScenarioRef{s.root, &p});
            return out;
          },
          "A suite's scenarios, in order (empty for a single scenario).")
      .def(
          "leaves",
          [](const ScenarioRef& s) {
            std::vector<ScenarioRef> out;
            for (const auto* p : s.get().leaves()) out.push_back(ScenarioRef{s.root, p});
            return out;
          },
          "The scenarios a campaign runs: a suite's parts, or the scenario itself.")
      .def("__repr__", [](const ScenarioRef& s) {
        return fmt::format("<Scenario {} ({}): {}>", s.get().name,
                           s.get().is_suite() ? fmt::format("suite of {}", s.get().parts.size()) : s.get().fault.kind,
                           s.get().title);
      });

  // ---------------------------------------------------------------- Profile
  py::class_<harness::ReleaseSpec>(m, "ReleaseSpec", "A release as a board profile defines it.")
      .def_readonly("name", &harness::ReleaseSpec::name, "The release's name (factory, update, ...).")
      .def_property_readonly("version", [](const harness::ReleaseSpec& r) { return r.version.str(); },
                             "MAJOR.MINOR.PATCH[+BUILD].")
      .def_readonly("security_counter", &harness::ReleaseSpec::security_counter, "The anti-rollback counter.")
      .def_readonly("payload_size", &harness::ReleaseSpec::payload_size, "Payload bytes (0: the default size).")
      .def_readonly("file", &harness::ReleaseSpec::file, "A prebuilt image used instead of a generated one, or None.")
      .def("__repr__", [](const harness::ReleaseSpec& r) {
        return fmt::format("ReleaseSpec({}, version={}, security_counter={})", repr_str(r.name),
                           repr_str(r.version.str()), r.security_counter);
      });

  py::class_<harness::BoardProfile, std::shared_ptr<harness::BoardProfile>>(
      m, "Profile", "A board profile (boards/NAME.yaml): how to power, talk to, update and observe a device.")
      .def_readonly("path", &harness::BoardProfile::path, "The profile file.")
      .def_readonly("sha256", &harness::BoardProfile::sha256, "SHA-256 of the profile file's bytes.")
      .def_readonly("name", &harness::BoardProfile::name, "The board's name.")
      .def_readonly("description", &harness::BoardProfile::description, "A one-line description.")
      .def_readonly("device_kind", &harness::BoardProfile::device_kind, "'virtual', 'process', ...")
      .def_readonly("signing_key", &harness::BoardProfile::signing_key,
                    "The key releases are signed with: 'test:LABEL' or a PEM path.")
      .def_readonly("trusted_keys", &harness::BoardProfile::trusted_keys,
                    "Keys the device trusts (empty: the signing key).")
      .def_readonly("releases", &harness::BoardProfile::releases, "The releases the profile defines.")
      .def_property_readonly(
          "observe",
          [](const harness::BoardProfile& p) {
            py::dict d;
            d["banner"] = p.observe.banner;
            d["status_command"] = p.observe.status_command;
            d["status"] = p.observe.status;
            d["boot_timeout_s"] = std::chrono::duration<double>(p.observe.boot_timeout).count();
            d["status_interval_s"] = std::chrono::duration<double>(p.observe.status_interval).count();
            return d;
          },
          "How the rig reads the device's state: banner, status_command, status (RE2), boot_timeout_s, "
          "status_interval_s.")
      .def("__repr__", [](const harness::BoardProfile& p) {
        return fmt::format("<Profile {} ({}): {}>", p.name, p.path.string(), p.description);
      });
}

void register_trials(py::module_& m) {
  // ---------------------------------------------------------------- Trial specs
  py::class_<TrialSpecRef>(m, "TrialSpec",
                           "One trial of a plan: its index, its scenario, and its fault (every random\n"
                           "choice derives from the campaign seed and the index).")
      .def_property_readonly("index", [](const TrialSpecRef& t) { return t.spec.index; }, "Index in the plan.")
      .def_property_readonly("id", [](const TrialSpecRef& t) { return t.spec.id; },
                             "Zero-padded index: the evidence folder name and the --trial argument.")
      .def_property_readonly("scenario", [](const TrialSpecRef& t) { return t.spec.scenario->name; },
                             "Name of the (leaf) scenario.")
      .def_property_readonly("seed", [](const TrialSpecRef& t) { return t.spec.seed; }, "This trial's stream.")
      .def_property_readonly("cut_op", [](const TrialSpecRef& t) { return fault_field(t.spec, "before_op", 0ull); },
                             "Counted power cuts: the flash operation the cut falls before (0: none).")
      .def_property_readonly("ops_total", [](const TrialSpecRef& t) { return fault_field(t.spec, "ops_total", 0ull); },
                             "Counted power cuts: flash operations of the whole update.")
      .def_property_readonly("torn", [](const TrialSpecRef& t) { return fault_field(t.spec, "torn", false); },
                             "True when the cut tears the operation (partly applied).")
      .def_property_readonly("torn_seed", [](const TrialSpecRef& t) { return fault_field(t.spec, "torn_seed", 0ull); },
                             "Which bits of a torn operation land.")
      .def_property_readonly("variant", [](const TrialSpecRef& t) { return fault_field(t.spec, "variant", std::string()); },
                             "Image faults: which damage ('payload-bit-flip', ...).")
      .def_property_readonly("fault", [](const TrialSpecRef& t) { return to_py(t.spec.fault_json()); },
                             "The fault as the evidence records it.")
      .def("__repr__", [](const TrialSpecRef& t) {
        return fmt::format("<TrialSpec {} {} {}>", t.spec.id, t.spec.scenario->name, t.spec.fault_json().dump());
      });

  // ---------------------------------------------------------------- Trial
  py::class_<Trial>(m, "Trial", "The record of one trial: its fault, what was observed, the oracles, the verdict.")
      .def_property_readonly("id", [](const Trial& t) { return t.raw.value("id", ""); },
                             "Zero-padded index: the evidence folder name and the --trial argument.")
      .def_property_readonly("index", [](const Trial& t) { return t.raw.value("index", 0ull); },
                             "The trial's index in the plan.")
      .def_property_readonly("scenario", [](const Trial& t) { return t.raw.value("scenario", ""); },
                             "The (leaf) scenario's name.")
      .def_property_readonly("seed", [](const Trial& t) { return t.raw.value("seed", 0ull); },
                             "The trial's own seed, derived from the campaign seed and the index.")
      .def_property_readonly("requirements",
                             [](const Trial& t) { return to_py(t.raw.value("requirements", json::array())); },
                             "Requirement ids of the scenario.")
      .def_property_readonly("fault", [](const Trial& t) { return to_py(t.raw.value("fault", json::object())); },
                             "The fault parameters (kind, before_op, torn, variant, ...) and its 'detail'.")
      .def_property_readonly("verdict", [](const Trial& t) { return t.raw.value("verdict", ""); }, "'pass' or 'fail'.")
      .def_property_readonly("passed", [](const Trial& t) { return t.raw.value("verdict", "") == "pass"; },
                             "True when every oracle held.")
      .def_property_readonly("oracles", [](const Trial& t) { return to_py(t.raw.value("oracles", json::object())); },
                             "Oracle name -> held (the five standard ones and any custom ones).")
      .def_property_readonly("broken", [](const Trial& t) { return broken_list(t.raw.value("broken", json::array())); },
                             "The oracles that did not hold, as (oracle, detail) pairs.")
      .def_property_readonly("observed", [](const Trial& t) { return observed_list(t.raw.value("observed", json::array())); },
                             "The observations, in order: prepare, before:*, after-fault, custom, retry.")
      .def_property_readonly("delivered", [](const Trial& t) { return t.raw.value("delivered", ""); },
                             "Name of the image the faulted step delivered.")
      .def_property_readonly("delivery", [](const Trial& t) { return to_py(t.raw.value("delivery", json::object())); },
                             "{'status': accepted|refused|power-lost|unreachable, 'detail': ...}")
      .def_property_readonly("cut", [](const Trial& t) { return get_or_none(t.raw, "cut"); },
                             "Where a counted power cut fell ({'op', 'kind', 'address', 'phase', 'torn', ...}) or None.")
      .def_property_readonly("erases", [](const Trial& t) { return get_or_none(t.raw, "erases"); },
                             "{'total', 'max_per_sector'} erases since provisioning, or None.")
      .def_property_readonly("duration_ms", [](const Trial& t) { return t.raw.value("duration_ms", 0.0); },
                             "Wall-clock milliseconds the trial took.")
      .def_property_readonly(
          "evidence",
          [](const Trial& t) -> std::optional<std::filesystem::path> {
            if (t.out.empty()) return std::nullopt;
            return t.out / t.raw.value("evidence", "trials/" + t.raw.value("id", ""));
          },
          "The trial's evidence folder (console.log, events.jsonl, verdict.json), or None\n"
          "for a trial run directly with Bench.trial() without `out`.")
      .def_property_readonly("console_log", &trial_console_log,
                             "The device's console during the trial, one '[t ms] line' per line.")
      .def_property_readonly(
          "transcript",
          [](const Trial& t) {
            auto lines = t.transcript.empty() ? parse_transcript(trial_console_log(t)) : t.transcript;
            py::list out;
            for (const auto& l : lines) out.append(py::make_tuple(l.t_ms, l.text));
            return out;
          },
          "The console as (t_ms, line) pairs, t_ms on the bench clock since the trial began.")
      .def_property_readonly(
          "events",
          [](const Trial& t) {
            if (!t.events.empty() || t.out.empty()) return to_py(t.events);
            json out = json::array();
            std::istringstream in(read_text(t.out / t.raw.value("evidence", "trials/" + t.raw.value("id", "")) /
                                            "events.jsonl"));
            std::string line;
            while (std::getline(in, line))
              if (!line.empty()) out.push_back(json::parse(line, nullptr, false));
            return to_py(out);
          },
          "The trial's state machine events, in order (events.jsonl).")
      .def("to_dict", [](const Trial& t) { return to_py(t.raw); }, "The run.json entry of the trial.")
      .def("__repr__", [](const Trial& t) {
        std::vector<std::string> broken;
        for (const auto& b : t.raw.value("broken", json::array())) broken.push_back(b.value("oracle", ""));
        return fmt::format("<Trial {} {} {}{}>", t.raw.value("id", ""), t.raw.value("scenario", ""),
                           t.raw.value("verdict", ""),
                           broken.empty() ? "" : fmt::format(": broke {}", fmt::join(broken, ", ")));
      });
}

void register_campaign_results(py::module_& m) {
  // ---------------------------------------------------------------- Finding
  py::class_<Finding>(m, "Finding", "A device defect found: the trial, the oracles it broke, and how to replay it.")
      .def_property_readonly("id", [](const Finding& f) { return f.raw.value("id", ""); }, "F0001, F0002, ...")
      .def_property_readonly("trial", [](const Finding& f) { return f.raw.value("trial", ""); }, "The trial's id.")
      .def_property_readonly("scenario", [](const Finding& f) { return f.raw.value("scenario", ""); },
                             "The (leaf) scenario of the trial.")
      .def_property_readonly("seed", [](const Finding& f) { return f.raw.value("seed", 0ull); }, "The trial's seed.")
      .def_property_readonly("fault", [](const Finding& f) { return to_py(f.raw.value("fault", json::object())); },
                             "The fault parameters and what the fault did ('detail').")
      .def_property_readonly(
          "oracles",
          [](const Finding& f) {
            std::vector<std::string> out;
            for (const auto& b : f.raw.value("oracles", json::array())) out.push_back(b.value("oracle", ""));
            return out;
          },
          "Names of the oracles broken.")
      .def_property_readonly("broken", [](const Finding& f) { return broken_list(f.raw.value("oracles", json::array())); },
                             "The oracles broken, as (oracle, detail) pairs.")
      .def_property_readonly("observed",
                             [](const Finding& f) { return observed_list(f.raw.value("observed", json::array())); },
                             "The trial's observations, in order.")
      .def_property_readonly("requirements",
                             [](const Finding& f) { return to_py(f.raw.value("requirements", json::array())); },
                             "Requirement ids the broken trial gives evidence against.")
      .def_property_readonly("transcript", [](const Finding& f) { return f.out / f.raw.value("transcript", ""); },
                             "Path of the trial's console.log.")
      .def_property_readonly("replay", [](const Finding& f) { return f.raw.value("replay", ""); },
                             "The one command that replays the trial.")
      .def("to_dict", [](const Finding& f) { return to_py(f.raw); }, "The run.json entry of the finding.")
      .def("__repr__", [](const Finding& f) {
        std::vector<std::string> broken;
        for (const auto& b : f.raw.value("oracles", json::array())) broken.push_back(b.value("oracle", ""));
        return fmt::format("<Finding {} trial {} ({}) broke {}>", f.raw.value("id", ""), f.raw.value("trial", ""),
                           f.raw.value("scenario", ""), fmt::join(broken, ", "));
      });

  // ---------------------------------------------------------------- Defect
  py::class_<Defect>(m, "Defect",
                     "Failed trials grouped into one defect: the same broken oracles, fault, phase and state after "
                     "the fault, and for faults placed at an index a window no passed trial splits "
                     "(docs/evidence.md).")
      .def_property_readonly("id", [](const Defect& d) { return d.raw.value("id", ""); }, "D0001, D0002, ...")
      .def_property_readonly("title", [](const Defect& d) { return d.raw.value("title", ""); },
                             "One line: the oracles broken, the fault, the window and the phase.")
      .def_property_readonly("scenario", [](const Defect& d) { return d.raw.value("scenario", ""); },
                             "The (leaf) scenario of its trials.")
      .def_property_readonly("fault", [](const Defect& d) { return to_py(d.raw.value("fault", json::object())); },
                             "The fields that tell its fault apart (kind, at, variant, torn, ...).")
      .def_property_readonly("phase", [](const Defect& d) { return d.raw.value("phase", ""); },
                             "Where the fault fell: the cut's phase, a console line, the download, the delivery.")
      .def_property_readonly("oracles", [](const Defect& d) { return to_py(d.raw.value("oracles", json::array())); },
                             "Names of the oracles broken.")
      .def_property_readonly("observed", [](const Defect& d) { return to_py(d.raw.value("observed", json::object())); },
                             "The state after the fault: {'booted', 'slot', 'version'}.")
      .def_property_readonly(
          "window",
          [](const Defect& d) -> py::object {
            auto w = d.raw.find("window");
            if (w == d.raw.end() || !w->is_object()) return py::none();
            return to_py(*w);
          },
          "{'axis', 'first', 'last', 'of'} for faults placed at an index, else None.")
      .def_property_readonly("trials", [](const Defect& d) { return to_py(d.raw.value("trials", json::array())); },
                             "The ids of the trials behind it, in the order of the index.")
      .def_property_readonly("count", [](const Defect& d) { return d.raw.value("count", 0ull); },
                             "How many trials are behind it.")
      .def_property_readonly("representative", [](const Defect& d) { return d.raw.value("representative", ""); },
                             "The trial that stands for it: the first of its trials.")
      .def_property_readonly("finding", [](const Defect& d) { return d.raw.value("finding", ""); },
                             "The id of the representative's finding.")
      .def_property_readonly("replay", [](const Defect& d) { return d.raw.value("replay", ""); },
                             "The command that replays the representative trial.")
      .def("to_dict", [](const Defect& d) { return to_py(d.raw); }, "The run.json entry of the defect.")
      .def("__repr__", [](const Defect& d) {
        return fmt::format("<Defect {} ({} trials): {}>", d.raw.value("id", ""), d.raw.value("count", 0ull),
                           d.raw.value("title", ""));
      });

  // ---------------------------------------------------------------- CampaignResult
  py::class_<CampaignResult>(m, "CampaignResult",
                             "The outcome of Bench.run(): the trials, the findings and the evidence folder.\n\n"
                             "``str(result)`` is the summary line the command line prints.")
      .def_readonly("trials", &CampaignResult::trials, "Every trial, in index order.")
      .def_readonly("defects", &CampaignResult::defects,
                    "The failed trials grouped into defects, each with its title, representative trial, replay "
                    "command and the trials behind it (run.json's defects).")
      .def_readonly("findings", &CampaignResult::findings, "Every failed trial as a finding.")
      .def_property_readonly(
          "passed",
          [](const CampaignResult& r) {
            return r.exit_code == 0 && r.run.value("summary", json::object()).value("findings", 0) == 0;
          },
          "True when every trial held every oracle and the bench did not fail (a waived finding is not a pass).")
      .def_readonly("exit_code", &CampaignResult::exit_code,
                    "The command line's exit status: 0 no finding (or every finding waived), 1 findings or an "
                    "expired waiver, 3 bench failure.")
      .def_property_readonly(
          "waivers", [](const CampaignResult& r) { return to_py(r.run.value("waivers", json::object())); },
          "run.json's waivers: the day they were judged on and each declared waiver with its status and the "
          "defects it covers ({} when the profile declares none).")
      .def_property_readonly("summary", [](const CampaignResult& r) { return to_py(r.run.value("summary", json::object())); },
                             "{'trials', 'passed', 'failed', 'findings'}")
      .def_property_readonly(
          "aborted",
          [](const CampaignResult& r) -> std::optional<std::string> {
            if (r.aborted.empty()) return std::nullopt;
            return r.aborted;
          },
          "The bench failure that stopped the campaign, or None.")
      .def_readonly("out", &CampaignResult::out, "The evidence folder (absolute).")
      .def_property_readonly("run", [](const CampaignResult& r) { return to_py(r.run); }, "run.json as a dict.")
      .def_property_readonly(
          "board", [](const CampaignResult& r) { return r.run.value("board", json::object()).value("name", ""); },
          "The board's name (from its profile).")
      .def_property_readonly(
          "scenario",
          [](const CampaignResult& r) { return r.run.value("scenario", json::object()).value("name", ""); },
          "The scenario's (or suite's) name.")
      .def_property_readonly(
          "requirements",
          [](const CampaignResult& r) {
            std::vector<std::string> out;
            // run.json's requirements: those a trial that ran gave evidence for.
            if (auto stated = r.run.find("requirements"); stated != r.run.end() && stated->is_array()) {
              for (const auto& req : *stated)
                if (req.is_object() && req.value("trials", 0ull) > 0) out.push_back(req.value("id", ""));
              return out;
            }
            // A run document without them: a suite's own ids, then those of its parts, each once.
            auto add = [&](const json& list) {
              if (!list.is_array()) return;
              for (const auto& id : list)
                if (id.is_string() && std::find(out.begin(), out.end(), id.get<std::string>()) == out.end())
                  out.push_back(id.get<std::string>());
            };
            auto sc = r.run.value("scenario", json::object());
            add(sc.value("requirements", json::array()));
            for (const auto& part : sc.value("parts", json::array())) add(part.value("requirements", json::array()));
            return out;
          },
          "Requirement ids a trial that ran gave evidence for, in run.json's order (requirement_results "
          "says how far: pass, fail, partly-exercised, not-exercised).")
      .def_property_readonly(
          "requirement_results",
          [](const CampaignResult& r) { return to_py(r.run.value("requirements", json::array())); },
          "run.json's requirements: per requirement id its status, the scenarios that ran with their trials, "
          "the skipped ones with their reasons, the classes exercised and missing (docs/evidence.md).")
      .def_property_readonly("seed", [](const CampaignResult& r) { return r.run.value("seed", 0ull); },
                             "The campaign seed.")
      .def_property_readonly("planned", [](const CampaignResult& r) { return r.run.value("planned", 0ull); },
                             "Trials in the plan (after trials/shard selection).")
      .def("__str__", &summary_line)
      .def("__repr__", [](const CampaignResult& r) { return fmt::format("<CampaignResult {}>", summary_line(r)); });
}

}  // namespace

void register_data(py::module_& m) {
  register_observations(m);
  register_scenarios(m);
  register_trials(m);
  register_campaign_results(m);
}

}  // namespace otarig::python
