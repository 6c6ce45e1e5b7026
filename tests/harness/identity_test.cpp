// What a device reports of its image, resolved to the image the rig built.
#include "otarig/harness/identity.hpp"

#include <gtest/gtest.h>

#include "otarig/core/crypto.hpp"
#include "otarig/core/image.hpp"
#include "otarig/harness/bench.hpp"
#include "otarig/harness/releases.hpp"

using namespace otarig;
using namespace otarig::harness;

namespace {

BuiltImage built(const std::string& name, const std::string& version, std::uint32_t counter, const std::string& label) {
  image::Header h;
  h.version = image::Version::parse(version);
  h.security_counter = counter;
  const auto payload = image::synthetic_payload(4000, label);
  BuiltImage b;
  b.name = name;
  b.version = version;
  b.security_counter = counter;
  b.bytes = image::build(h, payload, crypto::Ed25519Key::test_key("identity"));
  b.digest = device_digest(b.bytes);
  return b;
}

Observation reported(const std::string& version, const std::string& digest) {
  Observation o;
  o.step = "after-fault";
  o.booted = true;
  o.version = version;
  o.digest = digest;
  return o;
}

const IdentitySettings kPayload{IdentityKind::payload_digest};
const IdentitySettings kVersion{IdentityKind::version};

}  // namespace

TEST(Identity, PayloadDigestIsTheHashOfThePayloadAlone) {
  const auto a = built("update", "1.1.0", 2, "update");
  const auto parsed = image::parse(a.bytes);
  EXPECT_EQ(image_identity(a, kPayload), crypto::hex(crypto::sha256(parsed.payload)));
  EXPECT_EQ(image_identity(a, IdentitySettings{}), a.digest);
  EXPECT_EQ(image_identity(a, kVersion), "1.1.0");
}

TEST(Identity, SlotDigestHashesTheImagePaddedToTheSlot) {
  const auto a = built("update", "1.1.0", 2, "update");
  IdentitySettings slot{IdentityKind::slot_digest, 8192, 0xFF};
  auto padded = a.bytes;
  padded.resize(8192, 0xFF);
  EXPECT_EQ(image_identity(a, slot), crypto::hex(crypto::sha256(padded)));
  slot.slot_fill = 0;
  EXPECT_NE(image_identity(a, slot), crypto::hex(crypto::sha256(padded)));
}

TEST(Identity, APayloadDigestResolvesToTheRigDigestOfItsImage) {
  const auto update = built("update", "1.1.0", 2, "update");
  const auto next = built("next", "1.2.0", 3, "next");
  auto o = reported("1.2.0", image_identity(next, kPayload));
  const auto j = resolve_identity(o, {&update, &next}, kPayload);
  EXPECT_EQ(o.digest, next.digest);
  EXPECT_EQ(o.identity, image_identity(next, kPayload));
  EXPECT_EQ(j["image"], "next");
}

TEST(Identity, TheReportedVersionChoosesAmongImagesWithTheSamePayload) {
  // A version edit keeps the payload: the reported version tells which runs.
  const auto next = built("next", "1.2.0", 3, "next");
  auto edited = next;
  auto h = image::parse(next.bytes).header;
  h.version = image::Version::parse("1.3.0");
  edited.bytes = image::build(h, image::parse(next.bytes).payload, crypto::Ed25519Key::test_key("identity"));
  edited.digest = device_digest(edited.bytes);
  edited.version = "1.3.0";
  edited.name = "next/edited";
  auto o = reported("1.2.0", image_identity(next, kPayload));
  const auto j = resolve_identity(o, {&edited, &next}, kPayload);
  EXPECT_EQ(o.digest, next.digest) << j.dump();
  EXPECT_EQ(j["also_matches"], nlohmann::json::array({"next/edited"}));
}

TEST(Identity, AVersionResolvesToTheImageTheStepExpectsFirst) {
  // A payload bit flip keeps the version: the step's own image comes first.
  const auto next = built("next", "1.2.0", 3, "next");
  auto damaged = next;
  damaged.bytes = image::tamper::flip_bit(next.bytes, 100, 1);
  damaged.digest = device_digest(damaged.bytes);
  damaged.name = "next/payload-bit-flip";
  damaged.authentic = false;
  auto o = reported("1.2.0", "");
  resolve_identity(o, {&damaged, &next}, kVersion);
  EXPECT_EQ(o.digest, damaged.digest);
  auto r = reported("1.2.0", "");
  resolve_identity(r, {&next, &damaged}, kVersion);
  EXPECT_EQ(r.digest, next.digest);
}

TEST(Identity, AReportNoImageMatchesStandsAsItIs) {
  const auto update = built("update", "1.1.0", 2, "update");
  auto o = reported("9.9.9", "");
  const auto j = resolve_identity(o, {&update}, kVersion);
  EXPECT_EQ(o.digest, "version:9.9.9");
  EXPECT_TRUE(j["image"].is_null());
}

TEST(Identity, TheRigDigestIsLeftAsReported) {
  const auto update = built("update", "1.1.0", 2, "update");
  auto o = reported("1.1.0", update.digest);
  EXPECT_TRUE(resolve_identity(o, {&update}, IdentitySettings{}).is_null());
  EXPECT_EQ(o.digest, update.digest);
  EXPECT_TRUE(o.identity.empty());
}
