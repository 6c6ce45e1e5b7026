#pragma once
// Test certificates for the update server and the fault proxy: a CA, a server
// and a client certificate it signs, and an impostor: a server certificate for
// the same names signed by an unrelated CA; and the certificates of a support
// period: the server's certificate expired, not yet valid, renewed (same CA,
// new key and serial), issued by a rotated CA, and an expired and a renewed
// client certificate. EC P-256 keys, SHA-256 signatures, made with OpenSSL 3 in
// memory (no openssl command needed).
#include <chrono>
#include <filesystem>
#include <map>
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
  /// Validity from 90 days ago (beyond the 30 days a device clock-skew trial
  /// moves the clock either way) for `valid_for` from now (the CAs, the
  /// server and client certificates, the impostor, the renewed and rotated
  /// certificates).
  std::chrono::hours valid_for{24 * 400};
};

/// A complete set of test certificates.
struct TestPki {
  CertifiedKey ca;        ///< self-signed root the device (client) trusts
  CertifiedKey server;    ///< server certificate (serverAuth) signed by `ca`
  CertifiedKey client;    ///< client certificate (clientAuth) signed by `ca`, for mutual TLS
  CertifiedKey wrong_ca;  ///< an unrelated self-signed root
  CertifiedKey impostor;  ///< server certificate for the same names, signed by `wrong_ca`
  /// The server's names from `ca`, valid for 30 days that ended a day ago.
  CertifiedKey expired;
  /// The server's names from `ca`, valid from a day from now for 30 days.
  CertifiedKey not_yet_valid;
  /// The server's names from `ca`, valid now: a new key and serial (a renewal).
  CertifiedKey renewed;
  /// Another self-signed root ("<label> CA 2"): the CA a rotation moves to.
  CertifiedKey rotated_ca;
  /// The server's names from `rotated_ca`, valid now.
  CertifiedKey rotated;
  /// A client certificate (clientAuth) from `ca` for a new key, valid for
  /// 30 days that ended a day ago.
  CertifiedKey expired_client;
  /// A client certificate (clientAuth) from `ca` for a new key, valid now:
  /// what a device is given when its expired one is renewed.
  CertifiedKey renewed_client;

  /// The server certificates a fault proxy's `certificate=NAME` rule
  /// presents: expired, not-yet-valid, renewed, rotated-ca.
  std::map<std::string, CertifiedKey> server_certificates() const;

  /// Generates fresh keys and certificates. Throws otarig::BenchError when
  /// OpenSSL fails.
  static TestPki generate(const TestPkiOptions& options = {});

  /// Writes ca.pem, ca.key, server.pem, server.key, client.pem, client.key,
  /// wrong-ca.pem, wrong-ca.key, impostor.pem, impostor.key, and expired,
  /// not-yet-valid, renewed, rotated-ca, rotated, expired-client,
  /// renewed-client (.pem and .key) into `dir` (created when missing; keys are mode 0600).
  void write(const std::filesystem::path& dir) const;
};

/// Reads a whole file; errors throw otarig::InputError naming the file.
std::string read_text_file(const std::filesystem::path& file);

}  // namespace otarig::drivers::net
