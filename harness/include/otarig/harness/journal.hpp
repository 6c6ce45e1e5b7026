#pragma once
// The append-only, hash-chained campaign journal (journal.jsonl). Each line is
// one JSON event {seq, time, type, trial, ..., prev_sha256}; prev_sha256 is the
// SHA-256 of the previous line's bytes (without its newline), "" for the first.
// A trial's events are written as one block ending with its verdict, then the
// file is synced, so a campaign killed at any moment loses at most the trial
// that was running.
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

namespace otarig::harness {

struct JournalState {
  std::uint64_t lines = 0;
  std::set<std::uint64_t> completed_trials;  ///< trial indexes with a verdict
  std::uint64_t failed_trials = 0;           ///< verdicts of trials that failed
  nlohmann::json campaign;                    ///< the first campaign-start event
  std::uint64_t dropped_lines = 0;            ///< lines of an unfinished block removed on open
};

/// Result of checking a journal's chain.
struct ChainCheck {
  bool ok = true;
  std::uint64_t bad_line = 0;  ///< 1-based line number of the first bad line
  std::string reason;
};

/// Checks every line parses and chains to the one before.
ChainCheck verify_journal(const std::filesystem::path& file);

/// What a journal says of its campaign, read without changing the file (a
/// resume checks it before anything runs).
struct JournaledCampaign {
  nlohmann::json start;        ///< the first campaign-start event; null when the journal is absent or has none
  nlohmann::json calibration = nlohmann::json::object();  ///< {"update_ms": {"START->DELIVER": ms}}: from campaign-start, then what
                               ///< each campaign-resume measured that was not journaled before
};

/// Reads the campaign events of the longest prefix of `file` that chains,
/// one line at a time.
JournaledCampaign read_journaled_campaign(const std::filesystem::path& file);

/// The verdict events of a journal, in file order, read one line at a time
/// (the journal holds them; a campaign does not keep them in memory).
std::vector<nlohmann::json> read_verdicts(const std::filesystem::path& file);

class Journal {
 public:
  /// Creates a new journal (fails if it exists and `resume` is false). With
  /// `resume`, reads it, checks the chain, drops a torn last line and any
  /// lines of an unfinished trial block, and continues after them.
  Journal(const std::filesystem::path& file, bool resume);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  const JournalState& state() const { return state_; }

  /// Appends one event (adds seq, time, prev_sha256) and syncs.
  void append(nlohmann::json event);
  /// Appends a trial's events as one block and syncs once.
  void append_block(std::vector<nlohmann::json> events);

 private:
  void write_locked(std::vector<nlohmann::json>& events);
  std::filesystem::path file_;
  int fd_ = -1;
  std::mutex mutex_;
  std::uint64_t seq_ = 0;
  std::string prev_sha_;
  JournalState state_;
};

/// UTC time as ISO-8601 with milliseconds.
std::string iso_now();

}  // namespace otarig::harness
