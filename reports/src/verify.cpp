#include "otarig/reports/verify.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "detail.hpp"
#include "otarig/core/crypto.hpp"
#include "otarig/reports/attestation.hpp"
#include "otarig/reports/defects.hpp"
#include "otarig/reports/waivers.hpp"
#include "otarig/reports/requirements.hpp"
#include "otarig/reports/run_view.hpp"

namespace otarig::reports {

std::uint64_t VerifyResult::journal_line() const {
  for (const auto& p : problems)
    if (p.file == "journal.jsonl" && p.line) return p.line;
  return 0;
}

int VerifyResult::exit_code() const {
  switch (status) {
    case Status::ok:
      return 0;
    case Status::failed:
      return 1;
    case Status::not_a_bundle:
      return 2;
  }
  return 1;
}

namespace {

using nlohmann::json;

using detail::array_at;
using detail::object_at;

class Checker {
 public:
  Checker(std::filesystem::path out, VerifyResult& r) : out_(std::move(out)), r_(r) {}

  void problem(std::string file, std::uint64_t line, std::string detail) {
    r_.problems.push_back({std::move(file), line, std::move(detail)});
  }

  // The attestation: envelope, signature, statement. Returns the statement's
  // subject digests by name (empty when the attestation does not check out).
  std::map<std::string, std::string> attestation(const std::optional<crypto::PublicKey>& trusted) {
    std::map<std::string, std::string> subjects;
    auto env_text = detail::read_file(out_ / kAttestationFile);
    if (!env_text) {
      problem(kAttestationFile, 0, "missing: the bundle is not signed");
      return subjects;
    }
    nlohmann::ordered_json env;
    try {
      env = nlohmann::ordered_json::parse(*env_text);
    } catch (const json::exception& e) {
      problem(kAttestationFile, 0, fmt::format("not JSON ({})", e.what()));
      return subjects;
    }
    if (!env.is_object() || !env.contains("payloadType") || !env["payloadType"].is_string() ||
        !env.contains("payload") || !env["payload"].is_string() || !env.contains("signatures") ||
        !env["signatures"].is_array() || env["signatures"].size() != 1 || !env["signatures"][0].is_object()) {
      problem(kAttestationFile, 0, "not a DSSE envelope with exactly one signature");
      return subjects;
    }
    if (env["payloadType"] != kPayloadType) {
      problem(kAttestationFile, 0, fmt::format("payloadType is not {}", kPayloadType));
      return subjects;
    }
    auto payload = base64_decode(env["payload"].get<std::string>());
    const auto& s = env["signatures"][0];
    auto envelope_keyid = s.contains("keyid") && s["keyid"].is_string() ? s["keyid"].get<std::string>() : "";
    auto sig =
        s.contains("sig") && s["sig"].is_string() ? base64_decode(s["sig"].get<std::string>()) : std::nullopt;
    if (!payload) {
      problem(kAttestationFile, 0, "payload is not valid base64");
      return subjects;
    }
    if (!sig || sig->size() != 64) {
      problem(kAttestationFile, 0, "sig is not a base64 Ed25519 signature");
      return subjects;
    }
    json statement;
    try {
      statement = json::parse(*payload);
    } catch (const json::exception& e) {
      problem(kAttestationFile, 0, fmt::format("payload is not JSON ({})", e.what()));
      return subjects;
    }
    const auto& predicate = object_at(statement, "predicate");
    auto signed_keyid = detail::text(object_at(predicate, "signer"), "keyid");
    r_.keyid = envelope_keyid;
    r_.test_key = !predicate.contains("test_key") || predicate["test_key"] != false;

    // The key: the caller's, or the bundle's own public key file.
    crypto::PublicKey key{};
    if (trusted) {
      key = *trusted;
      r_.trusted_key = true;
    } else {
      auto pem = detail::read_file(out_ / kPublicKeyFile);
      if (!pem) {
        problem(kPublicKeyFile, 0, "missing");
        return subjects;
      }
      try {
        key = crypto::load_public_pem(out_ / kPublicKeyFile);
      } catch (const std::exception&) {
        problem(kPublicKeyFile, 0, "not an Ed25519 public key in PEM form");
        return subjects;
      }
      if (*pem != public_key_pem(key)) {
        problem(kPublicKeyFile, 0, "changed: not the PEM text written for the key it holds");
        return subjects;
      }
      if (key_id_hex(key) != envelope_keyid) {
        // A byte changed in the key file or in the envelope's keyid: the
        // signed statement names the signer's key id and tells them apart.
        if (signed_keyid == envelope_keyid)
          problem(kPublicKeyFile, 0,
                  fmt::format("key id {} is not the signer's {}", key_id_hex(key), envelope_keyid));
        else
          problem(kAttestationFile, 0,
                  fmt::format("keyid {} is not the key id of {} ({})", envelope_keyid, kPublicKeyFile,
                              key_id_hex(key)));
        return subjects;
      }
    }
    auto pae = dsse_pae(kPayloadType, *payload);
    crypto::Signature signature{};
    std::copy(sig->begin(), sig->end(), signature.begin());
    if (!crypto::ed25519_verify(key, std::span(reinterpret_cast<const std::uint8_t*>(pae.data()), pae.size()),
                                signature)) {
      problem(kAttestationFile, 0,
              trusted ? fmt::format("the signature does not verify with the trusted key (key id {})",
                                    key_id_hex(key))
                      : std::string("the signature does not verify"));
      return subjects;
    }
    if (trusted && envelope_keyid != key_id_hex(key))
      problem(kAttestationFile, 0,
              fmt::format("keyid {} is not the trusted key's {}", envelope_keyid, key_id_hex(key)));
    // The envelope must be exactly as written (nothing outside the signed parts may change).
    if (*env_text != env.dump(-1) + "\n") problem(kAttestationFile, 0, "changed outside the signed payload");
    if (detail::text(statement, "_type") != kStatementType)
      problem(kAttestationFile, 0, fmt::format("the statement's _type is not {}", kStatementType));
    if (detail::text(statement, "predicateType") != kPredicateType)
      problem(kAttestationFile, 0, fmt::format("predicateType is not {}", kPredicateType));
    if (signed_keyid != envelope_keyid)
      problem(kAttestationFile, 0, "the statement's signer keyid is not the envelope's keyid");
    for (const auto& sub : array_at(statement, "subject"))
      if (sub.is_object() && sub.contains("digest") && sub["digest"].is_object())
        subjects[detail::text(sub, "name")] = detail::text(sub["digest"], "sha256");
    for (const char* name : {kManifestFile, "run.json"})
      if (!subjects.count(name))
        problem(kAttestationFile, 0, fmt::format("the statement has no subject {}", name));
    r_.notes.push_back(fmt::format("signed by key {}{}{}", envelope_keyid,
                                   trusted
                                       ? ", checked against the trusted key"
                                       : ", checked against the bundle's own " + std::string(kPublicKeyFile) +
                                             " (integrity since signing, not who signed)",
                                   r_.test_key ? "; a test key, not a release signature" : ""));
    return subjects;
  }

