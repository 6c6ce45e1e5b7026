// Image parser and checker: any bytes parse or raise an InputError; check never throws.
#include <cstdint>
#include <span>
#include <vector>

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
  return 0;
}
