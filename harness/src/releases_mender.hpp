#pragma once
// Mender artifacts for the campaign (docs/ota-clients.md, "Mender"): the
// releases as signed rootfs-image artifacts and their hostile variants.
#include <span>
#include <string>

#include "otarig/core/image.hpp"
#include "otarig/harness/releases.hpp"

namespace otarig::drivers::clients {
struct PemPair;
}

namespace otarig::harness::mender_packages {

/// A rootfs-image artifact of `slot_image` with the board's state scripts,
/// signed by `signer` (nullptr: unsigned), for `device_type` (empty: the
/// board's).
image::Bytes artifact(const PackageSettings& settings, std::span<const std::uint8_t> slot_image,
                      const drivers::clients::PemPair* signer, const std::string& device_type = {});

/// The package of a tamper, unsigned or wrong-key variant. `base` is the
/// release; `inner` the slot image with a seeded payload bit flipped, which
/// the variant carries (`inner` becomes what the variant would install when
/// that differs, as for `appended`). `what` receives the damage.
image::Bytes variant(const PackageSettings& settings, const drivers::clients::SigningPki& pki,
                     const image::Bytes& base, image::Bytes& inner, const std::string& kind,
                     const std::string& variant, Rng& rng, std::string& what);

}  // namespace otarig::harness::mender_packages
