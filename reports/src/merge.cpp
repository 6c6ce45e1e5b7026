#include "otarig/reports/merge.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <map>
#include <fstream>
#include <optional>
#include <set>
#include <unordered_map>

#include "detail.hpp"
#include "otarig/core/errors.hpp"
#include "otarig/reports/attestation.hpp"
#include "otarig/reports/defects.hpp"
#include "otarig/reports/waivers.hpp"
#include "otarig/reports/requirements.hpp"
#include "otarig/reports/run_view.hpp"
#include "otarig/reports/verify.hpp"

namespace otarig::reports {

namespace {

using nlohmann::json;
using nlohmann::ordered_json;

std::string utc_now() {
  using namespace std::chrono;
  auto now = system_clock::now();
  auto t = system_clock::to_time_t(now);
  auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03d}Z", buf, ms);
}

// Files a merge writes anew rather than copies.
bool regenerated(const std::string& rel) {
  static const std::set<std::string> names = {"run.json",       "junit.xml",     "summary.md",
                                              "report.html",    "journal.jsonl", kManifestFile,
                                              kAttestationFile, kPublicKeyFile};
  return names.count(rel) > 0;
}

// A run of consecutive journal lines: one trial's block.
struct Block {
  std::uint64_t index = 0;   ///< the trial's index (from its verdict)
  std::uint64_t offset = 0;  ///< where its first line starts
  std::uint64_t lines = 0;
};

// A shard as the merge holds it: run.json without its trials and findings,
// where its journal's trial blocks are, and its findings (a trial that passed
// is held as the few bytes that place it).
struct Shard {
  std::filesystem::path dir;
  json run;  // run.json without "trials" and "findings"
  unsigned index = 0;
  unsigned count = 1;
  std::string label;  // "I/N"
  std::string manifest_sha256, run_sha256, journal_sha256, keyid;
  bool test_key = true;
  ordered_json campaign_start;
  std::vector<ordered_json> campaign_events;  // other events outside trial blocks
  std::vector<Block> blocks;                  // trial blocks ending with a verdict, by trial index
  std::vector<Block> unfinished;              // trial events without a verdict
  std::size_t journal_lines = 0;
  std::vector<std::pair<std::uint64_t, std::string>> trials;  // run.json's trials: index and id
  std::size_t findings = 0;
  std::map<std::string, json> finding_of;  // trial id -> its finding in the shard
};

// Re-chains journal events into a file: {seq, ...fields in their order..., prev_sha256}.
class ChainWriter {
 public:
  explicit ChainWriter(std::ostream& out) : out_(out) {}
  void add(const ordered_json& event) {
    ordered_json line = ordered_json::object();
    line["seq"] = seq_++;
    for (const auto& [k, v] : event.items())
      if (k != "seq" && k != "prev_sha256") line[k] = v;
    line["prev_sha256"] = prev_;
    auto text = line.dump(-1, ' ', false, json::error_handler_t::replace);
    prev_ = detail::sha256_hex(text);
    out_ << text << '\n';
  }

 private:
  std::ostream& out_;
  std::uint64_t seq_ = 0;
  std::string prev_;
};

// The lines of a block, read again from its shard's journal (which verified:
// every line is JSON and no longer than a journal line may be).
void copy_block(std::ifstream& journal, const Block& b, ChainWriter& to) {
  journal.clear();
  journal.seekg(static_cast<std::streamoff>(b.offset));
  std::string line;
  for (std::uint64_t k = 0; k < b.lines && std::getline(journal, line); ++k) to.add(ordered_json::parse(line));
}

Shard read_shard(const std::filesystem::path& dir, const VerifyResult& result);

Shard load_shard(const std::filesystem::path& dir, const MergeOptions& options) {
  auto result = verify_bundle(dir, options.trusted_key);
  if (result.status == VerifyResult::Status::not_a_bundle)
    throw InputError(
        fmt::format("{}: not an evidence bundle (no manifest-sha256.txt, no run.json)", dir.string()));
  if (!result.ok()) {
    const auto& p = result.problems.front();
    throw InputError(fmt::format("{}: shard does not verify: {}{}: {}", dir.string(), p.file,
                                 p.line && p.file != "journal.jsonl" ? fmt::format(":{}", p.line) : "",
                                 p.detail));
  }
  try {
    return read_shard(dir, result);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(
        fmt::format("{}: run.json or journal.jsonl is not as otarig writes it: {}", dir.string(), e.what()));
  }
}

// run.json one trial at a time: its trials are kept as index and id, its
// findings whole.
void read_run(Shard& s) {
  std::ifstream in(s.dir / "run.json", std::ios::binary);
  std::string top_key;
  s.run = json::parse(in, [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key) top_key = parsed.is_string() ? parsed.get<std::string>() : "";
    const bool element = depth == 2 && (event == json::parse_event_t::object_end ||
                                        event == json::parse_event_t::array_end || event == json::parse_event_t::value);
    if (!element || (top_key != "trials" && top_key != "findings")) return true;
    if (top_key == "trials") {
      s.trials.emplace_back(parsed.value("index", std::uint64_t{0}), detail::text(parsed, "id"));
    } else {
      ++s.findings;
      s.finding_of[detail::text(parsed, "trial")] = parsed;
    }
    return false;
  });
  s.run.erase("trials");
  s.run.erase("findings");
}

