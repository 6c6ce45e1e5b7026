// What a run gives evidence for per requirement: only trials that ran count,
// scenarios that did not run are listed apart with their reason, and a
// requirement whose classes were only partly exercised is never PASS.
#include "otarig/reports/requirements.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "otarig/reports/bundle.hpp"
#include "otarig/reports/verify.hpp"
#include "sample_bundle.hpp"
#include "test_util.hpp"

using namespace otarig::reports;
using namespace otarig::reports::testing;
using nlohmann::json;

namespace {

constexpr const char* kPartly = "CRA Annex I Part I (2)(c)";   // sweep ran, corrupt-in-transit skipped
constexpr const char* kFull = "NIST IR 8259A software update";  // tampered-image and unsigned both ran
constexpr const char* kNone = "CRA Annex I Part I (2)(d)";      // only impostor-server, skipped
constexpr const char* kFailed = "IEC 62443-4-2 CR 3.4";         // replay-old ran and failed once

json part(const std::string& name, std::vector<std::string> classes, std::vector<std::string> requirements) {
  return {{"name", name}, {"title", name}, {"classes", classes}, {"requirements", requirements}, {"fault", "x"}};
}

// A suite of six scenarios: two the board cannot run (skipped, 0 trials).
json sample_run(std::size_t failing_replays = 1) {
  json run;
  run["board"] = {{"name", "virtual-ab"}};
  run["seed"] = 1;
  run["scenario"] = {{"name", "nightly"},
                     {"title", "The nightly catalog"},
                     {"parts",
                      {part("power-cut-sweep", {"S4"}, {kPartly}),
                       part("corrupt-in-transit", {"S6"}, {kPartly}),
                       part("tampered-image", {"S1"}, {kFull}),
                       part("unsigned", {"S2"}, {kFull}),
                       part("impostor-server", {"S7"}, {kNone}),
                       part("replay-old", {"S3"}, {kFailed})}}};
  run["skipped"] = {{{"scenario", "corrupt-in-transit"}, {"reason", "the board has no fault proxy"}},
                    {{"scenario", "impostor-server"}, {"reason", "the board speaks no TLS"}}};
  run["trials"] = json::array();
  run["findings"] = json::array();
  std::size_t i = 0, failed = 0;
  auto add = [&](const std::string& scenario, std::vector<std::string> classes, std::vector<std::string> reqs,
                 bool pass) {
    run["trials"].push_back({{"id", fmt::format("{:05d}", i)},
                             {"index", i},
                             {"scenario", scenario},
                             {"classes", classes},
                             {"requirements", reqs},
                             {"verdict", pass ? "pass" : "fail"},
                             {"broken", json::array()},
                             {"evidence", fmt::format("trials/{:05d}", i)}});
    ++i;
    if (!pass) ++failed;
  };
  for (int k = 0; k < 3; ++k) add("power-cut-sweep", {"S4"}, {kPartly}, true);
  for (int k = 0; k < 2; ++k) add("tampered-image", {"S1"}, {kFull}, true);
  add("unsigned", {"S2"}, {kFull}, true);
  for (std::size_t k = 0; k < 2; ++k) add("replay-old", {"S3"}, {kFailed}, k >= failing_replays);
  run["summary"] = {{"trials", i}, {"passed", i - failed}, {"failed", failed}, {"findings", failed}};
  return run;
}

const json& result_for(const json& results, const std::string& id) {
  for (const auto& r : results)
    if (r["id"] == id) return r;
  static const json none;
  ADD_FAILURE() << "no result for " << id << " in " << results.dump(2);
  return none;
}

std::string row_of(const std::string& html, const std::string& id) {
  auto table = html.substr(html.find("id=\"traceability\""));
  table = table.substr(0, table.find("</section>"));
  auto at = table.find("<td>" + xml_escape(id) + "</td>");
  if (at == std::string::npos) return "";
  auto row = table.substr(at);
  return row.substr(0, row.find("</tr>"));
}

}  // namespace

