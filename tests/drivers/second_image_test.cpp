// A virtual board with a second updatable image (docs/virtual-board.md, "A
// second image"): bundles, dependencies, the first stage's trial and revert,
// power cuts during a bootloader update, and the two defects of it.
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <regex>
#include <string>

#include "otarig/core/image.hpp"
#include "otarig/drivers/virtual/board.hpp"

namespace otarig::drivers::vboard {
namespace {

using namespace std::chrono_literals;
using image::Bytes;

const crypto::Ed25519Key& release_key() {
  static const auto key = crypto::Ed25519Key::test_key("otarig-release");
  return key;
}

Bytes make(std::uint8_t index, const char* version, std::uint32_t counter, const char* needs = nullptr,
           std::uint32_t flags = 0) {
  image::Header h;
  h.version = image::Version::parse(version);
  h.security_counter = counter;
  h.image_index = index;
  h.flags = flags;
  if (needs) {
    h.needs_image = 2;
    h.needs_version = image::Version::parse(needs);
  }
  return image::build(h, image::synthetic_payload(index ? 6000 : 12000, version), release_key());
}

Bytes bundle(const Bytes& a, const Bytes& b) {
  Bytes out = a;
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

std::string digest_of(const Bytes& img) { return crypto::hex(crypto::sha256(image::parse(img).signed_part)); }

struct Status {
  std::string version, digest, image1, image1_digest;
};

BoardConfig config(std::optional<Defect> defect = std::nullopt) {
  BoardConfig c;
  c.mode = BootMode::ab;
  c.flash.slot_size = 32 * 1024;
  c.flash.image1_slot_size = 8 * 1024;
  c.image1_name = "bootloader";
  c.chunk_size = 4096;
  if (defect) c.with(*defect);
  return c;
}

class Device {
 public:
  explicit Device(BoardConfig cfg) : board(std::move(cfg), {release_key().public_key()}, &clock) {}
  std::string drain() {
    std::string all;
    for (std::string s; !(s = board.read(0ms)).empty();) all += s;
    return all;
  }
  std::optional<Status> status() {
    drain();
    board.write("status\n");
    static const std::regex re(
        R"(STATUS slot=\w+ version=(\S+) digest=([0-9a-f]{64}) .* image1=(\S+) image1_digest=([0-9a-f]{64}))");
    const auto text = drain();
    std::smatch m;
    if (!std::regex_search(text, m, re)) return std::nullopt;
    return Status{m[1], m[2], m[3], m[4]};
  }
  void start() {
    board.provision(bundle(kApp1, kBoot1));
    board.on();
    drain();
  }
  void power_cycle() {
    board.off();
    board.on();
  }
  ManualClock clock;
  VirtualBoard board;

  static inline const Bytes kApp1 = make(0, "1.0.0+1", 1);
  static inline const Bytes kBoot1 = make(1, "1.0.0", 0);
  static inline const Bytes kBoot2 = make(1, "2.0.0", 0);
  static inline const Bytes kApp2 = make(0, "1.1.0+2", 2, "2.0.0");
  static inline const Bytes kApp3 = make(0, "1.2.0+3", 3, "3.0.0");
};

TEST(SecondImage, ABundleInstallsBothImagesAndTheStatusNamesThem) {
  Device d(config());
  d.start();
  auto st = d.status();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->version, "1.0.0+1");
  EXPECT_EQ(st->image1, "1.0.0");
  EXPECT_EQ(st->image1_digest, digest_of(Device::kBoot1));
  const auto r = d.board.deliver(bundle(Device::kApp2, Device::kBoot2));
  EXPECT_EQ(r.status, DeliveryStatus::accepted) << r.detail;
  d.power_cycle();
  st = d.status();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->digest, digest_of(Device::kApp2));
  EXPECT_EQ(st->image1_digest, digest_of(Device::kBoot2));
}

TEST(SecondImage, AnApplicationWithoutTheBootloaderItNeedsIsRefused) {
  Device d(config());
  d.start();
  auto r = d.board.deliver(Device::kApp2);
  EXPECT_EQ(r.status, DeliveryStatus::refused);
  EXPECT_NE(r.detail.find("dependency: image 0 1.1.0+2 needs bootloader >= 2.0.0, the device would run 1.0.0"),
            std::string::npos)
      << r.detail;
  // The bootloader first, then the application alone.
  EXPECT_EQ(d.board.deliver(Device::kBoot2).status, DeliveryStatus::accepted);
  EXPECT_EQ(d.status()->image1, "2.0.0");
  EXPECT_EQ(d.board.deliver(Device::kApp2).status, DeliveryStatus::accepted);
  EXPECT_EQ(d.status()->digest, digest_of(Device::kApp2));
}

TEST(SecondImage, ABundleThatBreaksTheDependencyStagesNothing) {
  Device d(config());
  d.start();
  const auto r = d.board.deliver(bundle(Device::kApp3, Device::kBoot2));
  EXPECT_EQ(r.status, DeliveryStatus::refused);
  EXPECT_NE(r.detail.find("needs bootloader >= 3.0.0, the device would run 2.0.0"), std::string::npos) << r.detail;
  d.power_cycle();
  const auto st = d.status();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->image1, "1.0.0") << "the bundle's bootloader was staged although the bundle was refused";
  EXPECT_EQ(st->version, "1.0.0+1");
}

