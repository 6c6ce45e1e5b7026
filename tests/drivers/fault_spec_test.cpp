#include "otarig/drivers/net/fault_spec.hpp"

#include <gtest/gtest.h>

#include "otarig/core/errors.hpp"

using namespace otarig::drivers::net;
using namespace std::chrono_literals;

TEST(FaultSpec, EmptyTextIsNoFaults) {
  EXPECT_TRUE(parse_fault_spec("").empty());
  EXPECT_TRUE(parse_fault_spec("   ").empty());
}

TEST(FaultSpec, TheDocumentedExample) {
  FaultSpec s = parse_fault_spec("down:corrupt@offset=1000,count=4;up:latency=5ms,jitter=2ms;conn=2:down:truncate@b=4096");
  ASSERT_EQ(s.rules.size(), 3u);
  const auto& c = std::get<Corrupt>(s.rules[0].fault);
  EXPECT_EQ(c.offset, 1000u);
  EXPECT_EQ(c.count, 4u);
  EXPECT_TRUE(s.rules[0].down);
  EXPECT_FALSE(s.rules[0].up);
  EXPECT_EQ(s.rules[0].first_connection, 0u);
  const auto& l = std::get<Latency>(s.rules[1].fault);
  EXPECT_EQ(l.delay, 5ms);
  EXPECT_EQ(l.jitter, 2ms);
  EXPECT_TRUE(s.rules[1].up);
  EXPECT_EQ(std::get<Truncate>(s.rules[2].fault).at, 4096u);
  EXPECT_EQ(s.rules[2].first_connection, 2u);
  EXPECT_EQ(s.rules[2].last_connection, 2u);
  EXPECT_EQ(s.rules[2].column, 60u);
  EXPECT_TRUE(s.rules[2].applies_to(2));
  EXPECT_FALSE(s.rules[2].applies_to(3));
}

struct Valid {
  const char* text;
  const char* canonical;
};
class FaultSpecValid : public testing::TestWithParam<Valid> {};

TEST_P(FaultSpecValid, ParsesToCanonicalTextAndRoundTrips) {
  FaultSpec s = parse_fault_spec(GetParam().text);
  EXPECT_EQ(s.text(), GetParam().canonical);
  EXPECT_EQ(parse_fault_spec(s.text()), s);
}

INSTANTIATE_TEST_SUITE_P(
    Table, FaultSpecValid,
    testing::Values(Valid{"down:corrupt@rate=1e-6", "down:corrupt@rate=1e-06"},
                    Valid{"up:corrupt@offset=4KiB,mask=0x80", "up:corrupt@offset=4096,count=1,mask=128"},
                    Valid{"both:truncate=1MiB", "both:truncate@b=1048576"},
                    Valid{"down:reset@b=10", "down:reset@b=10"},
                    Valid{"down:stall=0", "down:stall@b=0"},
                    Valid{"down:throttle=64KiB/s", "down:throttle@rate=65536"},
                    Valid{"down:throttle@rate=1MB", "down:throttle@rate=1000000"},
                    Valid{"down:latency=250us", "down:latency@delay=250us,jitter=0ms"},
                    Valid{"up:latency@delay=2s,jitter=1s", "up:latency@delay=2s,jitter=1s"},
                    Valid{"down:slice=16", "down:slice@size=16,delay=0ms"},
                    Valid{"down:slice=16,delay=3ms", "down:slice@size=16,delay=3ms"},
                    Valid{"down:endless", "down:endless"},
                    Valid{"down:endless@after=100,limit=1GB", "down:endless@after=100,limit=1000000000"},
                    Valid{"conn=2:down:replay=1", "conn=2:down:replay@from=1"},
                    Valid{"conn=3-9:down:replay@from=2", "conn=3-9:down:replay@from=2"},
                    Valid{"impostor", "impostor"},
                    Valid{"conn=1:impostor", "conn=1:impostor"},
                    Valid{" down:stall@b=1 ; up:stall@b=2 ", "down:stall@b=1;up:stall@b=2"},
                    Valid{"server:endless@limit=64MiB", "server:endless@limit=67108864"},
                    Valid{"server:wrong-ranges", "server:wrong-ranges"},
                    Valid{"server:wrong-ranges;server:endless", "server:wrong-ranges;server:endless"},
                    Valid{"down:stall=5;server:endless", "down:stall@b=5;server:endless"},
                    Valid{"certificate=expired", "certificate=expired"},
                    Valid{"certificate@name=rotated-ca", "certificate=rotated-ca"},
                    Valid{"conn=2:certificate=not-yet-valid", "conn=2:certificate=not-yet-valid"},
                    Valid{"outage=refuse,for=4s", "outage=refuse,for=4s"},
                    Valid{"outage@mode=drop,for=2500", "outage=drop,for=2500ms"},
                    Valid{"outage=drop,for=1m;down:latency=5ms", "outage=drop,for=60s;down:latency@delay=5ms,jitter=0ms"}));

