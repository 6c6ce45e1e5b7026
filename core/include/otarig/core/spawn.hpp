#pragma once
// Starting a program with posix_spawn (safe in a threaded process), for the
// bench tools' ChildProcess and the OTA clients' run_tool alike.
#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

#include "otarig/core/unique_fd.hpp"

namespace otarig {

struct SpawnOptions {
  /// The program to run; argv[0] when empty. Looked up in PATH unless it
  /// holds a '/'.
  std::string program;
  /// stdout and stderr go to one pipe whose read end Spawned::output holds...
  bool capture_output = false;
  /// ...otherwise both are appended to this file (created 0644); /dev/null
  /// when empty.
  std::filesystem::path output_file;
  /// The child's working folder; the caller's when empty.
  std::filesystem::path cwd;
  /// The child leads a process group of its own (signal it as -pid), so
  /// that nothing it starts outlives a kill of the group.
  bool new_process_group = false;
};

/// A started child: the caller reaps it.
struct Spawned {
  pid_t pid = -1;
  UniqueFd output;  ///< the read end of the output pipe (capture_output only)
};

/// Starts `argv` with the caller's environment, stdin from /dev/null, no
/// descriptor but 0-2 inherited, no signal blocked and every signal at its
/// default action. std::invalid_argument for an empty argv;
/// std::system_error when it cannot be started (ENOENT for a missing
/// program, with "cannot run 'PROGRAM'").
Spawned spawn_process(const std::vector<std::string>& argv, const SpawnOptions& options);

}  // namespace otarig
