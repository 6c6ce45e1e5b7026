// The virtual board's bootloader modes (docs/virtual-board.md): for each of
// ab, swap-scratch, swap-move, overwrite-only and direct-xip, the normal
// update, the self-test failure, power cuts (clean and torn) before and within
// every flash op, repeated cuts while recovering, flash errors at every op,
// bits flipped at rest, and the fast sweep's equivalence with the slow path.
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <regex>
#include <set>
#include <string>

#include "otarig/core/image.hpp"
#include "otarig/drivers/virtual/board.hpp"
#include "otarig/drivers/virtual/boot_state.hpp"

namespace otarig::drivers::vboard {
namespace {

using namespace std::chrono_literals;
using image::Bytes;

const crypto::Ed25519Key& release_key() {
  static const auto key = crypto::Ed25519Key::test_key("otarig-release");
  return key;
}

Bytes release(const char* version, std::uint32_t counter, std::uint32_t flags = 0, std::size_t payload = 20000) {
  image::Header h;
  h.version = image::Version::parse(version);
  h.security_counter = counter;
  h.flags = flags;
  return image::build(h, image::synthetic_payload(payload, version), release_key());
}

const Bytes& factory() {
  static const Bytes img = release("1.0.0+1", 1);
  return img;
}
const Bytes& update() {
  static const Bytes img = release("1.1.0+2", 2);
  return img;
}
const Bytes& failing() {
  static const Bytes img = release("1.1.0+2", 2, image::kFlagSelfTestFails);
  return img;
}

std::string digest_of(const Bytes& img) { return crypto::hex(crypto::sha256(image::parse(img).signed_part)); }

struct Status {
  std::string slot, version, digest;
  unsigned counter = 0;
  std::string state, health;
};

std::optional<Status> last_status(const std::string& text) {
  static const std::regex re(
      R"(STATUS slot=(\w+) version=(\S+) digest=([0-9a-f]{64}) counter=(\d+) state=(\w+) health=(\w+))");
  std::optional<Status> found;
  for (std::sregex_iterator it(text.begin(), text.end(), re), end; it != end; ++it) {
    const auto& m = *it;
    found = Status{m[1], m[2], m[3], static_cast<unsigned>(std::stoul(m[4])), m[5], m[6]};
  }
  return found;
}

BoardConfig config(BootMode mode, bool fast = true) {
  BoardConfig c;
  c.mode = mode;
  c.flash.slot_size = 32 * 1024;
  c.flash.sector_size = 4096;
  c.chunk_size = 4096;
  c.fast_sweep = fast;
  return c;
}

class Device {
 public:
  explicit Device(BoardConfig cfg) : board(std::move(cfg), {release_key().public_key()}, &clock) {}
  std::string drain() {
    std::string all;
    for (std::string s; !(s = board.read(0ms)).empty();) all += s;
    transcript += all;
    return all;
  }
  std::optional<Status> status() {
    drain();
    board.write("status\n");
    return last_status(drain());
  }
  /// Provisions `img`, powers on, and drains the boot output.
  void start(const Bytes& img) {
    board.provision(img);
    board.on();
    drain();
  }
  ManualClock clock;
  VirtualBoard board;
  std::string transcript;
};

class Modes : public ::testing::TestWithParam<BootMode> {};

std::string mode_name(const ::testing::TestParamInfo<BootMode>& info) {
  std::string s = to_string(info.param);
  for (auto& c : s)
    if (c == '-') c = '_';
  return s;
}

bool reverts(BootMode mode) { return mode != BootMode::overwrite_only; }

TEST_P(Modes, ProvisionedDeviceRunsItsImage) {
  Device d(config(GetParam()));
  d.start(factory());
  auto st = d.status();
  ASSERT_TRUE(st) << d.transcript;
  EXPECT_EQ(st->slot, "A");
  EXPECT_EQ(st->digest, digest_of(factory()));
  EXPECT_EQ(st->state, "confirmed");
  EXPECT_EQ(st->health, "ok");
  EXPECT_NE(d.transcript.find(std::string("mode=") + to_string(GetParam())), std::string::npos) << d.transcript;
}

TEST_P(Modes, UpdateRunsConfirmedAndSurvivesAPowerCycle) {
  Device d(config(GetParam()));
  d.start(factory());
  d.board.arm(FlashCut{});
  auto r = d.board.deliver(update());
  ASSERT_EQ(r.status, DeliveryStatus::accepted) << r.detail << d.drain();
  std::set<std::string> phases;
  const auto n = d.board.ops_counted();
  for (std::uint64_t k = 1; k <= n; ++k) {
    d.start(factory());
    d.board.arm(FlashCut{k, false, 0});
    ASSERT_EQ(d.board.deliver(update()).status, DeliveryStatus::power_lost) << k;
    phases.insert(d.board.fired()->phase);
  }
  // Every write the update costs is counted, the bootloader's copies included.
  EXPECT_TRUE(phases.count("download")) << n;
  EXPECT_TRUE(phases.count("stage"));
  if (GetParam() == BootMode::swap_scratch || GetParam() == BootMode::swap_move) {
    EXPECT_TRUE(phases.count("swap"));
  }
  if (GetParam() == BootMode::overwrite_only) {
    EXPECT_TRUE(phases.count("install"));
  }
  if (reverts(GetParam())) {
    EXPECT_TRUE(phases.count("confirm"));
  }

  d.start(factory());
  ASSERT_EQ(d.board.deliver(update()).status, DeliveryStatus::accepted);
  auto st = d.status();
  ASSERT_TRUE(st) << d.transcript;
  EXPECT_EQ(st->version, "1.1.0+2");
  EXPECT_EQ(st->digest, digest_of(update()));
  EXPECT_EQ(st->state, "confirmed");
  EXPECT_EQ(st->counter, 2u);
  d.board.off();
  d.board.on();
  st = d.status();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->digest, digest_of(update()));
  EXPECT_EQ(st->counter, 2u);
  // And the next one.
  ASSERT_EQ(d.board.deliver(release("1.2.0+3", 3)).status, DeliveryStatus::accepted);
  EXPECT_EQ(d.status()->version, "1.2.0+3");
}

TEST_P(Modes, RefusesADowngradeAndTamperedImages) {
  Device d(config(GetParam()));
  d.start(factory());
  ASSERT_EQ(d.board.deliver(update()).status, DeliveryStatus::accepted);
  EXPECT_EQ(d.board.deliver(factory()).status, DeliveryStatus::refused);
  EXPECT_EQ(d.board.deliver(image::tamper::flip_bit(update(), 100, 1)).status, DeliveryStatus::refused);
  EXPECT_EQ(d.board.deliver(image::tamper::strip_signature(update())).status, DeliveryStatus::refused);
  d.board.off();
  d.board.on();
  auto st = d.status();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->digest, digest_of(update()));
}

