// Power kind `process`: real processes on real ptys. Start in a new session
// and process group, SIGKILL to the whole group, no zombies, restart,
// environment, a device that exits by itself, commands that cannot start.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <thread>

#include "otarig/core/errors.hpp"
#include "otarig/drivers/process/board.hpp"
#include "otarig/drivers/process/register.hpp"
#include "otarig/drivers/storage/recorder.hpp"

namespace otarig::drivers::process {
namespace {

using namespace std::chrono_literals;

// A process board built from profile text through the registry, as the
// harness's Bench builds it.
struct TestBoard {
  explicit TestBoard(const std::string& yaml, std::string name = "test-board") {
    register_process_drivers(registry);
    root = Config::load_string(yaml, "test-profile.yaml");
    ctx.clock = &clock;
    ctx.board_name = std::move(name);
    ctx.profile_dir = std::filesystem::current_path();
    (*registry.device("process"))(root.at("device"), ctx, parts);
    if (auto p = root.find("power")) (*registry.power(p->at("driver").as_string()))(*p, ctx, parts);
    if (auto c = root.find("console")) (*registry.console(c->at("driver").as_string()))(*c, ctx, parts);
  }
  ProcessPower& power() { return dynamic_cast<ProcessPower&>(*parts.power); }
  PtyConsole& console() { return dynamic_cast<PtyConsole&>(*parts.console); }
  ProcessDevice& device() { return *find_process_device(parts); }

  /// Reads the console until `needle` shows up (or 5 s pass); returns all read.
  std::string read_until(const std::string& needle, std::chrono::milliseconds limit = 5000ms) {
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (out.find(needle) == std::string::npos && std::chrono::steady_clock::now() < deadline)
      out += parts.console->read(100ms);
    return out;
  }

  DriverRegistry registry;
  SteadyClock clock;
  BindContext ctx;
  Config root = Config::load_string("{}", "empty");
  BoardParts parts;
};

std::string board_yaml(const std::string& command, const std::string& extra_power = "") {
  return "device: {kind: process, network: {server: false}}\n"
         "power:\n  driver: process\n  command: " +
         command + "\n" + extra_power + "console: {driver: pty}\n";
}

// Fields of /proc/PID/stat after the command name: state, ppid, pgrp, session.
struct ProcStat {
  char state = '?';
  pid_t ppid = 0, pgrp = 0, session = 0;
};
std::optional<ProcStat> proc_stat(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = text.rfind(')');
  if (!in.good() && text.empty()) return std::nullopt;
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(text.substr(close + 2));
  ProcStat s;
  rest >> s.state >> s.ppid >> s.pgrp >> s.session;
  return s;
}

// Live (not zombie) processes whose process group is `pgrp`.
std::vector<pid_t> live_members(pid_t pgrp) {
  std::vector<pid_t> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const auto name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    auto s = proc_stat(static_cast<pid_t>(std::stoi(name)));
    if (s && s->pgrp == pgrp && s->state != 'Z' && s->state != 'X')
      out.push_back(static_cast<pid_t>(std::stoi(name)));
  }
  return out;
}

bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds limit = 3000ms) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

TEST(ProcessPower, StartsInANewSessionWithThePtyAsItsTerminal) {
  TestBoard b(board_yaml("[sh, -c, 'tty; exec cat']"));
  b.power().on();
  ASSERT_TRUE(b.power().is_on());
  auto s = b.power().session();
  ASSERT_TRUE(s);
  auto st = proc_stat(s->pid());
  ASSERT_TRUE(st);
  EXPECT_EQ(st->session, s->pid()) << "setsid: the device leads its own session";
  EXPECT_EQ(st->pgrp, s->pid()) << "and its own process group";
  EXPECT_EQ(st->ppid, ::getpid());
  auto out = b.read_until("\n");
  EXPECT_EQ(out.substr(0, out.find('\n')), s->tty()) << "stdin is the rig's pty";
}

