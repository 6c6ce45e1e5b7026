// The catalog of flawed devices (boards/README.md): each defect, in the mode
// it is modelled in, shows its flaw in a short driver-level story, and the
// same story on the reference board (no defect) does not.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <optional>
#include <regex>
#include <string>

#include "otarig/core/delta.hpp"
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

Bytes release(const char* version, std::uint32_t counter, std::uint32_t flags = 0) {
  image::Header h;
  h.version = image::Version::parse(version);
  h.security_counter = counter;
  h.flags = flags;
  return image::build(h, image::synthetic_payload(12000, "defects"), release_key());
}

std::string digest_of(const Bytes& img) { return crypto::hex(crypto::sha256(image::parse(img).signed_part)); }

struct Status {
  std::string version, digest;
  unsigned counter = 0;
  std::string state, health;
};

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
    static const std::regex re(R"(STATUS slot=\w+ version=(\S+) digest=([0-9a-f]{64}) counter=(\d+) state=(\w+) health=(\w+))");
    const auto text = drain();
    std::optional<Status> found;
    for (std::sregex_iterator it(text.begin(), text.end(), re), end; it != end; ++it)
      found = Status{(*it)[1], (*it)[2], static_cast<unsigned>(std::stoul((*it)[3])), (*it)[4], (*it)[5]};
    return found;
  }
  void start(const Bytes& img) {
    board.provision(img);
    board.on();
    drain();
  }
  void power_cycle() {
    board.off();
    board.on();
  }
  ManualClock clock;
  VirtualBoard board;
};

const Bytes kFactory = release("1.0.0+1", 1);
const Bytes kUpdate = release("1.1.0+2", 2);
const Bytes kNext = release("1.2.0+3", 3);
const Bytes kFailing = release("1.1.0+2", 2, image::kFlagSelfTestFails);

// Whether the device, after the story, runs something it must not.
using Story = std::function<bool(Device&)>;

bool runs_delivered(Device& d, const Bytes& hostile) {
  auto r = d.board.deliver(hostile);
  if (r.status != DeliveryStatus::accepted) return false;
  d.power_cycle();
  auto st = d.status();
  return st && st->digest == digest_of(hostile);
}

bool boots_rotten_image(Device& d) {
  d.start(kFactory);
  d.board.deliver(kUpdate);
  d.board.deliver(kUpdate);
  // Flip bits of the running image's payload while the device is off.
  d.board.flip_at_rest(StorageFlip{true, 3, 11});
  d.board.on();
  auto st = d.status();
  return !st || st->digest != digest_of(kUpdate);
}

bool failing_image_stays(Device& d) {
  d.start(kFactory);
  d.board.deliver(kFailing);
  d.power_cycle();
  auto st = d.status();
  return !st || st->health != "ok";
}

struct Case {
  Defect defect;
  BootMode mode;
  Story story;
};

class Flaws : public ::testing::TestWithParam<Case> {};

BoardConfig config(BootMode mode) {
  BoardConfig c;
  c.mode = mode;
  c.flash.slot_size = 32 * 1024;
  c.chunk_size = 4096;
  return c;
}

TEST_P(Flaws, ShowOnTheFlawedBoardOnly) {
  const auto& c = GetParam();
  Device flawed(config(c.mode).with(c.defect));
  EXPECT_TRUE(c.story(flawed)) << to_string(c.defect) << ": the flaw did not show";
  Device reference(config(c.mode));
  EXPECT_FALSE(c.story(reference)) << to_string(c.defect) << ": the reference board shows it too";
}

