// verify_bundle: every kind of change to a bundle is caught and named.
#include "otarig/reports/verify.hpp"

#include <gtest/gtest.h>

#include <functional>

#include <nlohmann/json.hpp>

#include "otarig/core/crypto.hpp"
#include "otarig/reports/attestation.hpp"
#include "otarig/reports/bundle.hpp"
#include "sample_bundle.hpp"
#include "test_util.hpp"

using namespace otarig;
using namespace otarig::reports;
using namespace otarig::reports::testing;
using nlohmann::json;

namespace {

// A sample bundle signed with a key the test holds, so a test can re-sign
// after an edit (what an attacker with the key could do).
struct SignedSample {
  TempDir dir;
  std::filesystem::path out;
  std::filesystem::path key_file;
  json run;
  SignedSample() {
    key_file = dir.path / "key.pem";
    crypto::Ed25519Key::test_key("verify-test").save_pem(key_file);
    out = dir.path / "bundle";
    SampleOptions o;
    o.signing_key = key_file;
    run = write_sample_bundle(out, o);
  }
  void reseal() {
    write_manifest(out);
    write_attestation(out, json::parse(slurp(out / "run.json")), crypto::Ed25519Key::load_pem(key_file),
                      false);
  }
};

std::string report(const VerifyResult& r, const std::filesystem::path& out) { return format_verify(r, out); }

}  // namespace

TEST(Verify, EveryFlippedByteOfEveryFileIsCaughtAndNamed) {
  TempDir d;
  write_sample_bundle(d.path);
  ASSERT_TRUE(verify_bundle(d.path).ok());
  const auto files = files_under(d.path);
  ASSERT_GE(files.size(), 40u);
  std::size_t flips = 0;
  for (const auto& f : files) {
    const auto original = slurp(d.path / f);
    if (original.empty()) continue;
    for (std::size_t pos : {std::size_t{0}, original.size() / 3, original.size() / 2, original.size() - 1})
      for (unsigned char mask : {0x01, 0x20, 0x80}) {
        auto changed = original;
        changed[pos] = static_cast<char>(changed[pos] ^ mask);
        spit(d.path / f, changed);
        auto r = verify_bundle(d.path);
        EXPECT_FALSE(r.ok()) << f << " byte " << pos << " ^ " << int(mask) << " not caught";
        EXPECT_EQ(r.exit_code(), 1);
        EXPECT_EQ(r.first_bad_file(), f) << "byte " << pos << " ^ " << int(mask) << ":\n"
                                         << report(r, d.path);
        ++flips;
      }
    spit(d.path / f, original);
  }
  EXPECT_GE(flips, 400u);
  EXPECT_TRUE(verify_bundle(d.path).ok());
}

TEST(Verify, DeletedFileIsNamed) {
  TempDir d;
  write_sample_bundle(d.path);
  std::filesystem::remove(d.path / "trials/00003/console.log");
  auto r = verify_bundle(d.path);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.first_bad_file(), "trials/00003/console.log");
  EXPECT_NE(r.problems.front().detail.find("missing"), std::string::npos);
  EXPECT_NE(report(r, d.path).find("first bad file: trials/00003/console.log"), std::string::npos);
}

TEST(Verify, EachClosingFileDeletedIsNamed) {
  for (const char* f : {kManifestFile, kAttestationFile, kPublicKeyFile}) {
    TempDir d(f);
    write_sample_bundle(d.path);
    std::filesystem::remove(d.path / f);
    auto r = verify_bundle(d.path);
    EXPECT_FALSE(r.ok()) << f;
    EXPECT_EQ(r.first_bad_file(), f);
  }
}

TEST(Verify, AddedFileIsNamed) {
  TempDir d;
  write_sample_bundle(d.path);
  spit(d.path / "trials/00004/extra.txt", "not listed\n");
  auto r = verify_bundle(d.path);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.first_bad_file(), "trials/00004/extra.txt");
  EXPECT_NE(r.problems.front().detail.find("not in the manifest"), std::string::npos);
}

TEST(Verify, SymlinkIsNotAcceptedAsAFile) {
  TempDir d;
  write_sample_bundle(d.path);
  std::filesystem::create_symlink("/etc/hostname", d.path / "link");
  auto r = verify_bundle(d.path);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.first_bad_file(), "link");
}

