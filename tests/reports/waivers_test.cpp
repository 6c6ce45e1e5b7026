// Declared waivers: which defects each covers, when it is expired, and the
// counts the exit status follows.
#include <gtest/gtest.h>

#include "otarig/reports/waivers.hpp"

using nlohmann::json;
using namespace otarig::reports;

namespace {

json defect(const std::string& id, const std::string& scenario, std::vector<std::string> oracles, int count) {
  return {{"id", id}, {"scenario", scenario}, {"oracles", oracles}, {"count", count}};
}

json waiver(const std::string& id, const std::string& scenario, std::vector<std::string> oracles,
            const std::string& expires) {
  return {{"id", id}, {"scenario", scenario}, {"oracles", oracles}, {"reason", "r"}, {"expires", expires}};
}

const json kDefects = json::array({defect("D0001", "power-cut-sweep", {"atomic", "recovered"}, 500),
                                   defect("D0002", "tampered-image", {"authentic"}, 3),
                                   defect("D0003", "power-cut-sweep", {"atomic", "no-rollback"}, 2)});

}  // namespace

TEST(Waivers, CoverDefectsWhoseBrokenOraclesTheyAllAccept) {
  const auto r = waiver_results(json::array({waiver("W1", "power-cut-sweep", {"atomic", "recovered", "still-updatable"},
                                                    "2027-01-01")}),
                                "2026-12-07", kDefects);
  ASSERT_EQ(r["declared"].size(), 1u);
  EXPECT_EQ(r["declared"][0]["status"], "active");
  // D0003 also broke no-rollback, which W1 does not accept; D0002 is another scenario.
  EXPECT_EQ(r["declared"][0]["defects"], json::array({"D0001"}));
  EXPECT_EQ(r["declared"][0]["trials"], 500);
  const auto c = count_waivers(r);
  EXPECT_EQ(c.waived, 500u);
  EXPECT_EQ(c.expired, 0u);
  ASSERT_NE(waiver_of(r, "D0001"), nullptr);
  EXPECT_EQ(waiver_of(r, "D0002"), nullptr);
}

TEST(Waivers, HoldOnTheirExpiryDayAndExpireTheDayAfter) {
  const auto w = json::array({waiver("W1", "", {"authentic"}, "2026-12-07")});
  EXPECT_EQ(waiver_results(w, "2026-12-07", kDefects)["declared"][0]["status"], "active");
  const auto after = waiver_results(w, "2026-12-08", kDefects);
  EXPECT_EQ(after["declared"][0]["status"], "expired");
  // An expired waiver still says what it would cover, and covers nothing.
  EXPECT_EQ(after["declared"][0]["defects"], json::array({"D0002"}));
  const auto c = count_waivers(after);
  EXPECT_EQ(c.waived, 0u);
  EXPECT_EQ(c.expired, 1u);
  EXPECT_EQ(waiver_of(after, "D0002"), nullptr);
}

TEST(Waivers, ADefectIsCoveredByTheFirstActiveWaiverOnly) {
  const auto r = waiver_results(json::array({waiver("OLD", "", {"authentic"}, "2020-01-01"),
                                             waiver("A", "", {"authentic"}, "2030-01-01"),
                                             waiver("B", "tampered-image", {"authentic"}, "2030-01-01")}),
                                "2026-12-07", kDefects);
  EXPECT_EQ(r["declared"][1]["defects"], json::array({"D0002"}));
  EXPECT_EQ(r["declared"][2]["defects"], json::array());
  EXPECT_EQ(count_waivers(r).waived, 3u);  // counted once
  EXPECT_EQ(count_waivers(r).expired, 1u);
}

TEST(Waivers, NothingDeclaredNothingWaived) {
  const auto r = waiver_results(json::array(), "2026-12-07", kDefects);
  EXPECT_TRUE(r["declared"].empty());
  EXPECT_EQ(count_waivers(r).waived, 0u);
  EXPECT_EQ(count_waivers(json::object()).expired, 0u);
  EXPECT_EQ(count_waivers(json("garbage")).waived, 0u);
}
