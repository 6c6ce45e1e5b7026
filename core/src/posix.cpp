// What the code that owns descriptors and runs programs shares:
// UniqueFd, ExitStatus and command_text.
#include <fcntl.h>
#include <fmt/format.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "otarig/core/exit_status.hpp"
#include "otarig/core/unique_fd.hpp"

namespace otarig {

void UniqueFd::reset(int fd) noexcept {
  int old = std::exchange(fd_, fd);
  if (old >= 0 && old != fd) ::close(old);
}

UniqueFd UniqueFd::duplicate(int source) {
  int fd = ::fcntl(source, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "dup");
  return UniqueFd(fd);
}

std::string ExitStatus::describe() const {
  if (signal != 0) return fmt::format("killed by signal {} ({})", signal, ::strsignal(signal));
  return fmt::format("exit status {}", code);
}

ExitStatus ExitStatus::from_wait_status(int status) {
  ExitStatus s;
  if (WIFSIGNALED(status))
    s.signal = WTERMSIG(status);
  else if (WIFEXITED(status))
    s.code = WEXITSTATUS(status);
  else
    s.code = -1;
  return s;
}

std::string command_text(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& arg : argv) {
    if (!out.empty()) out += ' ';
    bool plain = !arg.empty() && arg.find_first_of(" \t\n'\"\\$`;&|<>()*?[]{}~#") == std::string::npos;
    if (plain) {
      out += arg;
      continue;
    }
    out += '\'';
    for (char c : arg) {
      if (c == '\'')
        out += "'\\''";
      else
        out += c;
    }
    out += '\'';
  }
  return out;
}

}  // namespace otarig
