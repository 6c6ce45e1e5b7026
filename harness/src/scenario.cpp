#include "otarig/harness/scenario.hpp"

#include <fmt/format.h>
#include <re2/re2.h>

#include <algorithm>
#include <set>

#include "faults.hpp"
#include "otarig/drivers/net/fault_spec.hpp"
#include "otarig/harness/profile.hpp"

namespace otarig::harness {
namespace {

std::filesystem::path resolve_scenario(const std::string& name_or_path, const std::filesystem::path& near) {
  std::filesystem::path p(name_or_path);
  if (p.extension() == ".yaml" || p.has_parent_path()) {
    if (std::filesystem::exists(p)) return p;
    throw InputError(fmt::format("{}: no such scenario file", name_or_path));
  }
  if (!near.empty())
    if (auto c = near / (name_or_path + ".yaml"); std::filesystem::exists(c)) return c;
  for (const auto& d : data_dirs())
    if (auto c = d / "scenarios" / (name_or_path + ".yaml"); std::filesystem::exists(c)) return c;
  throw InputError(
      fmt::format("{}: no such scenario (give a path, or a name from `otarig list scenarios`)", name_or_path));
}

FaultSpec parse_fault(const Config& c) {
  FaultSpec f;
  f.where = c.where();
  f.kind = c.at("kind").as_string();
  const auto* kind = scenarios::find_fault_kind(f.kind);
  if (!kind) {
    std::string names;
    for (const auto& k : scenarios::fault_kinds()) names += (names.empty() ? "" : ", ") + std::string(k.name);
    c.at("kind").fail(fmt::format("unknown fault kind '{}' (known: {})", f.kind, names));
  }
  if (f.kind == "power-cut" || f.kind == "flash-error") {
    if (f.kind == "power-cut")
      c.only_keys({"kind", "at", "torn", "recovery_cuts", "image", "points", "pattern", "delay"});
    else c.only_keys({"kind", "at", "torn"});
    f.at = c.at("at").as_string();
    const bool placed = f.at == "download-byte" || f.at == "random-time" || f.at == "console";
    if (f.at != "every-flash-op" && f.at != "random-flash-op" && !(f.kind == "power-cut" && placed))
      c.at("at").fail(fmt::format("unknown cut point '{}' (known: every-flash-op, random-flash-op{})", f.at,
                                  f.kind == "power-cut" ? ", download-byte, random-time, console" : ""));
    f.torn = c.double_or("torn", 0.0);
    if (f.torn < 0 || f.torn > 1) c.at("torn").fail("a probability between 0 and 1");
    if (placed && c.has("torn")) c.at("torn").fail("torn writes need counted flash operations (at: every-flash-op "
                                                   "or random-flash-op)");
    if (auto im = c.find("image")) {
      f.image = im->as_string();
      if (f.image != "release" && f.image != "self-test-fail")
        im->fail(fmt::format("unknown image '{}' (known: release, self-test-fail)", f.image));
      if (f.image == "release") f.image.clear();
    }
    if (auto r = c.find("recovery_cuts")) {
      const auto n = r->as_uint();
      if (n > 16) r->fail(fmt::format("recovery_cuts {} must be 0..16", n));
      f.recovery_cuts = static_cast<std::uint32_t>(n);
    }
    if (auto p = c.find("points")) {
      if (f.at != "download-byte" && f.at != "every-flash-op")
        p->fail("`points` applies to at: download-byte (and every-flash-op on boards that cut downloads)");
      const auto n = p->as_uint();
      if (n < 1 || n > 4096) p->fail(fmt::format("points {} must be 1..4096", n));
      f.points = static_cast<std::uint32_t>(n);
    }
    if (f.at == "console") {
      f.pattern = c.at("pattern").as_string();
      if (f.pattern.empty()) c.at("pattern").fail("the console pattern is empty");
      if (f.pattern != "${banner}") {
        re2::RE2 re(f.pattern, re2::RE2::Quiet);
        if (!re.ok()) c.at("pattern").fail(fmt::format("invalid RE2 pattern: {}", re.error()));
      }
      f.delay_ms = static_cast<std::uint32_t>(c.duration_or("delay", std::chrono::milliseconds(0)).count());
    } else {
      for (const char* k : {"pattern", "delay"})
        if (c.has(k)) c.at(k).fail(fmt::format("`{}` applies to at: console", k));
    }
  } else if (f.kind == "network") {
    c.only_keys({"kind", "faults", "probe", "expect"});
    f.faults = c.string_or("faults", "");
    f.probe = c.string_or("probe", "");
    if (!f.probe.empty() && f.probe != "no-client-certificate")
      c.at("probe").fail(fmt::format("unknown probe '{}' (known: no-client-certificate)", f.probe));
    if (auto e = c.find("expect")) {
      // One expectation, or a list of them.
      const std::vector<Config> items = e->is_sequence() ? e->items() : std::vector<Config>{*e};
      if (items.empty()) e->fail("name at least one expectation (known: installed, stays-up)");
      for (const auto& item : items) {
        auto what = item.as_string();
        if (what != "installed" && what != "stays-up")
          item.fail(fmt::format("unknown expectation '{}' (known: installed, stays-up)", what));
        if (f.expects(what)) item.fail(fmt::format("expectation '{}' named twice", what));
        f.expect.push_back(what);
      }
    }
    if (f.faults.empty() && f.probe.empty()) c.fail("a network fault needs `faults` or `probe`");
    if (!f.faults.empty()) {
      // Checked now with a sample byte, so a bad spec names its line.
      std::string sample = f.faults;
      for (std::size_t at; (at = sample.find("${b}")) != std::string::npos;) sample.replace(at, 4, "0");
      try {
        (void)drivers::net::parse_fault_spec(sample, "faults");
      } catch (const InputError& e) {
        c.at("faults").fail(e.what());
      }
    }
  } else if (f.kind == "stale") {
    c.only_keys({"kind", "serve"});
    f.serve = c.at("serve").as_string();
  } else if (f.kind == "bit-rot") {
    c.only_keys({"kind", "slot", "bits"});
    f.slot = c.string_or("slot", "any");
    if (f.slot != "running" && f.slot != "other" && f.slot != "any")
      c.at("slot").fail(fmt::format("unknown slot '{}' (known: running, other, any)", f.slot));
    if (auto b = c.find("bits")) {
      const auto n = b->as_uint();
      if (n < 1 || n > 64) b->fail(fmt::format("bits {} must be 1..64", n));
      f.bits = static_cast<std::uint32_t>(n);
    }
  } else if (f.kind == "tamper") {
    c.only_keys({"kind", "variants"});
    const auto& known = scenarios::tamper_variants();
    if (auto v = c.find("variants")) {
      for (const auto& item : v->items()) {
        auto name = item.as_string();
        if (std::find(known.begin(), known.end(), name) == known.end())
          item.fail(fmt::format("unknown tamper variant '{}'", name));
        f.variants.push_back(name);
      }
    } else {
      for (auto k : known) f.variants.emplace_back(k);
    }
  } else {
    c.only_keys({"kind"});
  }
  return f;
}

Scenario load(const std::filesystem::path& file, std::set<std::filesystem::path>& loading) {
  auto canonical = std::filesystem::weakly_canonical(file);
  auto root = Config::load_file(file);
  if (loading.count(canonical)) root.fail("a suite includes itself");
  loading.insert(canonical);
  if (!root.is_map()) root.fail("a scenario must be a map");
  Scenario s;
  s.path = file;
  if (root.has("include")) {
    root.only_keys({"name", "title", "description", "include"});
    s.name = root.at("name").as_string();
    s.title = root.string_or("title", s.name);
    for (const auto& item : root.at("include").items()) {
      auto name = item.as_string();
      try {
        s.parts.push_back(load(resolve_scenario(name, file.parent_path()), loading));
      } catch (const InputError& e) {
        item.fail(e.what());
      }
    }
    if (s.parts.empty()) root.at("include").fail("a suite needs at least one scenario");
    std::set<std::string> ids, cls;
    for (const auto* leaf : s.leaves()) {
      for (const auto& r : leaf->requirements)
        if (ids.insert(r).second) s.requirements.push_back(r);
      for (const auto& c : leaf->classes)
        if (cls.insert(c).second) s.classes.push_back(c);
    }
  } else {
    root.only_keys({"name", "title", "description", "classes", "requirements", "start", "before", "deliver", "fault",
                    "retry", "trials"});
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
    s.fault = parse_fault(root.at("fault"));
    s.retry = root.string_or("retry", "");
    if (auto r = root.find("retry")) s.where_retry = r->where();
    s.trials = root.size_or("trials", 0);
    if ((s.fault.kind == "power-cut" || s.fault.kind == "flash-error") && s.fault.at == "random-flash-op" &&
        s.trials == 0)
      root.fail(fmt::format("a random {} scenario needs `trials`", s.fault.kind));
  }
  if (file.stem() != s.name)
    root.at("name").fail(fmt::format("the name '{}' must match the file name '{}'", s.name, file.stem().string()));
  loading.erase(canonical);
  return s;
}

}  // namespace

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

Scenario load_scenario(const std::string& name_or_path) {
  std::set<std::filesystem::path> loading;
  return load(resolve_scenario(name_or_path, {}), loading);
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
