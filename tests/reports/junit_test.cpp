// junit.xml validates against the strict junit-10 schema shipped beside this
// test (xmllint, package libxml2-utils), hostile bytes included.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "otarig/reports/bundle.hpp"
#include "sample_bundle.hpp"
#include "test_util.hpp"

using namespace otarig::reports;
using namespace otarig::reports::testing;
using nlohmann::json;

namespace {

const std::filesystem::path kSchema =
    std::filesystem::path(OTARIG_SOURCE_DIR) / "tests/reports/junit-10-strict.xsd";

// Empty when the file is valid, else xmllint's complaint.
std::string schema_errors(const std::filesystem::path& xml) {
  auto err = xml;
  err += ".err";
  int rc = std::system(
      ("xmllint --noout --schema '" + kSchema.string() + "' '" + xml.string() + "' 2>'" + err.string() + "'")
          .c_str());
  return rc == 0 ? std::string() : slurp(err) + "(exit " + std::to_string(rc) + ")";
}

#define REQUIRE_XMLLINT() \
  if (!have_program("xmllint")) GTEST_SKIP() << "xmllint not installed (Debian package libxml2-utils)"

}  // namespace

TEST(JUnit, SampleBundleValidatesAgainstTheSchema) {
  REQUIRE_XMLLINT();
  TempDir d;
  write_sample_bundle(d.path);
  EXPECT_EQ(schema_errors(d.path / "junit.xml"), "");
}

TEST(JUnit, TheSchemaRejectsPropertiesInsideATestcase) {
  REQUIRE_XMLLINT();
  TempDir d;
  spit(d.path / "bad.xml",
       "<?xml version=\"1.0\"?><testsuites><testsuite name=\"s\" tests=\"1\"><testcase classname=\"c\" "
       "name=\"t\">"
       "<properties><property name=\"a\" value=\"b\"/></properties></testcase></testsuite></testsuites>\n");
  EXPECT_NE(schema_errors(d.path / "bad.xml"), "");
}

TEST(JUnit, BytesXmlCannotCarryAreReplacedAndTheFileStaysValid) {
  REQUIRE_XMLLINT();
  TempDir d;
  json run = {{"board", {{"name", "b<&>\"'"}}},
              {"scenario", {{"name", "s"}}},
              {"seed", 3},
              {"started", "2026-01-02T03:04:05.000Z"}};
  std::string nasty =
      "ctl \x01\x02\x1b[0m surrogate \xed\xa0\x80 overlong \xc0\xaf nonchar \xef\xbf\xbf "
      "too-high \xf4\x90\x80\x80 stray \xff ok \xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x92 ]]> <x/>";
  run["trials"] = json::array({{{"id", "00000"},
                                {"scenario", nasty},
                                {"seed", 1},
                                {"requirements", {nasty}},
                                {"fault", {{"kind", "tamper"}, {"variant", nasty}}},
                                {"verdict", "fail"},
                                {"broken", {{{"oracle", nasty}, {"detail", nasty}}}},
                                {"duration_ms", 1.5}}});
  spit(d.path / "junit.xml", junit_xml(run));
  EXPECT_EQ(schema_errors(d.path / "junit.xml"), "");
  auto xml = slurp(d.path / "junit.xml");
  EXPECT_NE(xml.find("\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x92"), std::string::npos);  // real characters kept
  EXPECT_NE(xml.find("\\xed"), std::string::npos);
}

TEST(JUnit, AbortedRunWithoutTrialsIsValid) {
  REQUIRE_XMLLINT();
  TempDir d;
  json run = {{"board", {{"name", "b"}}},
              {"scenario", {{"name", "s"}}},
              {"seed", 1},
              {"aborted", "no relay"},
              {"trials", json::array()}};
  spit(d.path / "junit.xml", junit_xml(run));
  EXPECT_EQ(schema_errors(d.path / "junit.xml"), "");
  EXPECT_NE(slurp(d.path / "junit.xml").find("errors=\"1\""), std::string::npos);
}

TEST(JUnit, TrialFactsAreInSuitePropertiesAndTestcaseOutput) {
  TempDir d;
  write_sample_bundle(d.path);
  auto xml = slurp(d.path / "junit.xml");
  EXPECT_NE(xml.find("<property name=\"board\" value=\"virtual-ab\"/>"), std::string::npos);
  EXPECT_NE(xml.find("<property name=\"seed\" value=\"7\"/>"), std::string::npos);
  EXPECT_NE(xml.find("<property name=\"requirement\" value=\"CRA Annex I Part I (2)(h)\"/>"),
            std::string::npos);
  EXPECT_NE(xml.find("fault_point: power-cut op 15/40\n"), std::string::npos);
  EXPECT_NE(xml.find("trial_seed: 7000021\n"), std::string::npos);
  EXPECT_NE(xml.find("evidence: trials/00003"), std::string::npos);
  EXPECT_NE(xml.find("type=\"finding\""), std::string::npos);
}