TEST_P(Modes, ASelfTestFailureIsRevertedWhereTheModeCan) {
  Device d(config(GetParam()));
  d.start(factory());
  auto r = d.board.deliver(failing());
  EXPECT_EQ(r.status, DeliveryStatus::accepted) << r.detail;
  auto st = d.status();
  ASSERT_TRUE(st) << d.transcript;
  if (reverts(GetParam())) {
    EXPECT_EQ(st->digest, digest_of(factory())) << d.transcript;
    EXPECT_EQ(st->health, "ok");
    EXPECT_EQ(st->counter, 1u) << "the counter rises only with a confirmed image";
  } else {
    // overwrite-only has nothing to go back to: it runs the new image and says it is unhealthy.
    EXPECT_EQ(st->digest, digest_of(failing()));
    EXPECT_EQ(st->health, "failed");
  }
  // Either way a good update still installs.
  ASSERT_EQ(d.board.deliver(update()).status, DeliveryStatus::accepted);
  st = d.status();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->digest, digest_of(update()));
  EXPECT_EQ(st->health, "ok");
}

struct SweepOutcome {
  std::uint64_t ops = 0, trials = 0, bricked = 0, mixed = 0, not_updatable = 0;
  std::uint64_t old_image = 0, new_image = 0;
};

// After a cut: power on (with `extra_cuts` more cuts at seeded ops of the
// recovery boots first), then the device must run the old or the new image
// and install the update on a retry.
void judge_recovery(Device& d, SweepOutcome& out, const std::string& where) {
  auto st = d.status();
  ++out.trials;
  if (!st) {
    ++out.bricked;
    ADD_FAILURE() << where << ": bricked\n" << d.drain();
    return;
  }
  if (st->digest == digest_of(factory())) ++out.old_image;
  else if (st->digest == digest_of(update())) ++out.new_image;
  else {
    ++out.mixed;
    ADD_FAILURE() << where << ": runs " << st->version << " " << st->digest;
  }
  EXPECT_EQ(st->health, "ok") << where;
  if (st->digest == digest_of(update())) return;
  auto r = d.board.deliver(update());
  st = d.status();
  if (r.status != DeliveryStatus::accepted || !st || st->digest != digest_of(update())) {
    ++out.not_updatable;
    ADD_FAILURE() << where << ": retry " << to_string(r.status) << " " << r.detail;
  }
}

