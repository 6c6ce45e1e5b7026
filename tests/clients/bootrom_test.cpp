// The boot ROM of the real-client boards (drivers/clients/slots.cpp) on real
// files with libubootenv's real tools: provisioning, U-Boot semantics (trial
// boot, bootcount/bootlimit, altbootcmd fallback, confirm) and RAUC's custom
// backend state (set-state/set-primary as RAUC calls them, attempts, mark-good).
#include <gtest/gtest.h>

#include <vector>

#include "otarig/drivers/clients/device.hpp"
#include "otarig/drivers/clients/package.hpp"
#include "otarig/drivers/clients/tools.hpp"
#include "otarig/core/crypto.hpp"
#include "otarig/core/image.hpp"

namespace otarig::drivers::clients {
namespace {

image::Bytes make_image(const std::string& version, std::uint32_t counter, bool fails = false) {
  image::Header h;
  h.version = image::Version::parse(version);
  h.security_counter = counter;
  if (fails) h.flags |= image::kFlagSelfTestFails;
  auto payload = image::synthetic_payload(50000, version);
  h.payload_size = static_cast<std::uint32_t>(payload.size());
  return image::build(h, payload, crypto::Ed25519Key::test_key("otarig-release"));
}

std::string digest_of(const image::Bytes& img) {
  return crypto::hex(crypto::sha256(std::span<const std::uint8_t>(img).first(image::kHeaderSize + 50000)));
}

void write_slot(const SlotLayout& l, int slot, const image::Bytes& img) {
  auto bytes = img;
  bytes.resize(256 * 1024, 0);
  write_bytes(l.slot(slot), bytes.data(), bytes.size());
}

class BootRomTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_tool("fw_setenv") || !have_tool("fw_printenv"))
      GTEST_SKIP() << "fw_setenv/fw_printenv (libubootenv-tool) are not installed: "
                      "ci/setup with OTARIG_SETUP_EXTRA=clients";
    tmp_ = std::make_unique<TempDir>("otarig-bootrom-test");
    layout_.dir = tmp_->path();
  }
  BootResult boot_now(Bootloader b) {
    log_.clear();
    return boot(layout_, b, 3, [this](const std::string& l) { log_ += l + "\n"; });
  }
  std::map<std::string, std::string> env() {
    auto e = ubootenv::read(layout_);
    EXPECT_TRUE(e.has_value());
    return e.value_or(std::map<std::string, std::string>{});
  }
  std::unique_ptr<TempDir> tmp_;
  SlotLayout layout_;
  std::string log_;
};

TEST_F(BootRomTest, ProvisionedUbootBoardBootsSlotAConfirmed) {
  const auto factory = make_image("1.0.0+1", 1);
  provision_slots(layout_, {Bootloader::uboot_env, 256 * 1024, 3}, factory);
  EXPECT_EQ(std::filesystem::file_size(layout_.slot(0)), 256u * 1024);
  EXPECT_EQ(std::filesystem::file_size(layout_.slot(1)), 256u * 1024);
  auto e = env();
  EXPECT_EQ(e["rootpart"], "A");
  EXPECT_EQ(e["upgrade_available"], "0");
  EXPECT_EQ(e["bootcount"], "0");
  EXPECT_EQ(e["bootlimit"], "3");
  auto r = boot_now(Bootloader::uboot_env);
  ASSERT_TRUE(r.running) << log_;
  EXPECT_EQ(r.slot, 0);
  EXPECT_TRUE(r.healthy);
  EXPECT_EQ(r.state, "confirmed");
  EXPECT_EQ(r.image.version, "1.0.0+1");
  EXPECT_EQ(r.image.client_version, "1.0.0.1");
  EXPECT_EQ(r.image.digest, digest_of(factory));
  EXPECT_EQ(r.boots, 1);
}

TEST_F(BootRomTest, UbootTrialBootIsConfirmed) {
  provision_slots(layout_, {Bootloader::uboot_env, 256 * 1024, 3}, make_image("1.0.0+1", 1));
  const auto update = make_image("1.1.0+2", 2);
  write_slot(layout_, 1, update);
  // What SWUpdate's bootenv section sets after installing into slot B.
  ubootenv::write(layout_, {{"rootpart", "B"}, {"upgrade_available", "1"}, {"bootcount", "0"}});
  auto r = boot_now(Bootloader::uboot_env);
  ASSERT_TRUE(r.running) << log_;
  EXPECT_EQ(r.slot, 1);
  EXPECT_TRUE(r.healthy);
  EXPECT_EQ(r.image.digest, digest_of(update));
  EXPECT_NE(log_.find("trial boot of slot B"), std::string::npos) << log_;
  auto e = env();
  EXPECT_EQ(e["rootpart"], "B");
  EXPECT_EQ(e["upgrade_available"], "0");
  EXPECT_EQ(e["bootcount"], "0");
  // The next power-on is a normal boot of B.
  r = boot_now(Bootloader::uboot_env);
  EXPECT_EQ(r.slot, 1);
  EXPECT_NE(log_.find("normal boot of slot B"), std::string::npos) << log_;
}