  void subject_digest(const std::map<std::string, std::string>& subjects, const std::string& name) {
    auto it = subjects.find(name);
    if (it == subjects.end()) return;
    auto digest = detail::sha256_file(out_ / name);
    if (!digest)
      problem(name, 0, "missing");
    else if (*digest != it->second)
      problem(name, 0, "changed: its SHA-256 differs from the signed attestation's subject");
  }

  // Every manifest line, then every file not listed.
  void manifest() {
    // Read one line at a time; a torn last line is told before the lines' problems.
    detail::LineReader reader(out_ / kManifestFile, RecordList::kMaxRecordBytes);
    if (!reader) {
      problem(kManifestFile, 0, "missing");
      return;
    }
    const auto first_problem = r_.problems.size();
    std::set<std::string> listed;
    std::string last;
    while (const auto line = reader.next()) {
      const auto& l = line->text;
      if (l.size() < 67 || l[64] != ' ' || l[65] != ' ' || l.find_first_not_of("0123456789abcdef") < 64) {
        problem(kManifestFile, line->number, "not a 'SHA256HEX  path' line");
        continue;
      }
      auto path = l.substr(66);
      auto hash = l.substr(0, 64);
      std::filesystem::path rel(path);
      bool unsafe = rel.is_absolute() || path.find('\\') != std::string::npos;
      for (const auto& part : rel) unsafe = unsafe || part == ".." || part == ".";
      if (unsafe) {
        problem(kManifestFile, line->number, fmt::format("unsafe path {}", path));
        continue;
      }
      if (!listed.insert(path).second)
        problem(kManifestFile, line->number, fmt::format("{} listed twice", path));
      if (path <= last && !last.empty()) problem(kManifestFile, line->number, "lines are not sorted by path");
      last = path;
      if (detail::outside_manifest(path)) {
        problem(kManifestFile, line->number, fmt::format("{} must not be listed", path));
        continue;
      }
      ++r_.files;
      auto status = std::filesystem::symlink_status(out_ / rel);
      if (!std::filesystem::exists(status)) {
        problem(path, 0, fmt::format("missing (listed in {} line {})", kManifestFile, line->number));
        continue;
      }
      if (!std::filesystem::is_regular_file(status)) {
        problem(path, 0, "not a regular file");
        continue;
      }
      auto digest = detail::sha256_file(out_ / rel);
      if (!digest)
        problem(path, 0, "cannot be read");
      else if (*digest != hash)
        problem(
            path, 0,
            fmt::format("changed: SHA-256 {} differs from {} line {}", *digest, kManifestFile, line->number));
    }
    if (reader.torn())
      r_.problems.insert(r_.problems.begin() + static_cast<std::ptrdiff_t>(first_problem),
                         {kManifestFile, reader.count(), "the last line has no newline"});
    std::vector<std::string> others;
    std::vector<std::string> files;
    try {
      files = detail::list_files(out_, &others);
    } catch (const std::exception& e) {
      problem(".", 0, e.what());
    }
    for (const auto& f : files)
      if (!listed.count(f) && !detail::outside_manifest(f)) problem(f, 0, "extra file: not in the manifest");
    for (const auto& f : others) problem(f, 0, "not a regular file (a bundle holds only files and folders)");
  }

