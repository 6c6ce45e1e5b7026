// The virtual board's firmware: A/B bootloader with trial boot, confirm and
// revert, the anti-rollback counter, the OTA agent's checks, and the defects.
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <regex>
#include <string>

#include "otarig/core/delta.hpp"
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

BoardConfig small_config() {
  BoardConfig c;
  c.flash.slot_size = 64 * 1024;
  c.flash.sector_size = 4096;
  c.chunk_size = 4096;
  return c;
}

Bytes release(const char* version, std::uint32_t counter, std::uint32_t flags = 0,
              std::size_t payload = 20000) {
  image::Header h;
  h.version = image::Version::parse(version);
  h.security_counter = counter;
  h.flags = flags;
  return image::build(h, image::synthetic_payload(payload, version), release_key());
}

std::string digest_of(const Bytes& img) { return crypto::hex(crypto::sha256(image::parse(img).signed_part)); }

struct Status {
  std::string slot, version, digest;
  unsigned counter = 0;
  std::string state, health, key;
};

std::optional<Status> last_status(const std::string& text) {
  static const std::regex re(
      R"(STATUS slot=(\w+) version=(\S+) digest=([0-9a-f]{64}) counter=(\d+) state=(\w+) health=(\w+) key=([0-9a-f]{16}))");
  std::optional<Status> found;
  for (std::sregex_iterator it(text.begin(), text.end(), re), end; it != end; ++it) {
    const auto& m = *it;
    found = Status{m[1], m[2], m[3], static_cast<unsigned>(std::stoul(m[4])), m[5], m[6], m[7]};
  }
  return found;
}

class Device {
 public:
  explicit Device(BoardConfig cfg = small_config())
      : board(std::move(cfg), {release_key().public_key()}, &clock) {}

  /// Everything printed since the last drain.
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
  std::optional<BootRecord> boot_record() { return BootStateLog(board.flash()).read(); }
  std::uint32_t counter() { return AntiRollbackCounter(board.flash()).value(); }
  /// Flips one bit of a slot at rest (a storage fault).
  void corrupt(int slot, std::uint64_t offset) {
    auto at = board.flash().geometry().slot_offset(slot) + offset;
    Bytes b(1, static_cast<std::uint8_t>(board.flash().read(at, 1)[0] ^ 0x01));
    board.flash().write_raw(at, b);
  }
  /// The index of the first op of `phase` in an uncut delivery of `img` from `factory`.
  std::uint64_t op_of_phase(const Bytes& factory, const Bytes& img, const std::string& phase) {
    for (std::uint64_t k = 1; k < 1000; ++k) {
      board.provision(factory);
      board.on();
      board.arm(FlashCut{k, false, 0});
      auto r = board.deliver(img);
      if (r.status != DeliveryStatus::power_lost) break;
      if (board.fired()->phase == phase) return k;
    }
    ADD_FAILURE() << "no op of phase " << phase;
    return 0;
  }

  ManualClock clock;
  VirtualBoard board;
  std::string transcript;
};

bool contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

const Bytes& factory() {
  static const Bytes img = release("1.0.0+1", 1);
  return img;
}
const Bytes& update() {
  static const Bytes img = release("1.1.0+2", 2);
  return img;
}

// ---------------------------------------------------------------------------- normal flow

TEST(Bootloader, ProvisionedDeviceBootsItsConfirmedPrimary) {
  Device d;
  d.board.provision(factory());
  EXPECT_FALSE(d.board.is_on());
  EXPECT_EQ(d.board.run_state(), RunState::off);
  d.board.on();
  const auto out = d.drain();
  EXPECT_TRUE(contains(out, "otarig-vboard bootloader 1.0 mode=ab\n")) << out;
  EXPECT_TRUE(contains(out, "verify slot A: ok (version 1.0.0+1, counter 1)")) << out;
  EXPECT_TRUE(contains(out, "boot slot A")) << out;
  auto st = last_status(out);
  ASSERT_TRUE(st) << "status is printed when the application comes up:\n" << out;
  EXPECT_EQ(st->slot, "A");
  EXPECT_EQ(st->version, "1.0.0+1");
  EXPECT_EQ(st->digest, digest_of(factory()));
  EXPECT_EQ(st->counter, 1u);
  EXPECT_EQ(st->state, "confirmed");
  EXPECT_EQ(st->health, "ok");
  EXPECT_EQ(st->key, crypto::hex(release_key().id()));
  EXPECT_EQ(d.clock.now(), small_config().boot_time) << "one boot of modelled time";
}

