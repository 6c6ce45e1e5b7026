// merge_bundles: shards of one campaign join into one bundle equal to an
// unsharded run; anything that is not one campaign is refused.
#include "otarig/reports/merge.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "otarig/core/errors.hpp"
#include "otarig/reports/attestation.hpp"
#include "otarig/reports/verify.hpp"
#include "sample_bundle.hpp"
#include "test_util.hpp"

using namespace otarig;
using namespace otarig::reports;
using namespace otarig::reports::testing;
using nlohmann::json;

namespace {

std::vector<json> journal_events(const std::filesystem::path& file) {
  std::vector<json> events;
  std::istringstream in(slurp(file));
  for (std::string l; std::getline(in, l);) events.push_back(json::parse(l));
  return events;
}

std::vector<std::filesystem::path> write_shards(const std::filesystem::path& root, unsigned count,
                                                SampleOptions o = {}) {
  std::vector<std::filesystem::path> dirs;
  for (unsigned i = 0; i < count; ++i) {
    o.shard = i;
    o.shards = count;
    dirs.push_back(root / ("shard" + std::to_string(i)));
    write_sample_bundle(dirs.back(), o);
  }
  return dirs;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no InputError)";
}

}  // namespace

TEST(Merge, ThreeShardsMergeIntoTheUnshardedRun) {
  TempDir d;
  auto whole = write_sample_bundle(d.path / "whole");
  auto shards = write_shards(d.path, 3);
  auto run = merge_bundles({shards[2], shards[0], shards[1]}, d.path / "merged");

  auto r = verify_bundle(d.path / "merged");
  ASSERT_TRUE(r.ok()) << format_verify(r, d.path / "merged");
  EXPECT_EQ(json::parse(slurp(d.path / "merged" / "run.json")), run);

  EXPECT_EQ(run["trials"], whole["trials"]);
  EXPECT_EQ(run["summary"], whole["summary"]);
  EXPECT_EQ(run["findings"], whole["findings"]);
  EXPECT_EQ(run["planned"], whole["planned"]);
  EXPECT_EQ(run["shard"], (json{{"index", 0}, {"count", 1}}));
  ASSERT_EQ(run["merged_from"].size(), 3u);
  for (unsigned i = 0; i < 3; ++i) {
    EXPECT_EQ(run["merged_from"][i]["shard"], std::to_string(i) + "/3");
    EXPECT_EQ(run["merged_from"][i]["manifest_sha256"],
              crypto::hex(crypto::sha256(slurp(shards[i] / kManifestFile))));
  }

  // The journal chains anew: campaign-start, merged-from per shard, then the
  // trial blocks in index order with the same verdicts as the unsharded run.
  auto merged = journal_events(d.path / "merged" / "journal.jsonl");
  auto single = journal_events(d.path / "whole" / "journal.jsonl");
  EXPECT_EQ(merged.size(), single.size() + 3);
  EXPECT_EQ(merged[0]["type"], "campaign-start");
  EXPECT_EQ(merged[0]["planned"], 12);
  EXPECT_EQ(merged[0]["shard"], "0/1");
  for (unsigned i = 0; i < 3; ++i) {
    EXPECT_EQ(merged[1 + i]["type"], "merged-from");
    EXPECT_EQ(merged[1 + i]["manifest_sha256"], run["merged_from"][i]["manifest_sha256"]);
  }
  auto strip = [](json ev) {
    ev.erase("seq");
    ev.erase("prev_sha256");
    return ev;
  };
  for (std::size_t k = 1; k < single.size(); ++k) EXPECT_EQ(strip(merged[k + 3]), strip(single[k])) << k;

  // The trial evidence is the same, byte for byte.
  for (const auto& f : files_under(d.path / "whole")) {
    if (f.rfind("trials/", 0) == 0) {
      EXPECT_EQ(slurp(d.path / "merged" / f), slurp(d.path / "whole" / f)) << f;
    }
  }
  EXPECT_FALSE(std::filesystem::exists(d.path / "merged.merging"));
}

