// Over the support period on the virtual board: the image's signing time and
// trust blocks (docs/image-format.md), key rotation, revocation and signer
// validity in the firmware, the injected device clock, and the two flaws
// (ignores-revocation, validity-by-raw-clock).
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "otarig/core/errors.hpp"
#include "otarig/core/image.hpp"
#include "otarig/drivers/net/pki.hpp"
#include "otarig/drivers/virtual/board.hpp"

namespace otarig::drivers::vboard {
namespace {

using namespace std::chrono_literals;
using image::Bytes;

const crypto::Ed25519Key& old_key() {
  static const auto k = crypto::Ed25519Key::test_key("otarig-release");
  return k;
}
const crypto::Ed25519Key& new_key() {
  static const auto k = crypto::Ed25519Key::test_key("otarig rotated signer");
  return k;
}

constexpr std::uint64_t k2025 = 1735689600, k2045 = 2366841600, k2026 = 1780272000;

Bytes release(const char* version, std::uint32_t counter, const crypto::Ed25519Key& key,
              std::uint64_t signing_time = k2026, std::vector<image::TrustChange> changes = {}) {
  image::Header h;
  h.version = image::Version::parse(version);
  h.security_counter = counter;
  h.signing_time = signing_time;
  auto payload = image::synthetic_payload(20000, version);
  if (!changes.empty()) {
    h.flags |= image::kFlagTrustUpdate;
    auto block = image::encode_trust_block(changes);
    std::copy(block.begin(), block.end(), payload.begin());
  }
  return image::build(h, payload, key);
}

image::TrustChange add(const crypto::Ed25519Key& k, std::uint64_t nb = 0, std::uint64_t na = 0) {
  return {image::TrustAction::add, {k.public_key(), nb, na, false}, {}};
}
image::TrustChange revoke(const crypto::Ed25519Key& k) {
  return {image::TrustAction::revoke, {k.public_key(), 0, 0, false}, {}};
}

// The rig's test PKI, made once: its rotated CA and a server certificate (no CA).
const net::TestPki& pki() {
  static const auto p = net::TestPki::generate();
  return p;
}
std::span<const std::uint8_t> bytes_of(const std::string& text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}
image::TrustChange add_server_ca() { return image::server_ca_change(bytes_of(pki().rotated_ca.cert_pem), "rotated CA"); }

BoardConfig config(SignerExpiry expiry = SignerExpiry::signing_time, bool floor = true) {
  BoardConfig c;
  c.flash.slot_size = 64 * 1024;
  c.chunk_size = 4096;
  c.signer_expiry = expiry;
  c.clock_floor = floor;
  return c;
}

std::unique_ptr<VirtualBoard> board(BoardConfig c) {
  auto b = std::make_unique<VirtualBoard>(std::move(c), std::vector<crypto::PublicKey>{old_key().public_key()});
  b->set_trust({{old_key().public_key(), k2025, k2045, false}});
  b->provision(release("1.0.0+1", 1, old_key()));
  b->on();
  return b;
}

std::string said(VirtualBoard& b) {
  std::string all;
  for (std::string s; !(s = b.read(0ms)).empty();) all += s;
  return all;
}

// ---------------------------------------------------------------------------- format

TEST(TrustFormat, SigningTimeLivesAtOffset56AndIsSigned) {
  auto img = release("1.0.0", 1, old_key(), 0x0102030405060708ULL);
  EXPECT_EQ(img[56], 0x08);
  EXPECT_EQ(img[63], 0x01);
  EXPECT_EQ(image::parse(img).header.signing_time, 0x0102030405060708ULL);
  EXPECT_TRUE(image::check(img, std::vector<crypto::PublicKey>{old_key().public_key()}).ok());
  img[56] ^= 1;  // signed: an edited signing time breaks the digest
  EXPECT_FALSE(image::check(img, std::vector<crypto::PublicKey>{old_key().public_key()}).hash_ok);
}

TEST(TrustFormat, OtherReservedBytesStayReserved) {
  auto img = release("1.0.0", 1, old_key());
  img[40] = 1;
  EXPECT_THROW((void)image::parse(img), InputError);
}

TEST(TrustFormat, TrustBlockRoundTripsAndRejectsDamage) {
  const std::vector<image::TrustChange> changes{add(new_key(), 5, 6), revoke(old_key())};
  auto block = image::encode_trust_block(changes);
  ASSERT_EQ(block.size(), 8 + 2 * image::kTrustEntrySize);
  auto back = image::decode_trust_block(block);
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[0].action, image::TrustAction::add);
  EXPECT_EQ(back[0].entry.key, new_key().public_key());
  EXPECT_EQ(back[0].entry.not_before, 5u);
  EXPECT_EQ(back[0].entry.not_after, 6u);
  EXPECT_EQ(back[1].action, image::TrustAction::revoke);
  auto bad = block;
  bad[0] ^= 1;
  EXPECT_THROW((void)image::decode_trust_block(bad), InputError);
  bad = block;
  bad[8 + 48] = 7;  // unknown action
  EXPECT_THROW((void)image::decode_trust_block(bad), InputError);
  EXPECT_THROW((void)image::decode_trust_block(std::span(block).first(20)), InputError);
  EXPECT_THROW((void)image::encode_trust_block({}), InputError);
}

TEST(TrustFormat, ServerCaEntryCarriesTheCertificateAfterTheTable) {
  const auto ca = add_server_ca();
  ASSERT_FALSE(ca.certificate.empty());
  EXPECT_EQ(image::certificate_subject(ca.certificate).rfind("CN=otarig test CA 2,", 0), 0u) << image::certificate_subject(ca.certificate);
  const std::vector<image::TrustChange> changes{add(new_key()), ca};
  const auto block = image::encode_trust_block(changes);
  ASSERT_EQ(block.size(), 8 + 2 * image::kTrustEntrySize + ca.certificate.size());
  const auto* entry = block.data() + 8 + image::kTrustEntrySize;
  EXPECT_EQ(entry[48], 3);                                               // action: add server CA
  EXPECT_EQ(entry[52] | entry[53] << 8, int(ca.certificate.size()));     // its size, little-endian
  const auto digest = crypto::sha256(ca.certificate);
  EXPECT_TRUE(std::equal(digest.begin(), digest.end(), entry));          // its SHA-256 in `key`
  const auto back = image::decode_trust_block(block);
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[1].action, image::TrustAction::add_server_ca);
  EXPECT_EQ(back[1].certificate, ca.certificate);
  // The firmware after the block: the decoder reads only what the entries name.
  auto longer = block;
  longer.resize(block.size() + 100, 0xAB);
  EXPECT_EQ(image::decode_trust_block(longer)[1].certificate, ca.certificate);
}