TEST(Verify, EditedJournalLineIsNamedByItsNumber) {
  TempDir d;
  write_sample_bundle(d.path);
  auto text = slurp(d.path / "journal.jsonl");
  // Line 4 is the first trial's second step event ("judge").
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_NE(lines[3].find("\"judge\""), std::string::npos) << lines[3];
  lines[3].replace(lines[3].find("\"judge\""), 7, "\"Judge\"");
  std::string edited;
  for (const auto& l : lines) edited += l + "\n";
  spit(d.path / "journal.jsonl", edited);
  auto r = verify_bundle(d.path);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.first_bad_file(), "journal.jsonl");
  EXPECT_EQ(r.journal_line(), 4u) << report(r, d.path);
  EXPECT_NE(report(r, d.path).find("line 4"), std::string::npos);
}

TEST(Verify, RemovedJournalLineIsNamed) {
  TempDir d;
  write_sample_bundle(d.path);
  auto text = slurp(d.path / "journal.jsonl");
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  lines.erase(lines.begin() + 6);
  std::string edited;
  for (const auto& l : lines) edited += l + "\n";
  spit(d.path / "journal.jsonl", edited);
  auto r = verify_bundle(d.path);
  EXPECT_EQ(r.journal_line(), 7u) << report(r, d.path);
}

TEST(Verify, ResealedManifestWithoutTheKeyIsCaughtByTheSignedDigest) {
  TempDir d;
  write_sample_bundle(d.path);
  spit(d.path / "summary.md", "all good\n");
  write_manifest(d.path);  // the manifest matches the files again, but it is not the one signed
  auto r = verify_bundle(d.path);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.first_bad_file(), kManifestFile);
  EXPECT_NE(r.problems.front().detail.find("signed"), std::string::npos);
}

TEST(Verify, WrongTrustedKeyIsCaught) {
  SignedSample s;
  EXPECT_TRUE(verify_bundle(s.out, s.key_file).ok());
  auto other = s.dir.path / "other.pem";
  crypto::Ed25519Key::test_key("someone else").save_pem(other);
  auto r = verify_bundle(s.out, other);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.first_bad_file(), kAttestationFile);
  EXPECT_NE(r.problems.front().detail.find("trusted key"), std::string::npos) << report(r, s.out);
}

TEST(Verify, ResignedWithAnotherKeyPassesOnlyWithoutATrustedKey) {
  SignedSample s;
  spit(s.out / "summary.md", "all good\n");
  write_manifest(s.out);
  auto intruder = crypto::Ed25519Key::test_key("intruder");
  write_attestation(s.out, s.run, intruder, false);
  // Self-consistent: the bundle's own key checks out (integrity since signing, not who signed) ...
  auto self = verify_bundle(s.out);
  EXPECT_TRUE(self.ok());
  EXPECT_NE(report(self, s.out).find("not who signed"), std::string::npos);
  // ... but not against the key the auditor trusts.
  auto r = verify_bundle(s.out, s.key_file);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.first_bad_file(), kAttestationFile);
}

TEST(Verify, RunJsonThatDisagreesWithTheJournalIsCaught) {
  SignedSample s;
  auto run = json::parse(slurp(s.out / "run.json"));
  run["trials"][3]["verdict"] = "pass";
  run["trials"][3]["broken"] = json::array();
  run["summary"]["passed"] = 11;
  run["summary"]["failed"] = 1;
  run["findings"].erase(0);
  run["summary"]["findings"] = 1;
  spit(s.out / "run.json", run.dump(2) + "\n");
  s.reseal();
  auto r = verify_bundle(s.out, s.key_file);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.first_bad_file(), "run.json");
  EXPECT_NE(r.problems.front().detail.find("trial 00003 differs"), std::string::npos) << report(r, s.out);
}

TEST(Verify, TrialMissingFromRunJsonIsCaught) {
  SignedSample s;
  auto run = json::parse(slurp(s.out / "run.json"));
  run["trials"].erase(5);
  run["summary"]["trials"] = 11;
  run["summary"]["passed"] = 9;
  spit(s.out / "run.json", run.dump(2) + "\n");
  s.reseal();
  auto r = verify_bundle(s.out, s.key_file);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.first_bad_file(), "run.json");
  EXPECT_NE(r.problems.front().detail.find("00005"), std::string::npos) << report(r, s.out);
}

