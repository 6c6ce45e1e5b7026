#include "loopback.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <random>
#include <stdexcept>
#include <system_error>

namespace otarig::test::net {
namespace {

[[noreturn]] void throw_errno(const char* what) { throw std::system_error(errno, std::generic_category(), what); }

int remaining_ms(std::chrono::steady_clock::time_point end) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

std::string openssl_reason() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "no OpenSSL error queued" : out;
}

}  // namespace

Socket Socket::connect(std::uint16_t port, const char* address) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno("socket");
  Socket s(fd);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  ::inet_pton(AF_INET, address, &addr.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw_errno("connect");
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  s.set_receive_timeout(10s);
  return s;
}

Socket::~Socket() { close(); }

Socket& Socket::operator=(Socket&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = o.release();
  }
  return *this;
}

void Socket::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void Socket::write_all(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("send");
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::size_t Socket::read_some(char* buf, std::size_t n) {
  while (true) {
    ssize_t r = ::recv(fd_, buf, n, 0);
    if (r >= 0) return static_cast<std::size_t>(r);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) throw std::system_error(ETIMEDOUT, std::generic_category(), "recv");
    throw_errno("recv");
  }
}

ReadResult Socket::read_until_closed(std::chrono::milliseconds deadline, std::size_t max) {
  ReadResult r;
  auto end = std::chrono::steady_clock::now() + deadline;
  std::vector<char> buf(1 << 16);
  while (r.data.size() < max) {
    pollfd p{fd_, POLLIN, 0};
    int ready = ::poll(&p, 1, remaining_ms(end));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) {
      r.timed_out = true;
      break;
    }
    ssize_t n = ::recv(fd_, buf.data(), std::min(buf.size(), max - r.data.size()), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      r.error = errno;
      break;
    }
    if (n == 0) {
      r.eof = true;
      break;
    }
    r.reads.push_back(static_cast<std::size_t>(n));
    r.data.append(buf.data(), static_cast<std::size_t>(n));
  }
  return r;
}

std::string Socket::read_exact(std::size_t n, std::chrono::milliseconds deadline) {
  ReadResult r = read_until_closed(deadline, n);
  if (r.data.size() != n)
    throw std::runtime_error("read_exact: wanted " + std::to_string(n) + " bytes, got " + std::to_string(r.data.size()) +
                             (r.eof ? " then end of stream" : r.error ? " then an error" : " before the deadline"));
  return r.data;
}

bool Socket::silent_for(std::chrono::milliseconds quiet) {
  pollfd p{fd_, POLLIN, 0};
  int ready;
  do {
    ready = ::poll(&p, 1, static_cast<int>(quiet.count()));
  } while (ready < 0 && errno == EINTR);
  return ready == 0;
}

void Socket::shutdown_write() { ::shutdown(fd_, SHUT_WR); }

void Socket::set_receive_timeout(std::chrono::milliseconds t) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(t.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((t.count() % 1000) * 1000);
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

std::string pattern(std::size_t size, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(size, '\0');
  for (auto& c : out) c = static_cast<char>(rng() & 0xff);
  return out;
}

ScriptedServer::ScriptedServer(Handler handler) : handler_(std::move(handler)) {
  listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener_ < 0) throw_errno("socket");
  int one = 1;
  ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw_errno("bind");
  if (::listen(listener_, 64) != 0) throw_errno("listen");
  socklen_t len = sizeof addr;
  ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] {
    while (!stopping_) {
      pollfd p{listener_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      int on = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
      std::size_t index = ++count_;
      std::lock_guard lock(mutex_);
      open_.push_back(fd);
      workers_.emplace_back([this, fd, index] {
        Socket s(fd);
        s.set_receive_timeout(10s);
        try {
          handler_(s, index);
        } catch (const std::exception&) {
          // A peer that went away mid-script is what several tests cause.
        }
        std::lock_guard done(mutex_);
        std::erase(open_, fd);
      });
    }
  });
}

ScriptedServer::~ScriptedServer() {
  stopping_ = true;
  acceptor_.join();
  ::close(listener_);
  std::vector<std::thread> workers;
  {
    std::lock_guard lock(mutex_);
    for (int fd : open_) ::shutdown(fd, SHUT_RDWR);
    workers.swap(workers_);
  }
  for (auto& w : workers) w.join();
}

ScriptedServer::Handler send_and_close(std::vector<std::string> payloads) {
  return [payloads = std::move(payloads)](Socket& s, std::size_t connection) {
    const std::string& p = payloads.at(std::min(connection, payloads.size()) - 1);
    s.write_all(p);
    s.shutdown_write();
    s.read_until_closed(10s);
  };
}

std::string Received::get(std::size_t connection) {
  std::lock_guard lock(mutex);
  return data[connection];
}

ScriptedServer::Handler record_into(std::shared_ptr<Received> sink) {
  return [sink](Socket& s, std::size_t connection) {
    char buf[65536];
    while (true) {
      std::size_t n = 0;
      try {
        n = s.read_some(buf, sizeof buf);
      } catch (const std::exception&) {
        break;
      }
      if (n == 0) {
        std::lock_guard lock(sink->mutex);
        sink->eof[connection] = true;
        break;
      }
      std::lock_guard lock(sink->mutex);
      sink->data[connection].append(buf, n);
    }
  };
}

ScriptedServer::Handler echo() {
  return [](Socket& s, std::size_t) {
    char buf[65536];
    while (std::size_t n = s.read_some(buf, sizeof buf)) s.write_all(std::string_view(buf, n));
  };
}

