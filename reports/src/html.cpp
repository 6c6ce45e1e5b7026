// report.html: one self-contained page for the compliance owner. Everything
// that comes from the run or the device passes through xml_escape; the page
// loads nothing (its Content-Security-Policy forbids it) and runs one inline
// script, pinned by its hash, that opens the collapsed tables for printing.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <map>
#include <set>
#include <tuple>
#include <vector>

#include "detail.hpp"
#include "otarig/core/crypto.hpp"
#include "otarig/reports/attestation.hpp"
#include "otarig/reports/bundle.hpp"
#include "otarig/reports/defects.hpp"
#include "otarig/reports/requirements.hpp"
#include "otarig/reports/waivers.hpp"

namespace otarig::reports {

namespace {

using nlohmann::json;



constexpr std::pair<const char*, const char*> kOracles[] = {
    {"authentic",
     "the device never boots (or stages as bootable) an image that is unsigned, signed by an unknown key, "
     "tampered, truncated or corrupted in transit"},
    {"atomic", "the running image is byte-for-byte the old one or the new one: never a mix, never nothing"},
    {"no-rollback",
     "the running version and the anti-rollback counter never go below their highest earlier value; an older "
     "validly signed image is refused"},
    {"recovered",
     "the device boots to a healthy state within the profile's boot budget; a new image that fails its "
     "self-test "
     "is reverted automatically"},
    {"still-updatable", "after the fault, a clean retry of the update succeeds"},
};
// Built-in oracles that only a release with the property can break (they
// hold on every other trial, so a sweep chart gives them no row).
constexpr std::pair<const char*, const char*> kReleaseOracles[] = {
    {"compatible",
     "the device never runs an image made for another device type (a validly signed release for another board "
     "is refused)"},
    {"dependencies",
     "the device never runs an image beside another image older than it needs (the application beside its "
     "second-stage bootloader or co-processor image)"},
    {"confidential",
     "the plaintext of an encrypted release never reaches the link nor crosses the network (the rig's marker "
     "planted in it, searched in what the fault proxy relays from the update server to the device), and an "
     "encrypted release the device refused leaves no plaintext at rest (decrypted before verification)"},
};
// Oracles a scenario adds to its own trials (scenario class S7: CRA Annex I
// Part I (2)(d), Part II (7), ETSI EN 303 645 5.3-9/5.3-10, EN 18031-1 SUM-2).
constexpr std::pair<const char*, const char*> kScenarioOracles[] = {
    {"server-authenticated",
     "(impostor-server) the device never completes a TLS handshake with a server whose certificate does not "
     "chain to its CA, so it sends it no request and takes no byte from it (judged from the fault proxy's TLS "
     "log)"},
    {"mutual-tls", "(mtls-required) the update server refuses a client without a certificate"},
};

// Opens every <details> before printing; marks the page so a test can tell the script ran.
constexpr const char* kPrintScript =
    "document.documentElement.setAttribute('data-script','ran');"
    "addEventListener('beforeprint',function(){document.querySelectorAll('details').forEach(function(d){d."
    "open="
    "true;});});";

constexpr const char* kStyle = R"css(
:root{--pass:#1b7a3d;--fail:#b3261e;--warn:#8a5a00;--ink:#1d1d1f;--mute:#5f6368;--line:#d0d4d9;--bg:#f6f7f9}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--ink);background:#fff}
main{max-width:1180px;margin:0 auto;padding:0 20px 40px}
header.verdict{padding:18px 20px;color:#fff}
header.verdict .inner{max-width:1180px;margin:0 auto}
header.pass{background:var(--pass)}header.fail{background:var(--fail)}header.aborted,header.empty,header.waived{background:var(--warn)}
.waiver{border-left:4px solid var(--warn);padding:2px 8px;margin:6px 0}.waiver.expired{border-color:var(--fail)}
header h1{margin:0;font-size:15px;font-weight:600;opacity:.9}
header .big{font-size:30px;font-weight:700;margin:4px 0}
header .sub{margin:0;font-size:15px}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid var(--line);padding:6px 20px;z-index:1}
nav a{margin-right:14px;color:#0b57d0;text-decoration:none}
h2{margin:28px 0 8px;font-size:20px;border-bottom:2px solid var(--line);padding-bottom:4px}
h3{margin:18px 0 6px;font-size:16px}h4{margin:12px 0 4px;font-size:14px}
table{border-collapse:collapse;width:100%;margin:6px 0 10px}
th,td{border:1px solid var(--line);padding:4px 7px;text-align:left;vertical-align:top}
th{background:var(--bg);font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
table.facts th{width:210px}
.mono,code,pre{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12.5px}
.hash{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12px;word-break:break-all}
.v{display:inline-block;white-space:nowrap;padding:1px 8px;border-radius:10px;font-weight:600;font-size:12px;color:#fff}
.v.pass{background:var(--pass)}.v.fail{background:var(--fail)}.v.none{background:#9aa0a6}.v.partial{background:var(--warn)}.v.bundle{background:#0b57d0}
tr.uncovered td{color:var(--mute)}
article.finding{border:1px solid var(--line);border-left:5px solid var(--fail);border-radius:4px;padding:8px 14px;margin:14px 0;break-inside:avoid-page}
article.finding h3{margin-top:4px}
article.defect{border:1px solid var(--line);border-left:5px solid var(--warn);border-radius:4px;padding:8px 14px;margin:14px 0;break-inside:avoid-page}
section,article,h3,tr{scroll-margin-top:44px}
pre{background:var(--bg);border:1px solid var(--line);padding:8px;overflow:auto;white-space:pre-wrap;word-break:break-all}
pre.console{max-height:32em}
pre.console .ts{color:var(--mute)}
pre.replay{background:#fff8e1}
.note{color:var(--mute)}
details summary{cursor:pointer;font-weight:600;margin:6px 0}
svg{max-width:100%;height:auto;font-family:system-ui,sans-serif}
svg text{font-size:11px;fill:var(--ink)}
dl.kv{display:grid;grid-template-columns:160px 1fr;gap:2px 10px;margin:6px 0}
dl.kv dt{color:var(--mute)}dl.kv dd{margin:0}
@media print{
 nav{display:none}
 body{font-size:10pt}
 header.verdict{-webkit-print-color-adjust:exact;print-color-adjust:exact}
 .v,svg{-webkit-print-color-adjust:exact;print-color-adjust:exact}
 main{max-width:none;padding:0}
 pre.console{max-height:none;overflow:visible}
 h2{break-after:avoid}
 tr,svg{break-inside:avoid}
 a{color:inherit;text-decoration:none}
}
)css";

using detail::array_at;
using detail::object_at;

std::string e(std::string_view s) { return xml_escape(s); }
std::string et(const json& j, const char* key) { return xml_escape(detail::text(j, key)); }

std::string verdict_badge(const std::string& v) {
  if (v == "pass") return "<span class=\"v pass\">PASS</span>";
  if (v == "fail") return "<span class=\"v fail\">FAIL</span>";
  return "<span class=\"v none\">" + e(v) + "</span>";
}

// The fault as its kind described it when the trial was planned.
std::string fault_text(const json& t) {
  const auto& f = object_at(t, "fault");
  if (!detail::text(f, "text").empty()) return detail::text(f, "text");
  std::string s = detail::text(f, "kind");
  if (!detail::text(f, "variant").empty()) s += ": " + detail::text(f, "variant");
  return s;
}

std::string broken_list(const json& t) {
  std::string s;
  for (const auto& b : array_at(t, "broken")) s += (s.empty() ? "" : ", ") + detail::text(b, "oracle");
  return s;
}

bool safe_relative(const std::string& p) {
  if (p.empty()) return false;
  std::filesystem::path rel(p);
  if (rel.is_absolute()) return false;
  for (const auto& part : rel)
    if (part == "..") return false;
  return true;
}

// A console transcript, escaped, with the "[  12.345 ms]" stamps set apart.
std::string transcript_html(const std::filesystem::path& file, std::size_t max_lines) {
  auto text = detail::read_file(file);
  if (!text) return "<p class=\"note\">No console transcript at " + e(file.string()) + ".</p>";
  auto lines = detail::split_lines(*text, nullptr);
  if (lines.empty()) return "<p class=\"note\">The console transcript is empty.</p>";
  constexpr std::size_t kMaxLineChars = 2000;
  std::size_t head = lines.size() > max_lines ? max_lines / 4 : lines.size();
  std::size_t tail_from = lines.size() > max_lines ? lines.size() - (max_lines - head) : lines.size();
  std::string out = "<pre class=\"console\">";
  auto line_html = [&](const std::string& l) {
    std::string body = l.size() > kMaxLineChars ? l.substr(0, kMaxLineChars) + " [line cut]" : l;
    auto close = body.find("ms] ");
    if (!body.empty() && body[0] == '[' && close != std::string::npos && close < 24)
      return "<span class=\"ts\">" + e(body.substr(0, close + 3)) + "</span>" + e(body.substr(close + 3)) +
             "\n";
    return e(body) + "\n";
  };
  for (std::size_t i = 0; i < head; ++i) out += line_html(lines[i].text);
  if (tail_from > head)
    out += fmt::format(
        "<span class=\"ts\">[... {} lines left out here; the whole transcript is in the "
        "bundle ...]</span>\n",
        tail_from - head);
  for (std::size_t i = std::max(head, tail_from); i < lines.size(); ++i) out += line_html(lines[i].text);
  out += "</pre>\n";
  return out;
}

struct Counts {
  std::size_t trials = 0, passed = 0, failed = 0;
  void add(const json& t) {
    ++trials;
    detail::text(t, "verdict") == "pass" ? ++passed : ++failed;
  }
};

// The colours of defects on the window chart (passed is green).
constexpr const char* kDefectColours[] = {"#b3261e", "#e8710a", "#8e24aa", "#c2185b", "#6d4c41", "#1a73e8"};

// A trial whose power cut fell (or was planned) at a counted flash operation.
struct Cut {
  double x;  ///< op / total, in 0..1
  std::uint64_t op;
  std::uint64_t total;
  std::string phase;
  bool pass;
  bool torn;
  std::vector<std::string> broken;
};

std::vector<Cut> collect_cuts(const RecordList& trials) {
  std::vector<Cut> cuts;
  trials.for_each([&](const json& trial, std::size_t) {
    const json* t = &trial;
    double op = 0, total = 0;
    std::string phase;
    bool torn = false;
    if (t->contains("cut") && (*t)["cut"].is_object()) {
      const auto& c = (*t)["cut"];
      op = c.value("op", 0.0);
      total = c.value("ops_total", 0.0);
      phase = detail::text(c, "phase");
      torn = c.value("torn", false);
    } else if (object_at(*t, "fault").contains("before_op")) {
      // A counted cut that did not fall (the update ended first).
      const auto& f = object_at(*t, "fault");
      op = f.value("before_op", 0.0);
      total = f.value("ops_total", 0.0);
      phase = "(cut did not fall)";
      torn = f.value("torn", false);
    } else {
      return;
    }
    if (total <= 0) return;
    std::vector<std::string> broken;
    for (const auto& b : array_at(*t, "broken")) broken.push_back(detail::text(b, "oracle"));
    cuts.push_back({std::clamp(op / total, 0.0, 1.0), static_cast<std::uint64_t>(op),
                    static_cast<std::uint64_t>(total), phase.empty() ? "(unknown)" : phase,
                    detail::text(*t, "verdict") == "pass", torn, broken});
  });
  return cuts;
}

// The power-cut charts of the report: inline SVG appended to `out`.
class CutCharts {
 public:
  explicit CutCharts(std::string& out) : out_(out) {}

  // Windows of outcomes over the index where each fault was placed: one row
  // per scenario and fault, one band per run of trials (in the order of the
  // index) with the same outcome: passed, or the defect the trial belongs to.
  // A band spans its first to its last index, so 513 cuts and 8 read alike.
  void window_chart(const RecordList& trials, const std::map<std::string, std::string>& defect_of,
                    const std::map<std::string, std::size_t>& defect_rank,
                    const std::map<std::string, std::string>& title_of) {
    struct Point {
      std::uint64_t index;
      std::string id, outcome;  // "" = passed
    };
    struct Row {
      std::string scenario, fault, axis;
      std::uint64_t of = 0;
      std::vector<Point> points;
    };
    std::map<std::string, Row> rows;
    std::vector<std::string> order;
    trials.for_each([&](const json& t, std::size_t) {
      const auto pos = fault_position(t);
      if (pos.axis.empty()) return;
      const auto label = pos.row + " (" + pos.axis + ")";
      auto [it, fresh] = rows.try_emplace(label);
      if (fresh) order.push_back(label);
      auto& row = it->second;
      row.scenario = detail::text(t, "scenario");
      row.fault = pos.row.substr(std::min(pos.row.size(), row.scenario.size() + 2));
      row.axis = pos.axis;
      row.of = std::max({row.of, pos.of, pos.index});
      const auto id = detail::text(t, "id");
      std::string outcome;
      if (detail::text(t, "verdict") != "pass") {
        auto d = defect_of.find(id);
        outcome = d != defect_of.end() ? d->second : "failed";
      }
      row.points.push_back({pos.index, id, outcome});
    });
    if (rows.empty()) return;
    // One scale for every row when they share it: the index itself on the axis.
    const auto& any = rows.begin()->second;
    const bool one_scale = std::all_of(rows.begin(), rows.end(), [&](const auto& r) {
      return r.second.of == any.of && r.second.axis == any.axis;
    });
    const int left = 250, width = 800, row_h = 38, top = 10;
    const int height = top + static_cast<int>(order.size()) * row_h + 40;
    put(fmt::format(
        "<h3 id=\"cut-windows\">Windows of outcomes along the update</h3>\n<p class=\"note\">One row per "
        "scenario and fault; the trials in the order of the index where the fault was placed, one band per "
        "run of the same outcome, from the index of its first trial to that of its last: green passed, "
        "other colours a defect (its id on the band, the band links to it). Hover a band for its range and "
        "trials.</p>\n"
        "<svg id=\"cut-window-chart\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" role=\"img\" "
        "aria-label=\"windows of outcomes over the index of the fault\">\n",
        left + width + 20, height, left + width + 20, height));
    auto shorten = [](const std::string& text) {
      constexpr std::size_t kMax = 38;
      return text.size() > kMax ? text.substr(0, kMax - 1) + "\u2026" : text;
    };
    for (std::size_t r = 0; r < order.size(); ++r) {
      auto& row = rows[order[r]];
      const int y = top + static_cast<int>(r) * row_h;
      put(fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"/>\n", left, y, width,
                      row_h, r % 2 ? "#ffffff" : "#f3f4f6"));
      put(fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\" style=\"font-weight:600\">{}</text>\n"
                      "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n",
                      left - 8, y + row_h / 2 - 2, e(shorten(row.scenario)), left - 8, y + row_h / 2 + 11,
                      e(shorten(row.fault + ", by " + row.axis))));
      std::stable_sort(row.points.begin(), row.points.end(), [](const Point& a, const Point& b) {
        return std::tie(a.index, a.id) < std::tie(b.index, b.id);
      });
      const double scale = static_cast<double>(width) / static_cast<double>(std::max<std::uint64_t>(1, row.of));
      for (std::size_t i = 0; i < row.points.size();) {
        std::size_t j = i;
        while (j + 1 < row.points.size() && row.points[j + 1].outcome == row.points[i].outcome) ++j;
        const auto& first = row.points[i];
        const auto& last = row.points[j];
        const std::size_t n = j - i + 1;
        // A band covers its indexes' cells (each index centred on its place), within the plot.
        const double from = std::max(0.0, static_cast<double>(first.index) - 0.5);
        const double to = std::min(static_cast<double>(std::max<std::uint64_t>(1, row.of)),
                                   static_cast<double>(last.index) + 0.5);
        const double w = std::max(3.0, scale * (to - from));
        const double x0 = std::min(left + scale * from, left + width - w);
        const bool passed = first.outcome.empty();
        std::string colour = "#1b7a3d";
        if (!passed) {
          auto rank = defect_rank.find(first.outcome);
          colour = kDefectColours[(rank != defect_rank.end() ? rank->second : 0) % std::size(kDefectColours)];
        }
        const std::string range = first.index == last.index
                                      ? fmt::format("{} {}", row.axis, first.index)
                                      : fmt::format("{}s {}-{}", row.axis, first.index, last.index);
        std::string what = passed ? std::string("passed") : first.outcome;
        if (auto t = title_of.find(first.outcome); !passed && t != title_of.end()) what += ": " + t->second;
        const std::string title = fmt::format("<title>{}: {} of {}, {} trial{} ({}{}): {}</title>", e(order[r]),
                                              range, row.of, n, n == 1 ? "" : "s", e(first.id),
                                              n > 1 ? "\u2013" + e(last.id) : std::string(), e(what));
        const std::string band = fmt::format(
            "<rect class=\"window {}\" x=\"{:.1f}\" y=\"{}\" width=\"{:.1f}\" height=\"{}\" fill=\"{}\" "
            "data-first=\"{}\" data-last=\"{}\" data-trials=\"{}\" data-outcome=\"{}\">{}</rect>",
            passed ? "pass" : "fail", x0, y + 5, w, row_h - 10, colour, first.index, last.index, n,
            passed ? "pass" : e(first.outcome), title);
        const std::string label =
            !passed && w >= 44 ? fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\" "
                                              "style=\"font-size:10px;fill:#fff\">{}</text>",
                                              x0 + w / 2, y + row_h / 2 + 4, e(first.outcome))
                               : std::string();
        if (!passed && defect_rank.count(first.outcome))
          put(fmt::format("<a href=\"#defect-{}\">{}{}</a>\n", e(first.outcome), band, label));
        else
          put(band + label + "\n");
        i = j + 1;
      }
    }
    const int axis_y = top + static_cast<int>(order.size()) * row_h;
    for (int k = 0; k <= 4; ++k) {
      const int x = left + width * k / 4;
      put(fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#c4c7cc\"/>\n", x, top,
                      axis_y + 4));
      put(fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", x, axis_y + 16,
                      one_scale ? std::to_string(any.of * static_cast<std::uint64_t>(k) / 4) : std::to_string(k * 25) + "%"));
    }
    put(fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", left + width / 2, axis_y + 32,
                    one_scale ? e(fmt::format("{} where the fault was placed (of {})", any.axis, any.of))
                              : std::string("index where the fault was placed, as a share of the row's "
                                            "operations (or bytes)")));
    put("</svg>\n");
  }

