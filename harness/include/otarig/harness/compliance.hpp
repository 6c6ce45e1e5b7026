#pragma once
// The requirement catalog (compliance/catalog.yaml in the data folders,
// docs/compliance.md): the requirement ids scenarios name, each with its
// summary, source and the scenario classes a campaign must exercise before
// the report calls it PASS. run.json records it whole, with its version and
// SHA-256, so a bundle says which catalog judged it.
#include <filesystem>
#include <nlohmann/json.hpp>

namespace otarig::harness {

/// Reads and checks a catalog file: InputError naming file and line for a
/// malformed one. The result is what run.json's `compliance` holds:
/// catalog, version, date, sha256, file, classes {S1: text},
/// requirements [{id, summary, source, classes, whole_bundle}].
nlohmann::json load_compliance_catalog(const std::filesystem::path& file);

/// The catalog the rig is installed with: compliance/catalog.yaml in the
/// first data folder that has one. BenchError when none has (a broken
/// installation).
nlohmann::json installed_compliance_catalog();

}  // namespace otarig::harness
