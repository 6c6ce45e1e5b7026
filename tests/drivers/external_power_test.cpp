// Power by external commands: real processes through posix_spawn, the exit
// status, the deadline that kills the whole process group, order of requests.
#include "otarig/drivers/bench/external_power.hpp"

#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <sstream>

#include "otarig/drivers/bench/register.hpp"
#include "otarig/core/errors.hpp"
#include "pty.hpp"

namespace otarig::drivers::bench {
namespace {

using namespace std::chrono_literals;
using otarig::test::TempDir;
using otarig::test::wait_until;

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool process_gone(pid_t pid) {
  if (::kill(pid, 0) != 0) return errno == ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string ignored, state;
  stat >> ignored >> ignored >> state;  // "pid (comm) S ..."; a zombie is as good as gone
  return state == "Z";
}

class CommandPowerTest : public ::testing::Test {
 protected:
  std::shared_ptr<BenchIo> io = std::make_shared<BenchIo>("command-power-test");
  TempDir dir;
  std::filesystem::path log = dir / "pdu.log";

  CommandPowerConfig config() {
    CommandPowerConfig c;
    c.on = CommandSpec::shell("echo on >> " + log.string());
    c.off = CommandSpec::shell("echo off >> " + log.string());
    c.off_time = 30ms;
    c.timeout = 5000ms;
    return c;
  }
};

TEST_F(CommandPowerTest, OnOffAndCycleRunTheCommandsInOrder) {
  CommandPower power(io, config());
  EXPECT_FALSE(power.is_on());
  power.on();
  EXPECT_TRUE(power.is_on());
  power.off();
  EXPECT_FALSE(power.is_on());
  auto before = std::chrono::steady_clock::now();
  power.cycle(10ms);
  EXPECT_GE(std::chrono::steady_clock::now() - before, 30ms) << "off_time is the shortest off time";
  EXPECT_TRUE(power.is_on());
  EXPECT_EQ(slurp(log), "on\noff\noff\non\n");
}

TEST_F(CommandPowerTest, ACycleCommandReplacesOffAndOn) {
  auto c = config();
  c.cycle = CommandSpec{{"/bin/sh", "-c", "echo cycle >> \"$0\"", log.string()}};
  CommandPower power(io, c);
  power.cycle(0ms);
  EXPECT_EQ(slurp(log), "cycle\n");
  EXPECT_TRUE(power.is_on());
}

TEST_F(CommandPowerTest, FailureNamesCommandStatusAndOutput) {
  auto c = config();
  c.off = CommandSpec::shell("echo 'outlet 4: relay jammed' >&2; exit 3");
  CommandPower power(io, c);
  power.on();
  try {
    power.off();
    FAIL() << "expected BenchError";
  } catch (const BenchError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("power: power off: command 'echo 'outlet 4: relay jammed' >&2; exit 3'"),
              std::string::npos)
        << what;
    EXPECT_NE(what.find("exit status 3"), std::string::npos) << what;
    EXPECT_NE(what.find("relay jammed"), std::string::npos) << what;
  }
  EXPECT_TRUE(power.is_on()) << "a failed off leaves the state as it was";
  EXPECT_EQ(power.last_result().status.code, 3);
}

TEST_F(CommandPowerTest, CommandKilledBySignalSaysSo) {
  auto c = config();
  c.on = CommandSpec::shell("kill -9 $$");
  CommandPower power(io, c);
  try {
    power.on();
    FAIL() << "expected BenchError";
  } catch (const BenchError& e) {
    EXPECT_NE(std::string(e.what()).find("killed by signal 9"), std::string::npos) << e.what();
  }
}

TEST_F(CommandPowerTest, TimeoutKillsTheWholeProcessGroup) {
  auto pid_file = dir / "child.pid";
  auto c = config();
  // The shell leaves a grandchild behind: only killing the group stops it.
  c.off = CommandSpec::shell("sleep 30 & echo $! > " + pid_file.string() + "; wait");
  c.timeout = 300ms;
  CommandPower power(io, c);
  auto before = std::chrono::steady_clock::now();
  EXPECT_THROW(power.off(), TimeoutError);
  EXPECT_LT(std::chrono::steady_clock::now() - before, 3s);
  auto text = slurp(pid_file);
  ASSERT_FALSE(text.empty());
  pid_t grandchild = std::stoi(text);
  EXPECT_TRUE(wait_until([&] { return process_gone(grandchild); }, 2000ms)) << "pid " << grandchild;
  EXPECT_TRUE(power.last_result().timed_out);
}

TEST_F(CommandPowerTest, MissingProgramIsBenchError) {
  auto c = config();
  c.on = CommandSpec{{"/nonexistent/pdu-cli", "on", "4"}};
  CommandPower power(io, c);
  try {
    power.on();
    FAIL() << "expected BenchError";
  } catch (const BenchError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("'/nonexistent/pdu-cli on 4' could not be started"), std::string::npos) << what;
    EXPECT_NE(what.find("No such file or directory"), std::string::npos) << what;
  }
}

