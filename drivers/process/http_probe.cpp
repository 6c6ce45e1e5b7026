#include "otarig/drivers/process/http_probe.hpp"

#include <fmt/format.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <stdexcept>

namespace otarig::drivers::process {
namespace {

using Steady = std::chrono::steady_clock;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;

std::string describe(const beast::error_code& ec) {
  if (ec == beast::error::timeout) return "timed out";
  if (ec == http::error::end_of_stream) return "the server closed the connection without an answer";
  if (ec == http::error::partial_message || ec == asio::error::eof || ec == ssl::error::stream_truncated)
    return "the connection closed early";
  return ec.message();
}

template <class Fields>
std::string status_line(const http::response_header<Fields>& h) {
  const auto reason = h.reason();
  return fmt::format("HTTP/{}.{} {} {}", h.version() / 10, h.version() % 10, h.result_int(),
                     std::string(reason.data(), reason.size()));
}

// One short exchange on an io_context of its own: each step completes,
// fails or times out by one deadline.
class Exchange {
 public:
  Exchange(const std::string& address, std::uint16_t port, std::chrono::milliseconds limit)
      : deadline_(Steady::now() + limit) {
    beast::error_code ec;
    const auto ip = asio::ip::make_address(address, ec);
    if (ec) throw std::runtime_error(fmt::format("address '{}': {}", address, ec.message()));
    to_ = {ip, port};
  }

  asio::io_context& io() { return io_; }
  const asio::ip::tcp::endpoint& to() const { return to_; }

  http::request<http::empty_body> request(http::verb verb, const std::string& target) const {
    http::request<http::empty_body> req{verb, target, 11};
    req.set(http::field::host, fmt::format("{}:{}", to_.address().to_string(), to_.port()));
    req.set(http::field::connection, "close");
    return req;
  }

  /// Starts an asynchronous step on `tcp`'s stack and runs it to its end.
  template <class Start>
  beast::error_code run(beast::tcp_stream& tcp, Start start) {
    tcp.expires_at(deadline_);
    beast::error_code result = asio::error::operation_aborted;
    start([&result](beast::error_code ec, auto&&...) { result = ec; });
    io_.restart();
    io_.run();
    return result;
  }

  void connect(beast::tcp_stream& tcp) {
    if (auto ec = run(tcp, [&](auto done) { tcp.async_connect(to_, done); }))
      throw std::runtime_error("connect: " + describe(ec));
  }

  /// Reads a response header: header_bytes is its length on the wire,
  /// received what arrived at all.
  template <class Stream>
  beast::error_code read_header(Stream& stream, beast::tcp_stream& tcp, http::response_parser<http::empty_body>& p) {
    return run(tcp, [&](auto done) {
      http::async_read_header(stream, buffer_, p, [this, done](beast::error_code ec, std::size_t n) mutable {
        header_bytes = n;
        received = buffer_.size() + n;
        done(ec);
      });
    });
  }

  std::size_t header_bytes = 0;
  std::size_t received = 0;

 private:
  Steady::time_point deadline_;
  asio::io_context io_;
  asio::ip::tcp::endpoint to_;
  beast::flat_buffer buffer_;
};

}  // namespace

ProbeResult probe_http(const std::string& address, std::uint16_t port, const std::string& target,
                       const std::optional<std::filesystem::path>& ca_file, std::chrono::milliseconds deadline,
                       const std::optional<std::pair<std::filesystem::path, std::filesystem::path>>&
                           client_certificate) {
  Exchange x(address, port, deadline);
  const auto request = x.request(http::verb::get, target);
  http::response_parser<http::empty_body> parser;
  parser.skip(true);  // the status line is all it needs
  if (!ca_file) {
    beast::tcp_stream stream(x.io());
    x.connect(stream);
    if (x.run(stream, [&](auto done) { http::async_write(stream, request, done); }))
      return {false, "the request could not be sent"};
    if (auto ec = x.read_header(stream, stream, parser))
      return {false, x.received == 0 ? std::string("the server closed the connection without an answer")
                                     : "no HTTP response header: " + describe(ec)};
    return {true, "plain HTTP, no TLS: " + status_line(parser.get())};
  }
  ssl::context ctx(ssl::context::tls_client);
  ctx.set_verify_mode(ssl::verify_peer);
  beast::error_code ec;
  ctx.load_verify_file(ca_file->string(), ec);
  if (ec) throw std::runtime_error(fmt::format("TLS setup: {}: {}", ca_file->string(), ec.message()));
  if (client_certificate) {
    ctx.use_certificate_chain_file(client_certificate->first.string(), ec);
    if (!ec) ctx.use_private_key_file(client_certificate->second.string(), ssl::context::pem, ec);
    if (ec)
      throw std::runtime_error(
          fmt::format("TLS setup: {}: {}", client_certificate->first.string(), ec.message()));
  }
  beast::ssl_stream<beast::tcp_stream> stream(x.io(), ctx);
  X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(stream.native_handle()), x.to().address().to_string().c_str());
  auto& tcp = beast::get_lowest_layer(stream);
  x.connect(tcp);
  if ((ec = x.run(tcp, [&](auto done) { stream.async_handshake(ssl::stream_base::client, done); })))
    return {false, "TLS handshake refused: " + describe(ec)};
  // With TLS 1.3 the server judges the (missing) client certificate after
  // the client's side of the handshake is done: its alert comes on the read.
  if ((ec = x.run(tcp, [&](auto done) { http::async_write(stream, request, done); })))
    return {false, "refused after the handshake: " + describe(ec)};
  if ((ec = x.read_header(stream, tcp, parser))) return {false, "refused after the handshake: " + describe(ec)};
  return {true, (client_certificate ? "answered a client presenting " + client_certificate->first.filename().string() + ": "
                                    : std::string("answered without a client certificate: ")) +
                    status_line(parser.get())};
}

std::uint64_t http_response_header_size(const std::string& address, std::uint16_t port, const std::string& target,
                                        std::chrono::milliseconds deadline) {
  Exchange x(address, port, deadline);
  beast::tcp_stream stream(x.io());
  x.connect(stream);
  const auto request = x.request(http::verb::head, target);
  if (x.run(stream, [&](auto done) { http::async_write(stream, request, done); }))
    throw std::runtime_error("send failed");
  http::response_parser<http::empty_body> parser;
  parser.skip(true);  // the answer to HEAD: a GET's header fields, no body
  if (auto ec = x.read_header(stream, stream, parser)) {
    if (ec == beast::error::timeout) throw std::runtime_error("the server did not answer");
    throw std::runtime_error(describe(ec));
  }
  return x.header_bytes;
}

}  // namespace otarig::drivers::process