TEST(Merge, RefusesShardsOfAnotherCampaign) {
  TempDir d;
  auto shards = write_shards(d.path, 2);
  SampleOptions other;
  other.seed = 8;
  other.shard = 1;
  other.shards = 2;
  write_sample_bundle(d.path / "other-seed", other);
  auto msg = message_of([&] { merge_bundles({shards[0], d.path / "other-seed"}, d.path / "merged"); });
  EXPECT_NE(msg.find((d.path / "other-seed").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("seed"), std::string::npos) << msg;
  EXPECT_FALSE(std::filesystem::exists(d.path / "merged" / "run.json"));
}

TEST(Merge, RefusesOverlappingTrials) {
  TempDir d;
  SampleOptions o;
  o.shard = 0;
  o.shards = 2;
  write_sample_bundle(d.path / "a", o);
  o.shard = 1;
  o.extra_trials = {4};
  write_sample_bundle(d.path / "b", o);
  auto msg = message_of([&] { merge_bundles({d.path / "a", d.path / "b"}, d.path / "merged"); });
  EXPECT_NE(msg.find("00004"), std::string::npos) << msg;
  EXPECT_NE(msg.find("overlap"), std::string::npos) << msg;
}

TEST(Merge, RefusesTheSameShardTwice) {
  TempDir d;
  auto shards = write_shards(d.path, 2);
  std::filesystem::copy(shards[1], d.path / "copy", std::filesystem::copy_options::recursive);
  auto msg = message_of([&] { merge_bundles({shards[0], shards[1], d.path / "copy"}, d.path / "merged"); });
  EXPECT_NE(msg.find("given twice"), std::string::npos) << msg;
}

TEST(Merge, RefusesAShardThatFailsVerification) {
  TempDir d;
  auto shards = write_shards(d.path, 3);
  spit(shards[1] / "trials/00004/console.log", "rewritten\n");
  auto msg = message_of([&] { merge_bundles(shards, d.path / "merged"); });
  EXPECT_NE(msg.find(shards[1].string() + ": shard does not verify"), std::string::npos) << msg;
  EXPECT_NE(msg.find("trials/00004/console.log"), std::string::npos) << msg;
}

TEST(Merge, RefusesAMissingShardUnlessAllowed) {
  TempDir d;
  auto shards = write_shards(d.path, 3);
  auto msg = message_of([&] { merge_bundles({shards[0], shards[2]}, d.path / "merged"); });
  EXPECT_NE(msg.find("[1]"), std::string::npos) << msg;
  MergeOptions o;
  o.allow_missing_shards = true;
  auto run = merge_bundles({shards[0], shards[2]}, d.path / "merged", o);
  EXPECT_EQ(run["missing_shards"], json{1});
  EXPECT_EQ(run["summary"]["trials"], 8);
  EXPECT_TRUE(verify_bundle(d.path / "merged").ok());
}

TEST(Merge, RefusesAFolderThatIsNotABundleAndANonEmptyOutput) {
  TempDir d;
  auto shards = write_shards(d.path, 1);
  std::filesystem::create_directories(d.path / "empty");
  EXPECT_NE(message_of([&] {
              merge_bundles({d.path / "empty"}, d.path / "merged");
            }).find("not an evidence bundle"),
            std::string::npos);
  EXPECT_NE(message_of([&] { merge_bundles(shards, shards[0]); }).find("not an empty folder"),
            std::string::npos);
}

TEST(Merge, ShardsOnDifferentBoardsOfOneTypeKeepEveryIdentity) {
  TempDir d;
  SampleOptions o;
  o.shards = 2;
  o.shard = 0;
  o.identity = "bench-a";
  write_sample_bundle(d.path / "a", o);
  o.shard = 1;
  o.identity = "bench-b";
  write_sample_bundle(d.path / "b", o);
  auto run = merge_bundles({d.path / "a", d.path / "b"}, d.path / "merged");
  EXPECT_EQ(run["board"]["identity"], "bench-a, bench-b");
  EXPECT_EQ(run["merged_from"][1]["identity"], "bench-b");
}

TEST(Merge, ShardsThatTimedTheirUpdateAlikeKeepOneCalibrationElseEachKeepsItsOwn) {
  TempDir d;
  SampleOptions o;
  o.shards = 2;
  o.update_ms = 40;
  o.shard = 0;
  write_sample_bundle(d.path / "a", o);
  o.shard = 1;
  write_sample_bundle(d.path / "b", o);
  auto run = merge_bundles({d.path / "a", d.path / "b"}, d.path / "same");
  EXPECT_EQ(run["calibration"]["update_ms"], (json{{"factory->update", 40}}));
  EXPECT_EQ(journal_events(d.path / "same" / "journal.jsonl")[0]["calibration"]["update_ms"]["factory->update"], 40);

  o.update_ms = 55;
  write_sample_bundle(d.path / "c", o);
  run = merge_bundles({d.path / "a", d.path / "c"}, d.path / "differ");
  EXPECT_FALSE(run.contains("calibration")) << run["calibration"].dump();
  EXPECT_EQ(run["merged_from"][0]["calibration"]["update_ms"]["factory->update"], 40);
  EXPECT_EQ(run["merged_from"][1]["calibration"]["update_ms"]["factory->update"], 55);
  EXPECT_FALSE(journal_events(d.path / "differ" / "journal.jsonl")[0].contains("calibration"));
  auto r = verify_bundle(d.path / "differ");
  EXPECT_TRUE(r.ok()) << format_verify(r, d.path / "differ");
}
