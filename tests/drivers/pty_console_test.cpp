// Console kind `pty`: reads with deadlines, writes to the device's stdin
// (`cat` plays the device and echoes), follows the device across power
// cycles, keeps what a watcher peeked for the transcript.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "otarig/core/errors.hpp"
#include "otarig/drivers/process/board.hpp"
#include "otarig/drivers/process/register.hpp"

namespace otarig::drivers::process {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

struct TestBoard {
  explicit TestBoard(const std::string& command, const std::string& power_extra = "") {
    register_process_drivers(registry);
    root = Config::load_string(
        "device: {kind: process, network: {server: false}}\n"
        "power:\n  driver: process\n  command: " +
            command + "\n" + power_extra + "console: {driver: pty}\n",
        "console-test.yaml");
    ctx.clock = &clock;
    ctx.board_name = "console-board";
    (*registry.device("process"))(root.at("device"), ctx, parts);
    (*registry.power("process"))(root.at("power"), ctx, parts);
    (*registry.console("pty"))(root.at("console"), ctx, parts);
  }
  PowerProtocol& power() { return *parts.power; }
  PtyConsole& console() { return dynamic_cast<PtyConsole&>(*parts.console); }
  std::string read_until(const std::string& needle, std::chrono::milliseconds limit = 5000ms) {
    std::string out;
    auto deadline = Steady::now() + limit;
    while (out.find(needle) == std::string::npos && Steady::now() < deadline) out += console().read(100ms);
    return out;
  }

