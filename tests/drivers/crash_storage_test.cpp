// A process board's storage under the crash model (docs/crash-model.md,
// docs/process-boards.md "Power loss"): the recording layer is mounted for
// the device, which sees an ordinary folder; a power-off drops what no
// barrier made durable; a kept recording rebuilds a crash state
// deterministically; the profile's power_loss; no mount outlives the board.
// And the otarig-vboard profiles by hand: every crash state of a clean update
// of the correct vboard-ab boots the old or the new image, and each flawed
// storage board has a crash state that does not.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <re2/re2.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <sstream>

#include "otarig/core/crypto.hpp"
#include "otarig/core/errors.hpp"
#include "otarig/core/image.hpp"
#include "otarig/drivers/process/board.hpp"
#include "otarig/drivers/process/register.hpp"

#ifndef OTARIG_VBOARD_DIR
#error "OTARIG_VBOARD_DIR names the folder of otarig-vboard"
#endif

namespace otarig::drivers::process {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;
namespace fs = std::filesystem;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::map<std::string, std::string> folder_contents(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    out[fs::relative(e.path(), dir).string()] = e.is_regular_file() ? read_file(e.path()) : std::string("<dir>");
  return out;
}

bool fuse_mounted_at(const fs::path& path) {
  std::ifstream in("/proc/self/mountinfo");
  for (std::string line; std::getline(in, line);)
    if (line.find(" " + path.string() + " ") != std::string::npos && line.find("fuse") != std::string::npos)
      return true;
  return false;
}

bool fuse_usable() { return ::geteuid() == 0 && ::access("/dev/fuse", R_OK | W_OK) == 0; }

class Board {
 public:
  /// Binds device, power, console (and a link when the profile has one).
  explicit Board(const Config& root, const std::string& name = "crash-test") {
    register_process_drivers(registry_);
    ctx_.clock = &clock_;
    ctx_.board_name = name;
    ctx_.profile_dir = OTARIG_SOURCE_DIR "/boards";
    ctx_.trusted_keys = {crypto::Ed25519Key::test_key("otarig-release").public_key()};
    (*registry_.device("process"))(root.at("device"), ctx_, parts);
    (*registry_.power("process"))(root.at("power"), ctx_, parts);
    (*registry_.console("pty"))(root.at("console"), ctx_, parts);
    if (auto link = root.find("link")) (*registry_.link("console-command"))(*link, ctx_, parts);
  }
  ProcessDevice& device() { return *find_process_device(parts); }
  CrashStorageProtocol& crash() { return *parts.crash_storage; }
  const fs::path& storage() { return device().storage(); }

  /// Reads the console until a line matches `pattern` or `timeout` passes; the line, or "".
  std::string wait_for(const std::string& pattern, std::chrono::milliseconds timeout = 10s) {
    const re2::RE2 re(pattern);
    for (auto deadline = Steady::now() + timeout; Steady::now() < deadline;) {
      auto got = parts.console->read(50ms);
      transcript += got;
      buffer_ += got;
      for (std::size_t nl; (nl = buffer_.find('\n')) != std::string::npos;) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        if (re2::RE2::PartialMatch(line, re)) return line;
      }
    }
    return {};
  }
  void forget_output() {
    for (std::string old = parts.console->read(20ms); !old.empty(); old = parts.console->read(20ms)) transcript += old;
    buffer_.clear();
  }

  BoardParts parts;
  std::string transcript;

 private:
  DriverRegistry registry_;
  SteadyClock clock_;
  BindContext ctx_;
  std::string buffer_;
};

std::string shell_profile(const std::string& script, const std::string& device_extra = "") {
  return "device:\n  kind: process\n  network: {server: false}\n" + device_extra +
         "power:\n  driver: process\n  command: [/bin/sh, -c, '" + script +
         "']\nconsole: {driver: pty}\n";
}

class CrashStorage : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fuse_usable()) GTEST_SKIP() << "the recording layer needs root and /dev/fuse";
  }
};