TEST_F(BootRomTest, UbootFailingTrialFallsBackAfterBootlimit) {
  const auto factory = make_image("1.0.0+1", 1);
  provision_slots(layout_, {Bootloader::uboot_env, 256 * 1024, 3}, factory);
  write_slot(layout_, 1, make_image("1.1.0+2", 2, /*fails=*/true));
  ubootenv::write(layout_, {{"rootpart", "B"}, {"upgrade_available", "1"}, {"bootcount", "0"}});
  auto r = boot_now(Bootloader::uboot_env);
  ASSERT_TRUE(r.running) << log_;
  EXPECT_EQ(r.slot, 0);
  EXPECT_TRUE(r.healthy);
  EXPECT_EQ(r.image.digest, digest_of(factory));
  EXPECT_EQ(r.boots, 4) << log_;  // bootcount 1, 2, 3 on B, then 4 > 3: altbootcmd
  EXPECT_NE(log_.find("bootcount 4 > bootlimit 3: altbootcmd, falling back to slot A"), std::string::npos) << log_;
  auto e = env();
  EXPECT_EQ(e["rootpart"], "A");
  EXPECT_EQ(e["upgrade_available"], "0");
  EXPECT_EQ(e["bootcount"], "0");
}

TEST_F(BootRomTest, UbootPowerCutDuringTrialKeepsCounting) {
  provision_slots(layout_, {Bootloader::uboot_env, 256 * 1024, 3}, make_image("1.0.0+1", 1));
  write_slot(layout_, 1, make_image("1.1.0+2", 2));
  // A power cut after the boot ROM counted two trial boots and before the
  // application confirmed: the next boot counts on from there.
  ubootenv::write(layout_, {{"rootpart", "B"}, {"upgrade_available", "1"}, {"bootcount", "2"}});
  auto r = boot_now(Bootloader::uboot_env);
  EXPECT_EQ(r.slot, 1);
  EXPECT_NE(log_.find("bootcount=3"), std::string::npos) << log_;
  EXPECT_EQ(env()["upgrade_available"], "0");
}

TEST_F(BootRomTest, UbootUnbootableTrialSlotFallsBack) {
  provision_slots(layout_, {Bootloader::uboot_env, 256 * 1024, 3}, make_image("1.0.0+1", 1));
  // Slot B holds half an image (an install cut short), yet the env points to it.
  auto half = make_image("1.1.0+2", 2);
  half.resize(half.size() / 2);
  write_slot(layout_, 1, half);
  ubootenv::write(layout_, {{"rootpart", "B"}, {"upgrade_available", "1"}, {"bootcount", "0"}});
  auto r = boot_now(Bootloader::uboot_env);
  ASSERT_TRUE(r.running) << log_;
  EXPECT_EQ(r.slot, 0) << log_;
}

TEST_F(BootRomTest, UbootConfirmedBadSlotHalts) {
  provision_slots(layout_, {Bootloader::uboot_env, 256 * 1024, 3}, make_image("1.0.0+1", 1));
  ubootenv::write(layout_, {{"rootpart", "B"}});  // confirmed, but B is empty
  auto r = boot_now(Bootloader::uboot_env);
  EXPECT_FALSE(r.running) << log_;
  EXPECT_NE(log_.find("halted"), std::string::npos) << log_;
}

