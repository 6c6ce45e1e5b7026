#include <fmt/format.h>
#include <libxml/xmlwriter.h>

#include <algorithm>
#include <map>
#include <memory>
#include <sstream>
#include <vector>

#include "otarig/reports/bundle.hpp"
#include "otarig/reports/defects.hpp"
#include "otarig/reports/requirements.hpp"

namespace otarig::reports {

std::string xml_characters(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
      out += fmt::format("\\x{:02x}", c);
    } else if (c >= 0x80) {
      // Keep well-formed UTF-8 sequences, replace stray bytes.
      std::size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
      bool ok = len && i + len <= text.size();
      for (std::size_t k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(text[i + k]) & 0xC0) == 0x80;
      if (ok) {
        // Overlong forms, surrogates, U+FFFE/U+FFFF and code points above
        // U+10FFFF are not characters XML 1.0 can carry.
        char32_t cp = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
        for (std::size_t k = 1; k < len; ++k) cp = cp << 6 | (static_cast<unsigned char>(text[i + k]) & 0x3F);
        ok = len == 2   ? cp >= 0x80
             : len == 3 ? cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF) && cp != 0xFFFE && cp != 0xFFFF
                        : cp >= 0x10000 && cp <= 0x10FFFF;
      }
      if (ok) {
        out.append(text.substr(i, len));
        i += len - 1;
      } else {
        out += fmt::format("\\x{:02x}", c);
      }
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string xml_escape(std::string_view text) {
  const auto chars = xml_characters(text);
  std::string out;
  out.reserve(chars.size());
  for (char c : chars) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

namespace {

std::string str(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return "";
  return j[key].is_string() ? j[key].get<std::string>() : j[key].dump();
}

// The fault point as the fault kind labelled it when the trial was planned.
std::string fault_point(const nlohmann::json& t) {
  const auto& f = t["fault"];
  if (f.contains("label")) return str(f, "label");
  std::string kind = str(f, "kind");
  if (f.contains("variant")) return kind + ":" + str(f, "variant");
  return kind;
}

}  // namespace

namespace {

// One testsuite of junit.xml: a scenario's trials, by their positions in the run.
struct Suite {
  std::string scenario;
  std::vector<std::size_t> positions;
  std::size_t failures = 0;
  double seconds = 0;
  std::vector<std::string> requirements;
};

// libxml2's xmlTextWriter over a std::ostream: it escapes markup and
// indents; what it is given has passed through xml_characters, so device
// output cannot make the file malformed.
// libxml2 takes text as xmlChar (unsigned char), UTF-8.
const xmlChar* xml(const char* text) { return reinterpret_cast<const xmlChar*>(text); }

class JunitWriter {
 public:
  explicit JunitWriter(std::ostream& out) : out_(out) {
    auto* buffer = xmlOutputBufferCreateIO(&JunitWriter::write, &JunitWriter::close, this, nullptr);
    if (!buffer) throw std::runtime_error("junit.xml: cannot make an XML output buffer");
    writer_.reset(xmlNewTextWriter(buffer));  // from here the writer owns the buffer
    if (!writer_) {
      xmlOutputBufferClose(buffer);
      throw std::runtime_error("junit.xml: cannot make an XML writer");
    }
    check(xmlTextWriterSetIndent(writer_.get(), 1));
    check(xmlTextWriterSetIndentString(writer_.get(), xml("  ")));
    check(xmlTextWriterStartDocument(writer_.get(), nullptr, "UTF-8", nullptr));
  }

  void start(const char* element) { check(xmlTextWriterStartElement(writer_.get(), xml(element))); }
  void attribute(const char* name, std::string_view value) {
    check(xmlTextWriterWriteAttribute(writer_.get(), xml(name), xml(xml_characters(value).c_str())));
  }
  void text(std::string_view value) {
    check(xmlTextWriterWriteString(writer_.get(), xml(xml_characters(value).c_str())));
  }
  void end() { check(xmlTextWriterEndElement(writer_.get())); }
  void finish() {
    check(xmlTextWriterEndDocument(writer_.get()));
    check(xmlTextWriterFlush(writer_.get()));
  }

 private:
  static int write(void* self, const char* data, int n) {
    auto& out = static_cast<JunitWriter*>(self)->out_;
    out.write(data, n);
    return out ? n : -1;
  }
  static int close(void*) { return 0; }
  void check(int rc) const {
    if (rc < 0) throw std::runtime_error("junit.xml: cannot write (libxml2 xmlTextWriter)");
  }

  struct FreeWriter {
    void operator()(xmlTextWriterPtr w) const noexcept { xmlFreeTextWriter(w); }
  };
  std::ostream& out_;
  std::unique_ptr<xmlTextWriter, FreeWriter> writer_;
};

void property(JunitWriter& w, const char* name, const std::string& value) {
  w.start("property");
  w.attribute("name", name);
  w.attribute("value", value);
  w.end();
}

void testcase(JunitWriter& w, const nlohmann::json& t, const std::string& board, const std::string& seed,
              const std::string& scenario) {
  const double d = t.value("duration_ms", 0.0) / 1000.0;
  w.start("testcase");
  w.attribute("classname", fmt::format("otarig.{}.{}", board, scenario));
  w.attribute("name", fmt::format("trial {} {}", str(t, "id"), fault_point(t)));
  w.attribute("time", fmt::format("{:.6f}", d));
  // junit-10 allows no properties in a testcase: the trial's facts go to its system-out.
  std::string facts = fmt::format("trial: {}\nboard: {}\nseed: {}\ntrial_seed: {}\nfault_point: {}\n", str(t, "id"),
                                  board, seed, str(t, "seed"), fault_point(t));
  for (const auto& r : t["requirements"]) facts += "requirement: " + r.get<std::string>() + "\n";
  facts += "evidence: " + str(t, "evidence") + "\n";
  if (str(t, "verdict") != "pass") {
    std::string message, body;
    for (const auto& b : t["broken"]) {
      message += (message.empty() ? "" : ", ") + str(b, "oracle");
      body += str(b, "oracle") + ": " + str(b, "detail") + "\n";
    }
    w.start("failure");
    w.attribute("message", "oracle broken: " + message);
    w.attribute("type", "finding");
    w.text(body);
    w.end();
  }
  w.start("system-out");
  w.text(facts);
  w.end();
  w.end();
}

// The suites in the order their scenarios first appear, with what their
// headers need; a trial is kept as its position only.
std::vector<Suite> suites_of(const RunView& run) {
  std::vector<Suite> suites;
  std::map<std::string, std::size_t> index;
  run.trials.for_each([&](const nlohmann::json& t, std::size_t position) {
    const auto s = str(t, "scenario");
    auto [it, fresh] = index.emplace(s, suites.size());
    if (fresh) suites.push_back({s, {}, 0, 0, {}});
    auto& suite = suites[it->second];
    suite.positions.push_back(position);
    suite.seconds += t.value("duration_ms", 0.0) / 1000.0;
    if (str(t, "verdict") != "pass") ++suite.failures;
    for (const auto& r : t["requirements"])
      if (std::find(suite.requirements.begin(), suite.requirements.end(), r.get<std::string>()) ==
          suite.requirements.end())
        suite.requirements.push_back(r.get<std::string>());
  });
  return suites;
}

}  // namespace

std::string junit_xml(const nlohmann::json& run) {
  std::ostringstream out;
  write_junit_xml(out, RunView::of(run));
  return out.str();
}

void write_junit_xml(std::ostream& out, const RunView& view) {
  const auto& run = view.head;
  const auto board = str(run["board"], "name");
  const auto seed = str(run, "seed");
  const auto started = str(run, "started").substr(0, 19);
  const auto suites = suites_of(view);
  std::size_t total = 0, failures = 0;
  double time_s = 0;
  for (const auto& s : suites) {
    total += s.positions.size();
    failures += s.failures;
    time_s += s.seconds;
  }
  const auto skipped_list = run.contains("skipped") ? run["skipped"] : nlohmann::json::array();
  JunitWriter w(out);
  w.start("testsuites");
  w.attribute("name", fmt::format("otarig {} {}", board, str(run["scenario"], "name")));
  w.attribute("tests", std::to_string(total + skipped_list.size()));
  w.attribute("failures", std::to_string(failures));
  w.attribute("errors", run.contains("aborted") ? "1" : "0");
  w.attribute("time", fmt::format("{:.6f}", time_s));
  auto suite_header = [&](const std::string& name, std::size_t tests, std::size_t suite_failures,
                          std::size_t skipped, const std::string& time) {
    w.start("testsuite");
    w.attribute("name", name);
    w.attribute("tests", std::to_string(tests));
    w.attribute("failures", std::to_string(suite_failures));
    w.attribute("errors", "0");
    w.attribute("skipped", std::to_string(skipped));
    w.attribute("time", time);
    w.attribute("timestamp", started);
    w.attribute("hostname", "otarig");
    w.start("properties");
    property(w, "board", board);
    property(w, "seed", seed);
  };
  for (const auto& s : suites) {
    suite_header(s.scenario, s.positions.size(), s.failures, 0, fmt::format("{:.6f}", s.seconds));
    for (const auto& r : s.requirements) property(w, "requirement", r);
    w.end();  // properties
    for (auto position : s.positions) testcase(w, view.trials.at(position), board, seed, s.scenario);
    w.end();  // testsuite
  }
  // Scenarios of the suite the board cannot run: one skipped test case each, with the reason.
  for (const auto& k : skipped_list) {
    const auto name = str(k, "scenario");
    suite_header(name, 1, 0, 1, "0");
    w.end();  // properties
    w.start("testcase");
    w.attribute("classname", fmt::format("otarig.{}.{}", board, name));
    w.attribute("name", name);
    w.attribute("time", "0");
    w.start("skipped");
    w.attribute("message", str(k, "reason"));
    w.end();
    w.end();  // testcase
    w.end();  // testsuite
  }
  w.end();  // testsuites
  w.finish();
}

std::string summary_markdown(const nlohmann::json& run) { return summary_markdown(RunView::of(run)); }

std::string summary_markdown(const RunView& view) {
  const auto& run = view.head;
  const auto& s = run["summary"];
  std::string md = fmt::format("## otarig: {} on {} (seed {})\n\n", str(run["scenario"], "name"),
                               str(run["board"], "name"), str(run, "seed"));
  auto findings = s.value("findings", 0);
  const auto defects =
      run.contains("defects") && run["defects"].is_array() ? run["defects"] : defect_results(view);
  auto cell = [](const std::string& text) {
    std::string out;
    for (char c : text) out += c == '|' ? std::string("\\|") : c == '\n' ? std::string(" ") : std::string(1, c);
    return out;
  };
  md += run.contains("aborted") ? fmt::format("**Bench failure**: {}\n\n", str(run, "aborted"))
        : findings || !defects.empty()
            ? fmt::format("**{}** ({} finding{})\n\n", cell(defects_headline(defects)), findings,
                          findings == 1 ? "" : "s")
            : std::string("**No finding**\n\n");
  md += "| trials | passed | failed | findings | defects |\n|---:|---:|---:|---:|---:|\n";
  md += fmt::format("| {} | {} | {} | {} | {} |\n\n", s.value("trials", 0), s.value("passed", 0),
                    s.value("failed", 0), findings, defects.size());
  // The defects first: one row each, with the trial that replays it; then the trials behind each.
  constexpr std::size_t kRows = 50;
  if (!defects.empty()) {
    md += "| defect | scenario | trials | representative | replay |\n|---|---|---:|---|---|\n";
    for (std::size_t i = 0; i < defects.size() && i < kRows; ++i) {
      const auto& d = defects[i];
      md += fmt::format("| {}: {} | {} | {} | {} | `{}` |\n", str(d, "id"), cell(str(d, "title")),
                        cell(str(d, "scenario")), str(d, "count"), str(d, "representative"), cell(str(d, "replay")));
    }
    if (defects.size() > kRows)
      md += fmt::format("| ... | {} more defects in run.json | | | |\n", defects.size() - kRows);
    md += "\nTrials behind each defect:\n\n";
    for (std::size_t i = 0; i < defects.size() && i < kRows; ++i)
      md += fmt::format("- {}: {}\n", str(defects[i], "id"), trial_list_text(defects[i], 12));
    md += "\n";
  }
  // Declared waivers: what each accepts, until when, and what it covered.
  if (const auto w = run.value("waivers", nlohmann::json::object()); w.is_object() && w.contains("declared") &&
                                                                       w["declared"].is_array() &&
                                                                       !w["declared"].empty()) {
    md += fmt::format("Waivers the profile declares, judged on {} (a waived defect is not a pass; an expired "
                      "waiver fails the campaign):\n\n",
                      str(w, "date"));
    md += "| waiver | status | expires | scenario | oracles | defects covered | trials | reason |\n"
          "|---|---|---|---|---|---|---:|---|\n";
    for (const auto& x : w["declared"]) {
      std::string oracles, covered;
      for (const auto& o : x.value("oracles", nlohmann::json::array()))
        oracles += (oracles.empty() ? "" : ", ") + (o.is_string() ? o.get<std::string>() : o.dump());
      for (const auto& d : x.value("defects", nlohmann::json::array()))
        covered += (covered.empty() ? "" : ", ") + (d.is_string() ? d.get<std::string>() : d.dump());
      const auto status = str(x, "status");
      md += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} |\n", cell(str(x, "id")),
                        status == "active" ? "active" : "EXPIRED", cell(str(x, "expires")),
                        str(x, "scenario").empty() ? "any" : cell(str(x, "scenario")), cell(oracles), cell(covered),
                        x.value("trials", std::uint64_t{0}), cell(str(x, "reason")));
    }
    md += "\n";
  }
  if (findings) {
    md += "Findings, one per failed trial:\n\n";
    md += "| finding | trial | scenario | oracles | replay |\n|---|---|---|---|---|\n";
    for (std::size_t shown = 0; shown < view.findings.size(); ++shown) {
      if (shown == kRows) {
        md += fmt::format("| ... | {} more | | | |\n", view.findings.size() - kRows);
        break;
      }
      const auto f = view.findings.at(shown);
      std::string oracles;
      for (const auto& o : f["oracles"]) oracles += (oracles.empty() ? "" : ", ") + str(o, "oracle");
      md += fmt::format("| {} | {} | {} | {} | `{}` |\n", str(f, "id"), str(f, "trial"), str(f, "scenario"), oracles,
                        str(f, "replay"));
    }
  }
  const auto requirements = run.contains("requirements") && run["requirements"].is_array()
                                ? run["requirements"]
                                : requirement_results(view);
  if (!requirements.empty()) {
    if (const auto c = run.value("compliance", nlohmann::json::object()); c.is_object() && c.contains("version"))
      md += fmt::format("\nRequirement catalog: {} version {} (sha256 {}).\n", str(c, "catalog"), str(c, "version"),
                        str(c, "sha256"));
    md += "\n| requirement | status | scenarios that ran (trials) | not run | classes missing |\n|---|---|---|---|---|\n";
    for (const auto& r : requirements) {
      std::string ran, not_run, missing;
      const auto scenarios_run = r.value("scenarios_run", nlohmann::json::object());
      const auto skipped = r.value("skipped", nlohmann::json::array());
      const auto classes_missing = r.value("classes_missing", nlohmann::json::array());
      for (const auto& [name, n] : scenarios_run.items())
        ran += (ran.empty() ? "" : ", ") + name + " (" + n.dump() + ")";
      for (const auto& k : skipped) not_run += (not_run.empty() ? "" : ", ") + str(k, "scenario");
      for (const auto& c : classes_missing)
        missing += (missing.empty() ? "" : ", ") + (c.is_string() ? c.get<std::string>() : c.dump());
      md += fmt::format("| {} | {} | {} | {} | {} |\n", cell(str(r, "id")),
                        requirement_status_text(str(r, "status")), cell(ran), cell(not_run), cell(missing));
    }
  }
  if (run.contains("skipped") && !run["skipped"].empty()) {
    md += "\nScenarios the board cannot run (skipped):\n\n";
    for (const auto& k : run["skipped"]) md += fmt::format("- `{}`: {}\n", str(k, "scenario"), str(k, "reason"));
  }
  // The update mechanism in a few lines (report.html has it whole).
  if (const auto m = run.value("mechanism", nlohmann::json::object()); m.is_object() && !m.empty()) {
    const auto sig = m.value("signing", nlohmann::json::object());
    const auto net = m.value("transport", nlohmann::json::object()).value("network", nlohmann::json::object());
    const auto sto = m.value("storage", nlohmann::json::object());
    md += "\nUpdate mechanism under test (report.html, \"Update mechanism under test\"):\n\n";
    md += fmt::format("- signing: {} image, key {}{}{}\n", str(sig, "image_format"), str(sig, "signing_key"),
                      sig.value("test_key", false) ? " (a test key)" : "",
                      sig.contains("package") ? fmt::format(", packaged as {} signed under {}",
                                                            str(sig["package"], "format"),
                                                            str(sig["package"].value("signer_ca", nlohmann::json::object()), "subject"))
                                              : std::string());
    md += fmt::format("- transport: {}\n", net.empty() ? std::string("the board's own link, no rig network")
                                                       : fmt::format("server {}, proxy {}, TLS {}", str(net, "server"),
                                                                     str(net, "proxy"), str(net, "tls")));
    md += fmt::format("- device: {}{}, power loss: {}\n", str(sto, "kind"),
                      sto.contains("mode") ? " (" + str(sto, "mode") + ")" : std::string(),
                      sto.contains("power_loss") ? str(sto, "power_loss") : std::string("not modelled"));
    // What the device declared where devices differ: the verdicts above are judged against it.
    const auto declared = m.value("policies", nlohmann::json::object()).value("declared", nlohmann::json::object());
    if (declared.is_object() && !declared.empty()) {
      std::string items;
      for (const auto& [k, v] : declared.items())
        items += fmt::format("{}{}: {}", items.empty() ? "" : ", ", k, v.is_string() ? v.get<std::string>() : v.dump());
      md += fmt::format("- declared policy (device.policy; the verdicts are judged against it): {}\n", items);
    } else {
      md += "- declared policy: none (device.policy)\n";
    }
  }
  return md;
}

}  // namespace otarig::reports
