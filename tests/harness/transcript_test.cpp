// What a trial keeps of a device's console and of its status line: bounded by
// the limits of docs/evidence.md ("Limits"), with what was let go counted.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include "otarig/drivers/protocols.hpp"
#include "otarig/harness/bench.hpp"
#include "otarig/harness/console_log.hpp"

using namespace otarig::harness;
using otarig::drivers::kConsoleLineOverheadBytes;

namespace {

std::size_t kept_cost(const std::vector<TranscriptLine>& lines) {
  std::size_t cost = 0;
  for (const auto& l : lines)
    if (!l.dropped_lines) cost += l.text.size() + kConsoleLineOverheadBytes;
  return cost;
}

TEST(BoundedTranscript, KeepsEverythingUnderTheLimit) {
  BoundedTranscript t;
  for (int i = 0; i < 100; ++i) t.add({double(i), "line " + std::to_string(i)});
  auto lines = t.take();
  ASSERT_EQ(lines.size(), 100u);
  EXPECT_EQ(lines.front().text, "line 0");
  EXPECT_EQ(lines.back().text, "line 99");
  EXPECT_EQ(transcript_loss(lines).dropped_bytes, 0u);
  EXPECT_TRUE(t.empty());
}

TEST(BoundedTranscript, AFloodKeepsItsHeadAndTailAndCountsTheRest) {
  BoundedTranscript t;
  const std::string text(1000, 'f');
  const std::size_t n = 3 * kTranscriptMaxBytes / 1000;  // three times the limit
  for (std::size_t i = 0; i < n; ++i) t.add({double(i), text + std::to_string(i)});
  auto lines = t.take();
  EXPECT_LE(kept_cost(lines), kTranscriptMaxBytes);
  EXPECT_GT(kept_cost(lines), kTranscriptMaxBytes - 2 * (text.size() + 100));
  EXPECT_EQ(lines.front().text, text + "0");
  EXPECT_EQ(lines.back().text, text + std::to_string(n - 1));
  const auto gap = std::find_if(lines.begin(), lines.end(), [](const auto& l) { return l.dropped_lines > 0; });
  ASSERT_NE(gap, lines.end());
  EXPECT_EQ(std::count_if(lines.begin(), lines.end(), [](const auto& l) { return l.dropped_lines > 0; }), 1);
  // Every line is either kept or counted in the gap, bytes included.
  std::uint64_t kept_lines = lines.size() - 1, kept_bytes = 0;
  for (const auto& l : lines)
    if (!l.dropped_lines) kept_bytes += l.text.size();
  std::uint64_t all_bytes = 0;
  for (std::size_t i = 0; i < n; ++i) all_bytes += text.size() + std::to_string(i).size();
  EXPECT_EQ(kept_lines + gap->dropped_lines, n);
  EXPECT_EQ(kept_bytes + gap->cut, all_bytes);
  EXPECT_EQ(transcript_loss(lines).dropped_bytes, gap->cut);
  EXPECT_EQ(transcript_loss(lines).dropped_lines, gap->dropped_lines);
  EXPECT_EQ(console_log_line(*gap), fmt::format("[{:10.3f} ms] [otarig: {} bytes dropped]\n", gap->t_ms, gap->cut));
}

TEST(BoundedTranscript, DroppedEntriesFromTheConsoleJoinTheOneGap) {
  BoundedTranscript t;
  t.add({0, "first"});
  t.add({1, {}, 500, 7});
  t.add({2, "last"});
  t.add({3, {}, 100, 1});
  auto lines = t.take();
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0].text, "first");
  EXPECT_EQ(lines[1].dropped_lines, 8u);
  EXPECT_EQ(lines[1].cut, 600u);
  EXPECT_EQ(lines[2].text, "last");
}