  void heat_map(const std::vector<Cut>& cuts) {
    // One bin per flash operation when every cut is into an update of the
    // same length (a sweep), else 40 bins of 2.5% of the update.
    const std::uint64_t total = cuts.front().total;
    const bool per_op =
        total <= 80 && std::all_of(cuts.begin(), cuts.end(), [&](const Cut& c) { return c.total == total; });
    const std::size_t bins = per_op ? static_cast<std::size_t>(total) : 40;
    auto bin_of = [&](const Cut& c) {
      return per_op ? std::min<std::size_t>(bins - 1, static_cast<std::size_t>(c.op))
                    : std::min(bins - 1, static_cast<std::size_t>(c.x * static_cast<double>(bins)));
    };
    std::vector<std::string> rows = {"passed", "failed"};
    for (const auto& [name, what] : kOracles) rows.push_back(std::string("broke ") + name);
    for (const auto& c : cuts)
      for (const auto& b : c.broken)
        if (std::find(rows.begin(), rows.end(), "broke " + b) == rows.end()) rows.push_back("broke " + b);
    std::vector<std::vector<std::size_t>> grid(rows.size(), std::vector<std::size_t>(bins, 0));
    for (const auto& c : cuts) {
      auto bin = bin_of(c);
      ++grid[c.pass ? 0 : 1][bin];
      for (const auto& b : c.broken)
        for (std::size_t r = 2; r < rows.size(); ++r)
          if (rows[r] == "broke " + b) ++grid[r][bin];
    }
    std::size_t max_pass = 1, max_fail = 1;
    for (std::size_t r = 0; r < rows.size(); ++r)
      for (auto n : grid[r]) (r == 0 ? max_pass : max_fail) = std::max(r == 0 ? max_pass : max_fail, n);
    const int left = 160, cell_h = 22, top = 6, plot_w = 800;
    const int cell_w = std::max(10, plot_w / static_cast<int>(bins));
    const int width = left + cell_w * static_cast<int>(bins) + 20;
    const int height = top + cell_h * static_cast<int>(rows.size()) + 40;
    put(fmt::format(
        "<h3>Sweep outcome by position</h3>\n<p class=\"note\">{}; darker = more trials. A trial that "
        "broke several oracles counts in each of their rows.</p>\n"
        "<svg width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" role=\"img\" "
        "aria-label=\"sweep heat map\">\n",
        per_op ? fmt::format("one column per flash operation of the {}-operation update", total)
               : std::string("40 columns of 2.5% of the update each"),
        width, height, width, height));
    for (std::size_t r = 0; r < rows.size(); ++r) {
      int y = top + static_cast<int>(r) * cell_h;
      put(fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", left - 8, y + cell_h / 2 + 4,
                      e(rows[r])));
      for (std::size_t b = 0; b < bins; ++b) {
        auto n = grid[r][b];
        int x = left + static_cast<int>(b) * cell_w;
        std::string fill = "#f3f4f6";
        if (n) {
          double level =
              0.25 + 0.75 * static_cast<double>(n) / static_cast<double>(r == 0 ? max_pass : max_fail);
          fill = r == 0 ? fmt::format("rgba(27,122,61,{:.2f})", level)
                        : fmt::format("rgba(179,38,30,{:.2f})", level);
        }
        std::string where =
            per_op ? fmt::format("cut before op {}", b)
                   : fmt::format("{:.1f}-{:.1f}% of the update", 100.0 * static_cast<double>(b) / bins,
                                 100.0 * static_cast<double>(b + 1) / bins);
        put(
            fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"#fff\">"
                        "<title>{}, {}: {} trial(s)</title></rect>\n",
                        x, y, cell_w, cell_h, fill, e(rows[r]), where, n));
        if (n && cell_w >= 16)
          put(fmt::format(
              "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" style=\"font-size:9px;fill:#fff\">{}</text>\n",
              x + cell_w / 2, y + cell_h / 2 + 3, n > 999 ? std::string("1k+") : std::to_string(n)));
      }
    }
    int axis_y = top + cell_h * static_cast<int>(rows.size());
    const int plot = cell_w * static_cast<int>(bins);
    if (per_op) {
      std::size_t step = bins <= 20 ? 1 : bins <= 40 ? 5 : 10;
      for (std::size_t b = 0; b < bins; b += step)
        put(fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                        left + static_cast<int>(b) * cell_w + cell_w / 2, axis_y + 14, b));
    } else {
      for (int k = 0; k <= 4; ++k)
        put(fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}%</text>\n", left + plot * k / 4,
                        axis_y + 14, k * 25));
    }
    put(fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", left + plot / 2,
                    axis_y + 30,
                    per_op ? "flash operation the power cut came before"
                           : "position of the cut in the update's flash operations"));
    put("</svg>\n");
  }

 private:
  void put(std::string_view s) { out_ += s; }

  std::string& out_;
};

