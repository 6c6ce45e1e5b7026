#include "otarig/harness/campaign.hpp"
#include "otarig/harness/evidence.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "otarig/core/read_file.hpp"
#include "otarig/harness/composition.hpp"
#include "otarig/harness/journal.hpp"
#include "otarig/reports/bundle.hpp"

#ifndef OTARIG_VERSION
#define OTARIG_VERSION "0.0.0"
#endif

namespace otarig::harness {

const char* version_string() { return OTARIG_VERSION; }
const char* built_git_revision();  // generated at build time (cmake/GitRevision.cmake)
const char* git_revision() { return built_git_revision(); }

namespace {

std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=+,@") ==
                        std::string::npos)
    return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

nlohmann::json observation_json(const Observation& o) {
  nlohmann::json j{{"step", o.step}, {"booted", o.booted}};
  if (o.booted) {
    j["slot"] = o.slot;
    j["version"] = o.version;
    j["digest"] = o.digest;
    j["counter"] = o.counter ? nlohmann::json(*o.counter) : nlohmann::json(nullptr);
    j["state"] = o.state;
    j["health"] = o.health;
  }
  if (o.booted && !o.identity.empty()) j["identity"] = o.identity;
  j["waited_ms"] = o.waited_ms;
  return j;
}

}  // namespace

nlohmann::json trial_summary(const TrialOutcome& t) {
  nlohmann::json j;
  j["id"] = t.spec.id;
  j["index"] = t.spec.index;
  j["scenario"] = t.spec.scenario->name;
  j["requirements"] = t.spec.scenario->requirements;
  j["classes"] = t.spec.scenario->classes;
  j["seed"] = t.spec.seed;
  j["fault"] = t.spec.fault_json();
  j["fault"]["detail"] = t.fault_detail;
  j["verdict"] = t.passed ? "pass" : "fail";
  nlohmann::json oracles = nlohmann::json::object();
  nlohmann::json broken = nlohmann::json::array();
  for (const auto& o : t.oracles) {
    oracles[o.name] = o.held;
    if (!o.held) broken.push_back({{"oracle", o.name}, {"detail", o.detail}});
  }
  j["oracles"] = oracles;
  j["broken"] = broken;
  j["delivered"] = t.delivered;
  j["delivery"] = {{"status", t.delivery_status}, {"detail", t.delivery_detail}};
  if (t.cut.is_object()) j["cut"] = t.cut;
  nlohmann::json observed = nlohmann::json::array();
  for (const auto& o : t.observations) observed.push_back(observation_json(o));
  j["observed"] = observed;
  if (!t.erase_counts.empty()) {
    std::uint64_t total = 0, max = 0;
    for (auto c : t.erase_counts) {
      total += c;
      max = std::max<std::uint64_t>(max, c);
    }
    j["erases"] = {{"total", total}, {"max_per_sector", max}, {"per_sector", erase_runs(t.erase_counts)}};
  }
  // What the rig let go of the device's console (docs/evidence.md, "Limits").
  if (const auto loss = transcript_loss(t.transcript); loss.dropped_bytes)
    j["console"] = {{"dropped_bytes", loss.dropped_bytes},
                    {"dropped_lines", loss.dropped_lines},
                    {"cut_lines", loss.cut_lines},
                    {"limit_bytes", kTranscriptMaxBytes},
                    {"line_limit_bytes", drivers::kConsoleLineMaxBytes}};
  j["duration_ms"] = t.duration_ms;
  j["evidence"] = "trials/" + t.spec.id;
  return j;
}

