#pragma once
// TLS settings shared by the update server and the fault proxy (PEM text, so
// certificates made in memory by TestPki need no files).
#include <filesystem>
#include <string>

namespace otarig::drivers::net {

/// A TLS endpoint: its certificate chain and key, and for mutual TLS the CA a
/// peer's certificate must chain to.
struct TlsConfig {
  std::string cert_chain_pem;  ///< leaf first, then intermediates
  std::string key_pem;
  /// Non-empty on a server: a client certificate signed by this CA is required
  /// (mutual TLS). Non-empty on a client: the CA the server must chain to.
  std::string peer_ca_pem;
  /// Off (the default): only AEAD cipher suites are offered and accepted —
  /// TLS 1.3's, and in TLS 1.2 ECDHE with AES-GCM or ChaCha20-Poly1305. On:
  /// OpenSSL's default list for TLS 1.2 as well, CBC-mode SHA-1 suites
  /// included, for a legacy device that knows no better (a profile's
  /// `device.network.legacy_ciphers: true`, recorded in run.json).
  bool legacy_ciphers = false;

  /// Reads the three PEM files (an empty path leaves that part empty); errors
  /// throw otarig::InputError naming the file.
  static TlsConfig from_files(const std::filesystem::path& cert, const std::filesystem::path& key,
                              const std::filesystem::path& peer_ca = {});
};

}  // namespace otarig::drivers::net
