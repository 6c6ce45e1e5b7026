#pragma once
// Verification of an evidence bundle: the signed attestation, every manifest
// line, the journal's hash chain, and run.json against the journal.
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace otarig::reports {

/// One thing wrong with a bundle.
struct VerifyProblem {
  std::string file;        ///< path relative to the bundle ("journal.jsonl")
  std::uint64_t line = 0;  ///< 1-based line in `file` when known, else 0
  std::string detail;
};

struct VerifyResult {
  enum class Status {
    ok,            ///< every check passed
    failed,        ///< the folder is a bundle and something in it does not check out
    not_a_bundle,  ///< no manifest-sha256.txt and no run.json: not an evidence folder
  };
  Status status = Status::ok;
  std::vector<VerifyProblem> problems;  ///< in the order found; the first names the first bad file
  std::vector<std::string> notes;       ///< facts worth telling: the signer, whether the key is a test key
  std::size_t files = 0;                ///< files listed in the manifest
  std::size_t journal_lines = 0;
  std::size_t trials = 0;
  std::string keyid;         ///< the signer's key id from the envelope
  bool test_key = false;     ///< the attestation says it was signed with a test key
  bool trusted_key = false;  ///< the signature was checked against a key given by the caller

  bool ok() const { return status == Status::ok; }
  /// The first bad file ("" when ok).
  std::string first_bad_file() const { return problems.empty() ? std::string() : problems.front().file; }
  /// The first bad journal line (0 when the journal checks out).
  std::uint64_t journal_line() const;
  /// Exit status for `otarig report verify`: 0 ok, 1 verification failed, 2 not a bundle.
  int exit_code() const;
};

/// Verifies the bundle in `out`. With `trusted_key` (a PEM public or private
/// Ed25519 key) the signature must verify with that key; without one it is
/// checked against the bundle's own attestation.pub.pem, which proves the
/// bundle is intact since signing but not who signed it. Throws InputError
/// only when `trusted_key` cannot be read.
VerifyResult verify_bundle(const std::filesystem::path& out,
                           const std::optional<std::filesystem::path>& trusted_key = std::nullopt);

/// A short human report of a verification for the command line: "ok: ..." or
/// "FAILED: ..." with every problem, one per line.
std::string format_verify(const VerifyResult& result, const std::filesystem::path& out);
/// The same as JSON (`otarig report verify --json`): status ("ok", "failed",
/// "not-a-bundle"), the counts, the signer, the problems and the notes.
nlohmann::json verify_json(const VerifyResult& result, const std::filesystem::path& out);

}  // namespace otarig::reports
