// The device's own update checks, measured from the update server's request
// log and the fault proxy's outage events (update_checks.hpp).
#include "update_checks.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

namespace otarig::scenarios::lifecycle {
namespace {

double ms_between(std::int64_t a, std::int64_t b) { return static_cast<double>(b - a) / 1e6; }

std::int64_t time_of(const nlohmann::json& j) {
  const auto t = j.find("time_ns");
  return t != j.end() && t->is_number_integer() ? t->get<std::int64_t>() : -1;
}

}  // namespace

nlohmann::json CheckMeasurement::json() const {
  nlohmann::json j{{"held", held},
                   {"detail", detail},
                   {"checks_before_outage", checks_before.size()},
                   {"checks_after_outage", checks_after.size()},
                   {"intervals_ms", intervals_ms},
                   {"backoff_ms", backoff_ms}};
  j["outage_begin_ns"] = outage_begin_ns ? nlohmann::json(*outage_begin_ns) : nlohmann::json(nullptr);
  j["outage_end_ns"] = outage_end_ns ? nlohmann::json(*outage_end_ns) : nlohmann::json(nullptr);
  j["first_check_after_outage_ms"] = first_check_after_ms ? nlohmann::json(*first_check_after_ms) : nlohmann::json(nullptr);
  if (!intervals_ms.empty()) j["longest_interval_ms"] = *std::max_element(intervals_ms.begin(), intervals_ms.end());
  return j;
}

CheckMeasurement measure_update_checks(const nlohmann::json& requests, const nlohmann::json& proxy_events,
                                       std::chrono::milliseconds outage_length, const CheckPolicy& policy) {
  CheckMeasurement m;
  std::vector<std::int64_t> attempts;
  if (proxy_events.is_array())
    for (const auto& e : proxy_events) {
      if (!e.is_object() || e.value("kind", "") != "outage") continue;
      const auto t = time_of(e);
      const auto detail = e.value("detail", "");
      if (t < 0) continue;
      if (e.value("connection", std::uint64_t{1}) == 0) {
        if (detail.rfind("begins", 0) == 0 && !m.outage_begin_ns) {
          m.outage_begin_ns = t;
          m.outage_end_ns = t + std::chrono::duration_cast<std::chrono::nanoseconds>(outage_length).count();
        }
      } else if (detail.rfind("refused", 0) == 0 || detail.rfind("dropped", 0) == 0) {
        attempts.push_back(t);
      }
    }
  std::vector<std::int64_t> checks;
  if (requests.is_array())
    for (const auto& r : requests)
      if (r.is_object() && r.value("check", false) && time_of(r) >= 0) checks.push_back(time_of(r));
  std::sort(checks.begin(), checks.end());
  std::sort(attempts.begin(), attempts.end());
  for (std::size_t i = 1; i < attempts.size(); ++i) m.backoff_ms.push_back(ms_between(attempts[i - 1], attempts[i]));

  const double allowed = static_cast<double>(policy.allowed().count());
  if (!m.outage_begin_ns) {
    m.detail = "the fault proxy logged no outage: nothing to judge the device's checks by";
    return m;
  }
  for (auto t : checks) {
    if (t < *m.outage_begin_ns) m.checks_before.push_back(t);
    else if (t >= *m.outage_end_ns) m.checks_after.push_back(t);
  }
  for (std::size_t i = 1; i < m.checks_before.size(); ++i)
    m.intervals_ms.push_back(ms_between(m.checks_before[i - 1], m.checks_before[i]));
  if (!m.checks_before.empty()) m.intervals_ms.push_back(ms_between(m.checks_before.back(), *m.outage_begin_ns));
  if (!m.checks_after.empty()) m.first_check_after_ms = ms_between(*m.outage_end_ns, m.checks_after.front());

  std::vector<std::string> problems;
  if (m.checks_before.empty())
    problems.push_back("none of its checks reached the update server before the outage");
  for (std::size_t i = 0; i < m.intervals_ms.size(); ++i)
    if (m.intervals_ms[i] > allowed) {
      problems.push_back(fmt::format("before the outage it went {:.0f} ms without a check (interval {} of {})",
                                     m.intervals_ms[i], i + 1, m.intervals_ms.size()));
      break;
    }
  if (!m.first_check_after_ms)
    problems.push_back("none of its checks reached the update server after the outage ended");
  else if (*m.first_check_after_ms > allowed)
    problems.push_back(
        fmt::format("its first check after the outage came {:.0f} ms after the server was back", *m.first_check_after_ms));
  m.held = problems.empty();
  const auto declared = fmt::format("the profile says it checks at least every {} ms, {} ms allowed with the margin",
                                    policy.interval.count(), policy.allowed().count());
  if (m.held)
    m.detail = fmt::format("{} checks before the outage, at most {:.0f} ms apart; {} attempts during it; the first "
                           "check after it {:.0f} ms after the server was back ({})",
                           m.checks_before.size(),
                           *std::max_element(m.intervals_ms.begin(), m.intervals_ms.end()), attempts.size(),
                           *m.first_check_after_ms, declared);
  else
    m.detail = fmt::format("the device did not keep checking for updates: {} ({})", fmt::join(problems, "; "), declared);
  return m;
}

}  // namespace otarig::scenarios::lifecycle
