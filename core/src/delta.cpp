// Delta releases: the patch format, its maker and its applier
// (otarig/core/delta.hpp, docs/image-format.md "Delta releases").
#include "otarig/core/delta.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

namespace otarig::image::delta {
namespace {

void put32(Bytes& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
std::uint32_t get32(const std::uint8_t* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = v << 8 | p[i];
  return v;
}

// A polynomial hash over kMatchBlock bytes that rolls one byte at a time.
constexpr std::uint64_t kRollBase = 0x100000001b3ULL;

std::uint64_t roll_power() {
  std::uint64_t p = 1;
  for (std::size_t i = 1; i < kMatchBlock; ++i) p *= kRollBase;
  return p;
}

std::uint64_t block_hash(const std::uint8_t* p) {
  std::uint64_t h = 0;
  for (std::size_t i = 0; i < kMatchBlock; ++i) h = h * kRollBase + p[i];
  return h;
}

class PatchWriter {
 public:
  void copy(std::size_t offset, std::size_t length) {
    out_.push_back(static_cast<std::uint8_t>(OpKind::copy));
    put32(out_, static_cast<std::uint32_t>(offset));
    put32(out_, static_cast<std::uint32_t>(length));
    ++ops_;
  }
  void insert(std::span<const std::uint8_t> bytes) {
    if (bytes.empty()) return;
    out_.push_back(static_cast<std::uint8_t>(OpKind::insert));
    put32(out_, static_cast<std::uint32_t>(bytes.size()));
    out_.insert(out_.end(), bytes.begin(), bytes.end());
    ++ops_;
  }
  Bytes finish(const crypto::Digest& base_digest, std::size_t base_size, std::size_t target_size) {
    Bytes head;
    put32(head, kPatchMagic);
    put32(head, ops_);
    put32(head, static_cast<std::uint32_t>(base_size));
    put32(head, static_cast<std::uint32_t>(target_size));
    head.insert(head.end(), base_digest.begin(), base_digest.end());
    head.insert(head.end(), out_.begin(), out_.end());
    return head;
  }

 private:
  Bytes out_;
  std::uint32_t ops_ = 0;
};

}  // namespace

std::array<std::uint8_t, 8> base_id(const crypto::Digest& base_digest) {
  std::array<std::uint8_t, 8> id{};
  std::copy_n(base_digest.begin(), id.size(), id.begin());
  return id;
}

Patch parse_patch(std::span<const std::uint8_t> payload, std::string_view name, std::size_t max_target) {
  if (payload.size() < kPatchHeaderSize)
    throw InputError(fmt::format("{}: patch: {} bytes is shorter than the {}-byte patch header", name,
                                 payload.size(), kPatchHeaderSize));
  const auto* p = payload.data();
  if (const auto magic = get32(p); magic != kPatchMagic)
    throw InputError(fmt::format("{}: patch.magic: expected {:#010x}, found {:#010x}", name, kPatchMagic, magic));
  Patch patch;
  const std::uint32_t count = get32(p + 4);
  patch.base_size = get32(p + 8);
  patch.target_size = get32(p + 12);
  std::copy_n(p + 16, patch.base_sha256.size(), patch.base_sha256.begin());
  if (patch.target_size < kHeaderSize)
    throw InputError(fmt::format("{}: patch.target_size: {} bytes is shorter than an image header", name,
                                 patch.target_size));
  if (patch.target_size > max_target)
    throw InputError(fmt::format("{}: patch.target_size: {} bytes is more than the {} the image may take", name,
                                 patch.target_size, max_target));
  if (patch.base_size > max_target)
    throw InputError(fmt::format("{}: patch.base_size: {} bytes is more than the {} an image may take", name,
                                 patch.base_size, max_target));
  // Every op takes at least 5 bytes of the patch: a count the patch cannot hold is refused before anything is kept.
  if (count > (payload.size() - kPatchHeaderSize) / kInsertOpSize)
    throw InputError(fmt::format("{}: patch.op_count: {} ops cannot fit in {} bytes", name, count,
                                 payload.size() - kPatchHeaderSize));
  patch.ops.reserve(count);
  std::size_t at = kPatchHeaderSize;
  std::uint64_t produced = 0;
  for (std::uint32_t i = 0; i < count; ++i) {
    auto fail = [&](const std::string& what) {
      throw InputError(fmt::format("{}: patch op {} (byte {}): {}", name, i, at, what));
    };
    Op op;
    const std::size_t left = payload.size() - at;
    if (left < 1) fail("past the end of the patch");
    op.kind = static_cast<OpKind>(p[at]);
    if (op.kind == OpKind::copy) {
      if (left < kCopyOpSize) fail(fmt::format("a COPY needs {} bytes, {} are left", kCopyOpSize, left));
      op.offset = get32(p + at + 1);
      op.length = get32(p + at + 5);
      if (op.length == 0) fail("an empty COPY");
      if (std::uint64_t{op.offset} + op.length > patch.base_size)
        fail(fmt::format("COPY of {} bytes at base offset {} reads past the base's {} bytes", op.length, op.offset,
                         patch.base_size));
      at += kCopyOpSize;
    } else if (op.kind == OpKind::insert) {
      if (left < kInsertOpSize) fail(fmt::format("an INSERT needs {} bytes, {} are left", kInsertOpSize, left));
      op.length = get32(p + at + 1);
      if (op.length == 0) fail("an empty INSERT");
      if (op.length > left - kInsertOpSize)
        fail(fmt::format("INSERT of {} bytes, but only {} bytes of the patch follow", op.length, left - kInsertOpSize));
      op.data_at = at + kInsertOpSize;
      at += kInsertOpSize + op.length;
    } else {
      fail(fmt::format("unknown op {:#04x} (1 = COPY, 2 = INSERT)", p[at]));
    }
    produced += op.length;
    if (produced > patch.target_size)
      fail(fmt::format("the ops output more than the target's {} bytes", patch.target_size));
    patch.ops.push_back(op);
  }
  if (produced != patch.target_size)
    throw InputError(fmt::format("{}: patch: the ops output {} bytes, the target has {}", name, produced,
                                 patch.target_size));
  if (at != payload.size())
    throw InputError(fmt::format("{}: patch: {} bytes after the last op", name, payload.size() - at));
  return patch;
}

bool is_delta(std::span<const std::uint8_t> bytes) {
  if (bytes.size() < kHeaderSize) return false;
  const auto h = decode_header(bytes.first<kHeaderSize>());
  return h.magic == kHeaderMagic && (h.flags & kFlagDelta) != 0;
}

Delta parse(std::span<const std::uint8_t> delta_image, std::string_view name, std::size_t max_image) {
  Delta d;
  d.outer = image::parse(delta_image, name);
  if (!(d.outer.header.flags & kFlagDelta))
    throw InputError(fmt::format("{}: header.flags: the delta flag (bit 2) is clear: not a delta", name));
  if (max_image < kTrailerSize)
    throw InputError(fmt::format("{}: no room for an image of {} bytes", name, max_image));
  d.patch = parse_patch(d.outer.payload, name, max_image - kTrailerSize);
  if (base_id(d.patch.base_sha256) != d.outer.header.delta_base)
    throw InputError(fmt::format("{}: header.delta_base: {} is not the start of the patch's base SHA-256 {}", name,
                                 crypto::hex(d.outer.header.delta_base), crypto::hex(d.patch.base_sha256)));
  return d;
}

void check_base(const Patch& patch, std::span<const std::uint8_t> base, std::string_view name) {
  if (base.size() < patch.base_size)
    throw WrongBase(fmt::format("{}: wrong base: the delta reads {} bytes of its base, the base offered has {}", name,
                                patch.base_size, base.size()));
  const auto digest = crypto::sha256(base.first(patch.base_size));
  if (digest != patch.base_sha256)
    throw WrongBase(fmt::format("{}: wrong base: the delta was made against {}, the base offered is {}", name,
                                crypto::hex(patch.base_sha256), crypto::hex(digest)));
}

Bytes assemble(const Delta& d, std::span<const std::uint8_t> base, std::string_view name) {
  if (base.size() < d.patch.base_size)
    throw InputError(fmt::format("{}: the base holds {} bytes, the patch reads {}", name, base.size(),
                                 d.patch.base_size));
  Bytes out(std::size_t{d.patch.target_size} + kTrailerSize);
  assemble_into(d, base, [&](std::size_t at, std::span<const std::uint8_t> piece) {
    std::memcpy(out.data() + at, piece.data(), piece.size());
  });
  return out;
}

Bytes make(std::span<const std::uint8_t> base_image, std::span<const std::uint8_t> target_image) {
  const auto base = image::parse(base_image, "base image");
  const auto target = image::parse(target_image, "target image");
  if (target.header.flags & kFlagDelta)
    throw InputError("target image: a delta cannot be the target of another delta");
  const auto B = base.signed_part;
  const auto T = target.signed_part;

  // Index the base's aligned blocks by their hash (first occurrence wins).
  std::unordered_map<std::uint64_t, std::size_t> index;
  for (std::size_t o = 0; o + kMatchBlock <= B.size(); o += kMatchBlock) index.emplace(block_hash(B.data() + o), o);
  const std::uint64_t top = roll_power();

  PatchWriter w;
  std::size_t p = 0, literal = 0;
  std::uint64_t h = T.size() >= kMatchBlock ? block_hash(T.data()) : 0;
  while (p + kMatchBlock <= T.size()) {
    std::size_t from = B.size();
    // The same place in the base first (an edit keeps offsets), then the index.
    if (p + kMatchBlock <= B.size() && std::memcmp(B.data() + p, T.data() + p, kMatchBlock) == 0) {
      from = p;
    } else if (auto it = index.find(h);
               it != index.end() && std::memcmp(B.data() + it->second, T.data() + p, kMatchBlock) == 0) {
      from = it->second;
    }
    if (from == B.size()) {
      if (p + kMatchBlock < T.size()) h = (h - top * T[p]) * kRollBase + T[p + kMatchBlock];
      ++p;
      continue;
    }
    std::size_t len = kMatchBlock;
    while (p + len < T.size() && from + len < B.size() && T[p + len] == B[from + len]) ++len;
    w.insert(T.subspan(literal, p - literal));
    w.copy(from, len);
    p += len;
    literal = p;
    if (p + kMatchBlock <= T.size()) h = block_hash(T.data() + p);
  }
  w.insert(T.subspan(literal));

  const auto base_digest = crypto::sha256(B);
  auto patch = w.finish(base_digest, B.size(), T.size());
  if (patch.size() > 0xFFFFFFFFu) throw InputError("delta: the patch does not fit the header's payload_size");
  Header h2 = target.header;
  h2.flags |= kFlagDelta;
  h2.delta_base = base_id(base_digest);
  h2.payload_size = static_cast<std::uint32_t>(patch.size());
  Bytes out(kHeaderSize);
  encode_header(h2, std::span<std::uint8_t, kHeaderSize>(out.data(), kHeaderSize));
  out.insert(out.end(), patch.begin(), patch.end());
  const auto trailer = target_image.subspan(T.size(), kTrailerSize);
  out.insert(out.end(), trailer.begin(), trailer.end());
  return out;
}

Stats stats(const Patch& patch) {
  Stats s;
  for (const auto& op : patch.ops) {
    if (op.kind == OpKind::copy) {
      ++s.copies;
      s.copied += op.length;
    } else {
      ++s.inserts;
      s.inserted += op.length;
    }
  }
  return s;
}

}  // namespace otarig::image::delta