TEST(ProcessPower, OffKillsTheWholeGroupAndLeavesNoZombie) {
  TestBoard b(board_yaml("[sh, -c, 'sleep 300 & sleep 300 & echo started; wait']"));
  b.power().on();
  auto s = b.power().session();
  const pid_t leader = s->pid();
  b.read_until("started");
  ASSERT_TRUE(eventually([&] { return live_members(leader).size() >= 3; })) << "sh and two sleeps";
  b.power().off();
  EXPECT_FALSE(b.power().is_on());
  EXPECT_FALSE(b.power().session());
  EXPECT_TRUE(eventually([&] { return live_members(leader).empty(); })) << "every member got SIGKILL";
  // The leader is reaped: no zombie child of ours is left.
  EXPECT_FALSE(proc_stat(leader)) << "the device process was reaped";
  errno = 0;
  EXPECT_EQ(::waitpid(leader, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
  ASSERT_TRUE(s->exited());
  EXPECT_EQ(s->exited()->signal, SIGKILL);
  b.power().off();  // off twice is fine
}

TEST(ProcessPower, RestartsAndCyclesWithANewProcessEachTime) {
  TestBoard b(board_yaml("cat"));
  b.power().on();
  const pid_t first = b.power().session()->pid();
  b.power().on();  // already on: nothing happens
  EXPECT_EQ(b.power().session()->pid(), first);
  b.power().off();
  b.power().on();
  const pid_t second = b.power().session()->pid();
  EXPECT_NE(second, first);
  const auto t0 = std::chrono::steady_clock::now();
  b.power().cycle(60ms);
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 60ms) << "the device stays off for the off time";
  EXPECT_TRUE(b.power().is_on());
  EXPECT_NE(b.power().session()->pid(), second);
  EXPECT_EQ(b.power().power_ons(), 3u);
  EXPECT_FALSE(proc_stat(first));
  EXPECT_FALSE(proc_stat(second));
}

TEST(ProcessPower, PassesStorageUpdateUrlKeysAndTheProfileEnvironment) {
  const std::string yaml =
      "device: {kind: process}\n"
      "power:\n"
      "  driver: process\n"
      "  command: [sh, -c, 'echo "
      "\"S=$OTARIG_STORAGE|U=$OTARIG_UPDATE_URL|B=$OTARIG_BOARD|K=$OTARIG_TRUSTED_KEYS|"
      "M=$MYVAR|P=$(pwd)|END\"; exec cat']\n"
      "  env: {MYVAR: '${storage}/mine'}\n"
      "console: {driver: pty}\n";
  TestBoard b(yaml, "env-board");
  b.power().on();
  auto out = b.read_until("|END");
  const auto storage = b.device().storage().string();
  ASSERT_FALSE(storage.empty());
  EXPECT_TRUE(std::filesystem::is_directory(storage));
  EXPECT_NE(out.find("S=" + storage + "|"), std::string::npos) << out;
  EXPECT_NE(out.find("U=" + b.device().update_url() + "|"), std::string::npos) << out;
  EXPECT_EQ(b.device().update_url().rfind("http://127.0.0.1:", 0), 0u) << b.device().update_url();
  EXPECT_NE(out.find("B=env-board|"), std::string::npos) << out;
  EXPECT_NE(out.find("M=" + storage + "/mine|"), std::string::npos) << out;
  EXPECT_NE(out.find("P=" + storage + "|"), std::string::npos)
      << "the working directory is the storage folder";
}

TEST(ProcessPower, TheTemporaryStorageGoesWithTheBoard) {
  std::filesystem::path storage;
  {
    TestBoard b(board_yaml("cat"));
    storage = b.device().storage();
    ASSERT_TRUE(std::filesystem::is_directory(storage));
    b.power().on();
  }
  EXPECT_FALSE(std::filesystem::exists(storage));
}

TEST(ProcessPower, ACommandThatCannotStartIsABenchErrorNamingBoardAndCommand) {
  struct Case {
    std::string command, extra, expect;
  };
  for (const auto& c : {Case{"[/nonexistent/otarig-device, --flag]", "", "/nonexistent/otarig-device --flag"},
                        Case{"no-such-otarig-program --x", "", "no-such-otarig-program --x"},
                        Case{"cat", "  cwd: /nonexistent-dir\n", "chdir /nonexistent-dir"},
                        Case{"[" + std::string("/etc/hostname") + "]", "", "/etc/hostname"}}) {
    TestBoard b(board_yaml(c.command, c.extra), "bad-board");
    try {
      b.power().on();
      FAIL() << c.command << " started";
    } catch (const BenchError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("bad-board"), std::string::npos) << what;
      EXPECT_NE(what.find(c.expect), std::string::npos) << what;
    }
    EXPECT_FALSE(b.power().is_on());
  }
}

