#pragma once
// Internal to the process family: folder names the rig makes from a board's name.
#include <string>
#include <string_view>

namespace otarig::drivers::process {

/// `name` as part of a temporary folder's name: [A-Za-z0-9._-] kept, any
/// other byte '_', at most 40 characters, "board" when empty.
inline std::string safe_board_name(std::string_view name) {
  std::string out;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '_' || c == '.';
    out += ok ? c : '_';
  }
  if (out.empty()) out = "board";
  return out.substr(0, 40);
}

}  // namespace otarig::drivers::process