SweepOutcome sweep(BootMode mode, bool torn, unsigned recovery_cuts) {
  Device d(config(mode));
  d.start(factory());
  d.board.arm(FlashCut{});
  EXPECT_EQ(d.board.deliver(update()).status, DeliveryStatus::accepted);
  SweepOutcome out;
  out.ops = d.board.ops_counted();
  std::uint64_t seed = 1;
  for (std::uint64_t k = 1; k <= out.ops; ++k) {
    d.start(factory());
    d.board.arm(FlashCut{k, torn, k * 7919});
    EXPECT_EQ(d.board.deliver(update()).status, DeliveryStatus::power_lost);
    for (unsigned c = 0; c < recovery_cuts; ++c) {
      // Cut the recovery boot again at a seeded op among its first 64.
      seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
      d.board.arm(FlashCut{1 + (seed >> 33) % 64, torn && (seed >> 20) % 2 == 1, seed});
      d.board.on();
      d.board.off();
    }
    d.board.disarm();
    d.board.on();
    judge_recovery(d, out, std::string(to_string(mode)) + (torn ? " torn" : "") + " cut " + std::to_string(k));
  }
  return out;
}

TEST_P(Modes, EveryCutBeforeAnOpLeavesOldOrNew) {
  auto o = sweep(GetParam(), false, 0);
  EXPECT_GT(o.ops, 10u);
  EXPECT_EQ(o.bricked + o.mixed + o.not_updatable, 0u);
  EXPECT_GT(o.old_image, 0u);
  EXPECT_GT(o.new_image, 0u);
}

TEST_P(Modes, EveryTornOpLeavesOldOrNew) {
  auto o = sweep(GetParam(), true, 0);
  EXPECT_EQ(o.bricked + o.mixed + o.not_updatable, 0u);
}

TEST_P(Modes, RepeatedCutsWhileRecoveringLeaveOldOrNew) {
  for (bool torn : {false, true}) {
    auto o = sweep(GetParam(), torn, 3);
    EXPECT_EQ(o.bricked + o.mixed + o.not_updatable, 0u);
  }
}

TEST_P(Modes, AFlashErrorAtAnyOpIsReportedAndTheDeviceStaysHealthy) {
  Device d(config(GetParam()));
  d.start(factory());
  d.board.arm(FlashCut{});
  ASSERT_EQ(d.board.deliver(update()).status, DeliveryStatus::accepted);
  const auto n = d.board.ops_counted();
  SweepOutcome out;
  for (std::uint64_t k = 1; k <= n; ++k) {
    for (bool torn : {false, true}) {
      d.start(factory());
      d.board.arm(FlashCut{k, torn, k, true});
      auto r = d.board.deliver(update());
      const auto where = "error at op " + std::to_string(k) + (torn ? " torn" : "");
      EXPECT_TRUE(r.status == DeliveryStatus::accepted || r.status == DeliveryStatus::refused) << where;
      if (r.status == DeliveryStatus::refused) {
        EXPECT_NE(r.detail.find("flash error"), std::string::npos) << r.detail;
      }
      EXPECT_TRUE(d.board.fired()) << where;
      EXPECT_TRUE(d.board.is_on()) << where << ": the device keeps its power";
      d.board.disarm();
      auto st = d.status();
      ASSERT_TRUE(st) << where << "\n" << d.transcript;
      EXPECT_EQ(st->health, "ok") << where;
      d.board.off();
      d.board.on();
      judge_recovery(d, out, where);
    }
  }
  EXPECT_EQ(out.bricked + out.mixed + out.not_updatable, 0u);
}

TEST_P(Modes, BitsFlippedAtRestAreRefusedAndAGoodCopyRuns) {
  for (bool running : {true, false}) {
    for (std::uint64_t seed = 0; seed < 6; ++seed) {
      Device d(config(GetParam()));
      d.start(factory());
      // The same release twice: both slots (or the primary and the secondary) hold it.
      ASSERT_EQ(d.board.deliver(update()).status, DeliveryStatus::accepted);
      ASSERT_EQ(d.board.deliver(update()).status, DeliveryStatus::accepted);
      auto what = d.board.flip_at_rest(StorageFlip{running, static_cast<std::uint32_t>(1 + seed % 3), seed});
      ASSERT_TRUE(what);
      EXPECT_FALSE(d.board.is_on());
      d.board.on();
      auto st = d.status();
      ASSERT_TRUE(st) << *what << "\n" << d.transcript;
      EXPECT_EQ(st->digest, digest_of(update())) << *what << "\n" << d.drain();
      EXPECT_EQ(st->health, "ok");
      ASSERT_EQ(d.board.deliver(release("1.2.0+3", 3)).status, DeliveryStatus::accepted) << *what;
      EXPECT_EQ(d.status()->version, "1.2.0+3");
    }
  }
}

