// Mender artifacts: built and signed with Debian's mender-artifact, with the
// rig's state scripts (docs/ota-clients.md, "Mender").
#include "otarig/drivers/clients/mender.hpp"

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/encoder.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <filesystem>

#include "otarig/core/errors.hpp"
#include "otarig/core/openssl_ptr.hpp"
#include "otarig/drivers/clients/tools.hpp"

namespace otarig::drivers::clients::mender {
namespace {

using ossl::BioPtr;
using ossl::PkeyPtr;
using X509Ptr = ossl::X509Ptr;

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<std::size_t>(n)) : std::string();
}

BioPtr memory_bio(const std::string& text) {
  BioPtr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  if (!bio) throw BenchError("mender: cannot make a memory BIO: " + ossl::last_error());
  return bio;
}

PkeyPtr read_private_key(const std::string& pem) {
  auto bio = memory_bio(pem);
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) throw BenchError("mender: cannot read the signing key: " + ossl::last_error());
  return key;
}

// The key in its type-specific encoding ("EC PRIVATE KEY"): mender-artifact
// 3.9 does not read PKCS#8 EC keys.
std::string traditional_pem(EVP_PKEY* key) {
  BioPtr out(BIO_new(BIO_s_mem()));
  std::unique_ptr<OSSL_ENCODER_CTX, decltype(&OSSL_ENCODER_CTX_free)> ctx(
      OSSL_ENCODER_CTX_new_for_pkey(key, EVP_PKEY_KEYPAIR, "PEM", "type-specific", nullptr), OSSL_ENCODER_CTX_free);
  if (!out || !ctx || OSSL_ENCODER_to_bio(ctx.get(), out.get()) != 1)
    throw BenchError("mender: cannot encode the signing key: " + ossl::last_error());
  return bio_text(out.get());
}

const char* const kConsoleMarker =
    "#!/bin/sh\n"
    "# otarig: marks Mender's state {0} on the device's console, so that power\n"
    "# cuts can be placed in it (docs/ota-clients.md).\n"
    "echo 'mender-state: {0}' >/dev/console 2>/dev/null\n"
    "exit 0\n";

// Refuses an artifact older than the running release, number by number.
const char* const kDowngradeCheck =
    "#!/bin/sh\n"
    "# otarig: the device's downgrade check (Mender compares no versions): an\n"
    "# artifact older than the running release is refused; the same version\n"
    "# is taken (a retry). docs/ota-clients.md.\n"
    "new='{0}'\n"
    "running=$(sed -n 's/^VERSION=//p' {1} 2>/dev/null)\n"
    "say() {{ echo \"mender-state: refused: $1\" >/dev/console 2>/dev/null; echo \"$1\" >&2; }}\n"
    "if [ -z \"$running\" ]; then say 'the running version is unknown ({1})'; exit 1; fi\n"
    "older() {{\n"
    "  a=$1; b=$2\n"
    "  while [ -n \"$a$b\" ]; do\n"
    "    x=${{a%%.*}}; y=${{b%%.*}}\n"
    "    if [ \"$a\" = \"$x\" ]; then a=''; else a=${{a#*.}}; fi\n"
    "    if [ \"$b\" = \"$y\" ]; then b=''; else b=${{b#*.}}; fi\n"
    "    [ \"${{x:-0}}\" -lt \"${{y:-0}}\" ] && return 0\n"
    "    [ \"${{x:-0}}\" -gt \"${{y:-0}}\" ] && return 1\n"
    "  done\n"
    "  return 1\n"
    "}}\n"
    "if older \"$new\" \"$running\"; then\n"
    "  say \"no downgrading allowed: artifact version $new < running $running\"\n"
    "  exit 1\n"
    "fi\n"
    "exit 0\n";

}  // namespace

std::vector<Script> state_scripts(const std::string& version, bool downgrade_check) {
  std::vector<Script> out;
  for (const char* state : kArtifactStates)
    for (const char* action : {"Enter", "Leave", "Error"}) {
      const auto what = fmt::format("{}_{}", state, action);
      out.push_back({what + "_00_otarig-console", fmt::format(fmt::runtime(kConsoleMarker), what)});
    }
  if (downgrade_check)
    out.push_back({"ArtifactInstall_Enter_10_otarig-no-downgrade",
                   fmt::format(fmt::runtime(kDowngradeCheck), version, kReleaseFile)});
  return out;
}

std::string artifact_name(const std::string& version) { return "otarig-" + version; }

Bytes write_artifact(const ArtifactSpec& spec, const std::string& signer_key_pem) {
  if (find_tool("mender-artifact").empty())
    throw BenchError("mender-artifact is not installed (ci/setup with OTARIG_SETUP_EXTRA=clients)");
  TempDir tmp("otarig-mender");
  const auto image = tmp.path() / "rootfs.img";
  write_bytes(image, spec.image.data(), spec.image.size());
  const auto out = tmp.path() / "update.mender";
  std::vector<std::string> argv{"mender-artifact", "write",     "rootfs-image",      "--file",       image.string(),
                                "--artifact-name", spec.name,   "--device-type",     spec.device_type,
                                "--output-path",   out.string(), "--compression",    "none"};
  if (!spec.version.empty()) {
    argv.push_back("--software-version");
    argv.push_back(spec.version);
  }
  std::filesystem::create_directories(tmp.path() / "scripts");
  for (const auto& s : spec.scripts) {
    const auto file = tmp.path() / "scripts" / s.name;
    write_text(file, s.text);
    std::filesystem::permissions(file, std::filesystem::perms::owner_all | std::filesystem::perms::group_read |
                                           std::filesystem::perms::group_exec | std::filesystem::perms::others_read |
                                           std::filesystem::perms::others_exec);
    argv.push_back("--script");
    argv.push_back(file.string());
  }
  if (!signer_key_pem.empty()) {
    auto key = read_private_key(signer_key_pem);
    const auto key_file = tmp.path() / "signer.key";
    write_text(key_file, traditional_pem(key.get()));
    std::filesystem::permissions(key_file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    argv.push_back("--key");
    argv.push_back(key_file.string());
  }
  auto r = run_tool(argv, std::chrono::seconds(120), tmp.path());
  if (!r.ok())
    throw BenchError(fmt::format("mender-artifact write rootfs-image: exit status {}: {}", r.status, r.output));
  return read_bytes(out);
}

std::string public_key_pem(const std::string& key_or_cert_pem) {
  PkeyPtr key;
  if (key_or_cert_pem.find("CERTIFICATE-----") != std::string::npos) {
    auto bio = memory_bio(key_or_cert_pem);
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert) throw BenchError("mender: cannot read the certificate: " + ossl::last_error());
    key.reset(X509_get_pubkey(cert.get()));
  } else {
    key = read_private_key(key_or_cert_pem);
  }
  BioPtr out(BIO_new(BIO_s_mem()));
  if (!key || !out || PEM_write_bio_PUBKEY(out.get(), key.get()) != 1)
    throw BenchError("mender: cannot write the public key: " + ossl::last_error());
  return bio_text(out.get());
}

std::size_t find(const Bytes& bytes, std::span<const std::uint8_t> needle) {
  if (needle.empty()) return 0;
  auto it = std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end());
  return it == bytes.end() ? std::string::npos : static_cast<std::size_t>(it - bytes.begin());
}

std::size_t find(const Bytes& bytes, const std::string& needle) {
  return find(bytes, std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(needle.data()),
                                                     needle.size()));
}

}  // namespace otarig::drivers::clients::mender
