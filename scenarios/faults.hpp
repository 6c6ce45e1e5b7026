#pragma once
// The fault kinds scenarios name, with what each does (otarig list faults).
#include <string>
#include <string_view>
#include <vector>

namespace otarig::scenarios {

struct FaultKind {
  std::string_view name;
  std::string_view where;  ///< power, image, network, storage
  std::string_view summary;
  std::vector<std::string_view> options;
};

/// Every fault kind the harness can inject on at least one kind of board.
const std::vector<FaultKind>& fault_kinds();
const FaultKind* find_fault_kind(std::string_view name);

/// Damages a `tamper` fault can apply to an image.
const std::vector<std::string_view>& tamper_variants();

}  // namespace otarig::scenarios
