#include "otarig/harness/campaign.hpp"
#include "otarig/harness/evidence.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "otarig/core/read_file.hpp"
#include "otarig/harness/composition.hpp"
#include "otarig/harness/compliance.hpp"
#include "otarig/harness/mechanism.hpp"
#include "otarig/reports/waivers.hpp"
#include "otarig/harness/journal.hpp"
#include "otarig/reports/bundle.hpp"
#include "otarig/reports/defects.hpp"
#include "otarig/reports/requirements.hpp"
#include "otarig/reports/run_view.hpp"

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
    if (!o.image1_version.empty()) j["image1"] = {{"version", o.image1_version}, {"digest", o.image1_digest}};
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

// What --force replaces: the evidence of an earlier campaign in `out`, never
// a folder of something else. Files the rig writes mark it as evidence.
void replace_out(const std::filesystem::path& out, const CampaignOptions::Spelling& sp) {
  std::error_code ec;
  if (!std::filesystem::is_directory(out, ec)) return;  // absent (or a file: prepare_out says so)
  bool empty = true, evidence = false;
  for (const auto& e : std::filesystem::directory_iterator(out, ec)) {
    empty = false;
    const auto name = e.path().filename().string();
    if (name == "journal.jsonl" || name == "run.json") evidence = true;
  }
  if (ec) throw InputError(fmt::format("{} {}: cannot read the folder: {}", sp.out, out.string(), ec.message()));
  if (empty) return;
  if (!evidence)
    throw InputError(fmt::format("{} {}: {} replaces only an evidence folder (one with journal.jsonl or run.json), "
                                 "and this one holds other files; give another {}",
                                 sp.out, out.string(), sp.force, sp.out));
  for (const auto& e : std::filesystem::directory_iterator(out)) {
    std::filesystem::remove_all(e.path(), ec);
    if (ec)
      throw InputError(fmt::format("{} {}: {}: cannot remove {}: {}", sp.out, out.string(), sp.force,
                                   e.path().string(), ec.message()));
  }
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
    // A delta scenario on a board that takes no deltas is skipped with that
    // reason when planned (or refused on its own): its releases are not asked for.
    if (leaf->delta && !profile.delta) continue;
    // A scenario skipped for what the board lacks (in a suite or on its own)
    // names releases the board need not define.
    const auto needs = [&](const char* n) { return std::find(leaf->needs.begin(), leaf->needs.end(), n) != leaf->needs.end(); };
    if ((!profile.reports_second_image() && needs(kNeedsSecondImage)) ||
        (!profile.encrypted() && needs(kNeedsEncryption)))
      continue;
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
  const auto waived = s.value("waived", std::uint64_t{0});
  const auto expired = s.value("expired_waivers", std::uint64_t{0});
  // Waived findings are never a PASS: all of them waived reads WAIVED.
  const char* verdict = !aborted.empty()                        ? "BENCH FAILURE"
                        : findings > waived || expired            ? "FINDINGS"
                        : findings                                ? "WAIVED"
                                                                  : "PASS";
  std::string waivers;
  if (waived) waivers += fmt::format(", {} waived", waived);
  if (expired) waivers += fmt::format(", {} waiver{} expired", expired, expired == 1 ? "" : "s");
  return fmt::format("{}: {} trials, {} passed, {} failed, {} finding{}{} (board {}, scenario {}, seed {})", verdict,
                     s.value("trials", std::uint64_t{0}), s.value("passed", std::uint64_t{0}),
                     s.value("failed", std::uint64_t{0}), findings, findings == 1 ? "" : "s", waivers,
                     run.value("board", nlohmann::json::object()).value("name", ""),
                     run.value("scenario", nlohmann::json::object()).value("name", ""),
                     run.value("seed", std::uint64_t{0}));
}

std::string replay_out(const std::string& out, const std::string& trial_id) {
  // A replay's own replay is numbered (OUT-replay-ID-2, -3, ...) instead of
  // growing a second -replay-ID.
  const std::string mark = "-replay-" + trial_id;
  if (out.size() > mark.size() && out.ends_with(mark)) return out + "-2";
  if (const auto at = out.rfind(mark + "-"); at != std::string::npos && at > 0) {
    const std::string n = out.substr(at + mark.size() + 1);
    std::uint64_t v = 0;
    const auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), v);
    if (ec == std::errc() && end == n.data() + n.size() && !n.empty() && n[0] != '0' && v < UINT32_MAX)
      return out.substr(0, at + mark.size()) + "-" + std::to_string(v + 1);
  }
  return out + mark;
}