TEST(ProcessPower, ADeviceThatExitsByItselfIsADeviceEventNotAnError) {
  TestBoard b(board_yaml("[sh, -c, 'echo goodbye; exit 3']"));
  b.power().on();
  auto out = b.read_until("goodbye");
  EXPECT_NE(out.find("goodbye"), std::string::npos);
  ASSERT_TRUE(eventually([&] {
    b.console().read(10ms);
    return b.console().at_eof();
  })) << "the console shows end of file";
  EXPECT_TRUE(b.power().is_on()) << "the switch is still on: a crashed device";
  auto st = b.power().session()->exited();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->code, 3);
  EXPECT_EQ(b.console().read(50ms), "");
  EXPECT_NO_THROW(b.power().off());
  EXPECT_NO_THROW(b.power().on());
  EXPECT_NE(b.read_until("goodbye").find("goodbye"), std::string::npos) << "and it starts again";
}

TEST(ProcessPower, CutFromAnotherThreadWhileTheConsoleIsRead) {
  TestBoard b(board_yaml("cat"));
  b.power().on();
  std::thread cutter([&] {
    std::this_thread::sleep_for(50ms);
    b.power().cut("test cut");
  });
  // Nothing comes: the read waits out its time, across the cut.
  auto got = b.console().read(300ms);
  cutter.join();
  EXPECT_EQ(got, "");
  EXPECT_FALSE(b.power().is_on());
  EXPECT_EQ(b.power().cuts(), 1u);
  EXPECT_EQ(b.power().last_cut(), "test cut");
}

TEST(ProcessPower, ProfileErrorsNameFileAndLine) {
  DriverRegistry registry;
  register_process_drivers(registry);
  BindContext ctx;
  ctx.board_name = "x";
  auto expect_input_error = [&](const std::string& yaml, const std::string& part, const std::string& needle) {
    auto root = Config::load_string(yaml, "bad.yaml");
    BoardParts parts;
    try {
      (*registry.device(root.at("device").at("kind").as_string()))(root.at("device"), ctx, parts);
      if (part == "power") (*registry.power("process"))(root.at("power"), ctx, parts);
      FAIL() << yaml;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("bad.yaml:"), std::string::npos) << e.what();
    }
  };
  expect_input_error("device: {kind: process, colour: red}\n", "device", "colour");
  expect_input_error("device: {kind: process, network: {tls: maybe}}\n", "device", "maybe");
  expect_input_error("device: {kind: process, provision: {format: zip, file: x}}\n", "device", "zip");
  expect_input_error(
      "device: {kind: process, network: {server: false}}\npower: {driver: process, command: ''}\n", "power",
      "empty");
  expect_input_error(
      "device: {kind: process, network: {server: false}}\npower: {driver: process, command: x, pty: odd}\n",
      "power", "raw or cooked");
}

TEST(ProcessPower, NeedsAProcessDevice) {
  DriverRegistry registry;
  register_process_drivers(registry);
  auto root = Config::load_string("power: {driver: process, command: cat}\n", "p.yaml");
  BoardParts parts;
  BindContext ctx;
  EXPECT_THROW((*registry.power("process"))(root.at("power"), ctx, parts), InputError);
}

TEST(ProcessPower, TheDeviceClockIsSetThroughLibfaketimeFromTheNextPowerOn) {
  if (!libfaketime()) GTEST_SKIP() << "libfaketime is not installed (Debian package libfaketime)";
  TestBoard b(board_yaml("[sh, -c, 'date -u +year=%Y; echo preload=$LD_PRELOAD; exec cat']"));
  b.power().on();
  auto out = b.read_until("preload=");
  EXPECT_EQ(out.find("year=1970"), std::string::npos) << out;
  b.power().off();
  b.power().set_device_time({DeviceTime::Kind::at, 0});
  b.power().on();
  out = b.read_until("preload=");
  EXPECT_NE(out.find("year=1970"), std::string::npos) << out;
  EXPECT_NE(out.find("libfaketime"), std::string::npos) << out;
  b.power().off();
  b.power().set_device_time({DeviceTime::Kind::offset, 200LL * 365 * 86400});
  b.power().on();
  out = b.read_until("preload=");
  EXPECT_NE(out.find("year=22"), std::string::npos) << out;  // two centuries ahead
  b.power().off();
  b.power().set_device_time({});
  b.power().on();
  out = b.read_until("preload=");
  EXPECT_EQ(out.find("libfaketime"), std::string::npos) << out;
}

