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

}  // namespace

void write_trial_evidence(const std::filesystem::path& out, const TrialOutcome& t, const nlohmann::json& summary) {
  if (!is_plain_name(t.spec.id))
    throw BenchError(fmt::format("trial id '{}' is not a plain file name", t.spec.id));
  auto dir = out / "trials" / t.spec.id;
  std::filesystem::create_directories(dir);
  // console.log shows control bytes escaped; the bytes as the device sent
  // them go to console.raw when anything needed escaping.
  std::string console, raw;
  bool escaped = false;
  for (const auto& line : t.transcript) console += console_log_line(line, &raw, &escaped);
  write_text(dir / "console.log", console);
  if (escaped) write_text(dir / "console.raw", raw);
  std::string events;
  for (const auto& e : t.events) events += e.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  write_text(dir / "events.jsonl", events);
  write_text(dir / "verdict.json", summary.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

}  // namespace otarig::harness