namespace {

// The evidence folder exists and takes files, or --out is bad input: a path
// that is a file (/dev/null), that cannot be created, or a read-only folder.
void prepare_out(const std::filesystem::path& out) {
  std::error_code ec;
  if (std::filesystem::exists(out, ec) && !std::filesystem::is_directory(out, ec))
    throw InputError(fmt::format("--out {}: exists and is not a folder", out.string()));
  std::filesystem::create_directories(out, ec);
  if (ec)
    throw InputError(
        fmt::format("--out {}: cannot create the evidence folder: {}", out.string(), ec.message()));
  const auto probe = out / fmt::format(".otarig-write-test-{}", ::getpid());
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    throw InputError(
        fmt::format("--out {}: cannot write in the evidence folder: {}", out.string(), std::strerror(errno)));
  ::close(fd);
  ::unlink(probe.c_str());
}

// Virtual and process boards make a device per bench, so two run side by
// side where the machine has the cores; any other board is one physical device.
bool one_device_per_bench(const BoardProfile& profile) {
  return profile.device_kind == "virtual" || profile.device_kind == "process";
}

unsigned default_jobs(const BoardProfile& profile) {
  if (!one_device_per_bench(profile)) return 1;
  return std::max(1u, std::min(2u, std::thread::hardware_concurrency()));
}

}  // namespace

void check_release_names(const Scenario& scenario, const BoardProfile& profile) {
  for (const auto* leaf : scenario.leaves()) {
    auto need = [&](const std::string& name, const std::string& where) {
      if (!name.empty() && !profile.release(name))
        throw InputError(fmt::format("{}: scenario '{}' names release '{}', which board {} ({}) does not define",
                                     where, leaf->name, name, profile.name, profile.path.string()));
    };
    need(leaf->start, leaf->where_start);
    need(leaf->deliver, leaf->where_deliver);
    need(leaf->retry, leaf->where_retry);
    if (leaf->fault.unit)
      for (const auto& [name, where] : leaf->fault.unit->releases_named(leaf->fault)) need(name, where);
    for (const auto& b : leaf->before) need(b, leaf->where_start);
  }
}

std::string summary_line(const nlohmann::json& run, const std::string& aborted) {
  const auto s = run.value("summary", nlohmann::json::object());
  const auto findings = s.value("findings", std::uint64_t{0});
  return fmt::format("{}: {} trials, {} passed, {} failed, {} finding{} (board {}, scenario {}, seed {})",
                     !aborted.empty() ? "BENCH FAILURE" : (findings ? "FINDINGS" : "PASS"),
                     s.value("trials", std::uint64_t{0}), s.value("passed", std::uint64_t{0}),
                     s.value("failed", std::uint64_t{0}), findings, findings == 1 ? "" : "s",
                     run.value("board", nlohmann::json::object()).value("name", ""),
                     run.value("scenario", nlohmann::json::object()).value("name", ""),
                     run.value("seed", std::uint64_t{0}));
}

std::string replay_command(const CampaignOptions& o, const std::string& trial_id, bool timed) {
  const std::string out = o.out.string().empty() ? std::string("otarig-out") : o.out.string();
  return fmt::format("otarig run --board {} --scenario {} --seed {} --trial {}{} --out {}", shell_quote(o.board),
                     shell_quote(o.scenario), o.seed, trial_id,
                     timed ? " --calibration " + shell_quote(out) : std::string(),
                     shell_quote(out + "-replay-" + trial_id));
}

nlohmann::json campaign_identity(const CampaignOptions& o, const BoardProfile& profile, const Scenario& scenario) {
  return {{"board", profile.name},
          {"board_sha256", profile.sha256},
          {"scenario", scenario.name},
          {"scenario_sha256", scenario.sha256},
          {"seed", o.seed},
          {"shard", fmt::format("{}/{}", o.shard, o.shards)},
          {"selection",
           {{"trials", o.trials ? nlohmann::json(*o.trials) : nlohmann::json(nullptr)},
            {"trial", o.only ? nlohmann::json(fmt::format("{:05d}", *o.only)) : nlohmann::json(nullptr)}}},
          {"otarig", version_string()}};
}

namespace {

// A journaled value as the message shows it.
std::string shown(const std::string& key, const nlohmann::json& v) {
  if (key == "selection" && v.is_object()) {
    std::string text;
    if (auto n = v.find("trials"); n != v.end() && !n->is_null()) text = fmt::format("--trials {}", n->dump());
    if (auto id = v.find("trial"); id != v.end() && id->is_string())
      text += (text.empty() ? "" : " ") + fmt::format("--trial {}", id->get<std::string>());
    return text.empty() ? "every trial of the plan" : text;
  }
  return v.is_string() ? v.get<std::string>() : v.dump();
}

}  // namespace

