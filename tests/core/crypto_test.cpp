#include "otarig/core/crypto.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

#include "otarig/core/errors.hpp"

using namespace otarig::crypto;

TEST(Crypto, Sha256KnownAnswer) {
  EXPECT_EQ(hex(sha256(std::string_view("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 s;
  s.update(std::string_view("a"));
  s.update(std::string_view("bc"));
  EXPECT_EQ(s.finish(), sha256(std::string_view("abc")));
}

TEST(Crypto, HexRoundTripAndErrors) {
  Bytes b{0x00, 0xab, 0xff};
  EXPECT_EQ(hex(b), "00abff");
  EXPECT_EQ(from_hex("00ABff"), b);
  EXPECT_THROW(from_hex("abc"), std::invalid_argument);
  EXPECT_THROW(from_hex("zz"), std::invalid_argument);
}

TEST(Crypto, Ed25519SignVerify) {
  auto key = Ed25519Key::test_key("unit");
  std::string msg = "update me";
  std::span<const std::uint8_t> m(reinterpret_cast<const std::uint8_t*>(msg.data()), msg.size());
  auto sig = key.sign(m);
  EXPECT_TRUE(ed25519_verify(key.public_key(), m, sig));
  sig[3] ^= 1;
  EXPECT_FALSE(ed25519_verify(key.public_key(), m, sig));
  auto other = Ed25519Key::test_key("other");
  EXPECT_NE(other.public_key(), key.public_key());
  EXPECT_EQ(Ed25519Key::test_key("unit").public_key(), key.public_key()) << "test keys are deterministic";
}

TEST(Crypto, PemRoundTrip) {
  auto dir = std::filesystem::temp_directory_path() / ("otarig-crypto-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto key = Ed25519Key::generate();
  key.save_pem(dir / "k.pem");
  auto loaded = Ed25519Key::load_pem(dir / "k.pem");
  EXPECT_EQ(loaded.public_key(), key.public_key());
  EXPECT_EQ(load_public_pem(dir / "k.pem"), key.public_key());
  EXPECT_THROW(Ed25519Key::load_pem(dir / "missing.pem"), otarig::InputError);
  std::filesystem::remove_all(dir);
}
