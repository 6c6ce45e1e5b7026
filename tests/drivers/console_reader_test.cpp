// The Asio console reader on ptys the test owns (no libserialport): line
// assembly, timestamps, RE2 triggers as bytes arrive, ConsoleProtocol reads
// and writes, and reopening a device that vanished.
#include <gtest/gtest.h>

#include <future>

#include "otarig/drivers/bench/console.hpp"
#include "otarig/drivers/bench/register.hpp"
#include "otarig/core/errors.hpp"
#include "pty.hpp"

namespace otarig::drivers::bench {
namespace {

using namespace std::chrono_literals;
using otarig::test::point_symlink;
using otarig::test::TempDir;
using otarig::test::TestPty;
using otarig::test::wait_until;

std::vector<std::string> lines_of(const Transcript& t, bool complete_only = false) {
  std::vector<std::string> out;
  for (const auto& e : t.entries()) {
    if (e.kind == TranscriptEntry::Kind::line && (!complete_only || e.complete)) out.push_back(e.text);
  }
  return out;
}

bool has_event(const Transcript& t, const std::string& text) {
  for (const auto& e : t.entries()) {
    if (e.kind == TranscriptEntry::Kind::event && e.text.find(text) != std::string::npos) return true;
  }
  return false;
}

class ConsoleReaderTest : public ::testing::Test {
 protected:
  std::shared_ptr<BenchIo> io = std::make_shared<BenchIo>("console-test");
  TestPty pty;

