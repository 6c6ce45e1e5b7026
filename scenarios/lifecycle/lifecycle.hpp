#pragma once
// Lifecycle faults: what happens to a device over its support period. The
// device's clock set wrong (device-clock), and its trusted keys rotated,
// revoked, expired or not yet valid (key-lifecycle). What the device must do
// is derived from the policy its profile declares (`device.policy`,
// docs/board-profile.md, "Policy"). On the network side, `outage`: the
// update server unreachable for a seeded while, the device checking by
// itself (outage.cpp).
#include <string_view>
#include <vector>

#include "otarig/harness/fault_kind.hpp"

namespace otarig::scenarios::lifecycle {

/// Clock settings a `device-clock` fault applies: 1970, future, skew.
const std::vector<std::string_view>& clock_variants();
/// Trust events a `key-lifecycle` fault plays: key-rotation, revoked-key,
/// untrusted-rotation, signer-expired, signer-not-yet-valid.
const std::vector<std::string_view>& key_variants();

/// Adds the `outage` kind (outage.cpp).
void register_outage_fault(harness::FaultRegistry& registry);

void register_lifecycle_faults(harness::FaultRegistry& registry);

}  // namespace otarig::scenarios::lifecycle
