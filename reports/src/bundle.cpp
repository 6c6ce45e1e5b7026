#include "otarig/reports/bundle.hpp"

#include <fmt/format.h>

#include "detail.hpp"
#include "otarig/drivers/crypto.hpp"
#include "otarig/reports/attestation.hpp"

namespace otarig::reports {

void write_bundle(const std::filesystem::path& out, const nlohmann::json& run, const BundleOptions& options) {
  // Load the key first: a bad key path must fail before anything is written.
  auto key = options.signing_key ? crypto::Ed25519Key::load_pem(*options.signing_key)
                                 : crypto::Ed25519Key::generate();
  const bool test_key = !options.signing_key;

  std::filesystem::create_directories(out);
  // Stale closing files from an earlier write (a resumed run) are replaced,
  // and so are the temporary files of a write that was killed before its
  // rename: left in place they would be listed in the new manifest and then
  // vanish when their own write renames them.
  const char* written[] = {"run.json",    "junit.xml",      "summary.md",  "report.html",
                           kManifestFile, kAttestationFile, kPublicKeyFile};
  for (const char* f : written) {
    auto tmp = out / f;
    tmp += ".tmp";
    std::filesystem::remove(tmp);
  }
  for (const char* f : {kManifestFile, kAttestationFile, kPublicKeyFile}) std::filesystem::remove(out / f);

  detail::write_file(out / "run.json",
                     run.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  detail::write_file(out / "junit.xml", junit_xml(run));
  detail::write_file(out / "summary.md", summary_markdown(run));
  HtmlOptions html;
  html.evidence = out;
  html.signer_keyid = key_id_hex(key.public_key());
  html.test_key = test_key;
  detail::write_file(out / "report.html", report_html(run, html));
  write_manifest(out);
  write_attestation(out, run, key, test_key, options.url);
}

}  // namespace otarig::reports