// The journal one line at a time: its campaign events, and where each
// trial's block is.
void read_journal(Shard& s) {
  detail::LineReader reader(s.dir / "journal.jsonl", RecordList::kMaxRecordBytes);
  std::optional<Block> block;
  ordered_json block_trial;
  auto unfinished = [&] {
    if (block) s.unfinished.push_back(*block);
    block.reset();
  };
  while (auto l = reader.next()) {
    auto ev = ordered_json::parse(l->text);
    bool in_trial = ev.contains("trial") && !ev["trial"].is_null();
    auto type = ev.value("type", std::string());
    if (!in_trial) {
      unfinished();
      if (type == "campaign-start" && s.campaign_start.is_null())
        s.campaign_start = ev;
      else
        s.campaign_events.push_back(ev);
      continue;
    }
    if (block && block_trial != ev["trial"]) unfinished();
    if (!block) {
      block = Block{0, reader.offset(), 0};
      block_trial = ev["trial"];
    }
    ++block->lines;
    if (type == "verdict") {
      block->index = ev.value("index", std::uint64_t{0});
      s.blocks.push_back(*block);
      block.reset();
    }
  }
  unfinished();
  s.journal_lines = reader.count();
  // One block a trial index, the last journaled (as a map keeps it).
  std::stable_sort(s.blocks.begin(), s.blocks.end(), [](const Block& a, const Block& b) { return a.index < b.index; });
  std::vector<Block> unique;
  for (const auto& b : s.blocks) {
    if (!unique.empty() && unique.back().index == b.index)
      unique.back() = b;
    else
      unique.push_back(b);
  }
  s.blocks = std::move(unique);
}

Shard read_shard(const std::filesystem::path& dir, const VerifyResult& result) {
  Shard s;
  s.dir = dir;
  read_run(s);
  const auto shard = s.run.value("shard", json::object());
  s.index = shard.value("index", 0u);
  s.count = shard.value("count", 1u);
  s.label = fmt::format("{}/{}", s.index, s.count);
  s.manifest_sha256 = *detail::sha256_file(dir / kManifestFile);
  s.run_sha256 = *detail::sha256_file(dir / "run.json");
  s.journal_sha256 = *detail::sha256_file(dir / "journal.jsonl");
  s.keyid = result.keyid;
  s.test_key = result.test_key;
  read_journal(s);
  return s;
}

void same(const Shard& a, const Shard& b, const char* what, const json& va, const json& vb) {
  if (va != vb)
    throw InputError(fmt::format("{}: belongs to another campaign: {} is {} here but {} in {}",
                                 b.dir.string(), what, vb.dump(), va.dump(), a.dir.string()));
}

json release_digests(const json& run) {
  json d = json::array();
  for (const auto& r : run.value("releases", json::array()))
    d.push_back({r.value("name", ""), r.value("sha256", "")});
  return d;
}

// Copies from/rel to to/rel; a file already there means two shards claim it.
void copy_file(const std::filesystem::path& from, const std::filesystem::path& to, const Shard& s,
               const std::string& rel) {
  if (std::filesystem::exists(to / rel))
    throw InputError(
        fmt::format("{}: {} is also in another shard (the shards' trials overlap)", s.dir.string(), rel));
  std::filesystem::create_directories((to / rel).parent_path());
  std::filesystem::copy_file(from / rel, to / rel);
}

