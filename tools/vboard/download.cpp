// otarig-vboard's download client. Beast's asynchronous operations run on a
// private io_context one at a time, so every step has a deadline (the
// tcp_stream's expiry) while the caller sees a blocking call.
#include "download.hpp"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>

#include "otarig/core/image.hpp"

namespace otarig::vboard_tool {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Steady = std::chrono::steady_clock;

struct Url {
  std::string scheme, host, port, target;
};

Url parse_url(const std::string& url) {
  Url u;
  auto sep = url.find("://");
  if (sep == std::string::npos) throw DownloadError(fmt::format("not a URL: '{}'", url));
  u.scheme = url.substr(0, sep);
  if (u.scheme != "http" && u.scheme != "https")
    throw DownloadError(fmt::format("unsupported URL scheme '{}' (http, https, file)", u.scheme));
  auto rest = url.substr(sep + 3);
  auto slash = rest.find('/');
  auto authority = rest.substr(0, slash);
  u.target = slash == std::string::npos ? "/" : rest.substr(slash);
  if (authority.empty()) throw DownloadError(fmt::format("URL without a host: '{}'", url));
  if (authority.front() == '[') {  // [IPv6]:port
    auto close = authority.find(']');
    if (close == std::string::npos) throw DownloadError(fmt::format("bad IPv6 host in '{}'", url));
    u.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size() && authority[close + 1] == ':') u.port = authority.substr(close + 2);
  } else {
    auto colon = authority.rfind(':');
    u.host = authority.substr(0, colon);
    if (colon != std::string::npos) u.port = authority.substr(colon + 1);
  }
  if (u.port.empty()) u.port = u.scheme == "https" ? "443" : "80";
  return u;
}

std::string describe(const beast::error_code& ec) {
  if (ec == beast::error::timeout) return "timed out";
  if (ec == http::error::partial_message || ec == asio::error::eof || ec == ssl::error::stream_truncated)
    return "the connection closed early";
  if (ec == http::error::body_limit) return "the body exceeds the slot";
  return ec.message();
}

class Session {
 public:
  explicit Session(const DownloadOptions& o) : o_(o), overall_(Steady::now() + o.total_timeout) {}

  /// The deadline of the next step.
  std::chrono::milliseconds step() const {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(overall_ - Steady::now());
    if (left.count() <= 0) throw DownloadError("the download took too long");
    return std::min(left, o_.step_timeout);
  }

  /// Sets the deadline of the next step on `s` (none for a flawed updater
  /// without deadlines).
  void arm(beast::tcp_stream& s) const {
    if (o_.deadlines)
      s.expires_after(step());
    else
      s.expires_never();
  }

  /// Starts an asynchronous operation and runs the io_context until it completes.
  template <class Start>
  void run(const char* what, Start start) {
    beast::error_code result;
    bool done = false;
    start([&](beast::error_code ec, std::size_t = 0) {
      result = ec;
      done = true;
    });
    io_.restart();
    io_.run();
    if (!done) throw DownloadError(fmt::format("{}: did not complete", what));
    if (result) throw DownloadError(fmt::format("{}: {}", what, describe(result)));
  }

  /// What arrived so far, across attempts.
  std::vector<std::uint8_t> body;
  std::optional<std::uint64_t> total;  ///< Content-Length of the whole body, or the size its image header declares
  bool in_body = false;                ///< the last attempt failed while reading the body
  bool close_delimited = false;        ///< the 200 had no Content-Length: the body ends with the connection
  bool undeclared = false;             ///< ... and it is not an otarig image: no header says where it ends