TEST(Bootloader, UpdateBootsAsTrialThenConfirms) {
  Device d;
  d.board.provision(factory());
  d.board.on();
  d.drain();
  auto r = d.board.deliver(update());
  EXPECT_EQ(r.status, DeliveryStatus::accepted) << r.detail;
  EXPECT_EQ(r.bytes_sent, update().size());
  EXPECT_EQ(r.detail, "staged 1.1.0+2 in slot B");
  const auto out = d.drain();
  for (const char* line :
       {"ota: receiving", "ota: verify slot B: ok", "ota: staged slot B, rebooting",
        "boot state: seq=2 primary=A pending=B trial=no", "verify slot B: ok (version 1.1.0+2",
        "trial boot slot B", "app 1.1.0+2 slot B: running (trial)", "self-test passed", "confirmed slot B",
        "anti-rollback counter raised to 2"})
    EXPECT_TRUE(contains(out, line)) << line << "\n" << out;
  auto st = d.status();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->slot, "B");
  EXPECT_EQ(st->version, "1.1.0+2");
  EXPECT_EQ(st->digest, digest_of(update()));
  EXPECT_EQ(st->counter, 2u);
  EXPECT_EQ(st->state, "confirmed");
  auto rec = d.boot_record();
  ASSERT_TRUE(rec);
  EXPECT_EQ(rec->primary, 1);
  EXPECT_EQ(rec->pending, kNoSlot);
  EXPECT_FALSE(rec->trial_active);
  // Survives a power cycle, and the next update goes to slot A.
  d.board.cycle(100ms);
  EXPECT_EQ(d.status()->slot, "B");
  EXPECT_EQ(d.board.deliver(release("1.2.0+3", 3)).status, DeliveryStatus::accepted);
  st = d.status();
  EXPECT_EQ(st->slot, "A");
  EXPECT_EQ(st->version, "1.2.0+3");
  EXPECT_EQ(st->counter, 3u);
}

TEST(Bootloader, SelfTestFailureRevertsToThePrimary) {
  Device d;
  d.board.provision(factory());
  d.board.on();
  d.drain();
  auto r = d.board.deliver(release("1.1.0+2", 2, image::kFlagSelfTestFails));
  EXPECT_EQ(r.status, DeliveryStatus::accepted);
  const auto out = d.drain();
  for (const char* line : {"trial boot slot B", "self-test failed", "reboot (watchdog)",
                           "trial of slot B not confirmed: revert to slot A", "boot slot A"})
    EXPECT_TRUE(contains(out, line)) << line << "\n" << out;
  auto st = d.status();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->slot, "A");
  EXPECT_EQ(st->version, "1.0.0+1");
  EXPECT_EQ(st->counter, 1u) << "the counter rises only when an image is confirmed";
  EXPECT_EQ(st->health, "ok");
  EXPECT_EQ(d.boot_record()->pending, kNoSlot);
  // Still updatable.
  EXPECT_EQ(d.board.deliver(update()).status, DeliveryStatus::accepted);
  EXPECT_EQ(d.status()->version, "1.1.0+2");
}