// No trial (by index or id) in two shards.
void check_disjoint(const std::vector<Shard>& shards) {
  std::unordered_map<std::uint64_t, const Shard*> owner;
  std::unordered_map<std::string, const Shard*> owner_id;
  for (const auto& s : shards)
    for (const auto& [index, id] : s.trials) {
      auto by_index = owner.find(index);
      auto by_id = owner_id.find(id);
      if (by_index != owner.end() || by_id != owner_id.end()) {
        const Shard* o = by_index != owner.end() ? by_index->second : by_id->second;
        throw InputError(fmt::format("{}: trial {} is also in {} (the shards' trials overlap)", s.dir.string(),
                                     id, o->dir.string()));
      }
      owner.emplace(index, &s);
      owner_id.emplace(id, &s);
    }
}

// The merged journal: campaign-start, a merged-from event a shard, the
// shards' campaign events, every trial's block in index order, then the
// unfinished blocks. Returns whether one calibration speaks for every shard.
bool write_journal(const std::vector<Shard>& shards, const std::filesystem::path& file) {
  const Shard& first = shards.front();
  std::size_t planned = 0;
  for (const auto& s : shards) planned += s.run.value("planned", std::size_t{0});
  ordered_json start =
      first.campaign_start.is_null() ? ordered_json{{"type", "campaign-start"}} : first.campaign_start;
  std::string earliest = start.value("time", std::string());
  for (const auto& s : shards)
    if (!s.campaign_start.is_null() && s.campaign_start.value("time", earliest) < earliest)
      earliest = s.campaign_start.value("time", earliest);
  if (!earliest.empty()) start["time"] = earliest;
  if (start.contains("planned")) start["planned"] = planned;
  if (start.contains("shard")) start["shard"] = "0/1";
  // Each shard timed its own clean update for its cuts placed by time: one
  // calibration speaks for the merged campaign only when they all agree.
  bool one_calibration = true;
  for (const auto& s : shards)
    one_calibration = one_calibration && s.run.value("calibration", json()) == first.run.value("calibration", json());
  if (!one_calibration) start.erase("calibration");
  start["merged_shards"] = shards.size();
  detail::write_stream(file, [&](std::ostream& out) {
    ChainWriter journal(out);
    journal.add(start);
    for (const auto& s : shards) {
      journal.add({{"time", utc_now()},
                   {"type", "merged-from"},
                   {"trial", nullptr},
                   {"shard", s.label},
                   {"source", s.dir.string()},
                   {"manifest_sha256", s.manifest_sha256},
                   {"run_sha256", s.run_sha256},
                   {"journal_sha256", s.journal_sha256},
                   {"journal_lines", s.journal_lines},
                   {"trials", s.blocks.size()},
                   {"keyid", s.keyid}});
      for (auto ev : s.campaign_events) {
        ev["shard"] = s.label;
        journal.add(ev);
      }
    }
    std::vector<std::ifstream> sources;
    for (const auto& s : shards) sources.emplace_back(s.dir / "journal.jsonl", std::ios::binary);
    std::vector<std::pair<const Block*, std::size_t>> blocks;  // block, shard
    for (std::size_t k = 0; k < shards.size(); ++k)
      for (const auto& b : shards[k].blocks) blocks.emplace_back(&b, k);
    std::stable_sort(blocks.begin(), blocks.end(),
                     [](const auto& a, const auto& b) { return a.first->index < b.first->index; });
    for (const auto& [b, k] : blocks) copy_block(sources[k], *b, journal);
    for (std::size_t k = 0; k < shards.size(); ++k)
      for (const auto& b : shards[k].unfinished) copy_block(sources[k], b, journal);
  });
  return one_calibration;
}

