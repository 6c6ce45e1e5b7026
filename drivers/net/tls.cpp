// TLS contexts for the update server and the fault proxy.
#include <boost/asio/buffer.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <memory>
#include <string_view>

#include "otarig/core/errors.hpp"
#include "otarig/core/openssl_ptr.hpp"
#include "otarig/drivers/net/pki.hpp"
#include "tls_context.hpp"

namespace otarig::drivers::net {

namespace ssl = boost::asio::ssl;

namespace {

// A PEM file's text, once OpenSSL has read a `what` ("certificate" or
// "private key") from it: InputError naming the file otherwise.
std::string pem_file(const std::filesystem::path& file, const char* what) {
  auto text = read_text_file(file);
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())), BIO_free);
  bool ok = false;
  if (bio && text.size() < (1u << 30)) {
    if (std::string_view(what) == "certificate") {
      X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
      ok = x != nullptr;
      X509_free(x);
    } else {
      EVP_PKEY* k = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
      ok = k != nullptr;
      EVP_PKEY_free(k);
    }
  }
  ERR_clear_error();
  if (!ok) throw InputError(file.string() + ": not a PEM " + what);
  return text;
}

}  // namespace

TlsConfig TlsConfig::from_files(const std::filesystem::path& cert, const std::filesystem::path& key,
                                const std::filesystem::path& peer_ca) {
  TlsConfig c;
  if (!cert.empty()) c.cert_chain_pem = pem_file(cert, "certificate");
  if (!key.empty()) c.key_pem = pem_file(key, "private key");
  if (!peer_ca.empty()) c.peer_ca_pem = pem_file(peer_ca, "certificate");
  return c;
}

namespace detail {
namespace {

// TLS 1.2 suites with forward secrecy and authenticated encryption only.
constexpr const char* kAeadTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
constexpr const char* kTls13Suites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

std::shared_ptr<ssl::context> base_context(ssl::context::method method, bool legacy_ciphers) {
  auto ctx = std::make_shared<ssl::context>(method);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                   ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
  if (!legacy_ciphers) {
    if (SSL_CTX_set_cipher_list(ctx->native_handle(), kAeadTls12Ciphers) != 1 ||
        SSL_CTX_set_ciphersuites(ctx->native_handle(), kTls13Suites) != 1)
      throw BenchError("TLS: OpenSSL refuses the AEAD cipher suites");
  }
  return ctx;
}

void load_identity(ssl::context& ctx, const TlsConfig& config) {
  boost::system::error_code ec;
  ctx.use_certificate_chain(boost::asio::buffer(config.cert_chain_pem), ec);
  if (ec) throw InputError("TLS certificate: " + tls_error_text(ec));
  ctx.use_private_key(boost::asio::buffer(config.key_pem), ssl::context::pem, ec);
  if (ec) throw InputError("TLS private key: " + tls_error_text(ec));
}

void load_peer_ca(ssl::context& ctx, const TlsConfig& config) {
  boost::system::error_code ec;
  ctx.add_certificate_authority(boost::asio::buffer(config.peer_ca_pem), ec);
  if (ec) throw InputError("TLS CA certificate: " + tls_error_text(ec));
}

}  // namespace

std::shared_ptr<ssl::context> make_server_context(const TlsConfig& config) {
  if (config.cert_chain_pem.empty() || config.key_pem.empty())
    throw InputError("TLS: a server needs a certificate and a private key");
  auto ctx = base_context(ssl::context::tls_server, config.legacy_ciphers);
  load_identity(*ctx, config);
  // A client that resumes its session on a new connection (libcurl does,
  // with a TLS 1.3 ticket) is resumed, its verified certificate kept with
  // the session: OpenSSL refuses every resumption on a server that
  // verifies peers and names no session id context, failing the handshake.
  static constexpr unsigned char kSessionContext[] = "otarig";
  if (SSL_CTX_set_session_id_context(ctx->native_handle(), kSessionContext, sizeof kSessionContext - 1) != 1)
    throw BenchError("TLS: cannot set the session id context: " + ossl::last_error());
  if (!config.peer_ca_pem.empty()) {
    load_peer_ca(*ctx, config);
    ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  } else {
    ctx->set_verify_mode(ssl::verify_none);
  }
  return ctx;
}

std::shared_ptr<ssl::context> make_client_context(const TlsConfig& config, bool verify) {
  auto ctx = base_context(ssl::context::tls_client, config.legacy_ciphers);
  if (!config.cert_chain_pem.empty()) load_identity(*ctx, config);
  if (verify) {
    if (config.peer_ca_pem.empty()) throw InputError("TLS: verifying the server needs a CA certificate");
    load_peer_ca(*ctx, config);
    ctx->set_verify_mode(ssl::verify_peer);
  } else {
    ctx->set_verify_mode(ssl::verify_none);
  }
  return ctx;
}

std::string tls_error_text(const boost::system::error_code& ec) {
  // For the SSL category message() is OpenSSL's reason string.
  return ec.message();
}

}  // namespace detail
}  // namespace otarig::drivers::net
