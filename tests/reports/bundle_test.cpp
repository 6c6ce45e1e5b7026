// write_bundle: the files of a bundle, the manifest, the attestation (checked
// here with OpenSSL directly and with the by-hand procedure of
// docs/evidence.md), and that no private key material reaches any file.
#include "otarig/reports/bundle.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "otarig/core/crypto.hpp"
#include "otarig/core/errors.hpp"
#include "otarig/reports/attestation.hpp"
#include "otarig/reports/verify.hpp"
#include "sample_bundle.hpp"
#include "test_util.hpp"

using namespace otarig;
using namespace otarig::reports;
using namespace otarig::reports::testing;
using nlohmann::json;

namespace {

// Base64 through OpenSSL, not through the code under test.
std::string openssl_b64decode(const std::string& text) {
  std::string out(text.size(), '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0) return {};
  std::size_t pad = 0;
  if (!text.empty() && text.back() == '=') ++pad;
  if (text.size() > 1 && text[text.size() - 2] == '=') ++pad;
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

bool openssl_verify(const std::string& pem, const std::string& message, const std::string& sig) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())),
                                                BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
  if (!key || EVP_PKEY_get_id(key.get()) != EVP_PKEY_ED25519) return false;
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1) return false;
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                          reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
}

std::string sha256_hex(const std::string& s) { return crypto::hex(crypto::sha256(s)); }

}  // namespace

TEST(Bundle, WritesEveryFileAndVerifies) {
  TempDir d;
  auto run = write_sample_bundle(d.path);
  for (const char* f : {"run.json", "junit.xml", "summary.md", "report.html", "journal.jsonl",
                        "manifest-sha256.txt", "attestation.dsse.json", "attestation.pub.pem",
                        "trials/00003/console.log", "trials/00003/verdict.json", "trials/00003/events.jsonl"})
    EXPECT_TRUE(std::filesystem::is_regular_file(d.path / f)) << f;
  EXPECT_EQ(json::parse(slurp(d.path / "run.json")), run);
  auto r = verify_bundle(d.path);
  EXPECT_TRUE(r.ok()) << format_verify(r, d.path);
  EXPECT_EQ(r.exit_code(), 0);
  EXPECT_EQ(r.trials, 12u);
  EXPECT_TRUE(r.test_key);
  EXPECT_FALSE(r.trusted_key);
  EXPECT_NE(format_verify(r, d.path).find("ok: "), std::string::npos);
}

TEST(Bundle, ManifestListsEveryOtherFileSortedWithItsDigest) {
  TempDir d;
  write_sample_bundle(d.path);
  auto manifest = slurp(d.path / kManifestFile);
  std::vector<std::string> expected;
  for (const auto& f : files_under(d.path))
    if (f != kManifestFile && f != kAttestationFile && f != kPublicKeyFile)
      expected.push_back(sha256_hex(slurp(d.path / f)) + "  " + f);
  std::string text;
  for (const auto& l : expected) text += l + "\n";
  EXPECT_EQ(manifest, text);
  EXPECT_NE(manifest.find("  report.html\n"), std::string::npos);
  EXPECT_NE(manifest.find("  trials/00000/console.log\n"), std::string::npos);
  if (have_program("sha256sum")) {
    EXPECT_EQ(
        std::system(
            ("cd '" + d.path.string() + "' && sha256sum --quiet --strict -c manifest-sha256.txt").c_str()),
        0);
  }
}

TEST(Bundle, AttestationVerifiesWithOpenSSLIndependently) {
  TempDir d;
  write_sample_bundle(d.path);
  auto env = json::parse(slurp(d.path / kAttestationFile));
  ASSERT_EQ(env["payloadType"], "application/vnd.in-toto+json");
  ASSERT_EQ(env["signatures"].size(), 1u);
  auto payload = openssl_b64decode(env["payload"].get<std::string>());
  auto sig = openssl_b64decode(env["signatures"][0]["sig"].get<std::string>());
  ASSERT_EQ(sig.size(), 64u);
  std::string type = env["payloadType"];
  std::string pae = "DSSEv1 " + std::to_string(type.size()) + " " + type + " " +
                    std::to_string(payload.size()) + " " + payload;
  auto pem = slurp(d.path / kPublicKeyFile);
  EXPECT_TRUE(openssl_verify(pem, pae, sig));
  EXPECT_FALSE(openssl_verify(pem, pae + " ", sig));

  // The same with the project's own Ed25519 check and key id.
  auto key = crypto::load_public_pem(d.path / kPublicKeyFile);
  crypto::Signature s{};
  std::copy(sig.begin(), sig.end(), s.begin());
  EXPECT_TRUE(crypto::ed25519_verify(
      key, std::span(reinterpret_cast<const std::uint8_t*>(pae.data()), pae.size()), s));
  EXPECT_EQ(env["signatures"][0]["keyid"], crypto::hex(crypto::key_id(key)));

  auto st = json::parse(payload);
  EXPECT_EQ(st["_type"], "https://in-toto.io/Statement/v1");
  EXPECT_EQ(st["predicateType"], "https://in-toto.io/attestation/test-result/v0.1");
  ASSERT_EQ(st["subject"].size(), 2u);
  EXPECT_EQ(st["subject"][0]["name"], "manifest-sha256.txt");
  EXPECT_EQ(st["subject"][0]["digest"]["sha256"], sha256_hex(slurp(d.path / kManifestFile)));
  EXPECT_EQ(st["subject"][1]["name"], "run.json");
  EXPECT_EQ(st["subject"][1]["digest"]["sha256"], sha256_hex(slurp(d.path / "run.json")));
  const auto& p = st["predicate"];
  EXPECT_EQ(p["result"], "FAILED");
  EXPECT_EQ(p["failedTests"], (json{"power-cut-sweep/00003", "tampered-image/00009"}));
  EXPECT_EQ(p["passedTests"].size(), 10u);
  EXPECT_EQ(p["test_key"], true);
  EXPECT_EQ(p["configuration"][0]["name"], "boards/virtual-ab.yaml");
  EXPECT_EQ(p["configuration"][0]["digest"]["sha256"], std::string(64, 'b'));
  EXPECT_EQ(p["configuration"][1]["name"], "scenario/sample");
  EXPECT_EQ(p["otarig"]["git_revision"], "0123456789ab");
}

