#include "otarig/harness/scenario.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <re2/re2.h>

#include <algorithm>
#include <set>

#include "otarig/core/crypto.hpp"
#include "otarig/core/read_file.hpp"
#include "otarig/harness/profile.hpp"

namespace otarig::harness {
namespace {

std::filesystem::path resolve_scenario(const std::string& name_or_path, const std::filesystem::path& near) {
  std::filesystem::path p(name_or_path);
  if (p.extension() == ".yaml" || p.has_parent_path()) {
    if (auto found = find_data_path(p)) return *found;
    throw InputError(fmt::format("{}: no such scenario file", name_or_path));
  }
  if (!near.empty())
    if (auto c = near / (name_or_path + ".yaml"); std::filesystem::exists(c)) return c;
  for (const auto& d : data_dirs())
    if (auto c = d / "scenarios" / (name_or_path + ".yaml"); std::filesystem::exists(c)) return c;
  throw InputError(
      fmt::format("{}: no such scenario (give a path, or a name from `otarig list scenarios`)", name_or_path));
}

Scenario load(const std::filesystem::path& file, std::set<std::filesystem::path>& loading, const FaultRegistry& faults) {
  auto canonical = std::filesystem::weakly_canonical(file);
  auto root = Config::load_file(file);
  if (loading.count(canonical)) root.fail("a suite includes itself");
  loading.insert(canonical);
  if (!root.is_map()) root.fail("a scenario must be a map");
  Scenario s;
  s.path = file;
  s.sha256 = crypto::hex(crypto::sha256(read_regular_file(file, kMaxDocumentBytes, "scenario")));
  if (root.has("include")) {
    root.only_keys({"name", "title", "description", "include"});
    s.name = root.at("name").as_string();
    s.title = root.string_or("title", s.name);
    for (const auto& item : root.at("include").items()) {
      auto name = item.as_string();
      try {
        s.parts.push_back(load(resolve_scenario(name, file.parent_path()), loading, faults));
      } catch (const InputError& e) {
        item.fail(e.what());
      }
    }
    if (s.parts.empty()) root.at("include").fail("a suite needs at least one scenario");
    std::string digests = s.sha256;
    for (const auto& part : s.parts) digests += "\n" + part.name + " " + part.sha256;
    s.sha256 = crypto::hex(crypto::sha256(digests));
    std::set<std::string> ids, cls;
    for (const auto* leaf : s.leaves()) {
      for (const auto& r : leaf->requirements)
        if (ids.insert(r).second) s.requirements.push_back(r);
      for (const auto& c : leaf->classes)
        if (cls.insert(c).second) s.classes.push_back(c);
    }
  } else {
    root.only_keys({"name", "title", "description", "classes", "requirements", "start", "before", "deliver", "fault",
                    "retry", "trials", "delivery", "needs"});
    if (auto n = root.find("needs")) {
      s.needs = n->as_string_list();
      for (const auto& need : s.needs)
        if (need != kNeedsSecondImage && need != kNeedsEncryption)
          n->fail(fmt::format("unknown need '{}' (known: {}, {})", need, kNeedsSecondImage, kNeedsEncryption));
    }
    s.name = root.at("name").as_string();
    s.title = root.string_or("title", s.name);
    s.classes = root.at("classes").as_string_list();
    s.requirements = root.at("requirements").as_string_list();
    if (s.requirements.empty()) root.at("requirements").fail("name at least one requirement id");
    s.start = root.at("start").as_string();
    s.where_start = root.at("start").where();
    if (auto b = root.find("before")) s.before = b->as_string_list();
    s.deliver = root.at("deliver").as_string();
    s.where_deliver = root.at("deliver").where();
    if (auto d = root.find("delivery")) {
      const auto how = d->as_string();
      if (how == "delta")
        s.delta = true;
      else if (how != "full")
        d->fail(fmt::format("delivery: '{}' is neither full nor delta", how));
    }
    s.retry = root.string_or("retry", "");
    if (auto r = root.find("retry")) s.where_retry = r->where();
    s.trials = root.size_or("trials", 0);
    s.fault = parse_fault(root.at("fault"), faults, FaultParseContext{s.name, s.trials, &root});
  }
  if (file.stem() != s.name)
    root.at("name").fail(fmt::format("the name '{}' must match the file name '{}'", s.name, file.stem().string()));
  loading.erase(canonical);
  return s;
}

}  // namespace

FaultSpec parse_fault(const Config& c, const FaultRegistry& faults, const FaultParseContext& ctx) {
  FaultSpec f;
  f.where = c.where();
  if (!c.is_map()) c.fail("a fault must be a map with a `kind`");
  f.kind = c.at("kind").as_string();
  f.unit = faults.find(f.kind);
  if (!f.unit) c.at("kind").fail(fmt::format("unknown fault kind '{}' (known: {})", f.kind, faults.names()));
  std::vector<std::string_view> keys{"kind"};
  for (auto k : f.unit->keys()) keys.push_back(k);
  for (const auto& [key, value] : c.entries())
    if (std::find(keys.begin(), keys.end(), key) == keys.end())
      value.fail(fmt::format("unknown key '{}' (allowed: {})", key, fmt::join(keys, ", ")));
  f.options = f.unit->parse(c, ctx);
  return f;
}

std::vector<const Scenario*> Scenario::leaves() const {
  std::vector<const Scenario*> out;
  if (!is_suite()) {
    out.push_back(this);
    return out;
  }
  for (const auto& p : parts)
    for (const auto* l : p.leaves()) out.push_back(l);
  return out;
}

Scenario load_scenario(const std::string& name_or_path, const FaultRegistry& faults) {
  std::set<std::filesystem::path> loading;
  return load(resolve_scenario(name_or_path, {}), loading, faults);
}

std::vector<std::filesystem::path> catalog_scenarios() {
  std::vector<std::filesystem::path> out;
  std::set<std::string> names;
  for (const auto& d : data_dirs()) {
    auto dir = d / "scenarios";
    if (!std::filesystem::is_directory(dir)) continue;
    for (const auto& e : std::filesystem::directory_iterator(dir))
      if (e.path().extension() == ".yaml" && names.insert(e.path().stem().string()).second) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace otarig::harness
