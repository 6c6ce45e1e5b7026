// Spawning the clients' tools and small file helpers.
#include "otarig/drivers/clients/tools.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>

#include "otarig/core/errors.hpp"
#include "otarig/core/spawn.hpp"

namespace otarig::drivers::clients {

std::string find_tool(const std::string& tool) {
  if (tool.find('/') != std::string::npos) return ::access(tool.c_str(), X_OK) == 0 ? tool : std::string();
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path && *path ? path : "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) continue;
    auto candidate = std::filesystem::path(dir) / tool;
    if (::access(candidate.c_str(), X_OK) == 0 && std::filesystem::is_regular_file(candidate))
      return candidate.string();
  }
  // Administrative tools (mksquashfs) live in sbin, which a user's PATH may lack.
  for (const char* dir2 : {"/usr/sbin", "/sbin"}) {
    auto candidate = std::filesystem::path(dir2) / tool;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return {};
}

ToolResult run_tool(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                    const std::filesystem::path& cwd) {
  if (argv.empty()) throw BenchError("run_tool: no command");
  const auto exe = find_tool(argv[0]);
  if (exe.empty()) throw BenchError(fmt::format("{}: not found on PATH", argv[0]));
  Spawned child;
  try {
    child = spawn_process(argv, {.program = exe, .capture_output = true, .output_file = {}, .cwd = cwd,
                                 .new_process_group = false});
  } catch (const std::system_error& e) {
    throw BenchError(fmt::format("{}: cannot start: {}", argv[0], std::strerror(e.code().value())));
  }
  const pid_t pid = child.pid;
  const int out = child.output.get();
  ToolResult result;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool killed = false;
  char buf[8192];
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ::kill(pid, SIGKILL);
      killed = true;
      break;
    }
    pollfd p{out, POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 1000)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    ssize_t got = ::read(out, buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    result.output.append(buf, static_cast<std::size_t>(got));
  }
  child.output.reset();
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (killed)
    result.status = 137;
  else if (WIFEXITED(status))
    result.status = WEXITSTATUS(status);
  else if (WIFSIGNALED(status))
    result.status = 128 + WTERMSIG(status);
  return result;
}

TempDir::TempDir(const std::string& prefix) {
  auto pattern = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
  if (::mkdtemp(pattern.data()) == nullptr)
    throw BenchError(fmt::format("mkdtemp {}: {}", pattern, std::strerror(errno)));
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::vector<std::uint8_t> read_bytes(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw BenchError(fmt::format("cannot read {}", file.string()));
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::filesystem::path& file, const void* data, std::size_t size) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) throw BenchError(fmt::format("cannot write {}", file.string()));
}

void write_text(const std::filesystem::path& file, const std::string& text) {
  write_bytes(file, text.data(), text.size());
}

void write_text_atomically(const std::filesystem::path& file, const std::string& text) {
  auto tmp = file;
  tmp += ".tmp";
  auto fail = [&](const std::string& what) {
    return BenchError(fmt::format("cannot write {}: {}: {}", file.string(), what, std::strerror(errno)));
  };
  {
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw fail("open " + tmp.string());
    std::size_t done = 0;
    while (done < text.size()) {
      const auto n = ::write(fd, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ::close(fd);
        throw fail("write " + tmp.string());
      }
      done += static_cast<std::size_t>(n);
    }
    if (::fsync(fd) != 0) {
      ::close(fd);
      throw fail("fsync " + tmp.string());
    }
    if (::close(fd) != 0) throw fail("close " + tmp.string());
  }
  if (::rename(tmp.c_str(), file.c_str()) != 0) throw fail("rename " + tmp.string());
  const auto dir = file.has_parent_path() ? file.parent_path() : std::filesystem::path(".");
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) throw fail("open the folder " + dir.string());
  const bool synced = ::fsync(dfd) == 0;
  ::close(dfd);
  if (!synced) throw fail("fsync the folder " + dir.string());
}

}  // namespace otarig::drivers::clients
