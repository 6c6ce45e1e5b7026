#pragma once
// Helpers shared by the bundle writers, verify and merge (not installed).
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace otarig::reports::detail {

/// Reads a whole file; nullopt when it cannot be opened.
std::optional<std::string> read_file(const std::filesystem::path& file);
/// Writes `text` to `file` through a temporary file in the same folder and a rename.
void write_file(const std::filesystem::path& file, std::string_view text);
/// SHA-256 of a file's bytes as lowercase hex; nullopt when it cannot be read.
std::optional<std::string> sha256_file(const std::filesystem::path& file);
std::string sha256_hex(std::string_view data);

/// `value[key]` as text: strings as they are, other values as JSON, missing or null as "".
std::string text(const nlohmann::json& value, const char* key);

/// `value[key]` when it is an object (an array), else an empty one: for reading documents of any shape.
const nlohmann::json& object_at(const nlohmann::json& value, const char* key);
const nlohmann::json& array_at(const nlohmann::json& value, const char* key);

/// One line of journal.jsonl (without its newline) and its 1-based number.
struct JournalLine {
  std::uint64_t number = 0;
  std::string text;
};

/// Splits journal text into lines; `torn` is set when the last line has no newline.
std::vector<JournalLine> split_lines(const std::string& text, bool* torn);

/// The first break in a journal's hash chain.
struct ChainBreak {
  std::uint64_t line = 0;  ///< 1-based line named as bad (0: the chain holds)
  std::string reason;
};

/// Checks that every line is a JSON object whose seq counts from 0 and whose
/// prev_sha256 is the SHA-256 of the line before. When a line's hash does not
/// match the next line's prev_sha256 while the next line itself chains on, the
/// changed line is named rather than its successor.
ChainBreak check_chain(const std::vector<JournalLine>& lines, bool torn);

/// The fields of a verdict event that make up the trial's entry in run.json.
nlohmann::json trial_from_verdict(nlohmann::json verdict);

/// Files that are not part of the manifest (the manifest and the attestation).
bool outside_manifest(const std::string& relative_path);

/// Every regular file under `dir` as a sorted list of '/'-separated relative
/// paths. Anything that is neither a regular file nor a folder (a symlink, a
/// socket) is returned in `others`.
std::vector<std::string> list_files(const std::filesystem::path& dir, std::vector<std::string>* others);

}  // namespace otarig::reports::detail
