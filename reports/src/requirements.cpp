#include "otarig/reports/requirements.hpp"

#include <algorithm>
#include <cctype>
#include <set>
#include <tuple>

#include "detail.hpp"

namespace otarig::reports {

namespace {

using nlohmann::json;

std::vector<std::string> strings_at(const json& value, const char* key) {
  std::vector<std::string> out;
  for (const auto& s : detail::array_at(value, key))
    if (s.is_string()) out.push_back(s.get<std::string>());
  return out;
}

void add_once(std::vector<std::string>& list, const std::string& item) {
  if (std::find(list.begin(), list.end(), item) == list.end()) list.push_back(item);
}

// "S2" before "S10": letters, then the number as a number.
bool class_less(const std::string& a, const std::string& b) {
  auto split = [](const std::string& s) {
    std::size_t i = 0;
    while (i < s.size() && !std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    std::size_t j = i;
    while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
    std::string digits = s.substr(i, j - i);
    digits.erase(0, std::min(digits.find_first_not_of('0'), digits.size()));
    return std::make_tuple(s.substr(0, i), digits.size(), digits, s.substr(j));
  };
  return split(a) < split(b);
}

std::vector<std::string> sorted(std::set<std::string> classes) {
  std::vector<std::string> out(classes.begin(), classes.end());
  std::sort(out.begin(), out.end(), class_less);
  return out;
}

}  // namespace

void RequirementTally::add(const json& trial) {
  const auto name = detail::text(trial, "scenario");
  auto [it, fresh] = scenarios_.try_emplace(name);
  if (fresh) order_.push_back(name);
  auto& s = it->second;
  ++s.trials;
  detail::text(trial, "verdict") == "pass" ? ++s.passed : ++s.failed;
  for (const auto& c : strings_at(trial, "classes")) add_once(s.classes, c);
  for (const auto& r : strings_at(trial, "requirements")) add_once(s.requirements, r);
}

json RequirementTally::results(const json& head) const {
  // The run's scenarios: the plan's parts first, then any a trial names.
  struct Known {
    std::string name;
    std::vector<std::string> classes, requirements;
  };
  std::vector<Known> known;
  std::map<std::string, std::size_t> at;
  auto note = [&](const std::string& name, const std::vector<std::string>& classes,
                  const std::vector<std::string>& requirements) {
    auto [it, fresh] = at.try_emplace(name, known.size());
    if (fresh) known.push_back({name, {}, {}});
    auto& k = known[it->second];
    for (const auto& c : classes) add_once(k.classes, c);
    for (const auto& r : requirements) add_once(k.requirements, r);
  };
  for (const auto& p : detail::array_at(detail::object_at(head, "scenario"), "parts"))
    note(detail::text(p, "name"), strings_at(p, "classes"), strings_at(p, "requirements"));
  for (const auto& name : order_) {
    const auto& s = scenarios_.at(name);
    note(name, s.classes, s.requirements);
  }
  std::map<std::string, std::string> skipped_because;
  for (const auto& k : detail::array_at(head, "skipped"))
    skipped_because[detail::text(k, "scenario")] = detail::text(k, "reason");

  std::vector<std::string> ids;
  for (const auto& k : known)
    for (const auto& r : k.requirements) add_once(ids, r);
  // The catalog run.json records (compliance/catalog.yaml) names the classes
  // each of its requirements needs, whatever this run's scenarios cover.
  std::map<std::string, std::vector<std::string>> catalog_classes;
  for (const auto& r : detail::array_at(detail::object_at(head, "compliance"), "requirements"))
    catalog_classes[detail::text(r, "id")] = strings_at(r, "classes");

  json out = json::array();
  for (const auto& id : ids) {
    std::size_t trials = 0, passed = 0, failed = 0;
    json run = json::object(), skipped = json::array();
    std::set<std::string> required, exercised;
    for (const auto& k : known) {
      if (std::find(k.requirements.begin(), k.requirements.end(), id) == k.requirements.end()) continue;
      // A scenario without classes stands for itself.
      const auto classes = k.classes.empty() ? std::vector<std::string>{k.name} : k.classes;
      required.insert(classes.begin(), classes.end());
      auto s = scenarios_.find(k.name);
      if (s == scenarios_.end() || s->second.trials == 0) {
        auto why = skipped_because.find(k.name);
        skipped.push_back({{"scenario", k.name},
                           {"reason", why != skipped_because.end()
                                          ? why->second
                                          : std::string("no trial of it in this run (a --trials sample, a "
                                                        "shard, or a campaign that stopped early)")}});
        continue;
      }
      run[k.name] = s->second.trials;
      trials += s->second.trials;
      passed += s->second.passed;
      failed += s->second.failed;
      exercised.insert(classes.begin(), classes.end());
    }
    const auto in_catalog = catalog_classes.find(id);
    if (in_catalog != catalog_classes.end()) required.insert(in_catalog->second.begin(), in_catalog->second.end());
    std::set<std::string> missing;
    for (const auto& c : required)
      if (!exercised.count(c)) missing.insert(c);
    const char* status = failed          ? "fail"
                         : trials == 0    ? "not-exercised"
                         : missing.empty() ? "pass"
                                           : "partly-exercised";
    out.push_back({{"id", id},
                   {"status", status},
                   {"trials", trials},
                   {"passed", passed},
                   {"failed", failed},
                   {"scenarios_run", run},
                   {"skipped", skipped},
                   {"classes_required", sorted(required)},
                   {"classes_exercised", sorted(exercised)},
                   {"classes_missing", sorted(missing)},
                   {"in_catalog", in_catalog != catalog_classes.end()}});
  }
  return out;
}

json requirement_results(const RunView& run) {
  RequirementTally tally;
  run.trials.for_each([&](const json& t, std::size_t) { tally.add(t); });
  return tally.results(run.head);
}

std::string requirement_status_text(const std::string& status) {
  if (status == "pass") return "PASS";
  if (status == "fail") return "FAIL";
  if (status == "partly-exercised") return "PARTLY EXERCISED";
  if (status == "not-exercised") return "NOT EXERCISED";
  return status;
}

}  // namespace otarig::reports
