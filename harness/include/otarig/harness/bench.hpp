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
  double t_ms = 0;  ///< since the trial began, on the bench clock
  std::string text;
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

  /// Starts a new transcript (a trial begins).
  void begin_transcript();
  std::vector<TranscriptLine> take_transcript();
  /// The first banner line seen on this bench (device identity), if any.
  const std::string& identity() const { return identity_; }

  /// Power helpers that fail with a BenchError naming the device and step.
  void power_on(const std::string& step);
  void power_off(const std::string& step);

 private:
  void absorb(const std::string& bytes);
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
};

}  // namespace otarig::harness
