// libFuzzer target: parse_manifest never crashes, throws only otarig::InputError,
// and whatever it accepts prints back to text it parses to the same manifest.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "otarig/core/errors.hpp"
#include "otarig/drivers/net/manifest.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  using otarig::drivers::net::Manifest;
  Manifest m;
  try {
    m = otarig::drivers::net::parse_manifest(text, "fuzz");
  } catch (const otarig::InputError&) {
    return 0;
  }
  std::string again = otarig::drivers::net::to_json_text(m);
  if (!(otarig::drivers::net::parse_manifest(again, "round trip") == m)) __builtin_trap();
  return 0;
}