  // The journal's chain and its verdict events against run.json, each read
  // one line (one trial) at a time: a verdict is held as its line, its offset
  // and the SHA-256 of its trial entry.
  void journal_and_run() {
    if (!std::filesystem::exists(out_ / "journal.jsonl")) {
      problem("journal.jsonl", 0, "missing");
      return;
    }
    detail::LineReader reader(out_ / "journal.jsonl", RecordList::kMaxRecordBytes);
    if (!reader) {
      problem("journal.jsonl", 0, "missing");
      return;
    }
    std::vector<std::pair<std::uint64_t, std::string>> twice;  // line, trial id
    std::uint64_t lines = 0;
    auto brk = detail::check_chain(
        reader,
        [&](const detail::JournalLine& line, const json& ev) {
          if (detail::text(ev, "type") != "verdict") return;
          auto id = detail::text(ev, "id");
          const auto entry = detail::trial_from_verdict(ev);
          if (!verdicts_.emplace(id, Verdict{line.number, reader.offset(), digest(entry)}).second)
            twice.emplace_back(line.number, id);
        },
        &lines);
    if (reader.bad()) problem("journal.jsonl", 0, "cannot be read");
    r_.journal_lines = lines;
    if (brk.line) problem("journal.jsonl", brk.line, fmt::format("line {}: {}", brk.line, brk.reason));
    // Only lines before a chain break are trusted.
    if (brk.line) std::erase_if(verdicts_, [&](const auto& v) { return v.second.line >= brk.line; });
    for (const auto& [line, id] : twice)
      if (!brk.line || line < brk.line)
        problem("journal.jsonl", line, fmt::format("line {}: a second verdict for trial {}", line, id));
    run_against_journal(brk.line != 0);
  }

 private:
  struct Verdict {
    std::uint64_t line = 0;
    std::uint64_t offset = 0;
    crypto::Digest digest{};
  };

  static crypto::Digest digest(const json& entry) {
    return crypto::sha256(entry.dump(-1, ' ', false, json::error_handler_t::replace));
  }

  // The verdict's trial entry, read again from the journal.
  json journaled_entry(const Verdict& v) const {
    std::vector<std::uint64_t> at{v.offset};
    return RecordList::of_lines(out_ / "journal.jsonl", std::move(at),
                                [](json ev, std::size_t) { return detail::trial_from_verdict(std::move(ev)); })
        .at(0);
  }

