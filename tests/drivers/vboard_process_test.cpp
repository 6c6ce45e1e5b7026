// otarig-vboard as a process board, end to end through the process drivers:
// provision the flash file, boot, update over HTTP through the fault proxy
// (and from a file URL), refuse a tampered image, cut power at a byte of the
// download / at a console line / at a time, reboot, read the STATUS line,
// and the flawed --no-verify board installing a tampered image.
#include <gtest/gtest.h>
#include <re2/re2.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>

#include "otarig/core/crypto.hpp"
#include "otarig/core/image.hpp"
#include "otarig/drivers/net/fault_proxy.hpp"
#include "otarig/drivers/net/http_server.hpp"
#include "otarig/drivers/process/board.hpp"
#include "otarig/drivers/process/cut.hpp"
#include "otarig/drivers/process/flash_file.hpp"
#include "otarig/drivers/process/register.hpp"

#ifndef OTARIG_VBOARD_EXE
#error "OTARIG_VBOARD_EXE names the otarig-vboard executable"
#endif

namespace otarig::drivers::process {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

struct Release {
  image::Bytes bytes;
  std::string digest;  ///< SHA-256 of header + payload, as STATUS reports it
};

Release make_release(const std::string& version, std::uint32_t counter, std::size_t payload_size = 200000,
                     const std::string& key_label = "otarig-release") {
  image::Header h;
  h.version = image::Version::parse(version);
  h.security_counter = counter;
  auto payload = image::synthetic_payload(payload_size, version);
  Release r;
  r.bytes = image::build(h, payload, crypto::Ed25519Key::test_key(key_label));
  r.digest = crypto::hex(
      crypto::sha256(std::span<const std::uint8_t>(r.bytes).first(image::kHeaderSize + payload_size)));
  return r;
}

struct Status {
  std::string slot, version, digest, counter, state, health;
};

std::string profile(const std::string& vboard_args, const std::string& serve, const std::string& tls,
                    const std::string& provision_mode, const std::string& command) {
  return std::string(
             "device:\n"
             "  kind: process\n"
             "  network: {tls: ") +
         tls +
         "}\n"
         "  provision: {format: otarig-vboard, file: '${storage}/flash.bin', slot_size: 256KiB, mode: " +
         provision_mode +
         "}\n"
         "power:\n"
         "  driver: process\n"
         "  command: ['" +
         OTARIG_VBOARD_EXE + "', --flash, '${storage}/flash.bin', --progress-every, '16384', --sync" + vboard_args +
         "]\n"
         "console: {driver: pty}\n"
         "link:\n"
         "  driver: console-command\n"
         "  accepted: 'ota: staged slot (?P<slot>\\w+), rebooting'\n"
         "  refused: 'ota: refused: (?P<reason>.*)'\n"
         "  settled: '^STATUS '\n"
         "  progress: 'ota: received (?P<bytes>\\d+) bytes'\n"
         "  timeout: 20s\n"
         "  serve: " +
         serve + "\n" + (command.empty() ? std::string() : "  command: \"" + command + "\\n\"\n");
}

class VboardProcess : public ::testing::Test {
 protected:
  void build(const std::string& vboard_args = "", const std::string& serve = "http",
             const std::string& tls = "off", const std::string& provision_mode = "ab",
             const std::string& command = "") {
    register_process_drivers(registry_);
    root_ = Config::load_string(profile(vboard_args, serve, tls, provision_mode, command), "vboard-test.yaml");
    ctx_.clock = &clock_;
    ctx_.board_name = "vboard-test";
    ctx_.trusted_keys = {crypto::Ed25519Key::test_key("otarig-release").public_key()};
    (*registry_.device("process"))(root_.at("device"), ctx_, parts_);
    (*registry_.power("process"))(root_.at("power"), ctx_, parts_);
    (*registry_.console("pty"))(root_.at("console"), ctx_, parts_);
    (*registry_.link("console-command"))(root_.at("link"), ctx_, parts_);
    cuts_ = dynamic_cast<CutProtocol*>(parts_.link.get());
    ASSERT_TRUE(cuts_) << "the link is the board's CutProtocol";
  }