  template <class Stream>
  void exchange(Stream& stream, beast::tcp_stream& lowest, const Url& u) {
    http::request<http::empty_body> req{http::verb::get, u.target, 11};
    req.set(http::field::host, u.host + ":" + u.port);
    req.set(http::field::user_agent, "otarig-vboard/1.0");
    req.set(http::field::connection, "close");
    const bool resuming = !body.empty() && total;
    if (resuming) req.set(http::field::range, fmt::format("bytes={}-", body.size()));
    in_body = false;
    arm(lowest);
    run("send request", [&](auto handler) { http::async_write(stream, req, handler); });

    beast::flat_buffer buffer;
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(o_.max_bytes);
    arm(lowest);
    run("read response", [&](auto handler) { http::async_read_header(stream, buffer, parser, handler); });
    const auto status = parser.get().result_int();
    if (resuming && status == 206) {
      // Content-Range: bytes FIRST-LAST/TOTAL must continue where we are.
      const std::string range(parser.get()[http::field::content_range]);
      unsigned long long first = 0, last = 0, whole = 0;
      if (std::sscanf(range.c_str(), "bytes %llu-%llu/%llu", &first, &last, &whole) != 3 ||
          first != body.size() || whole != *total || last + 1 != whole)
        throw DownloadError(fmt::format("resume: unexpected Content-Range '{}' (have {} of {} bytes)", range,
                                        body.size(), *total));
    } else if (status == 200) {
      body.clear();
      total.reset();
      close_delimited = false;
      if (auto len = parser.content_length()) {
        if (*len > o_.max_bytes) throw DownloadError(fmt::format("{} bytes exceed the slot", *len));
        body.reserve(static_cast<std::size_t>(*len));
        total = *len;
      } else {
        // The body ends with the connection. The size the update command
        // named, or else the image header, says where the image ends (at
        // most a slot), and reading stops there; the parser's own limit would
        // count bytes it buffered past it. A flawed updater reads whatever
        // the server sends.
        close_delimited = true;
        undeclared = false;
        parser.body_limit(boost::none);
        if (o_.stop_at_declared_size && o_.expected_size) {
          if (*o_.expected_size > o_.max_bytes)
            throw DownloadError(fmt::format("{} bytes exceed the slot", *o_.expected_size));
          total = *o_.expected_size;
        }
      }
    } else {
      throw DownloadError(fmt::format("HTTP {} {}", status, std::string(parser.get().reason())));
    }
    in_body = true;
    std::array<std::uint8_t, 65536> chunk{};
    while (!parser.is_done()) {
      parser.get().body().data = chunk.data();
      parser.get().body().size = chunk.size();
      beast::error_code ec;
      arm(lowest);
      bool done = false;
      http::async_read(stream, buffer, parser, [&](beast::error_code e, std::size_t) {
        ec = e;
        done = true;
      });
      io_.restart();
      io_.run();
      if (!done) throw DownloadError("read body: did not complete");
      if (ec == http::error::need_buffer) ec = {};
      std::size_t got = chunk.size() - parser.get().body().size;
      const std::size_t had = body.size();
      body.insert(body.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(got));
      const bool bounded = close_delimited && o_.stop_at_declared_size;
      if (bounded && !total && !undeclared && body.size() >= image::kHeaderSize) {
        total = declared_size();
        undeclared = !total;
      }
      if (bounded && !total && body.size() > o_.max_bytes) {
        in_body = false;
        throw DownloadError(fmt::format("the body exceeds the slot after {} bytes", body.size()));
      }
      if (bounded && total && body.size() > *total) {
        body.resize(static_cast<std::size_t>(*total));  // past the declared size: not the image's
        got = body.size() - had;
      }
      if (got > 0 && o_.on_chunk) o_.on_chunk(std::span<const std::uint8_t>(chunk.data(), got));
      if (bounded && total && body.size() == *total) break;  // the whole image: read no further
      if (ec) {
        if (ec == http::error::body_limit) in_body = false;
        throw DownloadError(total ? fmt::format("{} after {} of {} bytes", describe(ec), body.size(), *total)
                                  : fmt::format("{} after {} bytes", describe(ec), body.size()));
      }
    }
    if (close_delimited && total && body.size() < *total) {
      // The server closed before the size the image declares.
      throw DownloadError(
          fmt::format("the connection closed early after {} of {} declared bytes", body.size(), *total));
    }
    beast::error_code ignored;
    lowest.socket().shutdown(tcp::socket::shutdown_both, ignored);
    in_body = false;
  }

  // The total size (header, payload, trailer) the image header at the start
  // of `body` declares, for a body whose length the server did not say;
  // nullopt when the body is not an otarig image (it then ends when the
  // server closes, at most a slot).
  std::optional<std::uint64_t> declared_size() const {
    std::span<const std::uint8_t, image::kHeaderSize> head(body.data(), image::kHeaderSize);
    const auto h = image::decode_header(head);
    if (h.magic != image::kHeaderMagic) return std::nullopt;
    const std::uint64_t size = std::uint64_t{h.header_size} + h.payload_size + image::kTrailerSize;
    if (size > o_.max_bytes)
      throw DownloadError(fmt::format("the image header declares {} bytes, more than the slot holds", size));
    return size;
  }

