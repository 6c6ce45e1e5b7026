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

  /// Reads the three PEM files (an empty path leaves that part empty); errors
  /// throw otarig::InputError naming the file.
  static TlsConfig from_files(const std::filesystem::path& cert, const std::filesystem::path& key,
                              const std::filesystem::path& peer_ca = {});
};

}  // namespace otarig::drivers::net
