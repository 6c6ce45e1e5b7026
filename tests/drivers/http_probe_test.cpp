// The rig's own HTTP requests (drivers/process/http_probe): against a server
// that answers as scripted — well, truncated, not HTTP, not at all.
#include "otarig/drivers/process/http_probe.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

using namespace otarig::drivers::process;

namespace {

// Accepts one connection on 127.0.0.1, reads the request header, records
// it, sends `reply` (unless silent) and closes.
class ScriptedServer {
 public:
  explicit ScriptedServer(std::string reply, bool silent = false) : reply_(std::move(reply)), silent_(silent) {
    listen_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listen_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(listen_, 1), 0);
    socklen_t len = sizeof addr;
    ::getsockname(listen_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~ScriptedServer() {
    ::shutdown(listen_, SHUT_RDWR);
    thread_.join();
    ::close(listen_);
  }
  std::uint16_t port() const { return port_; }
  const std::string& request() const { return request_; }

 private:
  void serve() {
    const int fd = ::accept(listen_, nullptr, nullptr);
    if (fd < 0) return;
    char buf[1024];
    while (request_.find("\r\n\r\n") == std::string::npos) {
      const auto n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      request_.append(buf, static_cast<std::size_t>(n));
    }
    if (silent_) {
      // Holds the connection open until the client gives up.
      while (::recv(fd, buf, sizeof buf, 0) > 0) {
      }
    } else {
      ::send(fd, reply_.data(), reply_.size(), MSG_NOSIGNAL);
    }
    ::close(fd);
  }

  std::string reply_;
  bool silent_;
  int listen_ = -1;
  std::uint16_t port_ = 0;
  std::string request_;
  std::thread thread_;
};

const std::string kHeader = "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\nConnection: close\r\n\r\n";
constexpr std::chrono::seconds kDeadline{5};

std::string error_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST(HttpResponseHeaderSize, IsTheHeaderOnTheWireAndAsksWithHeadAndClose) {
  std::uint64_t size = 0;
  {
    ScriptedServer server(kHeader);
    size = http_response_header_size("127.0.0.1", server.port(), "/images/a.img", kDeadline);
    EXPECT_EQ(server.request().rfind("HEAD /images/a.img HTTP/1.1\r\n", 0), 0u) << server.request();
    EXPECT_NE(server.request().find("Connection: close\r\n"), std::string::npos);
  }
  EXPECT_EQ(size, kHeader.size());
}

TEST(HttpResponseHeaderSize, ATruncatedHeaderIsAnError) {
  ScriptedServer server("HTTP/1.1 200 OK\r\nContent-Len");
  EXPECT_EQ(error_of([&] { http_response_header_size("127.0.0.1", server.port(), "/", kDeadline); }),
            "the connection closed early");
}

TEST(HttpResponseHeaderSize, NoAnswerAtAllIsAnError) {
  ScriptedServer server("");
  EXPECT_EQ(error_of([&] { http_response_header_size("127.0.0.1", server.port(), "/", kDeadline); }),
            "the server closed the connection without an answer");
}

TEST(HttpResponseHeaderSize, ASilentServerTimesOut) {
  ScriptedServer server("", true);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(error_of([&] {
              http_response_header_size("127.0.0.1", server.port(), "/", std::chrono::milliseconds(300));
            }),
            "the server did not answer");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
}

TEST(HttpResponseHeaderSize, NothingListeningIsAConnectError) {
  std::uint16_t port = 0;
  {
    ScriptedServer gone(kHeader);
    port = gone.port();
  }
  // The server above accepted nothing and is closed: its port refuses.
  EXPECT_EQ(error_of([&] { http_response_header_size("127.0.0.1", port, "/", kDeadline); }).rfind("connect: ", 0),
            0u);
}

TEST(ProbeHttp, PlainServerAnswerIsItsStatusLine) {
  ScriptedServer server("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
  auto r = probe_http("127.0.0.1", server.port(), "/images/a.img", std::nullopt, kDeadline);
  EXPECT_TRUE(r.answered);
  EXPECT_EQ(r.detail, "plain HTTP, no TLS: HTTP/1.1 404 Not Found");
  EXPECT_EQ(server.request().rfind("GET /images/a.img HTTP/1.1\r\n", 0), 0u);
}

TEST(ProbeHttp, ClosingWithoutAnAnswerIsNoAnswer) {
  ScriptedServer server("");
  auto r = probe_http("127.0.0.1", server.port(), "/", std::nullopt, kDeadline);
  EXPECT_FALSE(r.answered);
  EXPECT_EQ(r.detail, "the server closed the connection without an answer");
}

TEST(ProbeHttp, ATruncatedOrForeignAnswerIsNoHttpAnswer) {
  {
    ScriptedServer server("HTTP/1.1 200 OK\r\nServ");
    auto r = probe_http("127.0.0.1", server.port(), "/", std::nullopt, kDeadline);
    EXPECT_FALSE(r.answered);
    EXPECT_EQ(r.detail, "no HTTP response header: the connection closed early");
  }
  {
    ScriptedServer server("SSH-2.0-OpenSSH_9.2\r\n");
    auto r = probe_http("127.0.0.1", server.port(), "/", std::nullopt, kDeadline);
    EXPECT_FALSE(r.answered);
    EXPECT_EQ(r.detail.rfind("no HTTP response header: ", 0), 0u) << r.detail;
  }
}

TEST(ProbeHttp, AMissingCaFileIsATlsSetupError) {
  ScriptedServer server("HTTP/1.1 400 Bad Request\r\n\r\n");
  const auto ca = std::filesystem::path(OTARIG_SOURCE_DIR) / "tests/drivers/no-such-ca.pem";
  EXPECT_EQ(error_of([&] { probe_http("127.0.0.1", server.port(), "/", ca, kDeadline); }).rfind("TLS setup: ", 0),
            0u);
}

TEST(ProbeHttp, APlainHttpServerRefusesTheTlsHandshake) {
  const std::filesystem::path ca = "/etc/ssl/certs/ca-certificates.crt";
  if (!std::filesystem::exists(ca)) GTEST_SKIP() << ca << " missing (Debian package ca-certificates)";
  ScriptedServer server("HTTP/1.1 400 Bad Request\r\n\r\n");
  auto r = probe_http("127.0.0.1", server.port(), "/", ca, kDeadline);
  EXPECT_FALSE(r.answered);
  EXPECT_EQ(r.detail.rfind("TLS handshake refused: ", 0), 0u) << r.detail;
}