  void get(const Url& u) {
    tcp::resolver resolver(io_);
    beast::error_code ec;
    auto endpoints = resolver.resolve(u.host, u.port, ec);
    if (ec) throw DownloadError(fmt::format("resolve {}: {}", u.host, ec.message()));

    if (u.scheme == "http") {
      beast::tcp_stream stream(io_);
      arm(stream);
      run("connect", [&](auto handler) {
        stream.async_connect(endpoints,
                             [handler](beast::error_code e, const tcp::endpoint&) mutable { handler(e); });
      });
      exchange(stream, stream, u);
      return;
    }

    ssl::context ctx(ssl::context::tls_client);
    ctx.set_verify_mode(o_.verify_server ? ssl::verify_peer : ssl::verify_none);
    try {
      if (o_.ca_file.empty())
        ctx.set_default_verify_paths();
      else
        ctx.load_verify_file(o_.ca_file);
      for (const auto& der : o_.extra_ca_der) {
        const unsigned char* p = der.data();
        std::unique_ptr<X509, decltype(&X509_free)> ca(d2i_X509(nullptr, &p, static_cast<long>(der.size())), &X509_free);
        if (!ca || X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx.native_handle()), ca.get()) != 1) {
          ERR_clear_error();
          throw DownloadError("TLS setup: a server CA the device was given does not load");
        }
      }
      if (!o_.client_cert_file.empty()) {
        ctx.use_certificate_chain_file(o_.client_cert_file);
        ctx.use_private_key_file(o_.client_key_file, ssl::context::pem);
      }
    } catch (const std::exception& e) {
      throw DownloadError(fmt::format("TLS setup: {}", e.what()));
    }
    beast::ssl_stream<beast::tcp_stream> stream(io_, ctx);
    // The server's certificate must name the host: an IP address or a DNS name.
    X509_VERIFY_PARAM* param = SSL_get0_param(stream.native_handle());
    asio::ip::make_address(u.host, ec);
    if (!ec) {
      if (o_.verify_server) X509_VERIFY_PARAM_set1_ip_asc(param, u.host.c_str());
    } else {
      if (o_.verify_server) X509_VERIFY_PARAM_set1_host(param, u.host.c_str(), 0);
      // SSL_set_tlsext_host_name() without its C cast.
      SSL_ctrl(stream.native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
               const_cast<char*>(u.host.c_str()));
    }
    auto& lowest = beast::get_lowest_layer(stream);
    arm(lowest);
    run("connect", [&](auto handler) {
      lowest.async_connect(endpoints,
                           [handler](beast::error_code e, const tcp::endpoint&) mutable { handler(e); });
    });
    arm(lowest);
    run("TLS handshake", [&](auto handler) { stream.async_handshake(ssl::stream_base::client, handler); });
    exchange(stream, lowest, u);
  }

 private:
  const DownloadOptions& o_;
  Steady::time_point overall_;
  asio::io_context io_;
};

std::vector<std::uint8_t> read_file(const std::string& path, const DownloadOptions& o) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DownloadError(fmt::format("cannot open {}", path));
  std::vector<std::uint8_t> body;
  std::array<char, 65536> chunk{};
  while (in) {
    in.read(chunk.data(), chunk.size());
    const auto got = static_cast<std::size_t>(in.gcount());
    if (got == 0) break;
    if (body.size() + got > o.max_bytes) throw DownloadError("the file exceeds the slot");
    body.insert(body.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(got));
    if (o.on_chunk)
      o.on_chunk(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(chunk.data()), got));
  }
  if (in.bad()) throw DownloadError(fmt::format("read error in {}", path));
  return body;
}

}  // namespace

std::vector<std::uint8_t> download(const std::string& url, const DownloadOptions& options) {
  if (url.rfind("file:", 0) == 0) {
    auto path = url.substr(5);
    if (path.rfind("//", 0) == 0) path = path.substr(2);  // file:///abs -> /abs
    return read_file(path, options);
  }
  Session session(options);
  const auto u = parse_url(url);
  for (unsigned attempt = 0;; ++attempt) {
    try {
      session.get(u);
      return std::move(session.body);
    } catch (const DownloadError& e) {
      // An interrupted body is resumed with a Range request; one cut before
      // its first byte (the reset fell in the TLS handshake or the headers'
      // bytes) is fetched again whole.
      if (!session.in_body || !session.total || attempt >= options.resume_attempts) throw;
      if (options.on_resume) options.on_resume(e.what(), session.body.size());
    }
  }
}

}  // namespace otarig::vboard_tool