void check_resume(const std::filesystem::path& journal, const nlohmann::json& journaled,
                  const nlohmann::json& identity) {
  static const std::pair<const char*, const char*> fields[] = {
      {"board", "board"},
      {"board_sha256", "board profile's SHA-256"},
      {"scenario", "scenario"},
      {"scenario_sha256", "scenario's SHA-256"},
      {"seed", "seed"},
      {"shard", "shard (--shard)"},
      {"selection", "trial selection (--trials, --trial)"},
      {"otarig", "otarig version"},
  };
  for (const auto& [key, what] : fields) {
    const auto it = journaled.find(key);
    if (it == journaled.end())
      throw InputError(fmt::format(
          "{}: --resume: the journal records no {} (written by otarig {} before resumes checked it), so this run "
          "cannot show that it continues the same campaign; start it again in another --out",
          journal.string(), what, shown("otarig", journaled.value("otarig", nlohmann::json("(unknown)")))));
    if (*it != identity.at(key))
      throw InputError(fmt::format("{}: --resume: the {} differs: the journaled campaign has {}, this run has {}; "
                                   "resume with what the campaign started with, or start a new one in another --out",
                                   journal.string(), what, shown(key, *it), shown(key, identity.at(key))));
  }
}

namespace {

// Timings come from files a person can edit: each must be a count of milliseconds.
void check_timings(const nlohmann::json& update_ms, const std::string& where) {
  for (const auto& [key, ms] : update_ms.items())
    if (!ms.is_number_unsigned())
      throw InputError(fmt::format("{}: update_ms of {} is {}, not a whole number of milliseconds", where, key,
                                   ms.dump()));
}

struct RecordedCalibration {
  std::string board, board_sha256;
  nlohmann::json update_ms;  ///< null when the file records none
};

RecordedCalibration calibration_in_journal(const std::filesystem::path& file) {
  const auto journaled = read_journaled_campaign(file);
  if (journaled.start.is_null())
    throw InputError(fmt::format("--calibration {}: the journal has no campaign-start event", file.string()));
  RecordedCalibration r{journaled.start.value("board", ""), journaled.start.value("board_sha256", ""), nullptr};
  if (journaled.start.contains("calibration"))
    r.update_ms = journaled.calibration.value("update_ms", nlohmann::json::object());
  return r;
}

RecordedCalibration calibration_in_run(const std::filesystem::path& file) {
  nlohmann::json run;
  try {
    run = nlohmann::json::parse(read_regular_file(file, kMaxImageBytes, "run.json"));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("--calibration {}: not JSON: {}", file.string(), e.what()));
  }
  if (!run.is_object() || !run.value("board", nlohmann::json()).is_object())
    throw InputError(fmt::format("--calibration {}: not a run.json", file.string()));
  const auto& b = run["board"];
  RecordedCalibration r{b.value("name", ""), b.value("profile_sha256", ""), nullptr};
  // run.json of otarig before calibrations were named kept the timings as
  // update_ms, and left it out when it placed no cut by time.
  if (auto c = run.find("calibration"); c != run.end() && c->is_object())
    r.update_ms = c->value("update_ms", nlohmann::json());
  else if (auto u = run.find("update_ms"); u != run.end())
    r.update_ms = *u;
  else if (run.contains("ops_per_update"))
    r.update_ms = nlohmann::json::object();
  return r;
}

}  // namespace

