#pragma once
// The device's own checks for a new release, measured from the update
// server's request log and the fault proxy's outage events (both on the same
// clock): how often it checked before an outage, how it spaced its attempts
// during it (its back-off), and how soon after the server came back its next
// check reached the server. Plain data in and out, so it is tested alone.
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace otarig::scenarios::lifecycle {

/// What the judgement allows: the profile's observe.update_check_interval
/// and observe.update_check_margin.
struct CheckPolicy {
  std::chrono::milliseconds interval{0};
  std::chrono::milliseconds margin{0};
  std::chrono::milliseconds allowed() const { return interval + margin; }
};

struct CheckMeasurement {
  /// The outage as the proxy logged it: when it began, and when it ended
  /// (its beginning plus its length), in ns on the proxy's clock.
  std::optional<std::int64_t> outage_begin_ns, outage_end_ns;
  /// Times (ns) of the device's checks that reached the server.
  std::vector<std::int64_t> checks_before, checks_after;
  /// Milliseconds between consecutive checks before the outage, the last
  /// of them to the outage's beginning included.
  std::vector<double> intervals_ms;
  /// Milliseconds between the device's attempts the proxy turned away
  /// during the outage: its back-off, as it retried.
  std::vector<double> backoff_ms;
  /// From the outage's end to the first check after it that reached the server.
  std::optional<double> first_check_after_ms;
  bool held = false;
  std::string detail;

  nlohmann::json json() const;
};

/// `requests`: the server's request records (to_json, with `check`);
/// `proxy_events`: the fault proxy's events (to_json) of the trial;
/// `outage_length`: the outage's length. Judges the device against
/// `policy`: every interval before the outage, and the wait for its first
/// check after it, at most policy.allowed(). A record or event that is not
/// an object, or lacks its fields, is ignored.
CheckMeasurement measure_update_checks(const nlohmann::json& requests, const nlohmann::json& proxy_events,
                                       std::chrono::milliseconds outage_length, const CheckPolicy& policy);

}  // namespace otarig::scenarios::lifecycle
