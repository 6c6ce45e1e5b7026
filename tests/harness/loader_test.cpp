// Bad profiles and scenarios: every case names the file and the line.
#include <gtest/gtest.h>

#include <algorithm>
#include <unistd.h>

#include <fstream>

#include "otarig/harness/profile.hpp"
#include "otarig/harness/scenario.hpp"

using namespace otarig::harness;

namespace {

const char* kGoodProfile = R"yaml(name: t
device:
  kind: virtual
power: {driver: virtual}
console: {driver: virtual}
link: {driver: virtual}
observe:
  status_command: "status\n"
  status: 'STATUS slot=(?P<slot>\w+) version=(?P<version>\S+) digest=(?P<digest>[0-9a-f]+)'
signing:
  key: test:t
releases:
  factory: {version: 1.0.0, security_counter: 1, payload_size: 4KiB}
)yaml";

std::filesystem::path dir() {
  static auto d = [] {
    auto p = std::filesystem::temp_directory_path() / ("otarig-loader-" + std::to_string(::getpid()));
    std::filesystem::create_directories(p);
    return p;
  }();
  return d;
}

std::filesystem::path write(const std::string& name, const std::string& text) {
  auto p = dir() / name;
  std::ofstream(p) << text;
  return p;
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
  auto pos = s.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  return s.replace(pos, from.size(), to);
}

struct BadProfile {
  const char* name;
  std::string text;
  const char* where;  // ":LINE"
  const char* says;
};

class BadProfiles : public ::testing::TestWithParam<BadProfile> {};

TEST_P(BadProfiles, NameFileAndLine) {
  auto p = write(std::string(GetParam().name) + ".yaml", GetParam().text);
  try {
    load_profile(p);
    FAIL() << "accepted";
  } catch (const otarig::InputError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(p.string() + GetParam().where), std::string::npos) << msg;
    EXPECT_NE(msg.find(GetParam().says), std::string::npos) << msg;
  }
}

INSTANTIATE_TEST_SUITE_P(
    All, BadProfiles,
    ::testing::Values(
        BadProfile{"malformed", replace(kGoodProfile, "power: {driver: virtual}", "power: {driver: virtual"), ":",
                   "malformed YAML"},
        BadProfile{"unknown_key", std::string(kGoodProfile) + "colour: red\n", ":14", "unknown key 'colour'"},
        BadProfile{"missing_name", replace(kGoodProfile, "name: t\n", "\n"), ":", "missing required key 'name'"},
        BadProfile{"bad_version", replace(kGoodProfile, "1.0.0,", "one,"), ":13", "version"},
        BadProfile{"bad_counter", replace(kGoodProfile, "security_counter: 1", "security_counter: x"), ":13",
                   "expected an integer"},
        BadProfile{"bad_pattern", replace(kGoodProfile, "(?P<slot>\\w+)", "(?P<slot>\\w+"), ":9",
                   "invalid RE2 pattern"},
        BadProfile{"missing_group", replace(kGoodProfile, "(?P<digest>[0-9a-f]+)", "([0-9a-f]+)"), ":9",
                   "(?P<digest>"},
        BadProfile{"bad_timeout", replace(kGoodProfile, "observe:\n", "observe:\n  boot_timeout: soon\n"), ":8",
                   "expected a duration"},
        BadProfile{"missing_key_file", replace(kGoodProfile, "test:t", "/nonexistent/key.pem"), ":11",
                   "does not exist"},
        BadProfile{"no_releases", replace(kGoodProfile, "  factory: {version: 1.0.0, security_counter: 1, "
                                                        "payload_size: 4KiB}\n",
                                          "  {}\n"),
                   ":13", "at least one release"},
        // Waivers: line 14 is the first after the profile.
        BadProfile{"waivers_not_a_list", std::string(kGoodProfile) + "waivers: {a: 1}\n", ":14", "a list of waivers"},
        BadProfile{"waiver_no_reason",
                   std::string(kGoodProfile) + "waivers:\n  - {oracles: [atomic], expires: 2027-01-01}\n", ":15",
                   "missing required key 'reason'"},
        BadProfile{"waiver_empty_reason",
                   std::string(kGoodProfile) + "waivers:\n  - {oracles: [atomic], reason: '', expires: 2027-01-01}\n",
                   ":15", "say why"},
        BadProfile{"waiver_bad_date",
                   std::string(kGoodProfile) + "waivers:\n  - {oracles: [atomic], reason: r, expires: 2027-02-30}\n",
                   ":15", "not a date"},
        BadProfile{"waiver_not_iso",
                   std::string(kGoodProfile) + "waivers:\n  - {oracles: [atomic], reason: r, expires: next year}\n",
                   ":15", "not a date"},
        BadProfile{"waiver_no_oracles",
                   std::string(kGoodProfile) + "waivers:\n  - {oracles: [], reason: r, expires: 2027-01-01}\n", ":15",
                   "name the broken oracles"},
        BadProfile{"waiver_twice",
                   std::string(kGoodProfile) +
                       "waivers:\n  - {id: X, oracles: [a], reason: r, expires: 2027-01-01}\n"
                       "  - {id: X, oracles: [a], reason: r, expires: 2027-01-01}\n",
                   ":16", "declared twice"},
        BadProfile{"waiver_unknown_key",
                   std::string(kGoodProfile) + "waivers:\n  - {oracles: [a], reason: r, expires: 2027-01-01, until: x}\n",
                   ":15", "unknown key 'until'"}),
    [](const auto& test_info) { return std::string(test_info.param.name); });

