#include "otarig/harness/oracles.hpp"

#include <gtest/gtest.h>

using namespace otarig::harness;

namespace {

const std::string kOld(64, 'a'), kNew(64, 'b'), kBad(64, 'c'), kNext(64, 'd'), kMix(64, 'e');

Observation up(const std::string& step, const std::string& digest, const std::string& version, std::uint64_t ctr,
               const std::string& health = "ok") {
  Observation o;
  o.step = step;
  o.booted = true;
  o.digest = digest;
  o.version = version;
  o.counter = ctr;
  o.health = health;
  o.slot = "A";
  return o;
}

Observation down(const std::string& step) {
  Observation o;
  o.step = step;
  return o;
}

OracleInput base() {
  OracleInput in;
  in.history = {up("prepare", kOld, "1.0.0", 1), up("after-fault", kOld, "1.0.0", 1),
                up("retry", kNew, "1.1.0", 2)};
  in.fault_index = 1;
  in.retry_index = 2;
  in.before_digest = kOld;
  in.delivered_digest = kNew;
  in.has_retry = true;
  in.retry_digest = kNew;
  in.authentic_digests = {kOld, kNew, kNext};
  return in;
}

std::map<std::string, bool> verdicts(const OracleInput& in) {
  std::map<std::string, bool> m;
  for (const auto& r : judge(in)) {
    m[r.name] = r.held;
    if (!r.held) {
      EXPECT_FALSE(r.detail.empty()) << r.name << " must say why";
    }
  }
  return m;
}

}  // namespace

TEST(Oracles, CleanTrialHoldsAll) {
  auto m = verdicts(base());
  ASSERT_EQ(m.size(), std::size(kOracleNames));
  for (const auto& [name, held] : m) EXPECT_TRUE(held) << name;
}

TEST(Oracles, BrickBreaksAtomicAndRecovered) {
  auto in = base();
  in.history[1] = down("after-fault");
  auto m = verdicts(in);
  EXPECT_FALSE(m["atomic"]);
  EXPECT_FALSE(m["recovered"]);
  EXPECT_TRUE(m["authentic"]);
}

TEST(Oracles, MixedImageBreaksAtomicAndAuthentic) {
  auto in = base();
  in.history[1] = up("after-fault", kMix, "1.1.0", 1);
  auto m = verdicts(in);
  EXPECT_FALSE(m["atomic"]);
  EXPECT_FALSE(m["authentic"]);
}

TEST(Oracles, BootingTheTamperedImageBreaksAuthentic) {
  auto in = base();
  in.delivered_digest = kNew;  // digest-bit-flip: header+payload equal the release
  in.delivered_authentic = false;
  in.history[1] = up("after-fault", kNew, "1.1.0", 2);
  auto m = verdicts(in);
  EXPECT_FALSE(m["authentic"]);
  EXPECT_TRUE(m["atomic"]) << "old or new, byte for byte";
  EXPECT_TRUE(m["still-updatable"]) << "the clean retry may run the same bytes";
}

TEST(Oracles, RollbackOfVersionOrCounterBreaksNoRollback) {
  auto in = base();
  in.history = {up("prepare", kOld, "1.0.0", 1), up("before:update", kNew, "1.1.0", 2),
                up("after-fault", kOld, "1.0.0", 2), up("retry", kNext, "1.2.0", 3)};
  in.fault_index = 2;
  in.retry_index = 3;
  in.before_digest = kNew;
  in.delivered_digest = kOld;
  in.retry_digest = kNext;
  EXPECT_FALSE(verdicts(in)["no-rollback"]);
  in.history[2] = up("after-fault", kNew, "1.1.0", 1);
  EXPECT_FALSE(verdicts(in)["no-rollback"]) << "counter went down";
  in.history[2] = up("after-fault", kNew, "1.1.0", 2);
  EXPECT_TRUE(verdicts(in)["no-rollback"]);
  EXPECT_LT(compare_versions("1.9.0", "1.10.0"), 0);
  EXPECT_GT(compare_versions("2.0.0", "1.255.65535+9"), 0);
}

TEST(Oracles, FailedSelfTestNotRevertedBreaksRecovered) {
  auto in = base();
  in.delivered_fails_self_test = true;
  in.authentic_digests.insert(kBad);
  in.delivered_digest = kBad;
  in.history[1] = up("after-fault", kBad, "1.1.0", 2, "failed");
  auto m = verdicts(in);
  EXPECT_FALSE(m["recovered"]);
  EXPECT_TRUE(m["authentic"]);
}

TEST(Oracles, RetryThatDoesNotTakeBreaksStillUpdatable) {
  auto in = base();
  in.history[2] = up("retry", kOld, "1.0.0", 1);
  EXPECT_FALSE(verdicts(in)["still-updatable"]);
  in = base();
  in.retry_problem = "refused";
  EXPECT_FALSE(verdicts(in)["still-updatable"]);
  in = base();
  in.has_retry = false;
  in.history.pop_back();
  EXPECT_TRUE(verdicts(in)["still-updatable"]);
}

