#pragma once
// Test certificates for the update server and the fault proxy: a CA, a server
// and a client certificate it signs, and an impostor: a server certificate for
// the same names signed by an unrelated CA. EC P-256 keys, SHA-256 signatures,
// made with OpenSSL 3 in memory (no openssl command needed).
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace otarig::drivers::net {

/// A certificate and its private key, both PEM.
struct CertifiedKey {
  std::string cert_pem;
  std::string key_pem;
};

struct TestPkiOptions {
  /// Prefix of every subject common name ("<label> CA", "<label> server", ...).
  std::string label = "otarig test";
  /// DNS names and IP addresses the server certificates carry.
  std::vector<std::string> dns_names = {"localhost"};
  std::vector<std::string> ip_addresses = {"127.0.0.1", "::1"};
  /// Validity from one hour ago (clock skew) for `valid_for`.
  std::chrono::hours valid_for{24 * 30};
};

/// A complete set of test certificates.
struct TestPki {
  CertifiedKey ca;        ///< self-signed root the device (client) trusts
  CertifiedKey server;    ///< server certificate (serverAuth) signed by `ca`
  CertifiedKey client;    ///< client certificate (clientAuth) signed by `ca`, for mutual TLS
  CertifiedKey wrong_ca;  ///< an unrelated self-signed root
  CertifiedKey impostor;  ///< server certificate for the same names, signed by `wrong_ca`

  /// Generates fresh keys and certificates. Throws otarig::BenchError when
  /// OpenSSL fails.
  static TestPki generate(const TestPkiOptions& options = {});

  /// Writes ca.pem, ca.key, server.pem, server.key, client.pem, client.key,
  /// wrong-ca.pem, wrong-ca.key, impostor.pem and impostor.key into `dir`
  /// (created when missing; keys are mode 0600).
  void write(const std::filesystem::path& dir) const;
};

/// Reads a whole file; errors throw otarig::InputError naming the file.
std::string read_text_file(const std::filesystem::path& file);

}  // namespace otarig::drivers::net
