#include "otarig/reports/waivers.hpp"

#include <algorithm>
#include <set>

namespace otarig::reports {
namespace {

std::string text(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::set<std::string> strings(const nlohmann::json& j, const char* key) {
  std::set<std::string> out;
  auto it = j.find(key);
  if (it != j.end() && it->is_array())
    for (const auto& s : *it)
      if (s.is_string()) out.insert(s.get<std::string>());
  return out;
}

}  // namespace

nlohmann::json waiver_results(const nlohmann::json& declared, const std::string& date, const nlohmann::json& defects) {
  nlohmann::json out = nlohmann::json::array();
  if (!declared.is_array()) return {{"date", date}, {"declared", out}};
  std::vector<bool> active;
  for (const auto& w : declared) {
    nlohmann::json r{{"id", text(w, "id")},
                     {"scenario", text(w, "scenario")},
                     {"oracles", w.value("oracles", nlohmann::json::array())},
                     {"reason", text(w, "reason")},
                     {"expires", text(w, "expires")}};
    // ISO dates compare as text; the waiver holds on its expiry day.
    const bool is_active = !date.empty() && date <= text(w, "expires");
    r["status"] = is_active ? "active" : "expired";
    r["defects"] = nlohmann::json::array();
    r["trials"] = 0;
    active.push_back(is_active);
    out.push_back(std::move(r));
  }
  std::vector<bool> taken_by_active;
  for (const auto& d : defects.is_array() ? defects : nlohmann::json::array()) {
    const auto scenario = text(d, "scenario");
    const auto broken = strings(d, "oracles");
    const auto count = d.value("count", std::uint64_t{0});
    bool covered = false;
    for (std::size_t i = 0; i < out.size(); ++i) {
      auto& w = out[i];
      const auto ws = text(w, "scenario");
      if (!ws.empty() && ws != scenario) continue;
      const auto accepted = strings(w, "oracles");
      if (broken.empty() || !std::includes(accepted.begin(), accepted.end(), broken.begin(), broken.end())) continue;
      if (active[i]) {
        if (covered) continue;
        covered = true;
      }
      w["defects"].push_back(text(d, "id"));
      w["trials"] = w["trials"].get<std::uint64_t>() + count;
    }
  }
  return {{"date", date}, {"declared", out}};
}

WaiverCount count_waivers(const nlohmann::json& waivers) {
  WaiverCount c;
  if (!waivers.is_object() || !waivers.contains("declared") || !waivers["declared"].is_array()) return c;
  for (const auto& w : waivers["declared"]) {
    if (text(w, "status") == "active")
      c.waived += w.value("trials", std::uint64_t{0});
    else
      ++c.expired;
  }
  return c;
}

std::string waiver_date(const nlohmann::json& head) {
  const auto started = text(head, "started");
  return started.substr(0, std::min<std::size_t>(10, started.size()));
}

WaiverCount judge_waivers(nlohmann::json& head, const nlohmann::json& declared) {
  const auto defects = head.value("defects", nlohmann::json::array());
  head["waivers"] = waiver_results(declared, waiver_date(head), defects);
  const auto c = count_waivers(head["waivers"]);
  head["summary"]["waived"] = c.waived;
  head["summary"]["expired_waivers"] = c.expired;
  return c;
}

const nlohmann::json* waiver_of(const nlohmann::json& waivers, const std::string& defect_id) {
  if (!waivers.is_object() || !waivers.contains("declared") || !waivers["declared"].is_array()) return nullptr;
  for (const auto& w : waivers["declared"]) {
    if (text(w, "status") != "active") continue;
    for (const auto& d : w.value("defects", nlohmann::json::array()))
      if (d.is_string() && d.get<std::string>() == defect_id) return &w;
  }
  return nullptr;
}

}  // namespace otarig::reports
