#pragma once
// Image faults: the delivered image is the fault (tamper, unsigned,
// wrong-key, self-test-fail, replay, major-downgrade, version-edge) and the baseline `none`.
#include <string_view>
#include <vector>

#include "otarig/harness/fault_kind.hpp"

namespace otarig::scenarios::image_faults {

/// Damages a `tamper` fault can apply to an image.
const std::vector<std::string_view>& tamper_variants();
/// Edges a `version-edge` fault delivers (docs/scenarios.md, "Version edges").
const std::vector<std::string_view>& version_edges();

void register_image_faults(harness::FaultRegistry& registry);

}  // namespace otarig::scenarios::image_faults
