#include "sample_bundle.hpp"

#include <fmt/format.h>

#include <fstream>
#include <vector>

#include "otarig/core/crypto.hpp"
#include "otarig/reports/bundle.hpp"
#include "otarig/reports/defects.hpp"
#include "otarig/reports/requirements.hpp"

namespace otarig::reports::testing {

namespace {

using nlohmann::json;
using nlohmann::ordered_json;

const std::vector<std::string> kSweepRequirements = {
    "CRA Annex I Part I (2)(c)",    "CRA Annex I Part I (2)(h)",
    "ETSI EN 303 645 5.3-1, 5.3-2", "IEC 62443-4-2 EDR/HDR/NDR 3.10",
    "UNECE R156 7.2.1.1 / 7.2.2",   "NIST SP 800-193 protect / detect / recover"};
const std::vector<std::string> kTamperRequirements = {
    "CRA Annex I Part I (2)(c)", "CRA Annex I Part I (2)(f)",
    "CRA Annex I Part II (7)",   "ETSI EN 303 645 5.3-7, 5.3-9, 5.3-10",
    "IEC 62443-4-2 CR 3.4",      "BSI TR-03183-1 REQ_ER 4, 4.2"};
const std::vector<std::string> kVariants = {"header-bit-flip", "payload-bit-flip", "truncated", "appended"};
constexpr std::uint64_t kOpsTotal = 40;

using nlohmann::json;

}  // namespace

// A requirement catalog as run.json records it (compliance/catalog.yaml's
// shape), in the order the report must follow.
json sample_catalog() {
  const std::pair<const char*, std::vector<std::string>> reqs[] = {
      {"CRA Annex I Part I (2)(c)", {"S1", "S4"}},
      {"CRA Annex I Part I (2)(d)", {"S7"}},
      {"CRA Annex I Part I (2)(f)", {"S1"}},
      {"CRA Annex I Part I (2)(h)", {"S4", "S11"}},
      {"CRA Annex I Part II (7)", {"S1"}},
      {"CRA Annex VII (6)", {}},
      {"ETSI EN 303 645 5.3-1, 5.3-2", {"S4"}},
      {"ETSI EN 303 645 5.3-7, 5.3-9, 5.3-10", {"S1"}},
      {"IEC 62443-4-2 CR 3.4", {"S1"}},
      {"IEC 62443-4-2 EDR/HDR/NDR 3.10", {"S4"}},
      {"BSI TR-03183-1 REQ_ER 4, 4.2", {"S1"}},
      {"UNECE R156 7.2.1.1 / 7.2.2", {"S4"}},
      {"NIST SP 800-193 protect / detect / recover", {"S4"}},
      {"NIST IR 8259A software update", {"S1", "S7"}}};
  json requirements = json::array();
  for (const auto& [id, classes] : reqs)
    requirements.push_back({{"id", id},
                            {"summary", std::string("summary of ") + id},
                            {"source", std::string("source of ") + id},
                            {"classes", classes},
                            {"whole_bundle", classes.empty()}});
  return {{"catalog", "otarig-requirements"},
          {"version", "9.8.7"},
          {"date", "2026-12-07"},
          {"sha256", std::string(64, 'c')},
          {"file", "catalog.yaml"},
          {"classes", {{"S1", "tampered"}, {"S4", "power cut"}, {"S7", "TLS"}, {"S11", "load"}}},
          {"requirements", requirements}};
}

namespace {

// Writes journal lines the way otarig::harness::Journal does.
class JournalWriter {
 public:
  void add(const json& ev) {
    ordered_json line = ordered_json::object();
    line["seq"] = seq_++;
    line["time"] = ev.value("time", std::string("2026-01-02T03:04:05.000Z"));
    line["type"] = ev.value("type", std::string("event"));
    line["trial"] = ev.contains("trial") ? ev["trial"] : json(nullptr);
    for (const auto& [k, v] : ev.items())
      if (k != "seq" && k != "time" && k != "type" && k != "trial" && k != "prev_sha256") line[k] = v;
    line["prev_sha256"] = prev_;
    auto text = line.dump(-1, ' ', false, json::error_handler_t::replace);
    prev_ = crypto::hex(crypto::sha256(text));
    text_ += text + "\n";
  }
  const std::string& text() const { return text_; }

