#include "otarig/harness/evidence.hpp"

#include <fmt/format.h>

#include <fstream>
#include <string>

#include "otarig/core/errors.hpp"
#include "otarig/harness/profile.hpp"
#include "otarig/reports/bundle.hpp"

namespace otarig::harness {

namespace {

void write_text(const std::filesystem::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw BenchError(fmt::format("{}: cannot write", p.string()));
}

// The trial's folder with its console transcript and events.
std::filesystem::path write_transcript_and_events(const std::filesystem::path& out, const TrialOutcome& t) {
  if (!is_plain_name(t.spec.id))
    throw BenchError(fmt::format("trial id '{}' is not a plain file name", t.spec.id));
  auto dir = out / "trials" / t.spec.id;
  std::filesystem::create_directories(dir);
  // console.log shows control bytes escaped; the bytes as the device sent
  // them go to console.raw when anything needed escaping.
  if (!t.console_logged) {  // else the trial wrote them as it read the console
    std::string console, raw;
    bool escaped = false;
    for (const auto& line : t.transcript) console += console_log_line(line, &raw, &escaped);
    write_text(dir / "console.log", console);
    std::error_code ignored;
    if (escaped)
      write_text(dir / "console.raw", raw);
    else
      std::filesystem::remove(dir / "console.raw", ignored);
  }
  std::string events;
  for (const auto& e : t.events) events += e.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  write_text(dir / "events.jsonl", events);
  return dir;
}

}  // namespace

void write_trial_evidence(const std::filesystem::path& out, const TrialOutcome& t, const nlohmann::json& summary) {
  const auto dir = write_transcript_and_events(out, t);
  write_text(dir / "verdict.json", summary.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

std::string write_bench_failure_evidence(const std::filesystem::path& out, const TrialOutcome& partial,
                                         const nlohmann::json& failure) {
  const auto dir = write_transcript_and_events(out, partial);
  nlohmann::json j = failure;
  j["trial"] = partial.spec.id;
  j["scenario"] = partial.spec.scenario ? partial.spec.scenario->name : "";
  write_text(dir / "bench-failure.json", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  return "trials/" + partial.spec.id;
}

}  // namespace otarig::harness
