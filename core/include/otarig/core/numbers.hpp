#pragma once
// Whole numbers typed on a command line, range-checked: never wrapped.
#include <fmt/format.h>

#include <charconv>
#include <cstdint>
#include <string>

#include "otarig/core/errors.hpp"

namespace otarig {

/// `text` as a whole number from `min` to `max`; InputError naming `option`
/// for anything else (a sign, a fraction, trailing text, out of range).
inline std::uint64_t parse_number(const std::string& text, std::uint64_t min, std::uint64_t max,
                                  const std::string& option) {
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || v < min || v > max)
    throw InputError(fmt::format("{} {}: expected a whole number from {} to {}", option, text, min, max));
  return v;
}

}  // namespace otarig