  // One trial of run.json against its verdict.
  void trial(const json& t, bool broken_chain) {
    auto id = detail::text(t, "id");
    ++r_.trials;
    detail::text(t, "verdict") == "pass" ? ++passed_ : ++failed_;
    requirements_.add(t);
    defects_.add(t);
    if (!seen_.insert(id).second) {
      later_.push_back({"run.json", 0, fmt::format("trial {} is listed twice", id)});
      return evidence(t);
    }
    auto it = verdicts_.find(id);
    if (it == verdicts_.end()) {
      if (!broken_chain)
        later_.push_back({"run.json", 0, fmt::format("trial {} has no verdict event in journal.jsonl", id)});
      return evidence(t);
    }
    if (digest(t) != it->second.digest) {
      const auto journaled = journaled_entry(it->second);
      if (journaled != t) {
        std::string field;
        for (auto& [k, v] : t.items())
          if (!journaled.contains(k) || journaled[k] != v) {
            field = k;
            break;
          }
        if (field.empty())
          for (auto& [k, v] : journaled.items())
            if (!t.contains(k)) field = k;
        later_.push_back({"run.json", 0,
                          fmt::format("trial {} differs from its verdict in journal.jsonl line {} (field {})", id,
                                      it->second.line, field)});
      }
    }
    evidence(t);
  }

  void evidence(const json& t) {
    auto evidence = detail::text(t, "evidence");
    if (!evidence.empty() && !std::filesystem::exists(out_ / evidence / "verdict.json"))
      evidence_.push_back({evidence + "/verdict.json", 0,
                           fmt::format("missing: the evidence of trial {}", detail::text(t, "id"))});
  }

