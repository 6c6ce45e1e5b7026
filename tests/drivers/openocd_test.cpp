// The OpenOCD probe against the real OpenOCD 0.12: the dummy adapter for
// start-up and the command paths, and the remote_bitbang JTAG TAP simulator
// (tests/support/jtag_tap_sim.cpp) for the scan chain, IR/DR scans and
// restarting OpenOCD after it was killed; the simulator's RISC-V hart
// (tests/support/jtag_tap_sim_riscv.cpp) behind OpenOCD's `riscv` target for
// memory reads, halt, resume and reset.
#include "otarig/drivers/bench/openocd.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>

#include "jtag_tap_sim.hpp"
#include "otarig/drivers/bench/register.hpp"
#include "otarig/core/errors.hpp"
#include "pty.hpp"

namespace otarig::drivers::bench {
namespace {

using namespace std::chrono_literals;
using otarig::test::JtagTapSim;
using otarig::test::TempDir;
using otarig::test::wait_until;

bool openocd_installed() { return std::system("openocd --version >/dev/null 2>&1") == 0; }

bool alive(pid_t pid) {
  if (::kill(pid, 0) != 0) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string ignored, state;
  stat >> ignored >> ignored >> state;
  return state != "Z";
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

OpenOcdConfig dummy_adapter() {
  OpenOcdConfig c;
  c.launch = OpenOcdLaunch{};
  c.launch->commands = {"adapter driver dummy", "transport select jtag"};
  c.command_timeout = 3000ms;
  return c;
}

class OpenOcdTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(openocd_installed()) << "openocd is not installed: run ci/setup"; }
  std::shared_ptr<BenchIo> io = std::make_shared<BenchIo>("openocd-test");
};

TEST_F(OpenOcdTest, StartsOnAFreeLoopbackPortAndRunsCommands) {
  OpenOcdProbe probe(io, dummy_adapter());
  EXPECT_NE(probe.tcl_port(), 0);
  ASSERT_TRUE(probe.server_pid());
  EXPECT_EQ(probe.version(), "Open On-Chip Debugger 0.12.0");
  EXPECT_EQ(probe.command("echo hello"), "hello\n");
  EXPECT_EQ(trim(probe.command("adapter speed 1000")), "adapter speed: 1000 kHz");
  EXPECT_EQ(probe.raw("expr {6 * 7}", 1000ms), "42");
  EXPECT_NE(probe.log_tail().find("Listening on port " + std::to_string(probe.tcl_port())), std::string::npos)
      << probe.log_tail();
}

TEST_F(OpenOcdTest, TclErrorIsBenchErrorNamingTheCommand) {
  OpenOcdProbe probe(io, dummy_adapter());
  try {
    probe.command("reset halt");  // no target behind the dummy adapter
    FAIL() << "expected BenchError";
  } catch (const BenchError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("OpenOCD command 'reset halt' failed"), std::string::npos) << what;
    EXPECT_NE(what.find("invalid command name \"reset\""), std::string::npos) << what;
  }
  EXPECT_THROW(probe.reset(ResetMode::init), BenchError);
  EXPECT_EQ(probe.command("echo {still here}"), "still here\n") << "an error leaves the connection usable";
  // `echo` takes one argument; OpenOCD answers this with a bare error code.
  EXPECT_THROW(probe.command("echo two words"), BenchError);
}

TEST_F(OpenOcdTest, CommandTextReachesOpenOcdVerbatim) {
  OpenOcdProbe probe(io, dummy_adapter());
  EXPECT_EQ(probe.command(R"(echo {a "quoted" $word [bracket] back\slash})"),
            "a \"quoted\" $word [bracket] back\\slash\n");
  EXPECT_EQ(probe.command("set x 5; echo [expr {$x * 2}]"), "10\n") << "the command is evaluated as written";
}

TEST_F(OpenOcdTest, EveryCommandHasADeadline) {
  OpenOcdProbe probe(io, dummy_adapter());
  auto before = std::chrono::steady_clock::now();
  EXPECT_THROW(probe.command("sleep 700", 100ms), TimeoutError);
  EXPECT_LT(std::chrono::steady_clock::now() - before, 600ms);
  EXPECT_EQ(probe.command("echo after"), "after\n") << "the next command reconnects";
  EXPECT_EQ(probe.restarts(), 0u) << "a slow command is not a dead server";
}

