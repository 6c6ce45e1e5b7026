#pragma once
// How a device names the image it runs (docs/board-profile.md, "Identity"):
// the status line's `digest` group carries the SHA-256 of header+payload (the
// rig's own digest), of the payload only, or of the whole slot; or the status
// carries no digest and the version names the image. The rig computes the same
// identity for every image it built and resolves what the device reports to
// one of them, so every oracle compares the rig's digests.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace otarig::harness {

struct BuiltImage;
struct Observation;

enum class IdentityKind { digest, payload_digest, slot_digest, version };

struct IdentitySettings {
  IdentityKind kind = IdentityKind::digest;
  std::uint64_t slot_size = 0;  ///< slot-digest: bytes hashed (the image, then `slot_fill` up to this)
  std::uint8_t slot_fill = 0xFF;

  /// "digest", "payload-digest", "slot-digest", "version".
  std::string name() const;
  /// How the evidence says identity was established.
  std::string how() const;
  nlohmann::json json() const;
};

/// "digest" | "payload-digest" | "slot-digest" | "version"; false for another name.
bool parse_identity_kind(const std::string& text, IdentityKind& out);

/// The identity `image` has under `settings` (lowercase hex, or the version text).
std::string image_identity(std::span<const std::uint8_t> bytes, const std::string& version,
                           const IdentitySettings& settings);
std::string image_identity(const BuiltImage& built, const IdentitySettings& settings);

/// Resolves what `o` reports (its `digest` group, or its version) to one of
/// `candidates`, the images in the order the step expects them: the first
/// whose identity matches and, for a digest identity, whose version matches
/// the reported one when any does. Sets o.identity to what the device
/// reported and o.digest to the image's rig digest, or to
/// "NAME:REPORTED" (no image the rig built) when none matches. Returns
/// the evidence: {identity, reported, image, also_matches}. A `digest`
/// identity is left as it is (null).
nlohmann::json resolve_identity(Observation& o, const std::vector<const BuiltImage*>& candidates,
                                const IdentitySettings& settings);

}  // namespace otarig::harness
