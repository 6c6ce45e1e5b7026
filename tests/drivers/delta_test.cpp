// Delta releases: the patch format (make, parse, apply), its bounds, bad ops
// and a wrong base.
#include "otarig/core/delta.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "otarig/core/errors.hpp"

namespace otarig::image::delta {
namespace {

const crypto::Ed25519Key& release_key() {
  static const crypto::Ed25519Key key = crypto::Ed25519Key::test_key("otarig-release");
  return key;
}
std::vector<crypto::PublicKey> trusted() { return {release_key().public_key()}; }

Bytes release(const Version& v, const Bytes& payload) {
  Header h;
  h.version = v;
  h.security_counter = 2;
  h.payload_size = static_cast<std::uint32_t>(payload.size());
  return build(h, payload, release_key());
}

// The base payload with every 8th 1 KiB block rewritten and 3000 bytes more.
Bytes edited(const Bytes& base) {
  Bytes p = base;
  const auto fresh = synthetic_payload(base.size() + 3000, "edited");
  for (std::size_t o = 7 * 1024; o + 1024 <= p.size(); o += 8 * 1024)
    std::copy_n(fresh.begin() + static_cast<std::ptrdiff_t>(o), 1024, p.begin() + static_cast<std::ptrdiff_t>(o));
  p.insert(p.end(), fresh.end() - 3000, fresh.end());
  return p;
}

struct Pair {
  Bytes base, target, delta;
};
const Pair& pair() {
  static const Pair p = [] {
    Pair r;
    const auto payload = synthetic_payload(64 * 1024, "base");
    r.base = release(Version{1, 0, 0, 1}, payload);
    r.target = release(Version{1, 1, 0, 2}, edited(payload));
    r.delta = make(r.base, r.target);
    return r;
  }();
  return p;
}

void put32(Bytes& b, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v >> (8 * i));
}

// A delta whose patch is `patch` (header and trailer as the sample's), re-framed.
Bytes with_patch(const Bytes& patch) {
  const auto& d = pair().delta;
  auto h = decode_header(std::span<const std::uint8_t, kHeaderSize>(d.data(), kHeaderSize));
  h.payload_size = static_cast<std::uint32_t>(patch.size());
  Bytes out(kHeaderSize);
  encode_header(h, std::span<std::uint8_t, kHeaderSize>(out.data(), kHeaderSize));
  out.insert(out.end(), patch.begin(), patch.end());
  out.insert(out.end(), d.end() - static_cast<std::ptrdiff_t>(kTrailerSize), d.end());
  return out;
}

// The sample's patch header (48 bytes) followed by `ops`, with op_count and target_size set.
Bytes patch_of(const Bytes& ops, std::uint32_t count, std::uint32_t target_size) {
  const auto& d = pair().delta;
  Bytes p(d.begin() + kHeaderSize, d.begin() + kHeaderSize + kPatchHeaderSize);
  put32(p, 4, count);
  put32(p, 12, target_size);
  p.insert(p.end(), ops.begin(), ops.end());
  return p;
}

Bytes copy_op(std::uint32_t offset, std::uint32_t length) {
  Bytes b{static_cast<std::uint8_t>(OpKind::copy), 0, 0, 0, 0, 0, 0, 0, 0};
  put32(b, 1, offset);
  put32(b, 5, length);
  return b;
}
Bytes insert_op(const Bytes& data) {
  Bytes b{static_cast<std::uint8_t>(OpKind::insert), 0, 0, 0, 0};
  put32(b, 1, static_cast<std::uint32_t>(data.size()));
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

std::string parse_error(const Bytes& delta) {
  try {
    (void)parse(delta, "d.img", 1 << 20);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(Delta, AppliedToItsBaseGivesTheTargetByteForByte) {
  const auto& p = pair();
  const auto d = parse(p.delta, "d.img", 1 << 20);
  EXPECT_NO_THROW(check_base(d.patch, p.base, "d.img"));
  const auto out = assemble(d, p.base, "d.img");
  EXPECT_EQ(out, p.target);
  EXPECT_TRUE(check(out, trusted()).ok());
  // Most of the target is copied; the patch is far smaller than the image.
  const auto s = stats(d.patch);
  EXPECT_GT(s.copied, s.inserted * 4);
  EXPECT_LT(p.delta.size(), p.target.size() / 4);
}

TEST(Delta, HeaderIsTheTargetsWithTheDeltaFlagAndTheBaseId) {
  const auto& p = pair();
  const auto outer = image::parse(p.delta, "d.img");
  const auto target = image::parse(p.target, "t.img");
  EXPECT_EQ(outer.header.flags, kFlagDelta);
  EXPECT_EQ(outer.header.version, target.header.version);
  EXPECT_EQ(outer.header.security_counter, target.header.security_counter);
  EXPECT_EQ(outer.header.delta_base, base_id(crypto::sha256(image::parse(p.base, "b").signed_part)));
  // Offset 48..55 on the wire.
  EXPECT_TRUE(std::equal(outer.header.delta_base.begin(), outer.header.delta_base.end(), p.delta.begin() + 48));
  // The trailer is the target's: it signs the assembled image's digest, not the delta's.
  EXPECT_TRUE(std::equal(p.delta.end() - static_cast<std::ptrdiff_t>(kTrailerSize), p.delta.end(),
                         p.target.end() - static_cast<std::ptrdiff_t>(kTrailerSize)));
  const auto c = check(p.delta, trusted());
  EXPECT_TRUE(c.structure_ok);
  EXPECT_FALSE(c.hash_ok);
  EXPECT_NE(c.reason.find("a delta"), std::string::npos) << c.reason;
}

TEST(Delta, AnotherBaseIsRefusedNamingBothDigests) {
  const auto& p = pair();
  const auto d = parse(p.delta, "d.img", 1 << 20);
  const auto other = release(Version{1, 0, 0, 1}, synthetic_payload(64 * 1024, "other"));
  try {
    check_base(d.patch, other, "d.img");
    FAIL() << "another base was taken";
  } catch (const WrongBase& e) {
    EXPECT_NE(std::string(e.what()).find("wrong base: the delta was made against"), std::string::npos) << e.what();
  }
  EXPECT_THROW(check_base(d.patch, std::span(p.base).first(100), "d.img"), WrongBase);
}

TEST(Delta, ADeltaFlagAndABaseIdGoTogether) {
  Bytes b = pair().target;
  b[48] = 1;  // a base id without the flag
  EXPECT_NE(parse_error(b).find("header.delta_base: nonzero, but the delta flag"), std::string::npos);
  Bytes d = pair().delta;
  std::fill(d.begin() + 48, d.begin() + 56, std::uint8_t{0});
  EXPECT_NE(parse_error(d).find("header.delta_base: zero, but the delta flag"), std::string::npos);
  Bytes f = pair().delta;
  f[48] ^= 1;  // a base id that is not the patch's base
  EXPECT_NE(parse_error(f).find("is not the start of the patch's base SHA-256"), std::string::npos);
  EXPECT_NE(parse_error(pair().target).find("not a delta"), std::string::npos);
  EXPECT_FALSE(is_delta(pair().target));
  EXPECT_TRUE(is_delta(pair().delta));
}

TEST(Delta, BadOpsAreRefusedNamingTheOp) {
  const auto header = Bytes(64, 0x11);
  struct Case {
    const char* name;
    Bytes patch;
    const char* error;
  };
  const Case cases[] = {
      {"unknown op", patch_of(Bytes{7, 0, 0, 0, 0}, 1, 64), "patch op 0 (byte 48): unknown op 0x07"},
      {"empty insert", patch_of(insert_op({}), 1, 64), "an empty INSERT"},
      {"empty copy", patch_of(copy_op(0, 0), 1, 64), "an empty COPY"},
      {"copy past the base", patch_of(copy_op(static_cast<std::uint32_t>(pair().base.size() - kTrailerSize - 10), 64), 1, 64), "reads past the base's"},
      {"copy offset wraps", patch_of(copy_op(0xFFFFFFF0u, 64), 1, 64), "reads past the base's"},
      {"insert past the patch", patch_of(Bytes{2, 0xFF, 0, 0, 0, 1, 2}, 1, 64), "only 2 bytes of the patch follow"},
      {"truncated copy", patch_of(Bytes{1, 0, 0, 0, 0, 0}, 1, 64), "a COPY needs 9 bytes, 6 are left"},
      {"too few bytes", patch_of(insert_op(header), 1, 65), "the ops output 64 bytes, the target has 65"},
      {"too many bytes", patch_of(insert_op(Bytes(70, 1)), 1, 64), "output more than the target's 64 bytes"},
      {"bytes after the ops", patch_of([&] { auto b = insert_op(header); b.push_back(0); return b; }(), 1, 64),
       "1 bytes after the last op"},
      {"huge op count", patch_of(insert_op(header), 0xFFFFFFFFu, 64), "patch.op_count: 4294967295 ops cannot fit"},
      {"target beyond the limit", patch_of(insert_op(header), 1, (1 << 20)), "is more than the"},
      {"target shorter than a header", patch_of(insert_op(Bytes(10, 1)), 1, 10), "shorter than an image header"},
      {"short patch", Bytes(20, 0), "shorter than the 48-byte patch header"},
      {"base beyond the limit", [] { auto p = patch_of(insert_op(Bytes(64, 1)), 1, 64); put32(p, 8, 0xFFFFFFF0u); return p; }(),
       "patch.base_size: 4294967280 bytes is more than the"},
      {"bad magic", [] { auto p = patch_of(insert_op(Bytes(64, 1)), 1, 64); p[0] = 0; return p; }(), "patch.magic"},
  };
  for (const auto& c : cases) {
    const auto error = parse_error(with_patch(c.patch));
    EXPECT_NE(error.find(c.error), std::string::npos) << c.name << ": " << error;
    EXPECT_EQ(error.rfind("d.img: ", 0), 0u) << c.name << ": " << error;
  }
}

TEST(Delta, AHandWrittenPatchAssemblesAsItsOpsSay) {
  // COPY the base's first 64 bytes (its header), then INSERT 10 bytes.
  const Bytes ten{1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  auto ops = copy_op(0, 64);
  const auto ins = insert_op(ten);
  ops.insert(ops.end(), ins.begin(), ins.end());
  const auto bytes = with_patch(patch_of(ops, 2, 74));  // the parsed delta points into it
  const auto d = parse(bytes, "d.img", 1 << 20);
  const auto out = assemble(d, pair().base, "d.img");
  ASSERT_EQ(out.size(), 74 + kTrailerSize);
  EXPECT_TRUE(std::equal(out.begin(), out.begin() + 64, pair().base.begin()));
  EXPECT_TRUE(std::equal(out.begin() + 64, out.begin() + 74, ten.begin()));
  EXPECT_THROW((void)assemble(d, std::span(pair().base).first(10), "d.img"), InputError);
}

TEST(Delta, AFlippedLiteralByteAssemblesAnImageThatFailsItsDigest) {
  const auto& p = pair();
  auto d = parse(p.delta, "d.img", 1 << 20);
  std::size_t at = 0;
  for (const auto& op : d.patch.ops)
    if (op.kind == OpKind::insert) at = kHeaderSize + op.data_at + op.length / 2;
  ASSERT_GT(at, 0u);
  Bytes bad = p.delta;
  bad[at] ^= 0x10;
  const auto out = assemble(parse(bad, "d.img", 1 << 20), p.base, "d.img");
  const auto c = check(out, trusted());
  EXPECT_TRUE(c.structure_ok);
  EXPECT_FALSE(c.hash_ok);
}

TEST(Delta, UnrelatedImagesMakeAnAllLiteralDeltaThatStillApplies) {
  const auto a = release(Version{1, 0, 0, 0}, synthetic_payload(5000, "a"));
  const auto b = release(Version{2, 0, 0, 0}, synthetic_payload(7000, "b"));
  const auto d = make(a, b);
  const auto parsed = parse(d, "d", 1 << 20);
  EXPECT_EQ(assemble(parsed, a, "d"), b);
  EXPECT_THROW((void)make(a, d), InputError);  // a delta is no target
}

TEST(Delta, ATargetLargerThanTheSlotIsRefusedBeforeAnythingIsAssembled) {
  const auto& p = pair();
  EXPECT_NE(std::string([&] {
              try {
                (void)parse(p.delta, "d.img", 4096);
              } catch (const InputError& e) {
                return std::string(e.what());
              }
              return std::string();
            }())
                .find("patch.target_size"),
            std::string::npos);
}

}  // namespace
}  // namespace otarig::image::delta
