// The requirement catalog: the installed one loads and covers every
// requirement id the catalog's scenarios name; a malformed one is an input
// error naming the file and line.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <set>

#include "otarig/core/errors.hpp"
#include "otarig/harness/compliance.hpp"
#include "otarig/harness/scenario.hpp"

using namespace otarig;
using namespace otarig::harness;

namespace {

std::filesystem::path write(const std::string& name, const std::string& text) {
  auto d = std::filesystem::temp_directory_path() / ("otarig-compliance-" + std::to_string(::getpid()));
  std::filesystem::create_directories(d);
  std::ofstream(d / name) << text;
  return d / name;
}

const char* kGood = R"yaml(catalog: acme
version: 2.0.0
date: 2026-01-01
classes:
  S1: tampered image
  S4: power cut
requirements:
  - id: ACME-1
    summary: updates are signed
    source: ACME handbook 1.1
    classes: [S1]
  - id: ACME-FILE
    summary: reports kept
    source: ACME handbook 9
    whole_bundle: true
)yaml";

std::string error_of(const std::string& text) {
  const auto f = write("bad.yaml", text);
  try {
    load_compliance_catalog(f);
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(Compliance, InstalledCatalogCoversEveryRequirementTheScenariosName) {
  const auto c = installed_compliance_catalog();
  EXPECT_EQ(c["catalog"], "otarig-requirements");
  EXPECT_EQ(c["sha256"].get<std::string>().size(), 64u);
  std::set<std::string> ids;
  for (const auto& r : c["requirements"]) {
    ids.insert(r["id"].get<std::string>());
    EXPECT_FALSE(r["source"].get<std::string>().empty()) << r;
    EXPECT_TRUE(r["whole_bundle"].get<bool>() || !r["classes"].empty()) << r;
  }
  for (const auto& f : catalog_scenarios()) {
    const auto s = load_scenario(f.string());
    for (const auto* leaf : s.leaves())
      for (const auto& id : leaf->requirements) EXPECT_TRUE(ids.count(id)) << f << " names " << id;
  }
}

TEST(Compliance, LoadsWhatTheFileSays) {
  const auto c = load_compliance_catalog(write("good.yaml", kGood));
  EXPECT_EQ(c["version"], "2.0.0");
  ASSERT_EQ(c["requirements"].size(), 2u);
  EXPECT_EQ(c["requirements"][0]["classes"], nlohmann::json({"S1"}));
  EXPECT_TRUE(c["requirements"][1]["whole_bundle"].get<bool>());
  EXPECT_EQ(c["classes"]["S4"], "power cut");
}

TEST(Compliance, MalformedCatalogsNameTheFileAndLine) {
  const std::string good = kGood;
  auto edit = [&](const std::string& from, const std::string& to) {
    auto t = good;
    t.replace(t.find(from), from.size(), to);
    return t;
  };
  EXPECT_NE(error_of(edit("classes: [S1]", "classes: [S9]")).find("bad.yaml:11"), std::string::npos);
  EXPECT_NE(error_of(edit("classes: [S1]", "classes: [S9]")).find("'S9'"), std::string::npos);
  EXPECT_NE(error_of(edit("id: ACME-FILE", "id: ACME-1")).find("listed twice"), std::string::npos);
  EXPECT_NE(error_of(edit("    classes: [S1]\n", "")).find("give its scenario classes"), std::string::npos);
  EXPECT_NE(error_of(edit("version: 2.0.0\n", "")).find("version"), std::string::npos);
  EXPECT_NE(error_of(edit("    source: ACME handbook 1.1\n", "")).find("source"), std::string::npos);
  EXPECT_NE(error_of(edit("date:", "typo:")).find("typo"), std::string::npos);
  EXPECT_NE(error_of("- just a list\n").find("must be a map"), std::string::npos);
}
