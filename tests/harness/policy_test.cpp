// device.policy, the signing key's validity and signing time, and a lab
// board's clock command in a profile: good values load, bad ones name the
// file and the line.
#include <gtest/gtest.h>
#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "otarig/core/errors.hpp"
#include "otarig/harness/policy.hpp"
#include "otarig/harness/profile.hpp"

using namespace otarig::harness;

namespace {

// Line 5 is the first of the policy, line 12 the first after `signing:`.
const char* kProfile = R"yaml(name: t
device:
  kind: virtual
  policy:
    signer_expiry: signing-time
    clock_1970: recovers
power: {driver: virtual}
console: {driver: virtual}
link: {driver: virtual}
observe: {status: 'STATUS slot=(?P<slot>\w+) version=(?P<version>\S+) digest=(?P<digest>[0-9a-f]+)'}
signing:
  key: test:t
releases:
  factory: {version: 1.0.0, security_counter: 1, payload_size: 4KiB}
)yaml";

std::filesystem::path write(const std::string& name, const std::string& text) {
  static const auto dir = [] {
    auto p = std::filesystem::temp_directory_path() / ("otarig-policy-" + std::to_string(::getpid()));
    std::filesystem::create_directories(p);
    return p;
  }();
  auto p = dir / name;
  std::ofstream(p) << text;
  return p;
}

std::string with(std::string s, const std::string& from, const std::string& to) {
  const auto at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return s.replace(at, from.size(), to);
}

TEST(Policy, DeclaredKeysLoadAndShowInJson) {
  const auto p = load_profile(write("good.yaml", kProfile));
  EXPECT_EQ(p.policy.get("signer_expiry"), "signing-time");
  EXPECT_TRUE(p.policy.is("clock_1970", "recovers"));
  EXPECT_FALSE(p.policy.get("revoked_keys"));
  EXPECT_EQ(p.policy.json(), (nlohmann::json{{"clock_1970", "recovers"}, {"signer_expiry", "signing-time"}}));
  EXPECT_NE(p.policy.where.at("clock_1970").find(":6"), std::string::npos);
}

TEST(Policy, EveryKeyOfTheTableTakesEachOfItsValues) {
  for (const auto& key : policy_keys())
    for (const auto& value : key.values) {
      auto c = otarig::Config::load_string(fmt::format("{}: {}\n", key.name, value), "policy.yaml");
      EXPECT_EQ(parse_policy(c).get(key.name), std::string(value));
    }
}

struct Bad {
  const char* name;
  std::string text;
  const char* where;
  const char* says;
};
class BadPolicy : public ::testing::TestWithParam<Bad> {};

TEST_P(BadPolicy, NamesFileAndLine) {
  const auto p = write(std::string(GetParam().name) + ".yaml", GetParam().text);
  try {
    (void)load_profile(p);
    FAIL() << "accepted";
  } catch (const otarig::InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(p.string() + GetParam().where), std::string::npos) << msg;
    EXPECT_NE(msg.find(GetParam().says), std::string::npos) << msg;
  }
}

INSTANTIATE_TEST_SUITE_P(
    All, BadPolicy,
    ::testing::Values(
        Bad{"unknown_key", with(kProfile, "    clock_1970: recovers\n", "    clock_1970: recovers\n    sleep: never\n"),
            ":7", "unknown policy key 'sleep'"},
        Bad{"bad_value", with(kProfile, "signing-time", "sometimes"), ":5",
            "device.policy.signer_expiry: 'sometimes' is not one of enforced"},
        Bad{"not_a_map", with(kProfile, "  policy:\n    signer_expiry: signing-time\n    clock_1970: recovers\n",
                              "  policy: strict\n"),
            ":4", "a map of policy keys"},
        Bad{"value_not_scalar", with(kProfile, "recovers", "[recovers]"), ":6",
            "device.policy.clock_1970: one of recovers, refuses-updates"},
        Bad{"bad_not_before", with(kProfile, "  key: test:t\n", "  key: test:t\n  not_before: 2025-02-30\n"), ":13",
            "is not a time"},
        Bad{"bad_signing_time", with(kProfile, "  key: test:t\n", "  key: test:t\n  time: tomorrow\n"), ":13",
            "is not a time"},
        Bad{"time_outside_validity",
            with(kProfile, "  key: test:t\n", "  key: test:t\n  not_before: 2025-01-01\n  time: 2024-01-01\n"), ":14",
            "outside the key's validity"},
        Bad{"after_before_before",
            with(kProfile, "  key: test:t\n", "  key: test:t\n  not_before: 2025-01-01\n  not_after: 2024-01-01\n"),
            ":14", "later than not_before"},
        Bad{"clock_without_time", std::string(kProfile) + "clock: {console: \"date -s now\\n\"}\n", ":15",
            "needs ${epoch}"},
        Bad{"clock_unknown_key", std::string(kProfile) + "clock: {script: x}\n", ":15", "unknown key 'script'"}),
    [](const auto& test_info) { return std::string(test_info.param.name); });

TEST(Policy, SigningValidityAndClockCommandLoad) {
  const auto p = load_profile(write(
      "signing.yaml", with(std::string(kProfile) + "clock: {console: \"date -s @${epoch}\\n\"}\n", "  key: test:t\n",
                           "  key: test:t\n  not_before: 2025-01-01\n  not_after: 2045-01-01\n"
                           "  time: 2026-06-01T00:00:00Z\n")));
  EXPECT_EQ(p.key_not_before, 1735689600u);
  EXPECT_EQ(p.key_not_after, 2366841600u);
  EXPECT_EQ(p.signing_time, 1780272000u);
  EXPECT_EQ(p.clock_console, "date -s @${epoch}\n");
}

}  // namespace
