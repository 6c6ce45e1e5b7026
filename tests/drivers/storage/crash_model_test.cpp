// The crash model on a recording folder: durable state, the four modes,
// torn sectors, directory entries, fdatasync vs fsync, O_SYNC, sync,
// determinism.
#include "otarig/drivers/storage/crash_model.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdio.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "otarig/drivers/storage/recording_folder.hpp"
#include "test_support.hpp"

namespace otarig::drivers::storage {
namespace {

namespace fs = std::filesystem;
using test::put_file;
using test::read_file;
using test::Scratch;
using test::tree;

class CrashModelTest : public ::testing::Test {
 protected:
  void SetUp() override { fs::create_directories(backing); }

  /// Snapshot the backing folder and start recording.
  void begin() {
    snapshot_folder(backing, snapshot);
    rf = std::make_unique<RecordingFolder>(backing, OpLog(s.dir()));
  }
  /// Stop recording and build the model.
  void end() {
    log = std::make_unique<OpLog>(rf->replace_log(OpLog(s.dir())));
    model = std::make_unique<CrashModel>(snapshot, *log);
  }
  std::uint64_t end_cut() const { return log->size() + 1; }
  nlohmann::json crash(std::uint64_t cut, CrashMode mode, std::uint64_t seed = 0) {
    return model->materialize({cut, mode, seed}, target);
  }
  std::optional<std::string> at(const std::string& rel) const { return read_file(target / rel); }

  Handle open_file(const std::string& path, int flags = O_WRONLY) {
    Handle h;
    int rc = rf->create(path, flags | O_CREAT, 0644, h);
    EXPECT_EQ(rc, 0) << path;
    return h;
  }
  void write(Handle& h, const std::string& path, const std::string& data, off_t off = 0) {
    EXPECT_EQ(rf->write(h, path, data, off), static_cast<ssize_t>(data.size())) << path;
  }
  /// create/open, write, [fsync], close.
  void write_file(const std::string& path, const std::string& data, bool sync) {
    Handle h = open_file(path, O_WRONLY | O_TRUNC);
    write(h, path, data);
    if (sync) {
      EXPECT_EQ(rf->fsync(h, path, false), 0);
    }
    rf->close(h);
  }

