// The virtual board end to end through its protocols: registration from a
// profile, provisioning, delivery, the status line, power-cut sweeps, and the
// fast sweep's equivalence with the slow path.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <numeric>
#include <optional>
#include <regex>
#include <set>
#include <string>

#include "otarig/core/errors.hpp"
#include "otarig/core/image.hpp"
#include "otarig/drivers/registry.hpp"
#include "otarig/drivers/virtual/board.hpp"

namespace otarig::drivers::vboard {
namespace {

using namespace std::chrono_literals;
using image::Bytes;

const crypto::Ed25519Key& release_key() {
  static const auto key = crypto::Ed25519Key::test_key("otarig-release");
  return key;
}

Bytes release(const char* version, std::uint32_t counter, std::size_t payload = 20000,
              std::uint32_t flags = 0) {
  image::Header h;
  h.version = image::Version::parse(version);
  h.security_counter = counter;
  h.flags = flags;
  return image::build(h, image::synthetic_payload(payload, version), release_key());
}

BoardConfig small_config() {
  BoardConfig c;
  c.flash.slot_size = 64 * 1024;
  c.chunk_size = 4096;
  return c;
}

std::string drain(ConsoleProtocol& console) {
  std::string all;
  for (std::string s; !(s = console.read(0ms)).empty();) all += s;
  return all;
}

// The status pattern of boards/virtual-ab.yaml, as std::regex (no named groups).
struct Status {
  std::string slot, version, digest, counter, state, health;
};
std::optional<Status> last_status(const std::string& text) {
  static const std::regex re(
      R"(STATUS slot=(\w+) version=(\S+) digest=([0-9a-f]{64}) counter=(\d+) state=(\w+) health=(\w+))");
  std::optional<Status> found;
  for (std::sregex_iterator it(text.begin(), text.end(), re), end; it != end; ++it)
    found = Status{(*it)[1], (*it)[2], (*it)[3], (*it)[4], (*it)[5], (*it)[6]};
  return found;
}

std::string digest_of(const Bytes& img) { return crypto::hex(crypto::sha256(image::parse(img).signed_part)); }

// ---------------------------------------------------------------------------- registration

constexpr const char* kProfile = R"(name: test-board
device:
  kind: virtual
  mode: ab
  flash:
    slot_size: 64KiB
    sector_size: 4KiB
    program_align: 8
    metadata_sectors: 3
  chunk_size: 8KiB
  boot_time: 150ms
  defects: [no-rollback-check]
  fast_sweep: false
power:
  driver: virtual
console:
  driver: virtual
link:
  driver: virtual
)";

TEST(VirtualDrivers, BuildFromAProfile) {
  DriverRegistry registry;
  register_virtual_drivers(registry);
  ASSERT_NE(registry.device("virtual"), nullptr);
  ASSERT_NE(registry.power("virtual"), nullptr);
  ASSERT_NE(registry.console("virtual"), nullptr);
  ASSERT_NE(registry.link("virtual"), nullptr);

  auto profile = Config::load_string(kProfile, "board.yaml");
  ManualClock clock;
  BindContext ctx;
  ctx.clock = &clock;
  ctx.trusted_keys = {release_key().public_key()};
  BoardParts parts;
  (*registry.device("virtual"))(profile.at("device"), ctx, parts);
  (*registry.power("virtual"))(profile.at("power"), ctx, parts);
  (*registry.console("virtual"))(profile.at("console"), ctx, parts);
  (*registry.link("virtual"))(profile.at("link"), ctx, parts);
  ASSERT_TRUE(parts.power && parts.console && parts.link && parts.provision && parts.flash_faults &&
              parts.device);
  EXPECT_EQ(parts.component_versions.at("otarig-vboard"), "bootloader 1.0 mode=ab");

  auto board = std::dynamic_pointer_cast<VirtualBoard>(parts.flash_faults);
  ASSERT_TRUE(board);
  const auto& cfg = board->config();
  EXPECT_EQ(cfg.flash.slot_size, 64u * 1024);
  EXPECT_EQ(cfg.flash.metadata_sectors, 3u);
  EXPECT_EQ(cfg.chunk_size, 8192u);
  EXPECT_EQ(cfg.boot_time, 150ms);
  EXPECT_TRUE(cfg.has(Defect::no_rollback_check));
  EXPECT_FALSE(cfg.has(Defect::inplace_overwrite));
  EXPECT_FALSE(cfg.fast_sweep);

  // The parts drive one device, with the context's clock and keys.
  parts.provision->provision(release("1.0.0+1", 1));
  parts.power->on();
  EXPECT_EQ(clock.now(), 150ms);
  auto st = last_status(drain(*parts.console));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->version, "1.0.0+1");
  EXPECT_EQ(parts.link->deliver(release("1.1.0+2", 2)).status, DeliveryStatus::accepted);
}

