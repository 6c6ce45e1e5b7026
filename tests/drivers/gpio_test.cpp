// GPIO power, reset and boot-mode lines: sequencing and timing against the
// in-memory FakeGpio, errors through the real libgpiod, and (label `hw`) a
// real chip named by OTARIG_GPIOCHIP.
#include "otarig/drivers/bench/gpio.hpp"

#include <gtest/gtest.h>

#include <cstdlib>

#include "otarig/drivers/bench/register.hpp"
#include "otarig/core/errors.hpp"

namespace otarig::drivers::bench {
namespace {

using namespace std::chrono_literals;
using Change = FakeGpio::Change;

GpioLineSpec chip_line(std::string chip, unsigned offset, bool active_low = false) {
  GpioLineSpec s;
  s.chip = std::move(chip);
  s.offset = offset;
  s.active_low = active_low;
  return s;
}

GpioLineSpec named_line(std::string name, bool active_low = false) {
  GpioLineSpec s;
  s.name = std::move(name);
  s.active_low = active_low;
  return s;
}

auto gap(const Change& a, const Change& b) { return b.at - a.at; }

class GpioPowerTest : public ::testing::Test {
 protected:
  std::shared_ptr<BenchIo> io = std::make_shared<BenchIo>("gpio-test");
  FakeGpio gpio;
  const std::string relay = "chip 'gpiochip0' line 17";
  const std::string reset = "chip 'gpiochip0' line 27";
  const std::string boot = "line 'BOOT0'";

  GpioPowerConfig config() {
    GpioPowerConfig c;
    c.power = chip_line("gpiochip0", 17, /*active_low=*/true);
    c.off_time = 30ms;
    c.reset = GpioPulse{chip_line("gpiochip0", 27), 20ms};
    c.boot_mode = GpioPulse{named_line("BOOT0"), 15ms};
    c.consumer = "otarig-test";
    return c;
  }
};

TEST_F(GpioPowerTest, RequestsLinesOffAndDrivesActiveLowInverted) {
  GpioPower power(io, config(), gpio.opener());
  ASSERT_TRUE(gpio.exists(relay));
  EXPECT_FALSE(power.is_on());
  EXPECT_TRUE(gpio.level(relay)) << "an active-low relay is off at high level";
  EXPECT_EQ(gpio.consumer(relay), "otarig-test");

  power.on();
  EXPECT_TRUE(power.is_on());
  EXPECT_FALSE(gpio.level(relay));
  power.off();
  EXPECT_FALSE(power.is_on());
  EXPECT_TRUE(gpio.level(relay));
  EXPECT_FALSE(gpio.level(reset)) << "reset is active-high here and released";
}

TEST_F(GpioPowerTest, CycleStaysOffForTheLongerOfRequestedAndConfiguredTime) {
  GpioPower power(io, config(), gpio.opener());
  power.on();
  power.cycle(5ms);  // shorter than off_time: off_time wins
  auto h = gpio.history(relay);
  ASSERT_EQ(h.size(), 4u);  // initial, on, off, on
  EXPECT_FALSE(h[2].active);
  EXPECT_TRUE(h[3].active);
  EXPECT_GE(gap(h[2], h[3]), 30ms);

  power.cycle(60ms);  // longer than off_time: the request wins
  h = gpio.history(relay);
  ASSERT_EQ(h.size(), 6u);
  EXPECT_GE(gap(h[4], h[5]), 60ms);
  EXPECT_TRUE(power.is_on());
}

TEST_F(GpioPowerTest, SettleIsWaitedAfterSwitchingOn) {
  auto c = config();
  c.settle = 40ms;
  GpioPower power(io, c, gpio.opener());
  auto before = std::chrono::steady_clock::now();
  power.on();
  EXPECT_GE(std::chrono::steady_clock::now() - before, 40ms);
}

TEST_F(GpioPowerTest, ResetPulseHasTheProfileWidth) {
  GpioPower power(io, config(), gpio.opener());
  power.reset();
  auto h = gpio.history(reset);
  ASSERT_EQ(h.size(), 3u);  // requested inactive, asserted, released
  EXPECT_TRUE(h[1].active);
  EXPECT_TRUE(h[1].level);
  EXPECT_FALSE(h[2].active);
  EXPECT_GE(gap(h[1], h[2]), 20ms);
}

TEST_F(GpioPowerTest, BootModeIsHeldAcrossResetAndAfterRelease) {
  GpioPower power(io, config(), gpio.opener());
  power.reset_into_boot_mode();
  auto b = gpio.history(boot);
  auto r = gpio.history(reset);
  ASSERT_EQ(b.size(), 3u);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_LE(b[1].at, r[1].at) << "boot mode asserted before reset";
  EXPECT_GE(gap(r[1], r[2]), 20ms) << "reset pulse";
  EXPECT_GE(gap(r[2], b[2]), 15ms) << "boot mode held after reset is released";
  EXPECT_FALSE(b[2].active);
}

TEST_F(GpioPowerTest, BootModeWithoutResetLineCyclesPower) {
  auto c = config();
  c.reset.reset();
  GpioPower power(io, c, gpio.opener());
  power.on();
  power.reset_into_boot_mode();
  auto b = gpio.history(boot);
  auto p = gpio.history(relay);
  ASSERT_EQ(p.size(), 4u);
  EXPECT_LE(b[1].at, p[2].at);
  EXPECT_GE(gap(p[2], p[3]), 30ms);
  EXPECT_GE(gap(p[3], b[2]), 15ms);
}

TEST_F(GpioPowerTest, ResetWithoutResetLineIsBenchError) {
  auto c = config();
  c.reset.reset();
  GpioPower power(io, c, gpio.opener());
  EXPECT_THROW(power.reset(), BenchError);
}

TEST_F(GpioPowerTest, AsyncOffFromTheIoThreadAndSyncCallThereIsRefused) {
  GpioPower power(io, config(), gpio.opener());
  power.on();
  std::string refused;
  io->call("test", 1000ms, [&](Done done) {
    try {
      power.off();  // synchronous on the io thread: refused
    } catch (const std::logic_error& e) {
      refused = e.what();
    }
    power.async_off(done);
  });
  EXPECT_NE(refused.find("async"), std::string::npos) << refused;
  EXPECT_FALSE(power.is_on());
}

TEST_F(GpioPowerTest, ConcurrentRequestsRunInOrder) {
  GpioPower power(io, config(), gpio.opener());
  io->call("test", 1000ms, [&](Done done) {
    power.async_cycle(10ms, [](std::exception_ptr) {});
    power.async_off(done);  // queued behind the whole cycle
  });
  auto h = gpio.history(relay);
  ASSERT_EQ(h.size(), 4u);  // initial off, cycle off, cycle on, off
  EXPECT_TRUE(h[2].active);
  EXPECT_FALSE(h[3].active);
}

TEST_F(GpioPowerTest, LineThatCannotBeRequestedIsBenchErrorNamingChipAndLine) {
  gpio.fail_open(reset, EBUSY);
  try {
    GpioPower power(io, config(), gpio.opener());
    FAIL() << "expected BenchError";
  } catch (const BenchError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("chip 'gpiochip0' line 27"), std::string::npos) << what;
    EXPECT_NE(what.find("reset"), std::string::npos) << what;
    EXPECT_NE(what.find("busy"), std::string::npos) << what;
  }
}

// ---- the real libgpiod ----

TEST(LibgpiodTest, MissingChipIsBenchErrorNamingChipAndLine) {
  GpioPowerConfig c;
  c.power = chip_line("otarig-no-such-chip", 3);
  try {
    GpioPower power(std::make_shared<BenchIo>(), c);
    FAIL() << "expected BenchError";
  } catch (const BenchError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("chip 'otarig-no-such-chip' line 3"), std::string::npos) << what;
    EXPECT_NE(what.find("No such file or directory"), std::string::npos) << what;
  }
}