TEST(Profile, GoodProfileLoads) {
  auto p = load_profile(write("good.yaml", kGoodProfile));
  EXPECT_EQ(p.name, "t");
  EXPECT_EQ(p.device_kind, "virtual");
  ASSERT_EQ(p.releases.size(), 1u);
  EXPECT_EQ(p.releases[0].payload_size, 4096u);
  EXPECT_EQ(p.trusted_keys, std::vector<std::string>{"test:t"});
  EXPECT_EQ(p.observe.boot_timeout.count(), 5000);
  EXPECT_EQ(p.sha256.size(), 64u);
}

const char* kGoodScenario = R"yaml(name: s
title: t
classes: [S1]
requirements: ["CRA Annex I Part I (2)(f)"]
start: factory
deliver: factory
fault:
  kind: tamper
  variants: [truncated]
retry: factory
)yaml";

struct BadScenario {
  const char* name;
  std::string text;
  const char* where;
  const char* says;
};

class BadScenarios : public ::testing::TestWithParam<BadScenario> {};

TEST_P(BadScenarios, NameFileAndLine) {
  auto sub = dir() / GetParam().name;
  std::filesystem::create_directories(sub);
  auto p = sub / "s.yaml";
  std::ofstream(p) << GetParam().text;
  try {
    load_scenario(p.string());
    FAIL() << "accepted";
  } catch (const otarig::InputError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(p.string() + GetParam().where), std::string::npos) << msg;
    EXPECT_NE(msg.find(GetParam().says), std::string::npos) << msg;
  }
}

INSTANTIATE_TEST_SUITE_P(
    All, BadScenarios,
    ::testing::Values(
        BadScenario{"unknown_fault", replace(kGoodScenario, "kind: tamper", "kind: gremlins"), ":8",
                    "unknown fault kind 'gremlins'"},
        BadScenario{"unknown_variant", replace(kGoodScenario, "[truncated]", "[truncated, melted]"), ":9",
                    "unknown tamper variant 'melted'"},
        BadScenario{"wrong_type", replace(kGoodScenario, "classes: [S1]", "classes: S1"), ":3", "expected a list"},
        BadScenario{"unknown_key", std::string(kGoodScenario) + "speed: 11\n", ":11", "unknown key 'speed'"},
        BadScenario{"name_mismatch", replace(kGoodScenario, "name: s", "name: other"), ":1", "must match"},
        BadScenario{"torn_range", replace(kGoodScenario, "  kind: tamper\n  variants: [truncated]",
                                          "  kind: power-cut\n  at: every-flash-op\n  torn: 2"),
                    ":10", "probability"},
        BadScenario{"unknown_include", "name: s\ninclude: [nope]\n", ":2", "no such scenario"},
        BadScenario{"unknown_cut_point", replace(kGoodScenario, "  kind: tamper\n  variants: [truncated]",
                                                 "  kind: power-cut\n  at: whenever"),
                    ":9", "unknown cut point 'whenever'"},
        BadScenario{"console_cut_bad_pattern",
                    replace(kGoodScenario, "  kind: tamper\n  variants: [truncated]",
                            "  kind: power-cut\n  at: console\n  pattern: 'boot (('\n  delay: 5ms"),
                    ":10", "invalid RE2 pattern"},
        BadScenario{"console_cut_bad_pattern_in_list",
                    replace(kGoodScenario, "  kind: tamper\n  variants: [truncated]",
                            "  kind: power-cut\n  at: console\n  pattern:\n    - 'ok'\n    - 'boot (('\n  delay: 5ms"),
                    ":12", "invalid RE2 pattern"},
        BadScenario{"console_cut_empty_pattern_list",
                    replace(kGoodScenario, "  kind: tamper\n  variants: [truncated]",
                            "  kind: power-cut\n  at: console\n  pattern: []\n  delay: 5ms"),
                    ":10", "name at least one console pattern"},
        BadScenario{"console_cut_without_pattern",
                    replace(kGoodScenario, "  kind: tamper\n  variants: [truncated]", "  kind: power-cut\n  at: console"),
                    ":", "missing required key 'pattern'"},
        BadScenario{"torn_download_cut",
                    replace(kGoodScenario, "  kind: tamper\n  variants: [truncated]",
                            "  kind: power-cut\n  at: download-byte\n  torn: 0.5"),
                    ":10", "torn writes need counted flash operations"},
        BadScenario{"points_out_of_range",
                    replace(kGoodScenario, "  kind: tamper\n  variants: [truncated]",
                            "  kind: power-cut\n  at: download-byte\n  points: 0"),
                    ":10", "points 0 must be 1..4096"},
        BadScenario{"bad_network_spec",
                    replace(kGoodScenario, "  kind: tamper\n  variants: [truncated]",
                            "  kind: network\n  faults: 'down:melt@b=${b}'"),
                    ":9", "unknown fault 'melt'"},
        BadScenario{"network_without_faults",
                    replace(kGoodScenario, "  kind: tamper\n  variants: [truncated]", "  kind: network"), ":8",
                    "needs `faults` or `probe`"},
        BadScenario{"unknown_probe",
                    replace(kGoodScenario, "  kind: tamper\n  variants: [truncated]",
                            "  kind: network\n  probe: telepathy"),
                    ":9", "unknown probe 'telepathy'"},
        BadScenario{"unknown_expectation",
                    replace(kGoodScenario, "  kind: tamper\n  variants: [truncated]",
                            "  kind: network\n  faults: 'down:stall@b=${b}'\n  expect: stays-down"),
                    ":10", "unknown expectation 'stays-down' (known: installed, stays-up)"},
        BadScenario{"unknown_expectation_in_a_list",
                    replace(kGoodScenario, "  kind: tamper\n  variants: [truncated]",
                            "  kind: network\n  faults: 'down:stall@b=${b}'\n  expect:\n    - stays-up\n    - "
                            "maybe"),
                    ":12", "unknown expectation 'maybe'"},
        BadScenario{"expectation_twice",
                    replace(kGoodScenario, "  kind: tamper\n  variants: [truncated]",
                            "  kind: network\n  faults: 'down:stall@b=${b}'\n  expect: [installed, installed]"),
                    ":10", "named twice"},
        BadScenario{"server_rule_not_endless",
                    replace(kGoodScenario, "  kind: tamper\n  variants: [truncated]",
                            "  kind: network\n  faults: 'server:stall@b=${b}'"),
                    ":9", "only endless"},
        BadScenario{"stale_without_release",
                    replace(kGoodScenario, "  kind: tamper\n  variants: [truncated]", "  kind: stale"), ":",
                    "missing required key 'serve'"}),
    [](const auto& test_info) { return std::string(test_info.param.name); });

