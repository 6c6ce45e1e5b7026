// Checking a profile's driver sections without binding them (what `otarig
// list boards` does): the same InputError, file and line as binding them for
// a run, and nothing opened, started or listening.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

#include "otarig/harness/bench.hpp"
#include "otarig/harness/releases.hpp"

using namespace otarig;
using namespace otarig::harness;

namespace {

struct Sections {
  std::string device = "device:\n  kind: lab\n";
  std::string power = "power:\n  driver: gpio\n  chip: gpiochip-otarig-absent\n  offset: 17\n";
  std::string console = "console:\n  driver: serial\n  path: /dev/otarig-no-such-tty\n  baud: 115200\n";
  std::string probe;
  std::string link =
      "link:\n  driver: console-command\n  command: \"ota fetch ${url}\\r\\n\"\n  accepted: 'ota: pending'\n"
      "  refused: 'ota: refused: (?P<reason>.*)'\n";
};

std::string lab_board(const Sections& s) {
  return "name: validate-lab\n" + s.device + s.power + s.console + s.probe + s.link + R"(observe:
  status_command: "ota status\r\n"
  status: 'ota: slot=(?P<slot>\w+) version=(?P<version>\S+) digest=(?P<digest>[0-9a-f]{64})'
signing: {key: "test:validate"}
releases:
  factory: {version: 1.0.0+1, security_counter: 1, payload_size: 4KiB}
)";
}

struct BadCase {
  const char* name;
  Sections sections;
  const char* marker;   ///< text on the line the error must name
  const char* message;  ///< what the error must say
};

void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

Sections with(void (*edit)(Sections&)) {
  Sections s;
  edit(s);
  return s;
}

class ValidateTest : public ::testing::Test {
 protected:
  std::filesystem::path dir;
  drivers::DriverRegistry registry;

  void SetUp() override {
    drivers::register_all_drivers(registry);
    if (!registry.power("gpio") || !registry.console("serial") || !registry.device("lab"))
      GTEST_SKIP() << "this otarig is built without the bench or process driver families";
    dir = std::filesystem::temp_directory_path() /
          ("otarig-validate-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  void TearDown() override { std::filesystem::remove_all(dir); }

  BoardProfile write_profile(const std::string& text) {
    const auto file = dir / "board.yaml";
    std::ofstream(file) << text;
    return load_profile(file);
  }

  static int line_of(const std::string& text, const std::string& marker) {
    const auto at = text.find(marker);
    EXPECT_NE(at, std::string::npos) << marker;
    return 1 +
           static_cast<int>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(at), '\n'));
  }
};

class BadSectionTest : public ValidateTest, public ::testing::WithParamInterface<BadCase> {};