  // run.json read one trial at a time: its trials and findings are checked
  // and let go as the parser reaches the end of each.
  void run_against_journal(bool broken_chain) {
    std::ifstream in(out_ / "run.json", std::ios::binary);
    if (!in) {
      problem("run.json", 0, "missing");
      return;
    }
    std::string top_key;
    std::size_t findings = 0;
    json run;
    try {
      run = json::parse(in, [&](int depth, json::parse_event_t event, json& parsed) {
        if (depth == 1 && event == json::parse_event_t::key) top_key = parsed.is_string() ? parsed.get<std::string>() : "";
        // run.json's defects (before its findings, as otarig writes it): their
        // representatives' findings are kept to check each defect's replay.
        if (depth == 1 && top_key == "defects" && (event == json::parse_event_t::array_end ||
                                                   event == json::parse_event_t::value))
          for (const auto& d : parsed.is_array() ? parsed : json::array())
            representatives_.emplace(detail::text(d, "representative"), json::object());
        const bool element = depth == 2 && (event == json::parse_event_t::object_end ||
                                            event == json::parse_event_t::array_end ||
                                            event == json::parse_event_t::value);
        if (!element || (top_key != "trials" && top_key != "findings")) return true;
        if (top_key == "trials") {
          trial(parsed, broken_chain);
        } else {
          ++findings;
          if (auto it = representatives_.find(detail::text(parsed, "trial")); it != representatives_.end())
            it->second = std::move(parsed);
        }
        return false;
      });
    } catch (const json::exception& e) {
      problem("run.json", 0, fmt::format("not JSON ({})", e.what()));
      return;
    }
    if (!run.is_object() || !run.contains("trials") || !run["trials"].is_array()) {
      problem("run.json", 0, "no trials array");
      return;
    }
    for (auto& p : later_) r_.problems.push_back(std::move(p));
    if (!broken_chain)
      for (const auto& [id, v] : verdicts_)
        if (!seen_.count(id))
          problem("run.json", 0,
                  fmt::format("trial {} (journal.jsonl line {}) is missing from run.json", id, v.line));
    const auto& summary = object_at(run, "summary");
    auto count = [&](const char* key) {
      return summary.contains(key) && summary[key].is_number_unsigned() ? summary[key].get<std::size_t>()
                                                                        : std::size_t(-1);
    };
    const bool findings_listed = run.contains("findings") && run["findings"].is_array();
    if (count("trials") != r_.trials || count("passed") != passed_ || count("failed") != failed_ ||
        count("findings") != (findings_listed ? findings : 0))
      problem("run.json", 0, "summary does not add up to its trials and findings");
    // What run.json says per requirement follows from its trials (bundles
    // written before it said anything have no `requirements`).
    if (run.contains("requirements")) {
      const auto expected = requirements_.results(run);
      const auto& stated = run["requirements"];
      if (!stated.is_array()) {
        problem("run.json", 0, "requirements is not an array");
      } else if (stated != expected) {
        std::string which = "(the list differs)";
        for (std::size_t i = 0; i < expected.size(); ++i)
          if (i >= stated.size() || stated[i] != expected[i]) {
            which = fmt::format("{}: its trials make it {}", detail::text(expected[i], "id"),
                                detail::text(expected[i], "status"));
            break;
          }
        problem("run.json", 0, "requirements do not follow from its trials and scenarios: " + which);
      }
    }
    // Which defects the trials make, and each one's replay the finding of
    // its representative trial (bundles written before `defects` have none).
    if (run.contains("defects")) {
      auto expected = defects_.results();
      json kept = json::array();
      for (auto& [trial, finding] : representatives_)
        if (!finding.empty()) kept.push_back(finding);
      attach_findings(expected, RecordList::of_array(kept));
      const auto& stated = run["defects"];
      if (!stated.is_array()) {
        problem("run.json", 0, "defects is not an array");
      } else if (stated != expected) {
        std::string which = "(the list differs)";
        for (std::size_t i = 0; i < std::max(expected.size(), stated.size()); ++i) {
          if (i >= expected.size()) {
            which = fmt::format("its trials make {} defect(s), run.json lists {}", expected.size(), stated.size());
            break;
          }
          if (i >= stated.size() || stated[i] != expected[i]) {
            std::string field;
            if (i < stated.size() && stated[i].is_object())
              for (const auto& [k, v] : expected[i].items())
                if (!stated[i].contains(k) || stated[i][k] != v) {
                  field = k;
                  break;
                }
            which = fmt::format("{}: its trials make it \"{}\" ({} trial(s)){}", detail::text(expected[i], "id"),
                                detail::text(expected[i], "title"), expected[i].value("count", std::size_t{0}),
                                field.empty() ? std::string() : fmt::format(" (field {} differs)", field));
            break;
          }
        }
        problem("run.json", 0, "defects do not follow from its trials: " + which);
      }
    }
    // What the declared waivers cover follows from the defects and the day
    // the campaign began; the summary's waived counts follow from that.
    {
      const auto stated_count = [&](const char* key) {
        return summary.contains(key) && summary[key].is_number_unsigned() ? summary[key].get<std::uint64_t>()
                                                                          : std::uint64_t{0};
      };
      if (run.contains("waivers")) {
        const auto& w = run["waivers"];
        const auto started = detail::text(run, "started");
        if (!w.is_object() || !w.contains("declared") || !w["declared"].is_array()) {
          problem("run.json", 0, "waivers is not an object with a declared list");
        } else if (detail::text(w, "date") != waiver_date(run)) {
          problem("run.json", 0,
                  fmt::format("waivers were judged on {}, but the campaign began on {}", detail::text(w, "date"),
                              started));
        } else {
          const auto expected = waiver_results(w["declared"], detail::text(w, "date"), defects_.results());
          if (expected != w) {
            std::string which = "(the list differs)";
            for (std::size_t i = 0; i < expected["declared"].size(); ++i)
              if (i >= w["declared"].size() || w["declared"][i] != expected["declared"][i]) {
                which = fmt::format("{} is {} and covers {} trial(s)", detail::text(expected["declared"][i], "id"),
                                    detail::text(expected["declared"][i], "status"),
                                    expected["declared"][i].value("trials", std::uint64_t{0}));
                break;
              }
            problem("run.json", 0, "waivers do not follow from its defects: " + which);
          }
          const auto c = count_waivers(expected);
          if (stated_count("waived") != c.waived || stated_count("expired_waivers") != c.expired)
            problem("run.json", 0, "summary's waived counts do not follow from its waivers");
        }
      } else if (stated_count("waived") || stated_count("expired_waivers")) {
        problem("run.json", 0, "summary counts waived findings, but run.json declares no waivers");
      }
    }
    for (auto& p : evidence_) r_.problems.push_back(std::move(p));
  }

