#pragma once
// Test helpers for the console tests: a pty pair the test owns (the test
// plays the device on the master side), temporary directories, waiting for a
// condition. Tests may block and poll; drivers may not.
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>

namespace otarig::test {

/// A pty pair. The slave is what a console opens; the test reads and writes
/// the master.
class TestPty {
 public:
  TestPty() {
    int master = -1, slave = -1;
    char name[128] = {};
    if (::openpty(&master, &slave, name, nullptr, nullptr) != 0) {
      throw std::system_error(errno, std::generic_category(), "openpty");
    }
    ::fcntl(master, F_SETFD, FD_CLOEXEC);
    master_ = master;
    slave_path_ = name;
    // Raw from the start, so nothing the test writes is echoed or line-buffered
    // before the console sets its own mode.
    termios tio{};
    ::tcgetattr(slave, &tio);
    ::cfmakeraw(&tio);
    ::tcsetattr(slave, TCSANOW, &tio);
    ::close(slave);
  }
  ~TestPty() { close_master(); }
  TestPty(const TestPty&) = delete;
  TestPty& operator=(const TestPty&) = delete;

  int master() const { return master_; }
  const std::string& slave_path() const { return slave_path_; }

  /// The device prints `bytes`.
  void write(std::string_view bytes) const {
    while (!bytes.empty()) {
      ssize_t n = ::write(master_, bytes.data(), bytes.size());
      if (n < 0) throw std::system_error(errno, std::generic_category(), "write pty master");
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  /// What the console sent, until `want` bytes or `timeout`.
  std::string read_for(std::chrono::milliseconds timeout, std::size_t want = std::string::npos) const {
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (out.size() < want) {
      auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{master_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char buf[1024];
      ssize_t n = ::read(master_, buf, sizeof buf);
      if (n <= 0) break;
      out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
  }

  /// The device vanishes: the console's next read fails with EIO.
  void close_master() {
    if (master_ >= 0) ::close(master_);
    master_ = -1;
  }

 private:
  int master_ = -1;
  std::string slave_path_;
};

/// A fresh directory under the temporary directory, removed at the end.
class TempDir {
 public:
  TempDir() {
    auto pattern = (std::filesystem::temp_directory_path() / "otarig-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr)
      throw std::system_error(errno, std::generic_category(), "mkdtemp");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

/// Points `link` at `target`, replacing it atomically (as udev does).
inline void point_symlink(const std::filesystem::path& link, const std::filesystem::path& target) {
  auto tmp = link;
  tmp += ".new";
  std::filesystem::remove(tmp);
  std::filesystem::create_symlink(target, tmp);
  std::filesystem::rename(tmp, link);
}

/// Polls `condition` every millisecond until it holds or `timeout` passes.
inline bool wait_until(const std::function<bool()>& condition,
                       std::chrono::milliseconds timeout = std::chrono::milliseconds(3000)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace otarig::test