TEST(ProcessPower, FaketimeEnvironment) {
  const auto env = faketime_env({DeviceTime::Kind::at, 86400}, "/lib/f.so", "/lib/other.so");
  const std::map<std::string, std::string> m(env.begin(), env.end());
  EXPECT_EQ(m.at("LD_PRELOAD"), "/lib/f.so:/lib/other.so");
  EXPECT_EQ(m.at("FAKETIME"), "@1970-01-02 00:00:00");
  EXPECT_EQ(m.at("FAKETIME_DONT_FAKE_MONOTONIC"), "1");
  const auto skew = faketime_env({DeviceTime::Kind::offset, -90}, "/lib/f.so", "");
  const std::map<std::string, std::string> s(skew.begin(), skew.end());
  EXPECT_EQ(s.at("FAKETIME"), "-90s");
}

TEST(SplitCommand, QuotesAndEscapes) {
  EXPECT_EQ(split_command("a  b\tc"), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(split_command("a 'b c' \"d e\" f\\ g ''"),
            (std::vector<std::string>{"a", "b c", "d e", "f g", ""}));
  EXPECT_EQ(command_text({"a", "b c", "it's"}), "a 'b c' 'it'\\''s'");
}

// The sync filter of a device under the crash model (PtyProcess with
// watch_syncs; the recorder's side is tests/drivers/storage/recorder_test.cpp).
// Both cases run in a helper process, since the filter binds whoever installs it.
int in_helper(const std::function<int()>& body) {
  pid_t helper = ::fork();
  if (helper == 0) {
    try {
      ::_exit(body());
    } catch (...) {
      ::_exit(99);
    }
  }
  int status = 0;
  ::waitpid(helper, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Waits up to 10 s for the program to exit; its exit code, or -1.
int exit_code(PtyProcess& p) {
  for (int i = 0; i < 1000; ++i) {
    if (auto st = p.poll_exit()) return st->code;
    std::this_thread::sleep_for(10ms);
  }
  return -1;
}

TEST(PtyProcessSyncFilter, ASyncNobodyAnswersFailsInsteadOfHangingTheDevice) {
  const int rc = in_helper([] {
    LaunchSpec spec;
    spec.argv = {"/bin/sh", "-c", "sync; sync -f /; exit 7"};
    spec.env = {"PATH=/usr/bin:/bin"};
    spec.watch_syncs = true;
    auto p = PtyProcess::start("/bin/sh", spec);
    if (p.sync_filter_error() != 0) return 77;
    auto listener = p.take_sync_listener();
    if (!listener) return 10;
    if (p.take_sync_listener()) return 11;  // once
    listener.reset();  // nobody answers: the kernel fails the calls
    return exit_code(p) == 7 ? 0 : 12;
  });
  if (rc == 77) GTEST_SKIP() << "the kernel refused the seccomp user-notification filter";
  EXPECT_EQ(rc, 0);
}

TEST(PtyProcessSyncFilter, AFilterTheKernelRefusesLeavesTheProgramRunningAndSaysWhy) {
  const int rc = in_helper([] {
    // A filter with a listener already in the chain (kept open: a closed
    // one detaches): the kernel refuses a second one (EBUSY), as under a
    // container runtime's seccomp supervisor.
    const int first = storage::install_sync_filter();
    if (first < 0) return 77;
    LaunchSpec spec;
    spec.argv = {"/bin/sh", "-c", "exit 5"};
    spec.watch_syncs = true;
    auto p = PtyProcess::start("/bin/sh", spec);
    if (p.take_sync_listener()) return 10;
    if (p.sync_filter_error() != EBUSY) return 11;
    return exit_code(p) == 5 ? 0 : 12;
  });
  if (rc == 77) GTEST_SKIP() << "the kernel refused the seccomp user-notification filter";
  EXPECT_EQ(rc, 0);
}

}  // namespace
}  // namespace otarig::drivers::process
