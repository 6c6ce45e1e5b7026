#include "otarig/harness/compliance.hpp"

#include <fmt/format.h>

#include <set>

#include "otarig/core/config.hpp"
#include "otarig/core/crypto.hpp"
#include "otarig/core/errors.hpp"
#include "otarig/core/read_file.hpp"
#include "otarig/harness/profile.hpp"

namespace otarig::harness {

nlohmann::json load_compliance_catalog(const std::filesystem::path& file) {
  const auto bytes = read_regular_file(file, kMaxDocumentBytes, "requirement catalog");
  auto root = Config::load_file(file);
  if (!root.is_map()) root.fail("a requirement catalog must be a map");
  root.only_keys({"catalog", "version", "date", "classes", "requirements"});
  nlohmann::json out{{"catalog", root.at("catalog").as_string()},
                     {"version", root.at("version").as_string()},
                     {"date", root.string_or("date", "")},
                     {"sha256", crypto::hex(crypto::sha256(bytes))},
                     {"file", file.filename().string()}};
  if (out["catalog"].get<std::string>().empty()) root.at("catalog").fail("catalog: give the catalog's name");
  if (out["version"].get<std::string>().empty()) root.at("version").fail("version: give the catalog's version");
  nlohmann::json classes = nlohmann::json::object();
  const auto cls = root.at("classes");
  if (!cls.is_map()) cls.fail("classes: a map of class id to what it covers");
  for (const auto& [id, text] : cls.entries()) {
    if (id.empty() || id.size() > 16) text.fail(fmt::format("classes: '{}' is not a class id (1-16 characters)", id));
    classes[id] = text.as_string();
  }
  nlohmann::json requirements = nlohmann::json::array();
  std::set<std::string> ids;
  const auto reqs = root.at("requirements");
  if (!reqs.is_sequence()) reqs.fail("requirements: a list of requirements");
  for (const auto& r : reqs.items()) {
    if (!r.is_map()) r.fail("a requirement is a map (id, summary, source, classes)");
    r.only_keys({"id", "summary", "source", "classes", "whole_bundle"});
    const auto id = r.at("id").as_string();
    if (id.empty()) r.at("id").fail("id: empty");
    if (!ids.insert(id).second) r.at("id").fail(fmt::format("requirement '{}' is listed twice", id));
    const bool whole = r.bool_or("whole_bundle", false);
    std::vector<std::string> need;
    if (r.has("classes")) {
      if (whole) r.at("classes").fail("a whole-bundle requirement has no scenario classes");
      need = r.at("classes").as_string_list();
      for (const auto& c : need)
        if (!classes.contains(c)) r.at("classes").fail(fmt::format("class '{}' is not one of `classes`", c));
    } else if (!whole) {
      r.fail(fmt::format("requirement '{}': give its scenario classes (or whole_bundle: true)", id));
    }
    requirements.push_back({{"id", id},
                            {"summary", r.at("summary").as_string()},
                            {"source", r.at("source").as_string()},
                            {"classes", need},
                            {"whole_bundle", whole}});
  }
  out["classes"] = std::move(classes);
  out["requirements"] = std::move(requirements);
  return out;
}

nlohmann::json installed_compliance_catalog() {
  for (const auto& d : data_dirs())
    if (auto f = d / "compliance" / "catalog.yaml"; std::filesystem::exists(f)) return load_compliance_catalog(f);
  throw BenchError(
      "no requirement catalog (compliance/catalog.yaml) in the data folders: the installation is incomplete");
}

}  // namespace otarig::harness
