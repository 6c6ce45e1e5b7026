#pragma once
// The console loop of a device program that runs as a process board
// (otarig-vboard, otarig-clientboard): its stdin is the pty the rig owns.
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <string>

namespace otarig::drivers::process {

/// Reads stdin and calls `on_line` for each complete line (without its
/// '\n'), keeping at most the last 64 KiB of an unfinished one; `after_read`
/// runs after every read. `tick`, when set, is the device's own timer: it is
/// called before every wait and returns how many ms the loop may wait for
/// input before calling it again (-1: no limit). Returns when the console
/// closes.
inline void serve_console(const std::function<void(std::string)>& on_line,
                          const std::function<void()>& after_read = {}, const std::function<int()>& tick = {}) {
  std::string input;
  char buf[4096];
  while (true) {
    pollfd p{STDIN_FILENO, POLLIN, 0};
    const int wait = tick ? tick() : -1;
    const int ready = ::poll(&p, 1, wait);
    if (ready < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (ready == 0) continue;  // the timer is due
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return;  // the console closed
    input.append(buf, static_cast<std::size_t>(n));
    if (input.size() > 65536) input.erase(0, input.size() - 65536);
    std::size_t nl;
    while ((nl = input.find('\n')) != std::string::npos) {
      std::string line = input.substr(0, nl);
      input.erase(0, nl + 1);
      on_line(std::move(line));
    }
    if (after_read) after_read();
  }
}

}  // namespace otarig::drivers::process
