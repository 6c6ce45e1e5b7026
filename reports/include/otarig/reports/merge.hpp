#pragma once
// Joining the shard bundles of one campaign (`otarig run --shard I/N`) into
// one evidence bundle.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "otarig/reports/bundle.hpp"

namespace otarig::reports {

struct MergeOptions {
  BundleOptions bundle;  ///< how the merged bundle is signed
  /// When set, every shard's attestation must verify with this key (PEM).
  std::optional<std::filesystem::path> trusted_key;
  /// Merge even when some shard indexes of the campaign are absent (the
  /// merged run.json then lists them under `missing_shards`).
  bool allow_missing_shards = false;
  /// merge_bundles returns run.json whole (every trial read back into
  /// memory); false: without its trials and findings (`otarig report merge`).
  bool whole_run_in_result = true;
};

/// Merges shard bundles into `out` (which must not exist or be empty):
/// every shard must verify and belong to the same campaign (board profile,
/// scenario, seed, releases, otarig version and revision, shard count), with
/// distinct shard indexes and disjoint trials. The merged journal chains anew:
/// campaign-start, one `merged-from` event per shard (its manifest digest),
/// then every trial's block in trial index order; trials/ folders are copied;
/// run.json is recomputed (trials by index, findings renumbered, shard 0/1,
/// `merged_from`); junit.xml, summary.md, report.html, the manifest and the
/// attestation are written anew, one trial at a time: a merge holds each
/// shard's findings and a few bytes a trial. Returns the merged run document. Throws
/// InputError naming the shard that is refused.
nlohmann::json merge_bundles(const std::vector<std::filesystem::path>& shards,
                             const std::filesystem::path& out, const MergeOptions& options = {});

}  // namespace otarig::reports