TEST(Verify, SummaryThatDoesNotAddUpIsCaught) {
  SignedSample s;
  auto run = json::parse(slurp(s.out / "run.json"));
  run["summary"]["failed"] = 0;
  spit(s.out / "run.json", run.dump(2) + "\n");
  s.reseal();
  auto r = verify_bundle(s.out, s.key_file);
  EXPECT_EQ(r.first_bad_file(), "run.json");
}

TEST(Verify, FolderWithoutABundleIsNotABundle) {
  TempDir d;
  auto r = verify_bundle(d.path);
  EXPECT_EQ(r.status, VerifyResult::Status::not_a_bundle);
  EXPECT_EQ(r.exit_code(), 2);
  EXPECT_EQ(verify_bundle(d.path / "nowhere").exit_code(), 2);
}

TEST(Verify, OddlyShapedSignedStatementIsAProblemNotACrash) {
  SignedSample s;
  auto key = crypto::Ed25519Key::load_pem(s.key_file);
  for (const char* statement :
       {R"({"_type":5,"predicate":"x","subject":{"a":1}})", "[1,2]", "null",
        R"({"_type":"https://in-toto.io/Statement/v1","subject":[{"name":7,"digest":3}]})"}) {
    spit(s.out / kAttestationFile, dsse_envelope(statement, key));
    VerifyResult r;
    EXPECT_NO_THROW(r = verify_bundle(s.out, s.key_file)) << statement;
    EXPECT_FALSE(r.ok()) << statement;
    EXPECT_EQ(r.first_bad_file(), kAttestationFile) << statement;
  }
}

TEST(Verify, OddlyShapedRunJsonIsAProblemNotACrash) {
  SignedSample s;
  for (const char* doc :
       {R"({"trials":[{"id":{"x":1}}],"summary":{"trials":"12"}})", R"({"trials":5})", "[]"}) {
    spit(s.out / "run.json", std::string(doc) + "\n");
    s.reseal();
    VerifyResult r;
    EXPECT_NO_THROW(r = verify_bundle(s.out, s.key_file)) << doc;
    EXPECT_FALSE(r.ok()) << doc;
    EXPECT_EQ(r.first_bad_file(), "run.json") << doc;
  }
}

TEST(Verify, RequirementsThatOverstateTheirTrialsAreNamed) {
  SignedSample s;
  auto run = json::parse(slurp(s.out / "run.json"));
  ASSERT_TRUE(run.contains("requirements"));
  ASSERT_FALSE(run["requirements"].empty());
  // A requirement claimed as passed although its trials say otherwise, re-signed.
  auto& first = run["requirements"][0];
  first["status"] = first["status"] == "pass" ? "fail" : "pass";
  spit(s.out / "run.json", run.dump(2) + "\n");
  s.reseal();
  auto r = verify_bundle(s.out, s.key_file);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.first_bad_file(), "run.json");
  ASSERT_FALSE(r.problems.empty());
  EXPECT_NE(r.problems.front().detail.find("requirements do not follow"), std::string::npos) << report(r, s.out);
  EXPECT_NE(r.problems.front().detail.find(first["id"].get<std::string>()), std::string::npos) << report(r, s.out);
}

TEST(Verify, DefectsThatDoNotFollowFromTheTrialsAreNamed) {
  // Each tampering is re-signed, so only the recomputation of the defects
  // from run.json's trials and findings can catch it.
  const std::vector<std::pair<std::string, std::function<void(json&)>>> tamperings = {
      {"a trial left out", [](json& d) { d[0]["trials"] = json::array(); d[0]["count"] = 0; }},
      {"a retitled defect", [](json& d) { d[0]["title"] = "nothing broken"; }},
      {"two defects made one", [](json& d) {
         for (const auto& t : d[1]["trials"]) d[0]["trials"].push_back(t);
         d[0]["count"] = d[0]["trials"].size();
         d.erase(1);
       }},
      {"another replay", [](json& d) { d[1]["replay"] = "otarig run --trial 00000"; }},
      {"no defect", [](json& d) { d = json::array(); }},
      {"not a list", [](json& d) { d = json{{"D0001", 1}}; }},
  };
  for (const auto& [what, tamper] : tamperings) {
    SignedSample s;
    auto run = json::parse(slurp(s.out / "run.json"));
    ASSERT_EQ(run["defects"].size(), 2u) << run["defects"].dump(1);
    ASSERT_TRUE(verify_bundle(s.out, s.key_file).ok());
    tamper(run["defects"]);
    spit(s.out / "run.json", run.dump(2) + "\n");
    s.reseal();
    auto r = verify_bundle(s.out, s.key_file);
    EXPECT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.first_bad_file(), "run.json") << what;
    ASSERT_FALSE(r.problems.empty()) << what;
    EXPECT_NE(r.problems.front().detail.find("defects"), std::string::npos) << what << "\n" << report(r, s.out);
  }
}