TEST_F(OpenOcdTest, ReadsWordsWithReadMemory) {
  OpenOcdProbe probe(io, dummy_adapter());
  // No target behind the dummy adapter: stand in for its read_memory with a
  // proc that answers like OpenOCD 0.12 does, so the reply travels the real RPC.
  probe.raw(R"(proc read_memory {address width count} {
      set out {}
      for {set i 0} {$i < $count} {incr i} { lappend out [format 0x%x [expr {$address + 4 * $i + $width}]] }
      return $out
    })",
            1000ms);
  auto words = probe.read_words(0x20000000, 3);
  EXPECT_EQ(words, (std::vector<std::uint32_t>{0x20000020, 0x20000024, 0x20000028}));
}

TEST_F(OpenOcdTest, FallsBackToMdwWithoutReadMemoryAndReadsTheStatusStruct) {
  auto c = dummy_adapter();
  StatusLayout layout;
  layout.address = 0x2001fc00;
  layout.magic_word = 0;
  layout.magic = 0x4f544153;
  layout.fields = {{"slot", 1}, {"version", 2}, {"counter", 3}};
  c.status = layout;
  OpenOcdProbe probe(io, c);
  probe.raw(R"(proc mdw {address count} {
      echo [format "0x%08x: 4f544153 00000001 00020007 " $address]
      echo [format "0x%08x: 00000005 " [expr {$address + 16}]]
    })",
            1000ms);
  auto status = probe.read_status();
  EXPECT_EQ(status.at("slot"), 1u);
  EXPECT_EQ(status.at("version"), 0x00020007u);
  EXPECT_EQ(status.at("counter"), 5u);

  c.status->magic = 0x12345678;
  OpenOcdProbe other(io, c);
  other.raw("proc read_memory {address width count} { return {0x0 0x1 0x2 0x3} }", 1000ms);
  EXPECT_THROW(other.read_status(), BenchError) << "wrong magic";
}

TEST_F(OpenOcdTest, AttachesToARunningOpenOcdAndLeavesItRunning) {
  OpenOcdProbe server(io, dummy_adapter());
  OpenOcdConfig c;
  c.host = "127.0.0.1";
  c.port = server.tcl_port();
  {
    OpenOcdProbe attached(io, c);
    EXPECT_EQ(attached.version(), "Open On-Chip Debugger 0.12.0");
    EXPECT_FALSE(attached.server_pid());
  }
  ASSERT_TRUE(server.server_pid());
  EXPECT_TRUE(alive(*server.server_pid()));
  EXPECT_EQ(server.command("echo ok"), "ok\n");
}

TEST_F(OpenOcdTest, AttachingToNothingIsBenchError) {
  OpenOcdConfig c;
  c.port = free_loopback_port();
  try {
    OpenOcdProbe probe(io, c);
    FAIL() << "expected BenchError";
  } catch (const BenchError& e) {
    EXPECT_NE(std::string(e.what()).find("attach to OpenOCD at 127.0.0.1:"), std::string::npos) << e.what();
  }
}

TEST_F(OpenOcdTest, StopShutsTheServerDown) {
  OpenOcdProbe probe(io, dummy_adapter());
  auto pid = *probe.server_pid();
  probe.stop();
  EXPECT_FALSE(alive(pid));
  EXPECT_FALSE(probe.server_pid());
  EXPECT_THROW(probe.command("echo x"), BenchError);
  probe.stop();  // idempotent
}

TEST_F(OpenOcdTest, DestructorStopsTheServer) {
  pid_t pid = 0;
  {
    OpenOcdProbe probe(io, dummy_adapter());
    pid = *probe.server_pid();
  }
  EXPECT_FALSE(alive(pid));
}

TEST_F(OpenOcdTest, StartUpFailureQuotesOpenOcd) {
  auto c = dummy_adapter();
  c.launch->commands = {"adapter driver otarig_no_such_adapter"};
  try {
    OpenOcdProbe probe(io, c);
    FAIL() << "expected BenchError";
  } catch (const BenchError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("OpenOCD exited during start-up"), std::string::npos) << what;
    EXPECT_NE(what.find("otarig_no_such_adapter"), std::string::npos) << what;
  }
}

// ---- a JTAG target: the remote_bitbang TAP simulator ----

class OpenOcdJtagTest : public OpenOcdTest {
 protected:
  JtagTapSim sim;

