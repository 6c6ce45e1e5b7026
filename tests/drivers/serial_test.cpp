// The libserialport console against ptys. ctest runs this binary with
// LD_PRELOAD=libotarig_serialport_pty_shim.so (tests/support/serialport_pty_shim.c),
// which lets the real libserialport open a pty; everything else here —
// open, configuration, read, write, DTR/RTS, break — is libserialport's own.
#include "otarig/drivers/bench/serial.hpp"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <sys/ioctl.h>
#include <termios.h>

#include <future>

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

using ShimQuery = unsigned (*)(const char*);

ShimQuery shim(const char* symbol) { return reinterpret_cast<ShimQuery>(::dlsym(RTLD_DEFAULT, symbol)); }

class SerialTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(shim("otarig_pty_shim_modem_bits"), nullptr)
        << "run through ctest, or with LD_PRELOAD=" << OTARIG_BINARY_DIR
        << "/tests/support/libotarig_serialport_pty_shim.so: libserialport cannot open a pty without it";
  }
  unsigned modem_bits(const std::string& pts) { return shim("otarig_pty_shim_modem_bits")(pts.c_str()); }
  unsigned breaks(const std::string& pts) { return shim("otarig_pty_shim_break_count")(pts.c_str()); }

  termios slave_termios(const TestPty& device) {
    int fd = ::open(device.slave_path().c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
    termios tio{};
    ::tcgetattr(fd, &tio);
    ::close(fd);
    return tio;
  }

  std::shared_ptr<BenchIo> io = std::make_shared<BenchIo>("serial-test");
  TestPty pty;
};

TEST_F(SerialTest, OpensAPtyAndAppliesItsSettings) {
  SerialSettings s;
  s.baud = 57600;
  s.stop_bits = 2;
  auto port = SerialPort::open(pty.slave_path(), s);
  EXPECT_EQ(port.path(), pty.slave_path());
  EXPECT_GE(port.fd(), 0);
  auto tio = slave_termios(pty);
  EXPECT_EQ(cfgetospeed(&tio), static_cast<speed_t>(B57600));
  EXPECT_EQ(tio.c_cflag & CSIZE, static_cast<tcflag_t>(CS8));
  EXPECT_TRUE(tio.c_cflag & CSTOPB);
  EXPECT_FALSE(tio.c_lflag & (ICANON | ECHO)) << "libserialport sets raw mode";
  EXPECT_EQ(tio.c_cc[VMIN], 1) << "an empty read is EAGAIN, not end of file";
  port.close();
  EXPECT_THROW(port.fd(), std::logic_error);
}

TEST_F(SerialTest, SettingTheDeviceRefusesIsAnErrorNamingIt) {
  // The kernel's pty driver forces 8 data bits without parity; libserialport
  // checks that a setting took effect.
  SerialSettings s;
  s.data_bits = 7;
  try {
    SerialPort::open(pty.slave_path(), s);
    FAIL() << "expected std::system_error";
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find("set 7 data bits"), std::string::npos) << e.what();
  }
}

TEST_F(SerialTest, DtrAndRtsFollowTheSettingsAndTheControls) {
  SerialConsoleConfig c;
  c.path = pty.slave_path();
  c.settings.dtr = false;
  c.settings.rts = true;
  SerialConsole console(io, c);
  EXPECT_EQ(modem_bits(pty.slave_path()) & (TIOCM_DTR | TIOCM_RTS), static_cast<unsigned>(TIOCM_RTS));
  console.set_dtr(true);
  console.set_rts(false);
  EXPECT_EQ(modem_bits(pty.slave_path()) & (TIOCM_DTR | TIOCM_RTS), static_cast<unsigned>(TIOCM_DTR));
}

TEST_F(SerialTest, BreakIsSentForItsDuration) {
  SerialConsoleConfig c;
  c.path = pty.slave_path();
  SerialConsole console(io, c);
  auto before = std::chrono::steady_clock::now();
  console.send_break(40ms);
  EXPECT_GE(std::chrono::steady_clock::now() - before, 40ms);
  EXPECT_EQ(breaks(pty.slave_path()), 1u);
}

