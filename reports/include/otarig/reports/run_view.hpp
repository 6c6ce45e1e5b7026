#pragma once
// run.json in parts, for writing a bundle without holding every trial: the
// run's facts in memory, its trials and findings read one at a time (from the
// journal's verdict lines, or from a document already in memory).
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <vector>

namespace otarig::reports {

/// A list of JSON records read one at a time by position. Copies share the
/// same source; a list is used by one thread at a time.
class RecordList {
 public:
  using Get = std::function<nlohmann::json(std::size_t position)>;
  /// What a record read from a file becomes: its JSON and its position.
  using Transform = std::function<nlohmann::json(nlohmann::json record, std::size_t position)>;

  RecordList() = default;
  RecordList(std::size_t size, Get get) : size_(size), get_(std::move(get)) {}

  /// The elements of `array` (not copied: `array` must outlive the list).
  static RecordList of_array(const nlohmann::json& array);
  /// The JSON lines of `file` that start at `offsets` (bytes), each read when
  /// asked for and passed through `transform`. A line longer than
  /// `max_line_bytes` or not JSON is an std::runtime_error naming file and offset.
  static RecordList of_lines(const std::filesystem::path& file, std::vector<std::uint64_t> offsets,
                             Transform transform, std::size_t max_line_bytes = kMaxRecordBytes);

  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  nlohmann::json at(std::size_t position) const { return get_(position); }
  /// Calls `fn(record, position)` for every record in order.
  template <class Fn>
  void for_each(Fn&& fn) const {
    for (std::size_t i = 0; i < size_; ++i) fn(get_(i), i);
  }

  /// The longest record line of_lines reads (a verdict is bounded by the
  /// console and status limits of docs/evidence.md, far below this).
  static constexpr std::size_t kMaxRecordBytes = 64u << 20;

 private:
  std::size_t size_ = 0;
  Get get_;
};

/// A run document: `head` is run.json without "trials" and "findings", which
/// are read one at a time from `trials` and `findings`.
struct RunView {
  nlohmann::json head = nlohmann::json::object();
  RecordList trials;
  RecordList findings;

  /// A view of a whole run document in memory (`run` must outlive it).
  static RunView of(const nlohmann::json& run);
  /// The whole document in memory (for a report writer that wants one).
  nlohmann::json materialize() const;
};

/// Where a verdict line of a journal is, and its verdict: what run.json's
/// writers hold of a trial until they read it.
struct VerdictLine {
  std::uint64_t index = 0;   ///< the trial's index
  std::uint64_t offset = 0;  ///< the line's first byte in the journal
  bool passed = false;
};

/// The verdict lines of a journal (a torn last line left out) in trial index
/// order, read one line at a time. std::runtime_error when it cannot be read.
std::vector<VerdictLine> verdict_lines(const std::filesystem::path& journal);

/// A verdict event as run.json lists its trial (without the journal's
/// type, seq, time, prev_sha256 and trial fields).
nlohmann::json trial_entry(nlohmann::json verdict);

/// The trials of run.json read from the journal's verdict lines.
RecordList trials_of(const std::filesystem::path& journal, const std::vector<VerdictLine>& verdicts);

/// Writes run.json's text for `run` to `out`: exactly the bytes of
/// `run.materialize().dump(2)` with invalid UTF-8 replaced, and a newline,
/// holding one trial at a time.
void write_run_json(std::ostream& out, const RunView& run);

}  // namespace otarig::reports