  OpenOcdConfig config() {
    OpenOcdConfig c;
    c.launch = OpenOcdLaunch{};
    c.launch->commands = {"adapter driver remote_bitbang", "remote_bitbang host 127.0.0.1",
                          "remote_bitbang port " + std::to_string(sim.port()), "transport select jtag",
                          "jtag newtap sim cpu -irlen 4 -expected-id 0x4ba00477"};
    c.command_timeout = 3000ms;
    return c;
  }
};

TEST_F(OpenOcdJtagTest, FindsTheTapAndItsIdcode) {
  OpenOcdProbe probe(io, config());
  EXPECT_EQ(sim.connections(), 1u);
  EXPECT_EQ(trim(probe.command("jtag names")), "sim.cpu");
  EXPECT_EQ(probe.command("jtag cget sim.cpu -idcode"), std::to_string(0x4ba00477u));
  EXPECT_NE(probe.command("scan_chain").find("sim.cpu                Y     0x4ba00477 0x4ba00477     4"),
            std::string::npos);
  EXPECT_NE(probe.log_tail().find("tap/device found: 0x4ba00477"), std::string::npos) << probe.log_tail();
}

TEST_F(OpenOcdJtagTest, ScansWriteAndReadTheDataRegister) {
  OpenOcdProbe probe(io, config());
  // A command returns once OpenOCD has sent its bits; the simulator's thread
  // applies them a moment later, hence the waits.
  probe.command("irscan sim.cpu 0x8");
  EXPECT_TRUE(wait_until([&] { return sim.instruction() == 0x8u; })) << sim.instruction();
  EXPECT_EQ(probe.command("drscan sim.cpu 32 0xdeadbeef"), "0badf00d") << "the reset value comes out";
  EXPECT_TRUE(wait_until([&] { return sim.data_register() == 0xdeadbeefu; }))
      << std::hex << sim.data_register();
  EXPECT_EQ(probe.command("drscan sim.cpu 32 0x12345678"), "deadbeef");
  EXPECT_EQ(probe.command("drscan sim.cpu 32 0x12345678"), "12345678");
  probe.command("irscan sim.cpu 0xe");
  EXPECT_EQ(probe.command("drscan sim.cpu 32 0"), "4ba00477") << "IDCODE through a DR scan";
  EXPECT_TRUE(wait_until([&] { return sim.instruction() == 0xeu; }));
  EXPECT_EQ(sim.data_register(), 0x12345678u) << "IDCODE scans leave the data register alone";
}

TEST_F(OpenOcdJtagTest, RestartsOpenOcdAfterItWasKilled) {
  OpenOcdProbe probe(io, config());
  probe.command("irscan sim.cpu 0x8");
  probe.command("drscan sim.cpu 32 0xcafef00d");
  auto old_pid = *probe.server_pid();
  auto old_port = probe.tcl_port();
  ASSERT_EQ(::kill(old_pid, SIGKILL), 0);
  ASSERT_TRUE(wait_until([&] { return !alive(old_pid); }));

  // The next command finds the connection gone, starts OpenOCD again and retries.
  probe.command("irscan sim.cpu 0x8");
  EXPECT_EQ(probe.command("drscan sim.cpu 32 0"), "cafef00d") << "the target kept its state";
  EXPECT_EQ(probe.restarts(), 1u);
  ASSERT_TRUE(probe.server_pid());
  EXPECT_NE(*probe.server_pid(), old_pid);
  EXPECT_EQ(sim.connections(), 2u);
  (void)old_port;
}

// The same TAP as a debug target: OpenOCD's `testee` target type, with both
// reset lines wired, so the probe's reset and halt paths run for real.
class OpenOcdTargetTest : public OpenOcdJtagTest {
 protected:
  OpenOcdConfig target_config() {
    auto c = config();
    c.launch->commands.push_back("reset_config trst_and_srst");
    c.launch->commands.push_back("target create sim.cpu testee -chain-position sim.cpu");
    return c;
  }
};