TEST_F(SerialTest, ReadsWritesAndTriggers) {
  SerialConsoleConfig c;
  c.path = pty.slave_path();
  c.settings.baud = 115200;
  SerialConsole console(io, c);
  std::promise<std::string> slot;
  console.reader().add_trigger(R"(Booting slot (?P<slot>[AB]))",
                               [&](const TriggerMatch& m) { slot.set_value(m.groups.at("slot")); }, true);
  pty.write("[00.123] MCUboot: Booting slot A\r\n");
  auto f = slot.get_future();
  ASSERT_EQ(f.wait_for(2s), std::future_status::ready);
  EXPECT_EQ(f.get(), "A");
  ASSERT_TRUE(wait_until([&] { return console.transcript().text() == "[00.123] MCUboot: Booting slot A"; }));

  console.write("mcuboot confirm\r\n");
  EXPECT_EQ(pty.read_for(2s, 17), "mcuboot confirm\r\n");
  EXPECT_EQ(console.read(500ms), "[00.123] MCUboot: Booting slot A\r\n");
}

TEST_F(SerialTest, ReconnectsAfterTheAdapterVanishes) {
  TempDir dir;
  auto link = dir / "usb-STMicroelectronics_STLINK-V3_0668FF-if02";
  point_symlink(link, pty.slave_path());
  SerialConsoleConfig c;
  c.path = link.string();
  c.reader.reconnect_interval = 10ms;
  SerialConsole console(io, c);
  EXPECT_EQ(console.port_path(), pty.slave_path()) << "the symlink is resolved for libserialport";

  pty.write("first boot\n");
  ASSERT_TRUE(wait_until([&] { return console.transcript().text() == "first boot"; }));
  pty.close_master();
  ASSERT_TRUE(wait_until([&] { return !console.reader().connected(); }));
  EXPECT_THROW(console.set_dtr(true), BenchError) << "no port while the adapter is gone";

  TestPty replugged;
  point_symlink(link, replugged.slave_path());
  ASSERT_TRUE(wait_until([&] { return console.reader().connected(); }));
  EXPECT_EQ(console.port_path(), replugged.slave_path());
  replugged.write("second boot\n");
  ASSERT_TRUE(wait_until([&] { return console.transcript().text() == "first boot\nsecond boot"; }))
      << console.transcript().format();
  console.write("x");
  EXPECT_EQ(replugged.read_for(2s, 1), "x");
}

TEST_F(SerialTest, MissingPortIsBenchErrorNamingIt) {
  SerialConsoleConfig c;
  c.path = "/dev/serial/by-id/otarig-no-such-adapter";
  try {
    SerialConsole console(io, c);
    FAIL() << "expected BenchError";
  } catch (const BenchError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("console (serial /dev/serial/by-id/otarig-no-such-adapter): open"), std::string::npos)
        << what;
  }
}

TEST_F(SerialTest, NoMatchingUsbAdapterIsBenchErrorNamingIt) {
  EXPECT_NO_THROW(list_serial_ports());
  SerialConsoleConfig c;
  c.usb = UsbMatch{0x0483, 0x374b, "OTARIG-NOT-CONNECTED"};
  try {
    SerialConsole console(io, c);
    FAIL() << "expected BenchError";
  } catch (const BenchError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("no USB serial port 0483:374b serial OTARIG-NOT-CONNECTED"), std::string::npos)
        << what;
  }
}

SerialPortInfo usb(std::string path, std::uint16_t vid, std::uint16_t pid, std::string serial) {
  return SerialPortInfo{std::move(path), "", true, vid, pid, std::move(serial)};
}

TEST(UsbSelectionTest, PicksTheOnePortThatMatches) {
  std::vector<SerialPortInfo> ports{
      SerialPortInfo{"/dev/ttyS0", "ttyS0", false, 0, 0, ""},
      usb("/dev/ttyACM0", 0x0483, 0x374b, "066DFF"),
      usb("/dev/ttyACM1", 0x0483, 0x374b, "0670AA"),
      usb("/dev/ttyUSB0", 0x0403, 0x6001, "FT1234"),
  };
  EXPECT_EQ(select_usb_port({0x0483, 0x374b, "0670AA"}, ports), "/dev/ttyACM1");
  EXPECT_EQ(select_usb_port({0x0403, 0x6001, ""}, ports), "/dev/ttyUSB0");
  try {
    select_usb_port({0x0483, 0x374b, ""}, ports);
    FAIL() << "two adapters match";
  } catch (const BenchError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("2 USB serial ports match 0483:374b"), std::string::npos) << what;
    EXPECT_NE(what.find("/dev/ttyACM0 (0483:374b serial 066DFF)"), std::string::npos) << what;
  }
  EXPECT_THROW(select_usb_port({0x1234, 0x5678, ""}, ports), BenchError);
  try {
    select_usb_port({0x1234, 0x5678, ""}, {});
    FAIL() << "nothing connected";
  } catch (const BenchError& e) {
    EXPECT_NE(std::string(e.what()).find("USB serial ports: none"), std::string::npos) << e.what();
  }
}

