#include "otarig/reports/bundle.hpp"

#include <fmt/format.h>

#include <optional>
#include <stdexcept>
#include <vector>

#include "detail.hpp"
#include "otarig/core/crypto.hpp"
#include "otarig/reports/attestation.hpp"

namespace otarig::reports {

std::string printable_console_text(std::string_view raw, bool* escaped) {
  std::string out;
  out.reserve(raw.size());
  auto byte = [&](std::size_t i) { return static_cast<unsigned char>(raw[i]); };
  auto continuation = [&](std::size_t i, unsigned char lo, unsigned char hi) {
    return i < raw.size() && byte(i) >= lo && byte(i) <= hi;
  };
  for (std::size_t i = 0; i < raw.size();) {
    const unsigned char c = byte(i);
    if (c == '\t' || (c >= 0x20 && c < 0x7f)) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    // The length of a well-formed UTF-8 sequence starting here (RFC 3629), 0 if none.
    std::size_t n = 0;
    if (c >= 0xc2 && c <= 0xdf && continuation(i + 1, 0x80, 0xbf))
      n = c == 0xc2 && byte(i + 1) <= 0x9f ? 0 : 2;  // U+0080..U+009F: C1 controls
    else if (c >= 0xe0 && c <= 0xef)
      n = continuation(i + 1, c == 0xe0 ? 0xa0 : 0x80, c == 0xed ? 0x9f : 0xbf) && continuation(i + 2, 0x80, 0xbf)
              ? 3
              : 0;
    else if (c >= 0xf0 && c <= 0xf4)
      n = continuation(i + 1, c == 0xf0 ? 0x90 : 0x80, c == 0xf4 ? 0x8f : 0xbf) &&
                  continuation(i + 2, 0x80, 0xbf) && continuation(i + 3, 0x80, 0xbf)
              ? 4
              : 0;
    if (n) {
      out.append(raw.substr(i, n));
      i += n;
      continue;
    }
    out += fmt::format("\\x{:02x}", c);
    if (escaped) *escaped = true;
    ++i;
  }
  return out;
}

namespace {

// Files the bundle writer makes itself, which no report writer may take.
bool bundle_file(const std::string& name) {
  for (const char* f : {"run.json", "journal.jsonl", "trials", kManifestFile, kAttestationFile, kPublicKeyFile})
    if (name == f) return true;
  return false;
}

bool plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

}  // namespace

void ReportWriterRegistry::add(ReportWriter writer) {
  if (!plain_file_name(writer.file) || (!writer.write && !writer.stream))
    throw std::logic_error("a report writer needs a plain file name and a function: '" + writer.file + "'");
  if (bundle_file(writer.file)) throw std::logic_error("report writer: the bundle writes " + writer.file + " itself");
  for (const auto& w : writers_)
    if (w.file == writer.file) throw std::logic_error("report writer registered twice: " + writer.file);
  writers_.push_back(std::move(writer));
}

void register_builtin_report_writers(ReportWriterRegistry& registry) {
  registry.add({"junit.xml", [](const nlohmann::json& run, const ReportContext&) { return junit_xml(run); },
                [](const RunView& run, const ReportContext&, std::ostream& out) { write_junit_xml(out, run); }});
  registry.add({"summary.md", [](const nlohmann::json& run, const ReportContext&) { return summary_markdown(run); },
                [](const RunView& run, const ReportContext&, std::ostream& out) { out << summary_markdown(run); }});
  auto html = [](const ReportContext& c) {
    HtmlOptions options;
    options.evidence = c.out;
    options.signer_keyid = c.signer_keyid;
    options.test_key = c.test_key;
    return options;
  };
  registry.add({"report.html",
                [html](const nlohmann::json& run, const ReportContext& c) { return report_html(run, html(c)); },
                [html](const RunView& run, const ReportContext& c, std::ostream& out) {
                  out << report_html(run, html(c));
                }});
}

const ReportWriterRegistry& builtin_report_writers() {
  static const ReportWriterRegistry registry = [] {
    ReportWriterRegistry r;
    register_builtin_report_writers(r);
    return r;
  }();
  return registry;
}

namespace {

// Writes run.json with `run_json`, every writer's file, the manifest and the
// attestation. `whole` is the run document when the caller has it in memory.
void write_bundle(const std::filesystem::path& out, const RunView& run, const nlohmann::json* whole,
                  const std::function<void(std::ostream&)>& run_json, const BundleOptions& options) {
  // Load the key first: a bad key path must fail before anything is written.
  auto key = options.signing_key ? crypto::Ed25519Key::load_pem(*options.signing_key)
                                 : crypto::Ed25519Key::generate();
  const bool test_key = !options.signing_key;
  const auto& writers = options.writers ? *options.writers : builtin_report_writers();

  std::filesystem::create_directories(out);
  // Stale closing files from an earlier write (a resumed run) are replaced,
  // and so are the temporary files of a write that was killed before its
  // rename: left in place they would be listed in the new manifest and then
  // vanish when their own write renames them.
  std::vector<std::string> written{"run.json", kManifestFile, kAttestationFile, kPublicKeyFile};
  for (const auto& w : writers.all()) written.push_back(w.file);
  for (const auto& f : written) {
    auto tmp = out / f;
    tmp += ".tmp";
    std::filesystem::remove(tmp);
  }
  for (const char* f : {kManifestFile, kAttestationFile, kPublicKeyFile}) std::filesystem::remove(out / f);

  detail::write_stream(out / "run.json", run_json);
  const ReportContext context{out, key_id_hex(key.public_key()), test_key};
  // A writer that wants the whole document gets it, made once.
  std::optional<nlohmann::json> made;
  for (const auto& w : writers.all()) {
    if (w.stream) {
      detail::write_stream(out / w.file, [&](std::ostream& s) { w.stream(run, context, s); });
      continue;
    }
    if (!whole && !made) made = run.materialize();
    detail::write_file(out / w.file, w.write(whole ? *whole : *made, context));
  }
  write_manifest(out);
  write_attestation(out, run, key, test_key, options.url);
}

}  // namespace

void write_bundle(const std::filesystem::path& out, const nlohmann::json& run, const BundleOptions& options) {
  write_bundle(out, RunView::of(run), &run,
               [&](std::ostream& s) { s << run.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n"; },
               options);
}

void write_bundle(const std::filesystem::path& out, const RunView& run, const BundleOptions& options) {
  write_bundle(out, run, nullptr, [&](std::ostream& s) { write_run_json(s, run); }, options);
}

}  // namespace otarig::reports