std::string replay_command(const CampaignOptions& o, const std::string& trial_id, bool timed) {
  const std::string out = o.out.string().empty() ? std::string("otarig-out") : o.out.string();
  return fmt::format("otarig run --board {} --scenario {} --seed {} --trial {}{} --out {}", shell_quote(o.board),
                     shell_quote(o.scenario), o.seed, trial_id,
                     timed ? " --calibration " + shell_quote(out) : std::string(),
                     shell_quote(replay_out(out, trial_id)));
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

namespace {

// One campaign from its options to its bundle: check the input, plan, run the
// pending trials on one bench per job, journal each as it finishes, then
// write the bundle from the journal.
class Campaign {
 public:
  Campaign(const CampaignOptions& options, const Registries& registries)
      : o_(options),
        registries_(registries),
        profile_(load_profile(resolve_board(options.board))),
        scenario_(load_scenario(options.scenario, registries.faults)),
        releases_(profile_, registries.drivers),
        journal_file_(options.out / "journal.jsonl"),
        identity_(campaign_identity(options, profile_, scenario_)) {
    // The oracles and report writers are the registries' unless the caller
    // pointed the options at others (use_registries).
    // Each trial writes its console.log under --out as it reads the console.
    own_hooks_ = options.hooks;
    if (!own_hooks_.registered_oracles) own_hooks_.registered_oracles = &registries.oracles;
    own_hooks_.evidence_root = options.out;
    hooks_ = &own_hooks_;
    bundle_ = options.bundle;
    if (!bundle_.writers) bundle_.writers = &registries.reports;
  }

  CampaignResult run() {
    compliance_ = installed_compliance_catalog();
    given_timings();
    first_bench_and_plan();
    select_trials();
    if (o_.force) {
      if (o_.resume)
        throw InputError(fmt::format("{} and {}: give one: {} continues the campaign in {}, {} replaces it",
                                     o_.spelling.resume, o_.spelling.force, o_.spelling.resume, o_.spelling.out,
                                     o_.spelling.force));
      replace_out(o_.out, o_.spelling);
    } else if (!o_.resume && std::filesystem::exists(journal_file_)) {
      throw InputError(fmt::format("{}: a journal already exists; use {} to continue it, {} to replace it, or "
                                   "another {}",
                                   journal_file_.string(), o_.spelling.resume, o_.spelling.force, o_.spelling.out));
    }
    prepare_out(o_.out);
    open_journal();
    run_pending();
    if (!aborted_.empty()) {
      nlohmann::json failure{{"type", "bench-failure"}, {"detail", aborted_}};
      if (!aborted_evidence_.empty()) failure["evidence"] = aborted_evidence_;
      journal_->append(std::move(failure));
    }
    journal_.reset();
    return write_evidence();
  }

 private:
  // The timings behind time cuts a resume or --calibration gives (a resume
  // continues the campaign its journal began, or refuses before anything runs).
  void given_timings() {
    if (o_.jobs > 1 && !one_device_per_bench(profile_))
      throw InputError(fmt::format("--jobs {}: board {} ({}) is one {} device, so its trials run one at a time",
                                   o_.jobs, profile_.name, profile_.path.string(), profile_.device_kind));
    if (o_.resume) {
      journaled_ = read_journaled_campaign(journal_file_);
      if (!journaled_.start.is_null()) check_resume(journal_file_, journaled_.start, identity_);
    }
    given_ms_ = journaled_.calibration.value("update_ms", nlohmann::json::object());
    check_timings(given_ms_, journal_file_.string() + ": --resume: the journaled calibration");
    for (const auto& [key, ms] : given_ms_.items()) calibration_from_[key] = "journal";
    const auto from_option =
        o_.calibration ? load_calibration(*o_.calibration, profile_) : nlohmann::json::object();
    for (const auto& [key, ms] : from_option.items())
      if (!given_ms_.contains(key)) {
        given_ms_[key] = ms;
        calibration_from_[key] = o_.calibration->string();
      }
  }

  // Everything that can reject the input happens before the journal opens:
  // binding the first bench checks the profile's driver sections, then the
  // scenario's release names, then the plan (which the first bench measures).
  void first_bench_and_plan() {
    try {
      benches_.push_back(std::make_unique<Bench>(profile_, registries_.drivers, releases_, o_.seed));
    } catch (const BenchError& e) {
      aborted_ = e.what();
    }
    check_release_names(scenario_, profile_);
    if (!aborted_.empty()) return;
    try {
      auto abilities = board_abilities(*benches_[0], releases_);
      abilities.update_ms = [&, measure = abilities.update_ms](const std::string& start,
                                                               const std::string& deliver) {
        const auto key = start + "->" + deliver;
        if (auto it = given_ms_.find(key); it != given_ms_.end()) return it->get<std::uint64_t>();
        calibration_from_[key] = "measured";
        return measure ? measure(start, deliver) : std::uint64_t{0};
      };
      plan_ = make_plan(scenario_, o_.seed, abilities);
    } catch (const BenchError& e) {
      aborted_ = e.what();
    }
  }

  void select_trials() {
    // The timings this run measured itself are journaled so that a resume places its cuts alike.
    for (const auto& [key, ms] : plan_.update_ms)
      if (calibration_from_[key] == "measured") measured_[key] = ms;
    timed_ = !plan_.update_ms.empty();
    if (o_.trials) limit_plan(plan_, *o_.trials, o_.seed);
    if (o_.shards > 1) shard_plan(plan_, o_.shard, o_.shards);
    if (o_.only) {
      std::erase_if(plan_.trials, [&](const TrialSpec& t) { return t.index != *o_.only; });
      if (plan_.trials.empty() && aborted_.empty())
        throw InputError(fmt::format("--trial {}: the plan of {} with seed {} has no such trial", *o_.only,
                                     scenario_.name, o_.seed));
    }
  }

  void open_journal() {
    journal_ = std::make_unique<Journal>(journal_file_, o_.resume);
    started_ = iso_now();
    const auto& st = journal_->state();
    // The journal read again as it opened: it must be the campaign checked above.
    if (o_.resume && !st.campaign.is_null()) check_resume(journal_file_, st.campaign, identity_);
    journal_started_ = st.campaign.is_null() ? started_ : st.campaign.value("time", started_);
    if (st.campaign.is_null()) {
      nlohmann::json start = identity_;
      start["type"] = "campaign-start";
      start["planned"] = plan_.trials.size();
      start["git_revision"] = git_revision();
      start["calibration"] = {{"update_ms", plan_.update_ms}};
      journal_->append(std::move(start));
    } else {
      nlohmann::json resume{{"type", "campaign-resume"},
                            {"completed", st.completed_trials.size()},
                            {"dropped_lines", st.dropped_lines}};
      if (!measured_.empty()) resume["calibration"] = {{"update_ms", measured_}};
      journal_->append(std::move(resume));
    }
    for (const auto& t : plan_.trials)
      if (!st.completed_trials.count(t.index)) pending_.push_back(&t);
    progress_.total = plan_.trials.size();
    progress_.done = plan_.trials.size() - pending_.size();
    progress_.findings = st.failed_trials;
    already_done_ = progress_.done;
  }

  void run_pending() {
    if (!aborted_.empty() || pending_.empty()) return;
    jobs_ = std::max(1u, std::min<unsigned>(o_.jobs ? o_.jobs : default_jobs(profile_),
                                            static_cast<unsigned>(pending_.size())));
    try {
      for (unsigned w = 1; w < jobs_; ++w)
        benches_.push_back(std::make_unique<Bench>(profile_, registries_.drivers, releases_, o_.seed));
    } catch (const BenchError& e) {
      aborted_ = e.what();
      return;
    }
    t0_ = std::chrono::steady_clock::now();
    std::vector<std::thread> threads;
    for (unsigned w = 1; w < jobs_; ++w) threads.emplace_back([this, w] { worker(w); });
    worker(0);
    for (auto& t : threads) t.join();
  }

  void worker(unsigned w) {
    try {
      Bench* bench = nullptr;
      {
        std::lock_guard lock(mu_);
        bench = benches_[w].get();
      }
      // Contiguous chunks keep a worker's cut points increasing (the virtual
      // board's sweep cursor only moves forward); a small campaign takes
      // smaller chunks so that every worker gets some.
      const std::size_t chunk = std::clamp<std::size_t>(pending_.size() / (std::size_t{jobs_} * 4), 1, 16);
      while (!stop_) {
        const std::size_t begin = next_.fetch_add(chunk);
        if (begin >= pending_.size()) break;
        const std::size_t end = std::min(pending_.size(), begin + chunk);
        for (std::size_t i = begin; i < end && !stop_; ++i) run_one(*bench, *pending_[i]);
      }
    } catch (const TrialBenchError& e) {
      // The bench failed a trial before its verdict: what the trial saw (its
      // console, the device's exit status) stays in its evidence folder.
      std::lock_guard lock(mu_);
      std::string where;
      try {
        where = write_bench_failure_evidence(o_.out, e.partial(), e.failure());
      } catch (const std::exception& write_error) {
        where = fmt::format("(not written: {})", write_error.what());
      }
      if (aborted_.empty()) {
        aborted_ = e.what();
        aborted_evidence_ = where;
      }
      stop_ = true;
    } catch (const InputError& e) {
      // Input only a trial can judge (a release a fault builds on): the run
      // stops as bad input, exit 2, after its evidence is written.
      std::lock_guard lock(mu_);
      if (aborted_.empty()) aborted_ = e.what();
      if (bad_input_.empty()) bad_input_ = e.what();
      stop_ = true;
    } catch (const std::exception& e) {
      std::lock_guard lock(mu_);
      if (aborted_.empty()) aborted_ = e.what();
      stop_ = true;
    }
  }

  // One trial: run, write its folder, journal its block; nothing of it stays.
  void run_one(Bench& bench, const TrialSpec& spec) {
    auto outcome = run_trial(bench, releases_, spec, hooks_);
    auto summary = trial_summary(outcome);
    write_trial_evidence(o_.out, outcome, summary);
    std::vector<nlohmann::json> block;
    block.push_back({{"type", "trial-start"}, {"trial", spec.id}, {"scenario", spec.scenario->name},
                     {"fault", spec.fault_json()}});
    for (auto e : outcome.events) {
      e["trial"] = spec.id;
      block.push_back(std::move(e));
    }
    summary["type"] = "verdict";
    summary["trial"] = spec.id;
    block.push_back(std::move(summary));
    journal_->append_block(std::move(block));
    std::lock_guard lock(mu_);
    ++progress_.done;
    if (!outcome.passed) {
      ++progress_.findings;
      if (o_.on_finding)
        o_.on_finding(fmt::format("finding: trial {} ({}) broke {} -- replay: {}", spec.id, spec.scenario->name,
                                  fmt::join(outcome.broken(), ", "), replay_command(o_, spec.id, timed_)));
    }
    progress_.last_trial = spec.id;
    progress_.last_passed = outcome.passed;
    progress_.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    const auto run_here = progress_.done - already_done_;
    progress_.eta_s = run_here ? progress_.elapsed_s / static_cast<double>(run_here) *
                                     static_cast<double>(progress_.total - progress_.done)
                               : 0;
    if (o_.on_progress) o_.on_progress(progress_);
  }

  // run.json's trials and findings, read from the journal's verdicts (this
  // run's and resumed ones) one at a time when the bundle is written.
  reports::RunView trials_from_journal(CampaignResult& result) {
    std::vector<reports::VerdictLine> verdicts;
    try {
      verdicts = reports::verdict_lines(journal_file_);
    } catch (const std::runtime_error& e) {
      throw BenchError(e.what());
    }
    std::vector<std::uint64_t> findings;
    for (const auto& v : verdicts)
      if (!v.passed) findings.push_back(v.offset);
    result.trials = verdicts.size();
    result.failed = findings.size();
    result.passed = result.trials - result.failed;
    result.findings = findings.size();
    reports::RunView view;
    view.trials = reports::trials_of(journal_file_, verdicts);
    view.findings = reports::RecordList::of_lines(
        journal_file_, std::move(findings), [options = o_, timed = timed_](nlohmann::json v, std::size_t k) {
          nlohmann::json f;
          f["id"] = fmt::format("F{:04d}", k + 1);
          f["trial"] = v["id"];
          f["scenario"] = v["scenario"];
          f["seed"] = v["seed"];
          f["fault"] = v["fault"];
          f["oracles"] = v["broken"];
          f["observed"] = v["observed"];
          f["requirements"] = v["requirements"];
          f["transcript"] = v.value("evidence", "") + "/console.log";
          f["replay"] = replay_command(options, v.value("id", ""), timed);
          return f;
        });
    return view;
  }

  CampaignResult write_evidence() {
    CampaignResult result;
    result.out = o_.out;
    result.aborted = aborted_;
    auto view = trials_from_journal(result);
    view.head = run_head(result);
    try {
      view.head["requirements"] = reports::requirement_results(view);
      view.head["defects"] = reports::defect_results(view);
      if (!profile_.waivers.empty()) {
        nlohmann::json declared = nlohmann::json::array();
        for (const auto& w : profile_.waivers)
          declared.push_back({{"id", w.id},
                              {"scenario", w.scenario},
                              {"oracles", w.oracles},
                              {"reason", w.reason},
                              {"expires", w.expires}});
        // Judged on the day the campaign began (a resume keeps it).
        const auto wc = reports::judge_waivers(view.head, declared);
        result.waived = wc.waived;
        result.expired_waivers = wc.expired;
      }
    } catch (const std::runtime_error& e) {
      throw BenchError(e.what());
    }
    reports::write_bundle(o_.out, view, bundle_);
    if (!bad_input_.empty()) throw InputError(bad_input_);
    result.run = o_.whole_run_in_result ? view.materialize() : std::move(view.head);
    return result;
  }

  nlohmann::json board_json() const {
    nlohmann::json board = {{"name", profile_.name},
                            {"description", profile_.description},
                            {"profile", profile_.path.string()},
                            {"profile_sha256", profile_.sha256},
                            {"device_kind", profile_.device_kind},
                            {"identity", benches_.empty() ? "" : benches_[0]->identity()},
                            {"image_identity", profile_.observe.identity.json()}};
    // A profile that lets the update server offer a legacy device TLS 1.2
    // CBC-mode suites says so in the evidence.
    if (auto net = profile_.root.at("device").find("network"); net && net->is_map() && net->has("tls"))
      board["tls_cipher_suites"] =
          net->bool_or("legacy_ciphers", false) ? "legacy (TLS 1.2 CBC-mode suites too)" : "aead";
    // How a power cut treats the device's storage (docs/crash-model.md): the
    // crash model, or a process kill with the profile's reason.
    if (!benches_.empty() && !benches_[0]->parts().power_loss.empty())
      board["power_loss"] = benches_[0]->parts().power_loss;
    return board;
  }

  nlohmann::json scenario_json() const {
    nlohmann::json parts = nlohmann::json::array();
    for (const auto* leaf : scenario_.leaves())
      parts.push_back({{"name", leaf->name},
                       {"title", leaf->title},
                       {"classes", leaf->classes},
                       {"requirements", leaf->requirements},
                       {"fault", leaf->fault.kind}});
    return {{"name", scenario_.name},
            {"title", scenario_.title},
            {"requirements", scenario_.requirements},
            {"classes", scenario_.classes},
            {"parts", parts}};
  }

  // Where each timing came from: measured by this run, journaled by the run
  // that began the campaign (a resume), or --calibration's evidence.
  nlohmann::json calibration_json() {
    nlohmann::json all_ms = journaled_.calibration.value("update_ms", nlohmann::json::object());
    for (const auto& [key, ms] : plan_.update_ms) all_ms[key] = ms;
    nlohmann::json sources = nlohmann::json::object();
    for (const auto& [key, ms] : all_ms.items()) sources[key] = calibration_from_[key];
    return {{"update_ms", all_ms}, {"from", sources}};
  }

  // run.json but its trials and findings.
  nlohmann::json run_head(const CampaignResult& result) {
    nlohmann::json run;
    run["otarig"] = {{"version", version_string()}, {"git_revision", git_revision()}};
    run["board"] = board_json();
    run["scenario"] = scenario_json();
    run["compliance"] = compliance_;
    run["mechanism"] = update_mechanism(profile_, releases_, benches_.empty() ? nullptr : &benches_[0]->parts());
    run["seed"] = o_.seed;
    run["shard"] = {{"index", o_.shard}, {"count", o_.shards}};
    run["started"] = journal_started_.empty() ? iso_now() : journal_started_;
    run["ended"] = iso_now();
    nlohmann::json rel = nlohmann::json::array();
    for (const auto& r : releases_.all())
      rel.push_back({{"name", r.name},
                     {"version", r.version},
                     {"security_counter", r.security_counter},
                     {"size", r.bytes.size()},
                     {"sha256", crypto::hex(crypto::sha256(r.bytes))},
                     {"digest", r.digest}});
    run["releases"] = rel;
    run["ops_per_update"] = plan_.ops_per_update;
    if (!plan_.storage_ops_per_update.empty()) run["storage_ops_per_update"] = plan_.storage_ops_per_update;
    if (!plan_.update_ms.empty()) run["update_ms"] = plan_.update_ms;
    run["calibration"] = calibration_json();
    nlohmann::json skipped = nlohmann::json::array();
    for (const auto& k : plan_.skipped) skipped.push_back({{"scenario", k.scenario}, {"reason", k.reason}});
    run["skipped"] = skipped;
    nlohmann::json components = {{"otarig", version_string()}};
    if (!benches_.empty())
      for (const auto& [k, v] : benches_[0]->parts().component_versions) components[k] = v;
    run["components"] = components;
    run["planned"] = plan_.trials.size();
    run["summary"] = {{"trials", result.trials},
                      {"passed", result.passed},
                      {"failed", result.failed},
                      {"findings", result.findings}};
    if (!aborted_.empty()) run["aborted"] = aborted_;
    if (!aborted_evidence_.empty()) run["aborted_evidence"] = aborted_evidence_;
    return run;
  }

  const CampaignOptions& o_;
  const Registries& registries_;
  const BoardProfile profile_;
  const Scenario scenario_;
  const ReleaseSet releases_;
  const std::filesystem::path journal_file_;
  const nlohmann::json identity_;
  const TrialHooks* hooks_ = &o_.hooks;
  nlohmann::json compliance_;  // the requirement catalog run.json records
  TrialHooks own_hooks_;  // the options' hooks, the registries' oracles by default, --out
  reports::BundleOptions bundle_;
  JournaledCampaign journaled_;
  nlohmann::json given_ms_;
  std::map<std::string, std::string> calibration_from_;  // pair -> "journal", --calibration's path, "measured"
  nlohmann::json measured_ = nlohmann::json::object();
  std::vector<std::unique_ptr<Bench>> benches_;
  Plan plan_;
  bool timed_ = false;
  std::unique_ptr<Journal> journal_;
  std::string started_, journal_started_;
  std::vector<const TrialSpec*> pending_;
  unsigned jobs_ = 1;
  std::mutex mu_;
  std::atomic<std::size_t> next_{0};
  std::atomic<bool> stop_{false};
  Progress progress_;
  std::chrono::steady_clock::time_point t0_;
  std::size_t already_done_ = 0;
  std::string aborted_;
  std::string bad_input_;  // an InputError a trial raised
  std::string aborted_evidence_;  // the failed trial's evidence folder (TrialBenchError)
};

}  // namespace

CampaignResult run_campaign(const CampaignOptions& options, const Registries& registries) {
  if (options.shards == 0 || options.shard >= options.shards)
    throw InputError(fmt::format("--shard {}/{}: the shard index must be below the shard count", options.shard,
                                 options.shards));
  // An unreadable signing key is bad input: say so before any trial runs.
  if (options.bundle.signing_key) (void)crypto::Ed25519Key::load_pem(*options.bundle.signing_key);
  Campaign campaign(options, registries);
  return campaign.run();
}

}  // namespace otarig::harness