Config section(const std::string& yaml) { return Config::load_string(yaml, "nucleo.yaml").at("console"); }

TEST(SerialProfileTest, ParsesEveryKey) {
  auto c = parse_serial_console(section(R"(
console:
  driver: serial
  usb: {vid: "0483", pid: 374b, serial: 0668FF535155878281153036}
  baud: 921600
  data_bits: 7
  parity: odd
  stop_bits: 2
  flow_control: rts_cts
  dtr: off
  rts: on
  reconnect_interval: 500ms
  write_timeout: 3s
  max_line: 1KiB
)"));
  ASSERT_TRUE(c.usb);
  EXPECT_EQ(c.usb->vid, 0x0483);
  EXPECT_EQ(c.usb->pid, 0x374b);
  EXPECT_EQ(c.usb->serial, "0668FF535155878281153036");
  EXPECT_EQ(c.settings.baud, 921600);
  EXPECT_EQ(c.settings.data_bits, 7);
  EXPECT_EQ(c.settings.parity, Parity::odd);
  EXPECT_EQ(c.settings.stop_bits, 2);
  EXPECT_EQ(c.settings.flow, FlowControl::rts_cts);
  EXPECT_EQ(c.settings.dtr, false);
  EXPECT_EQ(c.settings.rts, true);
  EXPECT_EQ(c.reader.reconnect_interval, 500ms);
  EXPECT_EQ(c.reader.write_timeout, 3000ms);
  EXPECT_EQ(c.reader.max_line, 1024u);
  EXPECT_EQ(c.reader.device, "console");
}

TEST(SerialProfileTest, ErrorsNameFileAndLine) {
  auto expect_error = [](const std::string& yaml, const std::string& message) {
    try {
      parse_serial_console(section(yaml));
      ADD_FAILURE() << "expected InputError for " << yaml;
    } catch (const InputError& e) {
      std::string what = e.what();
      EXPECT_EQ(what.rfind("nucleo.yaml:", 0), 0u) << what;
      EXPECT_NE(what.find(message), std::string::npos) << what;
    }
  };
  expect_error("console: {driver: serial}", "missing the port");
  expect_error("console: {driver: serial, path: /dev/ttyACM0, usb: {vid: 1, pid: 2}}", "not both");
  expect_error("console: {driver: serial, path: /dev/ttyACM0, parity: maybe}", "parity is none, odd");
  expect_error("console: {driver: serial, path: /dev/ttyACM0, data_bits: 9}", "data_bits is 5, 6, 7 or 8");
  expect_error("console: {driver: serial, usb: {vid: 10000, pid: 1}}", "16-bit USB id");
  expect_error("console: {driver: serial, usb: {vid: 1, pid: 1, product: x}}", "unknown key 'product'");
  expect_error("console:\n  driver: serial\n  path: /dev/ttyACM0\n  speed: 9600\n", "nucleo.yaml:4");
}

TEST_F(SerialTest, RegistryBuildsAConsoleFromItsSection) {
  DriverRegistry registry;
  register_bench_drivers(registry);
  BoardParts parts;
  BindContext ctx;
  ctx.board_name = "serial-factory-test";
  (*registry.console("serial"))(
      section("console: {driver: serial, path: " + pty.slave_path() + ", baud: 9600}"), ctx, parts);
  ASSERT_NE(parts.console, nullptr);
  EXPECT_EQ(parts.component_versions.at("libserialport"), "0.1.1");
  parts.console->write("hi");
  EXPECT_EQ(pty.read_for(2s, 2), "hi");
}

}  // namespace
}  // namespace otarig::drivers::bench