TEST(Bootloader, TrialThatNeverConfirmsIsRevertedAtNextBoot) {
  Device d;
  const auto k = d.op_of_phase(factory(), update(), "confirm");
  ASSERT_GT(k, 0u);
  d.board.provision(factory());
  d.board.on();
  d.board.arm(FlashCut{k, false, 0});
  EXPECT_EQ(d.board.deliver(update()).status, DeliveryStatus::power_lost);
  EXPECT_TRUE(d.boot_record()->trial_active);
  EXPECT_EQ(d.counter(), 1u);
  d.drain();
  d.board.on();
  const auto out = d.drain();
  EXPECT_TRUE(contains(out, "trial of slot B not confirmed: revert to slot A")) << out;
  auto st = last_status(out);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->slot, "A");
  EXPECT_EQ(st->counter, 1u);
}

TEST(Bootloader, CounterRisesOnlyWithAConfirmedImage) {
  Device d;
  for (std::uint64_t k = 1;; ++k) {
    d.board.provision(factory());
    d.board.on();
    d.board.arm(FlashCut{k, k % 3 == 0, k});
    auto r = d.board.deliver(update());
    if (r.status != DeliveryStatus::power_lost) break;
    auto holds = [&](const char* when) {
      auto rec = d.boot_record();
      ASSERT_TRUE(rec) << when << " k=" << k;
      if (d.counter() > 1) {
        EXPECT_EQ(rec->primary, 1) << when << " k=" << k << " " << d.board.fired()->phase;
        EXPECT_TRUE(rec->confirmed && !rec->trial_active) << when << " k=" << k;
      }
    };
    holds("after the cut");
    d.board.on();
    holds("after recovery");
    auto st = d.status();
    ASSERT_TRUE(st) << "k=" << k;
    EXPECT_EQ(st->counter, st->slot == "B" ? 2u : 1u) << "k=" << k;
  }
}

TEST(Bootloader, HealsACutBetweenConfirmAndCounterRaise) {
  Device d;
  const auto k = d.op_of_phase(factory(), update(), "counter");
  ASSERT_GT(k, 0u);
  d.board.provision(factory());
  d.board.on();
  d.board.arm(FlashCut{k, false, 0});
  EXPECT_EQ(d.board.deliver(update()).status, DeliveryStatus::power_lost);
  EXPECT_EQ(d.counter(), 1u);
  EXPECT_EQ(d.boot_record()->primary, 1);
  d.drain();
  d.board.on();
  EXPECT_TRUE(contains(d.drain(), "anti-rollback counter raised to 2"));
  EXPECT_EQ(d.counter(), 2u);
}

TEST(Bootloader, FallsBackToTheOtherSlotWhenThePrimaryIsCorrupt) {
  Device d;
  d.board.provision(factory());
  d.board.on();
  auto same_counter = release("1.1.0+2", 1);
  ASSERT_EQ(d.board.deliver(same_counter).status, DeliveryStatus::accepted);
  EXPECT_EQ(d.status()->slot, "B");
  d.corrupt(1, 1000);
  d.board.cycle(10ms);
  const auto out = d.drain();
  EXPECT_TRUE(contains(out, "verify slot B: refused: hash mismatch")) << out;
  EXPECT_TRUE(contains(out, "fall back to slot A")) << out;
  auto st = last_status(out);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->slot, "A");
  EXPECT_EQ(st->version, "1.0.0+1");
}

TEST(Bootloader, NoValidImageBricksTheDevice) {
  Device d;
  d.board.provision(factory());
  d.corrupt(0, 10);  // header: version byte
  d.board.on();
  const auto out = d.drain();
  EXPECT_TRUE(contains(out, "verify slot A: refused")) << out;
  EXPECT_TRUE(contains(out, "verify slot B: refused: slot B: header.magic")) << out;
  EXPECT_TRUE(out.ends_with("BOOT FAILED: no bootable image\n")) << out;
  EXPECT_EQ(d.board.run_state(), RunState::bricked);
  EXPECT_TRUE(d.board.is_on());
  d.board.write("status\n");
  EXPECT_EQ(d.board.read(1s), "") << "a bricked device prints nothing";
  EXPECT_EQ(d.board.deliver(update()).status, DeliveryStatus::unreachable);
}

