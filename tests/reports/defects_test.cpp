// Failed trials grouped into defects: the same broken oracles, fault, phase
// and state after the fault, and for faults placed at an index a window no
// passed trial splits; one title, one representative with its replay, the
// trials behind it; verify recomputes them and names a tampered list.
#include "otarig/reports/defects.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "otarig/reports/bundle.hpp"
#include "otarig/reports/verify.hpp"
#include "sample_bundle.hpp"
#include "test_util.hpp"

using namespace otarig::reports;
using namespace otarig::reports::testing;
using nlohmann::json;

namespace {

const std::vector<std::string> kBricked = {"atomic", "recovered", "still-updatable"};
const json kNoBoot = {{"step", "after-fault"}, {"booted", false}};

// A power-cut trial of a sweep: its cut before flash operation `op` of `total`.
struct Cut {
  std::uint64_t op;
  bool pass = false;
  std::vector<std::string> broken = kBricked;
  std::string phase = "slot write";
  json after = kNoBoot;
  std::string scenario = "power-cut-sweep";
  bool torn = false;
  std::uint64_t total = 513;
  std::uint64_t id = 0;  ///< the trial index (default: op)
};

json trial(const Cut& c) {
  const auto index = c.id ? c.id : c.op;
  json oracles = json::object();
  json broken = json::array();
  if (!c.pass)
    for (const auto& b : c.broken) {
      oracles[b] = false;
      broken.push_back({{"oracle", b}, {"detail", b + " broken at op " + std::to_string(c.op)}});
    }
  return {{"id", fmt::format("{:05d}", index)},
          {"index", index},
          {"scenario", c.scenario},
          {"seed", 1000 + index},
          {"fault",
           {{"kind", "power-cut"},
            {"at", "every-flash-op"},
            {"before_op", c.op},
            {"ops_total", c.total},
            {"torn", c.torn},
            {"torn_seed", 77 + c.op},
            {"detail", "power cut before flash operation " + std::to_string(c.op)}}},
          {"verdict", c.pass ? "pass" : "fail"},
          {"oracles", oracles},
          {"broken", broken},
          {"delivery", {{"status", "interrupted"}, {"detail", "power cut"}}},
          {"cut", {{"op", c.op}, {"ops_total", c.total}, {"kind", c.op % 2 ? "program" : "erase"},
                   {"address", 4096 * c.op}, {"phase", c.phase}, {"torn", c.torn}}},
          {"observed", json::array({{{"step", "prepare"}, {"booted", true}, {"slot", "A"}, {"version", "1.0.0"}},
                                    c.pass ? json{{"step", "after-fault"}, {"booted", true}, {"slot", "A"},
                                                  {"version", "1.1.0"}}
                                           : c.after})},
          {"evidence", fmt::format("trials/{:05d}", index)}};
}

json group(const std::vector<json>& trials) {
  DefectTally tally;
  for (const auto& t : trials) tally.add(t);
  return tally.results();
}

std::vector<std::string> ids_of(const json& defect) { return defect["trials"].get<std::vector<std::string>>(); }

std::vector<std::string> ids(std::uint64_t first, std::uint64_t last) {
  std::vector<std::string> out;
  for (auto i = first; i <= last; ++i) out.push_back(fmt::format("{:05d}", i));
  return out;
}

}  // namespace