TEST(Bundle, AllPassingRunAttestsPassed) {
  TempDir d;
  SampleOptions o;
  o.failing.clear();
  write_sample_bundle(d.path, o);
  auto env = json::parse(slurp(d.path / kAttestationFile));
  auto st = json::parse(*base64_decode(env["payload"].get<std::string>()));
  EXPECT_EQ(st["predicate"]["result"], "PASSED");
  EXPECT_TRUE(st["predicate"]["failedTests"].empty());
}

TEST(Bundle, ByHandProcedureOfTheDocsVerifies) {
  if (!have_program("openssl") || !have_program("jq") || !have_program("sha256sum"))
    GTEST_SKIP() << "openssl, jq or sha256sum not installed";
  TempDir d;
  write_sample_bundle(d.path / "bundle");
  // The commands of docs/evidence.md, "By hand".
  std::string script = R"sh(set -e
cd "$1"
sha256sum --quiet --strict -c manifest-sha256.txt
work=$(mktemp -d)
jq -r .payload attestation.dsse.json | base64 -d > "$work/statement.json"
jq -r '.signatures[0].sig' attestation.dsse.json | base64 -d > "$work/sig.bin"
type=$(jq -r .payloadType attestation.dsse.json)
printf 'DSSEv1 %d %s %d ' "${#type}" "$type" "$(stat -c %s "$work/statement.json")" > "$work/pae.bin"
cat "$work/statement.json" >> "$work/pae.bin"
openssl pkeyutl -verify -pubin -inkey attestation.pub.pem -rawin -in "$work/pae.bin" -sigfile "$work/sig.bin"
jq -r '.subject[] | "\(.digest.sha256)  \(.name)"' "$work/statement.json" | sha256sum --quiet --strict -c
rm -rf "$work"
)sh";
  spit(d.path / "check.sh", script);
  EXPECT_EQ(std::system(("bash '" + (d.path / "check.sh").string() + "' '" + (d.path / "bundle").string() +
                         "' >/dev/null")
                            .c_str()),
            0);
  // The same procedure fails once a listed file changes.
  spit(d.path / "bundle" / "summary.md", "changed\n");
  EXPECT_NE(std::system(("bash '" + (d.path / "check.sh").string() + "' '" + (d.path / "bundle").string() +
                         "' >/dev/null 2>&1")
                            .c_str()),
            0);
}

TEST(Bundle, CallersKeySignsAndNoPrivateKeyMaterialReachesAnyFile) {
  TempDir d;
  std::array<std::uint8_t, 32> seed{};
  for (std::size_t i = 0; i < seed.size(); ++i) seed[i] = static_cast<std::uint8_t>(0xA5 ^ (i * 7));
  auto key = crypto::Ed25519Key::from_seed(seed);
  auto key_file = d.path / "signing.pem";
  key.save_pem(key_file);
  SampleOptions o;
  o.signing_key = key_file;
  write_sample_bundle(d.path / "bundle", o);

  auto r = verify_bundle(d.path / "bundle", key_file);
  EXPECT_TRUE(r.ok()) << format_verify(r, d.path / "bundle");
  EXPECT_TRUE(r.trusted_key);
  EXPECT_FALSE(r.test_key);
  EXPECT_EQ(r.keyid, crypto::hex(key.id()));
  auto env = json::parse(slurp(d.path / "bundle" / kAttestationFile));
  auto st = json::parse(*base64_decode(env["payload"].get<std::string>()));
  EXPECT_EQ(st["predicate"]["test_key"], false);
  EXPECT_EQ(slurp(d.path / "bundle" / kPublicKeyFile), key.public_pem());

  // Every form the secret could take.
  auto pem = slurp(key_file);
  ASSERT_NE(pem.find("PRIVATE KEY"), std::string::npos);
  std::vector<std::string> needles = {pem, "PRIVATE KEY"};
  std::istringstream lines(pem);
  for (std::string line; std::getline(lines, line);)
    if (line.find("-----") == std::string::npos && line.size() > 16) needles.push_back(line);
  std::string raw(seed.begin(), seed.end());
  needles.push_back(raw);
  needles.push_back(crypto::hex(seed));
  needles.push_back(base64_encode(raw));
  needles.push_back(base64_encode(raw).substr(0, 40));
  auto upper = crypto::hex(seed);
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  needles.push_back(upper);
  for (const auto& f : files_under(d.path / "bundle")) {
    auto text = slurp(d.path / "bundle" / f);
    for (const auto& n : needles)
      EXPECT_EQ(text.find(n), std::string::npos) << f << " holds private key material";
  }
}

