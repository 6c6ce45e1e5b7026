// The device's own update checks, measured from a request log and the fault
// proxy's outage events (scenarios/lifecycle/update_checks.hpp).
#include "lifecycle/update_checks.hpp"

#include <gtest/gtest.h>

using otarig::scenarios::lifecycle::CheckPolicy;
using otarig::scenarios::lifecycle::measure_update_checks;
using namespace std::chrono_literals;

namespace {

constexpr std::int64_t kMs = 1000000;

nlohmann::json check(std::int64_t ms, bool is_check = true) {
  return {{"time_ns", ms * kMs}, {"check", is_check}, {"method", "GET"}, {"target", "/manifest.json"}, {"status", 200}};
}

nlohmann::json outage_event(std::int64_t ms, std::uint64_t connection, const std::string& detail) {
  return {{"time_ns", ms * kMs}, {"kind", "outage"}, {"connection", connection}, {"detail", detail}};
}

// An outage from 3000 ms for 2000 ms; attempts during it at the given times.
nlohmann::json outage_from_3s(std::initializer_list<std::int64_t> attempts) {
  nlohmann::json events = nlohmann::json::array();
  events.push_back(outage_event(3000, 0, "begins: every connection is reset as soon as it is accepted, for 2000 ms"));
  std::uint64_t n = 0;
  for (auto t : attempts) events.push_back(outage_event(t, ++n, "refused: reset as soon as accepted"));
  events.push_back(outage_event(5004, 0, "ends: the update server is reachable again"));
  return events;
}

const CheckPolicy kPolicy{1000ms, 500ms};  // 1500 ms allowed

}  // namespace

TEST(UpdateChecks, ADeviceThatKeepsCheckingHoldsAndItsIntervalsAndBackoffAreMeasured) {
  nlohmann::json requests = nlohmann::json::array(
      {check(500), check(1500), check(2500), check(2600, false), check(5300), check(5400, false)});
  const auto m = measure_update_checks(requests, outage_from_3s({3100, 3350, 3850, 4850}), 2000ms, kPolicy);
  EXPECT_TRUE(m.held) << m.detail;
  EXPECT_EQ(m.checks_before.size(), 3u);
  EXPECT_EQ(m.checks_after.size(), 1u);
  EXPECT_EQ(m.intervals_ms, (std::vector<double>{1000, 1000, 500}));
  EXPECT_EQ(m.backoff_ms, (std::vector<double>{250, 500, 1000}));
  ASSERT_TRUE(m.first_check_after_ms);
  EXPECT_DOUBLE_EQ(*m.first_check_after_ms, 300);
  // The end is the beginning plus the length, not when the proxy logged it.
  EXPECT_EQ(*m.outage_end_ns, 5000 * kMs);
  EXPECT_EQ(m.json()["longest_interval_ms"], 1000.0);
}

TEST(UpdateChecks, ADeviceThatNeverChecksAfterTheOutageBreaksIt) {
  nlohmann::json requests = nlohmann::json::array({check(500), check(1500), check(2500)});
  const auto m = measure_update_checks(requests, outage_from_3s({3100}), 2000ms, kPolicy);
  EXPECT_FALSE(m.held);
  EXPECT_NE(m.detail.find("none of its checks reached the update server after the outage ended"), std::string::npos)
      << m.detail;
  EXPECT_TRUE(m.backoff_ms.empty());
}

TEST(UpdateChecks, ALateCheckAfterTheOutageBreaksItWithTheWait) {
  nlohmann::json requests = nlohmann::json::array({check(500), check(1500), check(2500), check(6600)});
  const auto m = measure_update_checks(requests, outage_from_3s({}), 2000ms, kPolicy);
  EXPECT_FALSE(m.held);
  EXPECT_NE(m.detail.find("came 1600 ms after the server was back"), std::string::npos) << m.detail;
}

TEST(UpdateChecks, ChecksTooFarApartBeforeTheOutageBreakIt) {
  nlohmann::json requests = nlohmann::json::array({check(100), check(2900), check(5100)});
  const auto m = measure_update_checks(requests, outage_from_3s({}), 2000ms, kPolicy);
  EXPECT_FALSE(m.held);
  EXPECT_NE(m.detail.find("went 2800 ms without a check"), std::string::npos) << m.detail;
  // The last check before the outage counts up to the outage's beginning.
  nlohmann::json quiet = nlohmann::json::array({check(1000), check(5100)});
  const auto q = measure_update_checks(quiet, outage_from_3s({}), 2000ms, kPolicy);
  EXPECT_FALSE(q.held);
  EXPECT_EQ(q.intervals_ms, (std::vector<double>{2000}));
}

TEST(UpdateChecks, WithoutTheProxysOutageThereIsNothingToJudgeBy) {
  nlohmann::json requests = nlohmann::json::array({check(500), check(1500)});
  const auto m = measure_update_checks(requests, nlohmann::json::array(), 2000ms, kPolicy);
  EXPECT_FALSE(m.held);
  EXPECT_NE(m.detail.find("logged no outage"), std::string::npos);
}

TEST(UpdateChecks, MalformedRecordsAreIgnored) {
  nlohmann::json requests = nlohmann::json::array({"junk", check(500), {{"check", true}}, check(1500), check(5200)});
  nlohmann::json events = outage_from_3s({});
  events.push_back(42);
  const auto m = measure_update_checks(requests, events, 2000ms, kPolicy);
  EXPECT_TRUE(m.held) << m.detail;
  EXPECT_EQ(m.checks_before.size(), 2u);
}