  /// Asks for status until a STATUS line comes (or 10 s pass); nullopt when none.
  std::optional<Status> status() {
    static const re2::RE2 re(
        R"(STATUS slot=(\w+) version=(\S+) digest=([0-9a-f]{64}) counter=(\d+) state=(\w+) health=(\w+))");
    // What is already there (an answer to an earlier question) is old news.
    for (std::string old = parts_.console->read(50ms); !old.empty(); old = parts_.console->read(50ms))
      transcript_ += old;
    auto deadline = Steady::now() + 10s;
    std::string buffer;
    auto next_ask = Steady::now();
    auto& console = dynamic_cast<PtyConsole&>(*parts_.console);
    while (Steady::now() < deadline && !(console.at_eof() && buffer.empty())) {
      if (Steady::now() >= next_ask) {
        parts_.console->write("status\n");
        next_ask = Steady::now() + 300ms;
      }
      auto got = parts_.console->read(100ms);
      transcript_ += got;
      buffer += got;
      Status s;
      std::size_t nl;
      while ((nl = buffer.find('\n')) != std::string::npos) {
        std::string line = buffer.substr(0, nl);
        buffer.erase(0, nl + 1);
        if (re2::RE2::PartialMatch(line, re, &s.slot, &s.version, &s.digest, &s.counter, &s.state, &s.health))
          return s;
      }
    }
    return std::nullopt;
  }

  /// Reads the console until a line matches `pattern` (or 10 s pass); the line, or "".
  std::string wait_for(const std::string& pattern) {
    const re2::RE2 re(pattern);
    std::string buffer;
    for (auto deadline = Steady::now() + 10s; Steady::now() < deadline;) {
      auto got = parts_.console->read(100ms);
      transcript_ += got;
      buffer += got;
      for (std::size_t nl; (nl = buffer.find('\n')) != std::string::npos;) {
        std::string line = buffer.substr(0, nl);
        buffer.erase(0, nl + 1);
        if (re2::RE2::PartialMatch(line, re)) return line;
      }
    }
    return {};
  }

  /// What the console holds now (the link leaves what it read readable).
  void drain() {
    for (std::string old = parts_.console->read(50ms); !old.empty(); old = parts_.console->read(50ms))
      transcript_ += old;
  }

  void build_feed(const std::string& vboard_args = "") { build(vboard_args, "http", "off", "ab", "update-feed ${feed_url}"); }
  ReleaseFeedProtocol& feed() { return dynamic_cast<ReleaseFeedProtocol&>(*parts_.link); }
  net::UpdateServer& server() { return *find_process_device(parts_)->server(); }

  void boot_on(const Release& r) {
    parts_.provision->provision(r.bytes);
    parts_.power->on();
    auto s = status();
    ASSERT_TRUE(s) << transcript_;
    ASSERT_EQ(s->slot, "A");
    ASSERT_EQ(s->digest, r.digest);
  }

  DriverRegistry registry_;
  SteadyClock clock_;
  BindContext ctx_;
  Config root_ = Config::load_string("{}", "empty");
  BoardParts parts_;
  CutProtocol* cuts_ = nullptr;
  std::string transcript_;
  Release factory_ = make_release("1.0.0+1", 1);
  Release update_ = make_release("1.1.0+2", 2);
};

TEST_F(VboardProcess, BootsFromTheProvisionedFlashFile) {
  build();
  boot_on(factory_);
  auto s = status();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->version, "1.0.0+1");
  EXPECT_EQ(s->counter, "1");
  EXPECT_EQ(s->state, "confirmed");
  EXPECT_EQ(s->health, "ok");
  EXPECT_NE(transcript_.find("otarig-vboard bootloader 1.0 mode=ab"), std::string::npos) << transcript_;
}

