// spawn_process: what a started program gets (environment, descriptors,
// signals, working folder, process group, where its output goes).
#include "otarig/core/spawn.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <system_error>

using otarig::spawn_process;
using otarig::SpawnOptions;

namespace {

struct Finished {
  int wait_status = 0;
  std::string output;
};

// Reads the child's pipe to its end and reaps it.
Finished finish(otarig::Spawned child) {
  Finished f;
  char buf[512];
  for (ssize_t n; (n = ::read(child.output.get(), buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    f.output.append(buf, static_cast<std::size_t>(n));
  }
  while (::waitpid(child.pid, &f.wait_status, 0) < 0 && errno == EINTR) {
  }
  return f;
}

Finished shell(const std::string& line, SpawnOptions options = {}) {
  options.capture_output = true;
  return finish(spawn_process({"/bin/sh", "-c", line}, options));
}

SpawnOptions capturing(std::string program = {}) {
  SpawnOptions o;
  o.program = std::move(program);
  o.capture_output = true;
  return o;
}
SpawnOptions in_folder(std::filesystem::path cwd) {
  SpawnOptions o;
  o.cwd = std::move(cwd);
  return o;
}
SpawnOptions own_group(bool yes) {
  SpawnOptions o;
  o.new_process_group = yes;
  return o;
}
SpawnOptions appending_to(std::filesystem::path file) {
  SpawnOptions o;
  o.output_file = std::move(file);
  return o;
}

std::filesystem::path temp_folder() {
  std::string pattern = (std::filesystem::temp_directory_path() / "otarig-spawn-XXXXXX").string();
  EXPECT_NE(::mkdtemp(pattern.data()), nullptr);
  return pattern;
}

}  // namespace

TEST(Spawn, CapturesStdoutAndStderrInOnePipe) {
  auto f = shell("echo out; echo err >&2; exit 3");
  EXPECT_EQ(f.output, "out\nerr\n");
  ASSERT_TRUE(WIFEXITED(f.wait_status));
  EXPECT_EQ(WEXITSTATUS(f.wait_status), 3);
}

TEST(Spawn, SeesTheCallersEnvironmentAndReadsNothingFromStdin) {
  ::setenv("OTARIG_SPAWN_TEST", "from the rig", 1);
  auto f = shell("echo \"$OTARIG_SPAWN_TEST\"; cat; echo end");
  ::unsetenv("OTARIG_SPAWN_TEST");
  EXPECT_EQ(f.output, "from the rig\nend\n");
}

TEST(Spawn, LooksTheProgramUpInPathOrTakesTheOneGiven) {
  EXPECT_EQ(shell("true").output, "");
  auto f = finish(spawn_process({"echo", "hello"}, capturing()));
  EXPECT_EQ(f.output, "hello\n");
  // argv[0] stays what the caller wrote when the program is named apart.
  f = finish(spawn_process({"named-zero", "-c", "echo $0"}, capturing("/bin/sh")));
  EXPECT_EQ(f.output, "named-zero\n");
}

TEST(Spawn, MissingProgramIsENOENTNamingIt) {
  try {
    spawn_process({"otarig-no-such-program"}, {});
    FAIL() << "started";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ENOENT);
    EXPECT_NE(std::string(e.what()).find("cannot run 'otarig-no-such-program'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(spawn_process({}, {}), std::invalid_argument);
}

TEST(Spawn, InheritsNoDescriptorButTheFirstThree) {
  const int leaked = ::open("/dev/null", O_RDONLY);  // not close-on-exec
  ASSERT_GE(leaked, 3);
  auto f = shell("for fd in 0 1 2 " + std::to_string(leaked) + "; do [ -e /proc/self/fd/$fd ] && echo $fd; done");
  ::close(leaked);
  EXPECT_EQ(f.output, "0\n1\n2\n");
}

TEST(Spawn, ChildStartsWithNoSignalBlockedOrIgnored) {
  // The rig ignores SIGUSR1 and blocks SIGTERM; the child must not inherit either.
  struct sigaction ignore{}, old_usr1{};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGUSR1, &ignore, &old_usr1), 0);
  sigset_t term, old_mask;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &term, &old_mask), 0);
  auto usr1 = shell("kill -USR1 $$; sleep 5");
  auto sigterm = shell("kill -TERM $$; sleep 5");
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  ::sigaction(SIGUSR1, &old_usr1, nullptr);
  ASSERT_TRUE(WIFSIGNALED(usr1.wait_status));
  EXPECT_EQ(WTERMSIG(usr1.wait_status), SIGUSR1);
  ASSERT_TRUE(WIFSIGNALED(sigterm.wait_status));
  EXPECT_EQ(WTERMSIG(sigterm.wait_status), SIGTERM);
}

TEST(Spawn, RunsInTheWorkingFolderGiven) {
  const auto dir = temp_folder();
  EXPECT_EQ(shell("pwd -P", in_folder(dir)).output, std::filesystem::canonical(dir).string() + "\n");
  EXPECT_EQ(shell("pwd -P").output, std::filesystem::current_path().string() + "\n");
  EXPECT_THROW(spawn_process({"true"}, in_folder(dir / "missing")), std::system_error);
  std::filesystem::remove_all(dir);
}

TEST(Spawn, LeadsAProcessGroupOnlyWhenAsked) {
  const auto own = shell("ps -o pgid= -p $$ | tr -d ' '; echo $$", own_group(true));
  std::istringstream a(own.output);
  std::string pgid, pid;
  a >> pgid >> pid;
  EXPECT_EQ(pgid, pid);
  const auto shared = shell("ps -o pgid= -p $$ | tr -d ' '", own_group(false));
  EXPECT_EQ(shared.output, std::to_string(::getpgrp()) + "\n");
}

TEST(Spawn, AppendsOutputToTheFileGivenOrDropsIt) {
  const auto dir = temp_folder();
  const auto log = dir / "out.log";
  for (const char* line : {"echo first", "echo second >&2"}) {
    auto child = spawn_process({"/bin/sh", "-c", line}, appending_to(log));
    EXPECT_FALSE(child.output);
    int st = 0;
    ::waitpid(child.pid, &st, 0);
  }
  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), "first\nsecond\n");
  EXPECT_EQ((std::filesystem::status(log).permissions() & std::filesystem::perms::others_write),
            std::filesystem::perms::none);
  auto quiet = spawn_process({"/bin/sh", "-c", "echo nowhere"}, {});
  int st = 0;
  ::waitpid(quiet.pid, &st, 0);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  std::filesystem::remove_all(dir);
}
