#include "otarig/harness/campaign.hpp"

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
#include <mutex>
#include <thread>

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
  j["duration_ms"] = t.duration_ms;
  j["evidence"] = "trials/" + t.spec.id;
  return j;
}

namespace {

void write_text(const std::filesystem::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw BenchError(fmt::format("{}: cannot write", p.string()));
}

void write_trial_dir(const std::filesystem::path& out, const TrialOutcome& t, const nlohmann::json& summary) {
  if (!is_plain_name(t.spec.id))
    throw BenchError(fmt::format("trial id '{}' is not a plain file name", t.spec.id));
  auto dir = out / "trials" / t.spec.id;
  std::filesystem::create_directories(dir);
  // console.log shows control bytes escaped; the bytes as the device sent
  // them go to console.raw when anything needed escaping.
  std::string console, raw;
  bool escaped = false;
  for (const auto& line : t.transcript) {
    const auto stamp = fmt::format("[{:10.3f} ms] ", line.t_ms);
    console += stamp + reports::printable_console_text(line.text, &escaped) + "\n";
    raw += stamp + line.text + "\n";
  }
  write_text(dir / "console.log", console);
  if (escaped) write_text(dir / "console.raw", raw);
  std::string events;
  for (const auto& e : t.events) events += e.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  write_text(dir / "events.jsonl", events);
  write_text(dir / "verdict.json", summary.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

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

std::string replay_command(const CampaignOptions& o, const std::string& trial_id) {
  return fmt::format("otarig run --board {} --scenario {} --seed {} --trial {} --out {}", shell_quote(o.board),
                     shell_quote(o.scenario), o.seed, trial_id,
                     shell_quote((o.out.string().empty() ? std::string("otarig-out") : o.out.string()) + "-replay-" +
                                 trial_id));
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

  // Everything that can reject the input happens before the journal opens:
  // binding the first bench checks the profile's driver sections, then the
  // scenario's release names, then the plan (which the first bench measures).
  std::vector<std::unique_ptr<Bench>> benches;
  std::string aborted;
  Plan plan;
  try {
    benches.push_back(std::make_unique<Bench>(profile, registry, releases, options.seed));
  } catch (const BenchError& e) {
    aborted = e.what();
  }
  check_release_names(scenario, profile);
  if (aborted.empty()) {
    try {
      plan = make_plan(scenario, options.seed, board_abilities(*benches[0], releases));
    } catch (const BenchError& e) {
      aborted = e.what();
    }
  }
  if (options.trials) limit_plan(plan, *options.trials, options.seed);
  if (options.shards > 1) shard_plan(plan, options.shard, options.shards);
  if (options.only) {
    std::erase_if(plan.trials, [&](const TrialSpec& t) { return t.index != *options.only; });
    if (plan.trials.empty() && aborted.empty())
      throw InputError(fmt::format("--trial {}: the plan of {} with seed {} has no such trial", *options.only,
                                   scenario.name, options.seed));
  }

  prepare_out(options.out);
  Journal journal(options.out / "journal.jsonl", options.resume);
  const auto started = iso_now();

  const auto& st = journal.state();
  if (options.resume && !st.campaign.is_null()) {
    auto same = [&](const char* key, const nlohmann::json& v) { return st.campaign.value(key, nlohmann::json()) == v; };
    if (!same("seed", options.seed) || !same("scenario", scenario.name) || !same("board", profile.name))
      throw InputError(fmt::format("{}: --resume: the journal belongs to another campaign (board {}, scenario {}, "
                                   "seed {})",
                                   (options.out / "journal.jsonl").string(), st.campaign.value("board", ""),
                                   st.campaign.value("scenario", ""), st.campaign.value("seed", 0)));
  }
  if (st.campaign.is_null()) {
    journal.append({{"type", "campaign-start"},
                    {"board", profile.name},
                    {"board_sha256", profile.sha256},
                    {"scenario", scenario.name},
                    {"seed", options.seed},
                    {"planned", plan.trials.size()},
                    {"shard", fmt::format("{}/{}", options.shard, options.shards)},
                    {"otarig", version_string()},
                    {"git_revision", git_revision()}});
  } else {
    journal.append({{"type", "campaign-resume"},
                    {"completed", st.completed_trials.size()},
                    {"dropped_lines", st.dropped_lines}});
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
  for (const auto& v : st.verdicts)
    if (v.value("verdict", "") == "fail") ++progress.findings;
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
      // board's sweep cursor only moves forward).
      constexpr std::size_t kChunk = 16;
      while (!stop) {
        std::size_t begin = next.fetch_add(kChunk);
        if (begin >= pending.size()) break;
        std::size_t end = std::min(pending.size(), begin + kChunk);
        for (std::size_t i = begin; i < end && !stop; ++i) {
          const TrialSpec& spec = *pending[i];
          auto outcome = run_trial(*bench, releases, spec, &options.hooks);
          auto summary = trial_summary(outcome);
          write_trial_dir(options.out, outcome, summary);
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
                                             replay_command(options, spec.id)));
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
  if (!aborted.empty()) journal.append({{"type", "bench-failure"}, {"detail", aborted}});

  // run.json from every verdict in the journal (this run's and resumed ones).
  std::vector<nlohmann::json> verdicts = journal.state().verdicts;
  std::sort(verdicts.begin(), verdicts.end(),
            [](const auto& a, const auto& b) { return a.value("index", 0) < b.value("index", 0); });
  nlohmann::json trials = nlohmann::json::array();
  nlohmann::json findings = nlohmann::json::array();
  for (auto v : verdicts) {
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
      f["replay"] = replay_command(options, v.value("id", ""));
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
                  {"identity", benches.empty() ? "" : benches[0]->identity()}};
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
  run["trials"] = trials;
  run["findings"] = findings;
  result.run = run;

  reports::write_bundle(options.out, run, options.bundle);
  return result;
}

}  // namespace otarig::harness
