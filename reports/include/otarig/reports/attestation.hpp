#pragma once
// The bundle's hash manifest and its signed attestation (docs/evidence.md).
//
// manifest-sha256.txt lists every file of the bundle as `SHA256HEX  path`
// (two spaces, '/'-separated relative path, sorted bytewise; the format of
// `sha256sum` and of a BagIt payload manifest). It leaves out itself and the
// attestation files.
//
// attestation.dsse.json is a DSSE envelope around an in-toto Statement v1
// whose subjects are the manifest and run.json, with a test-result predicate.
// The signature is Ed25519 over the DSSE pre-authentication encoding; the
// public key is attestation.pub.pem.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "otarig/core/crypto.hpp"
#include "otarig/reports/run_view.hpp"

namespace otarig::reports {

inline constexpr const char* kManifestFile = "manifest-sha256.txt";
inline constexpr const char* kAttestationFile = "attestation.dsse.json";
inline constexpr const char* kPublicKeyFile = "attestation.pub.pem";
inline constexpr const char* kPayloadType = "application/vnd.in-toto+json";
inline constexpr const char* kStatementType = "https://in-toto.io/Statement/v1";
inline constexpr const char* kPredicateType = "https://in-toto.io/attestation/test-result/v0.1";

/// The manifest of the files under `out` (see above). Throws std::runtime_error
/// when a file cannot be read, is not a regular file, or its name holds a
/// newline.
std::string manifest_text(const std::filesystem::path& out);

/// Writes `out`/manifest-sha256.txt and returns its SHA-256 (hex).
std::string write_manifest(const std::filesystem::path& out);

/// DSSE v1 pre-authentication encoding:
/// "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, lengths in ASCII decimal.
std::string dsse_pae(std::string_view payload_type, std::string_view payload);

/// Standard base64 with padding; strict decoding (padding required, no
/// whitespace, unused bits zero). OpenSSL's, through otarig::crypto.
using crypto::base64_decode;
using crypto::base64_encode;

/// The signer's key id: hex of the first 8 bytes of SHA-256 over the raw
/// 32-byte Ed25519 public key (otarig::crypto::key_id).
std::string key_id_hex(const crypto::PublicKey& key);

/// The public key as PEM (SubjectPublicKeyInfo), exactly as OpenSSL writes it.
using crypto::public_key_pem;

/// What the attestation says about who signed it.
struct Signer {
  std::string keyid;
  bool test_key = true;  ///< a key made for this bundle only, not a release key
};

/// The in-toto Statement for a bundle whose manifest and run.json have the
/// given SHA-256 digests.
nlohmann::ordered_json attestation_statement(const nlohmann::json& run, const std::string& manifest_sha256,
                                             const std::string& run_sha256, const Signer& signer,
                                             const std::string& url = "");
/// The same from a run read one trial at a time (it holds the trials' names).
nlohmann::ordered_json attestation_statement(const RunView& run, const std::string& manifest_sha256,
                                             const std::string& run_sha256, const Signer& signer,
                                             const std::string& url = "");

/// A DSSE envelope (JSON text, one line) carrying `payload` signed with `key`.
std::string dsse_envelope(std::string_view payload, const crypto::Ed25519Key& key);

/// Writes attestation.dsse.json and attestation.pub.pem for the manifest and
/// run.json already in `out`.
void write_attestation(const std::filesystem::path& out, const nlohmann::json& run,
                       const crypto::Ed25519Key& key, bool test_key, const std::string& url = "");
void write_attestation(const std::filesystem::path& out, const RunView& run, const crypto::Ed25519Key& key,
                       bool test_key, const std::string& url = "");

}  // namespace otarig::reports