TEST(Defects, ASweepThatBricksEveryCutAlongTheSlotWriteIsOneDefect) {
  // ota-resilience's copy-in-place result: cuts 0 and 1 (before the slot is
  // touched) and 513 (after) pass, every cut in the slot write bricks.
  std::vector<json> trials;
  for (std::uint64_t op = 0; op <= 513; ++op) trials.push_back(trial({.op = op, .pass = op < 2 || op == 513}));
  const auto defects = group(trials);
  ASSERT_EQ(defects.size(), 1u) << defects.dump(1);
  const auto& d = defects[0];
  EXPECT_EQ(d["id"], "D0001");
  EXPECT_EQ(d["title"],
            "atomic, recovered, still-updatable broken for power cuts at flash operations 2-512 of 513 (slot write)");
  EXPECT_EQ(d["count"], 511);
  EXPECT_EQ(ids_of(d), ids(2, 512));
  EXPECT_EQ(d["representative"], "00002");
  EXPECT_EQ(d["window"], (json{{"axis", "flash operation"}, {"first", 2}, {"last", 512}, {"of", 513}}));
  EXPECT_EQ(d["observed"], (json{{"booted", false}}));
  EXPECT_EQ(d["phase"], "slot write");
  EXPECT_EQ(d["scenario"], "power-cut-sweep");
  EXPECT_EQ(defects_headline(defects), "1 defect: " + d["title"].get<std::string>());
}

TEST(Defects, APassedTrialBetweenTwoFailedOnesSplitsTheWindow) {
  std::vector<json> trials;
  for (std::uint64_t op = 1; op <= 10; ++op) trials.push_back(trial({.op = op, .pass = op == 5, .total = 10}));
  const auto defects = group(trials);
  ASSERT_EQ(defects.size(), 2u) << defects.dump(1);
  EXPECT_EQ(ids_of(defects[0]), ids(1, 4));
  EXPECT_EQ(ids_of(defects[1]), ids(6, 10));
  EXPECT_NE(defects[0]["title"].get<std::string>().find("at flash operations 1-4 of 10"), std::string::npos);
  EXPECT_NE(defects[1]["title"].get<std::string>().find("at flash operations 6-10 of 10"), std::string::npos);
  EXPECT_EQ(defects[1]["id"], "D0002");
  EXPECT_EQ(defects[1]["representative"], "00006");
}

TEST(Defects, TheWindowFollowsTheIndexNotTheTrialOrder) {
  // Random cuts: trial order is not cut order. The passed cut at op 40
  // (trial 1) lies between ops 30 and 50; ops 10, 30 and 50, 90 group.
  std::vector<json> trials = {trial({.op = 90, .total = 100, .id = 1}), trial({.op = 40, .pass = true, .total = 100, .id = 2}),
                              trial({.op = 10, .total = 100, .id = 3}), trial({.op = 50, .total = 100, .id = 4}),
                              trial({.op = 30, .total = 100, .id = 5})};
  const auto defects = group(trials);
  ASSERT_EQ(defects.size(), 2u) << defects.dump(1);
  EXPECT_EQ(ids_of(defects[0]), (std::vector<std::string>{"00003", "00005"}));
  EXPECT_EQ(ids_of(defects[1]), (std::vector<std::string>{"00004", "00001"}));
  // Not every operation of the window was cut: the title says how many were.
  EXPECT_NE(defects[0]["title"].get<std::string>().find("at 2 flash operations in 10-30 of 100"), std::string::npos)
      << defects[0]["title"];
  EXPECT_EQ(defects[1]["representative"], "00004");
}

TEST(Defects, DifferentOraclesAreDifferentDefects) {
  std::vector<json> trials;
  for (std::uint64_t op = 1; op <= 6; ++op)
    trials.push_back(trial({.op = op, .broken = op <= 3 ? std::vector<std::string>{"atomic"} : kBricked, .total = 6}));
  const auto defects = group(trials);
  ASSERT_EQ(defects.size(), 2u) << defects.dump(1);
  EXPECT_EQ(defects[0]["oracles"], json({"atomic"}));
  EXPECT_EQ(ids_of(defects[0]), ids(1, 3));
  EXPECT_EQ(defects[1]["oracles"], json(kBricked));
  EXPECT_EQ(ids_of(defects[1]), ids(4, 6));
  EXPECT_EQ(defects[0]["title"], "atomic broken for power cuts at flash operations 1-3 of 6 (slot write)");
}