TEST(VirtualDrivers, PartsNeedTheVirtualDevice) {
  DriverRegistry registry;
  register_virtual_drivers(registry);
  auto profile = Config::load_string(kProfile, "board.yaml");
  BoardParts parts;
  try {
    (*registry.power("virtual"))(profile.at("power"), BindContext{}, parts);
    FAIL() << "bound without a device";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("board.yaml:15"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("kind: virtual"), std::string::npos) << e.what();
  }
}

struct BadDevice {
  const char* name;
  const char* yaml;     // the device section; the faulty key sits where `where` says
  const char* message;  // expected part of the InputError, with file:line
};
std::ostream& operator<<(std::ostream& os, const BadDevice& b) { return os << b.name; }

class DeviceSectionError : public ::testing::TestWithParam<BadDevice> {};

TEST_P(DeviceSectionError, NamesFileAndLine) {
  auto doc = Config::load_string(GetParam().yaml, "board.yaml");
  try {
    BoardConfig::from_config(doc.at("device"));
    FAIL() << "accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(GetParam().message), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Keys, DeviceSectionError,
    ::testing::Values(
        BadDevice{"unknown_key", "device:\n  kind: virtual\n  colour: red\n",
                  "board.yaml:3: device.colour: unknown key 'colour'"},
        BadDevice{"unknown_flash_key", "device:\n  kind: virtual\n  flash:\n    blocks: 3\n",
                  "board.yaml:4: device.flash.blocks: unknown key 'blocks'"},
        BadDevice{"unknown_defect",
                  "device:\n  kind: virtual\n  defects:\n    - inplace-overwrite\n    - bogus\n",
                  "board.yaml:5: device.defects[1]: unknown defect 'bogus'"},
        BadDevice{"defect_of_another_mode", "device:\n  kind: virtual\n  defects: [stale-trailer]\n",
                  "board.yaml:3: device.defects[0]: defect 'stale-trailer' is modelled in mode swap-scratch, "
                  "swap-move only, not in mode ab"},
        BadDevice{"unknown_mode", "device:\n  kind: virtual\n  mode: nope\n",
                  "board.yaml:3: device.mode: unknown boot mode 'nope'"},

        BadDevice{"slot_size", "device:\n  kind: virtual\n  flash:\n    slot_size: 1000\n",
                  "board.yaml:4: device.flash: slot_size 1000 must be a nonzero multiple"},
        BadDevice{"metadata_sectors", "device:\n  flash:\n    metadata_sectors: 1\n",
                  "board.yaml:3: device.flash.metadata_sectors: metadata_sectors 1 must be 2..64"},
        BadDevice{
            "chunk_size", "device:\n  kind: virtual\n  chunk_size: 12\n",
            "board.yaml:3: device.chunk_size: chunk_size 12 must be a nonzero multiple of program_align 8"},
        BadDevice{"kind", "device:\n  kind: process\n", "board.yaml:2: device.kind: expected kind 'virtual'"},
        BadDevice{"fast_sweep", "device:\n  kind: virtual\n  fast_sweep: maybe\n",
                  "board.yaml:3: device.fast_sweep: expected true or false"},
        BadDevice{"boot_time", "device:\n  kind: virtual\n  boot_time: soon\n",
                  "board.yaml:3: device.boot_time"}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(VirtualDrivers, ShippedProfilesLoad) {
  // Every virtual board profile shipped: the references of each mode (1 MiB
  // slots, like the ones a benchmark sweeps) and the flawed catalog.
  const auto boards = std::filesystem::path(OTARIG_SOURCE_DIR) / "boards";
  std::set<BootMode> reference_modes;
  std::size_t loaded = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(boards)) {
    if (e.path().extension() != ".yaml") continue;
    auto doc = Config::load_file(e.path());
    auto device = doc.find("device");
    if (!device || device->string_or("kind", "") != "virtual") continue;
    auto cfg = BoardConfig::from_config(*device);
    ++loaded;
    if (e.path().parent_path() == boards) {
      // The reference of each mode (boards/virtual-MODE.yaml) has the slots a benchmark sweeps.
      static const std::set<std::string> per_mode{"virtual-ab", "virtual-swap-scratch", "virtual-swap-move",
                                                  "virtual-overwrite-only", "virtual-direct-xip"};
      if (per_mode.count(e.path().stem().string())) {
        EXPECT_EQ(cfg.flash.slot_size, 1u << 20) << e.path();
      }
      EXPECT_TRUE(cfg.defects.none()) << e.path();
      reference_modes.insert(cfg.mode);
    } else {
      EXPECT_TRUE(cfg.defects.any()) << e.path() << ": a flawed board carries a defect";
    }
  }
  if (loaded == 0) GTEST_SKIP() << "no board profiles under " << boards;
  EXPECT_EQ(reference_modes.size(), 5u) << "one reference profile per boot mode";
}

// ---------------------------------------------------------------------------- protocols

TEST(VirtualBoard, ConsoleReadAdvancesTheManualClockOnlyWhenIdle) {
  ManualClock clock;
  VirtualBoard board(small_config(), {release_key().public_key()}, &clock);
  EXPECT_EQ(board.read(250ms), "");
  EXPECT_EQ(clock.now(), 250ms);
  board.write("status\n");
  EXPECT_EQ(board.read(1s), "") << "a powered-off device ignores input";
  board.provision(release("1.0.0+1", 1));
  board.on();
  const auto t = clock.now();
  EXPECT_NE(board.read(5s), "");
  EXPECT_EQ(clock.now(), t) << "pending output returns at once";
  board.write("sta");
  board.write("tus\r\n");
  auto out = board.read(0ms);
  EXPECT_TRUE(out.starts_with("STATUS slot=A version=1.0.0+1 digest=")) << out;
  EXPECT_TRUE(out.ends_with(" key=" + crypto::hex(release_key().id()) + "\n")) << out;
  board.off();
  EXPECT_FALSE(board.is_on());
  board.write("status\n");
  EXPECT_EQ(board.read(0ms), "");
  EXPECT_EQ(board.deliver(release("1.1.0+2", 2)).status, DeliveryStatus::unreachable);
}

TEST(VirtualBoard, StatusLineHasTheExactFormat) {
  VirtualBoard board(small_config(), {release_key().public_key()});
  auto img = release("1.1.0+2", 2);
  board.provision(img);
  board.on();
  drain(board);
  board.write("status\n");
  EXPECT_EQ(board.read(0ms),
            "STATUS slot=A version=1.1.0+2 digest=" + digest_of(img) +
                " counter=2 state=confirmed health=ok key=" + crypto::hex(release_key().id()) + "\n");
  // status_payload: the payload's own digest follows.
  auto config = small_config();
  config.status_payload = true;
  VirtualBoard named(config, {release_key().public_key()});
  named.provision(img);
  named.on();
  drain(named);
  named.write("status\n");
  EXPECT_TRUE(named.read(0ms).ends_with(" payload=" + crypto::hex(crypto::sha256(image::parse(img).payload)) + "\n"));
}

TEST(VirtualBoard, StatusDigestIsReadFromFlash) {
  VirtualBoard board(small_config(), {release_key().public_key()});
  auto img = release("1.0.0+1", 1);
  board.provision(img);
  board.on();
  drain(board);
  // A bit flips at rest under the running image: the digest shows it.
  Bytes b(1, static_cast<std::uint8_t>(board.flash().read(500, 1)[0] ^ 0x80));
  board.flash().write_raw(500, b);
  board.write("status\n");
  auto st = last_status(board.read(0ms));
  ASSERT_TRUE(st);
  EXPECT_NE(st->digest, digest_of(img));
  EXPECT_EQ(st->digest, digest_of(image::tamper::flip_bit(img, 500, 7)));
}

TEST(VirtualBoard, ProvisionRejectsWhatCannotBeProgrammed) {
  VirtualBoard board(small_config(), {release_key().public_key()});
  EXPECT_THROW(board.provision(Bytes(100, 0)), InputError);
  EXPECT_THROW(board.provision(release("1.0.0", 1, 70000)), InputError);
}

TEST(VirtualBoard, ProvisionResetsEraseCountsAndLeavesTheDeviceOff) {
  VirtualBoard board(small_config(), {release_key().public_key()});
  board.provision(release("1.0.0+1", 1));
  board.on();
  board.deliver(release("1.1.0+2", 2));
  auto counts = board.erase_counts();
  EXPECT_GT(std::accumulate(counts.begin(), counts.end(), 0u), 0u);
  board.provision(release("1.0.0+1", 1));
  EXPECT_FALSE(board.is_on());
  counts = board.erase_counts();
  EXPECT_EQ(std::accumulate(counts.begin(), counts.end(), 0u), 0u);
}

// ---------------------------------------------------------------------------- power-cut sweeps

struct SweepOutcome {
  std::uint64_t ops = 0;
  std::uint64_t bricked = 0;
  std::uint64_t mixed = 0;  // ran something that is neither image
  std::uint64_t not_updatable = 0;
};

// Cuts before every op (and torn at every op when `torn`) of an update, then
// checks what the device runs after power on and that a retry succeeds.
SweepOutcome sweep(BoardConfig cfg, bool torn) {
  ManualClock clock;
  VirtualBoard board(std::move(cfg), {release_key().public_key()}, &clock);
  const auto factory = release("1.0.0+1", 1);
  const auto update = release("1.1.0+2", 2);
  SweepOutcome out;
  board.provision(factory);
  board.on();
  board.arm(FlashCut{});
  EXPECT_EQ(board.deliver(update).status, DeliveryStatus::accepted);
  out.ops = board.ops_counted();
  for (std::uint64_t k = 1; k <= out.ops; ++k) {
    board.provision(factory);
    board.on();
    drain(board);
    board.arm(FlashCut{k, torn, k * 7919});
    auto r = board.deliver(update);
    EXPECT_EQ(r.status, DeliveryStatus::power_lost) << "k=" << k;
    EXPECT_FALSE(board.is_on());
    board.disarm();
    board.on();
    auto st = last_status(drain(board));
    if (!st) {
      ++out.bricked;
      continue;
    }
    if (st->digest != digest_of(factory) && st->digest != digest_of(update)) ++out.mixed;
    if (st->version == "1.0.0+1") {
      EXPECT_EQ(st->digest, digest_of(factory)) << "k=" << k;
    }
    if (st->version == "1.1.0+2") {
      EXPECT_EQ(st->digest, digest_of(update)) << "k=" << k;
      continue;
    }
    if (board.deliver(update).status != DeliveryStatus::accepted) ++out.not_updatable;
    st = last_status(drain(board));
    if (!st || st->version != "1.1.0+2") ++out.not_updatable;
  }
  return out;
}

TEST(PowerCutSweep, AbNeverBricksAtAnyCut) {
  for (bool torn : {false, true}) {
    auto o = sweep(small_config(), torn);
    EXPECT_GT(o.ops, 10u);
    EXPECT_EQ(o.bricked, 0u) << (torn ? "torn" : "clean");
    EXPECT_EQ(o.mixed, 0u);
    EXPECT_EQ(o.not_updatable, 0u);
  }
}

TEST(PowerCutSweep, InplaceOverwriteBricksAtSomeCut) {
  auto o = sweep(small_config().with(Defect::inplace_overwrite), false);
  EXPECT_GT(o.bricked, 0u);
  EXPECT_LT(o.bricked, o.ops) << "a cut after the download completes does not brick";
}

// ---------------------------------------------------------------------------- fast sweep == slow path

struct TrialRecord {
  DeliveryResult result;
  std::optional<FlashOp> fired;
  std::uint64_t ops = 0;
  std::vector<std::uint32_t> erases;
  Bytes flash;
  std::string console;
  Clock::duration clock{};
  Bytes flash_after_boot;
  std::string console_after_boot;
};

class SweepRig {
 public:
  explicit SweepRig(bool fast) : board_(config(fast), {release_key().public_key()}, &clock_) {}
  static BoardConfig config(bool fast) {
    auto c = small_config();
    c.fast_sweep = fast;
    return c;
  }
  TrialRecord trial(const Bytes& factory, const Bytes& img, const FlashCut& cut) {
    TrialRecord t;
    board_.provision(factory);
    board_.on();
    t.console = drain(board_);
    board_.arm(cut);
    t.result = board_.deliver(img);
    t.fired = board_.fired();
    t.ops = board_.ops_counted();
    t.erases = board_.erase_counts();
    t.flash.assign(board_.flash().bytes().begin(), board_.flash().bytes().end());
    t.console += drain(board_);
    t.clock = clock_.now();
    board_.on();
    t.console_after_boot = drain(board_);
    t.flash_after_boot.assign(board_.flash().bytes().begin(), board_.flash().bytes().end());
    return t;
  }
  VirtualBoard& board() { return board_; }

 private:
  ManualClock clock_;
  VirtualBoard board_;
};

void expect_same(const TrialRecord& fast, const TrialRecord& slow, const std::string& where) {
  EXPECT_EQ(fast.result.status, slow.result.status) << where;
  EXPECT_EQ(fast.result.detail, slow.result.detail) << where;
  EXPECT_EQ(fast.result.bytes_sent, slow.result.bytes_sent) << where;
  ASSERT_EQ(fast.fired.has_value(), slow.fired.has_value()) << where;
  if (fast.fired) {
    EXPECT_EQ(fast.fired->index, slow.fired->index) << where;
    EXPECT_EQ(fast.fired->kind, slow.fired->kind) << where;
    EXPECT_EQ(fast.fired->address, slow.fired->address) << where;
    EXPECT_EQ(fast.fired->length, slow.fired->length) << where;
    EXPECT_EQ(fast.fired->phase, slow.fired->phase) << where;
  }
  EXPECT_EQ(fast.ops, slow.ops) << where;
  EXPECT_EQ(fast.erases, slow.erases) << where;
  EXPECT_TRUE(fast.flash == slow.flash) << where << ": flash differs";
  EXPECT_EQ(fast.console, slow.console) << where;
  EXPECT_EQ(fast.clock, slow.clock) << where;
  EXPECT_TRUE(fast.flash_after_boot == slow.flash_after_boot) << where << ": flash after boot differs";
  EXPECT_EQ(fast.console_after_boot, slow.console_after_boot) << where;
}

TEST(FastSweep, MatchesTheSlowPathAtEveryCut) {
  SweepRig fast(true), slow(false);
  const auto factory = release("1.0.0+1", 1);
  // Self-test failure too: the recorded run then includes a revert.
  for (const auto& img :
       {release("1.1.0+2", 2, 9000), release("1.1.0+3", 2, 9000, image::kFlagSelfTestFails)}) {
    auto f0 = fast.trial(factory, img, FlashCut{});
    auto s0 = slow.trial(factory, img, FlashCut{});
    expect_same(f0, s0, "uncut");
    const std::uint64_t n = s0.ops;
    ASSERT_GT(n, 5u);
    const auto replayed_before = fast.board().stats().replayed_cuts;
    std::uint64_t trials = 0;
    for (std::uint64_t seed : {0u, 1u, 0xDEADBEEFu}) {
      // Forward, then backward (the cursor restarts).
      for (int pass = 0; pass < 2; ++pass) {
        for (std::uint64_t i = 1; i <= n; ++i) {
          const std::uint64_t k = pass == 0 ? i : n + 1 - i;
          FlashCut cut{k, seed != 0, seed};
          expect_same(fast.trial(factory, img, cut), slow.trial(factory, img, cut),
                      "k=" + std::to_string(k) + " seed=" + std::to_string(seed));
          ++trials;
        }
      }
    }
    EXPECT_EQ(fast.board().stats().replayed_cuts - replayed_before, trials) << "every cut took the fast path";
    EXPECT_EQ(slow.board().stats().replayed_cuts, 0u);
    // A cut beyond the last op never falls: both run the update through.
    expect_same(fast.trial(factory, img, FlashCut{n + 1, false, 0}),
                slow.trial(factory, img, FlashCut{n + 1, false, 0}), "beyond");
  }
}

TEST(FastSweep, OnlyFromAnUntouchedProvisionedState) {
  SweepRig rig(true);
  const auto factory = release("1.0.0+1", 1);
  const auto update = release("1.1.0+2", 2);
  rig.trial(factory, update, FlashCut{});
  EXPECT_EQ(rig.board().stats().recorded_deliveries, 1u);
  rig.trial(factory, update, FlashCut{3, false, 0});
  EXPECT_EQ(rig.board().stats().replayed_cuts, 1u);
  // A write at rest after provisioning: the recording no longer applies.
  rig.board().provision(factory);
  rig.board().flash().write_raw(rig.board().flash().geometry().slot_offset(1), Bytes(8, 0));
  rig.board().on();
  rig.board().arm(FlashCut{3, false, 0});
  EXPECT_EQ(rig.board().deliver(update).status, DeliveryStatus::power_lost);
  EXPECT_EQ(rig.board().stats().replayed_cuts, 1u);
  // Another image: no recording for it yet.
  rig.trial(factory, release("1.2.0+3", 3), FlashCut{3, false, 0});
  EXPECT_EQ(rig.board().stats().replayed_cuts, 1u);
}

// One full-size trial (1 MiB slots, a 1 MiB image) costs about a memcpy of
// the flash, not a download and a SHA-256 pass.
TEST(FastSweep, FullSizeTrialsHashAlmostNothing) {
  ManualClock clock;
  VirtualBoard board(BoardConfig{}, {release_key().public_key()}, &clock);
  const auto factory = release("1.0.0+1", 1, 1048400);
  const auto update = release("1.1.0+2", 2, 1048400);
  ASSERT_EQ(update.size(), 1u << 20);
  board.provision(factory);
  board.on();
  board.arm(FlashCut{});
  ASSERT_EQ(board.deliver(update).status, DeliveryStatus::accepted);
  const auto n = board.ops_counted();
  const auto hashed_before = board.stats().sha256_bytes;
  const auto start = std::chrono::steady_clock::now();
  std::uint64_t trials = 0;
  for (std::uint64_t k = 1; k <= n; k += 3, ++trials) {
    board.provision(factory);
    board.on();
    drain(board);
    board.arm(FlashCut{k, false, 0});
    ASSERT_EQ(board.deliver(update).status, DeliveryStatus::power_lost);
    board.on();
    ASSERT_TRUE(last_status(drain(board))) << "k=" << k;
  }
  const auto per_trial = (std::chrono::steady_clock::now() - start) / trials;
  const auto hashed = board.stats().sha256_bytes - hashed_before;
  EXPECT_EQ(board.stats().replayed_cuts, trials);
  EXPECT_LE(hashed, 2 * update.size()) << "slot verdicts are memoized across trials";

  const auto h0 = std::chrono::steady_clock::now();
  auto digest = crypto::sha256(update);
  const auto sha = std::chrono::steady_clock::now() - h0;
  EXPECT_NE(digest, crypto::Digest{});
  using us = std::chrono::microseconds;
  std::cout << "full-size sweep: " << n << " ops, " << trials << " trials, "
            << std::chrono::duration_cast<us>(per_trial).count()
            << " us per trial (SHA-256 of 1 MiB: " << std::chrono::duration_cast<us>(sha).count()
            << " us), hashed " << hashed << " bytes\n";
  ::testing::Test::RecordProperty("us_per_trial",
                                  std::to_string(std::chrono::duration_cast<us>(per_trial).count()));
}

}  // namespace
}  // namespace otarig::drivers::vboard
