#pragma once
// A small evidence bundle written the way the harness writes one (journal,
// trials/ID/, run document) and closed with write_bundle: the fixture of the
// reports tests and of the browser test.
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

namespace otarig::reports::testing {

struct SampleOptions {
  std::uint64_t seed = 7;
  std::size_t trials = 12;  ///< trials of the whole (unsharded) campaign
  unsigned shard = 0;       ///< this bundle holds trials with index % shards == shard
  unsigned shards = 1;
  std::set<std::uint64_t> failing = {3, 9};  ///< trial indexes whose verdict is fail
  bool hostile = true;  ///< failing trials' consoles and details carry markup and bad bytes
  std::optional<std::filesystem::path> signing_key;
  std::set<std::uint64_t> extra_trials;  ///< also included whatever the shard (to make shards overlap)
  std::string identity = "vboard-0001";
  /// When set, the campaign placed cuts by time after a clean update of this many ms.
  std::optional<std::uint64_t> update_ms;
};

/// The hostile console line every failing trial prints.
inline constexpr const char* kHostileLine = "<script>alert(1)</script>";

/// Writes the bundle into `out` (created) and returns its run document.
nlohmann::json write_sample_bundle(const std::filesystem::path& out, const SampleOptions& options = {});

/// The requirement catalog the sample's run.json records (its `compliance`).
nlohmann::json sample_catalog();

}  // namespace otarig::reports::testing