  DriverRegistry registry;
  SteadyClock clock;
  BindContext ctx;
  Config root = Config::load_string("{}", "empty");
  BoardParts parts;
};

TEST(PtyConsole, ReadWaitsAtMostItsTimeoutWhenNothingComes) {
  TestBoard b("cat");
  b.power().on();
  for (auto timeout : {0ms, 30ms, 150ms}) {
    const auto t0 = Steady::now();
    EXPECT_EQ(b.console().read(timeout), "");
    const auto took = Steady::now() - t0;
    EXPECT_GE(took, timeout);
    EXPECT_LT(took, timeout + 500ms);
  }
}

TEST(PtyConsole, ReadReturnsAtTheFirstByteNotAtTheDeadline) {
  TestBoard b("[sh, -c, 'read x; echo \"late $x\"; exec cat']");
  b.power().on();
  std::thread writer([&] {
    std::this_thread::sleep_for(100ms);
    b.console().write("go\n");
  });
  const auto t0 = Steady::now();
  std::string got = b.console().read(5000ms);
  const auto took = Steady::now() - t0;
  writer.join();
  got += b.read_until("\n", 1000ms);
  EXPECT_EQ(got, "late go\n");
  EXPECT_LT(took, 2000ms) << "read returns once bytes arrive";
}

TEST(PtyConsole, WritesReachTheDeviceAndCatEchoesThem) {
  TestBoard b("cat");
  b.power().on();
  b.console().write("hello device\n");
  EXPECT_EQ(b.read_until("hello device\n"), "hello device\n") << "raw pty: no local echo, no CR";
  // A burst larger than the pty's buffer still arrives whole.
  std::string big;
  for (int i = 0; i < 2000; ++i) big += "line " + std::to_string(i) + "\n";
  std::thread writer([&] { b.console().write(big); });
  auto got = b.read_until("line 1999\n", 10000ms);
  writer.join();
  EXPECT_EQ(got, big);
}

TEST(PtyConsole, FollowsTheDeviceAcrossPowerCycles) {
  // Each run says which run it is (a counter in the storage folder, synced
  // with its folder so a power-off keeps it under the crash model), then echoes.
  TestBoard b(
      "[sh, -c, 'n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n; sync n .; echo \"run $n up\"; exec cat']");
  b.power().on();
  EXPECT_EQ(b.read_until("run 1 up\n"), "run 1 up\n");
  b.console().write("one\n");
  EXPECT_EQ(b.read_until("one\n"), "one\n");
  b.power().cycle(10ms);
  EXPECT_EQ(b.read_until("run 2 up\n"), "run 2 up\n");
  b.console().write("two\n");
  EXPECT_EQ(b.read_until("two\n"), "two\n");
}

TEST(PtyConsole, WhatTheOldRunPrintedBeforeThePowerWentIsReadFirst) {
  TestBoard b(
      "[sh, -c, 'n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n; sync n .; echo \"run $n\"; exec cat']");
  b.power().on();
  // Let run 1 print, without reading it.
  auto s = dynamic_cast<ProcessPower&>(b.power()).session();
  ASSERT_TRUE(s);
  ASSERT_TRUE(wait_readable(s->master(), 5000ms));
  b.power().off();
  b.power().on();
  EXPECT_EQ(b.read_until("run 2\n"), "run 1\nrun 2\n");
}

TEST(PtyConsole, WritesWhileOffGoNowhereAndReadsWaitTheirTime) {
  TestBoard b("cat");
  b.console().write("nobody listens\n");
  const auto t0 = Steady::now();
  EXPECT_EQ(b.console().read(80ms), "");
  EXPECT_GE(Steady::now() - t0, 80ms);
  b.power().on();
  b.console().write("now\n");
  EXPECT_EQ(b.read_until("now\n"), "now\n");
}

TEST(PtyConsole, ReadReturnsWhenThePowerComesOnDuringTheWait) {
  TestBoard b("[sh, -c, 'echo booted; exec cat']");
  std::thread starter([&] {
    std::this_thread::sleep_for(50ms);
    b.power().on();
  });
  const auto t0 = Steady::now();
  auto got = b.read_until("booted", 5000ms);
  starter.join();
  EXPECT_EQ(got, "booted\n");
  EXPECT_LT(Steady::now() - t0, 3000ms);
}

TEST(PtyConsole, PeekedBytesStayForTheNextRead) {
  TestBoard b("cat");
  b.power().on();
  b.console().write("abc\n");
  std::string peeked;
  auto deadline = Steady::now() + 5000ms;
  while (peeked.find('\n') == std::string::npos && Steady::now() < deadline)
    peeked += b.console().peek(100ms);
  EXPECT_EQ(peeked, "abc\n");
  EXPECT_EQ(b.console().peek(20ms), "") << "peek returns each byte once";
  EXPECT_EQ(b.console().read(0ms), "abc\n") << "read returns what was peeked";
  EXPECT_EQ(b.console().read(20ms), "");
}

TEST(PtyConsole, LinesAreStampedWhenTheyAreFetchedNotWhenTheHarnessReadsThem) {
  // The device prints one line, then another 300 ms later; a watcher peeks
  // each as it comes; the harness reads both only at the end.
  TestBoard b("[sh, -c, 'echo first; sleep 0.3; printf \"second\\r\\nhalf\"; exec cat']");
  ASSERT_EQ(b.parts.console_stamps.get(), dynamic_cast<StampedConsoleProtocol*>(&b.console()));
  b.power().on();
  std::string peeked;
  for (auto deadline = Steady::now() + 5s; peeked.find("half") == std::string::npos && Steady::now() < deadline;)
    peeked += b.console().peek(20ms);
  std::this_thread::sleep_for(400ms);
  const auto read_at = b.clock.now();
  EXPECT_EQ(b.console().read(0ms), "first\nsecond\r\nhalf");
  auto record = b.console().take_record();
  ASSERT_EQ(record.entries.size(), 2u);
  EXPECT_EQ(record.entries[0].text, "first");
  EXPECT_EQ(record.entries[1].text, "second") << "the line ending goes";
  EXPECT_TRUE(record.entries[0].complete && record.entries[1].complete);
  const auto gap = record.entries[1].at - record.entries[0].at;
  EXPECT_GE(gap, 250ms) << "stamped as they came";
  EXPECT_LT(gap, 2s);
  EXPECT_LE(record.entries[1].at, read_at - 300ms) << "not when they were read";
  ASSERT_TRUE(record.arriving);
  EXPECT_EQ(record.arriving->text, "half");
  EXPECT_FALSE(record.arriving->complete);
  EXPECT_TRUE(b.console().take_record().entries.empty()) << "each line once";
  // A power cut ends the line that was arriving, incomplete.
  b.power().off();
  for (auto deadline = Steady::now() + 3s; !b.console().at_eof() && Steady::now() < deadline;) b.console().read(20ms);
  record = b.console().take_record();
  ASSERT_EQ(record.entries.size(), 1u);
  EXPECT_EQ(record.entries[0].text, "half");
  EXPECT_FALSE(record.entries[0].complete);
  EXPECT_FALSE(record.arriving);
}

TEST(PtyConsole, CookedModeEchoesAsATerminalDoes) {
  TestBoard b("cat", "  pty: cooked\n");
  b.power().on();
  b.console().write("typed\n");
  // The terminal echoes the input (with CR LF), then cat prints the line.
  auto got = b.read_until("typed\r\ntyped\r\n");
  EXPECT_EQ(got, "typed\r\ntyped\r\n");
}

}  // namespace
}  // namespace otarig::drivers::process

namespace otarig::drivers::process {
namespace {

// `pty` is a process board's own pty. Any other board (a lab board with a
// tty by path) names the bench family's console `tty`: `pty` there is an
// input error at the line of `driver:` that says so.
TEST(PtyConsoleRegistration, OnlyAProcessBoardNamesPty) {
  DriverRegistry registry;
  register_process_drivers(registry);
  auto root = Config::load_string(
      "device: {kind: lab}\n"
      "console:\n"
      "  driver: pty\n"
      "  path: /dev/ttyX\n",
      "lab.yaml");
  BoardParts lab;
  BindContext ctx;
  try {
    (*registry.console("pty"))(root.at("console"), ctx, lab);
    FAIL() << "a board that is not a process board bound the 'pty' console";
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("lab.yaml:3: ", 0), 0u) << what;
    EXPECT_NE(what.find("process board"), std::string::npos) << what;
    EXPECT_NE(what.find("`driver: tty`"), std::string::npos) << what;
  }
  EXPECT_FALSE(lab.console);
}

}  // namespace
}  // namespace otarig::drivers::process
