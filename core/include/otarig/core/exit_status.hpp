#pragma once
// How the drivers that run programs (the bench family's power commands and
// OpenOCD, the process family's device programs) describe them: how one
// ended and its command line, in messages.
#include <string>
#include <vector>

namespace otarig {

/// How a child process ended.
struct ExitStatus {
  int code = 0;    ///< exit code when signal == 0
  int signal = 0;  ///< the signal that ended it, else 0
  bool success() const { return signal == 0 && code == 0; }
  /// "exit status 3" or "killed by signal 9 (Killed)".
  std::string describe() const;
  /// From a waitpid() status; code -1 when it is neither an exit nor a signal.
  static ExitStatus from_wait_status(int status);
};

/// A command line as a POSIX shell would read it back, for messages:
/// arguments with spaces or shell characters in single quotes
/// (`otarig-vboard --flash '/tmp/x y' 'it'\''s'`).
std::string command_text(const std::vector<std::string>& argv);

}  // namespace otarig
