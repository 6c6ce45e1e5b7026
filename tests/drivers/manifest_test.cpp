#include "otarig/drivers/net/manifest.hpp"

#include <gtest/gtest.h>

#include "otarig/core/crypto.hpp"
#include "otarig/core/errors.hpp"

using namespace otarig::drivers::net;

namespace {

const std::string kDigest(64, 'a');

std::string doc(const std::string& name = "\"v2\"", const std::string& version = "\"1.2.0\"",
                const std::string& counter = "3", const std::string& size = "70000",
                const std::string& sha = "\"" + kDigest + "\"", const std::string& url = "\"/images/v2.bin\"") {
  return "{\"name\":" + name + ",\"version\":" + version + ",\"security_counter\":" + counter + ",\"size\":" + size +
         ",\"sha256\":" + sha + ",\"url\":" + url + "}";
}

}  // namespace

TEST(Manifest, ParsesAValidDocument) {
  Manifest m = parse_manifest(doc(), "m.json");
  EXPECT_EQ(m.name, "v2");
  EXPECT_EQ(m.version, "1.2.0");
  EXPECT_EQ(m.security_counter, 3u);
  EXPECT_EQ(m.size, 70000u);
  EXPECT_EQ(m.sha256, kDigest);
  EXPECT_EQ(m.url, "/images/v2.bin");
  EXPECT_EQ(parse_manifest(to_json_text(m), "again"), m);
}

TEST(Manifest, MakeManifestHashesTheImage) {
  std::vector<std::uint8_t> image = {1, 2, 3};
  Manifest m = make_manifest("r1", "0.0.1+7", 9, image, "https://updates.example/r1.bin");
  EXPECT_EQ(m.size, 3u);
  EXPECT_EQ(m.sha256, otarig::crypto::hex(otarig::crypto::sha256(image)));
  EXPECT_EQ(to_json_text(m),
            "{\"name\":\"r1\",\"version\":\"0.0.1+7\",\"security_counter\":9,\"size\":3,\"sha256\":\"" + m.sha256 +
                "\",\"url\":\"https://updates.example/r1.bin\"}");
}

struct Bad {
  std::string text;
  std::string field;  // expected after "origin: "
};
class ManifestInvalid : public testing::TestWithParam<Bad> {};

TEST_P(ManifestInvalid, NamesTheField) {
  try {
    parse_manifest(GetParam().text, "m.json");
    FAIL() << "accepted " << GetParam().text;
  } catch (const otarig::InputError& e) {
    std::string want = "m.json: " + GetParam().field;
    EXPECT_EQ(std::string(e.what()).substr(0, want.size()), want) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, ManifestInvalid,
    testing::Values(Bad{"", "byte"}, Bad{"{", "byte"}, Bad{"[]", "expected a JSON object"},
                    Bad{doc() + "x", "byte"}, Bad{"{\"name\":\"v2\"}", "version: missing"},
                    Bad{doc().substr(0, doc().size() - 1) + ",\"extra\":1}", "extra: unknown key"},
                    Bad{doc().substr(0, doc().size() - 1) + ",\"name\":\"v3\"}", "name: given twice"},
                    Bad{doc("1"), "name: expected a string"}, Bad{doc("\"\""), "name: must be 1 to 64"},
                    Bad{doc("\"a/b\""), "name: only letters"}, Bad{doc("\"..\""), "name: must not be"},
                    Bad{doc("\"v2\"", "\"1.2\""), "version: expected MAJOR"},
                    Bad{doc("\"v2\"", "\"256.0.0\""), "version: expected MAJOR"},
                    Bad{doc("\"v2\"", "\"1.2.65536\""), "version: expected MAJOR"},
                    Bad{doc("\"v2\"", "\"01.2.3\""), "version: expected MAJOR"},
                    Bad{doc("\"v2\"", "\"1.2.3+\""), "version: expected MAJOR"},
                    Bad{doc("\"v2\"", "\"1.2.3+4294967296\""), "version: expected MAJOR"},
                    Bad{doc("\"v2\"", "1"), "version: expected a string"},
                    Bad{doc("\"v2\"", "\"1.2.0\"", "-1"), "security_counter: expected an unsigned integer"},
                    Bad{doc("\"v2\"", "\"1.2.0\"", "1.5"), "security_counter: expected an unsigned integer"},
                    Bad{doc("\"v2\"", "\"1.2.0\"", "4294967296"), "security_counter: out of range"},
                    Bad{doc("\"v2\"", "\"1.2.0\"", "\"3\""), "security_counter: expected an unsigned integer"},
                    Bad{doc("\"v2\"", "\"1.2.0\"", "3", "1e3"), "size: expected an unsigned integer"},
                    Bad{doc("\"v2\"", "\"1.2.0\"", "3", "99999999999999999999"), "size: expected an unsigned integer"},
                    Bad{doc("\"v2\"", "\"1.2.0\"", "3", "{}"), "a value is an object"},
                    Bad{doc("\"v2\"", "\"1.2.0\"", "3", "1", "\"abc\""), "sha256: expected 64"},
                    Bad{doc("\"v2\"", "\"1.2.0\"", "3", "1", "\"" + std::string(64, 'A') + "\""), "sha256: expected 64"},
                    Bad{doc("\"v2\"", "\"1.2.0\"", "3", "1", "\"" + kDigest + "\"", "\"images/v2.bin\""), "url: expected an absolute path"},
                    Bad{doc("\"v2\"", "\"1.2.0\"", "3", "1", "\"" + kDigest + "\"", "\"/images/../x\""), "url: dot segments"},
                    Bad{doc("\"v2\"", "\"1.2.0\"", "3", "1", "\"" + kDigest + "\"", "\"/a b\""), "url: character outside"},
                    Bad{doc("\"v2\"", "\"1.2.0\"", "3", "1", "\"" + kDigest + "\"", "\"http:///x\""), "url: missing host"},
                    Bad{doc("\"v2\"", "\"1.2.0\"", "3", "1", "\"" + kDigest + "\"", "\"//evil/x\""), "url: expected an absolute path"},
                    Bad{"{\"name\":\"\xff\"}", "byte"}));

TEST(Manifest, RejectsOversizedText) {
  EXPECT_THROW(parse_manifest(std::string(70000, ' ') + doc(), "big"), otarig::InputError);
}
