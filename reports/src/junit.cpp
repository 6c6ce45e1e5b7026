#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <vector>

#include "otarig/reports/bundle.hpp"

namespace otarig::reports {

std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default:
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
  }
  return out;
}

namespace {

std::string str(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return "";
  return j[key].is_string() ? j[key].get<std::string>() : j[key].dump();
}

std::string property(const std::string& name, const std::string& value) {
  return fmt::format("      <property name=\"{}\" value=\"{}\"/>\n", xml_escape(name), xml_escape(value));
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

std::string junit_xml(const nlohmann::json& run) {
  std::map<std::string, std::vector<const nlohmann::json*>> by_scenario;
  std::vector<std::string> order;
  for (const auto& t : run["trials"]) {
    auto s = str(t, "scenario");
    if (!by_scenario.count(s)) order.push_back(s);
    by_scenario[s].push_back(&t);
  }
  const auto board = str(run["board"], "name");
  const auto seed = str(run, "seed");
  std::size_t total = 0, failures = 0;
  double time_s = 0;
  std::string suites;
  for (const auto& s : order) {
    std::size_t fails = 0;
    double secs = 0;
    std::string cases;
    for (const auto* t : by_scenario[s]) {
      double d = t->value("duration_ms", 0.0) / 1000.0;
      secs += d;
      cases += fmt::format("    <testcase classname=\"otarig.{}.{}\" name=\"trial {} {}\" time=\"{:.6f}\">\n",
                           xml_escape(board), xml_escape(s), xml_escape(str(*t, "id")), xml_escape(fault_point(*t)),
                           d);
      // junit-10 allows no properties in a testcase: the trial's facts go to its system-out.
      std::string facts = fmt::format("trial: {}\nboard: {}\nseed: {}\ntrial_seed: {}\nfault_point: {}\n",
                                      str(*t, "id"), board, seed, str(*t, "seed"), fault_point(*t));
      for (const auto& r : (*t)["requirements"]) facts += "requirement: " + r.get<std::string>() + "\n";
      facts += "evidence: " + str(*t, "evidence") + "\n";
      std::string system_out = fmt::format("      <system-out>{}</system-out>\n", xml_escape(facts));
      if (str(*t, "verdict") != "pass") {
        ++fails;
        std::string message, body;
        for (const auto& b : (*t)["broken"]) {
          message += (message.empty() ? "" : ", ") + str(b, "oracle");
          body += str(b, "oracle") + ": " + str(b, "detail") + "\n";
        }
        cases += fmt::format("      <failure message=\"oracle broken: {}\" type=\"finding\">{}</failure>\n",
                             xml_escape(message), xml_escape(body));
      }
      cases += system_out;
      cases += "    </testcase>\n";
    }
    total += by_scenario[s].size();
    failures += fails;
    time_s += secs;
    suites += fmt::format(
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"0\" time=\"{:.6f}\" "
        "timestamp=\"{}\" hostname=\"otarig\">\n",
        xml_escape(s), by_scenario[s].size(), fails, secs, xml_escape(str(run, "started").substr(0, 19)));
    suites += "    <properties>\n";
    suites += property("board", board);
    suites += property("seed", seed);
    std::vector<std::string> requirements;
    for (const auto* t : by_scenario[s])
      for (const auto& r : (*t)["requirements"])
        if (std::find(requirements.begin(), requirements.end(), r.get<std::string>()) == requirements.end())
          requirements.push_back(r.get<std::string>());
    for (const auto& r : requirements) suites += property("requirement", r);
    suites += "    </properties>\n";
    suites += cases;
    suites += "  </testsuite>\n";
  }
  // Scenarios of the suite the board cannot run: one skipped test case each, with the reason.
  std::size_t skipped = 0;
  if (run.contains("skipped"))
    for (const auto& k : run["skipped"]) {
      ++skipped;
      const auto name = str(k, "scenario");
      suites += fmt::format(
          "  <testsuite name=\"{}\" tests=\"1\" failures=\"0\" errors=\"0\" skipped=\"1\" time=\"0\" "
          "timestamp=\"{}\" hostname=\"otarig\">\n",
          xml_escape(name), xml_escape(str(run, "started").substr(0, 19)));
      suites += "    <properties>\n" + property("board", board) + property("seed", seed) + "    </properties>\n";
      suites += fmt::format("    <testcase classname=\"otarig.{}.{}\" name=\"{}\" time=\"0\">\n", xml_escape(board),
                            xml_escape(name), xml_escape(name));
      suites += fmt::format("      <skipped message=\"{}\"/>\n", xml_escape(str(k, "reason")));
      suites += "    </testcase>\n  </testsuite>\n";
    }
  std::string errors = run.contains("aborted") ? "1" : "0";
  return fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"otarig {} {}\" tests=\"{}\" failures=\"{}\" "
      "errors=\"{}\" time=\"{:.6f}\">\n{}</testsuites>\n",
      xml_escape(board), xml_escape(str(run["scenario"], "name")), total + skipped, failures, errors, time_s,
      suites);
}

std::string summary_markdown(const nlohmann::json& run) {
  const auto& s = run["summary"];
  std::string md = fmt::format("## otarig: {} on {} (seed {})\n\n", str(run["scenario"], "name"),
                               str(run["board"], "name"), str(run, "seed"));
  auto findings = s.value("findings", 0);
  md += run.contains("aborted") ? fmt::format("**Bench failure**: {}\n\n", str(run, "aborted"))
        : findings          ? fmt::format("**{} finding(s)**\n\n", findings)
                            : std::string("**No finding**\n\n");
  md += "| trials | passed | failed | findings |\n|---:|---:|---:|---:|\n";
  md += fmt::format("| {} | {} | {} | {} |\n\n", s.value("trials", 0), s.value("passed", 0), s.value("failed", 0),
                    findings);
  if (findings) {
    md += "| finding | trial | scenario | oracles | replay |\n|---|---|---|---|---|\n";
    std::size_t shown = 0;
    for (const auto& f : run["findings"]) {
      if (++shown > 50) {
        md += fmt::format("| ... | {} more | | | |\n", run["findings"].size() - 50);
        break;
      }
      std::string oracles;
      for (const auto& o : f["oracles"]) oracles += (oracles.empty() ? "" : ", ") + str(o, "oracle");
      md += fmt::format("| {} | {} | {} | {} | `{}` |\n", str(f, "id"), str(f, "trial"), str(f, "scenario"), oracles,
                        str(f, "replay"));
    }
  }
  if (run.contains("skipped") && !run["skipped"].empty()) {
    md += "\nScenarios the board cannot run (skipped):\n\n";
    for (const auto& k : run["skipped"]) md += fmt::format("- `{}`: {}\n", str(k, "scenario"), str(k, "reason"));
  }
  return md;
}

}  // namespace otarig::reports