// run.json's facts for the merged campaign (its trials and findings are read
// from the merged journal as the bundle is written).
json merged_head(const std::vector<Shard>& shards, const RunView& view, bool one_calibration,
                 const std::vector<unsigned>& missing) {
  const Shard& first = shards.front();
  json run = first.run;
  std::size_t planned = 0, failed = view.findings.size();
  for (const auto& s : shards) planned += s.run.value("planned", std::size_t{0});
  run["summary"] = {{"trials", view.trials.size()},
                    {"passed", view.trials.size() - failed},
                    {"failed", failed},
                    {"findings", failed}};
  run["shard"] = {{"index", 0}, {"count", 1}};
  run["planned"] = planned;
  std::string started = detail::text(first.run, "started"), ended = detail::text(first.run, "ended");
  std::vector<std::string> identities, aborted;
  json merged_from = json::array();
  for (const auto& s : shards) {
    auto st = detail::text(s.run, "started"), en = detail::text(s.run, "ended");
    if (!st.empty() && (started.empty() || st < started)) started = st;
    if (en > ended) ended = en;
    auto identity = detail::text(s.run.value("board", json::object()), "identity");
    if (!identity.empty() && std::find(identities.begin(), identities.end(), identity) == identities.end())
      identities.push_back(identity);
    if (s.run.contains("aborted"))
      aborted.push_back(fmt::format("shard {}: {}", s.label, detail::text(s.run, "aborted")));
    merged_from.push_back({{"shard", s.label},
                           {"source", s.dir.string()},
                           {"manifest_sha256", s.manifest_sha256},
                           {"run_sha256", s.run_sha256},
                           {"keyid", s.keyid},
                           {"test_key", s.test_key},
                           {"trials", s.trials.size()},
                           {"findings", s.findings},
                           {"started", detail::text(s.run, "started")},
                           {"ended", detail::text(s.run, "ended")},
                           {"identity", identity},
                           {"components", s.run.value("components", json::object())}});
    if (s.run.contains("calibration")) merged_from.back()["calibration"] = s.run["calibration"];
  }
  if (!one_calibration) {
    run.erase("calibration");
    run.erase("update_ms");
  }
  run["started"] = started;
  run["ended"] = ended;
  if (identities.size() > 1) {
    std::string joined;
    for (const auto& i : identities) joined += (joined.empty() ? "" : ", ") + i;
    run["board"]["identity"] = joined;
  }
  run.erase("aborted");
  if (!aborted.empty()) {
    std::string joined;
    for (const auto& a : aborted) joined += (joined.empty() ? "" : "; ") + a;
    run["aborted"] = joined;
  }
  run["merged_from"] = merged_from;
  if (!missing.empty()) run["missing_shards"] = missing;
  return run;
}

// The merged run: trials from the merged journal's verdicts in index order,
// findings renumbered, each the shard's finding for its trial.
RunView merged_run(const std::vector<Shard>& shards, const std::filesystem::path& journal, bool one_calibration,
                   const std::vector<unsigned>& missing) {
  std::vector<VerdictLine> verdicts;
  try {
    verdicts = verdict_lines(journal);
  } catch (const std::runtime_error& e) {
    throw InputError(e.what());
  }
  std::vector<std::uint64_t> failed;
  for (const auto& v : verdicts)
    if (!v.passed) failed.push_back(v.offset);
  RunView view;
  view.trials = trials_of(journal, verdicts);
  view.findings = RecordList::of_lines(journal, std::move(failed), [&shards](json v, std::size_t k) {
    const auto t = trial_entry(std::move(v));
    const auto id = detail::text(t, "id");
    json f = json::object();
    for (const auto& s : shards)
      if (auto it = s.finding_of.find(id); it != s.finding_of.end()) f = it->second;
    f["id"] = fmt::format("F{:04d}", k + 1);
    f["trial"] = t["id"];
    for (const char* key : {"scenario", "seed", "fault", "requirements", "observed"})
      if (!f.contains(key) && t.contains(key)) f[key] = t[key];
    if (!f.contains("oracles")) f["oracles"] = t.value("broken", json::array());
    if (!f.contains("transcript")) f["transcript"] = detail::text(t, "evidence") + "/console.log";
    return f;
  });
  view.head = merged_head(shards, view, one_calibration, missing);
  // What the merged trials give evidence for (a shard's own is of its trials only).
  try {
    view.head["requirements"] = requirement_results(view);
    // The defects of every shard's trials together: a window of cuts may span shards.
    view.head["defects"] = defect_results(view);
    // The profile's waivers over the merged defects, judged on the day the
    // merged campaign began.
    if (view.head.contains("waivers") && view.head["waivers"].is_object())
      judge_waivers(view.head, view.head["waivers"].value("declared", json::array()));
  } catch (const std::runtime_error& e) {
    throw InputError(e.what());
  }
  return view;
}