TEST(Verify, ABundleWrittenBeforeDefectsIsNotCheckedForThem) {
  SignedSample s;
  auto run = json::parse(slurp(s.out / "run.json"));
  run.erase("defects");
  spit(s.out / "run.json", run.dump(2) + "\n");
  s.reseal();
  EXPECT_TRUE(verify_bundle(s.out, s.key_file).ok());
}

// Attestation files a byte flip cannot make: each is refused with what is
// wrong with it, in the file it is wrong in.
struct BadAttestationCase {
  const char* name;
  const char* file;
  std::function<std::string(const std::string&)> edit;
  const char* message;
};

void PrintTo(const BadAttestationCase& c, std::ostream* os) { *os << c.name; }

class VerifyBadAttestation : public ::testing::TestWithParam<BadAttestationCase> {};

TEST_P(VerifyBadAttestation, IsNamedWithItsReason) {
  const auto& c = GetParam();
  TempDir d;
  write_sample_bundle(d.path);
  spit(d.path / c.file, c.edit(slurp(d.path / c.file)));
  auto r = verify_bundle(d.path);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.first_bad_file(), c.file) << report(r, d.path);
  ASSERT_FALSE(r.problems.empty());
  EXPECT_NE(r.problems.front().detail.find(c.message), std::string::npos) << report(r, d.path);
}

namespace {

// The envelope with one of its base64 fields rewritten.
std::function<std::string(const std::string&)> envelope_field(
    const char* field, std::function<std::string(std::string)> rewrite) {
  return [field, rewrite](const std::string& text) {
    auto env = json::parse(text);
    auto& target = std::string(field) == "payload" ? env["payload"] : env["signatures"][0]["sig"];
    target = rewrite(target.get<std::string>());
    return env.dump() + "\n";
  };
}

// The PEM with its base64 line broken in two: still a key to OpenSSL, but not
// the text written for it.
std::string pem_with_broken_line(const std::string& pem) {
  auto body = pem.find('\n') + 1;
  auto copy = pem;
  copy.insert(body + 20, "\n");
  return copy;
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(
    Cases, VerifyBadAttestation,
    ::testing::Values(
        BadAttestationCase{"PemNotAKey", kPublicKeyFile,
                           [](const std::string&) {
                             return std::string(
                                 "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n");
                           },
                           "not an Ed25519 public key in PEM form"},
        BadAttestationCase{"PemTruncated", kPublicKeyFile,
                           [](const std::string& pem) { return pem.substr(0, pem.size() / 2); },
                           "not an Ed25519 public key in PEM form"},
        BadAttestationCase{"PemRewrapped", kPublicKeyFile, pem_with_broken_line,
                           "changed: not the PEM text written for the key it holds"},
        BadAttestationCase{"PayloadWithLineBreak", kAttestationFile,
                           envelope_field("payload", [](std::string s) { return s.insert(8, "\n"); }),
                           "payload is not valid base64"},
        BadAttestationCase{"PayloadWithoutPadding", kAttestationFile,
                           envelope_field("payload", [](std::string s) { return s + "A"; }),
                           "payload is not valid base64"},
        BadAttestationCase{"SigWithSpaceBefore", kAttestationFile,
                           envelope_field("sig", [](std::string s) { return " " + s.substr(1); }),
                           "sig is not a base64 Ed25519 signature"},
        BadAttestationCase{"SigUnusedBitsSet", kAttestationFile,
                           envelope_field("sig",
                                          [](std::string s) {
                                            // 64 bytes end in "==": the low four bits of the
                                            // character before are unused (A, Q, g or w); one more sets one.
                                            auto& c = s[s.size() - 3];
                                            c = static_cast<char>(c + 1);
                                            return s;
                                          }),
                           "sig is not a base64 Ed25519 signature"}),
    [](const ::testing::TestParamInfo<BadAttestationCase>& p) { return std::string(p.param.name); });