TEST(LibgpiodTest, MissingNamedLineIsBenchErrorNamingTheLine) {
  GpioPowerConfig c;
  c.power = named_line("OTARIG_NO_SUCH_LINE");
  try {
    GpioPower power(std::make_shared<BenchIo>(), c);
    FAIL() << "expected BenchError";
  } catch (const BenchError& e) {
    EXPECT_NE(std::string(e.what()).find("line 'OTARIG_NO_SUCH_LINE'"), std::string::npos) << e.what();
  }
}

TEST(LibgpiodTest, VersionIsReported) {
  EXPECT_EQ(libgpiod_version().rfind("1.", 0), 0u) << libgpiod_version();
}

// Label `hw`: drives a real chip. OTARIG_GPIOCHIP names the chip,
// OTARIG_GPIO_LINE the offset of a free line (default 0).
TEST(GpioHardwareTest, DrivesARealLine) {
  const char* chip = std::getenv("OTARIG_GPIOCHIP");
  if (chip == nullptr || *chip == '\0')
    GTEST_SKIP() << "no GPIO chip: set OTARIG_GPIOCHIP (and OTARIG_GPIO_LINE)";
  const char* line = std::getenv("OTARIG_GPIO_LINE");
  auto offset = static_cast<unsigned>(line != nullptr ? std::atoi(line) : 0);
  for (bool active_low : {false, true}) {
    auto adapter = open_libgpiod_line(chip_line(chip, offset, active_low), false, "otarig-hw-test");
    EXPECT_FALSE(adapter->active());
    adapter->set_active(true);
    EXPECT_TRUE(adapter->active());
    adapter->set_active(false);
    EXPECT_FALSE(adapter->active());
  }
  GpioPowerConfig c;
  c.power = chip_line(chip, offset);
  c.off_time = 10ms;
  GpioPower power(std::make_shared<BenchIo>(), c);
  power.on();
  power.cycle(10ms);
  EXPECT_TRUE(power.is_on());
  power.off();
}