  std::unique_ptr<ConsoleReader> open(ConsoleReaderOptions options = {}) {
    auto reader =
        std::make_unique<ConsoleReader>(io, std::make_unique<TtyPathSource>(pty.slave_path()), options);
    reader->start();
    return reader;
  }
};

TEST_F(ConsoleReaderTest, LinesCarryMonotonicTimestamps) {
  auto console = open();
  pty.write("U-Boot 2023.01\r\n");
  pty.write("Hit any key\r\n");
  pty.write("=> ");
  ASSERT_TRUE(wait_until([&] { return console->transcript().text() == "U-Boot 2023.01\nHit any key\n=> "; }))
      << console->transcript().text();
  auto entries = console->transcript().entries();
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_TRUE(entries[0].complete);
  EXPECT_FALSE(entries[2].complete) << "the prompt has no line end yet";
  EXPECT_LE(entries[0].at, entries[1].at);
  EXPECT_LE(entries[1].at, entries[2].at);
  EXPECT_GE(entries[0].at, console->transcript().origin());
  EXPECT_NE(console->transcript().format().find("] U-Boot 2023.01\n"), std::string::npos);
}

struct SplitCase {
  const char* name;
  std::vector<std::string> chunks;
  std::vector<std::string> lines;  // complete lines
};

class LineSplitTest : public ConsoleReaderTest, public ::testing::WithParamInterface<SplitCase> {};

TEST_P(LineSplitTest, AssemblesLines) {
  ConsoleReaderOptions o;
  o.max_line = 80;
  auto console = open(o);
  for (const auto& chunk : GetParam().chunks) {
    pty.write(chunk);
    std::this_thread::sleep_for(2ms);  // separate reads, so chunks really split
  }
  auto expected = GetParam().lines;
  ASSERT_TRUE(wait_until([&] { return lines_of(console->transcript(), true).size() >= expected.size(); }));
  EXPECT_EQ(lines_of(console->transcript(), true), expected);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, LineSplitTest,
    ::testing::Values(
        SplitCase{"CrLf", {"a\r\nb\r\n"}, {"a", "b"}},
        SplitCase{"SplitAcrossReads", {"boot", "ing ker", "nel\n"}, {"booting kernel"}},
        SplitCase{"CrLfSplitBetweenReads", {"x\r", "\ny\n"}, {"x", "y"}},
        SplitCase{"EmptyLines", {"\n\nz\n"}, {"", "", "z"}},
        SplitCase{"LoneCrDropped", {"10%\r50%\r100%\n"}, {"10%50%100%"}},
        SplitCase{
            "LongLineCut", {std::string(100, 'q') + "\n"}, {std::string(80, 'q'), std::string(20, 'q')}},
        SplitCase{"BinaryBytesKept", {std::string("a\0b\xff\n", 5)}, {std::string("a\0b\xff", 4)}}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST_F(ConsoleReaderTest, TriggerFiresWithoutWaitingForTheLineEnd) {
  auto console = open();
  std::promise<TriggerMatch> fired;
  console->add_trigger(R"(Booting slot (?P<slot>[AB]) v(\d+)\.(\d+))",
                       [&](const TriggerMatch& m) { fired.set_value(m); }, /*once=*/true);
  pty.write("MCUboot: Booting slot B v2.7 ...");  // no newline
  auto future = fired.get_future();
  ASSERT_EQ(future.wait_for(2s), std::future_status::ready);
  auto m = future.get();
  EXPECT_EQ(m.text, "Booting slot B v2.7");
  EXPECT_EQ(m.groups.at("slot"), "B");
  ASSERT_EQ(m.captures.size(), 3u);
  EXPECT_EQ(m.captures[1], "2");
  EXPECT_EQ(m.captures[2], "7");
  EXPECT_EQ(m.line_number, 1u);
  EXPECT_EQ(m.line, "MCUboot: Booting slot B v2.7 ...");
}

TEST_F(ConsoleReaderTest, EveryMatchFiresOnceAndOnceTriggersOnlyTheFirst) {
  auto console = open();
  std::atomic<int> every{0}, first{0};
  console->add_trigger("tick", [&](const TriggerMatch&) { ++every; });
  console->add_trigger(
      "tick", [&](const TriggerMatch&) { ++first; }, /*once=*/true);
  pty.write("tick ti");
  std::this_thread::sleep_for(5ms);
  pty.write("ck\ntick\n");
  pty.write("end\n");
  ASSERT_TRUE(wait_until([&] { return lines_of(console->transcript()).size() == 3; }));
  EXPECT_EQ(every.load(), 3) << "a match is reported once even when its line arrives in pieces";
  EXPECT_EQ(first.load(), 1);
}

TEST_F(ConsoleReaderTest, PatternEndingInNewlineWaitsForTheWholeLine) {
  auto console = open();
  std::vector<std::string> versions;
  std::mutex m;
  console->add_trigger(R"(version=(\d+)\n)", [&](const TriggerMatch& match) {
    std::lock_guard lock(m);
    versions.push_back(match.captures[0]);
  });
  pty.write("version=1");
  std::this_thread::sleep_for(5ms);
  pty.write("2\n");
  ASSERT_TRUE(wait_until([&] {
    std::lock_guard lock(m);
    return !versions.empty();
  }));
  std::lock_guard lock(m);
  EXPECT_EQ(versions, std::vector<std::string>{"12"});
}

TEST_F(ConsoleReaderTest, BadPatternIsInputError) {
  auto console = open();
  EXPECT_THROW(console->add_trigger("slot (", [](const TriggerMatch&) {}), InputError);
}

TEST_F(ConsoleReaderTest, RemovedTriggerNoLongerFires) {
  auto console = open();
  std::atomic<int> hits{0};
  auto id = console->add_trigger("ping", [&](const TriggerMatch&) { ++hits; });
  pty.write("ping\n");
  ASSERT_TRUE(wait_until([&] { return hits == 1; }));
  console->remove_trigger(id);
  pty.write("ping\nlast\n");
  ASSERT_TRUE(wait_until([&] { return lines_of(console->transcript()).size() == 3; }));
  EXPECT_EQ(hits.load(), 1);
}

TEST_F(ConsoleReaderTest, CallbackCanWriteAsynchronouslyButNotSynchronously) {
  auto console = open();
  console->add_trigger("login: ", [&](const TriggerMatch&) {
    console->async_write("root\n", [](std::exception_ptr) {});
    console->write("never\n");  // synchronous on the io thread: throws, the reader records it
  });
  pty.write("rpi login: ");
  EXPECT_EQ(pty.read_for(2s, 5), "root\n");
  ASSERT_TRUE(wait_until([&] { return has_event(console->transcript(), "trigger callback failed"); }));
  EXPECT_EQ(pty.read_for(50ms), "");
}

TEST_F(ConsoleReaderTest, ReadReturnsWhatArrivedSinceTheLastRead) {
  auto console = open();
  auto before = std::chrono::steady_clock::now();
  EXPECT_EQ(console->read(50ms), "");
  EXPECT_GE(std::chrono::steady_clock::now() - before, 45ms);

  auto writer = std::async(std::launch::async, [&] {
    std::this_thread::sleep_for(20ms);
    pty.write("abc\r\n");
  });
  auto first = console->read(2s);  // returns at the first bytes
  writer.get();
  std::string all = first;
  while (all.size() < 5) {
    auto more = console->read(1s);
    if (more.empty()) break;
    all += more;
  }
  EXPECT_EQ(all, "abc\r\n") << "read returns the raw bytes";
}

TEST_F(ConsoleReaderTest, WriteReachesTheDevice) {
  auto console = open();
  console->write("reboot\n");
  EXPECT_EQ(pty.read_for(2s, 7), "reboot\n");
}

TEST_F(ConsoleReaderTest, MissingDeviceIsBenchErrorNamingIt) {
  ConsoleReader console(io, std::make_unique<TtyPathSource>("/dev/otarig-no-such-tty"));
  try {
    console.start();
    FAIL() << "expected BenchError";
  } catch (const BenchError& e) {
    EXPECT_NE(std::string(e.what()).find("/dev/otarig-no-such-tty"), std::string::npos) << e.what();
  }
}

TEST(ConsoleReconnectTest, ReopensTheDeviceAndKeepsWhatWasRead) {
  auto io = std::make_shared<BenchIo>("reconnect-test");
  TempDir dir;
  auto link = dir / "ttyBOARD";
  auto first = std::make_unique<TestPty>();
  point_symlink(link, first->slave_path());
  ConsoleReaderOptions o;
  o.reconnect_interval = 10ms;
  ConsoleReader console(io, std::make_unique<TtyPathSource>(link), o);
  console.start();

  first->write("before the cut\nhalf a li");
  ASSERT_TRUE(wait_until([&] { return console.transcript().text() == "before the cut\nhalf a li"; }));
  first->close_master();  // the adapter vanishes
  ASSERT_TRUE(wait_until([&] { return !console.connected(); }));

  TestPty second;
  point_symlink(link, second.slave_path());
  // The reader records the event, then counts the reconnect, then marks
  // itself connected, all on its own thread: wait for the last of the three,
  // never for a time.
  ASSERT_TRUE(wait_until([&] { return console.reconnects() == 1u && console.connected(); }, 30s))
      << console.reconnects();
  second.write("after\n");
  ASSERT_TRUE(wait_until([&] { return lines_of(console.transcript()).size() == 3; }));

  auto entries = console.transcript().entries();
  ASSERT_EQ(entries.size(), 5u);
  EXPECT_EQ(entries[0].text, "before the cut");
  EXPECT_EQ(entries[1].text, "half a li");
  EXPECT_FALSE(entries[1].complete) << "a line cut by the disconnect is marked";
  EXPECT_EQ(entries[2].kind, TranscriptEntry::Kind::event);
  EXPECT_NE(entries[2].text.find("disconnected"), std::string::npos);
  EXPECT_NE(entries[3].text.find("reconnected"), std::string::npos);
  EXPECT_EQ(entries[4].text, "after");

  console.write("still works\n");
  EXPECT_EQ(second.read_for(2s, 12), "still works\n");
}

TEST(ConsoleReconnectTest, WriteWaitsForTheDeviceUntilItsDeadline) {
  auto io = std::make_shared<BenchIo>("reconnect-write-test");
  TempDir dir;
  auto link = dir / "ttyBOARD";
  auto first = std::make_unique<TestPty>();
  point_symlink(link, first->slave_path());
  ConsoleReaderOptions o;
  o.reconnect_interval = 10ms;
  o.write_timeout = 150ms;
  ConsoleReader console(io, std::make_unique<TtyPathSource>(link), o);
  console.start();
  first->close_master();
  std::filesystem::remove(link);
  ASSERT_TRUE(wait_until([&] { return !console.connected(); }));
  auto before = std::chrono::steady_clock::now();
  EXPECT_THROW(console.write("x"), TimeoutError);
  EXPECT_GE(std::chrono::steady_clock::now() - before, 140ms);
}

TEST(FdConsoleTest, ReadsAnAdoptedDescriptorAndStopsAtItsEnd) {
  auto io = std::make_shared<BenchIo>("fd-test");
  TestPty pty;
  // The rig holds the master of a pty whose slave a process board writes to.
  int slave = ::open(pty.slave_path().c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(slave, 0);
  ConsoleReader console(io, std::make_unique<FdSource>(UniqueFd(::dup(pty.master())), "process board pty"));
  console.start();
  ASSERT_EQ(::write(slave, "hello\n", 6), 6);
  ASSERT_TRUE(wait_until([&] { return console.transcript().text() == "hello"; }));
  ::close(slave);  // the board process exits
  ASSERT_TRUE(wait_until([&] { return !console.connected(); }));
  EXPECT_TRUE(has_event(console.transcript(), "disconnected"));
  EXPECT_EQ(console.transcript().text(), "hello");
}

TEST(TtyProfileTest, RegistryBuildsAConsoleFromItsSection) {
  DriverRegistry registry;
  register_bench_drivers(registry);
  // `pty` is the process family's console (a process board's own pty); a
  // tty or a pty by path is `tty` here.
  EXPECT_EQ(registry.console("pty"), nullptr);
  TestPty pty;
  auto board = Config::load_string(
      "console: {driver: tty, path: " + pty.slave_path() + ", write_timeout: 1s}", "board.yaml");
  BoardParts parts;
  BindContext ctx;
  ctx.board_name = "tty-factory-test";
  ASSERT_NE(registry.console("tty"), nullptr);
  (*registry.console("tty"))(board.at("console"), ctx, parts);
  ASSERT_NE(parts.console, nullptr);
  pty.write("ok\n");
  std::string got;
  for (int i = 0; i < 20 && got.size() < 3; ++i) got += parts.console->read(100ms);
  EXPECT_EQ(got, "ok\n");

  EXPECT_THROW(parse_tty_console(Config::load_string("console: {driver: tty}", "b.yaml").at("console")),
               InputError);
  EXPECT_THROW(parse_tty_console(
                   Config::load_string("console: {driver: tty, path: /x, speed: 9}", "b.yaml").at("console")),
               InputError);
}

TEST_F(ConsoleReaderTest, TakeRecordGivesEachEntryOnceWithItsArrivalStamp) {
  const SteadyClock clock;
  auto console = std::make_unique<ConsoleReader>(io, std::make_unique<TtyPathSource>(pty.slave_path()),
                                                 ConsoleReaderOptions{}, &clock);
  console->start();
  const auto written = clock.now();
  pty.write("MCUboot: booting\r\nslot=");
  ASSERT_TRUE(wait_until([&] { return console->transcript().text() == "MCUboot: booting\nslot="; }));
  std::this_thread::sleep_for(200ms);  // taken late: the stamps stay the arrival times

  auto record = console->take_record();
  const auto taken = clock.now();
  ASSERT_EQ(record.entries.size(), 1u);
  EXPECT_EQ(record.entries[0].text, "MCUboot: booting");
  EXPECT_GE(record.entries[0].at, written);
  EXPECT_LT(record.entries[0].at, taken - 150ms);
  ASSERT_TRUE(record.arriving.has_value());
  EXPECT_EQ(record.arriving->text, "slot=");
  EXPECT_FALSE(record.arriving->complete);
  const auto arriving_at = record.arriving->at;

  pty.write("A\n");
  ASSERT_TRUE(wait_until([&] { return lines_of(console->transcript(), true).size() == 2; }));
  record = console->take_record();
  ASSERT_EQ(record.entries.size(), 1u) << "an entry is taken once";
  EXPECT_EQ(record.entries[0].text, "slot=A");
  EXPECT_EQ(record.entries[0].at, arriving_at) << "stamped by its first byte";
  EXPECT_FALSE(record.arriving.has_value());
  EXPECT_TRUE(console->take_record().entries.empty());
}

TEST(ConsoleReconnectTest, TheRecordNamesTheDisconnectAndTheReconnect) {
  auto io = std::make_shared<BenchIo>("reconnect-record-test");
  TempDir dir;
  auto link = dir / "ttyBOARD";
  auto first = std::make_unique<TestPty>();
  point_symlink(link, first->slave_path());
  ConsoleReaderOptions o;
  o.reconnect_interval = 10ms;
  ConsoleReader console(io, std::make_unique<TtyPathSource>(link), o);
  console.start();
  first->write("up\n");
  ASSERT_TRUE(wait_until([&] { return console.transcript().line_count() == 1; }));
  EXPECT_EQ(console.take_record().entries.size(), 1u);

  first->close_master();  // EIO: the adapter vanished
  ASSERT_TRUE(wait_until([&] { return !console.connected(); }));
  TestPty second;
  point_symlink(link, second.slave_path());
  ASSERT_TRUE(wait_until([&] { return console.reconnects() == 1; }));

  const auto record = console.take_record();
  ASSERT_EQ(record.entries.size(), 2u);
  EXPECT_EQ(record.entries[0].kind, TranscriptEntry::Kind::event);
  EXPECT_EQ(record.entries[0].event, "disconnected");
  EXPECT_EQ(record.entries[1].event, "reconnected");
  EXPECT_NE(record.entries[1].text.find(link.string()), std::string::npos) << record.entries[1].text;
  EXPECT_LE(record.entries[0].at, record.entries[1].at);
}

}  // namespace
}  // namespace otarig::drivers::bench

namespace otarig::drivers::bench {
namespace {

// A device that floods a console nobody clears: the transcript holds at most
// kConsolePendingMaxBytes, lets the oldest lines go, and the next take
// counts them; what it keeps is the newest, in order, and the cursor of
// take_since stays right across the drops.
TEST(TranscriptTest, AFloodIsBoundedAndTheLinesLetGoAreCounted) {
  Transcript t;
  std::uint64_t next = 0;
  const std::string text(4096 - kConsoleLineOverheadBytes, 'x');
  const std::size_t lines = 3 * kConsolePendingMaxBytes / 4096;  // three times what it may hold
  for (std::size_t i = 0; i < lines; ++i)
    t.add_line(std::chrono::milliseconds(i), std::to_string(i) + ":" + text.substr(std::to_string(i).size() + 1));
  const auto entries = t.entries();
  std::size_t held = 0;
  for (const auto& e : entries) held += e.text.size() + kConsoleLineOverheadBytes;
  EXPECT_LE(held, kConsolePendingMaxBytes);
  EXPECT_GE(held, kConsolePendingMaxBytes / 2);
  ASSERT_FALSE(entries.empty());
  EXPECT_EQ(entries.back().text.substr(0, entries.back().text.find(':')), std::to_string(lines - 1));
  for (std::size_t i = 1; i < entries.size(); ++i) EXPECT_LT(entries[i - 1].at, entries[i].at);

  const auto record = t.take_since(next);
  EXPECT_EQ(record.entries.size(), entries.size());
  EXPECT_EQ(record.dropped_lines + record.entries.size(), lines);
  EXPECT_EQ(record.dropped_bytes, record.dropped_lines * text.size());
  // Counted once; a later line comes alone.
  t.add_line(std::chrono::milliseconds(lines), "after");
  const auto later = t.take_since(next);
  ASSERT_EQ(later.entries.size(), 1u);
  EXPECT_EQ(later.entries[0].text, "after");
  EXPECT_EQ(later.dropped_lines, 0u);
}

}  // namespace
}  // namespace otarig::drivers::bench
