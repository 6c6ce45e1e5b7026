// The harness's console transcript on a lab board whose console is a tty (a
// pty the test owns, playing the device): console.log's lines carry the
// arrival stamps of the console reader, not the times the harness read them,
// and the reader's disconnects and reconnects reach the harness as events.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "otarig/drivers/bench/console.hpp"
#include "otarig/harness/bench.hpp"
#include "otarig/harness/releases.hpp"
#include "pty.hpp"

using namespace otarig;
using namespace otarig::harness;
using namespace std::chrono_literals;
using otarig::test::point_symlink;
using otarig::test::TempDir;
using otarig::test::TestPty;
using otarig::test::wait_until;

namespace {

// Power by commands that do nothing, the console on `tty`, no update server.
std::string tty_board(const std::filesystem::path& tty) {
  return "name: stamp-lab\n"
         "device: {kind: lab, network: {server: false}}\n"
         "power: {driver: command, on: 'true', off: 'true'}\n"
         "console: {driver: tty, path: " +
         tty.string() + R"(, reconnect_interval: 10ms}
link: {driver: console-command, serve: file, accepted: 'ota: pending', refused: 'ota: refused'}
observe:
  status: 'ota: slot=(?P<slot>\w+) version=(?P<version>\S+) digest=(?P<digest>[0-9a-f]{64})'
signing: {key: "test:stamp-lab"}
releases:
  factory: {version: 1.0.0+1, security_counter: 1, payload_size: 4KiB}
)";
}

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

class BenchConsoleTest : public ::testing::Test {
 protected:
  TempDir dir;
  drivers::DriverRegistry registry;
  std::optional<BoardProfile> profile;
  std::optional<ReleaseSet> releases;
  std::unique_ptr<Bench> bench;

  void bind(const std::filesystem::path& tty) {
    drivers::register_all_drivers(registry);
    std::ofstream(dir / "board.yaml") << tty_board(tty);
    profile = load_profile(dir / "board.yaml");
    releases.emplace(*profile);
    bench = std::make_unique<Bench>(*profile, registry, *releases, 1);
  }
  // The console reader under the board's console (the link wraps the console itself).
  const drivers::bench::Transcript& reader_transcript() {
    auto* reader = dynamic_cast<drivers::bench::ConsoleReader*>(bench->parts().console_stamps.get());
    if (reader == nullptr) throw std::logic_error("the tty console is no ConsoleReader");
    return reader->transcript();
  }
  std::vector<drivers::ConsoleEntry> reader_lines() {
    std::vector<drivers::ConsoleEntry> out;
    for (const auto& e : reader_transcript().entries())
      if (e.kind == drivers::ConsoleEntry::Kind::line) out.push_back(e);
    return out;
  }
};

TEST_F(BenchConsoleTest, TranscriptCarriesTheArrivalStampsNotTheReadTimes) {
  TestPty pty;
  bind(pty.slave_path());
  ASSERT_NE(bench->parts().console_stamps, nullptr) << "a tty console stamps its lines";
  bench->begin_transcript();
  const auto begun = bench->clock().now();
  pty.write("MCUboot: booting slot 0\r\n");
  std::this_thread::sleep_for(150ms);
  pty.write("app: up\r\n");
  ASSERT_TRUE(wait_until([&] { return reader_lines().size() == 2; }));
  std::this_thread::sleep_for(300ms);  // the harness reads late

  const auto read_at = ms(bench->clock().now() - begun);
  bench->drain_console();
  const auto lines = bench->take_transcript();
  const auto stamped = reader_lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].text, "MCUboot: booting slot 0");
  EXPECT_EQ(lines[1].text, "app: up");
  for (std::size_t i = 0; i < lines.size(); ++i) {
    // The reader's stamp, relative to the trial's start (taken just before `begun`).
    EXPECT_NEAR(lines[i].t_ms, ms(stamped[i].at - begun), 1.0) << lines[i].text;
    EXPECT_LT(lines[i].t_ms, read_at - 250) << "stamped when it arrived, not when the harness read it";
  }
  EXPECT_NEAR(lines[1].t_ms - lines[0].t_ms, ms(stamped[1].at - stamped[0].at), 1e-6);
  EXPECT_GE(lines[1].t_ms - lines[0].t_ms, 140.0);
}

TEST_F(BenchConsoleTest, ALineTakenWhileArrivingKeepsItsStampAndGoesOnInTheNextTranscript) {
  TestPty pty;
  bind(pty.slave_path());
  bench->begin_transcript();
  pty.write("=> ");
  ASSERT_TRUE(wait_until([&] { return reader_transcript().text() == "=> "; }));
  bench->drain_console();
  const auto first = bench->take_transcript();
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].text, "=> ");

  std::this_thread::sleep_for(50ms);
  pty.write("ota status\r\nnext\r\n");
  ASSERT_TRUE(wait_until([&] { return reader_lines().size() == 2 && reader_lines()[1].complete; }));
  bench->drain_console();
  const auto second = bench->take_transcript();
  ASSERT_EQ(second.size(), 2u);
  EXPECT_EQ(second[0].text, "ota status") << "only the rest of the line";
  EXPECT_DOUBLE_EQ(second[0].t_ms, first[0].t_ms) << "a line is stamped by its first byte";
  EXPECT_EQ(second[1].text, "next");
}