TEST(Bundle, GeneratedKeyIsNeverWritten) {
  TempDir d;
  write_sample_bundle(d.path);
  for (const auto& f : files_under(d.path))
    EXPECT_EQ(slurp(d.path / f).find("PRIVATE"), std::string::npos) << f;
}

TEST(Bundle, UnreadableSigningKeyIsInputErrorAndWritesNothing) {
  TempDir d;
  BundleOptions o;
  o.signing_key = d.path / "no-such-key.pem";
  EXPECT_THROW(write_bundle(d.path / "out", json{{"trials", json::array()}}, o), otarig::InputError);
  EXPECT_FALSE(std::filesystem::exists(d.path / "out" / "run.json"));
}

TEST(Base64, RoundTripsAndRejectsNonCanonicalText) {
  for (const std::string& s : std::vector<std::string>{"", "f", "fo", "foo", "foob", "fooba", "foobar",
                                                       std::string("\0\xff\x80", 3)})
    EXPECT_EQ(base64_decode(base64_encode(s)), s);
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_FALSE(base64_decode("Zm9=").has_value());   // unused bits set
  EXPECT_FALSE(base64_decode("Zm8").has_value());    // no padding
  EXPECT_FALSE(base64_decode("Zm 8=").has_value());  // whitespace
  EXPECT_FALSE(base64_decode("Zm8=Zm8=").has_value());
  // What OpenSSL's decoder alone would let through.
  EXPECT_FALSE(base64_decode("   Zm8=").has_value());       // leading whitespace
  EXPECT_FALSE(base64_decode("Zm8=\n\n\n\n").has_value());  // trailing line breaks
  EXPECT_FALSE(base64_decode("Zm=8").has_value());          // padding inside
  EXPECT_FALSE(base64_decode("Z===").has_value());
  EXPECT_FALSE(base64_decode("====").has_value());
  EXPECT_FALSE(base64_decode("Zm-8").has_value());  // the URL alphabet
  EXPECT_EQ(base64_decode(""), std::string());
}

// A bundle written by otarig 0.1.0 (`otarig run --board boards/virtual-ab.yaml
// --scenario replay-old --trials 1 --seed 7 --signing-key ...`) before base64
// and PEM came from OpenSSL: it still verifies, and today's code writes its
// attestation files byte for byte as they are.
TEST(Attestation, BundleOfAnEarlierVersionVerifiesAndIsWrittenTheSameToday) {
  const auto fixtures = std::filesystem::path(OTARIG_SOURCE_DIR) / "tests/reports/fixtures";
  const auto bundle = fixtures / "bundle-v0.1.0";
  const auto key_file = fixtures / "bundle-v0.1.0-signing-key.pem";
  auto r = verify_bundle(bundle, key_file);
  EXPECT_TRUE(r.ok()) << format_verify(r, bundle);
  EXPECT_TRUE(r.trusted_key);

  const auto key = crypto::Ed25519Key::load_pem(key_file);
  EXPECT_EQ(public_key_pem(key.public_key()), slurp(bundle / kPublicKeyFile));
  const auto envelope_text = slurp(bundle / kAttestationFile);
  const auto env = json::parse(envelope_text);
  const auto payload = base64_decode(env["payload"].get<std::string>());
  ASSERT_TRUE(payload.has_value());
  EXPECT_EQ(*payload, openssl_b64decode(env["payload"].get<std::string>()));
  // Ed25519 signs deterministically: the same statement and key give the same envelope.
  EXPECT_EQ(dsse_envelope(*payload, key), envelope_text);
}

TEST(Dsse, PreAuthenticationEncodingFollowsTheSpec) {
  // The example of the DSSE v1 protocol document.
  EXPECT_EQ(dsse_pae("http://example.com/HelloWorld", "hello world"),
            "DSSEv1 29 http://example.com/HelloWorld 11 hello world");
  EXPECT_EQ(dsse_pae("", ""), "DSSEv1 0  0 ");
}

TEST(PublicKeyPem, MatchesOpenSSL) {
  auto key = crypto::Ed25519Key::test_key("reports");
  EXPECT_EQ(public_key_pem(key.public_key()), key.public_pem());
}