TEST_F(CrashStorage, TheDeviceSeesAnOrdinaryFolderUnderTheRecordingLayer) {
  auto root = Config::load_string(
      shell_profile("echo hello > greeting.txt; mkdir sub; echo x > sub/y; ls; "
                    "grep \" $PWD \" /proc/self/mountinfo | grep -c fuse | sed s/^/mounts=/; "
                    "cat greeting.txt; echo ready; exec sleep 100"),
      "crash-test.yaml");
  Board b(root);
  ASSERT_TRUE(b.parts.crash_storage) << "a process board with a folder keeps the crash model by default";
  EXPECT_EQ(b.parts.power_loss, "crash");
  EXPECT_GT(b.device().recorder_pid(), 0);
  EXPECT_FALSE(fuse_mounted_at(b.storage())) << "nothing is mounted in the rig's namespace";
  b.parts.power->on();
  ASSERT_FALSE(b.wait_for("^ready").empty()) << b.transcript;
  EXPECT_NE(b.transcript.find("mounts=1"), std::string::npos) << "the device's folder is the FUSE layer\n" << b.transcript;
  EXPECT_NE(b.transcript.find("hello"), std::string::npos) << b.transcript;
  // The rig sees the backing files at the same path.
  EXPECT_EQ(read_file(b.storage() / "greeting.txt"), "hello\n");
  EXPECT_EQ(read_file(b.storage() / "sub" / "y"), "x\n");
}

TEST_F(CrashStorage, APowerOffInModeLostDropsWhatNoBarrierMadeDurable) {
  auto root = Config::load_string(
      shell_profile("if [ -e kept.txt ]; then echo idle; exec sleep 100; fi; "
                    "printf kept > kept.txt; printf old > old.txt; sync kept.txt old.txt .; "
                    "printf lost > lost.txt; printf new > old.txt; echo written; exec sleep 100"),
      "crash-test.yaml");
  Board b(root);
  b.parts.power->on();
  ASSERT_FALSE(b.wait_for("^written").empty()) << b.transcript;
  EXPECT_TRUE(fs::exists(b.storage() / "lost.txt")) << "the backing folder has everything until the power goes";
  EXPECT_TRUE(b.crash().last_power_loss().is_null());
  b.parts.power->off();
  EXPECT_TRUE(fs::exists(b.storage() / "kept.txt"));
  EXPECT_EQ(read_file(b.storage() / "kept.txt"), "kept");
  EXPECT_FALSE(fs::exists(b.storage() / "lost.txt")) << "never synced: lost";
  EXPECT_EQ(read_file(b.storage() / "old.txt"), "old") << "the unsynced rewrite is lost, the synced file stays";
  auto last = b.crash().last_power_loss();
  ASSERT_FALSE(last.is_null());
  EXPECT_EQ(last.at("mode"), "lost");
  EXPECT_FALSE(last.at("pending").empty()) << last.dump();

  // A power-on whose device writes nothing (it finds kept.txt and idles)
  // leaves nothing to apply.
  b.parts.power->on();
  ASSERT_FALSE(b.wait_for("^idle").empty()) << b.transcript;
  b.parts.power->off();
  EXPECT_TRUE(b.crash().last_power_loss().is_null());
  EXPECT_EQ(read_file(b.storage() / "kept.txt"), "kept");
}

TEST_F(CrashStorage, WritesMadeDurableBySyncAloneSurviveAPowerCut) {
  // A shell updater's `... && sync` (sync(2)), and `sync -f` (syncfs(2) of
  // the storage): no fsync anywhere. The device's seccomp filter makes both
  // barriers of the log; what comes after the last one is lost.
  auto root = Config::load_string(
      shell_profile("printf synced > a.txt; mkdir d; printf deep > d/b.txt; sync; "
                    "printf fs > c.txt; sync -f c.txt; printf lost > lost.txt; echo written; exec sleep 100"),
      "crash-test.yaml");
  Board b(root);
  b.parts.power->on();
  ASSERT_FALSE(b.wait_for("^written").empty()) << b.transcript;
  b.crash().keep_recording("synced");
  b.parts.power->off();
  auto last = b.crash().last_power_loss();
  ASSERT_FALSE(last.is_null());
  if (last.contains("sync_not_seen")) GTEST_SKIP() << last.at("sync_not_seen").get<std::string>();
  EXPECT_EQ(read_file(b.storage() / "a.txt"), "synced");
  EXPECT_EQ(read_file(b.storage() / "d" / "b.txt"), "deep");
  EXPECT_EQ(read_file(b.storage() / "c.txt"), "fs");
  EXPECT_FALSE(fs::exists(b.storage() / "lost.txt")) << "written after the last sync";
  // The evidence: two barriers the seccomp filter saw, in order with the writes.
  std::vector<std::string> syncs;
  std::string before_first;
  for (const auto& op : b.crash().recorded_ops("synced")) {
    if (op.at("kind") == "sync") {
      EXPECT_EQ(op.value("source", ""), "seccomp") << op.dump();
      syncs.push_back(op.value("syscall", ""));
    } else if (syncs.empty()) {
      before_first += op.at("kind").get<std::string>() + " " + op.value("path", "") + "; ";
    }
  }
  EXPECT_EQ(syncs, (std::vector<std::string>{"sync", "syncfs"}));
  EXPECT_NE(before_first.find("write /d/b.txt"), std::string::npos) << before_first;
}