TEST(Defects, TheOraclesAreASetInTheStandardOrder) {
  std::vector<json> trials = {
      trial({.op = 1, .broken = {"still-updatable", "atomic", "recovered"}, .total = 3}),
      trial({.op = 2, .broken = {"atomic", "recovered", "still-updatable"}, .total = 3})};
  const auto defects = group(trials);
  ASSERT_EQ(defects.size(), 1u) << defects.dump(1);
  EXPECT_EQ(defects[0]["oracles"], json(kBricked));
}

TEST(Defects, DifferentPhasesAreDifferentDefects) {
  std::vector<json> trials;
  for (std::uint64_t op = 1; op <= 6; ++op)
    trials.push_back(trial({.op = op, .phase = op <= 2 ? "scratch erase" : "slot write", .total = 6}));
  const auto defects = group(trials);
  ASSERT_EQ(defects.size(), 2u) << defects.dump(1);
  EXPECT_EQ(defects[0]["phase"], "scratch erase");
  EXPECT_EQ(ids_of(defects[0]), ids(1, 2));
  EXPECT_EQ(defects[1]["phase"], "slot write");
  EXPECT_EQ(ids_of(defects[1]), ids(3, 6));
}

TEST(Defects, DefectsInterleavedAlongTheIndexDoNotSplitEachOther) {
  // Erases and programs alternate along a slot write: each kind of cut leaves
  // another state; a failed trial of one defect does not split the other's window.
  const json erased = {{"step", "after-fault"}, {"booted", true}, {"slot", "B"}, {"version", "1.0.0"}};
  std::vector<json> trials;
  for (std::uint64_t op = 1; op <= 8; ++op) trials.push_back(trial({.op = op, .after = op % 2 ? kNoBoot : erased, .total = 8}));
  const auto defects = group(trials);
  ASSERT_EQ(defects.size(), 2u) << defects.dump(1);
  EXPECT_EQ(ids_of(defects[0]), (std::vector<std::string>{"00001", "00003", "00005", "00007"}));
  EXPECT_EQ(ids_of(defects[1]), (std::vector<std::string>{"00002", "00004", "00006", "00008"}));
  EXPECT_EQ(defects[0]["observed"], (json{{"booted", false}}));
  EXPECT_EQ(defects[1]["observed"], (json{{"booted", true}, {"slot", "B"}, {"version", "1.0.0"}}));
  EXPECT_NE(defects[0]["title"].get<std::string>().find("at 4 flash operations in 1-7 of 8"), std::string::npos)
      << defects[0]["title"];
}

TEST(Defects, TornWritesAndCutsBeforeAnOperationAreDifferentFaults) {
  std::vector<json> trials;
  for (std::uint64_t op = 1; op <= 4; ++op) {
    trials.push_back(trial({.op = op, .total = 4, .id = 2 * op}));
    // A torn write that passes at the same operation does not split the cuts' window.
    trials.push_back(trial({.op = op, .pass = op == 2, .torn = true, .total = 4, .id = 2 * op + 1}));
  }
  const auto defects = group(trials);
  ASSERT_EQ(defects.size(), 3u) << defects.dump(1);
  EXPECT_EQ(defects[0]["title"], "atomic, recovered, still-updatable broken for power cuts at flash operations 1-4 of 4 "
                                 "(slot write)");
  EXPECT_EQ(defects[0]["count"], 4);
  EXPECT_EQ(defects[1]["title"], "atomic, recovered, still-updatable broken for torn writes at flash operation 1 of 4 "
                                 "(slot write)");
  EXPECT_EQ(defects[2]["title"], "atomic, recovered, still-updatable broken for torn writes at flash operations 3-4 of 4 "
                                 "(slot write)");
}

TEST(Defects, ASingleFailedTrialIsOneDefect) {
  std::vector<json> trials;
  for (std::uint64_t op = 1; op <= 12; ++op) trials.push_back(trial({.op = op, .pass = op != 7, .total = 12}));
  const auto defects = group(trials);
  ASSERT_EQ(defects.size(), 1u);
  EXPECT_EQ(defects[0]["title"],
            "atomic, recovered, still-updatable broken for power cuts at flash operation 7 of 12 (slot write)");
  EXPECT_EQ(ids_of(defects[0]), std::vector<std::string>{"00007"});
  EXPECT_EQ(defects[0]["representative"], "00007");
  EXPECT_EQ(defects[0]["count"], 1);
}

