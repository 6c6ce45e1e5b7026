// The virtual board's storage: NOR flash rules, counted cuts, torn operations,
// generations, the boot-state log and the anti-rollback counter.
#include "otarig/drivers/virtual/flash.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>

#include "otarig/drivers/virtual/boot_state.hpp"

namespace otarig::drivers::vboard {
namespace {

FlashGeometry small() {
  FlashGeometry g;
  g.slot_size = 8 * 1024;
  g.sector_size = 1024;
  g.program_align = 8;
  return g;
}

Bytes filled(std::size_t n, std::uint8_t v) { return Bytes(n, v); }

std::string fmt_hex(std::uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%08llx", static_cast<unsigned long long>(v));
  return buf;
}

template <class F>
std::string logic_error_of(F&& f) {
  try {
    f();
  } catch (const std::logic_error& e) {
    return e.what();
  }
  return "(no std::logic_error)";
}

// ---------------------------------------------------------------------------- geometry

TEST(FlashGeometry, DefaultLayout) {
  FlashGeometry g;
  EXPECT_EQ(g.slot_offset(0), 0u);
  EXPECT_EQ(g.slot_offset(1), 1u << 20);
  EXPECT_EQ(g.metadata_offset(), 2u << 20);
  EXPECT_EQ(g.counter_offset(), (2u << 20) + 2 * 4096);
  EXPECT_EQ(g.total_size(), (2u << 20) + 3 * 4096);
  EXPECT_EQ(g.slot_of(0), 0);
  EXPECT_EQ(g.slot_of((1u << 20) - 1), 0);
  EXPECT_EQ(g.slot_of(1u << 20), 1);
  EXPECT_EQ(g.slot_of(g.metadata_offset()), -1);
  EXPECT_TRUE(g.problem().empty());
}

struct GeometryCase {
  const char* name;
  FlashGeometry g;
  const char* problem;
};
class BadGeometry : public ::testing::TestWithParam<GeometryCase> {};

TEST_P(BadGeometry, IsNamed) {
  auto p = GetParam().g.problem();
  EXPECT_NE(p.find(GetParam().problem), std::string::npos) << p;
  EXPECT_THROW(NorFlash{GetParam().g}, std::invalid_argument);
}

FlashGeometry with(void (*edit)(FlashGeometry&)) {
  FlashGeometry g = small();
  edit(g);
  return g;
}

INSTANTIATE_TEST_SUITE_P(
    Rules, BadGeometry,
    ::testing::Values(
        GeometryCase{"align3", with([](FlashGeometry& g) { g.program_align = 3; }), "program_align"},
        GeometryCase{"align16", with([](FlashGeometry& g) { g.program_align = 16; }), "program_align"},
        GeometryCase{"sector", with([](FlashGeometry& g) { g.sector_size = 1000; }), "slot_size"},
        GeometryCase{"tiny_sector", with([](FlashGeometry& g) { g.sector_size = 32; }), "sector_size"},
        GeometryCase{"slot", with([](FlashGeometry& g) { g.slot_size = 1500; }), "slot_size"},
        GeometryCase{"meta", with([](FlashGeometry& g) { g.metadata_sectors = 1; }), "metadata"}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

// ---------------------------------------------------------------------------- NOR rules

TEST(NorFlash, StartsErased) {
  NorFlash f(small());
  EXPECT_EQ(f.bytes().size(), small().total_size());
  EXPECT_TRUE(std::all_of(f.bytes().begin(), f.bytes().end(), [](auto b) { return b == 0xFF; }));
  EXPECT_EQ(f.state().erase_counts, std::vector<std::uint32_t>(small().sector_count(), 0));
}

TEST(NorFlash, ProgramOnlyClearsBits) {
  NorFlash f(small());
  f.program(16, filled(8, 0xF0), "t");
  EXPECT_EQ(f.read(16, 8)[0], 0xF0);
  f.program(16, filled(8, 0x30), "t");  // clears more bits: allowed
  EXPECT_EQ(f.read(16, 8)[0], 0x30);
  f.program(16, filled(8, 0x30), "t");  // same value again: allowed
  auto msg = logic_error_of([&] { f.program(16, filled(8, 0x31), "t"); });
  EXPECT_NE(msg.find("0x00000010"), std::string::npos) << msg;
  EXPECT_NE(msg.find("0 to 1"), std::string::npos) << msg;
  f.erase(0, "t");
  EXPECT_EQ(f.read(16, 1)[0], 0xFF);
  f.program(16, filled(8, 0x31), "t");
  EXPECT_EQ(f.read(16, 1)[0], 0x31);
}

TEST(NorFlash, RejectedOperationsAreModelErrorsNamingTheAddress) {
  NorFlash f(small());
  const auto end = small().total_size();
  struct Case {
    std::function<void()> op;
    std::string needle;
  };
  std::vector<Case> cases{
      {[&] { f.program(4, filled(8, 0), "t"); }, "0x00000004"},
      {[&] { f.program(8, filled(12, 0), "t"); }, "0x00000008"},
      {[&] { f.program(end, filled(8, 0), "t"); }, fmt_hex(end)},
      {[&] { f.program(end - 8, filled(16, 0), "t"); }, fmt_hex(end - 8)},
      {[&] { f.erase(512, "t"); }, "0x00000200"},
      {[&] { f.erase(end, "t"); }, fmt_hex(end)},
  };
  for (auto& c : cases) {
    auto msg = logic_error_of(c.op);
    EXPECT_NE(msg.find(c.needle), std::string::npos) << msg << " / " << c.needle;
  }
  EXPECT_EQ(f.ops_issued(), 0u) << "a rejected op is not counted";
}

// ---------------------------------------------------------------------------- counting and cuts

TEST(NorFlash, CountsEveryOperationWithItsPhase) {
  NorFlash f(small());
  std::vector<FlashOp> seen;
  f.set_observer([&](const FlashOp& op, std::span<const std::uint8_t> data) {
    seen.push_back(op);
    EXPECT_EQ(data.size(), op.kind == FlashOp::Kind::program ? op.length : 0u);
  });
  f.arm(FlashCut{});
  f.erase(1024, "download");
  f.program(1024, filled(16, 0), "download");
  f.program(small().metadata_offset(), filled(8, 0x55), "stage");
  EXPECT_EQ(f.ops_counted(), 3u);
  EXPECT_EQ(f.ops_issued(), 3u);
  EXPECT_FALSE(f.fired());
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].index, 1u);
  EXPECT_EQ(seen[0].kind, FlashOp::Kind::erase);
  EXPECT_EQ(seen[0].address, 1024u);
  EXPECT_EQ(seen[0].length, 1024u);
  EXPECT_EQ(seen[1].index, 2u);
  EXPECT_EQ(seen[1].length, 16u);
  EXPECT_EQ(seen[2].phase, "stage");
  f.arm(FlashCut{});
  EXPECT_EQ(f.ops_counted(), 0u) << "arm() counts from 1 again";
  EXPECT_EQ(describe(seen[1]), "program 0x00000400+16 (phase download)");
}

// Runs a fixed sequence of four ops; returns how far it got.
int run_sequence(NorFlash& f) {
  int done = 0;
  f.erase(0, "a");
  ++done;
  f.program(0, filled(8, 0x0F), "b");
  ++done;
  f.program(8, filled(8, 0x00), "c");
  ++done;
  f.erase(1024, "d");
  ++done;
  return done;
}

TEST(NorFlash, CutBeforeOpKStopsBeforeIt) {
  for (std::uint64_t k = 1; k <= 4; ++k) {
    NorFlash f(small());
    f.program(1024, filled(8, 0x00), "setup");  // so the erase at op 4 has something to undo
    f.arm(FlashCut{k, false, 0});
    int done = -1;
    try {
      done = run_sequence(f);
    } catch (const PowerLoss& loss) {
      EXPECT_EQ(loss.op.index, k);
      EXPECT_FALSE(loss.torn);
      done = static_cast<int>(k) - 1;
    }
    EXPECT_EQ(done, static_cast<int>(k) - 1);
    EXPECT_EQ(f.ops_counted(), k - 1);
    ASSERT_TRUE(f.fired());
    EXPECT_EQ(f.fired()->index, k);
    EXPECT_EQ(f.fired()->phase, std::string(1, static_cast<char>('a' + k - 1)));
    // Op k did not happen.
    EXPECT_EQ(f.read(0, 1)[0], k == 2 ? 0xFF : (k > 2 ? 0x0F : 0xFF));
    EXPECT_EQ(f.read(8, 1)[0], k > 3 ? 0x00 : 0xFF);
    EXPECT_EQ(f.read(1024, 1)[0], 0x00) << "the erase at op 4 never ran";
    // The cut falls once: later ops run and keep counting.
    f.erase(2048, "after");
    EXPECT_EQ(f.ops_issued(), k + 1);
    EXPECT_EQ(f.fired()->index, k);
  }
}

TEST(NorFlash, ACutBeyondTheLastOpNeverFalls) {
  NorFlash f(small());
  f.arm(FlashCut{5, false, 0});
  EXPECT_EQ(run_sequence(f), 4);
  EXPECT_FALSE(f.fired());
  f.disarm();
  EXPECT_EQ(f.cut().before_op, 0u);
}

// The torn result of one op applied to a fixed starting state.
Bytes torn_program(std::uint64_t seed) {
  NorFlash f(small());
  Bytes start(256);
  for (std::size_t i = 0; i < start.size(); ++i) start[i] = static_cast<std::uint8_t>(0xF0 | (i & 0x0F));
  f.write_raw(0, start);
  f.arm(FlashCut{1, true, seed});
  try {
    f.program(0, filled(256, 0x00), "t");
    ADD_FAILURE() << "no cut";
  } catch (const PowerLoss& loss) {
    EXPECT_TRUE(loss.torn);
  }
  EXPECT_EQ(f.ops_counted(), 1u) << "a torn op counts as applied";
  auto r = f.read(0, 256);
  // Only bits the op clears may have changed, and only from 1 to 0.
  for (std::size_t i = 0; i < 256; ++i) EXPECT_EQ(r[i] & ~start[i] & 0xFF, 0) << i;
  return Bytes(r.begin(), r.end());
}

TEST(NorFlash, TornProgramIsASeededSubsetOfItsBitClears) {
  EXPECT_EQ(torn_program(7), torn_program(7));
  std::set<Bytes> outcomes;
  for (std::uint64_t seed = 0; seed < 20; ++seed) outcomes.insert(torn_program(seed));
  EXPECT_GE(outcomes.size(), 15u) << "the seed decides which bits land";
}

Bytes torn_erase(std::uint64_t seed, std::uint32_t* erase_count) {
  NorFlash f(small());
  f.write_raw(1024, filled(1024, 0x5A));
  f.arm(FlashCut{1, true, seed});
  EXPECT_THROW(f.erase(1024, "t"), PowerLoss);
  *erase_count = f.state().erase_counts[1];
  auto r = f.read(1024, 1024);
  for (auto b : r) EXPECT_TRUE(b == 0xFF || b == 0x5A);
  return Bytes(r.begin(), r.end());
}

TEST(NorFlash, TornEraseLeavesASeededSubsetOfBytesErased) {
  std::uint32_t count = 0;
  EXPECT_EQ(torn_erase(3, &count), torn_erase(3, &count));
  EXPECT_EQ(count, 1u) << "a torn erase still wears the sector";
  std::set<std::size_t> erased_counts;
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    auto r = torn_erase(seed, &count);
    erased_counts.insert(static_cast<std::size_t>(std::count(r.begin(), r.end(), 0xFF)));
  }
  EXPECT_GE(erased_counts.size(), 10u);
}

TEST(NorFlash, AnErrorCutFailsTheOpAndTheDeviceKeepsGoing) {
  for (bool torn : {false, true}) {
    NorFlash f(small());
    f.write_raw(0, filled(64, 0xF0));
    f.arm(FlashCut{2, torn, 9, true});
    f.program(64, filled(8, 0x00), "a");
    try {
      f.program(0, filled(64, 0x00), "b");
      ADD_FAILURE() << "no error";
    } catch (const FlashError& e) {
      EXPECT_EQ(e.op.index, 2u);
      EXPECT_EQ(e.op.phase, "b");
      EXPECT_NE(std::string(e.what()).find("flash error: program 0x00000000+64 (phase b) failed"), std::string::npos)
          << e.what();
    }
    ASSERT_TRUE(f.fired());
    EXPECT_EQ(f.fired()->index, 2u);
    const auto r = f.read(0, 64);
    if (!torn) {
      EXPECT_TRUE(std::all_of(r.begin(), r.end(), [](std::uint8_t b) { return b == 0xF0; })) << "nothing landed";
      EXPECT_EQ(f.ops_counted(), 1u);
    } else {
      EXPECT_EQ(f.ops_counted(), 2u) << "a partly written op counts";
    }
    // The error falls once; the next ops run (a retry of the same program succeeds).
    f.program(0, filled(64, 0x00), "b");
    EXPECT_EQ(f.read(0, 1)[0], 0x00);
    EXPECT_EQ(f.ops_issued(), 3u);
  }
}

TEST(NorFlash, FlipBitRawInvertsOneStoredBit) {
  NorFlash f(small());
  const auto before = f.generation(0);
  f.flip_bit_raw(100, 3);
  EXPECT_EQ(f.read(100, 1)[0], 0xF7);
  EXPECT_NE(f.generation(0), before);
  EXPECT_THROW(f.flip_bit_raw(small().total_size(), 0), std::logic_error);
}

TEST(NorFlash, CountsErasesPerSector) {
  NorFlash f(small());
  for (int i = 0; i < 3; ++i) f.erase(2048, "t");
  f.erase(small().metadata_offset(), "t");
  const auto& counts = f.state().erase_counts;
  EXPECT_EQ(counts[2], 3u);
  EXPECT_EQ(counts[small().metadata_offset() / 1024], 1u);
  EXPECT_EQ(std::accumulate(counts.begin(), counts.end(), 0u), 4u);
  f.reset_erase_counts();
  EXPECT_EQ(f.state().erase_counts[2], 0u);
}

TEST(NorFlash, GenerationsNameSlotContents) {
  NorFlash f(small());
  const auto a0 = f.generation(0), b0 = f.generation(1);
  EXPECT_EQ(a0, b0) << "two erased slots hold the same bytes";
  f.program(0, filled(8, 0), "t");
  const auto a1 = f.generation(0);
  EXPECT_NE(a1, a0);
  EXPECT_EQ(f.generation(1), b0) << "slot B untouched";
  f.program(small().metadata_offset(), filled(8, 0), "t");
  EXPECT_EQ(f.generation(0), a1) << "metadata writes touch no slot";
  FlashState snap = f.state();
  f.program(small().slot_offset(1), filled(8, 0x0F), "t");
  EXPECT_NE(f.generation(1), b0);
  f.erase(small().slot_offset(1), "t");
  EXPECT_EQ(f.generation(1), b0) << "erased again: the same bytes as before";
  f.write_raw(8, filled(8, 1));
  EXPECT_NE(f.generation(0), a1);
  f.restore(snap);
  EXPECT_EQ(f.generation(0), a1);
  EXPECT_EQ(f.generation(1), b0);
  EXPECT_EQ(f.read(8, 1)[0], 0xFF);
  // Unique across flashes too: the same op on another flash is another content id.
  NorFlash g(small());
  g.program(0, filled(8, 0x33), "t");
  EXPECT_NE(g.generation(0), a1);
}

TEST(NorFlash, AWholeSectorCopyKeepsItsContentId) {
  NorFlash f(small());
  const auto sector = small().sector_size;
  const auto a = small().slot_offset(0), b = small().slot_offset(1);
  for (std::uint64_t s = 0; s < small().slot_size / sector; ++s)
    f.program(b + s * sector, filled(sector, static_cast<std::uint8_t>(s * 7)), "t");
  const auto image_b = f.generation(1);
  // Copy B into A sector by sector: A then holds B's bytes and B's content name.
  for (std::uint64_t s = 0; s < small().slot_size / sector; ++s) {
    f.erase(a + s * sector, "t");
    f.program_copy(a + s * sector, b + s * sector, sector, "t");
  }
  EXPECT_EQ(f.generation(0), image_b);
  EXPECT_TRUE(std::equal(f.read(a, small().slot_size).begin(), f.read(a, small().slot_size).end(),
                         f.read(b, small().slot_size).begin()));
  // A copy onto a sector that was not erased is a new content.
  f.program_copy(a + sector, b, 8, "t");
  EXPECT_NE(f.generation(0), image_b);
  // A torn copy is a new content too.
  f.erase(a, "t");
  f.arm(FlashCut{1, true, 5});
  EXPECT_THROW(f.program_copy(a, b, sector, "t"), PowerLoss);
  EXPECT_NE(f.generation(0), image_b);
}

TEST(NorFlash, MutationsSeeEveryChange) {
  NorFlash f(small());
  auto m = f.mutations();
  f.program(0, filled(8, 0), "t");
  EXPECT_GT(f.mutations(), m);
  m = f.mutations();
  (void)f.read(0, 8);
  EXPECT_EQ(f.mutations(), m);
  f.write_raw(0, filled(1, 0));
  EXPECT_GT(f.mutations(), m);
}

TEST(NorFlash, ReplayCutMatchesTheCountedPath) {
  for (bool torn : {false, true}) {
    for (std::uint64_t seed : {1u, 2u, 99u}) {
      // Counted path.
      NorFlash slow(small());
      slow.write_raw(0, filled(64, 0xF3));
      FlashState before = slow.state();
      slow.arm(FlashCut{3, torn, seed});
      slow.erase(4096, "a");
      slow.program(4096, filled(8, 0), "b");
      FlashState after_two = slow.state();
      EXPECT_THROW(slow.program(0, filled(64, 0x21), "c"), PowerLoss);
      // Replayed.
      NorFlash fast(small());
      fast.restore(before);
      fast.arm(FlashCut{3, torn, seed});
      fast.replay_cut(after_two, *slow.fired(), filled(64, 0x21));
      EXPECT_EQ(Bytes(fast.bytes().begin(), fast.bytes().end()),
                Bytes(slow.bytes().begin(), slow.bytes().end()));
      EXPECT_EQ(fast.ops_counted(), slow.ops_counted());
      EXPECT_EQ(fast.ops_issued(), slow.ops_issued());
      EXPECT_EQ(fast.fired()->index, 3u);
      EXPECT_EQ(fast.state().erase_counts, slow.state().erase_counts);
    }
  }
}

// ---------------------------------------------------------------------------- boot-state log

TEST(BootRecord, EncodesWithCrc) {
  BootRecord r{7, 1, 0, true, false};
  auto bytes = encode(r);
  EXPECT_EQ(decode(bytes), r);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    auto bad = bytes;
    bad[i] ^= 0x10;
    EXPECT_FALSE(decode(bad)) << "byte " << i;
  }
  std::array<std::uint8_t, kBootRecordSize> erased;
  erased.fill(0xFF);
  EXPECT_FALSE(decode(erased));
  EXPECT_EQ(crc32(std::span<const std::uint8_t>()), 0u);
  const std::string check = "123456789";
  EXPECT_EQ(crc32(std::span(reinterpret_cast<const std::uint8_t*>(check.data()), check.size())), 0xCBF43926u);
}