// ---- the profile section ----

Config section(const std::string& yaml) { return Config::load_string(yaml, "board.yaml").at("power"); }

TEST(GpioProfileTest, ParsesEveryKey) {
  auto c = parse_gpio_power(section(R"(
power:
  driver: gpio
  chip: gpiochip1
  offset: 4
  active_low: true
  off_time: 2s
  settle: 150ms
  initial: on
  reset: {chip: gpiochip1, offset: 5, active_low: true, pulse: 50ms}
  boot_mode: {line: BOOT0, hold: 20ms}
  consumer: bench-3
)"));
  EXPECT_EQ(c.power.describe(), "chip 'gpiochip1' line 4");
  EXPECT_TRUE(c.power.active_low);
  EXPECT_EQ(c.off_time, 2000ms);
  EXPECT_EQ(c.settle, 150ms);
  EXPECT_TRUE(c.initial_on);
  ASSERT_TRUE(c.reset);
  EXPECT_EQ(c.reset->pulse, 50ms);
  EXPECT_TRUE(c.reset->line.active_low);
  ASSERT_TRUE(c.boot_mode);
  EXPECT_EQ(c.boot_mode->line.describe(), "line 'BOOT0'");
  EXPECT_EQ(c.boot_mode->pulse, 20ms);
  EXPECT_EQ(c.consumer, "bench-3");
  EXPECT_EQ(c.device, "power");
}

struct BadSection {
  const char* name;
  const char* yaml;
  const char* message;
};

class GpioProfileErrorTest : public ::testing::TestWithParam<BadSection> {};

TEST_P(GpioProfileErrorTest, NamesFileLineAndProblem) {
  try {
    parse_gpio_power(section(GetParam().yaml));
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    std::string what = e.what();
    EXPECT_EQ(what.rfind("board.yaml:", 0), 0u) << what;
    EXPECT_NE(what.find(GetParam().message), std::string::npos) << what;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, GpioProfileErrorTest,
    ::testing::Values(
        BadSection{"UnknownKey", "power: {driver: gpio, chip: c, offset: 1, pin: 3}", "unknown key 'pin'"},
        BadSection{"NoLine", "power: {driver: gpio, chip: c}", "missing the line"},
        BadSection{"OffsetAndName", "power: {driver: gpio, chip: c, offset: 1, line: X}", "not both"},
        BadSection{"OffsetWithoutChip", "power: {driver: gpio, offset: 1}", "'offset' needs 'chip'"},
        BadSection{"BadInitial", "power: {driver: gpio, line: X, initial: maybe}", "expected on or off"},
        BadSection{"NegativeOffTime", "power: {driver: gpio, line: X, off_time: -1s}", "expected a duration"},
        BadSection{"ZeroPulse", "power: {driver: gpio, line: X, reset: {line: R, pulse: 0ms}}",
                   "longer than 0"},
        BadSection{"UnknownResetKey", "power: {driver: gpio, line: X, reset: {line: R, hold: 1ms}}",
                   "unknown key 'hold'"}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(GpioProfileTest, RegistryFactoryReportsMissingChipAsBenchError) {
  DriverRegistry registry;
  register_bench_drivers(registry);
  const auto* factory = registry.power("gpio");
  ASSERT_NE(factory, nullptr);
  BoardParts parts;
  BindContext ctx;
  ctx.board_name = "gpio-factory-test";
  EXPECT_THROW((*factory)(section("power: {driver: gpio, chip: otarig-no-such-chip, offset: 0}"), ctx, parts),
               BenchError);
  EXPECT_EQ(parts.power, nullptr);
}

// The example lab profiles stay valid for the bench drivers that read them
// (their device and link sections: tests/drivers/lab_board_test.cpp).
TEST(ExampleProfilesTest, DriverSectionsParse) {
  for (const char* name : {"nucleo-mcuboot.yaml", "rpi-rauc.yaml"}) {
    SCOPED_TRACE(name);
    auto file = std::filesystem::path(OTARIG_SOURCE_DIR) / "boards" / "examples" / name;
    auto root = Config::load_file(file);
    auto power = root.at("power");
    if (power.at("driver").as_string() == "gpio") {
      EXPECT_NO_THROW(parse_gpio_power(power));
    } else {
      EXPECT_NO_THROW(parse_command_power(power));
    }
    EXPECT_NO_THROW(parse_serial_console(root.at("console")));
    if (auto probe = root.find("probe")) {
      EXPECT_NO_THROW(parse_openocd(*probe, file.parent_path()));
    }
  }
}

}  // namespace
}  // namespace otarig::drivers::bench
