// The operation log: append, payloads in the data file, save/load, a torn
// trailing entry, JSON evidence.
#include "otarig/drivers/storage/oplog.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include "test_support.hpp"

namespace otarig::drivers::storage {
namespace {

using test::Scratch;

std::span<const std::byte> bytes(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }
std::string text(const std::vector<std::byte>& b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }

OpLog sample(const Scratch& s) {
  OpLog log(s.dir());
  Op w;
  w.kind = OpKind::write;
  w.path = "/slot";
  w.offset = 4096;
  log.append(w, bytes("hello"));
  Op r;
  r.kind = OpKind::rename;
  r.path = "/a.tmp";
  r.path2 = "/a";
  log.append(r);
  Op f;
  f.kind = OpKind::fsync_dir;
  f.path = "/";
  log.append(f);
  log.append(w, bytes("world!"));
  return log;
}

TEST(OpLog, NumbersEntriesAndKeepsPayloadsInTheDataFile) {
  Scratch s;
  OpLog log = sample(s);
  ASSERT_EQ(log.size(), 4u);
  EXPECT_EQ(log.at(1).index, 1u);
  EXPECT_EQ(log.at(4).index, 4u);
  EXPECT_EQ(log.at(1).length, 5u);
  EXPECT_EQ(text(log.payload(log.at(1))), "hello");
  EXPECT_EQ(text(log.payload(log.at(4))), "world!");
  EXPECT_EQ(log.data_bytes(), 11u);
  EXPECT_THROW(log.at(5), std::out_of_range);
  EXPECT_TRUE(log.at(3).barrier());
  EXPECT_FALSE(log.at(2).barrier());
}

TEST(OpLog, SavesAndLoads) {
  Scratch s;
  OpLog log = sample(s);
  log.save(s / "e.ops", s / "e.data");
  OpLog back = OpLog::load(s / "e.ops", s / "e.data");
  ASSERT_EQ(back.size(), 4u);
  EXPECT_EQ(back.at(2).path, "/a.tmp");
  EXPECT_EQ(back.at(2).path2, "/a");
  EXPECT_EQ(back.at(4).offset, 4096u);
  EXPECT_EQ(text(back.payload(back.at(4))), "world!");
  EXPECT_EQ(OpLog::load(s / "e.ops", s / "e.data", 2).size(), 2u);
  EXPECT_THROW(OpLog::load(s / "e.ops", s / "e.data", 5), std::runtime_error);
}

TEST(OpLog, StreamingWriterIsReadableAsItGoesAndAPartialEntryIsIgnored) {
  Scratch s;
  OpLog writer = OpLog::streaming(s / "w.ops", s / "w.data", false);
  Op w;
  w.kind = OpKind::write;
  w.path = "/f";
  writer.append(w, bytes("abc"));
  writer.append(w, bytes("defg"));
  EXPECT_EQ(writer.size(), 2u);
  EXPECT_TRUE(writer.ops().empty());
  EXPECT_EQ(OpLog::load(s / "w.ops", s / "w.data").size(), 2u);
  // A writer killed in the middle of an entry: the whole entries load.
  auto size = std::filesystem::file_size(s / "w.ops");
  std::filesystem::resize_file(s / "w.ops", size - 3);
  OpLog back = OpLog::load(s / "w.ops", s / "w.data");
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(text(back.payload(back.at(1))), "abc");
}

TEST(OpLog, RefusesAFileThatIsNotALog) {
  Scratch s;
  test::put_file(s / "x.ops", "not a log at all");
  test::put_file(s / "x.data", "");
  try {
    OpLog::load(s / "x.ops", s / "x.data");
    FAIL() << "loaded";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("x.ops"), std::string::npos) << e.what();
  }
}

TEST(OpLog, EntriesAsJson) {
  Scratch s;
  OpLog log = sample(s);
  auto j = to_json(log.at(1));
  EXPECT_EQ(j["op"], 1);
  EXPECT_EQ(j["kind"], "write");
  EXPECT_EQ(j["path"], "/slot");
  EXPECT_EQ(j["offset"], 4096);
  EXPECT_EQ(j["length"], 5);
  EXPECT_EQ(to_json(log.at(2))["to"], "/a");
  log.write_jsonl(s / "log.jsonl");
  auto lines = test::read_file(s / "log.jsonl").value();
  EXPECT_EQ(std::count(lines.begin(), lines.end(), '\n'), 4);
  for (auto k : {OpKind::write, OpKind::sync, OpKind::fsync_dir, OpKind::symlink})
    EXPECT_EQ(parse_op_kind(to_string(k)), k);
}

}  // namespace
}  // namespace otarig::drivers::storage
