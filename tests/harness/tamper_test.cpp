// The tamper variants of the release set keep an image well-formed (all but
// `truncated`) and damage exactly the field their name says, so a device
// refuses each only by the check it is aimed at; the detail names the field.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "otarig/core/image.hpp"
#include "otarig/harness/profile.hpp"
#include "otarig/harness/releases.hpp"
#include "otarig/harness/rng.hpp"

namespace otarig::harness {
namespace {

const ReleaseSet& releases() {
  static const auto profile = load_profile(std::filesystem::path(OTARIG_SOURCE_DIR) / "boards" / "virtual-ab.yaml");
  static const ReleaseSet set(profile);
  return set;
}

std::vector<crypto::PublicKey> trusted() {
  return {load_key_ref("test:otarig-release", {}).public_key()};
}

struct Made {
  image::Check check;
  std::string detail;
};

Made make(const std::string& variant, std::uint64_t seed) {
  Rng rng(seed);
  std::string detail;
  const auto v = releases().make_variant(releases().get("update"), "tamper", variant, rng, &detail);
  EXPECT_FALSE(v.authentic);
  return {image::check(v.bytes, trusted()), detail};
}

TEST(Tamper, HeaderBitFlipLandsOnAFieldThatKeepsTheImageParseable) {
  std::set<std::string> fields;
  for (std::uint64_t seed = 1; seed <= 300; ++seed) {
    const auto m = make("header-bit-flip", seed);
    ASSERT_TRUE(m.check.structure_ok) << "seed " << seed << ": " << m.detail << ": " << m.check.reason;
    EXPECT_FALSE(m.check.hash_ok) << m.detail;
    EXPECT_TRUE(m.check.key_known && m.check.signature_ok) << m.detail;
    ASSERT_EQ(m.detail.rfind("header.", 0), 0u) << m.detail;
    fields.insert(m.detail.substr(0, m.detail.find(':')));
  }
  EXPECT_EQ(fields, (std::set<std::string>{"header.version.major", "header.version.minor", "header.version.patch",
                                           "header.version.build", "header.security_counter", "header.flags"}));
}

TEST(Tamper, PayloadBitFlipFailsOnlyTheRecomputedDigest) {
  for (std::uint64_t seed = 1; seed <= 50; ++seed) {
    const auto m = make("payload-bit-flip", seed);
    EXPECT_TRUE(m.check.structure_ok && m.check.key_known && m.check.signature_ok) << m.detail;
    EXPECT_FALSE(m.check.hash_ok) << m.detail;
    EXPECT_EQ(m.detail.rfind("payload: flipped bit", 0), 0u) << m.detail;
  }
}

TEST(Tamper, DigestResignedCarriesAValidSignatureOverAWrongDigest) {
  for (std::uint64_t seed = 1; seed <= 50; ++seed) {
    const auto m = make("digest-resigned", seed);
    EXPECT_TRUE(m.check.structure_ok && m.check.key_known && m.check.signature_ok) << m.detail;
    EXPECT_FALSE(m.check.hash_ok) << m.detail;
    EXPECT_EQ(m.detail.rfind("trailer.sha256: flipped bit", 0), 0u) << m.detail;
  }
  const auto plain = make("digest-bit-flip", 7);
  EXPECT_TRUE(plain.check.structure_ok && plain.check.key_known) << plain.detail;
  EXPECT_FALSE(plain.check.hash_ok || plain.check.signature_ok) << plain.detail;
}

TEST(Tamper, TheSameSeedMakesTheSameDamage) {
  for (const char* v : {"header-bit-flip", "payload-bit-flip", "digest-resigned"})
    EXPECT_EQ(make(v, 42).detail, make(v, 42).detail) << v;
  EXPECT_NE(make("header-bit-flip", 1).detail, make("header-bit-flip", 2).detail);
}

}  // namespace
}  // namespace otarig::harness
