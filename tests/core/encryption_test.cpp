// Encrypted images (docs/image-format.md, "Encrypted payloads"): round trip,
// key wrap for one device, a tampered ciphertext, the outer image's layout.
#include "otarig/core/encryption.hpp"

#include <gtest/gtest.h>

#include "otarig/core/errors.hpp"

namespace otarig::encryption {
namespace {

const crypto::Ed25519Key& release_key() {
  static const auto key = crypto::Ed25519Key::test_key("otarig-release");
  return key;
}

image::Bytes plaintext() {
  image::Header h;
  h.version = image::Version{1, 2, 3, 4};
  h.security_counter = 5;
  h.device_type = image::device_type_id("acme");
  return image::build(h, image::synthetic_payload(5000, "secret"), release_key());
}

const crypto::Digest kSeed = crypto::sha256(std::string_view("seed"));

TEST(Encryption, RoundTripForTheDeviceItWasEncryptedFor) {
  const auto device = DeviceKey::test_key("device-1");
  const auto plain = plaintext();
  const auto outer = encrypt(plain, device.pub, release_key(), kSeed);
  // The outer image is a signed otarig image: its header is the plaintext's with kFlagEncrypted.
  const std::vector<crypto::PublicKey> trusted{release_key().public_key()};
  EXPECT_TRUE(image::check(outer, trusted).ok());
  const auto p = image::parse(outer);
  const auto h = image::parse(plain).header;
  EXPECT_EQ(p.header.flags, h.flags | image::kFlagEncrypted);
  EXPECT_EQ(p.header.version, h.version);
  EXPECT_EQ(p.header.device_type, h.device_type);
  EXPECT_EQ(p.header.payload_size, kBlockHeaderSize + plain.size());
  // No 32-byte window of the plaintext's payload is in the ciphertext.
  EXPECT_FALSE(contains(outer, std::span(plain).subspan(image::kHeaderSize, 32)));
  std::string why;
  const auto back = decrypt(p, device, &why);
  ASSERT_TRUE(back) << why;
  EXPECT_EQ(*back, plain);
  // The same seed gives the same bytes; fresh randomness another ciphertext of the same plaintext.
  EXPECT_EQ(encrypt(plain, device.pub, release_key(), kSeed), outer);
  const auto fresh = encrypt(plain, device.pub, release_key());
  EXPECT_NE(fresh, outer);
  EXPECT_EQ(*decrypt(image::parse(fresh), device, &why), plain);
}

TEST(Encryption, AnotherDevicesKeyDoesNotUnwrapTheContentKey) {
  const auto device = DeviceKey::test_key("device-1"), other = DeviceKey::test_key("device-2");
  const auto outer = encrypt(plaintext(), device.pub, release_key(), kSeed);
  std::string why;
  EXPECT_FALSE(decrypt(image::parse(outer), other, &why));
  EXPECT_NE(why.find("encrypted for another device"), std::string::npos) << why;
}

TEST(Encryption, ATamperedCiphertextFailsTheOuterSignatureAndDecryptsWrong) {
  const auto device = DeviceKey::test_key("device-1");
  const auto plain = plaintext();
  const auto outer = encrypt(plain, device.pub, release_key(), kSeed);
  const std::size_t at = image::kHeaderSize + kBlockHeaderSize + 100;
  const auto bad = image::tamper::flip_bit(outer, at, 3);
  const std::vector<crypto::PublicKey> trusted{release_key().public_key()};
  const auto c = image::check(bad, trusted);
  EXPECT_TRUE(c.structure_ok && !c.hash_ok) << c.reason;
  // AES-CTR: the same bit of the plaintext flips, so the plaintext image's own check fails too.
  std::string why;
  const auto back = decrypt(image::parse(bad), device, &why);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, image::tamper::flip_bit(plain, 100, 3));
  EXPECT_FALSE(image::check(*back, trusted).ok());
}

TEST(Encryption, AWrappedKeyThatWasTamperedDoesNotUnwrap) {
  const auto device = DeviceKey::test_key("device-1");
  const auto outer = encrypt(plaintext(), device.pub, release_key(), kSeed);
  const auto bad = image::tamper::flip_bit(outer, image::kHeaderSize + 32 + 5, 0);
  std::string why;
  EXPECT_FALSE(decrypt(image::parse(bad), device, &why));
}

TEST(Encryption, RefusesWhatItCannotEncryptOrDecrypt) {
  const auto device = DeviceKey::test_key("device-1");
  const auto outer = encrypt(plaintext(), device.pub, release_key(), kSeed);
  EXPECT_THROW(encrypt(outer, device.pub, release_key(), kSeed), InputError);  // encrypted already
  std::string why;
  EXPECT_FALSE(decrypt(image::parse(plaintext()), device, &why));
  EXPECT_EQ(why, "not an encrypted image");
  EXPECT_THROW(load_public("zz", "--encrypt-for"), InputError);
  EXPECT_EQ(load_public(crypto::hex(device.pub), "--encrypt-for"), device.pub);
}

}  // namespace
}  // namespace otarig::encryption