TEST(Defects, NoFailureIsNoDefect) {
  std::vector<json> trials;
  for (std::uint64_t op = 1; op <= 5; ++op) trials.push_back(trial({.op = op, .pass = true, .total = 5}));
  EXPECT_EQ(group(trials), json::array());
  EXPECT_EQ(group({}), json::array());
  EXPECT_EQ(defects_headline(json::array()), "no defect");
}

TEST(Defects, FaultsNotPlacedAtAnIndexGroupByVariantAndDelivery) {
  auto tamper = [](std::uint64_t i, const std::string& variant, bool pass, const std::string& delivery) {
    json t = {{"id", fmt::format("{:05d}", i)},
              {"scenario", "tampered-image"},
              {"fault", {{"kind", "tamper"}, {"variant", variant}, {"detail", "damaged " + std::to_string(i)}}},
              {"verdict", pass ? "pass" : "fail"},
              {"broken", pass ? json::array() : json::array({{{"oracle", "authentic"}, {"detail", "booted it"}}})},
              {"delivery", {{"status", delivery}, {"detail", ""}}},
              {"observed", json::array({{{"step", "after-fault"}, {"booted", true}, {"slot", "B"}, {"version", "9"}}})}};
    return t;
  };
  // Passed trials between do not split faults that are not placed at an index.
  const auto defects = group({tamper(0, "truncated", false, "accepted"), tamper(1, "truncated", true, "refused"),
                              tamper(2, "truncated", false, "accepted"), tamper(3, "appended", false, "accepted"),
                              tamper(4, "truncated", false, "refused")});
  ASSERT_EQ(defects.size(), 3u) << defects.dump(1);
  EXPECT_EQ(defects[0]["title"], "authentic broken for tamper faults (truncated) (delivery accepted)");
  EXPECT_EQ(ids_of(defects[0]), (std::vector<std::string>{"00000", "00002"}));
  EXPECT_EQ(defects[0]["window"], nullptr);
  EXPECT_EQ(ids_of(defects[1]), (std::vector<std::string>{"00003"}));
  EXPECT_EQ(ids_of(defects[2]), (std::vector<std::string>{"00004"}));

  // Told apart only by the state after the fault: each title names it.
  auto bricked = tamper(5, "truncated", false, "accepted");
  bricked["observed"][0] = {{"step", "after-fault"}, {"booted", false}};
  const auto two = group({tamper(0, "truncated", false, "accepted"), bricked});
  ASSERT_EQ(two.size(), 2u) << two.dump(1);
  EXPECT_EQ(two[0]["title"], "authentic broken for tamper faults (truncated) (delivery accepted); the device booted "
                             "slot B version 9 after the fault");
  EXPECT_EQ(two[1]["title"], "authentic broken for tamper faults (truncated) (delivery accepted); the device did not "
                             "boot after the fault");
}

TEST(Defects, OrderedByScenarioThenFirstIndexThenTrial) {
  std::vector<json> trials = {trial({.op = 9, .scenario = "zz-sweep", .total = 10, .id = 1}),
                              trial({.op = 9, .scenario = "aa-sweep", .total = 10, .id = 2}),
                              trial({.op = 8, .pass = true, .scenario = "aa-sweep", .total = 10, .id = 3}),
                              trial({.op = 3, .scenario = "aa-sweep", .total = 10, .id = 4})};
  const auto defects = group(trials);
  ASSERT_EQ(defects.size(), 3u) << defects.dump(1);
  EXPECT_EQ(defects[0]["trials"], json({"00004"}));
  EXPECT_EQ(defects[1]["trials"], json({"00002"}));
  EXPECT_EQ(defects[2]["trials"], json({"00001"}));
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(defects[i]["id"], fmt::format("D{:04d}", i + 1));
}