INSTANTIATE_TEST_SUITE_P(
    Catalog, Flaws,
    ::testing::Values(
        Case{Defect::no_signature_check, BootMode::ab,
             [](Device& d) {
               d.start(kFactory);
               return runs_delivered(d, image::tamper::flip_bit(kUpdate, 5000, 2));
             }},
        Case{Defect::hash_only, BootMode::ab,
             [](Device& d) {
               d.start(kFactory);
               // The digest is checked (a flipped payload bit is refused), the signature is not.
               if (d.board.deliver(image::tamper::flip_bit(kUpdate, 5000, 2)).status != DeliveryStatus::refused)
                 return true;
               return runs_delivered(d, image::tamper::strip_signature(kUpdate));
             }},
        Case{Defect::any_key, BootMode::ab,
             [](Device& d) {
               d.start(kFactory);
               // An unsigned image is still refused; one signed by any key is not.
               if (d.board.deliver(image::tamper::strip_signature(kUpdate)).status != DeliveryStatus::refused)
                 return true;
               return runs_delivered(d, image::tamper::resign(kUpdate, crypto::Ed25519Key::test_key("stranger")));
             }},
        Case{Defect::trusts_stated_digest, BootMode::ab,
             [](Device& d) {
               d.start(kFactory);
               // An unsigned image is still refused; a flipped payload bit under a
               // signature over the digest the trailer states is not.
               if (d.board.deliver(image::tamper::strip_signature(kUpdate)).status != DeliveryStatus::refused)
                 return true;
               return runs_delivered(d, image::tamper::flip_bit(kUpdate, 5000, 2));
             }},
        Case{Defect::verify_on_stage_only, BootMode::ab, boots_rotten_image},
        Case{Defect::copy_unverified, BootMode::overwrite_only, boots_rotten_image},
        Case{Defect::no_revert, BootMode::ab, failing_image_stays},
        Case{Defect::confirm_before_selftest, BootMode::ab, failing_image_stays},
        Case{Defect::counter_raised_on_stage, BootMode::ab, failing_image_stays},
        Case{Defect::counter_not_persisted, BootMode::ab,
             [](Device& d) {
               d.start(kFactory);
               d.board.deliver(kUpdate);
               const auto before = d.status();
               d.power_cycle();
               const auto after = d.status();
               return before && after && after->counter < before->counter;
             }},
        Case{Defect::version_ignores_major, BootMode::ab,
             [](Device& d) {
               d.start(kFactory);
               d.board.deliver(kUpdate);
               // Older only in its major number, same security counter.
               return runs_delivered(d, release("0.255.0+2", 2));
             }},
        Case{Defect::version_string_compare, BootMode::ab,
             [](Device& d) {
               d.start(kFactory);
               d.board.deliver(release("1.1.10+2", 2));
               // Older by its patch number, but "1.1.9" sorts after "1.1.10" as text.
               return runs_delivered(d, release("1.1.9+2", 2));
             }},
        Case{Defect::wrong_write_order, BootMode::ab,
             [](Device& d) {
               d.start(kFactory);
               d.board.arm(FlashCut{3, false, 0});  // inside the download
               d.board.deliver(kUpdate);
               d.board.disarm();
               d.board.on();
               return !d.status();
             }},
        Case{Defect::stale_trailer, BootMode::swap_scratch,
             [](Device& d) {
               d.start(kFactory);
               d.board.deliver(kUpdate);
               d.board.deliver(kNext);
               auto st = d.status();
               return !st || st->digest != digest_of(kNext);
             }},
        Case{Defect::stale_trailer, BootMode::swap_move,
             [](Device& d) {
               d.start(kFactory);
               d.board.deliver(kUpdate);
               d.board.deliver(kNext);
               auto st = d.status();
               return !st || st->digest != digest_of(kNext);
             }},
        Case{Defect::no_rollback_check, BootMode::direct_xip,
             [](Device& d) {
               d.start(kFactory);
               d.board.deliver(kUpdate);
               // The agent installs the older release; direct-xip still boots the higher version.
               return d.board.deliver(kFactory).status == DeliveryStatus::accepted;
             }},
        Case{Defect::delta_in_place, BootMode::ab,
             [](Device& d) {
               d.start(kFactory);
               d.board.arm(FlashCut{3, false, 0});  // inside the patching
               d.board.deliver(image::delta::make(kFactory, kUpdate));
               d.board.disarm();
               d.board.on();
               return !d.status();
             }}),
    [](const auto& param_info) {
      std::string s = std::string(to_string(param_info.param.defect)) + "_" + to_string(param_info.param.mode);
      for (auto& ch : s)
        if (ch == '-') ch = '_';
      return s;
    });

