#include "otarig/reports/defects.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <set>
#include <tuple>

#include "detail.hpp"

namespace otarig::reports {

namespace {

using nlohmann::json;

// The fields of a trial's fault that say which fault it is (not where it
// fell or which seed drew it).
// (A brown-out's number of recovery cuts is drawn per trial: not among them.)
constexpr std::array kFaultFields = {"kind", "at", "variant", "torn", "error", "mode", "crash_mode", "image", "pattern"};

// The standard oracles in DESIGN.md's order; any other follows by name.
constexpr std::array kOracleOrder = {"authentic",       "atomic",     "no-rollback", "recovered",
                                     "still-updatable", "compatible", "dependencies", "confidential"};

std::size_t oracle_rank(const std::string& name) {
  for (std::size_t i = 0; i < kOracleOrder.size(); ++i)
    if (name == kOracleOrder[i]) return i;
  return kOracleOrder.size();
}

bool index_at(const json& fault, const char* key, std::uint64_t& out) {
  auto it = fault.find(key);
  if (it == fault.end() || !it->is_number_integer()) return false;
  if (!it->is_number_unsigned() && it->get<std::int64_t>() < 0) return false;
  out = it->get<std::uint64_t>();
  return true;
}

std::uint64_t count_at(const json& fault, const char* key) {
  std::uint64_t n = 0;
  return index_at(fault, key, n) ? n : 0;
}

// Where along the update a fault was placed, for faults placed at an index.
struct Axis {
  std::string name;  ///< "" when the fault is not placed at an index
  std::uint64_t index = 0, of = 0;
};

Axis axis_of(const json& fault) {
  Axis a;
  if (index_at(fault, "storage_op", a.index)) {
    a.name = "storage operation";
    a.of = count_at(fault, "ops_total");
  } else if (index_at(fault, "before_op", a.index)) {
    a.name = "flash operation";
    a.of = count_at(fault, "ops_total");
  } else if (index_at(fault, "byte", a.index)) {
    a.name = "download byte";
    a.of = count_at(fault, "image_size");
  }
  return a;
}

std::string phase_of(const json& trial, const Axis& axis) {
  const auto& cut = detail::object_at(trial, "cut");
  if (auto phase = detail::text(cut, "phase"); !phase.empty()) return phase;
  const auto& fault = detail::object_at(trial, "fault");
  if (detail::text(fault, "at") == "console") return "console line /" + detail::text(fault, "pattern") + "/";
  if (axis.name == "download byte") return "download";
  // A failed flash operation is not a cut: nothing records where it fell.
  if (fault.value("error", json(false)) == json(true)) return "";
  if (!axis.name.empty()) return "the cut did not fall";
  auto status = detail::text(detail::object_at(trial, "delivery"), "status");
  return status.empty() || status == "none" ? std::string() : "delivery " + status;
}

// The state the device was found in after the fault.
json observed_after_fault(const json& trial) {
  const auto& list = detail::array_at(trial, "observed");
  const json* seen = nullptr;
  for (const auto& o : list)
    if (o.is_object() && detail::text(o, "step") == "after-fault") {
      seen = &o;
      break;
    }
  if (!seen && !list.empty() && list.back().is_object()) seen = &list.back();
  if (!seen) return {{"booted", nullptr}};
  const auto booted = seen->find("booted");
  if (booted == seen->end() || !booted->is_boolean()) return {{"booted", nullptr}};
  if (!booted->get<bool>()) return {{"booted", false}};
  return {{"booted", true}, {"slot", detail::text(*seen, "slot")}, {"version", detail::text(*seen, "version")}};
}

std::string observed_text(const json& observed) {
  const auto booted = observed.find("booted");
  if (booted == observed.end() || !booted->is_boolean()) return "nothing observed after the fault";
  if (!booted->get<bool>()) return "the device did not boot after the fault";
  return fmt::format("the device booted slot {} version {} after the fault", detail::text(observed, "slot"),
                     detail::text(observed, "version"));
}

std::string plural(const std::string& noun) { return noun + "s"; }

std::string fault_text(const json& fault, bool indexed) {
  const auto kind = detail::text(fault, "kind");
  const bool torn = fault.value("torn", json(false)) == json(true);
  std::string text;
  if (fault.value("error", json(false)) == json(true))
    text = torn ? "flash operation errors after part of the operation landed" : "flash operation errors";
  else if (kind == "power-cut")
    text = torn ? "torn writes" : "power cuts";
  else
    text = kind + " faults";
  if (auto variant = detail::text(fault, "variant"); !variant.empty()) text += " (" + variant + ")";
  if (auto mode = detail::text(fault, "mode"); !mode.empty()) text += " (crash state " + mode + ")";
  if (auto mode = detail::text(fault, "crash_mode"); !mode.empty()) text += " (crash state " + mode + ")";
  if (!indexed)
    if (auto at = detail::text(fault, "at"); !at.empty()) text += " [" + at + "]";
  return text;
}

std::string window_text(const std::string& axis, std::uint64_t first, std::uint64_t last, std::uint64_t of,
                        std::size_t count) {
  const std::string total = of ? fmt::format(" of {}", of) : std::string();
  if (first == last && count == 1) return fmt::format(" at {} {}{}", axis, first, total);
  if (last - first + 1 == count) return fmt::format(" at {} {}-{}{}", plural(axis), first, last, total);
  return fmt::format(" at {} {} in {}-{}{}", count, plural(axis), first, last, total);
}

json fault_signature(const json& fault) {
  json signature = json::object();
  for (const char* field : kFaultFields)
    if (auto it = fault.find(field); it != fault.end() && !it->is_null()) signature[field] = *it;
  return signature;
}

}  // namespace

FaultPosition fault_position(const json& trial) {
  const auto& fault = detail::object_at(trial, "fault");
  const auto axis = axis_of(fault);
  return {detail::text(trial, "scenario") + ": " + fault_text(fault_signature(fault), !axis.name.empty()), axis.name,
          axis.index, axis.of};
}

void DefectTally::add(const json& trial) {
  if (!trial.is_object()) return;
  const auto& fault = detail::object_at(trial, "fault");
  const auto axis = axis_of(fault);
  const json signature = fault_signature(fault);
  Line line{signature, detail::text(trial, "scenario"), axis.name, axis.of, !axis.name.empty()};
  const auto line_text = json{{"scenario", line.scenario}, {"fault", signature}, {"axis", axis.name}, {"of", axis.of}}
                             .dump(-1, ' ', false, json::error_handler_t::replace);
  auto [at, fresh] = line_of_.try_emplace(line_text, lines_.size());
  if (fresh) lines_.push_back(std::move(line));

  Entry entry;
  entry.line = at->second;
  entry.index = axis.index;
  entry.id = detail::text(trial, "id");
  entry.passed = detail::text(trial, "verdict") == "pass";
  if (!entry.passed) {
    Key key{at->second, phase_of(trial, axis), {}, observed_after_fault(trial)};
    std::set<std::string> names;
    for (const auto& b : detail::array_at(trial, "broken")) names.insert(detail::text(b, "oracle"));
    key.oracles.assign(names.begin(), names.end());
    std::stable_sort(key.oracles.begin(), key.oracles.end(),
                     [](const auto& a, const auto& b) { return oracle_rank(a) < oracle_rank(b); });
    const auto key_text = json{{"line", key.line}, {"phase", key.phase}, {"oracles", key.oracles},
                               {"observed", key.observed}}
                              .dump(-1, ' ', false, json::error_handler_t::replace);
    auto [k, new_key] = key_of_.try_emplace(key_text, keys_.size());
    if (new_key) keys_.push_back(std::move(key));
    entry.key = k->second;
  }
  entries_.push_back(std::move(entry));
}

json DefectTally::results() const {
  // Each line's trials in the order of their index; a passed trial ends the
  // windows open before it.
  struct Window {
    std::size_t key;
    std::vector<const Entry*> trials;
  };
  std::vector<Window> windows;
  std::vector<std::vector<const Entry*>> on_line(lines_.size());
  for (const auto& e : entries_) on_line[e.line].push_back(&e);
  for (std::size_t l = 0; l < lines_.size(); ++l) {
    auto& list = on_line[l];
    if (lines_[l].indexed)
      std::stable_sort(list.begin(), list.end(), [](const Entry* a, const Entry* b) {
        return std::tie(a->index, a->id) < std::tie(b->index, b->id);
      });
    std::map<std::size_t, std::size_t> open;  // key -> its window
    for (const auto* e : list) {
      if (e->passed) {
        if (lines_[l].indexed) open.clear();
        continue;
      }
      auto [it, fresh] = open.try_emplace(e->key, windows.size());
      if (fresh) windows.push_back({e->key, {}});
      windows[it->second].trials.push_back(e);
    }
  }
  std::sort(windows.begin(), windows.end(), [&](const Window& a, const Window& b) {
    const auto& la = lines_[keys_[a.key].line];
    const auto& lb = lines_[keys_[b.key].line];
    const auto ia = la.indexed ? a.trials.front()->index : 0;
    const auto ib = lb.indexed ? b.trials.front()->index : 0;
    return std::tie(la.scenario, ia, a.trials.front()->id) < std::tie(lb.scenario, ib, b.trials.front()->id);
  });

  json out = json::array();
  std::map<std::string, std::size_t> titles;
  for (const auto& w : windows) {
    const auto& key = keys_[w.key];
    const auto& line = lines_[key.line];
    std::string title;
    for (const auto& o : key.oracles) title += (title.empty() ? "" : ", ") + o;
    title += " broken for " + fault_text(line.fault, line.indexed);
    json window = nullptr;
    if (line.indexed) {
      std::uint64_t first = w.trials.front()->index, last = first;
      for (const auto* e : w.trials) {
        first = std::min(first, e->index);
        last = std::max(last, e->index);
      }
      title += window_text(line.axis, first, last, line.of, w.trials.size());
      window = {{"axis", line.axis}, {"first", first}, {"last", last}, {"of", line.of}};
    }
    if (!key.phase.empty()) title += " (" + key.phase + ")";
    json ids = json::array();
    for (const auto* e : w.trials) ids.push_back(e->id);
    ++titles[line.scenario + "\n" + title];
    out.push_back({{"id", fmt::format("D{:04d}", out.size() + 1)},
                   {"title", title},
                   {"scenario", line.scenario},
                   {"fault", line.fault},
                   {"phase", key.phase},
                   {"oracles", key.oracles},
                   {"observed", key.observed},
                   {"window", window},
                   {"trials", ids},
                   {"count", w.trials.size()},
                   {"representative", w.trials.front()->id}});
  }
  // Defects of a scenario told apart only by the device's state say which state.
  for (auto& d : out)
    if (titles[d["scenario"].get<std::string>() + "\n" + d["title"].get<std::string>()] > 1)
      d["title"] = d["title"].get<std::string>() + "; " + observed_text(d["observed"]);
  return out;
}

void attach_findings(json& defects, const RecordList& findings) {
  std::map<std::string, std::vector<std::size_t>> of_trial;
  for (std::size_t i = 0; i < defects.size(); ++i) {
    defects[i]["finding"] = "";
    defects[i]["replay"] = "";
    of_trial[detail::text(defects[i], "representative")].push_back(i);
  }
  if (of_trial.empty()) return;
  findings.for_each([&](const json& f, std::size_t) {
    auto it = of_trial.find(detail::text(f, "trial"));
    if (it == of_trial.end()) return;
    for (auto i : it->second) {
      defects[i]["finding"] = detail::text(f, "id");
      defects[i]["replay"] = detail::text(f, "replay");
    }
  });
}

json defect_results(const RunView& run) {
  DefectTally tally;
  run.trials.for_each([&](const json& t, std::size_t) { tally.add(t); });
  auto defects = tally.results();
  attach_findings(defects, run.findings);
  return defects;
}

std::string defects_headline(const json& defects) {
  if (!defects.is_array() || defects.empty()) return "no defect";
  if (defects.size() == 1) return "1 defect: " + detail::text(defects[0], "title");
  return fmt::format("{} defects", defects.size());
}

std::string trial_list_text(const json& defect, std::size_t shown) {
  const auto& ids = detail::array_at(defect, "trials");
  std::string text;
  auto add = [&](const std::string& s) { text += (text.empty() ? "" : ", ") + s; };
  if (ids.size() <= shown || shown < 2) {
    for (const auto& id : ids) add(id.is_string() ? id.get<std::string>() : id.dump());
    return text;
  }
  for (std::size_t i = 0; i + 1 < shown; ++i) add(ids[i].is_string() ? ids[i].get<std::string>() : ids[i].dump());
  add("...");
  add(ids.back().is_string() ? ids.back().get<std::string>() : ids.back().dump());
  return text;
}

}  // namespace otarig::reports
