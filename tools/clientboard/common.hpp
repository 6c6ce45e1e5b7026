#pragma once
// What otarig-clientboard's devices share: the console, child processes with
// their output on a pipe, and the private mount namespace a client runs in.
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "otarig/core/errors.hpp"

namespace otarig::clientboard {

using Clock = std::chrono::steady_clock;

// The console: stdout is the pty. Every line goes out in full, at once.
inline void emit(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(STDOUT_FILENO, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) std::_Exit(0);  // the console is gone
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

inline void say(std::string_view line) {
  std::string out(line);
  out += '\n';
  emit(out);
}

inline std::string env_or(const char* name, std::string fallback = {}) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

inline std::string self_exe() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("otarig-clientboard") : p.string();
}

inline std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// The words of a command after the program's name, as the console shows them.
inline std::string command_line(const std::vector<std::string>& argv) {
  std::string s;
  for (std::size_t i = 1; i < argv.size(); ++i) s += (i > 1 ? " " : "") + argv[i];
  return s;
}

inline std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\r' || s.back() == ' ' || s.back() == '\n' || s.back() == '\t')) s.pop_back();
  std::size_t start = s.find_first_not_of(" \t");
  return start == std::string::npos ? std::string() : s.substr(start);
}

// In a forked child: a private mount namespace in which /run is a fresh
// tmpfs holding the device's files (/run/otarig), and /etc an overlay that
// adds `etc_files` (fw_env.config, hwrevision, sw-versions). Nothing of it
// is visible outside, and it all goes when the last process in it exits.
// Returns an error text, empty on success.
inline std::string enter_device_namespace(const std::vector<std::pair<std::string, std::string>>& etc_files,
                                   const std::vector<std::pair<std::string, std::string>>& links,
                                   std::uint64_t extra_bytes = 0) {
  if (::unshare(CLONE_NEWNS) != 0) return fmt::format("unshare(CLONE_NEWNS): {}", std::strerror(errno));
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    return fmt::format("make / private: {}", std::strerror(errno));
  // 64 MiB for the client's own files, plus what the caller puts there.
  const auto run_options = fmt::format("mode=0755,size={}k", (std::uint64_t{64} << 10) + (extra_bytes >> 10) + 1);
  if (::mount("otarig-run", "/run", "tmpfs", MS_NOSUID | MS_NODEV, run_options.c_str()) != 0)
    return fmt::format("mount a tmpfs on /run: {}", std::strerror(errno));
  for (const char* d : {"/run/otarig", "/run/otarig/etc", "/run/otarig/work", "/run/otarig/tmp", "/run/otarig/mnt"})
    if (::mkdir(d, 0755) != 0 && errno != EEXIST) return fmt::format("mkdir {}: {}", d, std::strerror(errno));
  for (const auto& [name, text] : etc_files) {
    std::error_code ignored;
    std::filesystem::create_directories(std::filesystem::path("/run/otarig/etc/" + name).parent_path(), ignored);
    std::ofstream out("/run/otarig/etc/" + name, std::ios::trunc);
    out << text;
    if (!out) return "write /run/otarig/etc/" + name;
  }
  for (const auto& [link, target] : links)
    if (::symlink(target.c_str(), link.c_str()) != 0)
      return fmt::format("symlink {}: {}", link, std::strerror(errno));
  if (!etc_files.empty() &&
      ::mount("otarig-etc", "/etc", "overlay", 0,
              "lowerdir=/etc,upperdir=/run/otarig/etc,workdir=/run/otarig/work") != 0)
    return fmt::format("mount an overlay on /etc: {}", std::strerror(errno));
  ::setenv("TMPDIR", "/run/otarig/tmp", 1);
  return {};
}

// Writes `bytes` into a new file `path` (mode 0644); empty on success.
inline std::string write_whole_file(const char* path, const std::vector<std::uint8_t>& bytes) {
  const int fd = ::open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return fmt::format("open {}: {}", path, std::strerror(errno));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const auto n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const auto error = fmt::format("write {}: {}", path, n < 0 ? std::strerror(errno) : "no space");
      ::close(fd);
      return error;
    }
    done += static_cast<std::size_t>(n);
  }
  return ::close(fd) == 0 ? std::string() : fmt::format("close {}: {}", path, std::strerror(errno));
}

// A child process with its output on a pipe, line by line.
class Child {
 public:
  // `setup` runs in the child before exec; a non-empty return is an error.
  Child(const std::vector<std::string>& argv, const std::function<std::string()>& setup) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw otarig::BenchError(fmt::format("pipe: {}", std::strerror(errno)));
    pid_ = ::fork();
    if (pid_ < 0) throw otarig::BenchError(fmt::format("fork: {}", std::strerror(errno)));
    if (pid_ == 0) {
      ::dup2(fds[1], STDOUT_FILENO);
      ::dup2(fds[1], STDERR_FILENO);
      int null = ::open("/dev/null", O_RDONLY);
      if (null >= 0) ::dup2(null, STDIN_FILENO);
      auto error = setup ? setup() : std::string();
      if (!error.empty()) {
        auto line = "otarig-clientboard: cannot set up the client: " + error + "\n";
        (void)!::write(STDOUT_FILENO, line.data(), line.size());
        ::_exit(126);
      }
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      auto line = fmt::format("otarig-clientboard: cannot run {}: {}\n", argv[0], std::strerror(errno));
      (void)!::write(STDOUT_FILENO, line.data(), line.size());
      ::_exit(127);
    }
    ::close(fds[1]);
    fd_ = fds[0];
  }
  ~Child() {
    if (fd_ >= 0) ::close(fd_);
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      wait();
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // The next line, or nullopt at end of output or when `deadline` passed.
  std::optional<std::string> line(Clock::time_point deadline) {
    while (true) {
      if (auto nl = buf_.find('\n'); nl != std::string::npos) {
        auto l = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return l;
      }
      if (eof_) {
        if (buf_.empty()) return std::nullopt;
        return std::exchange(buf_, {});
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) {
        timed_out_ = true;
        return std::nullopt;
      }
      pollfd p{fd_, POLLIN, 0};
      int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000)));
      if (n < 0 && errno != EINTR) eof_ = true;
      if (n <= 0) continue;
      char tmp[4096];
      ssize_t got = ::read(fd_, tmp, sizeof tmp);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        eof_ = true;
        continue;
      }
      buf_.append(tmp, static_cast<std::size_t>(got));
    }
  }
  bool timed_out() const { return timed_out_; }
  void signal(int sig) {
    if (pid_ > 0 && !reaped_) ::kill(pid_, sig);
  }
  // Waits for the child (SIGKILL after `grace`); its exit status (128+N for a signal).
  int wait(std::chrono::milliseconds grace = std::chrono::seconds(5)) {
    if (reaped_) return status_;
    const auto deadline = Clock::now() + grace;
    int st = 0;
    while (true) {
      pid_t r = ::waitpid(pid_, &st, WNOHANG);
      if (r == pid_) break;
      if (r < 0 && errno != EINTR) break;
      if (Clock::now() >= deadline) {
        ::kill(pid_, SIGKILL);
        while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
        }
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    reaped_ = true;
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    // Orphans of the client (its helper processes) were reparented to us
    // (a child subreaper): reap them too.
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    return status_;
  }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string buf_;
  bool eof_ = false;
  bool timed_out_ = false;
  bool reaped_ = false;
  int status_ = -1;
};

}  // namespace otarig::clientboard
