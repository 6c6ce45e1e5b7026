#pragma once
// The update mechanism under test, as run.json's `mechanism` describes it
// for the technical file (CRA Annex VII 2(b)): how releases are signed and
// what the device trusts, how they travel, how the device stores and
// switches images, and what the profile declares of its policies. Built
// from the profile and the bench the campaign bound, never from guesses:
// what the profile does not say is absent.
#include <nlohmann/json.hpp>
#include <string>

#include "otarig/drivers/registry.hpp"
#include "otarig/harness/profile.hpp"
#include "otarig/harness/releases.hpp"

namespace otarig::harness {

/// `parts`: the first bench's bound drivers (its power-loss model), or null.
nlohmann::json update_mechanism(const BoardProfile& profile, const ReleaseSet& releases,
                                const drivers::BoardParts* parts);

/// A PEM certificate's subject, issuer, validity and SHA-256 fingerprint
/// ({"error": ...} when it does not parse).
nlohmann::json certificate_summary(const std::string& pem);

}  // namespace otarig::harness