TEST(Bootloader, PrimaryBelowTheCounterDoesNotBoot) {
  Device d;
  d.board.provision(factory());
  AntiRollbackCounter(d.board.flash()).set_raw(5);
  d.board.on();
  const auto out = d.drain();
  EXPECT_TRUE(
      contains(out, "verify slot A: refused: rollback: security counter 1 is below the device's counter 5"))
      << out;
  EXPECT_EQ(d.board.run_state(), RunState::bricked);
}

TEST(Bootloader, FailingConfirmedImageStaysUpUnhealthy) {
  Device d;
  d.board.provision(release("1.0.0+1", 1, image::kFlagSelfTestFails));
  d.board.on();
  auto st = last_status(d.drain());
  ASSERT_TRUE(st);
  EXPECT_EQ(st->health, "failed");
  EXPECT_EQ(st->state, "confirmed");
}

TEST(Bootloader, GivesUpAfterTheBootLimit) {
  auto cfg = small_config();
  cfg.max_boots = 1;
  Device d(cfg);
  d.board.provision(factory());
  d.board.on();
  d.board.deliver(release("1.1.0+2", 2, image::kFlagSelfTestFails));
  const auto out = d.drain();
  EXPECT_TRUE(contains(out, "reboot limit: 1 boots without a healthy application, staying up")) << out;
  auto st = last_status(out);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->health, "failed");
  EXPECT_EQ(st->state, "trial");
  EXPECT_EQ(d.board.deliver(update()).status, DeliveryStatus::refused)
      << "no update over an unconfirmed trial";
}

// ---------------------------------------------------------------------------- agent checks

struct Refusal {
  const char* name;
  Bytes (*make)();
  const char* reason;
};
std::ostream& operator<<(std::ostream& os, const Refusal& r) { return os << r.name; }

class AgentRefuses : public ::testing::TestWithParam<Refusal> {};

TEST_P(AgentRefuses, AndTheDeviceStaysUpOnTheOldImage) {
  Device d;
  d.board.provision(release("1.1.0+2", 2));
  d.board.on();
  auto r = d.board.deliver(GetParam().make());
  EXPECT_EQ(r.status, DeliveryStatus::refused);
  EXPECT_TRUE(contains(r.detail, GetParam().reason)) << r.detail;
  EXPECT_TRUE(contains(d.drain(), "ota: refused: ")) << "the reason is printed";
  EXPECT_TRUE(d.board.is_on());
  auto st = d.status();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->slot, "A");
  EXPECT_EQ(st->version, "1.1.0+2");
  EXPECT_EQ(d.boot_record()->pending, kNoSlot);
  d.board.cycle(10ms);
  EXPECT_EQ(d.status()->version, "1.1.0+2");
}