Bytes release_for(const char* device_type, const char* version, std::uint32_t counter) {
  image::Header h;
  h.version = image::Version::parse(version);
  h.security_counter = counter;
  h.device_type = image::device_type_id(device_type);
  return image::build(h, image::synthetic_payload(12000, "defects"), release_key());
}

BoardConfig typed(BoardConfig c, const char* type) {
  c.device_type_name = type;
  c.device_type = image::device_type_id(type);
  return c;
}

// A release validly signed for another device type is refused by the agent;
// ignores-device-type installs and boots it. Images for the device's own
// type, or for any device, install on both.
TEST(DeviceType, AnImageForAnotherDeviceIsRefusedUnlessTheDeviceIgnoresTheType) {
  for (auto mode : {BootMode::ab, BootMode::swap_scratch, BootMode::overwrite_only, BootMode::direct_xip}) {
    Device reference(typed(config(mode), "acme-gw"));
    reference.start(release_for("acme-gw", "1.0.0+1", 1));
    const auto r = reference.board.deliver(release_for("acme-other", "1.1.0+2", 2));
    EXPECT_EQ(r.status, DeliveryStatus::refused) << to_string(mode);
    EXPECT_NE(r.detail.find("incompatible: the image is for device type"), std::string::npos) << r.detail;
    EXPECT_NE(r.detail.find("this device is acme-gw"), std::string::npos) << r.detail;
    EXPECT_EQ(reference.status()->version, "1.0.0+1");
    EXPECT_TRUE(runs_delivered(reference, release_for("acme-gw", "1.1.0+2", 2))) << to_string(mode);
    EXPECT_TRUE(runs_delivered(reference, release("1.2.0+3", 3))) << "an image for any device";

    Device flawed(typed(config(mode).with(Defect::ignores_device_type), "acme-gw"));
    flawed.start(release_for("acme-gw", "1.0.0+1", 1));
    EXPECT_TRUE(runs_delivered(flawed, release_for("acme-other", "1.1.0+2", 2))) << to_string(mode);
  }
}

// The bootloader checks the type too: an image for another device that sits
// in the slot it boots is not booted.
TEST(DeviceType, TheBootloaderDoesNotBootAnImageForAnotherDevice) {
  Device d(typed(config(BootMode::ab), "acme-gw"));
  d.board.provision(release_for("acme-other", "1.0.0+1", 1));
  d.board.on();
  const auto out = d.drain();
  EXPECT_FALSE(d.status()) << out;
  EXPECT_NE(out.find("BOOT FAILED"), std::string::npos) << out;
}

TEST(DefectCatalog, EveryDefectIsImplementedAndNamed) {
  for (std::size_t i = 0; i < kDefectCount; ++i) {
    const auto d = static_cast<Defect>(i);
    EXPECT_TRUE(is_implemented(d)) << to_string(d);
    EXPECT_EQ(defect_from_string(to_string(d)), d);
  }
}

TEST(DefectCatalog, ADefectOutsideItsModeIsRefused) {
  EXPECT_NE(config(BootMode::ab).with(Defect::stale_trailer).problem().find("modelled in mode"), std::string::npos);
  EXPECT_NE(config(BootMode::swap_move).with(Defect::copy_unverified).problem().find("overwrite-only"),
            std::string::npos);
  EXPECT_EQ(config(BootMode::swap_move).with(Defect::stale_trailer).problem(), "");
}

}  // namespace
}  // namespace otarig::drivers::vboard
