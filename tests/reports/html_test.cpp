// report.html: escaping of hostile device output, the sections a compliance
// owner reads, the traceability order, and the size of a 10k-trial report.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <regex>

#include "otarig/core/crypto.hpp"
#include "otarig/reports/attestation.hpp"
#include "otarig/reports/bundle.hpp"
#include "sample_bundle.hpp"
#include "test_util.hpp"

using namespace otarig;
using namespace otarig::reports;
using namespace otarig::reports::testing;
using nlohmann::json;

namespace {

std::size_t count(const std::string& hay, const std::string& needle) {
  std::size_t n = 0;
  for (auto p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

bool valid_utf8(const std::string& s) {
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = c < 0x80             ? 1
                      : (c & 0xE0) == 0xC0 ? 2
                      : (c & 0xF0) == 0xE0 ? 3
                      : (c & 0xF8) == 0xF0 ? 4
                                           : 0;
    if (!len || i + len > s.size()) return false;
    for (std::size_t k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += len;
  }
  return true;
}

json big_run(std::size_t trials, std::size_t every_nth_fails) {
  json run;
  run["board"] = {{"name", "virtual-ab"}};
  run["scenario"] = {{"name", "power-cut-sweep"}, {"title", "sweep"}, {"parts", json::array()}};
  run["seed"] = 1;
  run["trials"] = json::array();
  run["findings"] = json::array();
  std::size_t failed = 0;
  for (std::size_t i = 0; i < trials; ++i) {
    bool fail = i % every_nth_fails == 0;
    json t = {{"id", fmt::format("{:05d}", i)},
              {"index", i},
              {"scenario", "power-cut-sweep"},
              {"requirements", {"CRA Annex I Part I (2)(h)"}},
              {"fault", {{"kind", "power-cut"}, {"before_op", i % 400}, {"ops_total", 400}, {"torn", false}}},
              {"verdict", fail ? "fail" : "pass"},
              {"broken", fail ? json{{{"oracle", "atomic"}, {"detail", "mixed image"}}} : json::array()},
              {"cut", {{"op", i % 400}, {"ops_total", 400}, {"phase", i % 400 < 200 ? "download" : "stage"}}},
              {"duration_ms", 3.0},
              {"evidence", fmt::format("trials/{:05d}", i)}};
    if (fail) {
      ++failed;
      run["findings"].push_back({{"id", fmt::format("F{:04d}", failed)},
                                 {"trial", t["id"]},
                                 {"scenario", "power-cut-sweep"},
                                 {"oracles", t["broken"]},
                                 {"replay", "otarig run ..."}});
    }
    run["trials"].push_back(t);
  }
  run["summary"] = {
      {"trials", trials}, {"passed", trials - failed}, {"failed", failed}, {"findings", failed}};
  return run;
}

}  // namespace

TEST(Html, HostileDeviceOutputShowsAsText) {
  TempDir d;
  write_sample_bundle(d.path);
  auto html = slurp(d.path / "report.html");
  EXPECT_NE(html.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(html.find("&lt;img src=x onerror=alert(2)&gt;"), std::string::npos);
  EXPECT_EQ(html.find(kHostileLine), std::string::npos);
  EXPECT_EQ(html.find("<img"), std::string::npos);
  EXPECT_EQ(html.find("</li><b>"), std::string::npos);
  EXPECT_EQ(count(html, "<script"), 1u);  // the report's own, nothing injected
  EXPECT_EQ(html.find('\x1b'), std::string::npos);
  EXPECT_NE(html.find("\\x1b[31mred"), std::string::npos);
  EXPECT_TRUE(valid_utf8(html));
}

TEST(Html, ScriptIsPinnedByTheContentSecurityPolicy) {
  TempDir d;
  write_sample_bundle(d.path);
  auto html = slurp(d.path / "report.html");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(html, m, std::regex("script-src 'sha256-([A-Za-z0-9+/=]+)'")));
  auto open = html.find("<script>");
  auto close = html.find("</script>");
  ASSERT_NE(open, std::string::npos);
  auto body = html.substr(open + 8, close - open - 8);
  auto digest = crypto::sha256(body);
  EXPECT_EQ(m[1].str(),
            base64_encode(std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size())));
  EXPECT_NE(html.find("default-src 'none'"), std::string::npos);
  // Nothing is loaded from anywhere.
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(html.find("src="), html.find("src=x"));  // only inside the escaped device line
}

TEST(Html, ShowsVerdictFactsFindingsAndCharts) {
  TempDir d;
  write_sample_bundle(d.path);
  auto html = slurp(d.path / "report.html");
  EXPECT_NE(html.find("FAIL: 2 defects, 2 finding(s)"), std::string::npos);
  EXPECT_NE(html.find("vboard-0001"), std::string::npos);
  EXPECT_NE(html.find("0123456789ab"), std::string::npos);
  EXPECT_NE(html.find(std::string(64, '2')), std::string::npos);  // a release digest
  EXPECT_NE(html.find("vboot 1.0"), std::string::npos);           // a component
  EXPECT_NE(html.find("id=\"finding-F0001\""), std::string::npos);
  EXPECT_NE(html.find("id=\"finding-F0002\""), std::string::npos);
  EXPECT_NE(html.find("--seed 7 --trial 00003"), std::string::npos);  // replay command
  EXPECT_NE(html.find("<span class=\"ts\">[     2.250 ms]</span>"), std::string::npos);
  EXPECT_NE(html.find("atomic</b>: atomic broken"), std::string::npos);
  EXPECT_EQ(count(html, "<svg"), 2u);
  EXPECT_NE(html.find("@media print"), std::string::npos);
  EXPECT_NE(html.find("test key"), std::string::npos);
  EXPECT_NE(html.find("All trials (12 shown of 12)"), std::string::npos);
}

TEST(Html, TraceabilityFollowsTheComplianceOrder) {
  TempDir d;
  write_sample_bundle(d.path);
  auto html = slurp(d.path / "report.html");
  auto table = html.substr(html.find("id=\"traceability\""),
                           html.find("id=\"findings\"") - html.find("id=\"traceability\""));
  const char* order[] = {"CRA Annex I Part I (2)(c)",
                         "CRA Annex I Part I (2)(d)",
                         "CRA Annex I Part I (2)(f)",
                         "CRA Annex I Part I (2)(h)",
                         "CRA Annex I Part II (7)",
                         "CRA Annex VII (6)",
                         "ETSI EN 303 645 5.3-1, 5.3-2",
                         "ETSI EN 303 645 5.3-7, 5.3-9, 5.3-10",
                         "IEC 62443-4-2 CR 3.4",
                         "IEC 62443-4-2 EDR/HDR/NDR 3.10",
                         "BSI TR-03183-1 REQ_ER 4, 4.2",
                         "UNECE R156 7.2.1.1 / 7.2.2",
                         "NIST SP 800-193 protect / detect / recover",
                         "NIST IR 8259A software update"};
  std::size_t last = 0;
  for (const char* id : order) {
    auto p = table.find(std::string("<td>") + xml_escape(id) + "</td>");
    ASSERT_NE(p, std::string::npos) << id;
    EXPECT_GT(p, last) << id;
    last = p;
  }
  // Row of (2)(c): both scenarios, all 12 trials, failed.
  auto row_c = table.substr(table.find("CRA Annex I Part I (2)(c)"));
  row_c = row_c.substr(0, row_c.find("</tr>"));
  EXPECT_NE(row_c.find("power-cut-sweep"), std::string::npos);
  EXPECT_NE(row_c.find("tampered-image"), std::string::npos);
  EXPECT_NE(row_c.find("<td class=\"n\">12</td><td class=\"n\">10</td><td class=\"n\">2</td>"),
            std::string::npos)
      << row_c;
  auto row_d = table.substr(table.find("CRA Annex I Part I (2)(d)"));
  row_d = row_d.substr(0, row_d.find("</tr>"));
  EXPECT_NE(row_d.find("NOT EXERCISED"), std::string::npos);
  // The catalog run.json records is named with its version, each row with its source.
  EXPECT_NE(table.find("Requirement catalog: <b>otarig-requirements</b> version <b>9.8.7</b>"), std::string::npos);
  EXPECT_NE(row_d.find("source of CRA Annex I Part I (2)(d)"), std::string::npos);
  // (2)(h) needs S11 by the catalog, which no scenario of the sample covers.
  auto row_h = table.substr(table.find("CRA Annex I Part I (2)(h)"));
  row_h = row_h.substr(0, row_h.find("</tr>"));
  EXPECT_NE(row_h.find("S11"), std::string::npos) << row_h;
}

TEST(Html, RequirementOutsideTheCatalogIsStillListed) {
  auto run = big_run(3, 100);
  run["trials"][0]["requirements"].push_back("ACME-SEC-7 <b>");
  auto html = report_html(run);
  EXPECT_NE(html.find("ACME-SEC-7 &lt;b&gt;"), std::string::npos);
  EXPECT_NE(html.find("not in the requirement catalog"), std::string::npos);
}

TEST(Html, TenThousandTrialsStayASmallPage) {
  auto run = big_run(10000, 20);  // 500 findings
  // The page's size is bounded; its build time is the machine's, not asserted.
  auto html = report_html(run);
  EXPECT_LT(html.size(), 4u << 20) << html.size();
  EXPECT_NE(html.find("All trials (2000 shown of 10000, every failure included)"), std::string::npos);
  EXPECT_NE(html.find("400 more findings"), std::string::npos);
  EXPECT_EQ(count(html, "<article class=\"finding\""), 100u);
  // 500 failed trials at 20 operations, 25 each: 20 defects, 20 red bands
  // and 20 green ones on the window chart.
  EXPECT_EQ(count(html, "<article class=\"defect\""), 20u);
  EXPECT_NE(html.find("FAIL: 20 defects, 500 finding(s)"), std::string::npos);
  EXPECT_EQ(count(html, "<rect class=\"window fail\""), 20u);
  EXPECT_EQ(count(html, "<rect class=\"window pass\""), 20u);
}

TEST(Html, RunWithoutTrialsOrCutsSaysSo) {
  json run = {{"board", {{"name", "b"}}},
              {"scenario", {{"name", "s"}}},
              {"aborted", "relay did not answer"},
              {"summary", {{"trials", 0}}}};
  auto html = report_html(run);
  EXPECT_NE(html.find("BENCH FAILURE"), std::string::npos);
  EXPECT_NE(html.find("relay did not answer"), std::string::npos);
  EXPECT_NE(html.find("No trial of this run placed a fault at an operation or a byte."), std::string::npos);
  EXPECT_NE(html.find("<section id=\"defects\">"), std::string::npos);
  EXPECT_NE(html.find("No trial ran."), std::string::npos);
}

TEST(Html, UpdateMechanismSectionEscapesWhatTheProfileSays) {
  auto run = big_run(3, 100);
  run["mechanism"] = {{"signing", {{"signing_key", "<script>x</script>"}, {"trusted_key_ids", {"aa", "bb"}}}},
                      {"transport", {{"network", {{"tls", "mutual"}}}}},
                      {"storage", {{"kind", "lab"}, {"provision", {{"slot_size", "2MiB"}}}}},
                      {"policies", {{"declared", {{"signer_expiry", "enforced"}}}}}};
  run["skipped"] = {{{"scenario", "impostor-server"}, {"reason", "no <TLS>"}}};
  auto html = report_html(run);
  auto at = html.find("<section id=\"mechanism\">");
  ASSERT_NE(at, std::string::npos);
  auto section = html.substr(at, html.find("</section>", at) - at);
  EXPECT_EQ(section.find("<script>x"), std::string::npos);
  EXPECT_NE(section.find("&lt;script&gt;x"), std::string::npos);
  EXPECT_NE(section.find("aa, bb"), std::string::npos);
  EXPECT_NE(section.find("<th>network</th><td>tls: mutual</td>"), std::string::npos);
  EXPECT_NE(section.find("<th>provision</th><td>slot_size: 2MiB</td>"), std::string::npos);
  EXPECT_NE(section.find("<th>declared</th><td>signer_expiry: enforced</td>"), std::string::npos);
  EXPECT_NE(section.find("impostor-server</b>: no &lt;TLS&gt;"), std::string::npos);
  // A run.json without it says so rather than showing an empty table.
  run.erase("mechanism");
  EXPECT_NE(report_html(run).find("does not describe the update mechanism"), std::string::npos);
}