TEST_F(CommandPowerTest, AsyncOffSpawnsBeforeReturningAndRequestsQueue) {
  CommandPower power(io, config());
  bool spawned_before_return = false;
  io->call("test", 5000ms, [&](Done done) {
    power.async_on([](std::exception_ptr) {});
    power.async_off(done);  // waits for the on command
    // async_on was idle, so its command already runs.
    spawned_before_return = true;
  });
  EXPECT_TRUE(spawned_before_return);
  EXPECT_EQ(slurp(log), "on\noff\n");
  EXPECT_FALSE(power.is_on());
}

TEST_F(CommandPowerTest, OutputOfTheLastCommandIsKept) {
  auto c = config();
  c.on = CommandSpec::shell("printf 'outlet 4 on\\n'");
  CommandPower power(io, c);
  power.on();
  EXPECT_EQ(power.last_result().output, "outlet 4 on\n");
  EXPECT_TRUE(power.last_result().status.success());
}

TEST(ChildProcessTest, DestructorKillsARunningGroup) {
  pid_t pid = -1;
  {
    auto child = ChildProcess::spawn(CommandSpec{{"sleep", "30"}}, {});
    pid = child.pid();
    EXPECT_FALSE(child.try_reap());
  }
  EXPECT_TRUE(process_gone(pid));
}

Config section(const std::string& yaml) { return Config::load_string(yaml, "pdu.yaml").at("power"); }

TEST(CommandProfileTest, ParsesStringsAndLists) {
  auto c = parse_command_power(section(R"(
power:
  driver: command
  on: pdu-cli --host pdu1 outlet 4 on
  off: [uhubctl, -l, "1-1", -p, "2", -a, "0"]
  cycle: "pdu-cli --host pdu1 outlet 4 reboot"
  timeout: 20s
  off_time: 3s
  settle: 500ms
)"));
  EXPECT_EQ(c.on.argv, (std::vector<std::string>{"/bin/sh", "-c", "pdu-cli --host pdu1 outlet 4 on"}));
  EXPECT_EQ(c.off.argv, (std::vector<std::string>{"uhubctl", "-l", "1-1", "-p", "2", "-a", "0"}));
  ASSERT_TRUE(c.cycle);
  EXPECT_EQ(c.timeout, 20000ms);
  EXPECT_EQ(c.off_time, 3000ms);
  EXPECT_EQ(c.settle, 500ms);
}

TEST(CommandProfileTest, ErrorsNameFileAndLine) {
  auto expect_error = [](const std::string& yaml, const std::string& message) {
    try {
      parse_command_power(section(yaml));
      ADD_FAILURE() << "expected InputError for " << yaml;
    } catch (const InputError& e) {
      std::string what = e.what();
      EXPECT_EQ(what.rfind("pdu.yaml:", 0), 0u) << what;
      EXPECT_NE(what.find(message), std::string::npos) << what;
    }
  };
  expect_error("power: {driver: command, on: a}", "missing required key 'off'");
  expect_error("power: {driver: command, on: a, off: b, port: 3}", "unknown key 'port'");
  expect_error("power: {driver: command, on: a, off: []}", "empty command");
  expect_error("power: {driver: command, on: a, off: b, timeout: 0s}", "longer than 0");
  expect_error("power:\n  driver: command\n  on: a\n  off: {x: 1}\n", "pdu.yaml:4");
}

TEST(CommandProfileTest, RegistryBuildsAWorkingDriver) {
  DriverRegistry registry;
  register_bench_drivers(registry);
  TempDir dir;
  BoardParts parts;
  BindContext ctx;
  ctx.board_name = "command-factory-test";
  (*registry.power("command"))(
      section("power: {driver: command, on: 'touch " + (dir / "on").string() + "', off: 'true'}"), ctx,
      parts);
  ASSERT_NE(parts.power, nullptr);
  parts.power->on();
  EXPECT_TRUE(std::filesystem::exists(dir / "on"));
}

}  // namespace
}  // namespace otarig::drivers::bench