  Scratch s;
  fs::path backing = s / "backing", snapshot = s / "snapshot", target = s / "target";
  std::unique_ptr<RecordingFolder> rf;
  std::unique_ptr<OpLog> log;
  std::unique_ptr<CrashModel> model;
};

// ---- durable state ---------------------------------------------------------

class DurableInEveryMode : public CrashModelTest, public ::testing::WithParamInterface<CrashMode> {};

TEST_P(DurableInEveryMode, FsyncedWriteSurvivesUnsyncedMayNot) {
  put_file(backing / "boot", "old-boot");
  put_file(backing / "state", "old-state");
  begin();
  write_file("/boot", "new-boot", true);
  write_file("/state", "new-state", false);
  end();
  std::set<std::string> states;
  for (std::uint64_t seed = 0; seed < 32; ++seed) {
    crash(end_cut(), GetParam(), seed);
    EXPECT_EQ(at("boot"), "new-boot") << "seed " << seed;
    auto st = at("state");
    ASSERT_TRUE(st) << "seed " << seed;
    states.insert(*st);
  }
  if (GetParam() == CrashMode::lost) {
    EXPECT_EQ(states, (std::set<std::string>{"old-state"}));
  } else {
    // The pending truncate and write of `state` persist or not by the seed
    // (torn: the truncate persists, the one-sector write lands or not).
    EXPECT_TRUE(states.count(GetParam() == CrashMode::torn ? "" : "old-state")) << "no seed dropped the pending write";
    EXPECT_TRUE(states.count("new-state")) << "no seed kept the pending write";
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, DurableInEveryMode, ::testing::ValuesIn(kAllCrashModes),
                         [](const auto& tp) { return std::string(to_string(tp.param)); });

TEST_F(CrashModelTest, CutBeforeTheFsyncLeavesTheWritePending) {
  put_file(backing / "boot", "old-boot");
  begin();
  Handle h = open_file("/boot");
  write(h, "/boot", "new-boot");       // 1
  ASSERT_EQ(rf->fsync(h, "/boot", false), 0);  // 2
  rf->close(h);
  end();
  ASSERT_EQ(log->size(), 2u);
  auto before = model->plan({2, CrashMode::lost, 0});
  EXPECT_EQ(before.pending, (std::vector<std::uint64_t>{1}));
  EXPECT_TRUE(before.durable.empty());
  crash(2, CrashMode::lost);
  EXPECT_EQ(at("boot"), "old-boot");
  auto after = model->plan({3, CrashMode::lost, 0});
  EXPECT_EQ(after.durable, (std::vector<std::uint64_t>{1}));
  crash(3, CrashMode::lost);
  EXPECT_EQ(at("boot"), "new-boot");
}

TEST_F(CrashModelTest, CutOutOfRangeIsRefused) {
  begin();
  write_file("/a", "x", true);
  end();
  EXPECT_THROW(model->plan({0, CrashMode::lost, 0}), std::invalid_argument);
  EXPECT_THROW(model->plan({end_cut() + 1, CrashMode::lost, 0}), std::invalid_argument);
  EXPECT_NO_THROW(model->plan({end_cut(), CrashMode::lost, 0}));
}

// ---- modes -----------------------------------------------------------------

// Three pending writes to three existing files.
class PendingWrites : public CrashModelTest {
 protected:
  void SetUp() override {
    CrashModelTest::SetUp();
    for (auto n : {"a", "b", "c"}) put_file(backing / n, "0");
    begin();
    for (auto n : {"a", "b", "c"}) {
      Handle h;
      ASSERT_EQ(rf->open(std::string("/") + n, O_WRONLY, h), 0);
      write(h, std::string("/") + n, "1");
      rf->close(h);
    }
    end();
    ASSERT_EQ(log->size(), 3u);
  }
  // "abc" -> which of a, b, c hold the new byte, e.g. "110".
  std::string persisted() const {
    std::string out;
    for (auto n : {"a", "b", "c"}) out += at(n).value_or("?");
    return out;
  }
};

TEST_F(PendingWrites, PrefixKeepsAnInOrderPrefixOfEveryLength) {
  std::set<std::string> seen;
  for (std::uint64_t seed = 0; seed < 64; ++seed) {
    auto j = crash(4, CrashMode::prefix, seed);
    const std::string got = persisted();
    seen.insert(got);
    // The target holds exactly what the description says was kept.
    for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(j["pending"][i]["kept"].get<bool>(), got[i] == '1') << seed;
  }
  EXPECT_EQ(seen, (std::set<std::string>{"000", "100", "110", "111"}));
}

TEST_F(PendingWrites, ReorderKeepsAnySubset) {
  std::set<std::string> seen;
  for (std::uint64_t seed = 0; seed < 128; ++seed) {
    crash(4, CrashMode::reorder, seed);
    seen.insert(persisted());
  }
  // Every one of the eight subsets, the out-of-order ones included.
  EXPECT_EQ(seen.size(), 8u);
  EXPECT_TRUE(seen.count("001"));
  EXPECT_TRUE(seen.count("010"));
}

TEST_F(PendingWrites, LostKeepsNone) {
  for (std::uint64_t seed = 0; seed < 8; ++seed) {
    auto j = crash(4, CrashMode::lost, seed);
    EXPECT_EQ(persisted(), "000");
    EXPECT_EQ(j["pending"].size(), 3u);
  }
}

TEST_F(CrashModelTest, ReorderKeepsTheLastWriterOfARegion) {
  put_file(backing / "f", "....");
  begin();
  Handle h = open_file("/f");
  write(h, "/f", "AAAA");  // 1
  write(h, "/f", "BB", 1);  // 2
  rf->close(h);
  end();
  std::set<std::string> seen;
  for (std::uint64_t seed = 0; seed < 64; ++seed) {
    auto plan = model->plan({3, CrashMode::reorder, seed});
    crash(3, CrashMode::reorder, seed);
    std::set<std::uint64_t> kept(plan.kept.begin(), plan.kept.end());
    std::string want = kept.count(1) ? "AAAA" : "....";
    if (kept.count(2)) want.replace(1, 2, "BB");
    EXPECT_EQ(at("f"), want) << "seed " << seed;
    seen.insert(want);
  }
  EXPECT_EQ(seen, (std::set<std::string>{"....", "AAAA", ".BB.", "ABBA"}));
}

// ---- torn writes -----------------------------------------------------------

struct TornCase {
  const char* name;
  std::uint64_t offset;
  std::uint64_t length;
};

class TornWrite : public CrashModelTest, public ::testing::WithParamInterface<TornCase> {};

TEST_P(TornWrite, LandsASeededSubsetOfItsSectors) {
  const auto& c = GetParam();
  const std::string old(8192, 'o');
  std::string fresh(c.length, 'n');
  for (std::size_t i = 0; i < fresh.size(); ++i) fresh[i] = static_cast<char>('A' + (i / 512) % 26);
  put_file(backing / "slot", old);
  begin();
  Handle h = open_file("/slot");
  write(h, "/slot", fresh, static_cast<off_t>(c.offset));
  rf->close(h);
  end();

  const std::uint64_t first = c.offset / kSectorSize;
  const std::uint64_t last = (c.offset + c.length - 1) / kSectorSize;
  std::set<std::vector<std::uint64_t>> masks;
  for (std::uint64_t seed = 0; seed < 24; ++seed) {
    auto j = crash(2, CrashMode::torn, seed);
    ASSERT_FALSE(j["torn"].is_null());
    EXPECT_EQ(j["torn"]["op"], 1);
    EXPECT_EQ(j["torn"]["sectors"], last - first + 1);
    auto landed = j["torn"]["landed"].get<std::vector<std::uint64_t>>();
    // Torn: some sectors land, some do not.
    EXPECT_FALSE(landed.empty());
    EXPECT_LT(landed.size(), last - first + 1);
    masks.insert(landed);
    // Byte by byte: a landed sector's part of the write is new, the rest old.
    std::string want = old;
    for (auto sct : landed) {
      const std::uint64_t lo = std::max(c.offset, (first + sct) * kSectorSize);
      const std::uint64_t hi = std::min(c.offset + c.length, (first + sct + 1) * kSectorSize);
      want.replace(lo, hi - lo, fresh.substr(lo - c.offset, hi - lo));
    }
    ASSERT_EQ(at("slot"), want) << "seed " << seed;
    // Deterministic: the same seed again, the same bytes and description.
    const std::string once = *at("slot");
    auto again = crash(2, CrashMode::torn, seed);
    EXPECT_EQ(again, j);
    EXPECT_EQ(at("slot"), once);
  }
  const std::uint64_t proper_subsets = (std::uint64_t{1} << (last - first + 1)) - 2;
  EXPECT_GE(masks.size(), std::min<std::uint64_t>(3, proper_subsets)) << "the seed does not choose the sectors";
}

INSTANTIATE_TEST_SUITE_P(Writes, TornWrite,
                         ::testing::Values(TornCase{"aligned_8_sectors", 512, 4096},
                                           TornCase{"unaligned_3_sectors", 100, 1000},
                                           TornCase{"two_sectors", 1024, 1024}),
                         [](const auto& tp) { return std::string(tp.param.name); });

TEST_F(CrashModelTest, TornKeepsTheOpsBeforeTheTornWrite) {
  put_file(backing / "a", std::string(1024, 'o'));
  put_file(backing / "b", std::string(1024, 'o'));
  begin();
  Handle ha, hb;
  ASSERT_EQ(rf->open("/a", O_WRONLY, ha), 0);
  ASSERT_EQ(rf->open("/b", O_WRONLY, hb), 0);
  write(ha, "/a", std::string(1024, 'A'));  // 1
  write(hb, "/b", std::string(1024, 'B'));  // 2
  rf->close(ha);
  rf->close(hb);
  end();
  bool tore_second = false;
  for (std::uint64_t seed = 0; seed < 16; ++seed) {
    auto plan = model->plan({3, CrashMode::torn, seed});
    crash(3, CrashMode::torn, seed);
    if (plan.torn_op == 2) {
      tore_second = true;
      EXPECT_EQ(at("a"), std::string(1024, 'A')) << "the write before the torn one persists whole";
      EXPECT_EQ(plan.kept, (std::vector<std::uint64_t>{1, 2}));
    } else {
      EXPECT_EQ(at("b"), std::string(1024, 'o')) << "the write after the torn one is lost";
      EXPECT_EQ(plan.dropped, (std::vector<std::uint64_t>{2}));
    }
  }
  EXPECT_TRUE(tore_second);
}

// ---- directory entries -----------------------------------------------------

struct DirCase {
  const char* name;
  std::function<void(CrashModelTest&, RecordingFolder&)> before;  // in the backing folder, before the snapshot
  std::function<void(CrashModelTest&, RecordingFolder&)> ops;
  std::map<std::string, std::optional<std::string>> expect;  // after a `lost` cut at the end
  std::vector<std::string> lost_files;
};

class DirectoryEntries : public CrashModelTest, public ::testing::WithParamInterface<DirCase> {
 public:
  using CrashModelTest::write_file;
};

TEST_P(DirectoryEntries, AreDurableByTheirDirectorysFsync) {
  const auto& c = GetParam();
  {
    RecordingFolder setup(backing, OpLog(s.dir()));
    rf.reset();
    if (c.before) c.before(*this, setup);
  }
  begin();
  c.ops(*this, *rf);
  end();
  auto j = crash(end_cut(), CrashMode::lost);
  for (const auto& [path, want] : c.expect) EXPECT_EQ(at(path), want) << path << "\n" << j.dump(1);
  EXPECT_EQ(j["lost_files"].get<std::vector<std::string>>(), c.lost_files) << j.dump(1);
}

void put(RecordingFolder& f, const std::string& path, const std::string& data, bool sync) {
  Handle h;
  ASSERT_EQ(f.create(path, O_WRONLY | O_TRUNC, 0644, h), 0);
  ASSERT_EQ(f.write(h, path, data, 0), static_cast<ssize_t>(data.size()));
  if (sync) {
    ASSERT_EQ(f.fsync(h, path, false), 0);
  }
  f.close(h);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, DirectoryEntries,
    ::testing::Values(
        DirCase{"created_file_without_dir_fsync_vanishes", nullptr,
                [](auto&, RecordingFolder& f) { put(f, "/new", "data", true); },
                {{"new", std::nullopt}},
                {"/new"}},
        DirCase{"created_file_with_dir_fsync_stays", nullptr,
                [](auto&, RecordingFolder& f) {
                  put(f, "/new", "data", true);
                  ASSERT_EQ(f.fsync_dir("/"), 0);
                },
                {{"new", "data"}},
                {}},
        DirCase{"dir_fsync_without_file_fsync_keeps_an_empty_file", nullptr,
                [](auto&, RecordingFolder& f) {
                  put(f, "/new", "data", false);
                  ASSERT_EQ(f.fsync_dir("/"), 0);
                },
                {{"new", ""}},
                {}},
        DirCase{"rename_without_dir_fsync_reverts_to_the_old_file",
                [](auto&, RecordingFolder& f) { put(f, "/state", "old", false); },
                [](auto&, RecordingFolder& f) {
                  put(f, "/state.tmp", "new", true);
                  ASSERT_EQ(f.rename("/state.tmp", "/state"), 0);
                },
                {{"state", "old"}, {"state.tmp", std::nullopt}},
                {"/state"}},  // the device's new /state (its data durable) is gone
        DirCase{"rename_of_a_durable_temp_file_without_dir_fsync_leaves_both",
                [](auto&, RecordingFolder& f) { put(f, "/state", "old", false); },
                [](auto&, RecordingFolder& f) {
                  put(f, "/state.tmp", "new", true);
                  ASSERT_EQ(f.fsync_dir("/"), 0);
                  ASSERT_EQ(f.rename("/state.tmp", "/state"), 0);
                },
                {{"state", "old"}, {"state.tmp", "new"}},
                {}},
        DirCase{"rename_with_dir_fsync_persists",
                [](auto&, RecordingFolder& f) { put(f, "/state", "old", false); },
                [](auto&, RecordingFolder& f) {
                  put(f, "/state.tmp", "new", true);
                  ASSERT_EQ(f.rename("/state.tmp", "/state"), 0);
                  ASSERT_EQ(f.fsync_dir("/"), 0);
                },
                {{"state", "new"}, {"state.tmp", std::nullopt}},
                {}},
        DirCase{"rename_across_dirs_needs_both_dirs_synced_one_is_not_enough",
                [](auto&, RecordingFolder& f) {
                  ASSERT_EQ(f.mkdir("/d1", 0755), 0);
                  ASSERT_EQ(f.mkdir("/d2", 0755), 0);
                  put(f, "/d1/x", "payload", false);
                },
                [](auto&, RecordingFolder& f) {
                  ASSERT_EQ(f.rename("/d1/x", "/d2/x"), 0);
                  ASSERT_EQ(f.fsync_dir("/d2"), 0);
                },
                {{"d1/x", "payload"}, {"d2/x", std::nullopt}},
                {}},
        DirCase{"rename_across_dirs_after_both_syncs_persists",
                [](auto&, RecordingFolder& f) {
                  ASSERT_EQ(f.mkdir("/d1", 0755), 0);
                  ASSERT_EQ(f.mkdir("/d2", 0755), 0);
                  put(f, "/d1/x", "payload", false);
                },
                [](auto&, RecordingFolder& f) {
                  ASSERT_EQ(f.rename("/d1/x", "/d2/x"), 0);
                  ASSERT_EQ(f.fsync_dir("/d2"), 0);
                  ASSERT_EQ(f.fsync_dir("/d1"), 0);
                },
                {{"d1/x", std::nullopt}, {"d2/x", "payload"}},
                {}},
        DirCase{"new_dir_not_synced_in_its_parent_takes_its_files_along", nullptr,
                [](auto&, RecordingFolder& f) {
                  ASSERT_EQ(f.mkdir("/d", 0755), 0);
                  put(f, "/d/f", "data", true);
                  ASSERT_EQ(f.fsync_dir("/d"), 0);
                },
                {{"d/f", std::nullopt}},
                {"/d/f"}},
        DirCase{"unlink_without_dir_fsync_is_undone",
                [](auto&, RecordingFolder& f) { put(f, "/old", "keep", false); },
                [](auto&, RecordingFolder& f) { ASSERT_EQ(f.unlink("/old"), 0); },
                {{"old", "keep"}},
                {}},
        DirCase{"unlink_with_dir_fsync_is_durable",
                [](auto&, RecordingFolder& f) { put(f, "/old", "keep", false); },
                [](auto&, RecordingFolder& f) {
                  ASSERT_EQ(f.unlink("/old"), 0);
                  ASSERT_EQ(f.fsync_dir("/"), 0);
                },
                {{"old", std::nullopt}},
                {}},
        DirCase{"data_follows_the_file_across_a_rename_that_did_not_persist", nullptr,
                [](auto&, RecordingFolder& f) {
                  Handle h;
                  ASSERT_EQ(f.create("/tmp", O_WRONLY, 0644, h), 0);
                  ASSERT_EQ(f.fsync_dir("/"), 0);
                  ASSERT_EQ(f.rename("/tmp", "/final"), 0);
                  ASSERT_EQ(f.write(h, "/final", std::string_view("data"), 0), 4);
                  ASSERT_EQ(f.fsync(h, "/final", false), 0);
                  f.close(h);
                },
                {{"tmp", "data"}, {"final", std::nullopt}},
                {}},
        DirCase{"write_through_an_unlinked_handle_lands_in_the_file_if_the_unlink_is_lost",
                [](auto&, RecordingFolder& f) { put(f, "/log", "", false); },
                [](auto&, RecordingFolder& f) {
                  Handle h;
                  ASSERT_EQ(f.open("/log", O_WRONLY, h), 0);
                  ASSERT_EQ(f.unlink("/log"), 0);
                  ASSERT_EQ(f.write(h, "", std::string_view("late"), 0), 4);
                  ASSERT_EQ(f.fsync(h, "", false), 0);
                  f.close(h);
                },
                {{"log", "late"}},
                {}},
        DirCase{"hard_link_without_dir_fsync_vanishes_the_original_stays",
                [](auto&, RecordingFolder& f) { put(f, "/a", "A", false); },
                [](auto&, RecordingFolder& f) { ASSERT_EQ(f.link("/a", "/b"), 0); },
                {{"a", "A"}, {"b", std::nullopt}},
                {}}),
    [](const auto& tp) { return std::string(tp.param.name); });

TEST_F(CrashModelTest, RenameExchangeIsAtomicAndDurableByBothDirs) {
  put_file(backing / "a", "A");
  put_file(backing / "b", "B");
  begin();
  ASSERT_EQ(rf->rename("/a", "/b", RENAME_EXCHANGE), 0);  // 1
  ASSERT_EQ(rf->fsync_dir("/"), 0);                         // 2
  end();
  crash(2, CrashMode::lost);
  EXPECT_EQ(at("a"), "A");
  EXPECT_EQ(at("b"), "B");
  crash(3, CrashMode::lost);
  EXPECT_EQ(at("a"), "B");
  EXPECT_EQ(at("b"), "A");
}

// ---- fdatasync vs fsync, O_SYNC, sync -------------------------------------

struct SyncCase {
  const char* name;
  bool datasync;
  unsigned want_mode;
};

class DataVsFull : public CrashModelTest, public ::testing::WithParamInterface<SyncCase> {};

TEST_P(DataVsFull, FdatasyncMakesDataDurableNotTheMode) {
  put_file(backing / "f", "old");
  fs::permissions(backing / "f", fs::perms(0600));
  begin();
  Handle h;
  ASSERT_EQ(rf->open("/f", O_WRONLY, h), 0);
  ASSERT_EQ(rf->chmod("/f", 0640), 0);
  write(h, "/f", "new");
  ASSERT_EQ(rf->fsync(h, "/f", GetParam().datasync), 0);
  rf->close(h);
  end();
  crash(end_cut(), CrashMode::lost);
  EXPECT_EQ(at("f"), "new");
  EXPECT_EQ(static_cast<unsigned>(fs::status(target / "f").permissions()), GetParam().want_mode);
}

INSTANTIATE_TEST_SUITE_P(Barriers, DataVsFull,
                         ::testing::Values(SyncCase{"fdatasync", true, 0600}, SyncCase{"fsync", false, 0640}),
                         [](const auto& tp) { return std::string(tp.param.name); });

struct OSyncCase {
  const char* name;
  int flag;
  OpKind barrier;
};

class OSyncWrites : public CrashModelTest, public ::testing::WithParamInterface<OSyncCase> {};

TEST_P(OSyncWrites, AreDurableAtOnce) {
  put_file(backing / "env", "old");
  begin();
  Handle h;
  ASSERT_EQ(rf->open("/env", O_WRONLY | GetParam().flag, h), 0);
  write(h, "/env", "new");
  // The kernel's own fsync after an O_SYNC write is not recorded twice.
  ASSERT_EQ(rf->fsync(h, "/env", GetParam().barrier == OpKind::fdatasync), 0);
  rf->close(h);
  end();
  ASSERT_EQ(log->size(), 2u);
  EXPECT_EQ(log->at(1).kind, OpKind::write);
  EXPECT_EQ(log->at(2).kind, GetParam().barrier);
  EXPECT_TRUE(log->at(2).flags & op_flag_implied);
  crash(3, CrashMode::lost);
  EXPECT_EQ(at("env"), "new");
  // A cut inside the write (before its implied barrier) may lose it.
  crash(2, CrashMode::lost);
  EXPECT_EQ(at("env"), "old");
}

INSTANTIATE_TEST_SUITE_P(Flags, OSyncWrites,
                         ::testing::Values(OSyncCase{"o_sync", O_SYNC, OpKind::fsync},
                                           OSyncCase{"o_dsync", O_DSYNC, OpKind::fdatasync}),
                         [](const auto& tp) { return std::string(tp.param.name); });

TEST_F(CrashModelTest, GlobalSyncMakesEverythingBeforeItDurable) {
  put_file(backing / "gone", "x");
  begin();
  ASSERT_EQ(rf->mkdir("/d", 0750), 0);
  write_file("/d/f", "data", false);
  ASSERT_EQ(rf->unlink("/gone"), 0);
  ASSERT_EQ(rf->chmod("/d/f", 0600), 0);
  ASSERT_EQ(rf->sync(), 0);
  write_file("/after", "late", false);
  end();
  crash(end_cut(), CrashMode::lost);
  EXPECT_EQ(at("d/f"), "data");
  EXPECT_EQ(static_cast<unsigned>(fs::status(target / "d/f").permissions()), 0600u);
  EXPECT_EQ(static_cast<unsigned>(fs::status(target / "d").permissions()), 0750u);
  EXPECT_EQ(at("gone"), std::nullopt);
  EXPECT_EQ(at("after"), std::nullopt);
}

// ---- determinism, evidence, efficiency ------------------------------------

TEST_F(CrashModelTest, SameInputsGiveByteIdenticalStates) {
  put_file(backing / "slot", std::string(64 * 1024, 's'));
  begin();
  Handle h = open_file("/slot");
  for (int i = 0; i < 40; ++i) write(h, "/slot", std::string(1000 + i, static_cast<char>('a' + i % 26)), i * 1500);
  rf->close(h);
  write_file("/x", "x", true);
  ASSERT_EQ(rf->rename("/x", "/y"), 0);
  end();
  for (auto mode : kAllCrashModes) {
    for (std::uint64_t cut : {std::uint64_t{5}, std::uint64_t{30}, end_cut()}) {
      auto j1 = model->materialize({cut, mode, 7}, s / "t1");
      auto j2 = model->materialize({cut, mode, 7}, s / "t2");
      EXPECT_EQ(j1, j2);
      EXPECT_EQ(tree(s / "t1"), tree(s / "t2")) << to_string(mode) << " cut " << cut;
    }
  }
}

TEST_F(CrashModelTest, DescriptionNamesKeptAndDroppedOps) {
  put_file(backing / "f", std::string(2048, 'o'));
  begin();
  Handle h = open_file("/f");
  write(h, "/f", std::string(1024, 'a'));          // 1
  ASSERT_EQ(rf->fsync(h, "/f", false), 0);          // 2
  write(h, "/f", std::string(512, 'b'), 1024);      // 3
  rf->close(h);
  end();
  auto j = crash(4, CrashMode::lost);
  EXPECT_EQ(j["cut"], 4);
  EXPECT_EQ(j["mode"], "lost");
  EXPECT_EQ(j["durable"], nlohmann::json::parse("[[1,1]]"));
  ASSERT_EQ(j["pending"].size(), 1u);
  EXPECT_EQ(j["pending"][0]["op"], 3);
  EXPECT_EQ(j["pending"][0]["path"], "/f");
  EXPECT_EQ(j["pending"][0]["offset"], 1024);
  EXPECT_EQ(j["pending"][0]["length"], 512);
  EXPECT_EQ(j["pending"][0]["kept"], false);
  EXPECT_TRUE(j["torn"].is_null());
}

TEST_F(CrashModelTest, UntouchedFilesAreCopiesNotTheSnapshotsInodes) {
  put_file(backing / "big", std::string(4096, 'b'));
  put_file(backing / "small", "s");
  begin();
  write_file("/small", "t", true);
  end();
  crash(end_cut(), CrashMode::lost);
  put_file(target / "big", "changed by the device");
  EXPECT_EQ(read_file(snapshot / "big"), std::string(4096, 'b'));
}

TEST(CrashModeNames, RoundTrip) {
  for (auto m : kAllCrashModes) EXPECT_EQ(parse_crash_mode(to_string(m)), m);
  EXPECT_EQ(parse_crash_mode("sometimes"), std::nullopt);
}

}  // namespace
}  // namespace otarig::drivers::storage
