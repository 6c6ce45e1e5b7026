// libFuzzer target: the update server's request handling (Boost.Beast's
// parser, target decoding, ranges, paths under the served root). Whatever
// bytes a client sends, the server answers, refuses (400) or closes, and
// goes on serving: after every input a well-formed request still gets 200.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "otarig/drivers/net/http_server.hpp"

namespace {

using otarig::drivers::net::Release;
using otarig::drivers::net::ServerOptions;
using otarig::drivers::net::UpdateServer;

UpdateServer& server() {
  static UpdateServer* s = [] {
    // A root with a file and a folder, so that paths under it are looked up.
    auto root = std::filesystem::temp_directory_path() / ("otarig-fuzz-http-" + std::to_string(::getpid()));
    std::filesystem::create_directories(root / "dir");
    std::ofstream(root / "dir" / "file.txt") << "served from the root\n";
    ServerOptions o;
    o.root = root;
    o.timeout = std::chrono::milliseconds(2000);
    o.max_log_records = 64;
    auto* server = new UpdateServer(o);
    server->start();
    server->add_release(Release{"r1", "1.0.0+1", 1, std::vector<std::uint8_t>(4096, 0x5a)});
    server->set_latest("r1");
    return server;
  }();
  return *s;
}

// Sends `bytes`, half-closes, and reads the answer until the server closes
// (at most 1 MiB kept, 5 s). Returns what was read.
std::string exchange(std::uint16_t port, std::string_view bytes) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) __builtin_trap();
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) __builtin_trap();
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    auto n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may close on a bad request before reading it all
    sent += static_cast<std::size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  std::string reply;
  char buf[16384];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    if (reply.size() < (1u << 20)) reply.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return reply;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto& s = server();
  exchange(s.port(), std::string_view(reinterpret_cast<const char*>(data), size));
  s.take_request_log();
  const auto ok = exchange(s.port(), "GET /manifest.json HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n");
  if (ok.rfind("HTTP/1.1 200", 0) != 0) __builtin_trap();
  return 0;
}