struct Invalid {
  const char* text;
  std::size_t column;
  const char* message;  // a part of the error
};
class FaultSpecInvalid : public testing::TestWithParam<Invalid> {};

TEST_P(FaultSpecInvalid, NamesTheColumn) {
  try {
    parse_fault_spec(GetParam().text, "spec");
    FAIL() << "accepted " << GetParam().text;
  } catch (const otarig::InputError& e) {
    std::string want = "spec:" + std::to_string(GetParam().column) + ": ";
    EXPECT_EQ(std::string(e.what()).substr(0, want.size()), want) << e.what();
    EXPECT_NE(std::string(e.what()).find(GetParam().message), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, FaultSpecInvalid,
    testing::Values(Invalid{"down:explode", 6, "unknown fault 'explode'"},
                    Invalid{"corrupt@offset=1", 1, "missing direction"},
                    Invalid{"sideways:corrupt@offset=1", 1, "expected up, down or both"},
                    Invalid{"down:corrupt@offset=1,rate=0.5", 6, "exactly one of offset= or rate="},
                    Invalid{"down:corrupt", 6, "exactly one of offset= or rate="},
                    Invalid{"down:corrupt@offset=1,colour=red", 23, "unknown parameter 'colour'"},
                    Invalid{"down:corrupt@offset=1,offset=2", 23, "given twice"},
                    Invalid{"down:corrupt@offset=12x", 23, "unknown size unit 'x'"},
                    Invalid{"down:corrupt@rate=2", 19, "must be in (0, 1]"},
                    Invalid{"down:corrupt@rate=nan", 19, "probability"},
                    Invalid{"down:corrupt@offset=1,mask=0", 28, "must be 1..255"},
                    Invalid{"down:corrupt@offset=1,count=0", 29, "at least 1"},
                    Invalid{"down:truncate", 14, "missing parameter 'b'"},
                    Invalid{"down:truncate@b=", 17, "empty value"},
                    Invalid{"down:truncate@b=99999999999999999999", 17, "out of range"},
                    Invalid{"down:truncate,b=1", 14, "parameters start with '@'"},
                    Invalid{"down:throttle=0", 15, "at least 1 byte/s"},
                    Invalid{"down:latency=5ms,jitter=6ms", 25, "must not exceed"},
                    Invalid{"down:latency=5h", 15, "unknown duration unit 'h'"},
                    Invalid{"down:slice=0", 12, "at least 1"},
                    Invalid{"down:replay@from=1", 6, "needs conn=N"},
                    Invalid{"conn=1:down:replay@from=1", 13, "needs conn=N"},
                    Invalid{"conn=0:down:stall=1", 6, "count from 1"},
                    Invalid{"conn=5-2:down:stall=1", 6, "ends before it begins"},
                    Invalid{"down:impostor", 1, "whole connection"},
                    Invalid{"down:stall=1;;up:stall=1", 14, "empty rule"},
                    Invalid{"down:stall=1;", 13, "empty rule"},
                    Invalid{"down:stall=1:up", 13, "unexpected ':'"},
                    Invalid{"down: stall=1", 6, "whitespace"},
                    Invalid{"down:", 6, "missing fault"},
                    Invalid{"down:impostor@x=1", 15, "unknown parameter 'x'"},
                    Invalid{"down:stall=1=2", 13, "unexpected character"},
                    Invalid{"server:stall=1", 8, "only endless"},
                    Invalid{"server:endless@after=1", 8, "drop after="},
                    Invalid{"down:wrong-ranges", 6, "write server:wrong-ranges"},
                    Invalid{"wrong-ranges", 1, "write server:wrong-ranges"},
                    Invalid{"server:wrong-ranges@x=1", 21, "unknown parameter 'x'"},
                    Invalid{"conn=1:server:endless", 1, "drop conn="},
                    Invalid{"server:down:endless", 12, "unexpected ':'"},
                    Invalid{"certificate=stale", 13, "unknown certificate 'stale'"},
                    Invalid{"certificate", 12, "missing parameter 'name'"},
                    Invalid{"down:certificate=expired", 1, "whole connection"},
                    Invalid{"outage=refuse", 14, "missing parameter 'for'"},
                    Invalid{"outage=blackhole,for=1s", 8, "refuse or drop"},
                    Invalid{"outage=drop,for=0", 17, "longer than zero"},
                    Invalid{"outage=drop,for=2d", 18, "unknown duration unit 'd'"},
                    Invalid{"conn=1:outage=drop,for=1s", 1, "drop conn="},
                    Invalid{"both:outage=drop,for=1s", 1, "whole connection"},
                    Invalid{"outage=drop,for=1s;outage=refuse,for=1s", 20, "one outage a spec"}));

TEST(FaultSpec, TheOutageIsFoundAmongTheRules) {
  auto spec = parse_fault_spec("down:latency=5ms;outage=drop,for=3s");
  ASSERT_TRUE(spec.outage());
  EXPECT_EQ(spec.outage()->mode, Outage::Mode::drop);
  EXPECT_EQ(spec.outage()->length, std::chrono::seconds(3));
  EXPECT_FALSE(parse_fault_spec("down:latency=5ms").outage());
  EXPECT_EQ(parse_fault_spec("outage=drop,for=3s").proxy_rules().rules.size(), 1u);  // the proxy's own
}

TEST(FaultSpec, ServerRulesAreKeptApartFromTheProxysRules) {
  FaultSpec s = parse_fault_spec("down:truncate@b=9;server:endless@limit=10");
  ASSERT_EQ(s.rules.size(), 2u);
  EXPECT_TRUE(s.rules[1].server);
  EXPECT_FALSE(s.rules[1].applies_to(Direction::down));
  EXPECT_FALSE(s.rules[1].applies_to(Direction::up));
  EXPECT_EQ(s.proxy_rules().text(), "down:truncate@b=9");
  EXPECT_EQ(s.server_rules().text(), "server:endless@limit=10");
  EXPECT_EQ(parse_fault_spec("server:wrong-ranges;down:reset@b=3").proxy_rules().text(), "down:reset@b=3");
  EXPECT_EQ(std::get<Endless>(s.server_rules().rules.at(0).fault).limit, 10u);
}

TEST(FaultSpec, HelpersParseSizesAndDurations) {
  EXPECT_EQ(parse_size("3MiB", "x"), 3u << 20);
  EXPECT_EQ(parse_size("2kB", "x"), 2000u);
  EXPECT_EQ(parse_duration("7", "x"), 7ms);
  EXPECT_EQ(parse_duration("1m", "x"), 60s);
  EXPECT_THROW(parse_size("", "x"), otarig::InputError);
  EXPECT_THROW(parse_duration("2days", "x"), otarig::InputError);
}

TEST(FaultSpec, BuiltInCodeRulesPrint) {
  FaultSpec s;
  FaultRule r;
  r.down = true;
  r.fault = Reset{77};
  s.rules.push_back(r);
  EXPECT_EQ(s.text(), "down:reset@b=77");
  EXPECT_STREQ(fault_name(r.fault), "reset");
}