TEST(Defects, EachDefectTakesItsReplayFromItsRepresentativesFinding) {
  std::vector<json> trials;
  for (std::uint64_t op = 1; op <= 4; ++op) trials.push_back(trial({.op = op, .pass = op == 2, .total = 4}));
  json run = {{"trials", trials}, {"findings", json::array()}};
  for (const auto& t : trials)
    if (t["verdict"] == "fail")
      run["findings"].push_back({{"id", fmt::format("F{:04d}", run["findings"].size() + 1)},
                                 {"trial", t["id"]},
                                 {"replay", "otarig run --trial " + t["id"].get<std::string>()}});
  const auto defects = defect_results(RunView::of(run));
  ASSERT_EQ(defects.size(), 2u);
  EXPECT_EQ(defects[0]["finding"], "F0001");
  EXPECT_EQ(defects[0]["replay"], "otarig run --trial 00001");
  EXPECT_EQ(defects[1]["finding"], "F0002");
  EXPECT_EQ(defects[1]["replay"], "otarig run --trial 00003");
  EXPECT_EQ(trial_list_text(json{{"trials", ids(2, 512)}}, 4), "00002, 00003, 00004, ..., 00512");
  EXPECT_EQ(trial_list_text(json{{"trials", ids(2, 3)}}, 4), "00002, 00003");
}

TEST(Defects, TheSampleBundleLeadsWithItsDefects) {
  TempDir d;
  auto run = write_sample_bundle(d.path);
  auto written = json::parse(slurp(d.path / "run.json"));
  ASSERT_TRUE(written.contains("defects"));
  EXPECT_EQ(written["defects"], defect_results(RunView::of(written)));
  ASSERT_EQ(written["defects"].size(), 2u) << written["defects"].dump(1);
  EXPECT_TRUE(verify_bundle(d.path).ok());
  const auto md = slurp(d.path / "summary.md");
  EXPECT_NE(md.find("**2 defects** (2 findings)"), std::string::npos) << md;
  EXPECT_LT(md.find("| D0001: "), md.find("| F0001 |")) << md;
  const auto html = slurp(d.path / "report.html");
  EXPECT_NE(html.find("<section id=\"defects\">"), std::string::npos);
  EXPECT_LT(html.find("<section id=\"defects\">"), html.find("<section id=\"findings\">"));
  EXPECT_NE(html.find("id=\"defect-D0001\""), std::string::npos);
  EXPECT_NE(html.find("id=\"defect-D0002\""), std::string::npos);
  EXPECT_NE(html.find("<a href=\"#defect-D0001\">"), std::string::npos);  // its band on the window chart
}

TEST(Defects, WhatASeedDrewForATrialDoesNotSplitADefect) {
  // A brown-out draws its number of recovery cuts per trial, a torn write its
  // seed; a failed flash operation records no cut and so no phase.
  std::vector<json> trials;
  for (std::uint64_t op = 1; op <= 6; ++op) {
    auto t = trial({.op = op, .total = 6});
    t["fault"]["recovery_cuts"] = 1 + op % 3;
    t["fault"]["torn_seed"] = 1000 * op;
    trials.push_back(t);
  }
  auto defects = group(trials);
  ASSERT_EQ(defects.size(), 1u) << defects.dump(1);
  EXPECT_EQ(defects[0]["count"], 6);

  auto error = trial({.op = 4, .total = 6});
  error["fault"]["kind"] = "flash-error";
  error["fault"]["error"] = true;
  error.erase("cut");
  defects = group({error});
  ASSERT_EQ(defects.size(), 1u);
  EXPECT_EQ(defects[0]["phase"], "");
  EXPECT_EQ(defects[0]["title"], "atomic, recovered, still-updatable broken for flash operation errors at flash "
                                 "operation 4 of 6");
}