 private:
  std::uint64_t seq_ = 0;
  std::string prev_;
  std::string text_;
};

void write(const std::filesystem::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << text;
}

std::string phase_of(std::uint64_t op) {
  return op < 16 ? "download" : op < 28 ? "stage" : op < 34 ? "trial-boot" : "confirm";
}

std::string time_at(std::uint64_t index, unsigned ms) {
  return fmt::format("2026-01-02T03:{:02d}:{:02d}.{:03d}Z", 4 + index / 60, index % 60, ms);
}

}  // namespace

json write_sample_bundle(const std::filesystem::path& out, const SampleOptions& o) {
  std::filesystem::create_directories(out / "trials");
  const std::size_t sweep_trials = o.trials * 2 / 3;
  JournalWriter journal;
  std::size_t planned = 0;
  auto included = [&](std::uint64_t i) { return i % o.shards == o.shard || o.extra_trials.count(i) > 0; };
  for (std::uint64_t i = 0; i < o.trials; ++i) planned += included(i);
  json start{{"time", "2026-01-02T03:04:00.000Z"},
             {"type", "campaign-start"},
             {"board", "virtual-ab"},
             {"board_sha256", std::string(64, 'b')},
             {"scenario", "sample"},
             {"seed", o.seed},
             {"planned", planned},
             {"shard", fmt::format("{}/{}", o.shard, o.shards)},
             {"otarig", "0.1.0"},
             {"git_revision", "0123456789ab"}};
  const json calibration =
      o.update_ms ? json{{"update_ms", {{"factory->update", *o.update_ms}}}} : json{{"update_ms", json::object()}};
  if (o.update_ms) start["calibration"] = calibration;
  journal.add(start);

  json trials = json::array();
  json findings = json::array();
  std::size_t passed = 0, failed = 0;
  for (std::uint64_t i = 0; i < o.trials; ++i) {
    if (!included(i)) continue;
    const bool sweep = i < sweep_trials;
    const bool fail = o.failing.count(i) > 0;
    const std::string id = fmt::format("{:05d}", i);
    const std::string scenario = sweep ? "power-cut-sweep" : "tampered-image";
    json t;
    t["id"] = id;
    t["index"] = i;
    t["scenario"] = scenario;
    t["requirements"] = sweep ? kSweepRequirements : kTamperRequirements;
    t["classes"] = sweep ? json{"S4", "S14"} : json{"S1"};
    t["seed"] = o.seed * 1000003 + i;
    std::uint64_t op = sweep ? (i * kOpsTotal / std::max<std::size_t>(1, sweep_trials)) : 0;
    if (sweep)
      t["fault"] = {{"kind", "power-cut"},
                    {"at", "every-flash-op"},
                    {"before_op", op},
                    {"ops_total", kOpsTotal},
                    {"torn", i % 5 == 4},
                    {"label", fmt::format("power-cut op {}/{}{}", op, kOpsTotal, i % 5 == 4 ? " torn" : "")}};
    else
      t["fault"] = {{"kind", "tamper"}, {"variant", kVariants[i % kVariants.size()]}};
    t["fault"]["detail"] = sweep ? fmt::format("cut before op {}", op) : "image damaged before delivery";
    t["verdict"] = fail ? "fail" : "pass";
    json oracles = {{"authentic", true},
                    {"atomic", true},
                    {"no-rollback", true},
                    {"recovered", true},
                    {"still-updatable", true}};
    json broken = json::array();
    if (fail) {
      std::vector<std::string> names =
          sweep ? std::vector<std::string>{"atomic", "recovered"} : std::vector<std::string>{"authentic"};
      for (const auto& n : names) {
        oracles[n] = false;
        broken.push_back(
            {{"oracle", n},
             {"detail", o.hostile ? fmt::format("{} broken: device said </li><b>{}</b>", n, kHostileLine)
                                  : n + " broken"}});
      }
    }
    t["oracles"] = oracles;
    t["broken"] = broken;
    t["delivered"] = !sweep;
    t["delivery"] = {{"status", sweep ? "interrupted" : "refused"},
                     {"detail", sweep ? "power cut" : "bad signature"}};
    if (sweep)
      t["cut"] = {{"op", op},
                  {"ops_total", kOpsTotal},
                  {"kind", op % 4 == 0 ? "erase" : "program"},
                  {"address", 4096 * op},
                  {"phase", phase_of(op)},
                  {"torn", i % 5 == 4}};
    json observed = json::array();
    observed.push_back({{"step", "after-fault"}, {"booted", !fail || !sweep}});
    if (!fail || !sweep) {
      observed.back()["slot"] = "a";
      observed.back()["version"] = fail ? "9.9.9" : "1.0.0";
      observed.back()["digest"] = std::string(64, fail ? 'e' : 'a');
      observed.back()["counter"] = 1;
      observed.back()["state"] = "confirmed";
      observed.back()["health"] = "ok";
    }
    t["observed"] = observed;
    t["erases"] = {{"total", 10 + i}, {"max_per_sector", 2}};
    t["duration_ms"] = 12.5 + static_cast<double>(i);
    t["evidence"] = "trials/" + id;

    // trials/ID/
    auto dir = out / "trials" / id;
    std::filesystem::create_directories(dir);
    std::string console = fmt::format("[{:10.3f} ms] otarig-vboard bootloader 1.0\n", 0.0);
    console += fmt::format("[{:10.3f} ms] slot a: version 1.0.0 confirmed\n", 1.5);
    if (fail && o.hostile) {
      console += fmt::format("[{:10.3f} ms] {}\n", 2.25, kHostileLine);
      console +=
          fmt::format("[{:10.3f} ms] <img src=x onerror=alert(2)> & \x1b[31mred\x1b[0m \xff\xfe end\n", 3.0);
    }
    console += fmt::format("[{:10.3f} ms] update: {}\n", 4.0, fail ? "FAILED" : "ok");
    write(dir / "console.log", console);
    json ev1 = {{"type", "step"}, {"step", "prepare"}};
    json ev2 = {{"type", "step"}, {"step", "judge"}};
    write(dir / "events.jsonl", ev1.dump() + "\n" + ev2.dump() + "\n");
    write(dir / "verdict.json", t.dump(2, ' ', false, json::error_handler_t::replace) + "\n");

    // The journal block.
    journal.add({{"time", time_at(i, 0)},
                 {"type", "trial-start"},
                 {"trial", id},
                 {"scenario", scenario},
                 {"fault", t["fault"]}});
    for (auto ev : {ev1, ev2}) {
      ev["trial"] = id;
      ev["time"] = time_at(i, 5);
      journal.add(ev);
    }
    json verdict = t;
    verdict["type"] = "verdict";
    verdict["trial"] = id;
    verdict["time"] = time_at(i, 9);
    journal.add(verdict);

    if (fail) {
      ++failed;
      json f;
      f["id"] = fmt::format("F{:04d}", findings.size() + 1);
      f["trial"] = id;
      f["scenario"] = scenario;
      f["seed"] = t["seed"];
      f["fault"] = t["fault"];
      f["oracles"] = broken;
      f["observed"] = observed;
      f["requirements"] = t["requirements"];
      f["transcript"] = "trials/" + id + "/console.log";
      f["replay"] = fmt::format(
          "otarig run --board boards/virtual-ab.yaml --scenario sample --seed {} --trial {} "
          "--out otarig-out-replay-{}",
          o.seed, id, id);
      findings.push_back(f);
    } else {
      ++passed;
    }
    trials.push_back(t);
  }
  write(out / "journal.jsonl", journal.text());

  json run;
  run["otarig"] = {{"version", "0.1.0"}, {"git_revision", "0123456789ab"}};
  run["board"] = {{"name", "virtual-ab"},
                  {"description", "emulated MCU, A/B slots with trial boot"},
                  {"profile", "boards/virtual-ab.yaml"},
                  {"profile_sha256", std::string(64, 'b')},
                  {"device_kind", "virtual"},
                  {"identity", o.identity}};
  if (o.update_ms) {
    run["calibration"] = calibration;
    run["calibration"]["from"] = {{"factory->update", "measured"}};
  }
  run["scenario"] = {{"name", "sample"},
                     {"title", "A sample of the nightly catalog"},
                     {"requirements", kSweepRequirements},
                     {"classes", {"S1", "S4", "S14"}},
                     {"parts",
                      {{{"name", "power-cut-sweep"},
                        {"title", "Power cut before every flash operation"},
                        {"classes", {"S4", "S14"}},
                        {"requirements", kSweepRequirements},
                        {"fault", "power-cut"}},
                       {{"name", "tampered-image"},
                        {"title", "Tampered images are refused"},
                        {"classes", {"S1"}},
                        {"requirements", kTamperRequirements},
                        {"fault", "tamper"}}}}};
  run["seed"] = o.seed;
  run["shard"] = {{"index", o.shard}, {"count", o.shards}};
  run["started"] = "2026-01-02T03:04:00.000Z";
  run["ended"] = "2026-01-02T03:09:00.000Z";
  run["releases"] = {{{"name", "factory"},
                      {"version", "1.0.0"},
                      {"security_counter", 1},
                      {"size", 65536},
                      {"sha256", std::string(64, '1')},
                      {"digest", std::string(64, 'a')}},
                     {{"name", "update"},
                      {"version", "1.1.0"},
                      {"security_counter", 2},
                      {"size", 65536},
                      {"sha256", std::string(64, '2')},
                      {"digest", std::string(64, 'c')}}};
  run["ops_per_update"] = {{"factory->update", kOpsTotal}};
  run["components"] = {{"otarig", "0.1.0"}, {"bootloader", "vboot 1.0"}};
  run["planned"] = planned;
  run["summary"] = {
      {"trials", trials.size()}, {"passed", passed}, {"failed", failed}, {"findings", findings.size()}};
  run["trials"] = trials;
  run["findings"] = findings;

  run["skipped"] = json::array();
  run["compliance"] = sample_catalog();
  run["mechanism"] = {
      {"signing", {{"image_format", "otarig"}, {"signing_key", "test:sample"}, {"trusted_key_ids", {"0011223344556677"}}}},
      {"transport", {{"link", {{"driver", "virtual"}}}}},
      {"storage", {{"kind", "virtual"}, {"mode", "ab"}, {"power_loss", "crash"}}},
      {"policies", {{"boot_timeout_ms", 5000}}}};
  run["requirements"] = requirement_results(RunView::of(run));
  run["defects"] = defect_results(RunView::of(run));

  BundleOptions bo;
  bo.signing_key = o.signing_key;
  write_bundle(out, run, bo);
  return run;
}

}  // namespace otarig::reports::testing