TEST_F(VboardProcess, UpdatesOverHttpThroughTheProxyAndKeepsItAcrossPowerCycles) {
  build();
  boot_on(factory_);
  auto r = parts_.link->deliver(update_.bytes);
  EXPECT_EQ(r.status, DeliveryStatus::accepted) << r.detail;
  EXPECT_EQ(r.bytes_sent, update_.bytes.size());
  auto s = status();
  ASSERT_TRUE(s) << transcript_;
  EXPECT_EQ(s->slot, "B");
  EXPECT_EQ(s->digest, update_.digest);
  EXPECT_EQ(s->state, "confirmed");
  EXPECT_EQ(s->counter, "2");
  EXPECT_NE(transcript_.find("ota: downloading http://127.0.0.1:"), std::string::npos) << transcript_;
  EXPECT_NE(transcript_.find("ota: staged slot B, rebooting"), std::string::npos)
      << "the link kept it for the transcript";
  // The download went through the proxy, and the server logged it.
  auto device = find_process_device(parts_);
  ASSERT_TRUE(device && device->proxy() && device->server());
  EXPECT_GE(device->proxy()->stats().bytes_down, update_.bytes.size());
  parts_.power->cycle(10ms);
  s = status();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->slot, "B") << "the flash file kept the update";
  EXPECT_EQ(s->digest, update_.digest);
}

TEST_F(VboardProcess, UpdatesFromAFileUrl) {
  build("", "file");
  boot_on(factory_);
  auto r = parts_.link->deliver(update_.bytes);
  EXPECT_EQ(r.status, DeliveryStatus::accepted) << r.detail;
  auto s = status();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->digest, update_.digest);
  EXPECT_NE(transcript_.find("ota: downloading file:"), std::string::npos);
}

TEST_F(VboardProcess, UpdatesOverMutualTlsAndCutsAtAByteOfTheImageInsideTls) {
  build("", "http", "mutual");
  boot_on(factory_);
  auto device = find_process_device(parts_);
  ASSERT_EQ(device->update_url().rfind("https://127.0.0.1:", 0), 0u) << device->update_url();
  EXPECT_TRUE(std::filesystem::exists(device->storage() / "tls" / "client.pem"));
  cuts_->arm(ProcessCut::at_byte(50000));
  auto r = parts_.link->deliver(update_.bytes);
  ASSERT_EQ(r.status, DeliveryStatus::power_lost) << r.detail;
  // The update server held the response at image byte 50000, in plaintext.
  EXPECT_NE(r.detail.find("power cut at byte 50000 of the image: the update server had sent every byte before it "
                          "and none from it"),
            std::string::npos)
      << r.detail;
  EXPECT_NE(r.detail.find("over TLS"), std::string::npos) << r.detail;
  EXPECT_EQ(r.bytes_sent, 50000u);
  cuts_->disarm();
  parts_.power->on();
  auto s = status();
  ASSERT_TRUE(s) << transcript_;
  EXPECT_EQ(s->digest, factory_.digest);
  r = parts_.link->deliver(update_.bytes);
  EXPECT_EQ(r.status, DeliveryStatus::accepted) << r.detail << "\n" << transcript_;
  s = status();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->digest, update_.digest);
  EXPECT_NE(transcript_.find("ota: downloading https://127.0.0.1:"), std::string::npos);
}

TEST_F(VboardProcess, RefusesATamperedImageAndStaysUp) {
  build();
  boot_on(factory_);
  auto bad = image::tamper::flip_bit(update_.bytes, image::kHeaderSize + 1000, 3);
  auto r = parts_.link->deliver(bad);
  EXPECT_EQ(r.status, DeliveryStatus::refused);
  EXPECT_NE(r.detail.find("hash mismatch"), std::string::npos) << r.detail;
  auto s = status();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->digest, factory_.digest);
}