TEST(SecondImage, IgnoresDependencyRunsTheApplicationBesideAnOlderBootloader) {
  Device d(config(Defect::ignores_dependency));
  d.start();
  EXPECT_EQ(d.board.deliver(Device::kApp2).status, DeliveryStatus::accepted);
  d.power_cycle();
  const auto st = d.status();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->digest, digest_of(Device::kApp2));
  EXPECT_EQ(st->image1, "1.0.0");
}

TEST(SecondImage, ABootloaderOnTrialThatFailsIsRevertedTogetherWithItsApplication) {
  Device d(config());
  d.start();
  const auto failing = make(1, "2.0.0", 0, nullptr, image::kFlagSelfTestFails);
  const auto r = d.board.deliver(bundle(Device::kApp2, failing));
  EXPECT_EQ(r.status, DeliveryStatus::accepted) << r.detail;
  const auto st = d.status();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->image1, "1.0.0");
  EXPECT_EQ(st->version, "1.0.0+1") << "the application that needs the reverted bootloader must not run";
}

TEST(SecondImage, AnOlderBootloaderIsRefused) {
  Device d(config());
  d.start();
  ASSERT_EQ(d.board.deliver(Device::kBoot2).status, DeliveryStatus::accepted);
  const auto r = d.board.deliver(Device::kBoot1);
  EXPECT_EQ(r.status, DeliveryStatus::refused);
  EXPECT_NE(r.detail.find("downgrade: bootloader 1.0.0 is older than 2.0.0"), std::string::npos) << r.detail;
}

// Power cut before every flash operation of a bootloader update: the A/B
// reference always boots the old or the new bootloader; the in-place flaw
// leaves no bootloader at some cut.
std::size_t bricked_cuts(BoardConfig cfg, std::size_t* old_or_new = nullptr, const Bytes& update = Device::kBoot2) {
  Device probe(cfg);
  probe.start();
  probe.board.arm(FlashCut{0, false, 0});
  EXPECT_EQ(probe.board.deliver(update).status, DeliveryStatus::accepted);
  const auto ops = probe.board.ops_counted();
  probe.board.disarm();
  // Two sectors erased and programmed (then, on A/B, the stage, trial-boot and confirm records).
  if (&update == &Device::kBoot2) {
    EXPECT_EQ(ops, cfg.has(Defect::image1_in_place) ? 4u : 7u) << probe.drain();
  }
  std::size_t bricked = 0, good = 0;
  for (std::uint64_t k = 1; k <= ops; ++k) {
    Device d(cfg);
    d.start();
    d.board.arm(FlashCut{k, false, 0});
    (void)d.board.deliver(update);
    d.board.disarm();
    d.board.on();
    const auto st = d.status();
    if (!st) {
      ++bricked;
      continue;
    }
    if (st->image1_digest == digest_of(Device::kBoot1) || st->image1_digest == digest_of(Device::kBoot2)) ++good;
  }
  if (old_or_new) *old_or_new = good;
  return bricked;
}

TEST(SecondImage, EveryPowerCutOfABootloaderUpdateLeavesTheOldOrTheNewBootloader) {
  std::size_t good = 0;
  EXPECT_EQ(bricked_cuts(config(), &good), 0u);
  EXPECT_GT(good, 0u);
  EXPECT_GT(bricked_cuts(config(Defect::image1_in_place)), 0u);
}

// A bundle of the application and the bootloader it needs: every cut, the
// one between the two confirms included, leaves a device that boots.
TEST(SecondImage, EveryPowerCutOfABundleLeavesABootableDevice) {
  static const Bytes update = bundle(Device::kApp2, Device::kBoot2);
  std::size_t good = 0;
  EXPECT_EQ(bricked_cuts(config(), &good, update), 0u);
  EXPECT_GT(good, 0u);
}

TEST(SecondImage, BytesAfterTheLastImageOfABundleAreRefused) {
  Device d(config());
  d.start();
  auto b = bundle(Device::kApp2, Device::kBoot2);
  b.insert(b.end(), 100, 0x5a);
  const auto r = d.board.deliver(b);
  EXPECT_EQ(r.status, DeliveryStatus::refused);
  EXPECT_NE(r.detail.find("bundle: 100 bytes after image 2 are no image"), std::string::npos) << r.detail;
}

TEST(SecondImage, ADefectOfTheSecondImageNeedsOne) {
  BoardConfig c;
  c.with(Defect::ignores_dependency);
  EXPECT_NE(c.problem().find("needs a second image"), std::string::npos) << c.problem();
}

}  // namespace
}  // namespace otarig::drivers::vboard