nlohmann::json load_calibration(const std::filesystem::path& from, const BoardProfile& profile) {
  std::error_code ec;
  RecordedCalibration r;
  std::filesystem::path file = from;
  if (std::filesystem::is_directory(from, ec)) {
    // The journal is there from a campaign's start (a finding's replay may
    // run before run.json is written); run.json also serves older journals.
    if (std::filesystem::is_regular_file(from / "journal.jsonl", ec)) {
      file = from / "journal.jsonl";
      r = calibration_in_journal(file);
    }
    if (r.update_ms.is_null() && std::filesystem::is_regular_file(from / "run.json", ec)) {
      file = from / "run.json";
      r = calibration_in_run(file);
    }
  } else if (std::filesystem::is_regular_file(from, ec)) {
    r = from.extension() == ".jsonl" ? calibration_in_journal(from) : calibration_in_run(from);
  } else {
    throw InputError(fmt::format("--calibration {}: not an evidence folder, a journal.jsonl or a run.json",
                                 from.string()));
  }
  if (!r.update_ms.is_object())
    throw InputError(fmt::format("--calibration {}: it records no calibration (update_ms)", file.string()));
  check_timings(r.update_ms, "--calibration " + file.string());
  if (r.board != profile.name || r.board_sha256 != profile.sha256)
    throw InputError(fmt::format("--calibration {}: it was measured on board {} (profile SHA-256 {}), this run is on "
                                 "board {} ({}, SHA-256 {})",
                                 file.string(), r.board.empty() ? "(none)" : r.board,
                                 r.board_sha256.empty() ? "(none)" : r.board_sha256, profile.name,
                                 profile.path.string(), profile.sha256));
  return r.update_ms;
}

CampaignResult run_campaign(const CampaignOptions& options, const drivers::DriverRegistry& drivers) {
  auto registries = make_registries();
  registries.drivers = drivers;
  return run_campaign(options, registries);
}