// reports-truthfully: the last final status the device reported for the
// faulted deployment against what runs after the fault.
TEST(Oracles, ReportsTruthfullyComparesTheReportWithWhatRuns) {
  auto in = base();  // after the fault the old image runs
  in.device_reports = true;
  in.deployment = "dep-1";
  in.reported_statuses = {"downloading", "rebooting", "success"};
  in.reported_status = "success";
  auto r = reports_truthfully(in);
  EXPECT_FALSE(r.held);
  EXPECT_NE(r.detail.find("deployment dep-1: the device reported 'success' (downloading, rebooting, success)"),
            std::string::npos)
      << r.detail;
  EXPECT_NE(r.detail.find("not the delivered image"), std::string::npos) << r.detail;
  in.reported_status = "failure";
  EXPECT_TRUE(reports_truthfully(in).held);
  in.reported_status.clear();  // no final status: no claim
  EXPECT_TRUE(reports_truthfully(in).held);
  in.history[in.fault_index].digest = in.delivered_digest;  // the update runs
  in.reported_status = "failure";
  r = reports_truthfully(in);
  EXPECT_FALSE(r.held);
  EXPECT_NE(r.detail.find("which it said had failed"), std::string::npos) << r.detail;
  in.reported_status = "success";
  EXPECT_TRUE(reports_truthfully(in).held);
  in.device_reports = false;  // a board whose server records nothing
  in.reported_status = "failure";
  EXPECT_TRUE(reports_truthfully(in).held);
}

// compatible: the delivered image was made for another device type (validly
// signed): running it after the fault breaks the oracle; refusing it holds.
TEST(Oracles, CompatibleBreaksOnlyWhenTheDeviceRunsTheImageForAnotherDevice) {
  auto in = base();
  in.delivered_digest = kBad;
  in.delivered_compatible = false;
  in.authentic_digests.insert(kBad);  // validly signed: authentic has nothing to say
  auto m = verdicts(in);
  EXPECT_TRUE(m["compatible"]);
  EXPECT_TRUE(m["authentic"]);

  in.history[1] = up("after-fault", kBad, "1.1.0", 2);
  m = verdicts(in);
  EXPECT_FALSE(m["compatible"]);
  EXPECT_TRUE(m["authentic"]);
  for (const auto& r : judge(in)) {
    if (r.name == "compatible") {
      EXPECT_NE(r.detail.find("another device type"), std::string::npos) << r.detail;
    }
  }

  // The same digest delivered as a compatible image: nothing to judge.
  in.delivered_compatible = true;
  EXPECT_TRUE(verdicts(in)["compatible"]);
}

// dependencies: an application that needs image 1 >= 2.0.0 must never run
// beside an older image 1; a board reporting no second image is not judged.
TEST(Oracles, DependenciesBreakWhenAnImageRunsBesideAnOlderOneThanItNeeds) {
  auto in = base();
  in.needs[kNew] = {1, "2.0.0"};
  EXPECT_TRUE(verdicts(in)["dependencies"]) << "no second image reported: nothing to judge";
  for (auto& o : in.history) o.image1_version = "1.0.0", o.image1_digest = kMix;
  auto m = verdicts(in);
  EXPECT_FALSE(m["dependencies"]);
  for (const auto& r : judge(in)) {
    if (r.name == "dependencies") {
      EXPECT_NE(r.detail.find("needs image 1 >= 2.0.0, but runs beside 1.0.0"), std::string::npos) << r.detail;
    }
  }
  in.history[2].image1_version = "2.0.0";
  EXPECT_TRUE(verdicts(in)["dependencies"]);
  // The second image's own need on the application.
  in.needs[kMix] = {0, "1.2.0"};
  in.history[2].image1_digest = kMix;
  EXPECT_FALSE(verdicts(in)["dependencies"]);
}

// atomic, with a second image in the delivery: after the fault it is the old or the new one.
TEST(Oracles, AtomicJudgesTheSecondImageOfADelivery) {
  auto in = base();
  in.before_image1_digest = kOld;
  in.delivered_image1_digest = kNext;
  for (auto& o : in.history) o.image1_version = "1.0.0", o.image1_digest = kOld;
  EXPECT_TRUE(verdicts(in)["atomic"]);
  in.history[1].image1_digest = kMix;
  EXPECT_FALSE(verdicts(in)["atomic"]);
  in.history[1].image1_digest = kNext;
  EXPECT_TRUE(verdicts(in)["atomic"]);
}

// confidential: the plaintext of an encrypted release found on the network
// (the fault proxy's plaintext watch), in what the rig handed the link, or at
// rest; the detail names each place, the network first.
TEST(Oracles, ConfidentialBreaksWhereverThePlaintextWasFound) {
  auto in = base();
  EXPECT_TRUE(verdicts(in)["confidential"]);
  in.plaintext_at_rest = "after-fault: at rest";
  EXPECT_FALSE(verdicts(in)["confidential"]);
  in.plaintext_on_link = "deliver: on the link";
  in.plaintext_on_wire = "deliver: the fault proxy relayed it";
  for (const auto& r : judge(in))
    if (r.name == "confidential") {
      EXPECT_FALSE(r.held);
      EXPECT_EQ(r.detail, "deliver: the fault proxy relayed it; deliver: on the link; after-fault: at rest");
    }
  in.plaintext_on_link.clear();
  in.plaintext_at_rest.clear();
  EXPECT_FALSE(verdicts(in)["confidential"]);
}