TEST_F(BootRomTest, RaucBackendAsRaucCallsIt) {
  const auto factory = make_image("1.0.0+1", 1);
  provision_slots(layout_, {Bootloader::rauc_custom, 256 * 1024, 3}, factory);
  std::string out;
  ASSERT_EQ(rauc_backend(layout_, 3, {"get-primary"}, out), 0);
  EXPECT_EQ(out, "A\n");
  ASSERT_EQ(rauc_backend(layout_, 3, {"get-state", "B"}, out), 0);
  EXPECT_EQ(out, "bad\n");
  auto r = boot_now(Bootloader::rauc_custom);
  ASSERT_TRUE(r.running) << log_;
  EXPECT_EQ(r.slot, 0);
  // An install into B: RAUC marks the target bad, writes it, then makes it primary.
  ASSERT_EQ(rauc_backend(layout_, 3, {"set-state", "B", "bad"}, out), 0);
  const auto update = make_image("1.1.0+2", 2);
  write_slot(layout_, 1, update);
  ASSERT_EQ(rauc_backend(layout_, 3, {"set-primary", "B"}, out), 0);
  ASSERT_EQ(rauc_backend(layout_, 3, {"get-state", "B"}, out), 0);
  EXPECT_EQ(out, "good\n");
  r = boot_now(Bootloader::rauc_custom);
  ASSERT_TRUE(r.running) << log_;
  EXPECT_EQ(r.slot, 1);
  EXPECT_EQ(r.image.digest, digest_of(update));
  EXPECT_EQ(RaucBootState::read(layout_, 3).left[1], 3u);  // marked good
  ASSERT_EQ(rauc_backend(layout_, 3, {"get-current"}, out), 0);
  EXPECT_EQ(out, "B\n");
  EXPECT_NE(rauc_backend(layout_, 3, {"set-state", "C", "good"}, out), 0);
}

TEST_F(BootRomTest, RaucFailingSlotUsesUpItsAttemptsThenTheOtherBoots) {
  const auto factory = make_image("1.0.0+1", 1);
  provision_slots(layout_, {Bootloader::rauc_custom, 256 * 1024, 3}, factory);
  write_slot(layout_, 1, make_image("1.1.0+2", 2, /*fails=*/true));
  std::string out;
  rauc_backend(layout_, 3, {"set-state", "B", "bad"}, out);
  rauc_backend(layout_, 3, {"set-primary", "B"}, out);
  auto r = boot_now(Bootloader::rauc_custom);
  ASSERT_TRUE(r.running) << log_;
  EXPECT_EQ(r.slot, 0);
  EXPECT_EQ(r.boots, 4) << log_;
  auto s = RaucBootState::read(layout_, 3);
  EXPECT_EQ(s.primary, 1);
  EXPECT_EQ(s.left[1], 0u);
  EXPECT_EQ(s.left[0], 3u);
}

// A power cut at the first console line containing `at`: the boot ROM stops
// right there, as a board whose power goes off after printing that line.
struct PowerCut {};

class BootRomBrownOutTest : public BootRomTest {
 protected:
  // One power-on whose power fails right after the boot ROM prints a line
  // containing `at` (for RAUC, "booting slot": the attempt is counted and
  // written, the self-test has not marked the slot good yet).
  void power_on_and_cut_at(Bootloader b, const std::string& at,
                           WhenExhausted when = WhenExhausted::reset_attempts) {
    log_.clear();
    bool fell = false;
    try {
      boot(
          layout_, b, 3,
          [&](const std::string& l) {
            log_ += l + "\n";
            if (l.find(at) != std::string::npos) throw PowerCut{};
          },
          when);
    } catch (const PowerCut&) {
      fell = true;
    }
    ASSERT_TRUE(fell) << "no line with '" << at << "':\n" << log_;
  }
  BootResult power_on(Bootloader b, WhenExhausted when) {
    log_.clear();
    return boot(
        layout_, b, 3, [this](const std::string& l) { log_ += l + "\n"; }, when);
  }
};

TEST_F(BootRomBrownOutTest, RaucCutsBeforeMarkGoodOnAConfirmedSlotDoNotBrickTheBoard) {
  const auto factory = make_image("1.0.0+1", 1);
  provision_slots(layout_, {Bootloader::rauc_custom, 256 * 1024, 3}, factory);
  ASSERT_TRUE(power_on(Bootloader::rauc_custom, WhenExhausted::reset_attempts).running) << log_;
  // Brown-out: three power-ons, each cut after the attempt was counted and
  // before the self-test marked A good (rauc-ab nightly seed 1, trial 00153).
  for (int cut = 0; cut < 3; ++cut) power_on_and_cut_at(Bootloader::rauc_custom, "booting slot A");
  auto s = RaucBootState::read(layout_, 3);
  ASSERT_EQ(s.left[0], 0u);
  ASSERT_EQ(s.left[1], 0u);
  // Power stays on: bootchooser's reset_attempts=all-zero gives A its attempts back.
  auto r = power_on(Bootloader::rauc_custom, WhenExhausted::reset_attempts);
  ASSERT_TRUE(r.running) << log_;
  EXPECT_EQ(r.slot, 0);
  EXPECT_TRUE(r.healthy);
  EXPECT_EQ(r.image.digest, digest_of(factory));
  EXPECT_NE(log_.find("reset_attempts all-zero: A_left=3 B_left=0"), std::string::npos) << log_;
  s = RaucBootState::read(layout_, 3);
  EXPECT_EQ(s.left[0], 3u) << "marked good";
  EXPECT_FALSE(s.enabled[1]) << "slot B was never installed: it stays disabled";
  EXPECT_EQ(s.left[1], 0u);
}