// The table of the run's scenarios with their trial counts and verdicts.
std::string scenario_table(const json& run, const RecordList& trials) {
  std::string out;
  auto put = [&](std::string_view text) { out += text; };
  std::map<std::string, Counts> counts;
  std::vector<std::string> order;
  trials.for_each([&](const json& t, std::size_t) {
    auto s = detail::text(t, "scenario");
    if (!counts.count(s)) order.push_back(s);
    counts[s].add(t);
  });
  std::map<std::string, const json*> parts;
  std::vector<std::string> part_order;
  for (const auto& p : array_at(object_at(run, "scenario"), "parts")) {
    parts[detail::text(p, "name")] = &p;
    part_order.push_back(detail::text(p, "name"));
  }
  for (const auto& s : order)
    if (!parts.count(s)) part_order.push_back(s);
  std::map<std::string, std::string> skipped_because;
  for (const auto& k : array_at(run, "skipped")) skipped_because[detail::text(k, "scenario")] = detail::text(k, "reason");
  put("<section "
      "id=\"scenarios\"><h2>Scenarios</h2>\n<table><tr><th>scenario</th><th>title</th><th>classes</th>"
      "<th>fault</th><th class=\"n\">trials</th><th class=\"n\">passed</th><th class=\"n\">failed</th>"
      "<th>verdict</th></tr>\n");
  for (const auto& s : part_order) {
    const auto c = counts.count(s) ? counts[s] : Counts{};
    const json* p = parts.count(s) ? parts[s] : nullptr;
    std::string cls;
    if (p)
      for (const auto& k : array_at(*p, "classes")) cls += (cls.empty() ? "" : ", ") + k.get<std::string>();
    put(fmt::format(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>"
        "<td class=\"n\">{}</td><td>{}</td></tr>\n",
        e(s), p ? et(*p, "title") : "", e(cls), p ? et(*p, "fault") : "", c.trials, c.passed, c.failed,
        c.trials                    ? verdict_badge(c.failed ? "fail" : "pass")
        : skipped_because.count(s) ? "<span class=\"v none\">SKIPPED</span><br><span class=\"note\">" +
                                         e(skipped_because[s]) + "</span>"
                                   : std::string("<span class=\"v none\">NO TRIALS</span>")));
  }
  put("</table>\n</section>\n");
  return out;
}