TEST_F(VboardProcess, CutAtAByteOfTheDownloadThenRecoversAndUpdates) {
  build();
  boot_on(factory_);
  const std::uint64_t b = 100000;
  cuts_->arm(ProcessCut::at_byte(b));
  auto r = parts_.link->deliver(update_.bytes);
  ASSERT_EQ(r.status, DeliveryStatus::power_lost) << r.detail;
  EXPECT_EQ(r.bytes_sent, b);
  auto fired = cuts_->fired();
  ASSERT_TRUE(fired);
  EXPECT_NE(fired->detail.find("power cut at byte 100000 of the image: the update server had sent every byte "
                               "before it and none from it (GET /deliveries/1/image.bin"),
            std::string::npos)
      << fired->detail;
  EXPECT_EQ(fired->bytes, b);
  EXPECT_FALSE(parts_.power->is_on());
  cuts_->disarm();
  parts_.power->on();
  auto s = status();
  ASSERT_TRUE(s) << transcript_;
  // The device never got past byte b: any progress it reported is below it
  // (it may not have had the time to report any before it died).
  EXPECT_EQ(transcript_.find("ota: staged"), std::string::npos) << transcript_;
  re2::StringPiece rest(transcript_);
  std::uint64_t received = 0;
  static const re2::RE2 progress(R"(ota: received (\d+) bytes)");
  while (re2::RE2::FindAndConsume(&rest, progress, &received)) EXPECT_LE(received, b);
  EXPECT_EQ(s->slot, "A");
  EXPECT_EQ(s->digest, factory_.digest);
  // Still updatable.
  r = parts_.link->deliver(update_.bytes);
  EXPECT_EQ(r.status, DeliveryStatus::accepted) << r.detail;
  s = status();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->digest, update_.digest);
}

TEST_F(VboardProcess, CutAtAConsoleLine) {
  build();
  boot_on(factory_);
  // The flash writes take the device a few milliseconds; the cut falls when
  // the rig has read the line, wherever the device has got to by then.
  cuts_->arm(ProcessCut::on_console("ota: receiving \\d+ bytes into slot B"));
  auto r = parts_.link->deliver(update_.bytes);
  ASSERT_EQ(r.status, DeliveryStatus::power_lost) << r.detail;
  auto fired = cuts_->fired();
  ASSERT_TRUE(fired);
  EXPECT_NE(fired->detail.find("0 ms after console line 'ota: receiving"), std::string::npos)
      << fired->detail;
  EXPECT_EQ(r.detail, fired->detail);
  cuts_->disarm();
  parts_.power->on();
  auto s = status();
  ASSERT_TRUE(s) << transcript_;
  EXPECT_TRUE(s->digest == factory_.digest || s->digest == update_.digest) << "A/B: old or new, never a mix";
  // A cut right at the trial boot: the trial was never confirmed, so the
  // next boot reverts to slot A.
  parts_.provision->provision(factory_.bytes);
  parts_.power->on();
  ASSERT_TRUE(status());
  cuts_->arm(ProcessCut::on_console("^trial boot slot B"));
  r = parts_.link->deliver(update_.bytes);
  ASSERT_EQ(r.status, DeliveryStatus::power_lost) << r.detail;
  EXPECT_NE(r.detail.find("after the updater accepted"), std::string::npos) << r.detail;
  cuts_->disarm();
  parts_.power->on();
  s = status();
  ASSERT_TRUE(s) << transcript_;
  EXPECT_TRUE(s->digest == factory_.digest || s->digest == update_.digest) << "atomic";
}

TEST_F(VboardProcess, CutAtATime) {
  build();
  boot_on(factory_);
  cuts_->arm(ProcessCut::after(0ms));
  auto r = parts_.link->deliver(update_.bytes);
  ASSERT_EQ(r.status, DeliveryStatus::power_lost) << r.detail;
  EXPECT_NE(cuts_->fired()->detail.find("0 ms after the update command"), std::string::npos);
  cuts_->disarm();
  parts_.power->on();
  auto s = status();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->digest, factory_.digest);
}

TEST_F(VboardProcess, RunsTheVirtualBoardsOtherModes) {
  build(", --mode, swap-scratch", "http", "off", "swap-scratch");
  boot_on(factory_);
  auto r = parts_.link->deliver(update_.bytes);
  EXPECT_EQ(r.status, DeliveryStatus::accepted) << r.detail;
  auto s = status();
  ASSERT_TRUE(s) << transcript_;
  EXPECT_EQ(s->digest, update_.digest);
  EXPECT_NE(transcript_.find("mode=swap-scratch"), std::string::npos);
}