TEST_F(BootRomBrownOutTest, RaucCutsAtEveryBootLineNeverBrickTheBoard) {
  // Any number of cuts, at any line of the boot: the next clean power-on runs.
  provision_slots(layout_, {Bootloader::rauc_custom, 256 * 1024, 3}, make_image("1.0.0+1", 1));
  for (const char* at : {"booting slot", "booting slot", "self-test passed", "booting slot", "booting slot",
                         "booting slot", "reset_attempts", "booting slot"})
    power_on_and_cut_at(Bootloader::rauc_custom, at);
  auto r = power_on(Bootloader::rauc_custom, WhenExhausted::reset_attempts);
  ASSERT_TRUE(r.running) << log_;
  EXPECT_EQ(r.slot, 0);
}

TEST_F(BootRomBrownOutTest, RaucSlotMarkedBadStaysDisabledWhenAttemptsAreReset) {
  const auto factory = make_image("1.0.0+1", 1);
  provision_slots(layout_, {Bootloader::rauc_custom, 256 * 1024, 3}, factory);
  ASSERT_TRUE(power_on(Bootloader::rauc_custom, WhenExhausted::reset_attempts).running) << log_;
  // An install into B cut short: RAUC marked B bad and wrote half of it.
  std::string out;
  ASSERT_EQ(rauc_backend(layout_, 3, {"set-state", "B", "bad"}, out), 0);
  auto half = make_image("1.1.0+2", 2);
  half.resize(half.size() / 2);
  write_slot(layout_, 1, half);
  for (int cut = 0; cut < 3; ++cut) power_on_and_cut_at(Bootloader::rauc_custom, "booting slot A");
  auto r = power_on(Bootloader::rauc_custom, WhenExhausted::reset_attempts);
  ASSERT_TRUE(r.running) << log_;
  EXPECT_EQ(r.slot, 0);
  EXPECT_EQ(r.boots, 1) << "slot B, marked bad, is not tried:\n" << log_;
  EXPECT_EQ(log_.find("booting slot B"), std::string::npos) << log_;
  ASSERT_EQ(rauc_backend(layout_, 3, {"get-state", "B"}, out), 0);
  EXPECT_EQ(out, "bad\n");
}

TEST_F(BootRomBrownOutTest, RaucFailingNewSlotStillFallsBackAfterAttemptsAreReset) {
  const auto factory = make_image("1.0.0+1", 1);
  provision_slots(layout_, {Bootloader::rauc_custom, 256 * 1024, 3}, factory);
  write_slot(layout_, 1, make_image("1.1.0+2", 2, /*fails=*/true));
  std::string out;
  rauc_backend(layout_, 3, {"set-state", "B", "bad"}, out);
  rauc_backend(layout_, 3, {"set-primary", "B"}, out);
  ASSERT_EQ(power_on(Bootloader::rauc_custom, WhenExhausted::reset_attempts).slot, 0) << log_;  // B used up
  for (int cut = 0; cut < 3; ++cut) power_on_and_cut_at(Bootloader::rauc_custom, "booting slot A");
  // Both enabled slots out of attempts: both get them back, B (primary)
  // fails its self-test three more times, A runs.
  auto r = power_on(Bootloader::rauc_custom, WhenExhausted::reset_attempts);
  ASSERT_TRUE(r.running) << log_;
  EXPECT_EQ(r.slot, 0);
  EXPECT_EQ(r.image.digest, digest_of(factory));
  EXPECT_EQ(r.boots, 4) << log_;
}

TEST_F(BootRomBrownOutTest, RaucHaltWhenExhaustedBricksUnderTheSameCuts) {
  // The flawed boot ROM (otarig-clientboard --halt-when-exhausted,
  // boards/flawed/rauc-ab-halt-when-exhausted.yaml).
  provision_slots(layout_, {Bootloader::rauc_custom, 256 * 1024, 3}, make_image("1.0.0+1", 1));
  ASSERT_TRUE(power_on(Bootloader::rauc_custom, WhenExhausted::halt).running) << log_;
  for (int cut = 0; cut < 3; ++cut)
    power_on_and_cut_at(Bootloader::rauc_custom, "booting slot A", WhenExhausted::halt);
  auto r = power_on(Bootloader::rauc_custom, WhenExhausted::halt);
  EXPECT_FALSE(r.running) << log_;
  EXPECT_NE(log_.find("primary=A A_left=0 B_left=0: no slot has boot attempts left; halted"),
            std::string::npos)
      << log_;
}