json merge(const std::vector<std::filesystem::path>& dirs, std::filesystem::path out,
           const MergeOptions& options) {
  if (dirs.empty()) throw InputError("otarig report merge: name at least one shard bundle");
  // "M/" names the folder M: the staging folder is its sibling "M.merging",
  // never a folder inside it.
  while (!out.empty() && !out.has_filename() && out != out.root_path()) out = out.parent_path();
  if (out.empty() || out == out.root_path() || out.filename() == "." || out.filename() == "..")
    throw InputError(fmt::format("--out {}: name a new folder for the merged bundle", out.string()));
  if (std::filesystem::exists(out) &&
      (!std::filesystem::is_directory(out) || !std::filesystem::is_empty(out)))
    throw InputError(
        fmt::format("{}: exists and is not an empty folder; merge into a new folder", out.string()));

  std::vector<Shard> shards;
  for (const auto& d : dirs) shards.push_back(load_shard(d, options));
  std::sort(shards.begin(), shards.end(), [](const Shard& a, const Shard& b) { return a.index < b.index; });

  // One campaign: the same board, scenario, seed, releases, rig and shard count.
  const Shard& first = shards.front();
  for (std::size_t i = 1; i < shards.size(); ++i) {
    const Shard& s = shards[i];
    const auto& ra = first.run;
    const auto& rb = s.run;
    auto board = [](const json& r) { return r.value("board", json::object()); };
    auto scenario = [](const json& r) { return r.value("scenario", json::object()); };
    same(first, s, "the board", board(ra).value("name", json()), board(rb).value("name", json()));
    same(first, s, "the board profile's SHA-256", board(ra).value("profile_sha256", json()),
         board(rb).value("profile_sha256", json()));
    same(first, s, "the scenario", scenario(ra).value("name", json()), scenario(rb).value("name", json()));
    same(first, s, "the seed", ra.value("seed", json()), rb.value("seed", json()));
    same(first, s, "the releases", release_digests(ra), release_digests(rb));
    same(first, s, "the otarig version", ra.value("otarig", json::object()),
         rb.value("otarig", json::object()));
    same(first, s, "the shard count", json(first.count), json(s.count));
    if (s.index == shards[i - 1].index)
      throw InputError(fmt::format("{}: shard {} is given twice (also {})", s.dir.string(), s.label,
                                   shards[i - 1].dir.string()));
  }
  for (const auto& s : shards)
    if (s.index >= s.count)
      throw InputError(fmt::format("{}: shard index {} is not below its count", s.dir.string(), s.label));
  std::vector<unsigned> missing;
  for (unsigned k = 0; k < first.count; ++k)
    if (std::none_of(shards.begin(), shards.end(), [&](const Shard& s) { return s.index == k; }))
      missing.push_back(k);
  if (!missing.empty() && !options.allow_missing_shards)
    throw InputError(fmt::format("{}: the campaign has {} shards but shard(s) {} are not given",
                                 first.dir.string(), first.count, json(missing).dump()));

  check_disjoint(shards);

  // Build in a sibling folder, then move it into place.
  auto staging = out;
  staging += ".merging";
  std::filesystem::remove_all(staging);
  std::filesystem::create_directories(staging);
  try {
    const bool one_calibration = write_journal(shards, staging / "journal.jsonl");
    // Trial evidence, and anything else a shard carried.
    for (const auto& s : shards)
      for (const auto& rel : detail::list_files(s.dir, nullptr)) {
        if (regenerated(rel)) continue;
        if (rel.rfind("trials/", 0) == 0)
          copy_file(s.dir, staging, s, rel);
        else
          copy_file(s.dir, staging / "shards" / fmt::format("{}-of-{}", s.index, s.count), s, rel);
      }
    auto run = merged_run(shards, staging / "journal.jsonl", one_calibration, missing);
    write_bundle(staging, run, options.bundle);
    json result = options.whole_run_in_result ? run.materialize() : run.head;
    if (std::filesystem::exists(out)) std::filesystem::remove(out);  // an empty folder
    std::filesystem::rename(staging, out);
    return result;
  } catch (...) {
    std::error_code ec;
    std::filesystem::remove_all(staging, ec);
    throw;
  }
}

}  // namespace

json merge_bundles(const std::vector<std::filesystem::path>& dirs, const std::filesystem::path& out,
                   const MergeOptions& options) {
  try {
    return merge(dirs, out, options);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(
        fmt::format("otarig report merge: a shard's run.json is not as otarig writes it: {}", e.what()));
  }
}

}  // namespace otarig::reports
