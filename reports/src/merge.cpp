#include "otarig/reports/merge.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <map>
#include <set>

#include "detail.hpp"
#include "otarig/core/errors.hpp"
#include "otarig/reports/attestation.hpp"
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

struct Shard {
  std::filesystem::path dir;
  json run;
  unsigned index = 0;
  unsigned count = 1;
  std::string label;  // "I/N"
  std::string manifest_sha256, run_sha256, journal_sha256, keyid;
  bool test_key = true;
  ordered_json campaign_start;
  std::vector<ordered_json> campaign_events;                  // other events outside trial blocks
  std::map<std::uint64_t, std::vector<ordered_json>> blocks;  // trial index -> its events
  std::vector<std::vector<ordered_json>> unfinished;          // trial events without a verdict
  std::size_t journal_lines = 0;
};

// Re-chains journal events: {seq, ...fields in their order..., prev_sha256}.
class ChainWriter {
 public:
  void add(const ordered_json& event) {
    ordered_json line = ordered_json::object();
    line["seq"] = seq_++;
    for (const auto& [k, v] : event.items())
      if (k != "seq" && k != "prev_sha256") line[k] = v;
    line["prev_sha256"] = prev_;
    auto text = line.dump(-1, ' ', false, json::error_handler_t::replace);
    prev_ = detail::sha256_hex(text);
    text_ += text;
    text_ += '\n';
  }
  const std::string& text() const { return text_; }

 private:
  std::uint64_t seq_ = 0;
  std::string prev_;
  std::string text_;
};

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

Shard read_shard(const std::filesystem::path& dir, const VerifyResult& result) {
  Shard s;
  s.dir = dir;
  s.run = json::parse(*detail::read_file(dir / "run.json"));
  const auto shard = s.run.value("shard", json::object());
  s.index = shard.value("index", 0u);
  s.count = shard.value("count", 1u);
  s.label = fmt::format("{}/{}", s.index, s.count);
  s.manifest_sha256 = *detail::sha256_file(dir / kManifestFile);
  s.run_sha256 = *detail::sha256_file(dir / "run.json");
  s.journal_sha256 = *detail::sha256_file(dir / "journal.jsonl");
  s.keyid = result.keyid;
  s.test_key = result.test_key;

  auto lines = detail::split_lines(*detail::read_file(dir / "journal.jsonl"), nullptr);
  s.journal_lines = lines.size();
  std::vector<ordered_json> block;
  for (const auto& l : lines) {
    auto ev = ordered_json::parse(l.text);
    bool in_trial = ev.contains("trial") && !ev["trial"].is_null();
    auto type = ev.value("type", std::string());
    if (!in_trial) {
      if (!block.empty()) s.unfinished.push_back(std::move(block)), block.clear();
      if (type == "campaign-start" && s.campaign_start.is_null())
        s.campaign_start = ev;
      else
        s.campaign_events.push_back(ev);
      continue;
    }
    if (!block.empty() && block.front().value("trial", ordered_json()) != ev["trial"])
      s.unfinished.push_back(std::move(block)), block.clear();
    block.push_back(ev);
    if (type == "verdict") {
      s.blocks[ev.value("index", std::uint64_t{0})] = std::move(block);
      block.clear();
    }
  }
  if (!block.empty()) s.unfinished.push_back(std::move(block));
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

  // Disjoint trials.
  std::map<std::uint64_t, const Shard*> owner;
  std::map<std::string, const Shard*> owner_id;
  std::vector<json> trials;
  std::map<std::string, json> finding_of;  // trial id -> its finding in the shard
  for (const auto& s : shards) {
    for (const auto& t : s.run.value("trials", json::array())) {
      auto index = t.value("index", std::uint64_t{0});
      auto id = detail::text(t, "id");
      if (owner.count(index) || owner_id.count(id)) {
        const Shard* o = owner.count(index) ? owner[index] : owner_id[id];
        throw InputError(fmt::format("{}: trial {} is also in {} (the shards' trials overlap)",
                                     s.dir.string(), id, o->dir.string()));
      }
      owner[index] = &s;
      owner_id[id] = &s;
      trials.push_back(t);
    }
    for (const auto& f : s.run.value("findings", json::array())) finding_of[detail::text(f, "trial")] = f;
  }
  std::sort(trials.begin(), trials.end(), [](const json& a, const json& b) {
    return a.value("index", std::uint64_t{0}) < b.value("index", std::uint64_t{0});
  });

  // Build in a sibling folder, then move it into place.
  auto staging = out;
  staging += ".merging";
  std::filesystem::remove_all(staging);
  std::filesystem::create_directories(staging);
  try {
    // The journal.
    ChainWriter journal;
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
    std::map<std::uint64_t, const std::vector<ordered_json>*> blocks;
    for (const auto& s : shards)
      for (const auto& [index, block] : s.blocks) blocks[index] = &block;
    for (const auto& [index, block] : blocks)
      for (const auto& ev : *block) journal.add(ev);
    for (const auto& s : shards)
      for (const auto& block : s.unfinished)
        for (const auto& ev : block) journal.add(ev);
    detail::write_file(staging / "journal.jsonl", journal.text());

    // Trial evidence, and anything else a shard carried.
    for (const auto& s : shards)
      for (const auto& rel : detail::list_files(s.dir, nullptr)) {
        if (regenerated(rel)) continue;
        if (rel.rfind("trials/", 0) == 0)
          copy_file(s.dir, staging, s, rel);
        else
          copy_file(s.dir, staging / "shards" / fmt::format("{}-of-{}", s.index, s.count), s, rel);
      }

    // run.json.
    json run = first.run;
    json findings = json::array();
    std::size_t passed = 0, failed = 0;
    for (const auto& t : trials) {
      if (detail::text(t, "verdict") == "pass") {
        ++passed;
        continue;
      }
      ++failed;
      auto id = detail::text(t, "id");
      json f = finding_of.count(id) ? finding_of[id] : json::object();
      f["id"] = fmt::format("F{:04d}", findings.size() + 1);
      f["trial"] = t["id"];
      for (const char* k : {"scenario", "seed", "fault", "requirements", "observed"})
        if (!f.contains(k) && t.contains(k)) f[k] = t[k];
      if (!f.contains("oracles")) f["oracles"] = t.value("broken", json::array());
      if (!f.contains("transcript")) f["transcript"] = detail::text(t, "evidence") + "/console.log";
      findings.push_back(std::move(f));
    }
    run["trials"] = trials;
    run["findings"] = findings;
    run["summary"] = {
        {"trials", trials.size()}, {"passed", passed}, {"failed", failed}, {"findings", findings.size()}};
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
                             {"trials", s.run.value("trials", json::array()).size()},
                             {"findings", s.run.value("findings", json::array()).size()},
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

    write_bundle(staging, run, options.bundle);
    if (std::filesystem::exists(out)) std::filesystem::remove(out);  // an empty folder
    std::filesystem::rename(staging, out);
    return run;
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