CampaignResult run_campaign(const CampaignOptions& options, const Registries& registries) {
  const auto& registry = registries.drivers;
  if (options.shards == 0 || options.shard >= options.shards)
    throw InputError(fmt::format("--shard {}/{}: the shard index must be below the shard count", options.shard,
                                 options.shards));
  // An unreadable signing key is bad input: say so before any trial runs.
  if (options.bundle.signing_key) (void)crypto::Ed25519Key::load_pem(*options.bundle.signing_key);
  const auto profile = load_profile(resolve_board(options.board));
  if (options.jobs > 1 && !one_device_per_bench(profile))
    throw InputError(fmt::format("--jobs {}: board {} ({}) is one {} device, so its trials run one at a time",
                                 options.jobs, profile.name, profile.path.string(), profile.device_kind));
  const auto scenario = load_scenario(options.scenario, registries.faults);
  const ReleaseSet releases(profile);
  CampaignResult result;
  result.out = options.out;
  const auto journal_file = options.out / "journal.jsonl";
  const auto identity = campaign_identity(options, profile, scenario);

  // A resume continues the campaign its journal began, or refuses before
  // anything runs; its time cuts are placed by the calibration that campaign
  // journaled, not by a new measurement.
  JournaledCampaign journaled;
  if (options.resume) {
    journaled = read_journaled_campaign(journal_file);
    if (!journaled.start.is_null()) check_resume(journal_file, journaled.start, identity);
  }
  nlohmann::json given_ms = journaled.calibration.value("update_ms", nlohmann::json::object());
  check_timings(given_ms, journal_file.string() + ": --resume: the journaled calibration");
  std::map<std::string, std::string> calibration_from;  // pair -> "journal", --calibration's path, "measured"
  for (const auto& [key, ms] : given_ms.items()) calibration_from[key] = "journal";
  const auto from_option =
      options.calibration ? load_calibration(*options.calibration, profile) : nlohmann::json::object();
  for (const auto& [key, ms] : from_option.items())
    if (!given_ms.contains(key)) {
      given_ms[key] = ms;
      calibration_from[key] = options.calibration->string();
    }

  // Everything that can reject the input happens before the journal opens:
  // binding the first bench checks the profile's driver sections, then the
  // scenario's release names, then the plan (which the first bench measures).
  std::vector<std::unique_ptr<Bench>> benches;
  std::string aborted;
  std::string bad_input;  // an InputError a trial raised
  std::string aborted_evidence;  // the failed trial's evidence folder (TrialBenchError)
  Plan plan;
  try {
    benches.push_back(std::make_unique<Bench>(profile, registry, releases, options.seed));
  } catch (const BenchError& e) {
    aborted = e.what();
  }
  check_release_names(scenario, profile);
  if (aborted.empty()) {
    try {
      auto abilities = board_abilities(*benches[0], releases);
      abilities.update_ms = [&, measure = abilities.update_ms](const std::string& start, const std::string& deliver) {
        const auto key = start + "->" + deliver;
        if (auto it = given_ms.find(key); it != given_ms.end()) return it->get<std::uint64_t>();
        calibration_from[key] = "measured";
        return measure ? measure(start, deliver) : std::uint64_t{0};
      };
      plan = make_plan(scenario, options.seed, abilities);
    } catch (const BenchError& e) {
      aborted = e.what();
    }
  }
  // The clean-update timings behind this run's time cuts, and those it
  // measured itself (journaled so that a resume places its cuts alike).
  nlohmann::json calibration = {{"update_ms", plan.update_ms}};
  nlohmann::json measured = nlohmann::json::object();
  for (const auto& [key, ms] : plan.update_ms)
    if (calibration_from[key] == "measured") measured[key] = ms;
  const bool timed = !plan.update_ms.empty();
  if (options.trials) limit_plan(plan, *options.trials, options.seed);
  if (options.shards > 1) shard_plan(plan, options.shard, options.shards);
  if (options.only) {
    std::erase_if(plan.trials, [&](const TrialSpec& t) { return t.index != *options.only; });
    if (plan.trials.empty() && aborted.empty())
      throw InputError(fmt::format("--trial {}: the plan of {} with seed {} has no such trial", *options.only,
                                   scenario.name, options.seed));
  }

  prepare_out(options.out);
  Journal journal(journal_file, options.resume);
  const auto started = iso_now();

  const auto& st = journal.state();
  // The journal read again as it opened: it must be the campaign checked above.
  if (options.resume && !st.campaign.is_null()) check_resume(journal_file, st.campaign, identity);
  if (st.campaign.is_null()) {
    nlohmann::json start = identity;
    start["type"] = "campaign-start";
    start["planned"] = plan.trials.size();
    start["git_revision"] = git_revision();
    start["calibration"] = calibration;
    journal.append(std::move(start));
  } else {
    nlohmann::json resume{{"type", "campaign-resume"},
                          {"completed", st.completed_trials.size()},
                          {"dropped_lines", st.dropped_lines}};
    if (!measured.empty()) resume["calibration"] = {{"update_ms", measured}};
    journal.append(std::move(resume));
  }

  std::vector<const TrialSpec*> pending;
  for (const auto& t : plan.trials)
    if (!st.completed_trials.count(t.index)) pending.push_back(&t);

  const unsigned jobs =
      std::max(1u, std::min<unsigned>(options.jobs ? options.jobs : default_jobs(profile),
                                      static_cast<unsigned>(std::max<std::size_t>(1, pending.size()))));
  std::mutex mu;
  std::atomic<std::size_t> next{0};
  std::atomic<bool> stop{false};
  Progress progress;
  progress.total = plan.trials.size();
  progress.done = plan.trials.size() - pending.size();
  progress.findings = st.failed_trials;
  const auto t0 = std::chrono::steady_clock::now();
  const std::size_t already_done = progress.done;

  auto worker = [&](unsigned w) {
    try {
      Bench* bench = nullptr;
      {
        std::lock_guard lock(mu);
        bench = benches[w].get();
      }
      // Contiguous chunks keep a worker's cut points increasing (the virtual
      // board's sweep cursor only moves forward); a small campaign takes
      // smaller chunks so that every worker gets some.
      const std::size_t kChunk = std::clamp<std::size_t>(pending.size() / (std::size_t{jobs} * 4), 1, 16);
      while (!stop) {
        std::size_t begin = next.fetch_add(kChunk);
        if (begin >= pending.size()) break;
        std::size_t end = std::min(pending.size(), begin + kChunk);
        for (std::size_t i = begin; i < end && !stop; ++i) {
          const TrialSpec& spec = *pending[i];
          auto outcome = run_trial(*bench, releases, spec, &options.hooks);
          auto summary = trial_summary(outcome);
          write_trial_evidence(options.out, outcome, summary);
          std::vector<nlohmann::json> block;
          block.push_back({{"type", "trial-start"}, {"trial", spec.id}, {"scenario", spec.scenario->name},
                           {"fault", spec.fault_json()}});
          for (auto e : outcome.events) {
            e["trial"] = spec.id;
            block.push_back(std::move(e));
          }
          nlohmann::json verdict = summary;
          verdict["type"] = "verdict";
          verdict["trial"] = spec.id;
          block.push_back(std::move(verdict));
          journal.append_block(std::move(block));
          std::lock_guard lock(mu);
          ++progress.done;
          if (!outcome.passed) {
            ++progress.findings;
            if (options.on_finding)
              options.on_finding(fmt::format("finding: trial {} ({}) broke {} -- replay: {}", spec.id,
                                             spec.scenario->name, fmt::join(outcome.broken(), ", "),
                                             replay_command(options, spec.id, timed)));
          }
          progress.last_trial = spec.id;
          progress.last_passed = outcome.passed;
          progress.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          auto run_here = progress.done - already_done;
          progress.eta_s = run_here ? progress.elapsed_s / static_cast<double>(run_here) *
                                          static_cast<double>(progress.total - progress.done)
                                    : 0;
          if (options.on_progress) options.on_progress(progress);
        }
      }
    } catch (const TrialBenchError& e) {
      // The bench failed a trial before its verdict: what the trial saw (its
      // console, the device's exit status) stays in its evidence folder.
      std::lock_guard lock(mu);
      std::string where;
      try {
        where = write_bench_failure_evidence(options.out, e.partial(), e.failure());
      } catch (const std::exception& write_error) {
        where = fmt::format("(not written: {})", write_error.what());
      }
      if (aborted.empty()) {
        aborted = e.what();
        aborted_evidence = where;
      }
      stop = true;
    } catch (const InputError& e) {
      // Input only a trial can judge (a release a fault builds on): the run
      // stops as bad input, exit 2, after its evidence is written.
      std::lock_guard lock(mu);
      if (aborted.empty()) aborted = e.what();
      if (bad_input.empty()) bad_input = e.what();
      stop = true;
    } catch (const std::exception& e) {
      std::lock_guard lock(mu);
      if (aborted.empty()) aborted = e.what();
      stop = true;
    }
  };

  if (aborted.empty() && !pending.empty()) {
    try {
      for (unsigned w = 1; w < jobs; ++w)
        benches.push_back(std::make_unique<Bench>(profile, registry, releases, options.seed));
    } catch (const BenchError& e) {
      aborted = e.what();
    }
    if (aborted.empty()) {
      std::vector<std::thread> threads;
      for (unsigned w = 1; w < jobs; ++w) threads.emplace_back(worker, w);
      worker(0);
      for (auto& t : threads) t.join();
    }
  }
  if (!aborted.empty()) {
    nlohmann::json failure{{"type", "bench-failure"}, {"detail", aborted}};
    if (!aborted_evidence.empty()) failure["evidence"] = aborted_evidence;
    journal.append(std::move(failure));
  }

  // run.json from every verdict in the journal (this run's and resumed ones).
  std::vector<nlohmann::json> verdicts = read_verdicts(journal_file);
  std::sort(verdicts.begin(), verdicts.end(),
            [](const auto& a, const auto& b) { return a.value("index", 0) < b.value("index", 0); });
  nlohmann::json trials = nlohmann::json::array();
  nlohmann::json findings = nlohmann::json::array();
  for (auto& v : verdicts) {
    for (const char* k : {"type", "seq", "time", "prev_sha256", "trial"}) v.erase(k);
    ++result.trials;
    if (v.value("verdict", "") == "pass") {
      ++result.passed;
    } else {
      ++result.failed;
      nlohmann::json f;
      f["id"] = fmt::format("F{:04d}", findings.size() + 1);
      f["trial"] = v["id"];
      f["scenario"] = v["scenario"];
      f["seed"] = v["seed"];
      f["fault"] = v["fault"];
      f["oracles"] = v["broken"];
      f["observed"] = v["observed"];
      f["requirements"] = v["requirements"];
      f["transcript"] = v.value("evidence", "") + "/console.log";
      f["replay"] = replay_command(options, v.value("id", ""), timed);
      findings.push_back(std::move(f));
    }
    trials.push_back(std::move(v));
  }
  result.findings = findings.size();
  result.aborted = aborted;

  nlohmann::json run;
  run["otarig"] = {{"version", version_string()}, {"git_revision", git_revision()}};
  run["board"] = {{"name", profile.name},
                  {"description", profile.description},
                  {"profile", profile.path.string()},
                  {"profile_sha256", profile.sha256},
                  {"device_kind", profile.device_kind},
                  {"identity", benches.empty() ? "" : benches[0]->identity()},
                  {"image_identity", profile.observe.identity.json()}};
  // A profile that lets the update server offer a legacy device TLS 1.2
  // CBC-mode suites says so in the evidence.
  if (auto net = profile.root.at("device").find("network"); net && net->is_map() && net->has("tls"))
    run["board"]["tls_cipher_suites"] =
        net->bool_or("legacy_ciphers", false) ? "legacy (TLS 1.2 CBC-mode suites too)" : "aead";
  // How a power cut treats the device's storage (docs/crash-model.md): the
  // crash model, or a process kill with the profile's reason.
  if (!benches.empty() && !benches[0]->parts().power_loss.empty())
    run["board"]["power_loss"] = benches[0]->parts().power_loss;
  nlohmann::json parts = nlohmann::json::array();
  for (const auto* leaf : scenario.leaves())
    parts.push_back({{"name", leaf->name},
                     {"title", leaf->title},
                     {"classes", leaf->classes},
                     {"requirements", leaf->requirements},
                     {"fault", leaf->fault.kind}});
  run["scenario"] = {{"name", scenario.name},
                     {"title", scenario.title},
                     {"requirements", scenario.requirements},
                     {"classes", scenario.classes},
                     {"parts", parts}};
  run["seed"] = options.seed;
  run["shard"] = {{"index", options.shard}, {"count", options.shards}};
  run["started"] = st.campaign.is_null() ? started : st.campaign.value("time", started);
  run["ended"] = iso_now();
  nlohmann::json rel = nlohmann::json::array();
  for (const auto& r : releases.all())
    rel.push_back({{"name", r.name},
                   {"version", r.version},
                   {"security_counter", r.security_counter},
                   {"size", r.bytes.size()},
                   {"sha256", crypto::hex(crypto::sha256(r.bytes))},
                   {"digest", r.digest}});
  run["releases"] = rel;
  run["ops_per_update"] = plan.ops_per_update;
  if (!plan.storage_ops_per_update.empty()) run["storage_ops_per_update"] = plan.storage_ops_per_update;
  if (!plan.update_ms.empty()) run["update_ms"] = plan.update_ms;
  // Where each timing came from: measured by this run, journaled by the run
  // that began the campaign (a resume), or --calibration's evidence.
  nlohmann::json all_ms = journaled.calibration.value("update_ms", nlohmann::json::object());
  for (const auto& [key, ms] : plan.update_ms) all_ms[key] = ms;
  nlohmann::json sources = nlohmann::json::object();
  for (const auto& [key, ms] : all_ms.items()) sources[key] = calibration_from[key];
  run["calibration"] = {{"update_ms", all_ms}, {"from", sources}};
  nlohmann::json skipped = nlohmann::json::array();
  for (const auto& k : plan.skipped) skipped.push_back({{"scenario", k.scenario}, {"reason", k.reason}});
  run["skipped"] = skipped;
  nlohmann::json components = {{"otarig", version_string()}};
  if (!benches.empty())
    for (const auto& [k, v] : benches[0]->parts().component_versions) components[k] = v;
  run["components"] = components;
  run["planned"] = plan.trials.size();
  run["summary"] = {{"trials", result.trials},
                    {"passed", result.passed},
                    {"failed", result.failed},
                    {"findings", result.findings}};
  if (!aborted.empty()) run["aborted"] = aborted;
  if (!aborted_evidence.empty()) run["aborted_evidence"] = aborted_evidence;
  run["trials"] = std::move(trials);
  run["findings"] = std::move(findings);
  verdicts = {};

  reports::write_bundle(options.out, run, options.bundle);
  if (!bad_input.empty()) throw InputError(bad_input);
  result.run = std::move(run);
  return result;
}

}  // namespace otarig::harness
