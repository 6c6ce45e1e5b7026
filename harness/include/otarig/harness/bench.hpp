#pragma once
// A Bench is a board profile bound to drivers: the protocols of one device,
// its clock, and the console capture that becomes a trial's transcript.
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "otarig/drivers/registry.hpp"
#include "otarig/harness/profile.hpp"
#include "otarig/harness/releases.hpp"

namespace re2 {
class RE2;
}

namespace otarig::harness {

/// What the device said about itself after a step.
struct Observation {
  std::string step;  ///< prepare, before:NAME, after-fault, retry
  bool booted = false;
  std::string slot, version, digest, state, health, key;
  std::optional<std::uint64_t> counter;
  /// The device's second image (docs/virtual-board.md, "A second image"):
  /// the status pattern's optional groups `image1_version`, `image1_digest`;
  /// empty when it has none.
  std::string image1_version, image1_digest;
  std::string line;           ///< the status line as printed
  /// What the device reported for its image when the profile's identity is
  /// not the rig's digest (a payload or slot digest, or its version); `digest`
  /// is then the rig's digest of the image that resolved to (identity.hpp).
  std::string identity;
  double waited_ms = 0;       ///< time from asking to the answer (or the timeout)
};

struct TranscriptLine {
  /// Since the trial began, on the bench clock: when the line's first byte
  /// arrived, for a console driver that stamps its lines (`serial`, `tty`);
  /// else when the harness read the line's end.
  double t_ms = 0;
  std::string text;
  /// Bytes of the line beyond drivers::kConsoleLineMaxBytes: counted, not kept.
  std::uint64_t cut = 0;
  /// Non-zero: this entry is no line but the place where that many lines of
  /// the device's output were let go (kTranscriptMaxBytes); `cut` is their bytes.
  std::uint64_t dropped_lines = 0;
};

/// What a trial keeps of its console (docs/evidence.md, "Limits"): the first
/// and the last kTranscriptMaxBytes / 2 of it, counting each line's text and
/// kConsoleLineOverheadBytes; the lines between are let go, counted, and one
/// entry (TranscriptLine::dropped_lines) stands where they were.
inline constexpr std::size_t kTranscriptMaxBytes = 4 * 1024 * 1024;

/// What an observation keeps of one field of the status line (slot,
/// version, digest, ...): a longer value keeps its first bytes and ends in
/// `[otarig: N bytes dropped]`, so no oracle takes it for a release's.
inline constexpr std::size_t kStatusFieldMaxBytes = 1024;
std::string capped_status_field(std::string value);

/// A console transcript bounded by kTranscriptMaxBytes.
class BoundedTranscript {
 public:
  /// A line, or a dropped-lines entry (whose count joins the one gap).
  void add(TranscriptLine line);
  /// Head, the gap's entry (when anything was let go), tail; then empty again.
  std::vector<TranscriptLine> take();
  bool empty() const { return head_.empty() && tail_.empty() && !gap_lines_; }
  /// The last `n` lines kept (fewer when fewer are kept), oldest first; the
  /// transcript is unchanged.
  std::vector<TranscriptLine> last(std::size_t n) const;
  /// Shows each line that joins the head to `sink` as it comes (a trial's
  /// console.log written as the console is read); the gap and the tail are
  /// only known at take().
  void on_head(std::function<void(const TranscriptLine&)> sink) { head_sink_ = std::move(sink); }

 private:
  void let_go(const TranscriptLine& line);
  std::vector<TranscriptLine> head_;
  std::deque<TranscriptLine> tail_;
  std::size_t head_cost_ = 0, tail_cost_ = 0;
  std::uint64_t gap_lines_ = 0, gap_bytes_ = 0;
  double gap_t_ms_ = 0;
  std::function<void(const TranscriptLine&)> head_sink_;
};

/// What a trial's transcript let go: lines cut at their limit and lines
/// dropped (the `console` field of a verdict).
struct TranscriptLoss {
  std::uint64_t dropped_bytes = 0, dropped_lines = 0, cut_lines = 0;
};
TranscriptLoss transcript_loss(const std::vector<TranscriptLine>& lines);

/// One line of console.log (`[%10.3f ms] text`, control bytes escaped), with
/// the marker `[otarig: N bytes dropped]` where bytes were let go; `raw`
/// (when given) gets the line as console.raw has it, `escaped` is set when
/// anything needed escaping.
std::string console_log_line(const TranscriptLine& line, std::string* raw = nullptr, bool* escaped = nullptr);

/// An event of the console driver itself, from a console that stamps its
/// lines: the device vanished (EIO, the USB adapter unplugged), came back.
struct ConsoleEvent {
  std::string event;     ///< disconnected, reconnected, trigger-failed
  std::string text;      ///< the driver's description, e.g. "console disconnected: Input/output error"
  Clock::duration at{};  ///< when it happened, on the bench clock
  double t_ms = 0;       ///< since the trial began, as console.log's stamps
};

/// Checks the profile's device and driver sections (power, console, probe,
/// link) as binding them for a run does, with the same InputError naming the
/// file and line, and builds nothing: no process started, no device, port,
/// GPIO line or probe opened, no server listening (BindContext::validate_only).
void validate_drivers(const BoardProfile& profile, const drivers::DriverRegistry& registry);

class Bench {
 public:
  Bench(const BoardProfile& profile, const drivers::DriverRegistry& registry, const ReleaseSet& releases,
        std::uint64_t seed);
  ~Bench();
  Bench(const Bench&) = delete;
  Bench& operator=(const Bench&) = delete;