TlsClient::TlsClient(std::uint16_t port, const TlsClientOptions& o) : socket_(Socket::connect(port)) {
  ctx_ = SSL_CTX_new(TLS_client_method());
  if (!ctx_) throw std::runtime_error("SSL_CTX_new: " + openssl_reason());
  SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
  if (o.max_version) SSL_CTX_set_max_proto_version(ctx_, o.max_version);
  if (!o.tls12_ciphers.empty() && SSL_CTX_set_cipher_list(ctx_, o.tls12_ciphers.c_str()) != 1)
    throw std::runtime_error("cipher list: " + openssl_reason());
  if (!o.ca_pem.empty()) {
    BIO* bio = BIO_new_mem_buf(o.ca_pem.data(), static_cast<int>(o.ca_pem.size()));
    X509* ca = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    if (!ca || X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx_), ca) != 1)
      throw std::runtime_error("CA certificate: " + openssl_reason());
    X509_free(ca);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
  }
  if (!o.cert_pem.empty()) {
    BIO* cb = BIO_new_mem_buf(o.cert_pem.data(), static_cast<int>(o.cert_pem.size()));
    X509* cert = PEM_read_bio_X509(cb, nullptr, nullptr, nullptr);
    BIO_free(cb);
    BIO* kb = BIO_new_mem_buf(o.key_pem.data(), static_cast<int>(o.key_pem.size()));
    EVP_PKEY* key = PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr);
    BIO_free(kb);
    bool ok = cert && key && SSL_CTX_use_certificate(ctx_, cert) == 1 && SSL_CTX_use_PrivateKey(ctx_, key) == 1;
    X509_free(cert);
    EVP_PKEY_free(key);
    if (!ok) throw std::runtime_error("client certificate: " + openssl_reason());
  }
  ssl_ = SSL_new(ctx_);
  SSL_set_fd(ssl_, socket_.fd());
  SSL_ctrl(ssl_, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, const_cast<char*>(o.host.c_str()));
  if (!o.ca_pem.empty()) SSL_set1_host(ssl_, o.host.c_str());
  if (o.resume && SSL_set_session(ssl_, o.resume) != 1) throw std::runtime_error("SSL_set_session: " + openssl_reason());
  if (SSL_connect(ssl_) != 1) {
    std::string reason = openssl_reason();
    long verify = SSL_get_verify_result(ssl_);
    if (verify != X509_V_OK) reason += " (verify: " + std::string(X509_verify_cert_error_string(verify)) + ")";
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
    ssl_ = nullptr;
    ctx_ = nullptr;
    throw std::runtime_error("TLS handshake failed: " + reason);
  }
}

SSL_SESSION* TlsClient::session() const { return SSL_get1_session(ssl_); }
bool TlsClient::resumed() const { return SSL_session_reused(ssl_) == 1; }

TlsClient::~TlsClient() {
  if (ssl_) SSL_free(ssl_);
  if (ctx_) SSL_CTX_free(ctx_);
}

void TlsClient::write_all(std::string_view bytes) {
  while (!bytes.empty()) {
    int n = SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size()));
    if (n <= 0) throw std::runtime_error("SSL_write: " + openssl_reason());
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::size_t TlsClient::read_some(char* buf, std::size_t n) {
  int r = SSL_read(ssl_, buf, static_cast<int>(n));
  if (r > 0) return static_cast<std::size_t>(r);
  int err = SSL_get_error(ssl_, r);
  if (err == SSL_ERROR_ZERO_RETURN) return 0;
  throw std::runtime_error("SSL_read: " + openssl_reason());
}

std::string HttpResponse::header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

HttpResponse read_response(Transport& t, bool head, std::chrono::milliseconds deadline) {
  auto end = std::chrono::steady_clock::now() + deadline;
  std::string buf = std::move(t.pending);
  t.pending.clear();
  char chunk[65536];
  auto fill = [&] {
    if (std::chrono::steady_clock::now() > end) throw std::runtime_error("read_response: deadline passed");
    std::size_t n = t.read_some(chunk, sizeof chunk);
    if (n == 0) throw std::runtime_error("read_response: end of stream after " + std::to_string(buf.size()) + " bytes");
    buf.append(chunk, n);
  };
  std::size_t header_end;
  while ((header_end = buf.find("\r\n\r\n")) == std::string::npos) fill();
  HttpResponse r;
  std::string head_text = buf.substr(0, header_end);
  std::size_t line_end = head_text.find("\r\n");
  std::string status_line = head_text.substr(0, line_end);
  if (status_line.size() < 12 || !status_line.starts_with("HTTP/1."))
    throw std::runtime_error("read_response: bad status line '" + status_line + "'");
  r.status = std::stoi(status_line.substr(9, 3));
  std::size_t pos = line_end == std::string::npos ? head_text.size() : line_end + 2;
  while (pos < head_text.size()) {
    std::size_t e = head_text.find("\r\n", pos);
    if (e == std::string::npos) e = head_text.size();
    std::string line = head_text.substr(pos, e - pos);
    std::size_t colon = line.find(':');
    std::string name = line.substr(0, colon);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    r.headers[name] = value;
    pos = e + 2;
  }
  buf.erase(0, header_end + 4);
  std::size_t length = head ? 0 : static_cast<std::size_t>(std::stoull(r.header("content-length").empty() ? "0" : r.header("content-length")));
  while (buf.size() < length) fill();
  r.body = buf.substr(0, length);
  t.pending = buf.substr(length);
  return r;
}

std::string request(const std::string& method, const std::string& target, const std::string& extra_headers) {
  return method + " " + target + " HTTP/1.1\r\nHost: test\r\n" + extra_headers + "\r\n";
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds deadline) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "otarig-net-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) throw_errno("mkdtemp");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace otarig::test::net