TEST_P(Modes, FastSweepMatchesTheSlowPath) {
  Device fast(config(GetParam(), true)), slow(config(GetParam(), false));
  for (auto* d : {&fast, &slow}) {
    d->start(factory());
    d->board.arm(FlashCut{});
    ASSERT_EQ(d->board.deliver(update()).status, DeliveryStatus::accepted);
  }
  const auto n = slow.board.ops_counted();
  ASSERT_EQ(fast.board.ops_counted(), n);
  for (std::uint64_t k = 1; k <= n; k += 3) {
    for (bool torn : {false, true}) {
      std::string out[2];
      for (int i = 0; i < 2; ++i) {
        auto& d = i == 0 ? fast : slow;
        d.start(factory());
        d.board.arm(FlashCut{k, torn, k});
        auto r = d.board.deliver(update());
        out[i] = std::string(to_string(r.status)) + r.detail + d.drain();
        d.board.on();
        out[i] += d.drain();
      }
      EXPECT_EQ(out[0], out[1]) << "k=" << k;
      EXPECT_TRUE(std::equal(fast.board.flash().bytes().begin(), fast.board.flash().bytes().end(),
                             slow.board.flash().bytes().begin(), slow.board.flash().bytes().end()))
          << "k=" << k;
    }
  }
  EXPECT_GT(fast.board.stats().replayed_cuts, 0u);
}

INSTANTIATE_TEST_SUITE_P(AllModes, Modes,
                         ::testing::Values(BootMode::ab, BootMode::swap_scratch, BootMode::swap_move,
                                           BootMode::overwrite_only, BootMode::direct_xip),
                         mode_name);

// ---------------------------------------------------------------------------- layouts

TEST(ModeLayouts, SwapModesHaveTheirSwapSectorAndOwnRecordMagic) {
  EXPECT_EQ(config(BootMode::swap_scratch).layout().swap_sectors, 1u);
  EXPECT_EQ(config(BootMode::swap_move).layout().swap_sectors, 1u);
  EXPECT_EQ(config(BootMode::ab).layout().swap_sectors, 0u);
  EXPECT_EQ(config(BootMode::ab).layout().total_size(), config(BootMode::ab).flash.total_size());
  std::set<std::uint32_t> magics;
  for (auto m : {BootMode::ab, BootMode::swap_scratch, BootMode::swap_move, BootMode::overwrite_only,
                 BootMode::direct_xip})
    magics.insert(record_magic(m));
  EXPECT_EQ(magics.size(), 5u);
}

TEST(ModeLayouts, ASwapInterruptedAtEveryStepResumesFromItsRecord) {
  Device d(config(BootMode::swap_scratch));
  d.start(factory());
  ASSERT_EQ(d.board.deliver(update()).status, DeliveryStatus::accepted);
  auto rec = BootStateLog(d.board.flash(), kSwapScratchMagic).read();
  ASSERT_TRUE(rec);
  EXPECT_EQ(rec->swap, SwapKind::none);
  EXPECT_TRUE(rec->confirmed);
  // Stage the next one and cut inside the swap: the record says how far it got.
  d.board.arm(FlashCut{});
  ASSERT_EQ(d.board.deliver(release("1.2.0+3", 3)).status, DeliveryStatus::accepted);
  const auto n = d.board.ops_counted();
  bool saw_progress = false;
  for (std::uint64_t k = 1; k <= n; ++k) {
    d.start(factory());
    ASSERT_EQ(d.board.deliver(update()).status, DeliveryStatus::accepted);
    d.board.arm(FlashCut{k, false, 0});
    ASSERT_EQ(d.board.deliver(release("1.2.0+3", 3)).status, DeliveryStatus::power_lost);
    auto mid = BootStateLog(d.board.flash(), kSwapScratchMagic).read();
    ASSERT_TRUE(mid);
    if (mid->swap == SwapKind::test && mid->done > 0) saw_progress = true;
    d.board.disarm();
    d.board.on();
    auto st = d.status();
    ASSERT_TRUE(st) << k;
    EXPECT_TRUE(st->version == "1.1.0+2" || st->version == "1.2.0+3") << k;
  }
  EXPECT_TRUE(saw_progress);
}

}  // namespace
}  // namespace otarig::drivers::vboard
