#pragma once
// Declared expectations: a board profile may accept a known defect for a
// while (`waivers:`, docs/board-profile.md), as a conformance suite lists a
// client's expected failures. A waived defect is shown as waived, never as a
// pass; an expired waiver fails the campaign. run.json's `waivers` records
// what was declared, the date it was judged on and what each covered, and
// `report verify` recomputes it.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace otarig::reports {

/// run.json's `waivers`: `date` (YYYY-MM-DD, the day the campaign began,
/// UTC) and `declared`: each declared waiver (`id`, `scenario` ("" for any),
/// `oracles`, `reason`, `expires`) with `status` ("active" until and on its
/// `expires` day, then "expired"), `defects` (the ids of the defects it
/// covers: of its scenario, every broken oracle among its `oracles`; a
/// defect is covered by the first active waiver that matches; an expired
/// waiver lists those it would cover) and `trials` (their failed trials).
nlohmann::json waiver_results(const nlohmann::json& declared, const std::string& date, const nlohmann::json& defects);

/// The failed trials active waivers cover, and the number of expired waivers.
struct WaiverCount {
  std::uint64_t waived = 0;
  std::uint64_t expired = 0;
};
WaiverCount count_waivers(const nlohmann::json& waivers);

/// The day waivers are judged on: the date part (YYYY-MM-DD) of run.json's
/// `started`, the day the campaign began.
std::string waiver_date(const nlohmann::json& head);

/// Judges `declared` over `head`'s defects on waiver_date(head): sets
/// `head["waivers"]` and the summary's `waived` and `expired_waivers`.
WaiverCount judge_waivers(nlohmann::json& head, const nlohmann::json& declared);

/// The waiver covering defect `id` in run.json's `waivers` (null when none).
const nlohmann::json* waiver_of(const nlohmann::json& waivers, const std::string& defect_id);

}  // namespace otarig::reports