TEST(BootStateLog, NewestRecordWins) {
  NorFlash f(small());
  BootStateLog log(f);
  EXPECT_FALSE(log.read());
  auto a = log.append(BootRecord{0, 0, kNoSlot, false, true}, "p");
  EXPECT_EQ(a.seq, 1u);
  auto b = log.append(BootRecord{0, 0, 1, false, true}, "stage");
  EXPECT_EQ(b.seq, 2u);
  EXPECT_EQ(log.read(), b);
}

TEST(BootStateLog, AlternatesSectorsWhenFull) {
  NorFlash f(small());
  BootStateLog log(f);
  const std::uint64_t per_sector = small().sector_size / kBootRecordSize;
  for (std::uint64_t i = 0; i < 3 * per_sector + 5; ++i) {
    auto w = log.append(BootRecord{0, static_cast<std::uint8_t>(i % 2), kNoSlot, false, true}, "t");
    ASSERT_EQ(log.read(), w);
  }
  const auto meta = small().metadata_offset() / small().sector_size;
  EXPECT_EQ(f.state().erase_counts[meta], 1u);
  EXPECT_EQ(f.state().erase_counts[meta + 1], 2u);
}

TEST(BootStateLog, FormatRawLeavesOneRecord) {
  NorFlash f(small());
  BootStateLog log(f);
  for (int i = 0; i < 5; ++i) log.append(BootRecord{}, "t");
  log.format_raw(BootRecord{0, 1, kNoSlot, false, true});
  auto r = log.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->seq, 1u);
  EXPECT_EQ(r->primary, 1);
}