TEST_F(VboardProcess, AFlashMadeForAnotherModeStopsTheDeviceNotTheBench) {
  build(", --mode, swap-scratch", "http", "off", "ab");
  parts_.provision->provision(factory_.bytes);
  parts_.power->on();
  std::string out;
  auto deadline = Steady::now() + 5s;
  auto& console = dynamic_cast<PtyConsole&>(*parts_.console);
  while (!console.at_eof() && Steady::now() < deadline) out += console.read(100ms);
  EXPECT_TRUE(console.at_eof());
  EXPECT_NE(out.find("made for another layout"), std::string::npos) << out;
  auto r = parts_.link->deliver(update_.bytes);
  EXPECT_EQ(r.status, DeliveryStatus::unreachable);
  EXPECT_NE(r.detail.find("exit status 2"), std::string::npos) << r.detail;
}

TEST_F(VboardProcess, DeliveringToAnOffDeviceIsUnreachable) {
  build();
  parts_.provision->provision(factory_.bytes);
  auto r = parts_.link->deliver(update_.bytes);
  EXPECT_EQ(r.status, DeliveryStatus::unreachable);
}

TEST_F(VboardProcess, NetworkFaultsCorruptTheDownloadInTransit) {
  build();
  boot_on(factory_);
  auto* faults = dynamic_cast<NetworkFaultProtocol*>(parts_.link.get());
  ASSERT_TRUE(faults);
  faults->set_network_faults("down:corrupt@offset=5000,count=4", 7);
  auto r = parts_.link->deliver(update_.bytes);
  EXPECT_EQ(r.status, DeliveryStatus::refused) << r.detail;
  auto events = faults->take_network_events();
  EXPECT_FALSE(events.empty());
  faults->set_network_faults("", 0);
  auto s = status();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->digest, factory_.digest);
}

TEST_F(VboardProcess, TheNoVerifyFlawInstallsATamperedImage) {
  build(", --no-verify");
  boot_on(factory_);
  auto bad = image::tamper::flip_bit(update_.bytes, image::kHeaderSize + 1000, 3);
  const auto bad_digest =
      crypto::hex(crypto::sha256(std::span<const std::uint8_t>(bad).first(bad.size() - image::kTrailerSize)));
  auto r = parts_.link->deliver(bad);
  EXPECT_EQ(r.status, DeliveryStatus::accepted) << r.detail;
  auto s = status();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->digest, bad_digest) << "the flawed board runs the tampered image";
}

TEST_F(VboardProcess, FollowsTheReleaseFeedAndRefusesAnOlderReleaseItNames) {
  build_feed();
  ASSERT_TRUE(feed().follows_feed());
  boot_on(factory_);
  auto r = parts_.link->deliver(update_.bytes);
  EXPECT_EQ(r.status, DeliveryStatus::accepted) << r.detail;
  EXPECT_EQ(server().latest(), "delivery-1") << "each delivery's manifest is the feed's latest";
  drain();
  EXPECT_NE(transcript_.find("ota: checking feed http://127.0.0.1:"), std::string::npos) << transcript_;
  EXPECT_NE(transcript_.find("/manifest.json"), std::string::npos) << transcript_;
  EXPECT_NE(transcript_.find("ota: feed offers delivery-1 1.1.0+2 (counter 2, " +
                             std::to_string(update_.bytes.size()) + " bytes)"),
            std::string::npos)
      << transcript_;
  EXPECT_NE(transcript_.find("/deliveries/1/image.bin"), std::string::npos) << "the image the manifest names";
  auto s = status();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->digest, update_.digest);

  // A frozen mirror: the feed answers with the factory release's manifest.
  feed().serve_as_release("factory");
  r = parts_.link->deliver(factory_.bytes);
  EXPECT_EQ(r.status, DeliveryStatus::refused) << r.detail;
  EXPECT_EQ(r.detail, "the feed offers 1.0.0+1, older than the running 1.1.0+2");
  EXPECT_EQ(server().latest(), "factory");
  bool asked_for_image = false;
  for (const auto& req : server().request_log()) asked_for_image |= req.target == "/images/factory.bin";
  EXPECT_FALSE(asked_for_image) << "refused on the manifest, before any image byte";
  s = status();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->digest, update_.digest);

  // The next delivery makes its own manifest latest again.
  auto next = make_release("1.2.0+3", 3);
  r = parts_.link->deliver(next.bytes);
  EXPECT_EQ(r.status, DeliveryStatus::accepted) << r.detail;
  EXPECT_EQ(server().latest(), "delivery-3");
  EXPECT_THROW(feed().serve_as_release("no/such"), InputError);
}

