// libFuzzer target: parse_fault_spec never crashes, throws only
// otarig::InputError (whose message carries a column inside the text), and
// whatever it accepts has a canonical text that parses to the same spec.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "otarig/core/errors.hpp"
#include "otarig/drivers/net/fault_spec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  using otarig::drivers::net::FaultSpec;
  FaultSpec spec;
  try {
    spec = otarig::drivers::net::parse_fault_spec(text, "f");
  } catch (const otarig::InputError& e) {
    // "f:COLUMN: ...", 1 <= COLUMN <= size + 1.
    std::string_view what = e.what();
    if (!what.starts_with("f:")) __builtin_trap();
    std::size_t column = 0;
    std::size_t i = 2;
    while (i < what.size() && what[i] >= '0' && what[i] <= '9') column = column * 10 + static_cast<std::size_t>(what[i++] - '0');
    if (i == 2 || i >= what.size() || what[i] != ':' || column < 1 || column > size + 1) __builtin_trap();
    return 0;
  }
  std::string canonical = spec.text();
  if (!(otarig::drivers::net::parse_fault_spec(canonical, "canonical") == spec)) __builtin_trap();
  return 0;
}
