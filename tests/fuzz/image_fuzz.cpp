// Image parser and checker: any bytes parse or raise an InputError; check never throws. The
// trust block decoder (key-rotation messages) and the time parser take any bytes as well.
// A delta release parses or raises an InputError, and what parses assembles
// within its bounds from a base of exactly base_size bytes.
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "otarig/core/delta.hpp"
#include "otarig/core/errors.hpp"
#include "otarig/core/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const std::uint8_t> bytes(data, size);
  static const std::vector<otarig::crypto::PublicKey> trusted{
      otarig::crypto::Ed25519Key::test_key("fuzz").public_key()};
  try {
    auto p = otarig::image::parse(bytes, "fuzz");
    if (p.total_size > size) __builtin_trap();
  } catch (const otarig::InputError&) {
  }
  (void)otarig::image::check(bytes, trusted);
  try {
    const auto d = otarig::image::delta::parse(bytes, "fuzz", std::size_t{1} << 20);
    const std::vector<std::uint8_t> base(d.patch.base_size, 0x5a);
    const auto out = otarig::image::delta::assemble(d, base, "fuzz");
    if (out.size() != d.patch.target_size + otarig::image::kTrailerSize) __builtin_trap();
  } catch (const otarig::InputError&) {
  }
  try {
    for (const auto& c : otarig::image::decode_trust_block(bytes, "fuzz"))
      if (c.entry.not_before && c.entry.not_after && c.entry.not_after < c.entry.not_before) __builtin_trap();
  } catch (const otarig::InputError&) {
  }
  (void)otarig::image::parse_utc(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