INSTANTIATE_TEST_SUITE_P(
    Images, AgentRefuses,
    ::testing::Values(
        Refusal{"older_counter", [] { return release("1.0.0+1", 1); },
                "rollback: security counter 1 is below"},
        Refusal{"older_version", [] { return release("1.0.0+9", 2); },
                "downgrade: version 1.0.0+9 is older than"},
        Refusal{"tampered", [] { return image::tamper::flip_bit(release("1.2.0+3", 3), 3000, 1); },
                "hash mismatch"},
        Refusal{"unsigned", [] { return image::tamper::strip_signature(release("1.2.0+3", 3)); },
                "untrusted key"},
        Refusal{"unknown_key",
                [] {
                  return image::tamper::resign(release("1.2.0+3", 3),
                                               crypto::Ed25519Key::test_key("intruder"));
                },
                "untrusted key"},
        Refusal{"bad_signature", [] { return image::tamper::flip_bit(release("1.2.0+3", 3), 20064 + 60, 0); },
                "bad signature"},
        Refusal{"truncated",
                [] {
                  auto img = release("1.2.0+3", 3);
                  return image::tamper::truncate(img, img.size() - 10);
                },
                "incomplete image: it declares 20176 bytes, 20166 arrived"},
        Refusal{"truncated_in_payload",
                [] {
                  auto img = release("1.2.0+3", 3);
                  return image::tamper::truncate(img, 9000);
                },
                "incomplete image: it declares 20176 bytes, 9000 arrived"},
        Refusal{"oversized", [] { return release("1.2.0+3", 3, 0, 70000); }, "exceeds the slot size"},
        Refusal{"counter_beyond_capacity", [] { return release("1.2.0+3", 100000); },
                "exceeds the device's counter"},
        Refusal{"garbage", [] { return Bytes(5000, 0x42); }, "header.magic"}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(Bootloader, RefusesAStagedDowngradeItself) {
  Device d;
  d.board.provision(release("1.1.0+2", 2));
  // Put an older, validly signed image with an acceptable counter in slot B
  // and stage it behind the agent's back (debug-probe writes).
  auto older = release("1.0.5+1", 2);
  d.board.flash().write_raw(d.board.flash().geometry().slot_offset(1), older);
  BootStateLog(d.board.flash()).append(BootRecord{0, 0, 1, false, true}, "probe");
  d.board.on();
  const auto out = d.drain();
  EXPECT_TRUE(contains(out, "verify slot B: refused: downgrade: version 1.0.5+1 is older than 1.1.0+2"))
      << out;
  auto st = last_status(out);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->slot, "A");
  EXPECT_EQ(d.boot_record()->pending, kNoSlot);
}

TEST(Bootloader, RefusesAStagedImageBelowTheCounter) {
  Device d;
  d.board.provision(release("1.1.0+2", 2));
  d.board.flash().write_raw(d.board.flash().geometry().slot_offset(1), release("1.2.0+1", 1));
  BootStateLog(d.board.flash()).append(BootRecord{0, 0, 1, false, true}, "probe");
  d.board.on();
  EXPECT_TRUE(contains(d.drain(), "verify slot B: refused: rollback: security counter 1 is below"));
  EXPECT_EQ(d.status()->slot, "A");
}

// ---------------------------------------------------------------------------- defects

TEST(Defects, NoRollbackCheckInstallsAnOlderRelease) {
  Device d(small_config().with(Defect::no_rollback_check));
  d.board.provision(release("1.1.0+2", 2));
  d.board.on();
  auto r = d.board.deliver(release("1.0.0+1", 1));
  EXPECT_EQ(r.status, DeliveryStatus::accepted) << r.detail;
  auto st = d.status();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->version, "1.0.0+1") << "the defect lets the device roll back";
  EXPECT_EQ(st->counter, 2u) << "the counter itself never falls";
}

TEST(Defects, ReferenceBoardRefusesWhatNoRollbackCheckAccepts) {
  Device d;
  d.board.provision(release("1.1.0+2", 2));
  d.board.on();
  EXPECT_EQ(d.board.deliver(release("1.0.0+1", 1)).status, DeliveryStatus::refused);
}

TEST(Defects, InplaceOverwriteRewritesTheRunningSlot) {
  Device d(small_config().with(Defect::inplace_overwrite));
  d.board.provision(factory());
  d.board.on();
  d.board.arm(FlashCut{});
  auto r = d.board.deliver(update());
  EXPECT_EQ(r.status, DeliveryStatus::accepted) << r.detail;
  auto st = d.status();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->slot, "A");
  EXPECT_EQ(st->version, "1.1.0+2");
  EXPECT_EQ(st->counter, 2u);
  const auto& g = d.board.flash().geometry();
  auto b = d.board.flash().read(g.slot_offset(1), g.slot_size);
  EXPECT_TRUE(std::all_of(b.begin(), b.end(), [](auto x) { return x == 0xFF; })) << "slot B is never used";
}