TEST_F(BootRomBrownOutTest, UbootCutsDuringNormalBootsCountNothing) {
  // U-Boot's environment counts boots only while upgrade_available=1
  // (bootcount_env): brown-outs on a confirmed slot never reach altbootcmd.
  provision_slots(layout_, {Bootloader::uboot_env, 256 * 1024, 3}, make_image("1.0.0+1", 1));
  for (int cut = 0; cut < 5; ++cut) power_on_and_cut_at(Bootloader::uboot_env, "normal boot of slot A");
  EXPECT_EQ(env()["bootcount"], "0");
  auto r = power_on(Bootloader::uboot_env, WhenExhausted::halt);
  ASSERT_TRUE(r.running) << log_;
  EXPECT_EQ(r.slot, 0);
  EXPECT_EQ(r.boots, 1);
}

// Mender's U-Boot integration: mender_boot_part 2|3, the client commits.
TEST_F(BootRomTest, MenderTrialBootIsCommittedByTheClientNotTheBootRom) {
  const auto factory = make_image("1.0.0+1", 1);
  provision_slots(layout_, {Bootloader::mender_uboot, 256 * 1024, 3}, factory);
  auto e = env();
  EXPECT_EQ(e["mender_boot_part"], "2");
  EXPECT_EQ(e["mender_boot_part_hex"], "2");
  EXPECT_EQ(e.count("rootpart"), 0u);
  EXPECT_EQ(e["upgrade_available"], "0");
  const auto update = make_image("1.1.0+2", 2);
  write_slot(layout_, 1, update);
  // What `mender install` sets after writing partition 3.
  ubootenv::write(layout_, {{"mender_boot_part", "3"}, {"mender_boot_part_hex", "3"}, {"upgrade_available", "1"},
                            {"bootcount", "0"}});
  std::vector<std::pair<int, bool>> calls;
  auto hook = [&](int slot, const SlotImage&, bool passed) {
    calls.emplace_back(slot, passed);
    return false;  // the client did not commit
  };
  log_.clear();
  auto r = boot(layout_, Bootloader::mender_uboot, 3, [this](const std::string& l) { log_ += l + "\n"; },
                WhenExhausted::reset_attempts, hook);
  ASSERT_TRUE(r.running) << log_;
  EXPECT_EQ(r.slot, 1);
  EXPECT_EQ(r.state, "trial");
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0], std::make_pair(1, true));
  EXPECT_NE(log_.find("mender_boot_part=3 upgrade_available=1 bootcount=1"), std::string::npos) << log_;
  // The boot ROM left the trial pending: the client's commit decides.
  EXPECT_EQ(env()["upgrade_available"], "1");
  EXPECT_EQ(env()["bootcount"], "1");
}

TEST_F(BootRomTest, MenderAltbootcmdSwitchesPartitionAfterBootlimit) {
  provision_slots(layout_, {Bootloader::mender_uboot, 256 * 1024, 3}, make_image("1.0.0+1", 1));
  write_slot(layout_, 1, make_image("1.1.0+2", 2, /*fails=*/true));
  ubootenv::write(layout_, {{"mender_boot_part", "3"}, {"mender_boot_part_hex", "3"}, {"upgrade_available", "1"},
                            {"bootcount", "0"}});
  int rollbacks = 0;
  auto hook = [&](int slot, const SlotImage&, bool passed) {
    EXPECT_EQ(slot, 1);
    EXPECT_FALSE(passed);
    ++rollbacks;  // a client whose rollback did nothing: the boot ROM falls back by itself
    return false;
  };
  log_.clear();
  auto r = boot(layout_, Bootloader::mender_uboot, 3, [this](const std::string& l) { log_ += l + "\n"; },
                WhenExhausted::reset_attempts, hook);
  ASSERT_TRUE(r.running) << log_;
  EXPECT_EQ(r.slot, 0);
  EXPECT_EQ(r.state, "confirmed");
  EXPECT_EQ(rollbacks, 3);
  EXPECT_NE(log_.find("bootcount 4 > bootlimit 3: altbootcmd, falling back to slot A"), std::string::npos) << log_;
  auto e = env();
  EXPECT_EQ(e["mender_boot_part"], "2");
  EXPECT_EQ(e["mender_boot_part_hex"], "2");
  EXPECT_EQ(e["upgrade_available"], "0");
}

}  // namespace
}  // namespace otarig::drivers::clients
