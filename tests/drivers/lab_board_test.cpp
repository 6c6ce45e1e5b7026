// Lab boards: the console-command link on bench drivers. CountedPower and
// HeldConsole (cuts from another thread, nothing lost from the transcript),
// the `lab` device section (network host, listen address and port,
// provisioning by command) with errors naming file and line, the example lab
// profiles, and a board bound from the registry with power `command` and
// console `tty` on a pty the test owns, where the test plays the device: it
// takes the update command, downloads through the fault proxy, and a cut at
// a download byte switches the power off by the power command.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <sstream>
#include <thread>

#include "otarig/drivers/bench/external_power.hpp"
#include "otarig/drivers/bench/register.hpp"
#include "otarig/core/errors.hpp"
#include "otarig/drivers/net/http_server.hpp"
#include "otarig/drivers/process/board.hpp"
#include "otarig/drivers/process/register.hpp"
#include "pty.hpp"

namespace otarig::drivers::process {
namespace {

using namespace std::chrono_literals;
using otarig::test::TempDir;
using otarig::test::TestPty;
using otarig::test::wait_until;

std::string slurp(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// ---------------------------------------------------------------------------- CountedPower

// A switch whose on() can be held up, to see what a cut does meanwhile.
class SlowSwitch final : public PowerProtocol {
 public:
  void on() override {
    std::unique_lock lock(mu);
    entered_on = true;
    changed.notify_all();
    changed.wait(lock, [&] { return release_on; });
    ++ons;
    powered = true;
  }
  void off() override {
    std::lock_guard lock(mu);
    if (fail_off) throw BenchError("pdu: outlet 4: relay jammed");
    ++offs;
    powered = false;
  }
  void cycle(std::chrono::milliseconds) override {
    off();
    std::lock_guard lock(mu);
    ++ons;
    powered = true;
  }
  bool is_on() const override {
    std::lock_guard lock(mu);
    return powered;
  }

  mutable std::mutex mu;
  std::condition_variable changed;
  bool entered_on = false, release_on = true, fail_off = false, powered = false;
  int ons = 0, offs = 0;
};

TEST(CountedPower, CountsPowerOnsAndOnTwiceDoesNothing) {
  auto sw = std::make_shared<SlowSwitch>();
  CountedPower power(sw, "lab-test");
  power.on();
  power.on();
  EXPECT_EQ(power.power_ons(), 1u);
  EXPECT_EQ(sw->ons, 1);
  power.cycle(0ms);
  EXPECT_EQ(power.power_ons(), 2u);
  power.off();
  power.off();  // the driver is asked every time: the rig may not know the switch at start
  EXPECT_EQ(sw->offs, 3);
  EXPECT_FALSE(power.is_on());
  EXPECT_EQ(power.cuts(), 0u);
}

TEST(CountedPower, ACutFromAnotherThreadWaitsForThePowerOnAndSwitchesOff) {
  auto sw = std::make_shared<SlowSwitch>();
  sw->release_on = false;
  CountedPower power(sw, "lab-test");
  auto harness = std::async(std::launch::async, [&] { power.on(); });
  {
    std::unique_lock lock(sw->mu);
    ASSERT_TRUE(sw->changed.wait_for(lock, 5s, [&] { return sw->entered_on; }));
  }
  // The proxy's thread cuts while the harness's power-on is still switching.
  auto proxy = std::async(std::launch::async, [&] { power.cut("power cut at byte 10 of the download"); });
  EXPECT_EQ(proxy.wait_for(100ms), std::future_status::timeout) << "the cut did not wait for the power-on";
  {
    std::lock_guard lock(sw->mu);
    sw->release_on = true;
  }
  sw->changed.notify_all();
  harness.get();
  proxy.get();
  EXPECT_FALSE(power.is_on());
  EXPECT_EQ(power.cuts(), 1u);
  EXPECT_EQ(power.last_cut(), "power cut at byte 10 of the download");
  power.cut("again");  // off already: nothing to cut
  EXPECT_EQ(power.cuts(), 1u);
  EXPECT_EQ(sw->offs, 1);
}

TEST(CountedPower, AFailedCutIsReportedAtTheHarnesssNextSwitch) {
  auto sw = std::make_shared<SlowSwitch>();
  CountedPower power(sw, "lab-test");
  power.on();
  sw->fail_off = true;
  std::thread([&] { power.cut("power cut 5 ms after the update command"); }).join();
  EXPECT_EQ(power.cuts(), 1u);
  EXPECT_NE(power.last_cut().find("switching off failed: pdu: outlet 4: relay jammed"), std::string::npos)
      << power.last_cut();
  sw->fail_off = false;
  try {
    power.on();
    FAIL() << "the failed cut was not reported";
  } catch (const BenchError& e) {
    EXPECT_NE(std::string(e.what()).find("lab-test: a power cut failed: pdu: outlet 4"), std::string::npos)
        << e.what();
  }
  EXPECT_NO_THROW(power.off());  // reported once
}

// ---------------------------------------------------------------------------- HeldConsole

class ScriptedConsole final : public ConsoleProtocol {
 public:
  void write(std::string_view bytes) override { written += bytes; }
  std::string read(std::chrono::milliseconds) override {
    if (chunks.empty()) return {};
    auto c = chunks.front();
    chunks.pop_front();
    return c;
  }
  std::deque<std::string> chunks;
  std::string written;
};

TEST(HeldConsole, WhatTheLinkPeeksIsReadByTheHarnessInOrder) {
  auto inner = std::make_shared<ScriptedConsole>();
  inner->chunks = {"boot\n", "ota: receiving\n", "ota: staged\n"};
  HeldConsole console(inner);
  EXPECT_EQ(console.peek(0ms), "boot\n");
  EXPECT_EQ(console.peek(0ms), "ota: receiving\n");
  EXPECT_EQ(console.read(0ms), "boot\nota: receiving\n");
  EXPECT_EQ(console.read(0ms), "ota: staged\n");
  EXPECT_EQ(console.read(0ms), "");
  EXPECT_EQ(console.peek(0ms), "");
  EXPECT_FALSE(console.at_eof());
  console.write("status\n");
  EXPECT_EQ(inner->written, "status\n");
}

// ---------------------------------------------------------------------------- the lab device section

struct BadLab {
  const char* name;
  const char* yaml;
  const char* where;  ///< "lab.yaml:LINE: "
  const char* message;
};

class LabDeviceErrors : public ::testing::TestWithParam<BadLab> {};

TEST_P(LabDeviceErrors, NameFileAndLine) {
  const auto& c = GetParam();
  DriverRegistry registry;
  register_process_drivers(registry);
  auto root = Config::load_string(c.yaml, "lab.yaml");
  BindContext ctx;
  ctx.board_name = "lab-errors";
  BoardParts parts;
  try {
    (*registry.device(root.at("device").at("kind").as_string()))(root.at("device"), ctx, parts);
    if (auto link = root.find("link")) (*registry.link("console-command"))(*link, ctx, parts);
    FAIL() << "accepted";
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind(c.where, 0), 0u) << what;
    EXPECT_NE(what.find(c.message), std::string::npos) << what;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Lab, LabDeviceErrors,
    ::testing::Values(
        BadLab{"ListenIsNotAnAddress", "device:\n  kind: lab\n  network:\n    listen: bench-host\n", "lab.yaml:4: ",
               "listen is an IPv4 address of the rig"},
        BadLab{"PortOutOfRange", "device:\n  kind: lab\n  network: {port: 70000}\n", "lab.yaml:3: ", "0..65535"},
        BadLab{"PkiWithoutTls", "device:\n  kind: lab\n  network:\n    pki: certs\n", "lab.yaml:4: ",
               "`pki` needs TLS"},
        BadLab{"NamesWithoutTls", "device:\n  kind: lab\n  network: {names: [rig.lab]}\n", "lab.yaml:3: ",
               "`names` needs TLS"},
        BadLab{"TlsReasonWithMutualTls",
               "device:\n  kind: lab\n  network:\n    tls: mutual\n    tls_reason: no client certificate\n",
               "lab.yaml:5: ", "not with tls: mutual"},
        BadLab{"TlsReasonSaysSomething", "device:\n  kind: lab\n  network: {tls: tls, tls_reason: ''}\n",
               "lab.yaml:3: ", "say why the device's client"},
        BadLab{"ListenWithoutServer", "device:\n  kind: lab\n  network:\n    server: false\n    listen: 0.0.0.0\n",
               "lab.yaml:5: ", "needs the update server"},
        BadLab{"UnknownKey", "device:\n  kind: lab\n  wings: 2\n", "lab.yaml:3: ", "wings"},
        BadLab{"RecordKeysAreForLabBoards", "device:\n  kind: process\n  model: X\n", "lab.yaml:3: ", "model"},
        BadLab{"CommandNeedsACommand", "device:\n  kind: lab\n  provision:\n    format: command\n", "lab.yaml:4: ",
               "command"},
        BadLab{"FileIsNotForCommand",
               "device:\n  kind: lab\n  provision:\n    format: command\n    command: 'true'\n    file: x.bin\n",
               "lab.yaml:6: ", "does not apply to format command"},
        BadLab{"TimeoutIsForCommand",
               "device:\n  kind: lab\n  provision:\n    format: image-file\n    file: x.bin\n    timeout: 5s\n",
               "lab.yaml:6: ", "applies to formats command and probe only"},
        BadLab{"PoweredIsForCommand",
               "device:\n  kind: lab\n  provision:\n    format: probe\n    address: 0x8000000\n    powered: true\n",
               "lab.yaml:6: ", "applies to format command only"},
        BadLab{"ProbeNeedsAnAddress", "device:\n  kind: lab\n  provision:\n    format: probe\n", "lab.yaml:4: ",
               "address"},
        BadLab{"EraseRegionNeedsASize",
               "device:\n  kind: lab\n  provision:\n    format: probe\n    address: 0x8000000\n"
               "    erase: [{address: 0x8020000}]\n",
               "lab.yaml:6: ", "size"},
        BadLab{"LinkWithoutPower", "device: {kind: lab}\nlink:\n  driver: console-command\n  accepted: a\n  refused: b\n",
               "lab.yaml:3: ", "needs a `power:` section"}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(LabDevice, ALinkNeedsTheNetworkHostOfALabOrProcessDevice) {
  DriverRegistry registry;
  register_process_drivers(registry);
  auto root = Config::load_string("device: {kind: virtual}\nlink:\n  driver: console-command\n", "v.yaml");
  BoardParts parts;  // no DeviceHost: a board this family did not make
  try {
    (*registry.link("console-command"))(root.at("link"), BindContext{}, parts);
    FAIL() << "accepted";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("v.yaml:3: ", 0), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find("`kind: lab`"), std::string::npos) << e.what();
  }
}

std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

TEST(LabDevice, TheProxyListensWhereTheProfileSaysAndTheServerStaysOnLoopback) {
  DriverRegistry registry;
  register_process_drivers(registry);
  const auto port = free_port();
  auto root = Config::load_string(
      "device:\n  kind: lab\n  model: NUCLEO-F446RE\n  network: {listen: 127.0.0.1, port: " + std::to_string(port) +
          "}\n",
      "lab.yaml");
  BindContext ctx;
  ctx.board_name = "lab-listen";
  BoardParts parts;
  (*registry.device("lab"))(root.at("device"), ctx, parts);
  auto host = find_device_host(parts);
  ASSERT_TRUE(host);
  EXPECT_FALSE(find_process_device(parts)) << "a lab board is no process board";
  EXPECT_EQ(host->update_port(), port);
  EXPECT_EQ(host->update_url(), "http://127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(host->expand("http://192.168.7.1:${update_port}/x"), "http://192.168.7.1:" + std::to_string(port) + "/x");
  ASSERT_TRUE(host->server());
  EXPECT_NE(host->server()->port(), port);
  EXPECT_EQ(host->server_url().rfind("http://127.0.0.1:", 0), 0u) << host->server_url();
  EXPECT_FALSE(parts.provision) << "no provision section, no provisioning";
}

TEST(LabDevice, ProvisionsByCommandWithThePowerOff) {
  TempDir dir;
  DriverRegistry registry;
  register_process_drivers(registry);
  auto root = Config::load_string("device:\n  kind: lab\n  network: {server: false}\n  provision:\n"
                                  "    format: command\n"
                                  "    command: 'cp ${image} " +
                                      (dir / "written.bin").string() + " && echo ${size} ${sha256} > " +
                                      (dir / "meta.txt").string() +
                                      "'\n"
                                      "    timeout: 10s\n",
                                  "lab.yaml");
  BindContext ctx;
  ctx.board_name = "lab-provision";
  BoardParts parts;
  (*registry.device("lab"))(root.at("device"), ctx, parts);
  ASSERT_TRUE(parts.provision);
  auto sw = std::make_shared<SlowSwitch>();
  sw->powered = true;
  find_device_host(parts)->set_power(sw);
  const std::vector<std::uint8_t> image{'o', 't', 'a', 0, 1, 2, 3};
  parts.provision->provision(image);
  EXPECT_EQ(slurp(dir / "written.bin"), std::string("ota\0\1\2\3", 7));
  EXPECT_EQ(slurp(dir / "meta.txt").substr(0, 2), "7 ");
  EXPECT_FALSE(sw->powered);

  auto failing = Config::load_string(
      "device:\n  kind: lab\n  network: {server: false}\n  provision: {format: command, command: [sh, -c, "
      "'echo probe not found >&2; exit 4']}\n",
      "lab.yaml");
  BoardParts parts2;
  (*registry.device("lab"))(failing.at("device"), ctx, parts2);
  try {
    parts2.provision->provision(image);
    FAIL() << "a failing command provisioned";
  } catch (const BenchError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("lab-provision: provisioning: command"), std::string::npos) << what;
    EXPECT_NE(what.find("exit status 4: probe not found"), std::string::npos) << what;
  }
}

// A probe that records the commands it is given (OpenOCD's Tcl).
class RecordingProbe final : public ProbeProtocol {
 public:
  std::string command(std::string_view cmd, std::chrono::milliseconds timeout) override {
    commands.emplace_back(cmd);
    timeouts.push_back(timeout);
    return {};
  }
  std::vector<std::uint32_t> read_words(std::uint64_t, std::size_t count) override {
    return std::vector<std::uint32_t>(count, 0);
  }
  std::vector<std::string> commands;
  std::vector<std::chrono::milliseconds> timeouts;
};

TEST(LabDevice, ProvisionsThroughTheProbeWithThePowerOnThenOff) {
  DriverRegistry registry;
  register_process_drivers(registry);
  auto root = Config::load_string("device:\n  kind: lab\n  network: {server: false}\n  provision:\n"
                                  "    format: probe\n"
                                  "    erase:\n"
                                  "      - {address: 0x08020000, size: 384KiB}\n"
                                  "      - {address: 0x080E0000, size: 128KiB}\n"
                                  "    address: 0x08020000\n"
                                  "    timeout: 90s\n",
                                  "lab.yaml");
  BindContext ctx;
  ctx.board_name = "lab-probe";
  BoardParts parts;
  (*registry.device("lab"))(root.at("device"), ctx, parts);
  ASSERT_TRUE(parts.provision);
  const std::vector<std::uint8_t> image{1, 2, 3, 4};
  try {
    parts.provision->provision(image);
    FAIL() << "provisioned without a probe";
  } catch (const BenchError& e) {
    EXPECT_NE(std::string(e.what()).find("lab-probe: provisioning by probe needs a `probe:` section"),
              std::string::npos)
        << e.what();
  }
  auto probe = std::make_shared<RecordingProbe>();
  auto sw = std::make_shared<SlowSwitch>();
  auto host = find_device_host(parts);
  host->set_probe(probe);
  host->set_power(sw);
  parts.provision->provision(image);
  ASSERT_EQ(probe->commands.size(), 4u);
  EXPECT_EQ(probe->commands[0], "reset halt");
  EXPECT_EQ(probe->commands[1], "flash erase_address 0x8020000 0x60000");
  EXPECT_EQ(probe->commands[2], "flash erase_address 0x80e0000 0x20000");
  const auto file = host->storage() / "provision";
  EXPECT_EQ(probe->commands[3].rfind("program {" + file.string() + "/image-", 0), 0u) << probe->commands[3];
  EXPECT_NE(probe->commands[3].find(".bin} verify 0x8020000"), std::string::npos) << probe->commands[3];
  EXPECT_EQ(probe->timeouts.back(), 90s);
  EXPECT_EQ(sw->ons, 1) << "the target is powered while the probe programs it";
  EXPECT_FALSE(sw->powered) << "and off afterwards";
}

// The example lab profiles: their device and link sections are what the
// drivers accept (the bench sections: gpio_test.cpp).
TEST(LabDevice, TheExampleProfilesDeviceAndLinkSectionsParse) {
  for (const char* name : {"nucleo-mcuboot.yaml", "rpi-rauc.yaml"}) {
    SCOPED_TRACE(name);
    auto root = Config::load_file(std::filesystem::path(OTARIG_SOURCE_DIR) / "boards" / "examples" / name);
    EXPECT_EQ(root.at("device").at("kind").as_string(), "lab");
    DeviceConfig device;
    EXPECT_NO_THROW(device = DeviceConfig::from_config(root.at("device"), "lab"));
    EXPECT_NE(device.listen, "") << "a lab board's proxy listens on the bench network";
    EXPECT_NE(device.provision, DeviceConfig::ProvisionFormat::none);
    EXPECT_EQ(root.at("link").at("driver").as_string(), "console-command");
    LinkConfig link;
    EXPECT_NO_THROW(link = LinkConfig::from_config(root.at("link")));
    EXPECT_NE(link.base_url.find("${update_port}"), std::string::npos) << link.base_url;
  }
}

// ---------------------------------------------------------------------------- a lab board from the registry

// Splits "http://HOST:PORT/PATH".
struct Url {
  std::string host;
  std::uint16_t port = 0;
  std::string path;
};
Url parse_url(const std::string& url) {
  Url u;
  auto rest = url.substr(url.find("://") + 3);
  auto slash = rest.find('/');
  auto hostport = rest.substr(0, slash);
  u.path = rest.substr(slash);
  auto colon = hostport.rfind(':');
  u.host = hostport.substr(0, colon);
  u.port = static_cast<std::uint16_t>(std::stoi(hostport.substr(colon + 1)));
  return u;
}

// Downloads `url` as the device would; returns the body bytes received
// before the connection ended, `limit` passed or the power went
// (`powered()` false: what arrives after that reaches nobody).
std::string download(const std::string& url, std::chrono::milliseconds limit,
                     const std::function<bool()>& powered) {
  auto u = parse_url(url);
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(u.port);
  ::inet_pton(AF_INET, u.host.c_str(), &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return {};
  }
  auto req = "GET " + u.path + " HTTP/1.1\r\nHost: " + u.host + "\r\nConnection: close\r\n\r\n";
  (void)::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string got;
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    char buf[8192];
    auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0 || !powered()) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  auto body = got.find("\r\n\r\n");
  return body == std::string::npos ? std::string() : got.substr(body + 4);
}

class LabBoard : public ::testing::Test {
 protected:
  void SetUp() override {
    register_bench_drivers(registry_);
    register_process_drivers(registry_);
    const auto on = (dir_ / "power-on.sh").string(), off = (dir_ / "power-off.sh").string();
    std::ofstream(on) << "#!/bin/sh\necho on >> " << (dir_ / "switch.log").string() << "\n";
    std::ofstream(off) << "#!/bin/sh\necho off >> " << (dir_ / "switch.log").string() << "\n";
    std::filesystem::permissions(on, std::filesystem::perms::owner_all);
    std::filesystem::permissions(off, std::filesystem::perms::owner_all);
    root_ = Config::load_string("device:\n"
                                "  kind: lab\n"
                                "  network: {listen: 127.0.0.1}\n"
                                "power:\n"
                                "  driver: command\n"
                                "  on: [" + on + "]\n"
                                "  off: [" + off + "]\n"
                                "  off_time: 0ms\n"
                                "console:\n"
                                "  driver: tty\n"
                                "  path: " + pty_.slave_path() + "\n"
                                "link:\n"
                                "  driver: console-command\n"
                                "  command: \"fetch ${url}\\r\\n\"\n"
                                "  base_url: http://127.0.0.1:${update_port}\n"
                                "  accepted: '^fetched (?P<bytes>\\d+), rebooting'\n"
                                "  refused: '^refused: (?P<reason>.*)'\n"
                                "  timeout: 10s\n",
                                "lab.yaml");
    ctx_.clock = &clock_;
    ctx_.board_name = "lab-board-test";
    (*registry_.device("lab"))(root_.at("device"), ctx_, parts_);
    (*registry_.power("command"))(root_.at("power"), ctx_, parts_);
    (*registry_.console("tty"))(root_.at("console"), ctx_, parts_);
    (*registry_.link("console-command"))(root_.at("link"), ctx_, parts_);
  }

  /// The device: waits for the update command on the console, downloads the
  /// URL in it, and answers on the console. Returns the body it received.
  std::future<std::string> device(std::chrono::milliseconds limit) {
    return std::async(std::launch::async, [this, limit] {
      std::string typed;
      auto deadline = std::chrono::steady_clock::now() + 5s;
      while (typed.find("\r\n") == std::string::npos && std::chrono::steady_clock::now() < deadline)
        typed += pty_.read_for(100ms);
      auto start = typed.find("fetch ");
      if (start == std::string::npos) return std::string();
      auto url = typed.substr(start + 6, typed.find("\r\n") - start - 6);
      pty_.write("ota: fetching " + url + "\r\n");
      auto powered = [this] { return switches().find("off") == std::string::npos; };
      auto body = download(url, limit, powered);
      // A board whose power went says nothing more.
      if (powered()) pty_.write("fetched " + std::to_string(body.size()) + ", rebooting\r\n");
      return body;
    });
  }

  std::string switches() { return slurp(dir_ / "switch.log"); }

  TempDir dir_;
  TestPty pty_;
  DriverRegistry registry_;
  SteadyClock clock_;
  BindContext ctx_;
  BoardParts parts_;
  Config root_ = Config::load_string("{}", "empty");
};

TEST_F(LabBoard, TheLinkDrivesTheBenchDriversThroughTheWrappers) {
  auto* power = dynamic_cast<CountedPower*>(parts_.power.get());
  ASSERT_TRUE(power) << "the harness switches through the link's CountedPower";
  EXPECT_TRUE(dynamic_cast<bench::CommandPower*>(&power->inner()));
  auto* console = dynamic_cast<HeldConsole*>(parts_.console.get());
  ASSERT_TRUE(console) << "the harness reads through the console the link peeks on";
  EXPECT_TRUE(dynamic_cast<bench::ConsoleReader*>(&console->inner()));
  EXPECT_TRUE(dynamic_cast<CutProtocol*>(parts_.link.get()));
  EXPECT_TRUE(dynamic_cast<NetworkFaultProtocol*>(parts_.link.get()));

  const std::vector<std::uint8_t> image(100000, 0x5a);
  EXPECT_EQ(parts_.link->deliver(image).status, DeliveryStatus::unreachable) << "the board is off";
  parts_.power->on();
  pty_.write("U-Boot 2024.01\r\n");
  auto dev = device(5s);
  auto r = parts_.link->deliver(image);
  EXPECT_EQ(r.status, DeliveryStatus::accepted) << r.detail;
  EXPECT_EQ(dev.get(), std::string(image.begin(), image.end()));
  // What the link watched stays for the harness's transcript.
  std::string transcript;
  for (auto got = parts_.console->read(200ms); !got.empty(); got = parts_.console->read(50ms)) transcript += got;
  EXPECT_NE(transcript.find("U-Boot 2024.01"), std::string::npos) << transcript;
  EXPECT_NE(transcript.find("ota: fetching http://127.0.0.1:"), std::string::npos) << transcript;
  EXPECT_NE(transcript.find("fetched 100000, rebooting"), std::string::npos) << transcript;
  EXPECT_EQ(switches(), "on\n");
}

TEST_F(LabBoard, ACutAtADownloadByteRunsThePowerOffCommandBeforeTheByteArrives) {
  auto* cuts = dynamic_cast<CutProtocol*>(parts_.link.get());
  ASSERT_TRUE(cuts);
  parts_.power->on();
  cuts->arm(ProcessCut::at_byte(40000));
  const std::vector<std::uint8_t> image(200000, 0xa5);
  auto dev = device(3s);
  auto r = parts_.link->deliver(image);
  EXPECT_EQ(r.status, DeliveryStatus::power_lost) << r.detail;
  EXPECT_NE(r.detail.find("byte 40000"), std::string::npos) << r.detail;
  auto fired = cuts->fired();
  ASSERT_TRUE(fired);
  EXPECT_EQ(fired->bytes, 40000u);
  auto body = dev.get();
  EXPECT_LE(body.size(), 40000u) << "byte 40000 reached the device before the power went";
  EXPECT_FALSE(parts_.power->is_on());
  auto& power = dynamic_cast<CountedPower&>(*parts_.power);
  EXPECT_EQ(power.cuts(), 1u);
  EXPECT_EQ(switches(), "on\noff\n") << "the cut ran the power-off command";
  cuts->disarm();
}

}  // namespace
}  // namespace otarig::drivers::process
