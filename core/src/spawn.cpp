#include "otarig/core/spawn.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <system_error>

extern char** environ;

namespace otarig {
namespace {

// posix_spawn's C objects, destroyed on every path.
struct SpawnActions {
  posix_spawn_file_actions_t actions;
  SpawnActions() { posix_spawn_file_actions_init(&actions); }
  ~SpawnActions() { posix_spawn_file_actions_destroy(&actions); }
  SpawnActions(const SpawnActions&) = delete;
  SpawnActions& operator=(const SpawnActions&) = delete;
};
struct SpawnAttr {
  posix_spawnattr_t attr;
  SpawnAttr() { posix_spawnattr_init(&attr); }
  ~SpawnAttr() { posix_spawnattr_destroy(&attr); }
  SpawnAttr(const SpawnAttr&) = delete;
  SpawnAttr& operator=(const SpawnAttr&) = delete;
};

void check_spawn(int rc, const char* step) {
  if (rc != 0) throw std::system_error(rc, std::generic_category(), step);
}

}  // namespace

Spawned spawn_process(const std::vector<std::string>& argv, const SpawnOptions& options) {
  if (argv.empty()) throw std::invalid_argument("empty command line");
  const std::string& program = options.program.empty() ? argv[0] : options.program;

  SpawnActions fa;
  UniqueFd pipe_read, pipe_write;
  check_spawn(posix_spawn_file_actions_addopen(&fa.actions, 0, "/dev/null", O_RDONLY, 0), "spawn: stdin");
  if (options.capture_output) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe");
    pipe_read.reset(fds[0]);
    pipe_write.reset(fds[1]);
    check_spawn(posix_spawn_file_actions_adddup2(&fa.actions, pipe_write.get(), 1), "spawn: stdout");
  } else {
    const std::string file = options.output_file.empty() ? "/dev/null" : options.output_file.string();
    check_spawn(
        posix_spawn_file_actions_addopen(&fa.actions, 1, file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644),
        "spawn: stdout");
  }
  check_spawn(posix_spawn_file_actions_adddup2(&fa.actions, 1, 2), "spawn: stderr");
  check_spawn(posix_spawn_file_actions_addclosefrom_np(&fa.actions, 3), "spawn: close descriptors");
  if (!options.cwd.empty())
    check_spawn(posix_spawn_file_actions_addchdir_np(&fa.actions, options.cwd.c_str()), "spawn: working folder");

  SpawnAttr sa;
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (options.new_process_group) flags |= POSIX_SPAWN_SETPGROUP;
  check_spawn(posix_spawnattr_setflags(&sa.attr, flags), "spawn: attributes");
  if (options.new_process_group) check_spawn(posix_spawnattr_setpgroup(&sa.attr, 0), "spawn: process group");
  check_spawn(posix_spawnattr_setsigmask(&sa.attr, &none), "spawn: signal mask");
  check_spawn(posix_spawnattr_setsigdefault(&sa.attr, &all), "spawn: signal defaults");

  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);

  Spawned child;
  const int rc = ::posix_spawnp(&child.pid, program.c_str(), &fa.actions, &sa.attr, args.data(), environ);
  if (rc != 0) throw std::system_error(rc, std::generic_category(), fmt::format("cannot run '{}'", program));
  child.output = std::move(pipe_read);
  return child;
}

}  // namespace otarig
