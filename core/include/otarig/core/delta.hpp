#pragma once
// Delta releases (docs/image-format.md, "Delta releases"): an otarig image
// whose header has kFlagDelta and names its base, whose payload is a patch
// from the base image to the new image, and whose trailer is the new
// image's own trailer, so its signature covers the digest of the image the
// patch assembles. A device applies the patch to the image it runs and
// verifies the assembled image as a whole, as it verifies a full image.
//
// Patch (the delta's payload), little-endian:
//   header (48): magic "OTDP", op_count u32, base_size u32, target_size u32,
//                base_sha256 [32] (SHA-256 over the base's header+payload)
//   ops:  0x01 COPY   offset u32, length u32   (base bytes [offset, offset+length))
//         0x02 INSERT length u32, then length literal bytes
// The ops' outputs, in order, are the new image's header+payload
// (target_size bytes); the delta's trailer follows them.
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "otarig/core/errors.hpp"
#include "otarig/core/image.hpp"

namespace otarig::image::delta {

inline constexpr std::uint32_t kPatchMagic = 0x5044544f;  // "OTDP"
inline constexpr std::size_t kPatchHeaderSize = 48;
/// Bytes of an op's fixed part (kind and two u32, or kind and one u32).
inline constexpr std::size_t kCopyOpSize = 9;
inline constexpr std::size_t kInsertOpSize = 5;
/// The shortest run of equal bytes the maker turns into a COPY.
inline constexpr std::size_t kMatchBlock = 64;

enum class OpKind : std::uint8_t { copy = 1, insert = 2 };

struct Op {
  OpKind kind = OpKind::insert;
  std::uint32_t offset = 0;  ///< COPY: where in the base
  std::uint32_t length = 0;  ///< bytes the op outputs
  std::size_t data_at = 0;   ///< INSERT: offset of its literal bytes in the patch
};

struct Patch {
  crypto::Digest base_sha256{};
  std::uint32_t base_size = 0;    ///< bytes of the base (its header+payload) the copies may read
  std::uint32_t target_size = 0;  ///< bytes the ops output: the new image's header+payload
  std::vector<Op> ops;
};

/// A delta release, parsed and checked (nothing verified: the signature is
/// over the assembled image).
struct Delta {
  Parsed outer;  ///< the delta's own header, payload (the patch) and trailer
  Patch patch;
};

/// The base id the delta's header carries: the first 8 bytes of `base_digest`.
std::array<std::uint8_t, 8> base_id(const crypto::Digest& base_digest);

/// Parses a patch. Every op must lie within the patch, every COPY within
/// `base_size`, no op may be empty, and the outputs must add up to
/// `target_size` exactly; `max_target` bounds `target_size` and `base_size`. InputError
/// naming `name`, the field or the op (its index and byte offset).
Patch parse_patch(std::span<const std::uint8_t> payload, std::string_view name, std::size_t max_target);

/// Parses a delta release: image::parse, kFlagDelta, the patch, and the
/// header's base id against the patch's base SHA-256. `max_image`: the most
/// bytes the assembled image (with its trailer) may take.
Delta parse(std::span<const std::uint8_t> delta_image, std::string_view name, std::size_t max_image);

/// Whether `bytes` is a delta release (a header with kFlagDelta); false when
/// it is too short or not an otarig image.
bool is_delta(std::span<const std::uint8_t> bytes);

/// The delta was made against another base than the one offered.
class WrongBase : public InputError {
 public:
  using InputError::InputError;
};

/// Why `base` (at least `patch.base_size` bytes: the base image) is not the
/// patch's base: WrongBase naming both digests. Hashes base_size bytes.
void check_base(const Patch& patch, std::span<const std::uint8_t> base, std::string_view name);

/// The assembled image: the ops' outputs over `base` (the base's bytes, at
/// least base_size of them) followed by the delta's trailer. The base is not
/// checked here (check_base); InputError when `base` is shorter than base_size.
Bytes assemble(const Delta& d, std::span<const std::uint8_t> base, std::string_view name);

/// Assembles into `out` by pieces of at most `piece` bytes, in order, so a
/// device can write as it patches: `out(offset, bytes)`.
template <class Out>
void assemble_into(const Delta& d, std::span<const std::uint8_t> base, Out&& out);

/// Makes the delta release that turns `base_image` into `target_image` (both
/// otarig images; the target is kept byte for byte, its trailer included).
/// InputError when either does not parse or the target is itself a delta.
Bytes make(std::span<const std::uint8_t> base_image, std::span<const std::uint8_t> target_image);

/// Counts of a patch's ops and bytes (otarig image inspect, the benchmark).
struct Stats {
  std::size_t copies = 0, inserts = 0;
  std::uint64_t copied = 0, inserted = 0;
};
Stats stats(const Patch& patch);

// ---------------------------------------------------------------------------- template

template <class Out>
void assemble_into(const Delta& d, std::span<const std::uint8_t> base, Out&& out) {
  if (base.size() < d.patch.base_size)
    throw InputError("delta: the base holds " + std::to_string(base.size()) + " bytes, the patch reads " +
                     std::to_string(d.patch.base_size));
  std::size_t at = 0;
  for (const auto& op : d.patch.ops) {
    if (op.kind == OpKind::copy)
      out(at, base.subspan(op.offset, op.length));
    else
      out(at, d.outer.payload.subspan(op.data_at, op.length));
    at += op.length;
  }
  const auto full = d.outer.signed_part.data() + d.outer.signed_part.size();
  out(at, std::span<const std::uint8_t>(full, kTrailerSize));
}

}  // namespace otarig::image::delta