// A cut (clean or torn) at every op of an append that wraps sectors: the
// log reads either the previous record or the new one, never nothing.
TEST(BootStateLog, EveryCutKeepsTheLastValidRecord) {
  const std::uint64_t per_sector = small().sector_size / kBootRecordSize;
  for (std::uint64_t fill : {per_sector - 1, per_sector, 2 * per_sector - 1, 2 * per_sector}) {
    for (std::uint64_t seed = 0; seed < 12; ++seed) {
      for (std::uint64_t k = 1; k <= 2; ++k) {
        NorFlash f(small());
        BootStateLog log(f);
        BootRecord last;
        for (std::uint64_t i = 0; i < fill; ++i)
          last = log.append(BootRecord{0, 0, kNoSlot, false, true}, "t");
        BootRecord next{0, 1, 0, true, false};
        f.arm(FlashCut{k, seed % 2 == 1, seed});
        BootRecord written;
        bool cut = false;
        try {
          written = log.append(next, "t");
        } catch (const PowerLoss&) {
          cut = true;
        }
        auto r = log.read();
        ASSERT_TRUE(r) << "fill " << fill << " k " << k << " seed " << seed;
        if (!cut) {
          EXPECT_EQ(*r, written);
        } else {
          EXPECT_TRUE(*r == last || (r->seq == last.seq + 1 && r->primary == 1)) << r->seq;
        }
        // The log stays appendable after any cut.
        f.disarm();
        auto again = log.append(BootRecord{0, 0, 1, false, true}, "t");
        EXPECT_EQ(log.read(), again);
        EXPECT_GT(again.seq, last.seq);
      }
    }
  }
}

