#pragma once
// The evidence bundle (DESIGN.md): run.json, junit.xml and summary.md are
// written from the run document; trials/ and journal.jsonl are written by the
// harness as trials finish.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

namespace otarig::reports {

/// Writes run.json, junit.xml and summary.md into `out`.
void write_bundle(const std::filesystem::path& out, const nlohmann::json& run);

/// JUnit XML (one testsuite per scenario, one testcase per trial; properties:
/// board, seed, fault point, requirement ids).
std::string junit_xml(const nlohmann::json& run);

/// A Markdown summary for a CI job summary page.
std::string summary_markdown(const nlohmann::json& run);

/// Escapes text for XML/HTML content and attribute values; drops bytes that
/// XML 1.0 cannot carry (device output is hostile input).
std::string xml_escape(std::string_view text);

}  // namespace otarig::reports