TEST(Defects, InplaceOverwriteBricksOnACutDuringDownload) {
  Device d(small_config().with(Defect::inplace_overwrite));
  d.board.provision(factory());
  d.board.on();
  d.board.arm(FlashCut{3, false, 0});
  auto r = d.board.deliver(update());
  ASSERT_EQ(r.status, DeliveryStatus::power_lost);
  EXPECT_EQ(d.board.fired()->phase, "download");
  EXPECT_LT(d.board.fired()->address, d.board.flash().geometry().slot_size) << "slot A is being rewritten";
  d.drain();
  d.board.on();
  EXPECT_TRUE(contains(d.drain(), "BOOT FAILED: no bootable image"));
  EXPECT_EQ(d.board.run_state(), RunState::bricked);
}

TEST(Defects, InplaceOverwriteBricksOnARefusedImage) {
  Device d(small_config().with(Defect::inplace_overwrite));
  d.board.provision(factory());
  d.board.on();
  EXPECT_EQ(d.board.deliver(image::tamper::strip_signature(update())).status, DeliveryStatus::refused);
  EXPECT_TRUE(d.status()) << "up until the next boot";
  d.board.cycle(10ms);
  EXPECT_EQ(d.board.run_state(), RunState::bricked);
}

// ---------------------------------------------------------------------------- delta releases

// factory's payload with every 4th 1 KiB block rewritten: most of it is copied.
const Bytes& patched() {
  static const Bytes img = [] {
    auto payload = image::synthetic_payload(20000, "1.0.0+1");
    const auto fresh = image::synthetic_payload(20000, "patched");
    for (std::size_t o = 3 * 1024; o + 1024 <= payload.size(); o += 4 * 1024)
      std::copy_n(fresh.begin() + static_cast<std::ptrdiff_t>(o), 1024, payload.begin() + static_cast<std::ptrdiff_t>(o));
    image::Header h;
    h.version = image::Version::parse("1.1.0+2");
    h.security_counter = 2;
    return image::build(h, payload, release_key());
  }();
  return img;
}
const Bytes& patched_delta() {
  static const Bytes d = image::delta::make(factory(), patched());
  return d;
}

TEST(Delta, InstallsTheAssembledImageInTheOtherSlotAndBootsItAsATrial) {
  for (auto mode : {BootMode::ab, BootMode::swap_scratch, BootMode::swap_move, BootMode::overwrite_only,
                    BootMode::direct_xip}) {
    auto cfg = small_config();
    cfg.mode = mode;
    Device d(cfg);
    d.board.provision(factory());
    d.board.on();
    d.board.arm(FlashCut{});
    auto r = d.board.deliver(patched_delta());
    EXPECT_EQ(r.status, DeliveryStatus::accepted) << to_string(mode) << ": " << r.detail;
    EXPECT_EQ(r.bytes_sent, patched_delta().size());
    auto st = d.status();
    ASSERT_TRUE(st) << to_string(mode);
    EXPECT_EQ(st->version, "1.1.0+2") << to_string(mode);
    EXPECT_EQ(st->digest, digest_of(patched())) << to_string(mode);
    EXPECT_TRUE(contains(d.transcript, "ota: delta of")) << d.transcript;
  }
}

TEST(Delta, WritesWithPhasePatchAndNeverTheRunningSlot) {
  Device d;
  d.board.provision(factory());
  d.board.on();
  d.board.arm(FlashCut{1, false, 0});
  ASSERT_EQ(d.board.deliver(patched_delta()).status, DeliveryStatus::power_lost);
  EXPECT_EQ(d.board.fired()->phase, "patch");
  EXPECT_GE(d.board.fired()->address, d.board.flash().geometry().slot_size) << "slot B is written";
}

TEST(Delta, AnotherBaseIsRefusedBeforeAnythingIsWritten) {
  Device d;
  d.board.provision(update());  // runs 1.1.0+2, the delta is against 1.0.0+1
  d.board.on();
  d.board.arm(FlashCut{});
  auto r = d.board.deliver(patched_delta());
  EXPECT_EQ(r.status, DeliveryStatus::refused);
  EXPECT_TRUE(contains(r.detail, "delta: wrong base: it was made against")) << r.detail;
  EXPECT_EQ(d.board.ops_counted(), 0u);
  auto st = d.status();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->digest, digest_of(update()));
}