// ---------------------------------------------------------------------------- anti-rollback counter

TEST(AntiRollbackCounter, RaisesAndNeverFalls) {
  NorFlash f(small());
  AntiRollbackCounter c(f);
  EXPECT_EQ(c.capacity(), small().sector_size / kCounterWord);
  EXPECT_EQ(c.value(), 0u);
  c.raise_to(3, "counter");
  EXPECT_EQ(c.value(), 3u);
  c.raise_to(2, "counter");
  EXPECT_EQ(c.value(), 3u) << "never goes down";
  f.arm(FlashCut{});
  c.raise_to(3, "counter");
  EXPECT_EQ(f.ops_counted(), 0u) << "no op when already there";
  c.raise_to(5, "counter");
  EXPECT_EQ(f.ops_counted(), 1u) << "one op per raise";
  EXPECT_EQ(c.value(), 5u);
  EXPECT_THROW(c.raise_to(c.capacity() + 1, "counter"), std::logic_error);
  c.set_raw(9);
  EXPECT_EQ(c.value(), 9u);
}

TEST(AntiRollbackCounter, TornRaiseStaysBetweenOldAndNewValue) {
  for (std::uint64_t seed = 0; seed < 30; ++seed) {
    NorFlash f(small());
    AntiRollbackCounter c(f);
    c.raise_to(2, "counter");
    f.arm(FlashCut{1, true, seed});
    EXPECT_THROW(c.raise_to(6, "counter"), PowerLoss);
    const auto v = c.value();
    EXPECT_GE(v, 2u);
    EXPECT_LE(v, 6u);
    f.disarm();
    c.raise_to(6, "counter");
    EXPECT_EQ(c.value(), 6u) << "a later raise completes a torn one";
  }
}

}  // namespace
}  // namespace otarig::drivers::vboard