TEST_F(CrashStorage, AKeptRecordingRebuildsACrashStateDeterministically) {
  auto root = Config::load_string(
      shell_profile("i=0; while [ $i -lt 6 ]; do printf data$i > f$i; i=$((i+1)); done; sync f1 f3 .; "
                    "dd if=/dev/zero of=big bs=4096 count=2 2>/dev/null; mv f2 g2; echo written; exec sleep 100"),
      "crash-test.yaml");
  Board b(root);
  b.parts.power->on();
  ASSERT_FALSE(b.wait_for("^written").empty()) << b.transcript;
  const auto ops = b.crash().keep_recording("factory->update");
  ASSERT_GT(ops, 6u);
  auto listed = b.crash().recorded_ops("factory->update");
  ASSERT_EQ(listed.size(), ops);
  EXPECT_EQ(listed.at(0).at("op"), 1);
  EXPECT_THROW(b.crash().apply_crash("factory->update", 1, "lost", 1), BenchError) << "the device is on";
  b.parts.power->off();

  for (const char* mode : {"lost", "prefix", "reorder", "torn"}) {
    for (std::uint64_t cut : {std::uint64_t{1}, ops / 2, ops + 1}) {
      auto plan = b.crash().plan_crash("factory->update", cut, mode, 7);
      EXPECT_TRUE(plan.contains("kept") && plan.contains("dropped") && plan.contains("pending")) << plan.dump();
      auto first = b.crash().apply_crash("factory->update", cut, mode, 7);
      auto state = folder_contents(b.storage());
      auto second = b.crash().apply_crash("factory->update", cut, mode, 7);
      EXPECT_EQ(first, second) << mode << " cut " << cut;
      EXPECT_EQ(state, folder_contents(b.storage())) << mode << " cut " << cut;
      EXPECT_EQ(first.at("cut"), cut);
    }
  }
  // Before the first operation: the snapshot the power-on began with (empty).
  b.crash().apply_crash("factory->update", 1, "lost", 1);
  EXPECT_TRUE(folder_contents(b.storage()).empty());
  // After everything, lost: the synced files only.
  b.crash().apply_crash("factory->update", ops + 1, "lost", 1);
  auto after = folder_contents(b.storage());
  EXPECT_EQ(after["f1"], "data1");
  EXPECT_EQ(after["f3"], "data3");
  EXPECT_EQ(after["f0"], "") << "its name is durable (the folder was synced), its data is not";
  EXPECT_EQ(after.count("big"), 0u) << "created after the last barrier";
  EXPECT_THROW(b.crash().apply_crash("factory->update", ops + 2, "lost", 1), std::invalid_argument);
  EXPECT_THROW(b.crash().apply_crash("nothing", 1, "lost", 1), std::out_of_range);
  EXPECT_THROW(b.crash().apply_crash("factory->update", 1, "sideways", 1), InputError);
  // The next power-on starts from the crash state.
  b.parts.power->on();
  b.parts.power->off();
  EXPECT_EQ(folder_contents(b.storage()), after);
}

