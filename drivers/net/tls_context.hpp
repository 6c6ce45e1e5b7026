#pragma once
// Asio ssl::context builders shared by the server and the proxy (private to drivers/net).
#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <string>

#include "otarig/drivers/net/tls.hpp"

namespace otarig::drivers::net::detail {

/// TLS 1.2+ server context presenting `config`'s certificate; with a
/// `peer_ca_pem`, a client certificate chaining to it is required. Throws
/// otarig::InputError when the PEM material is unusable.
std::shared_ptr<boost::asio::ssl::context> make_server_context(const TlsConfig& config);

/// TLS 1.2+ client context. With `verify`, the server must chain to
/// `config.peer_ca_pem` and match `host`; with a certificate in `config`, it is
/// presented to the server.
std::shared_ptr<boost::asio::ssl::context> make_client_context(const TlsConfig& config, bool verify);

/// The OpenSSL reason of a TLS failure, for logs ("certificate verify failed", ...).
std::string tls_error_text(const boost::system::error_code& ec);

}  // namespace otarig::drivers::net::detail