TEST_F(VboardProcess, TheFeedVersionCheckFlawInstallsWhatTheFeedNames) {
  build_feed(", --no-feed-version-check, --defect, no-rollback-check");
  boot_on(factory_);
  ASSERT_EQ(parts_.link->deliver(update_.bytes).status, DeliveryStatus::accepted);
  feed().serve_as_release("factory");
  auto r = parts_.link->deliver(factory_.bytes);
  EXPECT_EQ(r.status, DeliveryStatus::accepted) << r.detail;
  auto s = status();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->digest, factory_.digest) << "back on the older release";
}

TEST_F(VboardProcess, TheAgentStillRefusesARollbackTheFeedCheckLetsThrough) {
  build_feed(", --no-feed-version-check");
  boot_on(factory_);
  ASSERT_EQ(parts_.link->deliver(update_.bytes).status, DeliveryStatus::accepted);
  feed().serve_as_release("factory");
  auto r = parts_.link->deliver(factory_.bytes);
  EXPECT_EQ(r.status, DeliveryStatus::refused) << r.detail;
  drain();
  EXPECT_NE(transcript_.find("/images/factory.bin"), std::string::npos) << "downloaded, then refused by the agent";
}

TEST_F(VboardProcess, AFeedDeviceRefusesAnImageThatDoesNotMatchItsManifestAndABadManifest) {
  build_feed();
  boot_on(factory_);
  const auto base = find_process_device(parts_)->expand("${update_url}");
  // The manifest names the update; the server has other bytes at its URL.
  server().add_release(net::Release{"swapped", "1.1.0+2", 2, update_.bytes});
  server().put("/images/swapped.bin", make_release("1.1.0+2", 2, 200001).bytes);
  server().set_latest("swapped");
  parts_.console->write("update-feed " + base + "/manifest.json\n");
  auto line = wait_for("ota: refused: ");
  EXPECT_NE(line.find("the image does not match the feed's manifest"), std::string::npos) << transcript_;
  // Malformed metadata is refused with what is wrong in it.
  server().put("/manifests/broken.json", std::vector<std::uint8_t>{'{', '"', 'n', 'a', 'm', 'e', '"', ':', '1', '}'});
  server().set_latest("broken");
  parts_.console->write("update-feed " + base + "/manifest.json\n");
  line = wait_for("ota: refused: ");
  EXPECT_NE(line.find("the feed's manifest"), std::string::npos) << line;
  // No latest release: the feed answers 404.
  server().clear_latest();
  parts_.console->write("update-feed " + base + "/manifest.json\n");
  line = wait_for("ota: refused: ");
  EXPECT_NE(line.find("fetching the feed failed"), std::string::npos) << line;
  auto s = status();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->digest, factory_.digest) << "nothing installed, still up";
}

TEST_F(VboardProcess, ADamagedHeaderIsDescribedAsTheReleaseItStandsFor) {
  build_feed();
  boot_on(factory_);
  auto bad = update_.bytes;
  bad[0] ^= 0xFF;  // the magic: no header says what this is
  feed().describe_next("1.1.0+2", 2);
  auto r = parts_.link->deliver(bad);
  EXPECT_EQ(r.status, DeliveryStatus::refused) << r.detail;
  drain();
  EXPECT_NE(transcript_.find("ota: feed offers delivery-1 1.1.0+2 (counter 2"), std::string::npos) << transcript_;
  EXPECT_NE(transcript_.find("/deliveries/1/image.bin"), std::string::npos) << "downloaded, refused by the agent";
  // Without a description the feed has nothing to offer.
  r = parts_.link->deliver(bad);
  EXPECT_EQ(r.status, DeliveryStatus::refused) << r.detail;
  EXPECT_NE(r.detail.find("fetching the feed failed"), std::string::npos) << r.detail;
}

