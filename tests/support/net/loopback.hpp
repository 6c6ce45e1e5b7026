#pragma once
// Blocking loopback clients and scripted upstream servers for the network
// tests: plain POSIX sockets and OpenSSL, no Asio, so tests compile fast and
// observe exactly what arrives on the wire.
#include <openssl/ssl.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace otarig::test::net {

using namespace std::chrono_literals;

/// Something bytes can be written to and read from (a TCP socket or TLS).
class Transport {
 public:
  virtual ~Transport() = default;
  virtual void write_all(std::string_view bytes) = 0;
  /// Up to `n` bytes; 0 at end of stream. Throws std::system_error (with the
  /// errno, e.g. ECONNRESET) on errors and on the receive timeout.
  virtual std::size_t read_some(char* buf, std::size_t n) = 0;
  /// Bytes read past the end of the last HTTP response (read_response).
  std::string pending;
};

/// What a read loop saw.
struct ReadResult {
  std::string data;
  std::vector<std::size_t> reads;  ///< size of each read that returned data
  bool eof = false;                ///< the peer closed (read returned 0)
  int error = 0;                   ///< errno of a failed read (ECONNRESET, ...)
  bool timed_out = false;          ///< the deadline passed with the stream open
};

/// A connected TCP socket (move-only; closes on destruction).
class Socket : public Transport {
 public:
  static Socket connect(std::uint16_t port, const char* address = "127.0.0.1");
  explicit Socket(int fd = -1) : fd_(fd) {}
  ~Socket() override;
  Socket(Socket&& o) noexcept : fd_(o.release()) {}
  Socket& operator=(Socket&& o) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  int fd() const { return fd_; }
  int release() { int f = fd_; fd_ = -1; return f; }
  void write_all(std::string_view bytes) override;
  std::size_t read_some(char* buf, std::size_t n) override;
  /// Reads until end of stream, an error, `max` bytes, or `deadline` of
  /// silence-or-total time (whichever ends first).
  ReadResult read_until_closed(std::chrono::milliseconds deadline, std::size_t max = SIZE_MAX);
  /// Exactly `n` bytes (throws on end of stream, error or deadline).
  std::string read_exact(std::size_t n, std::chrono::milliseconds deadline = 5s);
  /// True when nothing arrives (and the peer does not close) within `quiet`.
  bool silent_for(std::chrono::milliseconds quiet);
  void shutdown_write();
  void set_receive_timeout(std::chrono::milliseconds t);
  void close();

 private:
  int fd_;
};

/// Deterministic test bytes.
std::string pattern(std::size_t size, std::uint64_t seed = 1);

/// A TCP server on 127.0.0.1 with a thread per connection running `handler`
/// (connections are numbered from 1).
class ScriptedServer {
 public:
  using Handler = std::function<void(Socket&, std::size_t connection)>;
  explicit ScriptedServer(Handler handler);
  ~ScriptedServer();
  std::uint16_t port() const { return port_; }
  std::size_t connections() const { return count_; }

 private:
  Handler handler_;
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<std::size_t> count_{0};
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  std::mutex mutex_;
  std::vector<std::thread> workers_;
  std::vector<int> open_;  // sockets of running handlers, shut down on destruction
};

/// Handler: on connect, sends the payload of that connection (payloads[i-1],
/// the last one again beyond the list), half-closes, and drains until EOF.
ScriptedServer::Handler send_and_close(std::vector<std::string> payloads);
/// Handler: records what arrives until EOF (into `sink[connection]`), then closes.
struct Received {
  std::mutex mutex;
  std::map<std::size_t, std::string> data;
  std::map<std::size_t, bool> eof;
  std::string get(std::size_t connection);
};
ScriptedServer::Handler record_into(std::shared_ptr<Received> sink);
/// Handler: echoes everything back until EOF.
ScriptedServer::Handler echo();

/// Sets a promise once: at now(), or when it goes out of scope, so a server
/// hook that waits on it returns however the test ends.
struct ReleaseOnExit {
  std::promise<void>& promise;
  bool done = false;
  void now() {
    if (!std::exchange(done, true)) promise.set_value();
  }
  ~ReleaseOnExit() { now(); }
};

/// A TLS client connection through OpenSSL (blocking).
struct TlsClientOptions {
  std::string ca_pem = {};    ///< verify the server against this CA (empty: no verification)
  std::string cert_pem = {};  ///< client certificate for mutual TLS
  std::string key_pem = {};
  std::string host = "localhost";  ///< SNI and host name check
  std::string tls12_ciphers = {};  ///< offer only these TLS 1.2 suites (OpenSSL cipher list; empty: defaults)
  int max_version = 0;             ///< e.g. TLS1_2_VERSION; 0: the highest OpenSSL knows
  SSL_SESSION* resume = nullptr;   ///< offer to resume this session (TLS 1.3: its ticket)
};
class TlsClient : public Transport {
 public:
  /// Connects and handshakes. Throws std::runtime_error with OpenSSL's reason
  /// and the verification result when the handshake fails.
  TlsClient(std::uint16_t port, const TlsClientOptions& options);
  ~TlsClient() override;
  void write_all(std::string_view bytes) override;
  std::size_t read_some(char* buf, std::size_t n) override;
  /// The session to resume later (the caller frees it with SSL_SESSION_free);
  /// with TLS 1.3 only after data was read (the ticket comes after the handshake).
  SSL_SESSION* session() const;
  /// Whether the handshake resumed TlsClientOptions::resume.
  bool resumed() const;

 private:
  Socket socket_;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
};

/// One HTTP/1.1 response read from a transport.
struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  ///< lower-case names
  std::string body;
  std::string header(const std::string& name) const;
};
/// Reads one response (Content-Length framing; no body when `head`).
HttpResponse read_response(Transport& t, bool head = false, std::chrono::milliseconds deadline = 5s);
/// "GET /x HTTP/1.1\r\nHost: t\r\n" + extra + "\r\n".
std::string request(const std::string& method, const std::string& target, const std::string& extra_headers = "");

/// Polls `pred` every 5 ms until it holds or `deadline` passes. For state a
/// peer updates just after the bytes a test waited for (logs, counters).
bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds deadline = 2s);

/// A fresh directory under the system temp dir, removed with its contents.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace otarig::test::net