TEST(TrustFormat, ServerCaEntryDamageIsNamed) {
  const std::vector<image::TrustChange> changes{add_server_ca()};
  const auto block = image::encode_trust_block(changes);
  auto expect_error = [](const Bytes& b, const std::string& words) {
    try {
      (void)image::decode_trust_block(b, "msg");
      ADD_FAILURE() << "no error for " << words;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  auto bad = block;
  bad.back() ^= 1;  // a certificate byte: its digest no longer matches
  expect_error(bad, "the certificate's SHA-256 is");
  bad = block;
  bad[8 + 52] += 1;  // one byte more than the payload holds
  expect_error(bad, "runs past");
  bad = block;
  bad[8 + 32] = 1;  // not_before: a CA entry carries none
  expect_error(bad, "not_before and not_after are zero");
  bad = block;
  bad[8 + 50] = 1;  // reserved
  expect_error(bad, "entry[0].reserved: byte 50");
  bad = block;
  bad[8 + 48] = 4;
  expect_error(bad, "expected 1 add, 2 revoke or 3 add server CA");
  bad = block;
  bad[8 + 52] = 0, bad[8 + 53] = 0;
  expect_error(bad, "certificate_size: 0");
  // A server certificate is no CA; a PEM that is no certificate does not parse.
  EXPECT_THROW((void)image::server_ca_change(bytes_of(pki().server.cert_pem), "server"), InputError);
  try {
    (void)image::server_ca_change(bytes_of(pki().server.cert_pem), "server.pem");
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("is not a CA certificate"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)image::server_ca_change(bytes_of("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
                                             "junk"),
               InputError);
}

TEST(TrustFormat, UtcTimes) {
  EXPECT_EQ(image::parse_utc("1970-01-01"), 0u);
  EXPECT_EQ(image::parse_utc("2025-01-01"), k2025);
  EXPECT_EQ(image::parse_utc("2026-06-01T00:00:00Z"), k2026);
  EXPECT_EQ(image::parse_utc("@42"), 42u);
  EXPECT_EQ(image::utc_text(k2045), "2045-01-01T00:00:00Z");
  for (const char* bad : {"2025-13-01", "2025-02-30", "1969-12-31", "yesterday", "2025-01-01T25:00:00Z", "@", "@x"})
    EXPECT_FALSE(image::parse_utc(bad)) << bad;
  EXPECT_EQ(image::validity_failure({{}, k2025, k2045, false}, k2026), "");
  EXPECT_NE(image::validity_failure({{}, k2025, k2045, false}, 0).find("not yet valid"), std::string::npos);
  EXPECT_NE(image::validity_failure({{}, k2025, k2045, false}, k2045 + 1).find("expired"), std::string::npos);
}

// ---------------------------------------------------------------------------- rotation and revocation

TEST(KeyRotation, ARotatedInKeySignsTheNextRelease) {
  auto b = board(config());
  // Before the rotation the new key is unknown.
  EXPECT_EQ(b->deliver(release("1.1.0", 2, new_key())).status, DeliveryStatus::refused);
  ASSERT_EQ(b->deliver(release("1.0.0+2", 1, old_key(), k2026, {add(new_key(), k2025, k2045)})).status,
            DeliveryStatus::accepted);
  EXPECT_NE(said(*b).find("ota: trust: added key"), std::string::npos);
  EXPECT_EQ(b->key_store().size(), 2u);
  EXPECT_EQ(b->deliver(release("1.1.0", 2, new_key())).status, DeliveryStatus::accepted);
  EXPECT_EQ(b->running()->version.str(), "1.1.0");
}

TEST(KeyRotation, ARevokedKeyIsRefusedAndTheKeyStoreSurvivesPowerLoss) {
  auto b = board(config());
  ASSERT_EQ(b->deliver(release("1.0.0+2", 1, old_key(), k2026, {add(new_key())})).status, DeliveryStatus::accepted);
  ASSERT_EQ(b->deliver(release("1.0.0+3", 1, new_key(), k2026, {revoke(old_key())})).status, DeliveryStatus::accepted);
  b->off();
  b->on();
  const auto r = b->deliver(release("1.1.0", 2, old_key()));
  EXPECT_EQ(r.status, DeliveryStatus::refused);
  EXPECT_NE(r.detail.find("revoked key"), std::string::npos) << r.detail;
  EXPECT_EQ(b->deliver(release("1.1.0", 2, new_key())).status, DeliveryStatus::accepted);
}

TEST(KeyRotation, ProvisioningRestoresTheFactoryKeys) {
  auto b = board(config());
  ASSERT_EQ(b->deliver(release("1.0.0+2", 1, old_key(), k2026, {add(new_key())})).status, DeliveryStatus::accepted);
  b->provision(release("1.0.0+1", 1, old_key()));
  b->on();
  EXPECT_EQ(b->key_store().size(), 1u);
  EXPECT_EQ(b->deliver(release("1.1.0", 2, new_key())).status, DeliveryStatus::refused);
}

TEST(KeyRotation, ARotationSignedByAnUntrustedKeyIsRefusedAndChangesNothing) {
  auto b = board(config());
  const auto r = b->deliver(release("1.1.0", 2, new_key(), k2026, {add(new_key())}));
  EXPECT_EQ(r.status, DeliveryStatus::refused);
  EXPECT_NE(r.detail.find("untrusted key"), std::string::npos) << r.detail;
  EXPECT_EQ(b->key_store().size(), 1u);
}

TEST(ServerCa, ASignedUpdateAddsItAndItOutlivesPowerLossUntilProvisioning) {
  auto b = board(config());
  EXPECT_TRUE(b->key_state().server_cas.empty());
  ASSERT_EQ(b->deliver(release("1.0.0+2", 1, old_key(), k2026, {add_server_ca()})).status, DeliveryStatus::accepted);
  const auto out = said(*b);
  EXPECT_NE(out.find("ota: trust: added server CA"), std::string::npos) << out;
  EXPECT_NE(out.find("(CN=otarig test CA 2,"), std::string::npos) << out;
  ASSERT_EQ(b->key_state().server_cas.size(), 1u);
  EXPECT_EQ(b->key_state().server_cas[0], add_server_ca().certificate);
  EXPECT_EQ(b->key_store().size(), 1u);  // no key changed
  b->off();
  b->on();
  EXPECT_EQ(b->key_state().server_cas.size(), 1u);
  // The same CA again is kept once.
  ASSERT_EQ(b->deliver(release("1.0.0+3", 1, old_key(), k2026, {add_server_ca()})).status, DeliveryStatus::accepted);
  EXPECT_EQ(b->key_state().server_cas.size(), 1u);
  b->provision(release("1.0.0+1", 1, old_key()));
  b->on();
  EXPECT_TRUE(b->key_state().server_cas.empty());
}

TEST(ServerCa, AMessageNotSignedByATrustedKeyAddsNothing) {
  auto b = board(config());
  auto r = b->deliver(release("1.0.0+2", 1, new_key(), k2026, {add_server_ca()}));
  EXPECT_EQ(r.status, DeliveryStatus::refused);
  EXPECT_NE(r.detail.find("untrusted key"), std::string::npos) << r.detail;
  r = b->deliver(image::tamper::strip_signature(release("1.0.0+2", 1, old_key(), k2026, {add_server_ca()})));
  EXPECT_EQ(r.status, DeliveryStatus::refused);
  EXPECT_TRUE(b->key_state().server_cas.empty());
  EXPECT_EQ(said(*b).find("added server CA"), std::string::npos);
}

TEST(KeyRotation, IgnoresRevocationDefectTrustsTheRevokedKey) {
  auto c = config();
  c.with(Defect::ignores_revocation);
  auto b = board(c);
  ASSERT_EQ(b->deliver(release("1.0.0+2", 1, old_key(), k2026, {add(new_key())})).status, DeliveryStatus::accepted);
  ASSERT_EQ(b->deliver(release("1.0.0+3", 1, new_key(), k2026, {revoke(old_key())})).status, DeliveryStatus::accepted);
  EXPECT_EQ(b->deliver(release("1.1.0", 2, old_key())).status, DeliveryStatus::accepted);
}

// ---------------------------------------------------------------------------- signer validity and the clock

TEST(SignerValidity, ExpiredAndNotYetValidSignersAreRefusedUnlessIgnored) {
  const auto expired = crypto::Ed25519Key::test_key("otarig expired signer");
  for (auto expiry : {SignerExpiry::enforced, SignerExpiry::signing_time, SignerExpiry::ignored}) {
    auto b = board(config(expiry));
    ASSERT_EQ(b->deliver(release("1.0.0+2", 1, old_key(), k2026, {add(expired, 978307200, 1009843200)})).status,
              DeliveryStatus::accepted);
    const auto r = b->deliver(release("1.1.0", 2, expired));
    if (expiry == SignerExpiry::ignored) {
      EXPECT_EQ(r.status, DeliveryStatus::accepted) << r.detail;
    } else {
      EXPECT_EQ(r.status, DeliveryStatus::refused);
      EXPECT_NE(r.detail.find("expired"), std::string::npos) << r.detail;
    }
  }
}

TEST(DeviceClock, TheInjectedClockIsTheDevicesTime) {
  auto b = board(config());
  b->set_device_time({DeviceTime::Kind::at, 0});
  b->off();
  b->on();
  EXPECT_LT(b->device_now(), 3600u);  // 1970, plus the boot time
  b->set_device_time({DeviceTime::Kind::offset, -86400});
  const auto host = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  EXPECT_NEAR(static_cast<double>(b->device_now()), static_cast<double>(host - 86400), 5.0);
}

TEST(DeviceClock, At1970EnforcedRefusesUnlessItKeepsAClockFloor) {
  // enforced, no floor: the key is not yet valid by the device clock.
  auto strict = board(config(SignerExpiry::enforced, false));
  strict->set_device_time({DeviceTime::Kind::at, 0});
  auto r = strict->deliver(release("1.1.0", 2, old_key()));
  EXPECT_EQ(r.status, DeliveryStatus::refused);
  EXPECT_NE(r.detail.find("not yet valid"), std::string::npos) << r.detail;
  // enforced with the floor (clock_1970: recovers): the last confirmed signing time counts.
  auto floored = board(config(SignerExpiry::enforced, true));
  floored->set_device_time({DeviceTime::Kind::at, 0});
  EXPECT_EQ(floored->deliver(release("1.1.0", 2, old_key())).status, DeliveryStatus::accepted);
  // signing-time: the image's own signing time counts.
  auto signing = board(config(SignerExpiry::signing_time, false));
  signing->set_device_time({DeviceTime::Kind::at, 0});
  EXPECT_EQ(signing->deliver(release("1.1.0", 2, old_key())).status, DeliveryStatus::accepted);
}

TEST(DeviceClock, ValidityByRawClockDefectRefusesAt1970WhateverThePolicy) {
  auto c = config(SignerExpiry::signing_time, true);
  c.with(Defect::validity_by_raw_clock);
  auto b = board(c);
  EXPECT_EQ(b->deliver(release("1.0.1", 2, old_key())).status, DeliveryStatus::accepted);  // right clock
  b->set_device_time({DeviceTime::Kind::at, 0});
  EXPECT_EQ(b->deliver(release("1.1.0", 3, old_key())).status, DeliveryStatus::refused);
}

}  // namespace
}  // namespace otarig::drivers::vboard