TEST(JUnit, SkippedScenariosAndPlacedCutsAreReported) {
  TempDir d;
  json run = {{"board", {{"name", "vboard-ab"}}},
              {"scenario", {{"name", "nightly"}}},
              {"seed", 1},
              {"started", "2026-01-02T03:04:05.000Z"},
              {"skipped", json::array({{{"scenario", "flash-error"},
                                        {"reason", "the board does not count flash operations <so>"}}})}};
  run["trials"] = json::array(
      {{{"id", "00000"}, {"scenario", "power-cut-sweep"}, {"seed", 1}, {"requirements", json::array()},
        {"fault", {{"kind", "power-cut"}, {"at", "download-byte"}, {"byte", 65536}, {"image_size", 1048576},
                   {"label", "power-cut at byte 65536/1048576"}}},
        {"verdict", "pass"}, {"broken", json::array()}, {"duration_ms", 3.0}},
       {{"id", "00001"}, {"scenario", "power-cut-sweep"}, {"seed", 2}, {"requirements", json::array()},
        {"fault", {{"kind", "power-cut"}, {"at", "time"}, {"delay_ms", 40}, {"label", "power-cut at 40 ms"}}},
        {"verdict", "pass"}, {"broken", json::array()}, {"duration_ms", 3.0}},
       {{"id", "00002"}, {"scenario", "corrupt-in-transit"}, {"seed", 3}, {"requirements", json::array()},
        {"fault", {{"kind", "network"}, {"faults", "down:corrupt@offset=9,count=1"},
                   {"label", "network: down:corrupt@offset=9,count=1"}}},
        {"verdict", "pass"}, {"broken", json::array()}, {"duration_ms", 3.0}}});
  spit(d.path / "junit.xml", junit_xml(run));
  auto xml = slurp(d.path / "junit.xml");
  EXPECT_NE(xml.find("fault_point: power-cut at byte 65536/1048576\n"), std::string::npos) << xml;
  EXPECT_NE(xml.find("fault_point: power-cut at 40 ms\n"), std::string::npos);
  EXPECT_NE(xml.find("fault_point: network: down:corrupt@offset=9,count=1\n"), std::string::npos);
  EXPECT_NE(xml.find("<skipped message=\"the board does not count flash operations &lt;so&gt;\"/>"),
            std::string::npos);
  EXPECT_NE(xml.find("tests=\"4\""), std::string::npos) << "three trials and one skipped scenario";
  if (have_program("xmllint")) {
    EXPECT_EQ(schema_errors(d.path / "junit.xml"), "");
  }
  run["summary"] = {{"trials", 3}, {"passed", 3}, {"failed", 0}, {"findings", 0}};
  EXPECT_NE(summary_markdown(run).find("- `flash-error`: the board does not count flash operations <so>\n"),
            std::string::npos);
}

// junit.xml of a bundle otarig 0.1.0 wrote (tests/reports/fixtures) comes out
// the same, byte for byte, from its run.json today.
TEST(JUnit, FileOfAnEarlierVersionIsWrittenTheSame) {
  const auto bundle = std::filesystem::path(OTARIG_SOURCE_DIR) / "tests/reports/fixtures/bundle-v0.1.0";
  EXPECT_EQ(junit_xml(json::parse(slurp(bundle / "run.json"))), slurp(bundle / "junit.xml"));
}

TEST(JUnit, MarkupInNamesAndTextIsEscapedAndParsesBackToTheSameValues) {
  REQUIRE_XMLLINT();
  TempDir d;
  json run = {{"board", {{"name", "a&b"}}},
              {"scenario", {{"name", "<s>"}}},
              {"seed", 9},
              {"started", "2026-01-02T03:04:05.000Z"}};
  run["trials"] = json::array({{{"id", "00000"},
                                {"scenario", "x\"y'z"},
                                {"seed", 1},
                                {"requirements", json::array()},
                                {"fault", {{"kind", "k"}, {"label", "cut <here> & \"there\""}}},
                                {"verdict", "fail"},
                                {"broken", {{{"oracle", "atomic"}, {"detail", "a </failure> b ]]> c"}}}},
                                {"duration_ms", 2.0}}});
  spit(d.path / "junit.xml", junit_xml(run));
  EXPECT_EQ(schema_errors(d.path / "junit.xml"), "");
  auto query = [&](const std::string& xpath) {
    auto out = d.path / "out.txt";
    EXPECT_EQ(std::system(("xmllint --xpath '" + xpath + "' '" + (d.path / "junit.xml").string() + "' >'" +
                           out.string() + "' 2>/dev/null")
                              .c_str()),
              0)
        << xpath;
    auto text = slurp(out);
    if (!text.empty() && text.back() == '\n') text.pop_back();  // xmllint ends its output with a newline
    return text;
  };
  EXPECT_EQ(query("string(/testsuites/@name)"), "otarig a&b <s>");
  EXPECT_EQ(query("string(//testcase/@classname)"), "otarig.a&b.x\"y'z");
  EXPECT_EQ(query("string(//testcase/@name)"), "trial 00000 cut <here> & \"there\"");
  EXPECT_EQ(query("string(//failure)"), "atomic: a </failure> b ]]> c\n");
  EXPECT_EQ(query("string(//failure/@message)"), "oracle broken: atomic");
  EXPECT_EQ(query("count(//testsuite/properties/property)"), "2");
}