TEST_F(OpenOcdTargetTest, ResetRunHaltAndInitPulseTheTargetsResetLines) {
  OpenOcdProbe probe(io, target_config());
  EXPECT_EQ(trim(probe.command("target names")), "sim.cpu");
  for (auto mode : {ResetMode::run, ResetMode::halt, ResetMode::init}) {
    const unsigned pulses = sim.srst_pulses(), tap_resets = sim.resets();
    probe.reset(mode);
    EXPECT_TRUE(wait_until([&] { return sim.srst_pulses() > pulses; })) << "SRST was not asserted";
    EXPECT_TRUE(wait_until([&] { return !sim.srst_asserted(); })) << "SRST is still held";
    EXPECT_GT(sim.resets(), tap_resets) << "TRST resets the TAP too";
  }
  EXPECT_NO_THROW(probe.halt());
  EXPECT_NE(probe.log_tail().find("tap/device found: 0x4ba00477"), std::string::npos)
      << "OpenOCD examines the chain again after each reset";
}

TEST_F(OpenOcdTargetTest, ProgramOnATargetWithoutFlashIsBenchErrorNamingTheCommand) {
  OpenOcdProbe probe(io, target_config());
  const auto image = std::filesystem::temp_directory_path() / ("otarig-program-" + std::to_string(::getpid()) + ".bin");
  std::ofstream(image, std::ios::binary) << std::string(256, '\x5a');
  try {
    probe.flash_write_image(image, 0x08020000);
    FAIL() << "expected BenchError: the target has no flash bank";
  } catch (const BenchError& e) {
    EXPECT_NE(std::string(e.what()).find("flash write_image erase {" + image.string() + "} 0x8020000"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(probe.program(image, 0x08020000), BenchError);
  // OpenOCD's `program` is a Tcl procedure of its start-up scripts: in its
  // place, one that records what it was asked shows the exact arguments.
  probe.command("proc program {args} { set ::program_args $args }");
  probe.program(image, 0x08020000, true, true);
  EXPECT_EQ(probe.command("set ::program_args"), image.string() + " verify reset 0x8020000");
  probe.program(image, std::nullopt, false, false);
  EXPECT_EQ(probe.command("set ::program_args"), image.string());
  std::filesystem::remove(image);
}

TEST_F(OpenOcdJtagTest, RegistryStartsOpenOcdFromTheProfile) {
  DriverRegistry registry;
  register_bench_drivers(registry);
  auto yaml = fmt::format(R"(
probe:
  driver: openocd
  start:
    commands:
      - adapter driver remote_bitbang
      - remote_bitbang host 127.0.0.1
      - remote_bitbang port {}
      - transport select jtag
      - jtag newtap sim cpu -irlen 4 -expected-id 0x4ba00477
    startup_timeout: 10s
  command_timeout: 2s
)",
                          sim.port());
  BoardParts parts;
  BindContext ctx;
  ctx.board_name = "openocd-factory-test";
  (*registry.probe("openocd"))(Config::load_string(yaml, "sim.yaml").at("probe"), ctx, parts);
  ASSERT_NE(parts.probe, nullptr);
  EXPECT_EQ(parts.component_versions.at("openocd"), "Open On-Chip Debugger 0.12.0");
  EXPECT_EQ(parts.probe->command("jtag names", 1000ms), "sim.cpu");
}

// ---- a RISC-V hart: OpenOCD's riscv target over the simulator's debug module ----

constexpr std::uint32_t kRam = 0x80000000;  // RiscvDebugModule::Options: 64 KiB

class OpenOcdRiscvTest : public OpenOcdTest {
 protected:
  JtagTapSim sim{JtagTapSim::Options::riscv_target()};

  OpenOcdConfig config() {
    OpenOcdConfig c;
    c.launch = OpenOcdLaunch{};
    c.launch->commands = {
        "adapter driver remote_bitbang", "remote_bitbang host 127.0.0.1",
        "remote_bitbang port " + std::to_string(sim.port()), "transport select jtag",
        fmt::format("jtag newtap riscv cpu -irlen 5 -expected-id 0x{:08x}", JtagTapSim::kRiscvIdcode),
        "target create riscv.cpu riscv -chain-position riscv.cpu", "riscv set_mem_access sysbus",
        // Without this every memory access of a running hart first
        // tries to read its privilege level, which only a halted hart
        // answers, and logs an error.
        "riscv set_enable_virt2phys off"};
    c.command_timeout = 3000ms;
    return c;
  }
};

TEST_F(OpenOcdRiscvTest, ExaminesTheHartAndReadsPreloadedRam) {
  const std::vector<std::uint32_t> status = {0x4f544153, 1, 0x00020007, 5};
  sim.write_memory(kRam + 0xfc00, status);
  std::vector<std::uint32_t> counting(100);
  for (std::size_t i = 0; i < counting.size(); ++i) counting[i] = 0x01010101u * static_cast<std::uint32_t>(i);
  sim.write_memory(kRam + 0x100, counting);

  auto c = config();
  StatusLayout layout;
  layout.address = kRam + 0xfc00;
  layout.magic_word = 0;
  layout.magic = 0x4f544153;
  layout.fields = {{"slot", 1}, {"version", 2}, {"counter", 3}};
  c.status = layout;
  OpenOcdProbe probe(io, c);
  EXPECT_NE(probe.log_tail(40).find("Examined RISC-V core; found 1 harts"), std::string::npos)
      << probe.log_tail(40);
  EXPECT_NE(probe.log_tail(40).find("XLEN=32, misa=0x40001105"), std::string::npos) << probe.log_tail(40);
  auto examined = sim.riscv_record();
  EXPECT_FALSE(examined.halted) << "examine halts the running hart and lets it run again";
  EXPECT_GE(examined.halts, 1u);
  EXPECT_GE(examined.resumes, 1u);
  EXPECT_FALSE(examined.havereset) << "examine acknowledges the power-on reset";

  EXPECT_EQ(probe.read_words(kRam + 0xfc00, 4), status);
  auto fields = probe.read_status();
  EXPECT_EQ(fields.at("slot"), 1u);
  EXPECT_EQ(fields.at("version"), 0x00020007u);
  EXPECT_EQ(fields.at("counter"), 5u);
  EXPECT_EQ(probe.read_words(kRam + 0x100, counting.size()), counting) << "a long read auto-increments";
  EXPECT_EQ(probe.read_words(kRam + 0x100 + 4 * 99, 1), std::vector<std::uint32_t>{0x63636363});
  EXPECT_EQ(sim.riscv_record().halts, examined.halts) << "the system bus reads a running hart's RAM";
}

TEST_F(OpenOcdRiscvTest, HaltAndResumeMoveTheHartInAndOutOfDebugMode) {
  OpenOcdProbe probe(io, config());
  const auto before = sim.riscv_record();
  ASSERT_FALSE(before.halted);
  EXPECT_EQ(trim(probe.command("riscv.cpu curstate")), "running");

  probe.halt();
  auto halted = sim.riscv_record();
  EXPECT_TRUE(halted.halted);
  EXPECT_EQ(halted.halts, before.halts + 1);
  EXPECT_EQ(halted.dcsr_cause, 3u) << "halted by haltreq";
  EXPECT_EQ(trim(probe.command("riscv.cpu curstate")), "halted");
  EXPECT_EQ(probe.command("reg pc"), fmt::format("pc (/32): 0x{:08x}\n", halted.dpc)) << "pc is dpc";

  sim.write_memory(kRam, std::vector<std::uint32_t>{0x12345678});
  EXPECT_EQ(probe.read_words(kRam, 1), std::vector<std::uint32_t>{0x12345678}) << "memory reads while halted";
  EXPECT_NO_THROW(probe.halt()) << "halting a halted hart is no error";
  EXPECT_EQ(sim.riscv_record().halts, halted.halts);

  probe.resume();
  auto resumed = sim.riscv_record();
  EXPECT_FALSE(resumed.halted);
  EXPECT_EQ(resumed.resumes, halted.resumes + 1);
  EXPECT_EQ(trim(probe.command("riscv.cpu curstate")), "running");
}

TEST_F(OpenOcdRiscvTest, ResetHaltAndRunGoThroughNdmreset) {
  const std::vector<std::uint32_t> words = {0xfeedface, 0x00000002};
  sim.write_memory(kRam + 0x800, words);
  OpenOcdProbe probe(io, config());
  for (auto mode : {ResetMode::halt, ResetMode::run, ResetMode::init}) {
    SCOPED_TRACE(static_cast<int>(mode));
    const auto before = sim.riscv_record();
    probe.reset(mode);
    auto after = sim.riscv_record();
    EXPECT_EQ(after.ndmresets, before.ndmresets + 1) << "the system reset reached the hart";
    EXPECT_FALSE(after.in_reset);
    EXPECT_FALSE(after.havereset) << "OpenOCD acknowledges the reset";
    if (mode == ResetMode::run) {
      EXPECT_FALSE(after.halted);
      EXPECT_EQ(trim(probe.command("riscv.cpu curstate")), "running");
    } else {
      EXPECT_TRUE(after.halted) << "halted before its first instruction";
      EXPECT_EQ(after.dpc, kRam) << "at the reset vector";
      EXPECT_EQ(trim(probe.command("riscv.cpu curstate")), "halted");
    }
    EXPECT_EQ(probe.read_words(kRam + 0x800, 2), words) << "RAM survives the reset";
  }
  EXPECT_EQ(sim.srst_pulses(), 0u) << "no reset line is configured: the debug module resets the system";
}

TEST_F(OpenOcdRiscvTest, ResetHaltWithSrstWiredPulsesItBeforeNdmreset) {
  auto c = config();
  c.launch->commands.insert(c.launch->commands.begin() + 4, "reset_config srst_only");
  OpenOcdProbe probe(io, c);
  const auto before = sim.riscv_record();
  const unsigned pulses = sim.srst_pulses();
  probe.reset(ResetMode::halt);
  EXPECT_EQ(sim.srst_pulses(), pulses + 1) << "OpenOCD pulses SRST while it resets the TAPs";
  EXPECT_FALSE(sim.srst_asserted());
  auto after = sim.riscv_record();
  EXPECT_EQ(after.ndmresets, before.ndmresets + 1) << "and then resets the hart through the debug module";
  EXPECT_TRUE(after.halted);
  EXPECT_EQ(after.dpc, kRam);
}

TEST_F(OpenOcdRiscvTest, ReadOutsideRamIsBenchErrorNamingTheAddress) {
  sim.write_memory(kRam + 0xfff8, std::vector<std::uint32_t>{7, 8});
  OpenOcdProbe probe(io, config());
  for (auto [address, count] : {std::pair<std::uint64_t, std::size_t>{0x90000000, 2}, {kRam + 0xfffc, 2}}) {
    const auto errors = sim.riscv_record().sb_errors;
    try {
      probe.read_words(address, count);
      ADD_FAILURE() << "expected BenchError at 0x" << std::hex << address;
    } catch (const BenchError& e) {
      std::string what = e.what();
      EXPECT_NE(what.find(fmt::format("OpenOCD command 'read_memory 0x{:x} 32 {}' failed", address, count)),
                std::string::npos)
          << what;
      // capture hands back OpenOCD's error lines, and they name the address too.
      EXPECT_NE(what.find(fmt::format("Failed to read memory (addr=0x{:x})", address)), std::string::npos)
          << what;
      EXPECT_NE(what.find("sysbus=failed"), std::string::npos) << what;
    }
    EXPECT_GT(sim.riscv_record().sb_errors, errors) << "the system bus reported the bad address";
  }
  EXPECT_EQ(probe.read_words(kRam + 0xfff8, 2), (std::vector<std::uint32_t>{7, 8}))
      << "OpenOCD cleared sberror: the next read works";
  EXPECT_EQ(probe.restarts(), 0u);
}

TEST_F(OpenOcdRiscvTest, WritesRamThroughOpenOcdCommands) {
  OpenOcdProbe probe(io, config());
  // The probe has no write path of its own; OpenOCD's commands reach RAM.
  probe.command(fmt::format("write_memory 0x{:x} 32 {{0x11 0x2233 0x44556677}}", kRam + 0x40));
  EXPECT_EQ(sim.read_memory(kRam + 0x40, 3), (std::vector<std::uint32_t>{0x11, 0x2233, 0x44556677}));
  probe.command(fmt::format("write_memory 0x{:x} 8 {{0xaa 0xbb}}", kRam + 0x41));
  EXPECT_EQ(sim.read_memory(kRam + 0x40, 1), std::vector<std::uint32_t>{0x00bbaa11}) << "byte writes";

  TempDir dir;
  const auto image = dir / "image.bin";
  std::ofstream(image, std::ios::binary) << std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8);
  probe.command(fmt::format("load_image {{{}}} 0x{:x} bin", image.string(), kRam + 0x1000));
  EXPECT_EQ(sim.read_memory(kRam + 0x1000, 2), (std::vector<std::uint32_t>{0x04030201, 0x08070605}));
  EXPECT_EQ(probe.read_words(kRam + 0x1000, 2), (std::vector<std::uint32_t>{0x04030201, 0x08070605}));
}

TEST_F(OpenOcdRiscvTest, RestartsOpenOcdAfterItWasKilledAndExaminesTheHartAgain) {
  sim.write_memory(kRam + 0x20, std::vector<std::uint32_t>{0xcafef00d, 42});
  OpenOcdProbe probe(io, config());
  probe.halt();
  auto old_pid = *probe.server_pid();
  ASSERT_EQ(::kill(old_pid, SIGKILL), 0);
  ASSERT_TRUE(wait_until([&] { return !alive(old_pid); }));

  EXPECT_EQ(probe.read_words(kRam + 0x20, 2), (std::vector<std::uint32_t>{0xcafef00d, 42}));
  EXPECT_EQ(probe.restarts(), 1u);
  EXPECT_EQ(sim.connections(), 2u);
  EXPECT_NE(probe.log_tail(40).find("Examined RISC-V core; found 1 harts"), std::string::npos)
      << probe.log_tail(40);
  EXPECT_GE(sim.riscv_record().dm_resets, 1u) << "the new OpenOCD reset the debug module it found active";
  EXPECT_EQ(trim(probe.command("riscv.cpu curstate")), "halted") << "the hart stayed halted";
  probe.resume();
  EXPECT_FALSE(sim.riscv_record().halted);
}

// The debug module at the DMI level, without OpenOCD: the answers OpenOCD's
// fallbacks depend on.
TEST(RiscvDebugModuleTest, AbstractCommandsAndSystemBusReportTheirErrors) {
  otarig::test::RiscvDebugModule dm;
  dm.dmi_write(0x10, 0x1);  // dmactive
  EXPECT_EQ(dm.dmi_read(0x11) & 0xf, 2u) << "dmstatus.version: spec 0.13";
  dm.dmi_write(0x10, 0x1 | (1u << 16));  // hartsel 1
  EXPECT_NE(dm.dmi_read(0x11) & (1u << 15), 0u) << "hart 1 is nonexistent";
  dm.dmi_write(0x10, 0x1 | (1u << 31));  // haltreq
  ASSERT_TRUE(dm.record().halted);

  auto cmderr = [&] { return (dm.dmi_read(0x16) >> 8) & 0x7; };
  auto access = [](std::uint32_t regno, unsigned aarsize) { return (aarsize << 20) | (1u << 17) | regno; };
  dm.dmi_write(0x17, access(0x301, 2));
  EXPECT_EQ(cmderr(), 0u);
  EXPECT_EQ(dm.dmi_read(0x04), otarig::test::RiscvDebugModule::kMisa);
  dm.dmi_write(0x17, access(0x1008, 3));
  EXPECT_EQ(cmderr(), 2u) << "a 64-bit access to an RV32 GPR is not supported";
  dm.dmi_write(0x17, access(0x301, 2));
  EXPECT_EQ(cmderr(), 2u) << "commands are ignored while cmderr is set";
  dm.dmi_write(0x16, 0x7u << 8);
  dm.dmi_write(0x17, access(0x7a0, 2));
  EXPECT_EQ(cmderr(), 3u) << "a CSR the hart lacks raises an exception";

  dm.dmi_write(0x38, (2u << 17) | (1u << 20));  // sbaccess32, sbreadonaddr
  dm.dmi_write(0x39, 0x10);
  EXPECT_EQ((dm.dmi_read(0x38) >> 12) & 0x7, 2u) << "sberror: bad address";
  EXPECT_EQ(dm.record().sb_errors, 1u);
  dm.dmi_write(0x38, 0x7u << 12);
  EXPECT_EQ((dm.dmi_read(0x38) >> 12) & 0x7, 0u) << "sberror is write-1-to-clear";
}

// ---- replies, quoting, the profile section ----

TEST(OpenOcdParseTest, ReadMemoryReplies) {
  EXPECT_EQ(parse_read_memory("0x1 0xdeadbeef 12", 3), (std::vector<std::uint32_t>{1, 0xdeadbeef, 12}));
  EXPECT_THROW(parse_read_memory("0x1 0x2", 3), BenchError);
  EXPECT_THROW(parse_read_memory("0x1 zz", 2), BenchError);
  EXPECT_THROW(parse_read_memory("0x100000000", 1), BenchError);
}

TEST(OpenOcdParseTest, MdwOutput) {
  auto out = "0x08000000: 20001000 08000199 0800019f 080001a1 \n0x08000010: 00000000 \n";
  EXPECT_EQ(parse_mdw(out, 5),
            (std::vector<std::uint32_t>{0x20001000, 0x08000199, 0x0800019f, 0x080001a1, 0}));
  EXPECT_EQ(parse_mdw("target halted\n0x0: 0000002a \n", 1), (std::vector<std::uint32_t>{42}));
  EXPECT_THROW(parse_mdw("0x0: 00000001 \n", 2), BenchError);
  EXPECT_THROW(parse_mdw("no dump here", 1), BenchError);
}

TEST(OpenOcdParseTest, QuotingAndCaptureWrapping) {
  EXPECT_EQ(tcl_quote(R"(a "b" $c [d] \e {f})"), R"("a \"b\" \$c \[d\] \\e {f}")");
  EXPECT_EQ(wrap_capture("version"),
            R"(format "%d %s" [catch {capture "version"} otarig_result] $otarig_result)");
}

Config section(const std::string& yaml) { return Config::load_string(yaml, "nucleo.yaml").at("probe"); }

TEST(OpenOcdProfileTest, ParsesAttachAndStart) {
  TempDir dir;
  std::ofstream(dir / "board.cfg") << "# local file\n";
  auto c = parse_openocd(section(R"(
probe:
  driver: openocd
  start:
    config_files: [interface/stlink.cfg, target/stm32f4x.cfg, board.cfg]
    commands: ["adapter speed 4000"]
    startup_timeout: 15s
    log: openocd.log
  command_timeout: 4s
  program_timeout: 3m
  status:
    address: 0x2001fc00
    magic: {word: 0, value: 0x4f544153}
    fields: {slot: 1, version: 2, counter: 3}
)"),
                         dir.path());
  ASSERT_TRUE(c.launch);
  EXPECT_EQ(c.launch->config_files[0], "interface/stlink.cfg") << "left to OpenOCD's search path";
  EXPECT_EQ(c.launch->config_files[2], (dir / "board.cfg").string()) << "found beside the profile";
  EXPECT_EQ(c.launch->commands, std::vector<std::string>{"adapter speed 4000"});
  EXPECT_EQ(c.launch->startup_timeout, 15000ms);
  EXPECT_EQ(c.launch->log_file, dir / "openocd.log");
  EXPECT_EQ(c.command_timeout, 4000ms);
  EXPECT_EQ(c.program_timeout, 180000ms);
  ASSERT_TRUE(c.status);
  EXPECT_EQ(c.status->address, 0x2001fc00u);
  EXPECT_EQ(c.status->words(), 4u);
  EXPECT_EQ(c.status->magic, 0x4f544153u);

  auto a = parse_openocd(section("probe: {driver: openocd, attach: 'lab-host:6666'}"), {});
  EXPECT_FALSE(a.launch);
  EXPECT_EQ(a.host, "lab-host");
  EXPECT_EQ(a.port, 6666);
}

TEST(OpenOcdProfileTest, ErrorsNameFileAndLine) {
  auto expect_error = [](const std::string& yaml, const std::string& message) {
    try {
      parse_openocd(section(yaml), {});
      ADD_FAILURE() << "expected InputError for " << yaml;
    } catch (const InputError& e) {
      std::string what = e.what();
      EXPECT_EQ(what.rfind("nucleo.yaml:", 0), 0u) << what;
      EXPECT_NE(what.find(message), std::string::npos) << what;
    }
  };
  expect_error("probe: {driver: openocd}", "missing 'attach");
  expect_error("probe: {driver: openocd, attach: 'h:1', start: {commands: [x]}}", "not both");
  expect_error("probe: {driver: openocd, attach: 'localhost'}", "expected HOST:PORT");
  expect_error("probe: {driver: openocd, attach: 'h:70000'}", "expected HOST:PORT");
  expect_error("probe: {driver: openocd, start: {}}", "give 'config_files' or 'commands'");
  expect_error("probe: {driver: openocd, start: {commands: [x], interface: y}}", "unknown key 'interface'");
  expect_error("probe: {driver: openocd, attach: 'h:1', status: {address: 0x2001fc02, fields: {slot: 0}}}",
               "4-byte aligned");
  expect_error("probe: {driver: openocd, attach: 'h:1', status: {address: 0x20000000, fields: {}}}",
               "at least one field");
}

}  // namespace
}  // namespace otarig::drivers::bench
