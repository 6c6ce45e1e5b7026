#pragma once
// The evidence bundle (DESIGN.md, docs/evidence.md): run.json, junit.xml,
// summary.md and report.html are written from the run document; trials/ and
// journal.jsonl are written by the harness as trials finish; the manifest and
// the signed attestation close the bundle.
#include <cstddef>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "otarig/reports/run_view.hpp"

namespace otarig::reports {

/// What a report writer is given besides the run document.
struct ReportContext {
  std::filesystem::path out;  ///< the bundle folder: journal.jsonl and trials/ are complete
  std::string signer_keyid;   ///< the key id the attestation will be signed with
  bool test_key = true;       ///< the attestation is signed with a one-off test key
};

/// A report format: one file of the bundle made from the run document (and
/// the bundle's journal and trials/, never a device). A writer gives `stream`
/// (it reads the trials one at a time and writes as it goes: memory does not
/// grow with the campaign), or `write` (it is handed the whole run document,
/// every trial in memory at once).
struct ReportWriter {
  std::string file;  ///< its name in the bundle folder, e.g. "junit.xml"
  std::function<std::string(const nlohmann::json& run, const ReportContext& context)> write;
  std::function<void(const RunView& run, const ReportContext& context, std::ostream& out)> stream = {};
};

/// The report formats a bundle is written with, in order. The composition
/// root registers them (Registries::reports) as it registers drivers.
class ReportWriterRegistry {
 public:
  /// std::logic_error when the file is not a plain file name, is one the
  /// bundle writes itself (run.json, journal.jsonl, the manifest, the
  /// attestation) or is already registered.
  void add(ReportWriter writer);
  const std::vector<ReportWriter>& all() const { return writers_; }

 private:
  std::vector<ReportWriter> writers_;
};

/// Adds junit.xml, summary.md and report.html.
void register_builtin_report_writers(ReportWriterRegistry& registry);
/// Those three, registered once.
const ReportWriterRegistry& builtin_report_writers();

/// How write_bundle signs and describes a bundle.
struct BundleOptions {
  /// Ed25519 private key (PKCS#8 PEM) that signs the attestation. Without one
  /// a key is generated for this bundle alone, never stored, and the
  /// attestation records `"test_key": true`.
  std::optional<std::filesystem::path> signing_key;
  /// A link to the CI job or lab record, recorded as the attestation's `url`.
  std::string url;
  /// The report formats written beside run.json (the composition root's
  /// `Registries::reports`); null means builtin_report_writers().
  const ReportWriterRegistry* writers = nullptr;
};

/// Writes run.json and every report writer's file (junit.xml, summary.md and
/// report.html unless options.writers says otherwise) into `out`, then
/// manifest-sha256.txt over every file in `out`, then attestation.dsse.json
/// and attestation.pub.pem. journal.jsonl and trials/ must be complete.
/// Throws InputError when the signing key cannot be read.
void write_bundle(const std::filesystem::path& out, const nlohmann::json& run,
                  const BundleOptions& options = {});
/// The same bundle from a run read one trial at a time: run.json and the
/// built-in reports are written as the trials are read, so memory does not
/// grow with the number of trials (docs/evidence.md, "Limits").
void write_bundle(const std::filesystem::path& out, const RunView& run, const BundleOptions& options = {});

/// JUnit XML (one testsuite per scenario, one testcase per trial) valid
/// against the Jenkins/Ant junit-10 schema: board, seed and requirement ids
/// are testsuite properties; the trial seed, fault point and requirement ids
/// of each trial are in its system-out.
std::string junit_xml(const nlohmann::json& run);
/// The same, written to `out` from a run read one trial at a time.
void write_junit_xml(std::ostream& out, const RunView& run);

/// A Markdown summary for a CI job summary page.
std::string summary_markdown(const nlohmann::json& run);
std::string summary_markdown(const RunView& run);

/// What report_html shows beyond the run document.
struct HtmlOptions {
  /// The bundle folder; console transcripts of findings are read from
  /// `evidence`/trials/ID/console.log. Empty: transcripts are left out.
  std::filesystem::path evidence;
  std::string signer_keyid;  ///< the attestation's key id, shown with the run facts
  bool test_key = true;
  std::size_t max_trial_rows = 2000;       ///< rows of the all-trials table (failures always shown)
  std::size_t max_findings_detail = 100;   ///< findings shown with their full evidence
  std::size_t max_transcript_lines = 400;  ///< console lines per finding (the tail is kept)
};

/// The self-contained HTML report: no network access, inline CSS and SVG,
/// every value from the run or the device escaped.
std::string report_html(const nlohmann::json& run, const HtmlOptions& options = {});
/// The same page from a run read one trial at a time: it holds the rows it
/// shows (at most max_trial_rows and max_findings_detail of them) and counts
/// for the rest.
std::string report_html(const RunView& run, const HtmlOptions& options = {});

/// Device console text as people read it (console.log): bytes below 0x20
/// other than tab, DEL, the C1 controls U+0080..U+009F and bytes that are not
/// UTF-8 are written as `\xNN`, so `cat` or `less -R` of a hostile device's
/// log cannot drive the reader's terminal; other text, UTF-8 included, stays.
/// `escaped` (when given) is set when anything was escaped: the raw bytes then
/// belong in console.raw beside the log.
std::string printable_console_text(std::string_view raw, bool* escaped = nullptr);

/// Text with every byte XML 1.0 cannot carry (control characters, invalid
/// UTF-8, surrogates, U+FFFE/FFFF) written as `\xNN`; markup is left as it
/// is (device output is hostile input). junit.xml's writer, libxml2's
/// xmlTextWriter, escapes the markup.
std::string xml_characters(std::string_view text);
/// xml_characters with markup escaped too, for HTML content and attribute values.
std::string xml_escape(std::string_view text);

}  // namespace otarig::reports