  const BoardProfile& profile() const { return profile_; }
  drivers::BoardParts& parts() { return parts_; }
  Clock& clock() { return *clock_; }

  /// Asks for the device's status (re-asking every status_interval) and waits
  /// for the status pattern up to the boot timeout.
  Observation observe(const std::string& step);
  /// Reads whatever the console has now into the transcript.
  void drain_console();
  /// Reads what the console has now into the transcript; the lines read so
  /// far no longer count for wait_for_line().
  void forget_console();
  /// Reads the console into the transcript until a line read since the last
  /// forget_console() (or arriving now) matches the RE2 `pattern`
  /// (returned) or `timeout` passes (nullopt). A device that prints the line
  /// before the wait starts (a fast host) is found all the same: call
  /// forget_console() before the event (a power-on) that makes it print.
  /// InputError for an invalid pattern.
  std::optional<std::string> wait_for_line(const std::string& pattern, std::chrono::milliseconds timeout);

  /// Starts a new transcript (a trial begins).
  void begin_transcript();
  std::vector<TranscriptLine> take_transcript();
  /// Hands each line to `sink` as the bench reads it, instead of keeping it
  /// for take_transcript() (which then only finishes the line still
  /// arriving); an empty sink keeps lines again.
  void stream_lines(std::function<void(TranscriptLine)> sink) { line_sink_ = std::move(sink); }
  /// The console driver's own events since the last call (none for a
  /// console that does not stamp its lines).
  std::vector<ConsoleEvent> take_console_events();
  /// The first banner line seen on this bench (device identity), if any.
  const std::string& identity() const { return identity_; }

  /// Power helpers that fail with a BenchError naming the device and step.
  void power_on(const std::string& step);
  void power_off(const std::string& step);

 private:
  void absorb(const std::string& bytes);
  /// Moves what a stamping console recorded into the transcript and events.
  void collect_stamps();
  double since_start_ms(Clock::duration at) const;
  /// A stamping console's line without the part a transcript took while it
  /// was still arriving; nullopt when nothing of it is left.
  std::optional<std::string> untaken(std::string text, Clock::duration at) const;
  const BoardProfile& profile_;
  std::unique_ptr<Clock> clock_;
  drivers::BoardParts parts_;
  std::unique_ptr<re2::RE2> status_re_;
  std::unique_ptr<re2::RE2> banner_re_;
  void keep_line(TranscriptLine line);
  void clear_unmatched();
  void unmatched(std::string line, bool cut);
  std::string partial_;
  std::uint64_t partial_cut_ = 0;  ///< bytes of the arriving line beyond its limit
  BoundedTranscript transcript_;
  std::function<void(TranscriptLine)> line_sink_;
  /// A line the patterns have yet to look at; `cut` when it was longer than
  /// drivers::kConsoleLineMaxBytes (no status line then: its end is gone).
  struct UnmatchedLine {
    std::string text;
    bool cut = false;
  };
  std::deque<UnmatchedLine> unmatched_lines_;
  std::size_t unmatched_bytes_ = 0;
  Clock::duration transcript_start_{};
  std::string identity_;
  std::vector<ConsoleEvent> console_events_;
  /// A stamping console's line still arriving, and the part of it already
  /// in a transcript taken before it was finished.
  std::optional<drivers::ConsoleEntry> arriving_;
  std::optional<drivers::ConsoleEntry> shown_;
};

}  // namespace otarig::harness
