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

// The fault proxy's plaintext watch: a needle split across the reads of a
// stream, at every split point and read size, is found at its stream offset.
TEST(StreamSearch, FindsANeedleSplitAcrossReads) {
  const Bytes needle{'M', 'A', 'R', 'K', 'E', 'R', '-', '3', '2'};
  Bytes stream(300, 'x');
  // A near miss first (a prefix that breaks off), then the needle at 137.
  std::copy(needle.begin(), needle.begin() + 5, stream.begin() + 60);
  std::copy(needle.begin(), needle.end(), stream.begin() + 137);
  for (std::size_t read = 1; read <= stream.size(); ++read) {
    StreamSearch search(needle);
    std::optional<std::uint64_t> at;
    for (std::size_t i = 0; i < stream.size(); i += read) {
      const auto piece = std::span<const std::uint8_t>(stream).subspan(i, std::min(read, stream.size() - i));
      const auto got = search.feed(piece);
      if (got && !at) {
        at = got;
        // Reported once the read that completes it arrives, not before.
        EXPECT_LE(137 + needle.size(), i + piece.size()) << "read size " << read;
        EXPECT_GT(137 + needle.size(), i) << "read size " << read;
      }
    }
    ASSERT_TRUE(at) << "read size " << read;
    EXPECT_EQ(*at, 137u) << "read size " << read;
    EXPECT_EQ(search.fed(), stream.size());
  }
}

TEST(StreamSearch, AMatchAcrossThreeReadsAndNoFalseMatch) {
  const Bytes needle{1, 2, 3, 4, 5, 6};
  StreamSearch search(needle);
  EXPECT_FALSE(search.feed(Bytes{9, 1, 2}));
  EXPECT_FALSE(search.feed(Bytes{3}));
  EXPECT_FALSE(search.feed(Bytes{}));
  const auto at = search.feed(Bytes{4, 5, 6, 7});
  ASSERT_TRUE(at);
  EXPECT_EQ(*at, 1u);

  StreamSearch none(needle);
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(none.feed(Bytes{1, 2, 3, 4, 5}));  // 1..5 repeated, never 6
  EXPECT_THROW(StreamSearch(Bytes{}), std::invalid_argument);
}

// SWUpdate's key file and AES-CBC as `openssl enc -aes-256-cbc` writes it.
TEST(AesKey, ParsesSwupdatesKeyFile) {
  const auto k = AesKey::parse(
      "390ad54490a4a5f53722291023c19e08ffb5c4677a59e958c96ffa6e641df040 d5d601bacfe13100b149177318ebc7a4\n", "key");
  EXPECT_EQ(k.key.size(), 32u);
  EXPECT_EQ(crypto::hex(k.iv), "d5d601bacfe13100b149177318ebc7a4");
  EXPECT_EQ(k.file_text(),
            "390ad54490a4a5f53722291023c19e08ffb5c4677a59e958c96ffa6e641df040 d5d601bacfe13100b149177318ebc7a4\n");
  EXPECT_EQ(AesKey::parse("00112233445566778899aabbccddeeff 00000000000000000000000000000000", "k").key.size(), 16u);
  for (const char* bad : {"", "0011", "00112233445566778899aabbccddeeff", "0011 00000000000000000000000000000000",
                          "zz112233445566778899aabbccddeeff 00000000000000000000000000000000",
                          "00112233445566778899aabbccddeeff 0000", "a b c"}) {
    try {
      (void)AesKey::parse(bad, "keys/dev.key");
      ADD_FAILURE() << "accepted: " << bad;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("keys/dev.key"), std::string::npos) << e.what();
    }
  }
}

TEST(AesKey, CbcRoundTripAndPadding) {
  const auto k = AesKey::test_key("device-1");
  Bytes plain(1000);
  for (std::size_t i = 0; i < plain.size(); ++i) plain[i] = static_cast<std::uint8_t>(i * 7);
  const auto c = aes_cbc_encrypt(plain, k, k.iv);
  EXPECT_EQ(c.size(), 1008u);  // PKCS#7: 1000 -> 1008
  auto back = aes_cbc_decrypt_raw(c, k, k.iv);
  ASSERT_EQ(back.size(), 1008u);
  EXPECT_EQ(back[1007], 8);  // the padding is left in place
  back.resize(1000);
  EXPECT_EQ(back, plain);
  // Another device's key decrypts to something else.
  const auto other = AesKey::test_key("device-2");
  auto wrong = aes_cbc_decrypt_raw(c, other, k.iv);
  wrong.resize(1000);
  EXPECT_NE(wrong, plain);
  // The NIST SP 800-38A F.2.5 vector (AES-256-CBC, first block).
  AesKey nist;
  nist.key = crypto::from_hex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4");
  const auto iv = crypto::from_hex("000102030405060708090a0b0c0d0e0f");
  const auto block = crypto::from_hex("6bc1bee22e409f96e93d7e117393172a");
  const auto out = aes_cbc_encrypt(block, nist, std::span<const std::uint8_t, 16>(iv.data(), 16));
  EXPECT_EQ(crypto::hex(std::span<const std::uint8_t>(out).first(16)), "f58c4c04d6e5f1ba779eabfb5f7bfbd6");
}

}  // namespace
}  // namespace otarig::encryption
