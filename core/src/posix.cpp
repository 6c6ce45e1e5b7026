// What the code that owns descriptors and runs programs shares:
// UniqueFd, ExitStatus and command_text.
#include <fcntl.h>
#include <fmt/format.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "otarig/core/errors.hpp"
#include "otarig/core/exit_status.hpp"
#include "otarig/core/fd_passing.hpp"
#include "otarig/core/read_file.hpp"
#include "otarig/core/unique_fd.hpp"

namespace otarig {

void UniqueFd::reset(int fd) noexcept {
  int old = std::exchange(fd_, fd);
  if (old >= 0 && old != fd) ::close(old);
}

ssize_t send_with_fd(int sock, const void* data, std::size_t len, int fd) {
  iovec iov{const_cast<void*>(data), len};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  ::memset(control, 0, sizeof control);
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (fd >= 0) {
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    ::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  ssize_t n;
  do n = ::sendmsg(sock, &mh, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n;
}

ssize_t receive_with_fd(int sock, void* data, std::size_t len, UniqueFd& passed) {
  iovec iov{data, len};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  ssize_t n;
  do n = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) return n;
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
      int fd = -1;
      ::memcpy(&fd, CMSG_DATA(c), sizeof fd);
      if (n > 0)
        passed.reset(fd);
      else
        ::close(fd);
    }
  return n;
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

std::string read_regular_file(const std::filesystem::path& file, std::uintmax_t max_bytes,
                              std::string_view what) {
  // Non-blocking, so opening a FIFO returns at once (and is then refused).
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (!fd) throw InputError(fmt::format("{}: cannot read {}: {}", file.string(), what, std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0)
    throw InputError(fmt::format("{}: cannot read {}: {}", file.string(), what, std::strerror(errno)));
  if (!S_ISREG(st.st_mode))
    throw InputError(fmt::format("{}: the {} is not a regular file ({})", file.string(), what,
                                 S_ISDIR(st.st_mode)                          ? "a folder"
                                 : S_ISFIFO(st.st_mode)                       ? "a FIFO"
                                 : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                                                                              : "a special file"));
  auto too_large = [&](std::uintmax_t size) {
    return InputError(fmt::format("{}: the {} has {} bytes, more than the {} bytes the rig reads",
                                  file.string(), what, size, max_bytes));
  };
  if (static_cast<std::uintmax_t>(st.st_size) > max_bytes)
    throw too_large(static_cast<std::uintmax_t>(st.st_size));
  std::string data(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t got = 0;
  while (true) {
    if (got == data.size()) {
      // The file grew since fstat: read on, up to the bound.
      if (data.size() > max_bytes) throw too_large(data.size());
      data.resize(std::min<std::uintmax_t>(max_bytes + 1, std::max<std::size_t>(data.size() * 2, 4096)));
    }
    ssize_t n = ::read(fd.get(), data.data() + got, data.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      throw InputError(fmt::format("{}: cannot read {}: {}", file.string(), what, std::strerror(errno)));
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  if (got > max_bytes) throw too_large(got);
  data.resize(got);
  return data;
}

}  // namespace otarig
