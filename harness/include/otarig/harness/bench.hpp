#pragma once
// A Bench is a board profile bound to drivers: the protocols of one device,
// its clock, and the console capture that becomes a trial's transcript.
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
  std::string line;           ///< the status line as printed
  double waited_ms = 0;       ///< time from asking to the answer (or the timeout)
};

struct TranscriptLine {
  /// Since the trial began, on the bench clock: when the line's first byte
  /// arrived, for a console driver that stamps its lines (`serial`, `tty`);
  /// else when the harness read the line's end.
  double t_ms = 0;
  std::string text;
};

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
  /// Reads the console into the transcript until a line that arrives from
  /// now on matches the RE2 `pattern` (returned) or `timeout` passes
  /// (nullopt). InputError for an invalid pattern.
  std::optional<std::string> wait_for_line(const std::string& pattern, std::chrono::milliseconds timeout);

  /// Starts a new transcript (a trial begins).
  void begin_transcript();
  std::vector<TranscriptLine> take_transcript();
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
  std::string partial_;
  std::vector<TranscriptLine> transcript_;
  std::vector<std::string> unmatched_lines_;
  Clock::duration transcript_start_{};
  std::string identity_;
  std::vector<ConsoleEvent> console_events_;
  /// A stamping console's line still arriving, and the part of it already
  /// in a transcript taken before it was finished.
  std::optional<drivers::ConsoleEntry> arriving_;
  std::optional<drivers::ConsoleEntry> shown_;
};

}  // namespace otarig::harness