TEST_P(BadSectionTest, IsTheInputErrorOfBindingAtItsLine) {
  const auto& c = GetParam();
  const auto text = lab_board(c.sections);
  const auto profile = write_profile(text);
  std::string checked;
  try {
    validate_drivers(profile, registry);
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    checked = e.what();
  }
  const auto where = fmt::format("{}:{}: ", (dir / "board.yaml").string(), line_of(text, c.marker));
  EXPECT_EQ(checked.rfind(where, 0), 0u) << checked << "\nexpected it to start with " << where;
  EXPECT_NE(checked.find(c.message), std::string::npos) << checked;

  // Binding the board for a run fails with the same error.
  const ReleaseSet releases(profile);
  try {
    Bench bench(profile, registry, releases, 1);
    ADD_FAILURE() << "binding the board succeeded";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()), checked);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadSectionTest,
    ::testing::Values(
        BadCase{"GpioPowerUnknownKey", with([](Sections& s) { s.power += "  polarity: low\n"; }), "polarity",
                "power.polarity: unknown key 'polarity'"},
        BadCase{"SerialConsoleWrongType", with([](Sections& s) {
                  s.console = "console:\n  driver: serial\n  path: /dev/ttyACM0\n  baud: fast\n";
                }),
                "baud: fast", "console.baud: expected an integer, found 'fast'"},
        BadCase{"TtyConsoleUnsupportedSpeed", with([](Sections& s) {
                  s.console = "console:\n  driver: tty\n  path: /dev/ttyS0\n  baud: 12345\n";
                }),
                "baud: 12345", "console.baud: unsupported baud rate 12345"},
        BadCase{"OpenOcdAttachWithoutPort",
                with([](Sections& s) { s.probe = "probe:\n  driver: openocd\n  attach: localhost\n"; }),
                "attach: localhost", "probe.attach: expected HOST:PORT"},
        BadCase{"CommandPowerWithoutOff",
                with([](Sections& s) { s.power = "power:\n  driver: command\n  on: relay-on\n"; }),
                "driver: command", "power: missing required key 'off'"},
        BadCase{"UnknownPowerDriver", with([](Sections& s) { s.power = "power:\n  driver: relay\n"; }),
                "driver: relay", "power.driver: unknown power driver 'relay'"},
        BadCase{"PtyConsoleOnALabBoard", with([](Sections& s) { s.console = "console:\n  driver: pty\n"; }),
                "driver: pty", "the 'pty' console is the pty of a process board"},
        BadCase{"ProcessPowerOnALabBoard",
                with([](Sections& s) { s.power = "power:\n  driver: process\n  command: otarig-vboard\n"; }),
                "driver: process", "the 'process' driver needs the device section `kind: process`"},
        BadCase{"VirtualPowerOnALabBoard", with([](Sections& s) { s.power = "power:\n  driver: virtual\n"; }),
                "driver: virtual", "the 'virtual' power driver needs the device section `kind: virtual`"},
        BadCase{"LinkWithoutConsole", with([](Sections& s) { s.console.clear(); }), "driver: console-command",
                "needs a `console:` section"},
        BadCase{"LinkPatternDoesNotCompile", with([](Sections& s) {
                  s.link = "link:\n  driver: console-command\n  accepted: 'ota: ('\n  refused: 'no'\n";
                }),
                "accepted:", "link.accepted"},
        BadCase{"VirtualPowerUnknownKey", with([](Sections& s) {
                  s.device = "device:\n  kind: virtual\n";
                  s.power = "power:\n  driver: virtual\n  off_time: 10ms\n";
                  s.console = "console:\n  driver: virtual\n";
                  s.link = "link:\n  driver: virtual\n";
                }),
                "off_time", "power.off_time: unknown key 'off_time'"},
        BadCase{"HttpLinkWithoutAServer", with([](Sections& s) {
                  s.device = "device:\n  kind: lab\n  network: {server: false}\n";
                }),
                "driver: console-command", "serves over HTTP, but the device has no update server"},
        BadCase{"FeedUrlServedFromAFile", with([](Sections& s) {
                  s.device = "device:\n  kind: lab\n  network: {server: false}\n";
                  s.link = "link:\n  driver: console-command\n  command: \"ota feed ${feed_url}\\r\\n\"\n"
                           "  accepted: 'ota: pending'\n  refused: 'no'\n  serve: file\n";
                }),
                "command: \"ota feed", "they need `serve: http`"},
        BadCase{"DeviceListenNotAnAddress", with([](Sections& s) {
                  s.device = "device:\n  kind: lab\n  network:\n    listen: bench-net\n";
                }),
                "listen: bench-net", "device.network.listen: listen is an IPv4 address"}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST_F(ValidateTest, GoodSectionsOpenNothing) {
  // Binding this board would create its storage folder, listen on a
  // documentation address (which fails), look for a GPIO chip and a serial
  // port that do not exist and start an OpenOCD that is not there: each of
  // those fails or leaves a trace, so checking it must do none of them.
  Sections s;
  const auto storage = dir / "storage";
  s.device = "device:\n  kind: lab\n  storage: " + storage.string() + "\n  network:\n    listen: 192.0.2.1\n";
  s.probe = "probe:\n  driver: openocd\n  start:\n    executable: " + (dir / "no-openocd").string() +
            "\n    config_files: [interface/stlink.cfg, target/stm32f4x.cfg]\n";
  const auto profile = write_profile(lab_board(s));
  EXPECT_NO_THROW(validate_drivers(profile, registry));
  EXPECT_FALSE(std::filesystem::exists(storage)) << "no storage folder is made";
}

}  // namespace