TEST(Delta, ACorruptLiteralIsRefusedByTheWholeImageCheckAndTheOldImageRuns) {
  Device d;
  d.board.provision(factory());
  d.board.on();
  const auto parsed = image::delta::parse(patched_delta(), "d", 1 << 20);
  std::size_t at = 0;
  for (const auto& op : parsed.patch.ops)
    if (op.kind == image::delta::OpKind::insert) at = image::kHeaderSize + op.data_at + 100;
  auto r = d.board.deliver(image::tamper::flip_bit(patched_delta(), at, 3));
  EXPECT_EQ(r.status, DeliveryStatus::refused);
  EXPECT_TRUE(contains(r.detail, "hash mismatch")) << r.detail;
  auto st = d.status();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->digest, digest_of(factory()));
  // A malformed patch is refused by its parser.
  auto bad = patched_delta();
  bad[image::kHeaderSize + image::delta::kPatchHeaderSize] = 9;
  r = d.board.deliver(bad);
  EXPECT_EQ(r.status, DeliveryStatus::refused);
  EXPECT_TRUE(contains(r.detail, "unknown op 0x09")) << r.detail;
}

TEST(Delta, EveryCutOfTheApplyLeavesTheOldOrTheNewImage) {
  Device counter;
  counter.board.provision(factory());
  counter.board.on();
  counter.board.arm(FlashCut{});
  ASSERT_EQ(counter.board.deliver(patched_delta()).status, DeliveryStatus::accepted);
  const auto n = counter.board.ops_counted();
  ASSERT_GT(n, 5u);
  for (std::uint64_t k = 1; k <= n; ++k) {
    Device d;
    d.board.provision(factory());
    d.board.on();
    d.board.arm(FlashCut{k, false, 0});
    (void)d.board.deliver(patched_delta());
    d.board.disarm();
    if (!d.board.is_on()) d.board.on();
    auto st = d.status();
    ASSERT_TRUE(st) << "cut before op " << k;
    EXPECT_TRUE(st->digest == digest_of(factory()) || st->digest == digest_of(patched())) << "cut before op " << k;
  }
}

TEST(Defects, DeltaInPlacePatchesTheRunningSlotAndBricksOnACut) {
  Device clean(small_config().with(Defect::delta_in_place));
  clean.board.provision(factory());
  clean.board.on();
  auto r = clean.board.deliver(patched_delta());
  EXPECT_EQ(r.status, DeliveryStatus::accepted) << r.detail;
  auto st = clean.status();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->slot, "A");
  EXPECT_EQ(st->digest, digest_of(patched()));

  Device d(small_config().with(Defect::delta_in_place));
  d.board.provision(factory());
  d.board.on();
  d.board.arm(FlashCut{3, false, 0});
  ASSERT_EQ(d.board.deliver(patched_delta()).status, DeliveryStatus::power_lost);
  EXPECT_LT(d.board.fired()->address, d.board.flash().geometry().slot_size) << "slot A is being rewritten";
  d.board.disarm();
  d.drain();
  d.board.on();
  EXPECT_TRUE(contains(d.drain(), "BOOT FAILED: no bootable image"));
}

TEST(Defects, NamesRoundTrip) {
  for (std::size_t i = 0; i < kDefectCount; ++i) {
    auto d = static_cast<Defect>(i);
    EXPECT_EQ(defect_from_string(to_string(d)), d);
  }
  EXPECT_FALSE(defect_from_string("no-such-defect"));
  EXPECT_TRUE(is_implemented(Defect::inplace_overwrite));
  EXPECT_TRUE(is_implemented(Defect::no_rollback_check));
}

}  // namespace
}  // namespace otarig::drivers::vboard