  std::map<std::string, Verdict> verdicts_;
  std::set<std::string> seen_;
  std::size_t passed_ = 0, failed_ = 0;
  RequirementTally requirements_;  // what run.json's trials give evidence for
  DefectTally defects_;            // the defects run.json's trials make
  std::map<std::string, json> representatives_;  // a stated defect's representative -> its finding
  std::vector<VerifyProblem> later_, evidence_;  // run.json's problems, told once it parsed

  std::filesystem::path out_;
  VerifyResult& r_;
};

}  // namespace

VerifyResult verify_bundle(const std::filesystem::path& out,
                           const std::optional<std::filesystem::path>& trusted_key) {
  std::optional<crypto::PublicKey> trusted;
  if (trusted_key) trusted = crypto::load_public_pem(*trusted_key);
  VerifyResult r;
  if (!std::filesystem::is_directory(out) ||
      (!std::filesystem::exists(out / kManifestFile) && !std::filesystem::exists(out / "run.json"))) {
    r.status = VerifyResult::Status::not_a_bundle;
    r.problems.push_back({".", 0, "not an evidence folder: no manifest-sha256.txt and no run.json"});
    return r;
  }
  Checker check(out, r);
  // Each stage reads hostile input; whatever it did not expect is a problem of its file.
  auto stage = [&](const char* file, const auto& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      r.problems.push_back({file, 0, fmt::format("cannot be checked: {}", e.what())});
    }
  };
  std::map<std::string, std::string> subjects;
  stage(kAttestationFile, [&] { subjects = check.attestation(trusted); });
  stage(kManifestFile, [&] { check.subject_digest(subjects, kManifestFile); });
  stage(kManifestFile, [&] { check.manifest(); });
  stage("run.json", [&] { check.subject_digest(subjects, "run.json"); });
  stage("run.json", [&] { check.journal_and_run(); });
  r.status = r.problems.empty() ? VerifyResult::Status::ok : VerifyResult::Status::failed;
  return r;
}

std::string format_verify(const VerifyResult& r, const std::filesystem::path& out) {
  std::string text;
  switch (r.status) {
    case VerifyResult::Status::ok:
      text = fmt::format(
          "ok: {}: {} files match the manifest, journal of {} lines chained, {} trials match their "
          "verdicts, attestation signature valid\n",
          out.string(), r.files, r.journal_lines, r.trials);
      break;
    case VerifyResult::Status::failed:
      text = fmt::format("FAILED: {}: first bad file: {}\n", out.string(), r.first_bad_file());
      break;
    case VerifyResult::Status::not_a_bundle:
      text = fmt::format("{}: not an evidence folder (no manifest-sha256.txt, no run.json)\n", out.string());
      return text;
  }
  for (const auto& p : r.problems)
    text += fmt::format("  {}{}: {}\n", p.file,
                        p.line && p.file != "journal.jsonl" ? fmt::format(":{}", p.line) : "", p.detail);
  for (const auto& n : r.notes) text += fmt::format("  note: {}\n", n);
  return text;
}

nlohmann::json verify_json(const VerifyResult& r, const std::filesystem::path& out) {
  nlohmann::json problems = nlohmann::json::array();
  for (const auto& p : r.problems) {
    nlohmann::json j{{"file", p.file}, {"detail", p.detail}};
    if (p.line) j["line"] = p.line;
    problems.push_back(std::move(j));
  }
  const char* status = r.status == VerifyResult::Status::ok       ? "ok"
                       : r.status == VerifyResult::Status::failed ? "failed"
                                                                  : "not-a-bundle";
  return {{"bundle", out.string()},     {"status", status},           {"files", r.files},
          {"journal_lines", r.journal_lines}, {"trials", r.trials},   {"keyid", r.keyid},
          {"test_key", r.test_key},     {"trusted_key", r.trusted_key}, {"problems", std::move(problems)},
          {"notes", r.notes}};
}

}  // namespace otarig::reports