class Page {
 public:
  Page(const RunView& run, const HtmlOptions& o)
      : run_(run.head),
        o_(o),
        trials_(run.trials),
        findings_(run.findings),
        defects_(run.head.contains("defects") && run.head["defects"].is_array() ? run.head["defects"]
                                                                                 : defect_results(run)) {
    for (std::size_t i = 0; i < defects_.size(); ++i) {
      const auto id = detail::text(defects_[i], "id");
      defect_rank_[id] = i;
      defect_title_[id] = detail::text(defects_[i], "title");
      for (const auto& t : array_at(defects_[i], "trials"))
        if (t.is_string()) defect_of_[t.get<std::string>()] = id;
    }
  }

  std::string render() {
    auto script_hash = crypto::sha256(std::string_view(kPrintScript));
    auto csp_hash = base64_encode(
        std::string_view(reinterpret_cast<const char*>(script_hash.data()), script_hash.size()));
    const auto& scenario = object_at(run_, "scenario");
    const auto& board = object_at(run_, "board");
    put("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    put(
        fmt::format("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
                    "style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{}'\">\n",
                    csp_hash));
    put("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    put(fmt::format("<title>otarig evidence: {} on {}: {}</title>\n", et(scenario, "name"), et(board, "name"),
                    e(headline())));
    put(fmt::format("<style>{}</style>\n</head>\n<body>\n", kStyle));
    header();
    put("<nav><a href=\"#defects\">Defects</a><a href=\"#run\">Run</a><a href=\"#mechanism\">Update "
        "mechanism</a><a href=\"#traceability\">Traceability</a><a "
        "href=\"#findings\">Findings</a>"
        "<a href=\"#cuts\">Power cuts</a><a href=\"#scenarios\">Scenarios</a><a href=\"#trials\">Trials</a>"
        "<a href=\"#verify\">Verification</a></nav>\n<main>\n");
    defects();
    facts();
    mechanism();
    traceability();
    findings();
    charts();
    scenarios();
    all_trials();
    verification();
    put("</main>\n");
    put(fmt::format("<script>{}</script>\n</body>\n</html>\n", kPrintScript));
    return std::move(out_);
  }

 private:
  void put(std::string_view s) { out_ += s; }

  std::string headline() const {
    const auto& s = object_at(run_, "summary");
    auto findings = s.value("findings", std::size_t{0});
    if (run_.contains("aborted")) return "BENCH FAILURE";
    if (trials_.empty()) return "NO TRIALS";
    const auto wc = count_waivers(object_at(run_, "waivers"));
    if (findings && findings <= wc.waived && !wc.expired)
      return fmt::format("WAIVED: {} defect{}, {} finding(s), every one accepted by a waiver (not a pass)",
                         defects_.size(), defects_.size() == 1 ? "" : "s", findings);
    if (findings || s.value("failed", std::size_t{0}) || wc.expired)
      return fmt::format("FAIL: {} defect{}, {} finding(s){}{}", defects_.size(), defects_.size() == 1 ? "" : "s",
                         findings, wc.waived ? fmt::format(", {} waived", wc.waived) : std::string(),
                         wc.expired ? fmt::format(", {} waiver(s) expired", wc.expired) : std::string());
    return "PASS: no finding";
  }

  void header() {
    const auto& s = object_at(run_, "summary");
    const auto wc = count_waivers(object_at(run_, "waivers"));
    const auto findings = s.value("findings", std::size_t{0});
    const char* cls = run_.contains("aborted")                                   ? "aborted"
                      : trials_.empty()                                          ? "empty"
                      : findings && findings <= wc.waived && !wc.expired          ? "waived"
                      : (s.value("failed", std::size_t{0}) || findings || wc.expired) ? "fail"
                                                                                 : "pass";
    const auto& scenario = object_at(run_, "scenario");
    put(fmt::format("<header class=\"verdict {}\"><div class=\"inner\"><h1>otarig evidence report</h1>\n",
                    cls));
    put(fmt::format("<p class=\"big\" id=\"verdict\">{}</p>\n", e(headline())));
    put(fmt::format("<p class=\"sub\">{} ({}) on board {}, seed {}: {} trials, {} passed, {} failed</p>\n",
                    et(scenario, "title"), et(scenario, "name"), et(object_at(run_, "board"), "name"),
                    et(run_, "seed"), s.value("trials", trials_.size()), s.value("passed", std::size_t{0}),
                    s.value("failed", std::size_t{0})));
    if (!defects_.empty())
      put(fmt::format("<p class=\"sub\" id=\"defect-headline\">{}</p>\n", e(defects_headline(defects_))));
    if (run_.contains("aborted"))
      put(fmt::format("<p class=\"sub\">The bench failed and the campaign stopped: {}</p>\n",
                      et(run_, "aborted")));
    put("</div></header>\n");
  }

  // The defects: the failed trials grouped (docs/evidence.md, "Defects"),
  // each with its title, the trial that replays it and the trials behind it.
  void defects() {
    put("<section id=\"defects\"><h2>Defects</h2>\n");
    if (defects_.empty()) {
      put(trials_.empty() ? "<p>No trial ran.</p>\n" : "<p>No defect: every trial held every oracle.</p>\n");
      put("</section>\n");
      return;
    }
    put(fmt::format(
        "<p><b>{}</b>. A defect groups the failed trials that broke the same oracles under the same fault "
        "and phase and left the device in the same state; faults placed at an index (a flash or storage "
        "operation, a download byte) group only when no passed trial lies between them "
        "(<a href=\"#cuts\">where they fell</a>). {} finding(s) in all, one per failed trial, are listed "
        "<a href=\"#findings\">below</a>.</p>\n",
        e(defects_headline(defects_)), object_at(run_, "summary").value("findings", std::size_t{0})));
    for (const auto& w : array_at(object_at(run_, "waivers"), "declared"))
      if (detail::text(w, "status") == "expired")
        put(fmt::format("<p class=\"waiver expired\">Waiver <b>{}</b> expired on {} ({}): the campaign fails until it "
                        "is renewed or the defect fixed.</p>\n",
                        et(w, "id"), et(w, "expires"), et(w, "reason")));
    // The findings shown in full have a card to link to.
    std::set<std::string> carded;
    for (std::size_t i = 0; i < findings_.size() && i < o_.max_findings_detail; ++i)
      carded.insert(detail::text(findings_.at(i), "id"));
    constexpr std::size_t kMaxIds = 2000;
    for (std::size_t i = 0; i < defects_.size(); ++i) {
      const auto& d = defects_[i];
      const auto id = detail::text(d, "id");
      if (i >= o_.max_findings_detail) {
        if (i == o_.max_findings_detail)
          put(fmt::format("<p class=\"note\">{} more defects, one line each (every one is in run.json's "
                          "defects):</p>\n<table><tr><th>defect</th><th class=\"n\">trials</th><th>replay</th></tr>\n",
                          defects_.size() - i));
        put(fmt::format("<tr id=\"defect-{}\"><td>{}: {}</td><td class=\"n\">{}</td><td class=\"mono\">{}</td></tr>\n",
                        e(id), e(id), et(d, "title"), et(d, "count"), et(d, "replay")));
        if (i + 1 == defects_.size()) put("</table>\n");
        continue;
      }
      put(fmt::format("<article class=\"defect\" id=\"defect-{}\">\n<h3>{}: {}</h3>\n<dl class=\"kv\">", e(id),
                      e(id), et(d, "title")));
      if (const auto* w = waiver_of(object_at(run_, "waivers"), id))
        put(fmt::format("<dt>waived</dt><dd class=\"waiver\">WAIVED by {} until {}: {}</dd>", et(*w, "id"),
                        et(*w, "expires"), et(*w, "reason")));
      put(fmt::format("<dt>scenario</dt><dd>{}</dd>", et(d, "scenario")));
      std::string oracles;
      for (const auto& o : array_at(d, "oracles")) oracles += (oracles.empty() ? "" : ", ") + e(o.is_string() ? o.get<std::string>() : o.dump());
      put(fmt::format("<dt>oracles broken</dt><dd>{}</dd>", oracles));
      if (!detail::text(d, "phase").empty()) put(fmt::format("<dt>phase</dt><dd>{}</dd>", et(d, "phase")));
      const auto& obs = object_at(d, "observed");
      const auto booted = obs.find("booted");
      put(fmt::format("<dt>after the fault</dt><dd>{}</dd>",
                      booted == obs.end() || !booted->is_boolean() ? std::string("nothing observed")
                      : !booted->get<bool>()                       ? std::string("the device did not boot")
                                            : fmt::format("booted slot {} version {}", et(obs, "slot"), et(obs, "version"))));
      const auto& window = object_at(d, "window");
      if (!window.empty()) {
        const auto first = et(window, "first"), last = et(window, "last");
        put(fmt::format("<dt>window</dt><dd>{} {} of {} (<a href=\"#cuts\">on the chart</a>)</dd>",
                        first == last ? et(window, "axis") : et(window, "axis") + "s",
                        first == last ? first : first + "&ndash;" + last, et(window, "of")));
      }
      const auto finding = detail::text(d, "finding");
      put(fmt::format("<dt>representative</dt><dd>trial {}{}</dd></dl>\n", et(d, "representative"),
                      carded.count(finding) ? fmt::format(" (<a href=\"#finding-{}\">{}</a>)", e(finding), e(finding))
                      : finding.empty()     ? std::string()
                                            : " (" + e(finding) + ")"));
      put(fmt::format("<h4>Replay</h4>\n<pre class=\"replay\">{}</pre>\n", et(d, "replay")));
      const auto& ids = array_at(d, "trials");
      std::string list;
      for (std::size_t k = 0; k < ids.size() && k < kMaxIds; ++k)
        list += (k ? " " : "") + e(ids[k].is_string() ? ids[k].get<std::string>() : ids[k].dump());
      if (ids.size() > kMaxIds) list += fmt::format(" &hellip; and {} more in run.json", ids.size() - kMaxIds);
      put(fmt::format("<details class=\"defect-trials\"><summary>The {} trial{} behind it</summary>"
                      "<p class=\"mono\">{}</p></details>\n</article>\n",
                      ids.size(), ids.size() == 1 ? "" : "s", list));
    }
    put("</section>\n");
  }

  void row(const char* name, const std::string& value_html) {
    put(fmt::format("<tr><th>{}</th><td>{}</td></tr>\n", name, value_html));
  }

  void facts() {
    const auto& board = object_at(run_, "board");
    const auto& scenario = object_at(run_, "scenario");
    const auto& otarig = object_at(run_, "otarig");
    const auto& shard = object_at(run_, "shard");
    put("<section id=\"run\"><h2>Run</h2>\n<table class=\"facts\">\n");
    row("Board",
        fmt::format("{} <span class=\"note\">{}</span>", et(board, "name"), et(board, "description")));
    row("Device kind", et(board, "device_kind"));
    if (board.contains("power_loss")) row("Power loss", et(board, "power_loss"));
    row("Device identity", et(board, "identity"));
    if (board.contains("image_identity") && board["image_identity"].is_object())
      row("Image identity", fmt::format("{} <span class=\"note\">{}</span>", et(board["image_identity"], "kind"),
                                        et(board["image_identity"], "how")));
    row("Board profile", fmt::format("{}<br><span class=\"hash\">sha256 {}</span>", et(board, "profile"),
                                     et(board, "profile_sha256")));
    row("Scenario", fmt::format("{}: {}", et(scenario, "name"), et(scenario, "title")));
    row("Seed", et(run_, "seed"));
    // An unsharded run is one whole campaign, not "shard 0 of 1".
    std::string shard_text = shard.contains("count") && shard["count"].is_number() && shard["count"] > 1
                                 ? fmt::format("{} of {}", et(shard, "index"), et(shard, "count"))
                                 : std::string("none (the whole plan)");
    if (run_.contains("merged_from"))
      shard_text =
          fmt::format("merged from {} shard bundles (listed below)", array_at(run_, "merged_from").size());
    row("Shard", shard_text);
    row("otarig", fmt::format("{} (git revision <span class=\"mono\">{}</span>)", et(otarig, "version"),
                              et(otarig, "git_revision")));
    row("Started", et(run_, "started"));
    row("Ended", et(run_, "ended"));
    row("Trials planned / run", fmt::format("{} / {}", et(run_, "planned"), trials_.size()));
    if (run_.contains("ops_per_update")) {
      const auto& ops = run_["ops_per_update"];
      std::string text;
      if (ops.is_object())
        for (const auto& [update, n] : ops.items())
          text += (text.empty() ? "" : "<br>") + e(update) + ": " +
                  e(n.is_string() ? n.get<std::string>() : n.dump());
      else
        text = et(run_, "ops_per_update");
      row("Flash operations per update", text);
    }
    if (!o_.signer_keyid.empty())
      row("Attestation signer",
          fmt::format("key id <span class=\"mono\">{}</span>{}", e(o_.signer_keyid),
                      o_.test_key ? " (a key made for this bundle only: a test key, not a "
                                    "release signature)"
                                  : ""));
    if (run_.contains("aborted")) row("Bench failure", et(run_, "aborted"));
    put("</table>\n");

    put("<h3>Releases</h3>\n<table><tr><th>release</th><th>version</th><th class=\"n\">security counter</th>"
        "<th class=\"n\">bytes</th><th>SHA-256 of the image</th><th>device digest</th></tr>\n");
    for (const auto& r : array_at(run_, "releases"))
      put(
          fmt::format("<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>"
                      "<td class=\"hash\">{}</td><td class=\"hash\">{}</td></tr>\n",
                      et(r, "name"), et(r, "version"), et(r, "security_counter"), et(r, "size"),
                      et(r, "sha256"), et(r, "digest")));
    put("</table>\n");
    const auto& components = object_at(run_, "components");
    if (!components.empty()) {
      put("<h3>Components</h3>\n<table><tr><th>component</th><th>version</th></tr>\n");
      for (const auto& [k, v] : components.items())
        put(fmt::format("<tr><td>{}</td><td class=\"mono\">{}</td></tr>\n", e(k),
                        e(v.is_string() ? v.get<std::string>() : v.dump())));
      put("</table>\n");
    }
    if (run_.contains("merged_from")) {
      put("<h3>Merged from</h3>\n<table><tr><th>shard</th><th>source</th><th class=\"n\">trials</th>"
          "<th>manifest SHA-256</th></tr>\n");
      for (const auto& m : array_at(run_, "merged_from"))
        put(fmt::format("<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"hash\">{}</td></tr>\n",
                        et(m, "shard"), et(m, "source"), et(m, "trials"), et(m, "manifest_sha256")));
      put("</table>\n");
    }
    put("</section>\n");
  }

  // A value of run.json's `mechanism` as one line of text.
  static std::string flat(const json& v) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
    if (v.is_number()) return v.dump();
    std::string out;
    if (v.is_array()) {
      for (const auto& x : v) out += (out.empty() ? "" : ", ") + flat(x);
      return out;
    }
    if (v.is_object()) {
      for (const auto& [k, x] : v.items()) out += (out.empty() ? "" : "; ") + k + ": " + flat(x);
      return out;
    }
    return "";
  }

  // CRA Annex VII 2(b): the update mechanism, from run.json's `mechanism`
  // (the profile and the bound bench), and what this run did not test.
  void mechanism() {
    const auto& m = object_at(run_, "mechanism");
    put("<section id=\"mechanism\"><h2>Update mechanism under test</h2>\n");
    if (m.empty()) {
      put("<p class=\"note\">This run.json does not describe the update mechanism (written before otarig "
          "recorded it).</p>\n</section>\n");
      return;
    }
    put("<p>How the device under test is updated, as its board profile declares it and the rig bound it: from "
        "signing to the device's checks. What the profile does not say is absent, not guessed.</p>\n");
    auto table = [&](const char* title, const char* id, const json& section) {
      put(fmt::format("<h3 id=\"{}\">{}</h3>\n<table class=\"kv\">", id, title));
      for (const auto& [k, v] : section.items()) {
        std::string label = k;
        std::replace(label.begin(), label.end(), '_', ' ');
        put(fmt::format("<tr><th>{}</th><td>{}</td></tr>", e(label), e(flat(v))));
      }
      put("</table>\n");
    };
    table("Signing and trust", "mechanism-signing", object_at(m, "signing"));
    table("Transport", "mechanism-transport", object_at(m, "transport"));
    table("Storage, switching and what the rig reads", "mechanism-storage", object_at(m, "storage"));
    table("Policies and releases", "mechanism-policies", object_at(m, "policies"));
    put("<h3 id=\"not-tested\">What this run did not test</h3>\n<ul>\n");
    std::size_t n = 0;
    for (const auto& k : array_at(run_, "skipped")) {
      put(fmt::format("<li>scenario <b>{}</b>: {}</li>\n", et(k, "scenario"), et(k, "reason")));
      ++n;
    }
    for (const auto& r : array_at(run_, "requirements")) {
      const auto status = detail::text(r, "status");
      if (status == "pass" || status == "fail" || array_at(r, "classes_missing").empty()) continue;
      put(fmt::format("<li>requirement <b>{}</b> ({}): classes {} not exercised</li>\n", et(r, "id"),
                      e(requirement_status_text(status)), e(flat(array_at(r, "classes_missing")))));
      ++n;
    }
    if (n == 0) put("<li>Nothing: every scenario of the plan ran and every requirement's classes were exercised.</li>\n");
    put("</ul>\n</section>\n");
  }

  void traceability() {
    // What run.json says per requirement (made from the same trials when a
    // hand-made document has none): scenarios that ran, apart from those that
    // did not, and the classes exercised and missing.
    json results;
    if (run_.contains("requirements") && run_["requirements"].is_array()) {
      results = run_["requirements"];
    } else {
      RequirementTally tally;
      trials_.for_each([&](const json& t, std::size_t) { tally.add(t); });
      results = tally.results(run_);
    }
    std::map<std::string, const json*> result_of;
    for (const auto& r : results) result_of[detail::text(r, "id")] = &r;
    std::map<std::string, std::string> classes_of;
    for (const auto& p : array_at(object_at(run_, "scenario"), "parts")) {
      std::string cls;
      for (const auto& c : array_at(p, "classes"))
        if (c.is_string()) cls += (cls.empty() ? "" : ", ") + c.get<std::string>();
      classes_of[detail::text(p, "name")] = cls;
    }
    auto list = [](const json& v) {
      std::string s;
      for (const auto& c : v)
        if (c.is_string()) s += (s.empty() ? "" : ", ") + c.get<std::string>();
      return s;
    };
    const auto& catalog = object_at(run_, "compliance");
    put("<section id=\"traceability\"><h2>Traceability</h2>\n");
    if (catalog.contains("version"))
      put(fmt::format("<p id=\"catalog\">Requirement catalog: <b>{}</b> version <b>{}</b> ({}), <span "
                      "class=\"hash\">sha256 {}</span>, as run.json records it.</p>\n",
                      et(catalog, "catalog"), et(catalog, "version"), et(catalog, "date"), et(catalog, "sha256")));
    else
      put("<p id=\"catalog\">This run.json records no requirement catalog: the rows are the requirement ids its "
          "scenarios name.</p>\n");
    put("<p>Each requirement, the scenarios of this run "
        "that gave evidence for it with the trials that ran, and apart from them its scenarios that did not run, "
        "with the reason. A requirement is PASS only when every scenario class mapped to it (the catalog's classes "
        "for it and those of the run's scenarios that name it) was exercised by trials that ran and none failed; PARTLY EXERCISED names "
        "the classes no trial exercised. Wording is a summary, not the standard's text. Greyed rows are "
        "requirements this run does not exercise.</p>\n");
    put("<table><tr><th>requirement</th><th>summary</th><th>scenario classes</th><th>scenarios that ran "
        "(trials)</th><th>not run (why)</th><th class=\"n\">trials</th><th class=\"n\">passed</th><th "
        "class=\"n\">failed</th><th>verdict</th></tr>\n");
    auto emit = [&](const std::string& id, const std::string& summary, const std::string& classes, bool whole_bundle,
                    const std::string& source) {
      const json* r = result_of.count(id) ? result_of[id] : nullptr;
      const json none = json::object();
      const json& res = r ? *r : none;
      const auto trials = res.value("trials", std::size_t{0});
      std::string ran, skipped;
      for (const auto& [name, n] : object_at(res, "scenarios_run").items())
        ran += (ran.empty() ? "" : "<br>") + e(name) +
               (classes_of.count(name) && !classes_of[name].empty()
                    ? " <span class=\"note\">(" + e(classes_of[name]) + ")</span>"
                    : "") +
               fmt::format(": {} trial{}", e(n.dump()), n == 1 ? "" : "s");
      for (const auto& k : array_at(res, "skipped"))
        skipped += (skipped.empty() ? "" : "<br>") + et(k, "scenario") +
                   (classes_of.count(detail::text(k, "scenario")) && !classes_of[detail::text(k, "scenario")].empty()
                        ? " <span class=\"note\">(" + e(classes_of[detail::text(k, "scenario")]) + ")</span>"
                        : "") +
                   ": <span class=\"note\">" + et(k, "reason") + "</span>";
      const auto status = detail::text(res, "status");
      std::string verdict;
      bool covered = trials > 0;
      if (whole_bundle) {
        ran = "this bundle: report, run.json, journal, trial evidence, signed manifest";
        verdict = "<span class=\"v bundle\">EVIDENCE</span>";
        covered = true;
      } else if (status == "fail") {
        verdict = verdict_badge("fail");
      } else if (status == "pass") {
        verdict = verdict_badge("pass");
      } else if (status == "partly-exercised") {
        verdict = "<span class=\"v partial\">PARTLY EXERCISED</span><br><span class=\"note\">missing " +
                  e(list(array_at(res, "classes_missing"))) + "</span>";
      } else {
        verdict = "<span class=\"v none\">NOT EXERCISED</span>";
        if (ran.empty()) ran = "<span class=\"note\">none</span>";
      }
      if (status == "fail" && !array_at(res, "classes_missing").empty())
        verdict += "<br><span class=\"note\">not exercised: " + e(list(array_at(res, "classes_missing"))) +
                   "</span>";
      auto n = [&](const char* key) {
        return whole_bundle ? std::string("&mdash;") : std::to_string(res.value(key, std::size_t{0}));
      };
      put(fmt::format("<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td>"
                      "<td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>\n",
                      covered ? "" : " class=\"uncovered\"", e(id),
                      e(summary) + (source.empty() ? "" : "<br><span class=\"note\">" + e(source) + "</span>"),
                      e(classes), ran, skipped,
                      n("trials"), n("passed"), n("failed"), verdict));
    };
    // The catalog's requirements in its order, then the ids the run's
    // scenarios name that it lacks.
    std::set<std::string> known;
    for (const auto& r : array_at(catalog, "requirements")) {
      const auto id = detail::text(r, "id");
      if (id.empty() || !known.insert(id).second) continue;
      const bool whole = r.value("whole_bundle", false) == true;
      emit(id, detail::text(r, "summary"), whole ? "the whole bundle" : list(array_at(r, "classes")), whole,
           detail::text(r, "source"));
    }
    for (const auto& r : results) {
      auto id = detail::text(r, "id");
      if (!known.count(id))
        emit(id, "(not in the requirement catalog)", list(array_at(r, "classes_required")), false, "");
    }
    put("</table>\n</section>\n");
  }

  void findings() {
    const auto& list = findings_;
    put("<section id=\"findings\"><h2>Findings</h2>\n");
    if (list.empty()) {
      put(trials_.empty() ? "<p>No trial ran.</p>\n" : "<p>No finding: every trial held every oracle.</p>\n");
    } else {
      put(
          fmt::format("<p>{} finding(s). A finding is a failed trial: a trial after which an oracle did not "
                      "hold; the <a href=\"#defects\">defects</a> above group them. Each comes with the command "
                      "that replays it.</p>\n",
                      list.size()));
    }
    put("<details><summary>What the oracles check</summary><table><tr><th>oracle</th><th>holds "
        "when</th></tr>\n");
    for (const auto& [name, what] : kOracles)
      put(fmt::format("<tr><td>{}</td><td>{}</td></tr>\n", name, what));
    for (const auto& [name, what] : kReleaseOracles)
      put(fmt::format("<tr><td>{}</td><td>{}</td></tr>\n", name, what));
    for (const auto& [name, what] : kScenarioOracles)
      put(fmt::format("<tr><td>{}</td><td>{}</td></tr>\n", name, what));
    put("</table></details>\n");
    // The trials of the findings shown in full, found in one pass.
    std::set<std::string> wanted;
    for (std::size_t i = 0; i < list.size() && i < o_.max_findings_detail; ++i)
      wanted.insert(detail::text(list.at(i), "trial"));
    if (!wanted.empty())
      trials_.for_each([&](json t, std::size_t) {
        auto id = detail::text(t, "id");
        if (wanted.count(id)) by_id_[id] = std::move(t);
      });
    std::size_t shown = 0;
    for (std::size_t i = 0; i < list.size(); ++i) {
      if (shown++ >= o_.max_findings_detail) {
        put(
            fmt::format("<p class=\"note\">{} more findings are listed in the trials table below and in "
                        "run.json.</p>\n",
                        list.size() - o_.max_findings_detail));
        break;
      }
      finding(list.at(i));
    }
    put("</section>\n");
  }

  void finding(const json& f) {
    auto trial_id = detail::text(f, "trial");
    const json* t = by_id_.count(trial_id) ? &by_id_[trial_id] : nullptr;
    put(fmt::format("<article class=\"finding\" id=\"finding-{}\">\n<h3>{}: trial {} ({})</h3>\n",
                    et(f, "id"), et(f, "id"), e(trial_id), et(f, "scenario")));
    put("<dl class=\"kv\">");
    put(fmt::format("<dt>fault</dt><dd>{}</dd>", e(fault_text(f))));
    auto detail_text = detail::text(object_at(f, "fault"), "detail");
    if (!detail_text.empty()) put(fmt::format("<dt>fault detail</dt><dd>{}</dd>", e(detail_text)));
    if (t && t->contains("cut")) {
      const auto& c = (*t)["cut"];
      put(fmt::format("<dt>power cut fell at</dt><dd>op {}/{} ({} at {}, phase {}{})</dd>", et(c, "op"),
                      et(c, "ops_total"), et(c, "kind"), et(c, "address"), et(c, "phase"),
                      c.value("torn", false) ? ", torn write" : ""));
    }
    if (t)
      put(fmt::format("<dt>delivery</dt><dd>{} {}</dd>", et(object_at(*t, "delivery"), "status"),
                      et(object_at(*t, "delivery"), "detail")));
    put(fmt::format("<dt>trial seed</dt><dd class=\"mono\">{}</dd>", et(f, "seed")));
    std::string reqs;
    for (const auto& r : array_at(f, "requirements"))
      reqs += (reqs.empty() ? "" : "; ") + e(r.get<std::string>());
    put(fmt::format("<dt>requirements</dt><dd>{}</dd></dl>\n", reqs));

    put("<h4>Oracles broken</h4>\n<ul>\n");
    for (const auto& o : array_at(f, "oracles"))
      put(fmt::format("<li><b>{}</b>: {}</li>\n", et(o, "oracle"), et(o, "detail")));
    put("</ul>\n");

    put("<h4>Observed device "
        "states</h4>\n<table><tr><th>step</th><th>booted</th><th>slot</th><th>version</th>"
        "<th>digest</th><th class=\"n\">counter</th><th>state</th><th>health</th></tr>\n");
    for (const auto& o : array_at(f, "observed"))
      put(
          fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"hash\">{}</td>"
                      "<td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>\n",
                      et(o, "step"), o.value("booted", false) ? "yes" : "<b>no</b>", et(o, "slot"),
                      et(o, "version"), et(o, "digest"), et(o, "counter"), et(o, "state"), et(o, "health")));
    put("</table>\n");

    auto transcript = detail::text(f, "transcript");
    if (transcript.empty() && t) transcript = detail::text(*t, "evidence") + "/console.log";
    put(fmt::format("<h4>Console transcript <span class=\"note\">({})</span></h4>\n", e(transcript)));
    if (o_.evidence.empty())
      put("<p class=\"note\">Not included here; see the file in the bundle.</p>\n");
    else if (!safe_relative(transcript))
      put("<p class=\"note\">The transcript path is not inside the bundle; not shown.</p>\n");
    else
      put(transcript_html(o_.evidence / transcript, o_.max_transcript_lines));
    put(fmt::format("<h4>Replay</h4>\n<pre class=\"replay\">{}</pre>\n</article>\n", et(f, "replay")));
  }

  // Windows of outcomes along the update (faults placed at an index), and
  // the heat map of counted power cuts by position.
  void charts() {
    const auto cuts = collect_cuts(trials_);
    put("<section id=\"cuts\"><h2>Power cuts</h2>\n");
    const auto before = out_.size();
    CutCharts charts(out_);
    charts.window_chart(trials_, defect_of_, defect_rank_, defect_title_);
    if (cuts.empty()) {
      if (out_.size() == before) put("<p>No trial of this run placed a fault at an operation or a byte.</p>\n");
      put("</section>\n");
      return;
    }
    put(fmt::format("<p>{} trials cut power at a counted flash or storage operation.</p>\n", cuts.size()));
    charts.heat_map(cuts);
    put("</section>\n");
  }

  void scenarios() { put(scenario_table(run_, trials_)); }

  // A row of the trials table.
  static std::string trial_row(const json& t) {
    std::string phase = t.contains("cut") ? et(t["cut"], "phase") : "";
    return fmt::format(
        "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
        "<td>{}</td><td class=\"n\">{:.0f}</td></tr>\n",
        et(t, "id"), et(t, "scenario"), e(fault_text(t)), phase, et(object_at(t, "delivery"), "status"),
        verdict_badge(detail::text(t, "verdict")), e(broken_list(t)), t.value("duration_ms", 0.0));
  }

  void all_trials() {
    // Every failure, then passes up to the row budget, in trial order; a row
    // is held as its HTML.
    std::vector<std::string> rows;
    std::size_t failures = 0;
    trials_.for_each([&](const json& t, std::size_t) {
      if (detail::text(t, "verdict") != "pass") ++failures;
    });
    std::size_t pass_budget = o_.max_trial_rows > failures ? o_.max_trial_rows - failures : 0;
    std::size_t fail_budget = o_.max_trial_rows;
    trials_.for_each([&](const json& t, std::size_t) {
      bool pass = detail::text(t, "verdict") == "pass";
      if (pass ? pass_budget : fail_budget) {
        rows.push_back(trial_row(t));
        --(pass ? pass_budget : fail_budget);
      }
    });
    put(fmt::format(
        "<section id=\"trials\"><h2>Trials</h2>\n<details><summary>All trials ({} shown of {}{})"
        "</summary>\n",
        rows.size(), trials_.size(),
        rows.size() < trials_.size() && failures <= o_.max_trial_rows ? ", every failure included" : ""));
    if (rows.size() < trials_.size())
      put("<p class=\"note\">The complete list is in run.json and junit.xml; each trial's evidence is in "
          "trials/ID/.</p>\n");
    put("<table><tr><th>trial</th><th>scenario</th><th>fault</th><th>cut phase</th><th>delivery</th>"
        "<th>verdict</th><th>oracles broken</th><th class=\"n\">ms</th></tr>\n");
    for (const auto& row : rows) put(row);
    put("</table>\n</details>\n</section>\n");
  }

  void verification() {
    put("<section id=\"verify\"><h2>Verification</h2>\n<p>This page is one file of an evidence bundle. "
        "<span class=\"mono\">manifest-sha256.txt</span> lists the SHA-256 of every file in the bundle, this "
        "page "
        "included; <span class=\"mono\">attestation.dsse.json</span> signs the manifest and run.json (an "
        "in-toto "
        "statement in a DSSE envelope, Ed25519); <span class=\"mono\">attestation.pub.pem</span> is the "
        "public "
        "key. To check that nothing changed since the run:</p>\n<pre>otarig report verify BUNDLE_FOLDER\n"
        "# or by hand, for the files:\ncd BUNDLE_FOLDER &amp;&amp; sha256sum --strict -c "
        "manifest-sha256.txt</pre>\n"
        "<p>docs/evidence.md of otarig describes every file and how to check the signature with "
        "openssl.</p>\n");
    put("</section>\n");
  }

  const json& run_;
  const HtmlOptions& o_;
  RecordList trials_;
  RecordList findings_;
  json defects_;                                     ///< run.json's defects
  std::map<std::string, std::size_t> defect_rank_;   ///< defect id -> its position
  std::map<std::string, std::string> defect_title_;  ///< defect id -> its title
  std::map<std::string, std::string> defect_of_;     ///< failed trial id -> its defect id
  std::map<std::string, json> by_id_;  ///< the trials of the findings shown in full
  std::string out_;
};

}  // namespace

std::string report_html(const nlohmann::json& run, const HtmlOptions& options) {
  auto view = RunView::of(run);
  if (!run.is_object()) view.head = run;
  return Page(view, options).render();
}

std::string report_html(const RunView& run, const HtmlOptions& options) { return Page(run, options).render(); }

}  // namespace otarig::reports
