#pragma once
// Helpers shared by the bundle writers, verify and merge (not installed).
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <ostream>
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
/// Writes what `fill` puts in the stream to `file` the same way, without holding it.
void write_stream(const std::filesystem::path& file, const std::function<void(std::ostream&)>& fill);
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

/// A file's lines read one at a time: memory holds one line of at most
/// `max_bytes` (a longer line is returned cut, with cut() set).
class LineReader {
 public:
  LineReader(const std::filesystem::path& file, std::size_t max_bytes);
  explicit operator bool() const { return static_cast<bool>(in_); }
  /// The next line without its newline; nullopt at the end of the file (or a read error: bad()).
  std::optional<JournalLine> next();
  std::uint64_t offset() const { return offset_; }  ///< where the line next() returned starts
  bool torn() const { return torn_; }               ///< that line ends the file without a newline
  bool cut() const { return cut_; }                 ///< that line was longer than max_bytes
  bool bad() const { return in_.bad(); }
  std::uint64_t count() const { return number_; }  ///< lines returned so far

 private:
  bool fill();
  std::ifstream in_;
  std::size_t max_;
  std::vector<char> buf_;
  std::size_t pos_ = 0, end_ = 0;
  std::uint64_t read_ = 0, offset_ = 0, number_ = 0;
  bool torn_ = false, cut_ = false;
};

/// check_chain over lines read one at a time. `each` is called with every
/// line the chain reaches that is a JSON object (a line named as changed is
/// among them); `lines` is set to the number of lines in the file, read to
/// its end after a break.
ChainBreak check_chain(LineReader& reader, const std::function<void(const JournalLine&, const nlohmann::json&)>& each,
                       std::uint64_t* lines);

/// The fields of a verdict event that make up the trial's entry in run.json.
nlohmann::json trial_from_verdict(nlohmann::json verdict);

/// Files that are not part of the manifest (the manifest and the attestation).
bool outside_manifest(const std::string& relative_path);

/// Every regular file under `dir` as a sorted list of '/'-separated relative
/// paths. Anything that is neither a regular file nor a folder (a symlink, a
/// socket) is returned in `others`.
std::vector<std::string> list_files(const std::filesystem::path& dir, std::vector<std::string>* others);

}  // namespace otarig::reports::detail