TEST_F(BenchConsoleTest, ADisconnectAndReconnectAreConsoleEvents) {
  auto link = dir / "ttyBOARD";
  auto adapter = std::make_unique<TestPty>();
  point_symlink(link, adapter->slave_path());
  bind(link);
  bench->begin_transcript();
  adapter->write("before\n");
  ASSERT_TRUE(wait_until([&] { return reader_lines().size() == 1; }));
  adapter->close_master();  // the USB adapter vanishes: EIO
  ASSERT_TRUE(wait_until([&] {
    for (const auto& e : reader_transcript().entries())
      if (e.event == "disconnected") return true;
    return false;
  }));
  TestPty replugged;
  point_symlink(link, replugged.slave_path());
  ASSERT_TRUE(wait_until([&] {
    for (const auto& e : reader_transcript().entries())
      if (e.event == "reconnected") return true;
    return false;
  }));
  replugged.write("after\n");
  ASSERT_TRUE(wait_until([&] { return reader_lines().size() == 2; }));

  bench->drain_console();
  const auto events = bench->take_console_events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].event, "disconnected");
  EXPECT_NE(events[0].text.find("disconnected"), std::string::npos) << events[0].text;
  EXPECT_EQ(events[1].event, "reconnected");
  EXPECT_LT(events[0].at, events[1].at);
  const auto lines = bench->take_transcript();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_LT(lines[0].t_ms, events[0].t_ms);
  EXPECT_GT(lines[1].t_ms, events[1].t_ms) << "the gap in the console lies between the two events";
  EXPECT_TRUE(bench->take_console_events().empty()) << "each event is taken once";
}

}  // namespace

// The device answers every status command with `answer` until the test ends.
class StatusAnswer {
 public:
  StatusAnswer(const TestPty& pty, std::string answer)
      : thread_([&pty, answer = std::move(answer), this] {
          std::string heard;
          while (!stop_) {
            heard += pty.read_for(50ms);
            for (auto at = heard.find("status"); at != std::string::npos; at = heard.find("status")) {
              heard.erase(0, at + 6);
              pty.write(answer);
            }
          }
        }) {}
  ~StatusAnswer() {
    stop_ = true;
    thread_.join();
  }
  StatusAnswer(const StatusAnswer&) = delete;
  StatusAnswer& operator=(const StatusAnswer&) = delete;

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

TEST_F(BenchConsoleTest, AStatusLineLongerThanTheLineLimitIsNotOne) {
  TestPty pty;
  drivers::register_all_drivers(registry);
  auto text = tty_board(pty.slave_path());
  const std::string observe = "observe:\n";
  text.replace(text.find(observe), observe.size(),
               observe + "  status_command: \"status\\n\"\n  boot_timeout: 2s\n  status_interval: 100ms\n");
  std::ofstream(dir / "board.yaml") << text;
  profile = load_profile(dir / "board.yaml");
  releases.emplace(*profile);
  bench = std::make_unique<Bench>(*profile, registry, *releases, 1);
  bench->begin_transcript();
  const std::string status = "ota: slot=a version=1.0.0+1 digest=" + std::string(64, 'e');
  {
    // The status the profile matches, then more than the line limit on the same line.
    StatusAnswer device(pty, status + " health=" + std::string(drivers::kConsoleLineMaxBytes + 1024, 'x') + "\r\n");
    const auto cut = bench->observe("cut status line");
    EXPECT_FALSE(cut.booted) << "the line's first 64 KiB match the status pattern, but its end is gone";
  }
  // The same status on a line within the limit is one.
  StatusAnswer device(pty, status + " health=ok\r\n");
  const auto whole = bench->observe("status line");
  EXPECT_TRUE(whole.booted);
  EXPECT_EQ(whole.slot, "a");
}

namespace {

TEST_F(BenchConsoleTest, ALabBoardsClockIsSetByItsConsoleCommandAfterEachPowerOn) {
  TestPty pty;
  drivers::register_all_drivers(registry);
  std::ofstream(dir / "board.yaml") << tty_board(pty.slave_path())
                                    << "clock: {console: \"date -u -s @${epoch} # ${date}\\n\"}\n";
  profile = load_profile(dir / "board.yaml");
  releases.emplace(*profile);
  bench = std::make_unique<Bench>(*profile, registry, *releases, 1);
  ASSERT_NE(bench->parts().device_clock, nullptr) << "`clock:` makes the clock settable";
  bench->power_on("true-time");
  EXPECT_EQ(pty.read_for(200ms), "") << "the true time needs no command";
  bench->power_off("true-time");
  bench->parts().device_clock->set_device_time({drivers::DeviceTime::Kind::at, 86400});
  bench->power_on("1970");
  const std::string want = "date -u -s @86400 # 1970-01-02 00:00:00\n";
  EXPECT_EQ(pty.read_for(2000ms, want.size()), want);
}

}  // namespace