TEST(Scenario, ASuiteThatIncludesItselfIsBadInput) {
  auto sub = dir() / "self_include";
  std::filesystem::create_directories(sub);
  const auto a = sub / "a.yaml", b = sub / "b.yaml";
  std::ofstream(a) << "name: a\ninclude: [" << b.string() << "]\n";
  std::ofstream(b) << "name: b\ninclude: [" << a.string() << "]\n";
  try {
    load_scenario(a.string());
    FAIL() << "accepted";
  } catch (const otarig::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("a suite includes itself"), std::string::npos) << e.what();
  }
}

TEST(Loader, ADocumentOverItsSizeLimitIsBadInputBeforeItIsParsed) {
  // 4 MiB and one byte of valid YAML (a comment): refused for its size.
  auto sub = dir() / "oversized";
  std::filesystem::create_directories(sub);
  const std::string big = "# " + std::string((4u << 20) - 2, 'x') + "\n";
  for (const auto& name : {"s.yaml", "board.yaml"}) {
    std::ofstream(sub / name) << big;
    try {
      if (std::string(name) == "s.yaml")
        load_scenario((sub / name).string());
      else
        load_profile(sub / name);
      FAIL() << name << " accepted";
    } catch (const otarig::InputError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find((sub / name).string()), std::string::npos) << msg;
      EXPECT_NE(msg.find("more than the 4194304 bytes the rig reads"), std::string::npos) << msg;
    }
  }
}

TEST(Scenario, NetworkExpectationsAreOneOrAList) {
  for (const auto& [name, expect] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"stalled-server", {"stays-up"}},
           {"slow-retrieval", {"stays-up"}},
           {"endless-data", {"installed", "stays-up"}},
           {"interrupted-download-resume", {"installed"}},
           {"truncated-download", {}}}) {
    auto s = load_scenario(std::string(OTARIG_SOURCE_DIR) + "/scenarios/" + name + ".yaml");
    // The network kind's options, as it parsed them.
    const auto options = s.fault.options->json();
    const auto parsed = options["expect"].get<std::vector<std::string>>();
    const bool stays_up = std::find(parsed.begin(), parsed.end(), "stays-up") != parsed.end();
    EXPECT_EQ(parsed, expect) << name;
    EXPECT_EQ(stays_up, !expect.empty() && expect.back() == "stays-up") << name;
  }
  EXPECT_EQ(load_scenario(std::string(OTARIG_SOURCE_DIR) + "/scenarios/endless-data.yaml").fault.options->json()["faults"],
            "server:endless@limit=64MiB");
}

TEST(Scenario, CatalogLoadsAndNightlyIncludesAll) {
  auto nightly = load_scenario(std::string(OTARIG_SOURCE_DIR) + "/scenarios/nightly.yaml");
  EXPECT_TRUE(nightly.is_suite());
  EXPECT_GE(nightly.leaves().size(), 7u);
  EXPECT_FALSE(nightly.requirements.empty());
  for (const auto& f : catalog_scenarios()) {
    auto s = load_scenario(f.string());
    EXPECT_FALSE(s.requirements.empty()) << f;
  }
}

}  // namespace