TEST(Requirements, OnlyTrialsThatRanCountAndSkippedScenariosStandApart) {
  const auto run = sample_run();
  const auto results = requirement_results(RunView::of(run));

  const auto& partly = result_for(results, kPartly);
  EXPECT_EQ(partly["status"], "partly-exercised");
  EXPECT_EQ(partly["trials"], 3u);
  EXPECT_EQ(partly["scenarios_run"], (json{{"power-cut-sweep", 3}}));
  EXPECT_FALSE(partly["scenarios_run"].contains("corrupt-in-transit"));
  ASSERT_EQ(partly["skipped"].size(), 1u);
  EXPECT_EQ(partly["skipped"][0]["scenario"], "corrupt-in-transit");
  EXPECT_EQ(partly["skipped"][0]["reason"], "the board has no fault proxy");
  EXPECT_EQ(partly["classes_required"], (json{"S4", "S6"}));
  EXPECT_EQ(partly["classes_exercised"], (json{"S4"}));
  EXPECT_EQ(partly["classes_missing"], (json{"S6"}));

  const auto& full = result_for(results, kFull);
  EXPECT_EQ(full["status"], "pass");
  EXPECT_EQ(full["scenarios_run"], (json{{"tampered-image", 2}, {"unsigned", 1}}));
  EXPECT_TRUE(full["skipped"].empty());
  EXPECT_TRUE(full["classes_missing"].empty());

  const auto& none = result_for(results, kNone);
  EXPECT_EQ(none["status"], "not-exercised");
  EXPECT_EQ(none["trials"], 0u);
  EXPECT_TRUE(none["scenarios_run"].empty());
  EXPECT_EQ(none["classes_missing"], (json{"S7"}));

  EXPECT_EQ(result_for(results, kFailed)["status"], "fail");
  EXPECT_EQ(result_for(requirement_results(RunView::of(sample_run(0))), kFailed)["status"], "pass");

  // No skipped scenario is ever among the ones that ran, under any requirement.
  for (const auto& r : results)
    for (const auto& k : run["skipped"]) EXPECT_FALSE(r["scenarios_run"].contains(k["scenario"])) << r.dump();
}

TEST(Requirements, ClassesSortAsNumbers) {
  json run = sample_run();
  run["scenario"]["parts"].push_back(part("stale-manifest", {"S10"}, {kFull}));
  const auto results = requirement_results(RunView::of(run));
  EXPECT_EQ(result_for(results, kFull)["classes_required"], (json{"S1", "S2", "S10"}));
  EXPECT_EQ(result_for(results, kFull)["status"], "partly-exercised");
  EXPECT_EQ(result_for(results, kFull)["skipped"][0]["reason"].get<std::string>().find("no trial of it"), 0u);
}

TEST(Requirements, TheMatrixListsSkippedScenariosApartAndNeverPassesAPartialRequirement) {
  auto run = sample_run();
  for (bool stated : {false, true}) {
    if (stated) run["requirements"] = requirement_results(RunView::of(run));
    const auto html = report_html(run);
    const auto partly = row_of(html, kPartly);
    ASSERT_FALSE(partly.empty());
    EXPECT_NE(partly.find("PARTLY EXERCISED"), std::string::npos) << partly;
    EXPECT_NE(partly.find("missing S6"), std::string::npos) << partly;
    EXPECT_EQ(partly.find(">PASS<"), std::string::npos) << partly;
    // The cells: requirement, summary, classes, scenarios that ran, not run, counts, verdict.
    std::vector<std::string> cells;
    for (auto p = partly.find("<td"); p != std::string::npos; p = partly.find("<td", p + 1)) {
      auto open = partly.find('>', p) + 1;
      cells.push_back(partly.substr(open, partly.find("</td>", open) - open));
    }
    ASSERT_EQ(cells.size(), 9u) << partly;
    EXPECT_NE(cells[3].find("power-cut-sweep"), std::string::npos) << cells[3];
    EXPECT_EQ(cells[3].find("corrupt-in-transit"), std::string::npos) << cells[3];
    EXPECT_NE(cells[4].find("corrupt-in-transit"), std::string::npos) << cells[4];
    EXPECT_NE(cells[4].find("the board has no fault proxy"), std::string::npos) << cells[4];
    EXPECT_EQ(cells[5], "3");

    const auto full = row_of(html, kFull);
    EXPECT_NE(full.find(">PASS<"), std::string::npos) << full;
    const auto none = row_of(html, kNone);
    EXPECT_NE(none.find("NOT EXERCISED"), std::string::npos) << none;
    EXPECT_NE(none.find("impostor-server"), std::string::npos) << none;
    EXPECT_NE(row_of(html, kFailed).find(">FAIL<"), std::string::npos);

    const auto md = summary_markdown(run);
    EXPECT_NE(md.find("| " + std::string(kPartly) + " | PARTLY EXERCISED | power-cut-sweep (3) | corrupt-in-transit | S6 |"),
              std::string::npos)
        << md;
    EXPECT_NE(md.find("| " + std::string(kFull) + " | PASS |"), std::string::npos) << md;
  }
}

TEST(Requirements, TheSampleBundleStatesWhatItsTrialsGiveAndVerifies) {
  TempDir d;
  auto run = write_sample_bundle(d.path);
  auto written = json::parse(slurp(d.path / "run.json"));
  ASSERT_TRUE(written.contains("requirements"));
  EXPECT_EQ(written["requirements"], requirement_results(RunView::of(written)));
  EXPECT_TRUE(verify_bundle(d.path).ok());
}