TEST(ConsoleLog, ALineCutAtItsLimitEndsInTheMarker) {
  TranscriptLine line{12.5, "abc\x1b", 1000};
  std::string raw;
  bool escaped = false;
  EXPECT_EQ(console_log_line(line, &raw, &escaped), "[    12.500 ms] abc\\x1b [otarig: 1000 bytes dropped]\n");
  EXPECT_TRUE(escaped);
  EXPECT_EQ(raw, "[    12.500 ms] abc\x1b [otarig: 1000 bytes dropped]\n");
}

std::filesystem::path fresh_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() /
             fmt::format("otarig-{}-{}", name, std::random_device{}());
  std::filesystem::remove_all(dir);
  return dir;
}

std::string file_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(ConsoleLogFile, TheHeadReachesTheFileAsItComesAndTheEndBringsTheGapAndTail) {
  const auto dir = fresh_dir("console-log");
  {
    ConsoleLogFile log(dir / "trials" / "00007");
    BoundedTranscript t;
    t.on_head([&](const TranscriptLine& l) { log.write(l); });
    t.add({1.0, "first line"});
    // On disk before the transcript ends: a rig stopped now leaves it.
    EXPECT_EQ(file_text(dir / "trials" / "00007" / "console.log"), "[     1.000 ms] first line\n");
    const std::string text(1000, 'f');
    const std::size_t n = 3 * kTranscriptMaxBytes / 1000;
    for (std::size_t i = 0; i < n; ++i) t.add({2.0, text});
    t.add({3.0, "last line"});
    const auto streamed = file_text(dir / "trials" / "00007" / "console.log");
    EXPECT_GT(log.written(), n / 8) << "the head, half the limit, is on its way to disk";
    EXPECT_EQ(static_cast<std::size_t>(std::count(streamed.begin(), streamed.end(), '\n')), log.written())
        << "every line of the head is on disk";
    EXPECT_EQ(streamed.find("last line"), std::string::npos) << "the tail waits for the end";
    const auto lines = t.take();
    ASSERT_LT(log.written(), lines.size());
    EXPECT_GT(lines[log.written()].dropped_lines, 0u) << "what was streamed is the head, up to the gap";
    log.finish(lines);
    const auto whole = file_text(dir / "trials" / "00007" / "console.log");
    std::string expected;
    for (const auto& l : lines) expected += console_log_line(l);
    EXPECT_EQ(whole, expected) << "streamed and finished, the log is the transcript's";
    EXPECT_NE(whole.find("bytes dropped]"), std::string::npos);
    EXPECT_FALSE(std::filesystem::exists(dir / "trials" / "00007" / "console.raw")) << "nothing needed escaping";
  }
  std::filesystem::remove_all(dir);
}

TEST(ConsoleLogFile, ControlBytesAreEscapedAndTheRawBytesKeptBeside) {
  const auto dir = fresh_dir("console-raw");
  {
    ConsoleLogFile log(dir);
    log.write({1.0, "clear \x1b[2J"});
    EXPECT_EQ(file_text(dir / "console.raw"), "[     1.000 ms] clear \x1b[2J\n");
    log.finish({{1.0, "clear \x1b[2J"}, {2.0, "after"}});
    EXPECT_EQ(file_text(dir / "console.log"), "[     1.000 ms] clear \\x1b[2J\n[     2.000 ms] after\n");
    EXPECT_EQ(file_text(dir / "console.raw"), "[     1.000 ms] clear \x1b[2J\n[     2.000 ms] after\n");
  }
  std::filesystem::remove_all(dir);
}

TEST(StatusField, ALongFieldKeepsItsLimitAndTheMarker) {
  EXPECT_EQ(capped_status_field("1.1.0+2"), "1.1.0+2");
  const std::string at_limit(kStatusFieldMaxBytes, 'v');
  EXPECT_EQ(capped_status_field(at_limit), at_limit);
  const auto cut = capped_status_field(std::string(10 * 1024 * 1024, '9'));
  EXPECT_EQ(cut, std::string(kStatusFieldMaxBytes, '9') +
                     fmt::format("[otarig: {} bytes dropped]", 10 * 1024 * 1024 - kStatusFieldMaxBytes));
}

}  // namespace