void expect_input_error(const std::string& yaml, const std::string& needle) {
  auto root = Config::load_string(yaml, "crash-test.yaml");
  try {
    Board b(root);
    ADD_FAILURE() << "no InputError for:\n" << yaml;
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("crash-test.yaml:"), std::string::npos) << e.what();
  }
}

TEST(CrashStorageProfile, KillWithoutAReasonIsBadInputAtItsLine) {
  expect_input_error(shell_profile("true", "  power_loss: kill\n"), "needs a written reason");
  expect_input_error(shell_profile("true", "  power_loss: {model: kill}\n"), "needs a written reason");
  expect_input_error(shell_profile("true", "  power_loss: {model: kill, reason: '  '}\n"), "needs a written reason");
  expect_input_error(shell_profile("true", "  power_loss: {model: crash, reason: because}\n"), "`reason` applies");
  expect_input_error(shell_profile("true", "  power_loss: sometimes\n"), "unknown power_loss model");
  expect_input_error(shell_profile("true", "  power_loss: {model: kill, reason: x, when: never}\n"), "when");
  // The crash model sees only the storage folder.
  expect_input_error(shell_profile("true", "  provision: {format: image-file, file: /var/tmp/flash.img}\n"),
                     "the crash model sees only the storage folder");
  expect_input_error(shell_profile("true", "  provision: {format: image-file, file: '${storage}/../x.img'}\n"),
                     "the crash model sees only the storage folder");
  expect_input_error("device: {kind: process, network: {server: false}}\npower:\n  driver: process\n"
                     "  command: [otarig-vboard, --flash, /dev/mtdblock0]\nconsole: {driver: pty}\n",
                     "the crash model sees only the storage folder");
}

TEST(CrashStorageProfile, KillWithAReasonTurnsTheModelOff) {
  auto root = Config::load_string(
      shell_profile("true", "  power_loss: {model: kill, reason: 'the device writes an MTD partition'}\n"
                            "  provision: {format: image-file, file: /var/tmp/otarig-crash-test.img}\n"),
      "crash-test.yaml");
  Board b(root);
  EXPECT_FALSE(b.parts.crash_storage);
  EXPECT_EQ(b.parts.power_loss, "kill: the device writes an MTD partition");
  EXPECT_EQ(b.device().recorder_pid(), 0);
}

TEST_F(CrashStorage, NoMountOrDaemonIsLeftAfterTheBoardIsDestroyed) {
  auto root = Config::load_string(shell_profile("echo up; exec sleep 100", "  keep_storage: true\n"), "crash-test.yaml");
  fs::path storage;
  pid_t daemon = 0;
  {
    Board b(root);
    storage = b.storage();
    daemon = b.device().recorder_pid();
    b.parts.power->on();
    ASSERT_FALSE(b.wait_for("^up").empty()) << b.transcript;
  }
  EXPECT_FALSE(fuse_mounted_at(storage));
  EXPECT_TRUE(fs::exists(storage)) << "keep_storage keeps the folder, not the mount";
  EXPECT_NE(::kill(daemon, 0), 0) << "the layer's daemon is gone";
  std::error_code ec;
  fs::remove_all(storage, ec);
}

// ---------------------------------------------------------------------------- otarig-vboard profiles by hand

struct Release {
  image::Bytes bytes;
  std::string digest;
};

Release make_release(const std::string& version, std::uint32_t counter, std::size_t payload = 9000) {
  image::Header h;
  h.version = image::Version::parse(version);
  h.security_counter = counter;
  auto body = image::synthetic_payload(payload, version);
  Release r;
  r.bytes = image::build(h, body, crypto::Ed25519Key::test_key("otarig-release"));
  r.digest =
      crypto::hex(crypto::sha256(std::span<const std::uint8_t>(r.bytes).first(image::kHeaderSize + payload)));
  return r;
}

const char* kStatus =
    R"(STATUS slot=(\w+) version=(\S+) digest=([0-9a-f]{64}) counter=(\d+) state=(\w+) health=(\w+))";

/// The digest the device runs once booted, or "" when it shows no status in `timeout`.
std::string booted_digest(Board& b, std::chrono::milliseconds timeout) {
  const re2::RE2 re(kStatus);
  auto line = b.wait_for(kStatus, timeout);
  std::string slot, version, digest, counter, state, health;
  if (line.empty() || !re2::RE2::PartialMatch(line, re, &slot, &version, &digest, &counter, &state, &health))
    return {};
  return health == "ok" ? digest : "unhealthy:" + digest;
}