TEST_F(VboardProcess, ConnectionNumbersOfNetworkFaultsCountTheImageDownloadOnAFeedBoard) {
  build_feed();
  boot_on(factory_);
  auto* faults = dynamic_cast<NetworkFaultProtocol*>(parts_.link.get());
  ASSERT_TRUE(faults);
  faults->set_network_faults("conn=1:down:reset@b=50000", 3);
  auto r = parts_.link->deliver(update_.bytes);
  EXPECT_EQ(r.status, DeliveryStatus::accepted) << r.detail;
  drain();
  EXPECT_NE(transcript_.find("resuming at byte"), std::string::npos) << transcript_;
  auto events = faults->take_network_events();
  faults->set_network_faults("", 0);
  bool reset_on_second = false;
  for (const auto& e : events) {
    auto j = nlohmann::json::parse(e);
    if (j.value("kind", "") == "reset") {
      EXPECT_EQ(j.at("connection").get<int>(), 2) << "connection 1 fetched the manifest";
      reset_on_second = true;
    }
  }
  EXPECT_TRUE(reset_on_second);
}

TEST(LinkConfigFeed, FeedUrlsNeedHttp) {
  auto cfg = Config::load_string("driver: console-command\ncommand: \"update-feed ${feed_url}\\n\"\n"
                                 "accepted: a\nrefused: b\nserve: file\n",
                                 "link.yaml");
  try {
    LinkConfig::from_config(cfg);
    FAIL() << "accepted ${feed_url} with serve: file";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("link.yaml:2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("serve: http"), std::string::npos) << e.what();
  }
  auto bad = Config::load_string("driver: console-command\naccepted: a\nrefused: b\nfeed_connections: -1\n",
                                 "link.yaml");
  EXPECT_THROW(LinkConfig::from_config(bad), InputError);
}

TEST(FlashFile, ProvisionedFlashRoundTripsAndRejectsForeignFiles) {
  auto dir = std::filesystem::temp_directory_path() / ("otarig-flash-file-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  vboard::FlashGeometry g;
  g.slot_size = 64 * 1024;
  auto cfg = vboard_config("ab", {}, 4096, g, "test");
  auto img = make_release("1.0.0", 3, 1000).bytes;
  auto flash = provisioned_flash(cfg, img);
  write_flash_file(dir / "flash.bin", cfg.layout(), flash);
  auto f = FlashFile::open(dir / "flash.bin");
  EXPECT_TRUE(same_layout(f.geometry(), cfg.layout()));
  EXPECT_EQ(f.read_all(), flash);
  std::vector<std::uint8_t> zeros(8, 0);
  f.write(g.slot_offset(1), zeros, false);
  EXPECT_EQ(FlashFile::open(dir / "flash.bin").read_all()[g.slot_offset(1)], 0);
  // A swap mode's layout carries its swap area through the header.
  auto swap = vboard_config("swap-scratch", {}, 4096, g, "test");
  ASSERT_GT(swap.layout().swap_sectors, 0u);
  write_flash_file(dir / "swap.bin", swap.layout(), provisioned_flash(swap, img));
  EXPECT_TRUE(same_layout(FlashFile::open(dir / "swap.bin").geometry(), swap.layout()));
  EXPECT_FALSE(same_layout(swap.layout(), cfg.layout()));
  {
    std::ofstream out(dir / "junk.bin");
    out << std::string(5000, 'x');
  }
  EXPECT_THROW(FlashFile::open(dir / "junk.bin"), InputError);
  EXPECT_THROW(provisioned_flash(cfg, make_release("1.0.0", 1, 70000).bytes), InputError) << "does not fit";
  EXPECT_THROW(vboard_config("sideways", {}, 4096, g, "test"), InputError);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace otarig::drivers::process