struct SweepResult {
  std::uint64_t ops = 0, states = 0;
  std::vector<std::string> bad;  ///< "cut K mode M: what booted"
  double ms_per_apply = 0;
};

/// Records a clean factory -> update of the profile, then rebuilds the crash
/// state at every operation in every mode and boots it. With `stop_at_first`,
/// stops at the first state that boots neither image.
SweepResult sweep(const std::string& profile_file, bool stop_at_first) {
  ::setenv("OTARIG_TOOL_PATH", OTARIG_VBOARD_DIR, 1);
  auto root = Config::load_file(profile_file);
  Board b(root, root.string_or("name", "board"));
  const auto factory = make_release("1.0.0+1", 1), update = make_release("1.1.0+2", 2);
  SweepResult out;
  b.parts.provision->provision(factory.bytes);
  b.parts.power->on();
  EXPECT_EQ(booted_digest(b, 10s), factory.digest) << b.transcript;
  auto r = b.parts.link->deliver(update.bytes);
  EXPECT_EQ(r.status, DeliveryStatus::accepted) << r.detail << "\n" << b.transcript;
  EXPECT_EQ(booted_digest(b, 10s), update.digest) << b.transcript;
  out.ops = b.crash().keep_recording("factory->update");
  b.parts.power->off();
  double apply_ms = 0;
  for (std::uint64_t cut = 1; cut <= out.ops + 1; ++cut) {
    for (const char* mode : {"lost", "prefix", "reorder", "torn"}) {
      b.parts.provision->provision(factory.bytes);
      const auto t0 = Steady::now();
      auto described = b.crash().apply_crash("factory->update", cut, mode, 1);
      apply_ms += std::chrono::duration<double, std::milli>(Steady::now() - t0).count();
      ++out.states;
      b.forget_output();
      b.parts.power->on();
      const auto got = booted_digest(b, 3s);
      b.parts.power->off();
      if (got != factory.digest && got != update.digest) {
        out.bad.push_back(fmt::format("cut {} mode {}: {}\n  {}", cut, mode, got.empty() ? "no boot" : got,
                                      described.dump().substr(0, 600)));
        if (stop_at_first) {
          out.ms_per_apply = apply_ms / static_cast<double>(out.states);
          return out;
        }
      }
    }
  }
  out.ms_per_apply = apply_ms / static_cast<double>(out.states);
  return out;
}

TEST_F(CrashStorage, EveryCrashStateOfTheCorrectVboardBootsTheOldOrTheNewImage) {
  auto result = sweep(OTARIG_SOURCE_DIR "/boards/vboard-ab.yaml", false);
  std::printf("vboard-ab: %llu ops per update, %llu crash states, %.2f ms per apply_crash\n",
              static_cast<unsigned long long>(result.ops), static_cast<unsigned long long>(result.states),
              result.ms_per_apply);
  EXPECT_GT(result.ops, 10u);
  for (const auto& bad : result.bad) ADD_FAILURE() << bad;
}

class FlawedStorageBoard : public CrashStorage, public ::testing::WithParamInterface<const char*> {};

TEST_P(FlawedStorageBoard, HasACrashStateThatBootsNeitherImage) {
  auto result = sweep(std::string(OTARIG_SOURCE_DIR "/boards/flawed/") + GetParam() + ".yaml", true);
  ASSERT_FALSE(result.bad.empty()) << GetParam() << ": every one of " << result.states
                                   << " crash states booted the old or the new image";
  std::printf("%s: %s (after %llu states)\n", GetParam(), result.bad.front().c_str(),
              static_cast<unsigned long long>(result.states));
}

INSTANTIATE_TEST_SUITE_P(Boards, FlawedStorageBoard,
                         ::testing::Values("vboard-nobarrier-bootrec", "vboard-rename-nosync",
                                           "vboard-inplace-bootstate"),
                         [](const auto& param_info) {
                           std::string n = param_info.param;
                           for (auto& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

}  // namespace
}  // namespace otarig::drivers::process
