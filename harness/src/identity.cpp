#include "otarig/harness/identity.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "otarig/core/crypto.hpp"
#include "otarig/core/image.hpp"
#include "otarig/harness/bench.hpp"
#include "otarig/harness/releases.hpp"

namespace otarig::harness {

std::string IdentitySettings::name() const {
  switch (kind) {
    case IdentityKind::digest: return "digest";
    case IdentityKind::payload_digest: return "payload-digest";
    case IdentityKind::slot_digest: return "slot-digest";
    case IdentityKind::version: return "version";
  }
  return "digest";
}

std::string IdentitySettings::how() const {
  switch (kind) {
    case IdentityKind::digest:
      return "the status line's digest: SHA-256 of the running image's header and payload, compared with the "
             "rig's digest of every image it built";
    case IdentityKind::payload_digest:
      return "the status line's digest: SHA-256 of the running image's payload, resolved (with the version it "
             "reports) to the image the rig built with that payload; images that differ only in their header "
             "(version or counter edits, self-test flag) are told apart by the reported version only";
    case IdentityKind::slot_digest:
      return fmt::format("the status line's digest: SHA-256 of the running slot's {} bytes (the image, then "
                         "0x{:02x} to the slot's end), resolved to the image the rig built that fills a slot so",
                         slot_size, slot_fill);
    case IdentityKind::version:
      return "the status line's version alone (no digest): resolved to the image the step expects with that "
             "version; a damaged image that keeps its version is told from the release only by the step that "
             "delivered it";
  }
  return {};
}

nlohmann::json IdentitySettings::json() const {
  nlohmann::json j{{"kind", name()}, {"how", how()}};
  if (kind == IdentityKind::slot_digest) {
    j["slot_size"] = slot_size;
    j["slot_fill"] = slot_fill;
  }
  return j;
}

bool parse_identity_kind(const std::string& text, IdentityKind& out) {
  for (auto k : {IdentityKind::digest, IdentityKind::payload_digest, IdentityKind::slot_digest, IdentityKind::version})
    if (IdentitySettings{k}.name() == text) {
      out = k;
      return true;
    }
  return false;
}

std::string image_identity(std::span<const std::uint8_t> bytes, const std::string& version,
                           const IdentitySettings& settings) {
  switch (settings.kind) {
    case IdentityKind::digest: return device_digest(bytes);
    case IdentityKind::version: return version;
    case IdentityKind::payload_digest: {
      // The payload as far as the header says it goes (and as far as present).
      std::uint64_t size = bytes.size() > image::kHeaderSize ? bytes.size() - image::kHeaderSize : 0;
      if (bytes.size() >= image::kHeaderSize) {
        const auto h = image::decode_header(bytes.first<image::kHeaderSize>());
        size = std::min<std::uint64_t>(size, h.payload_size);
      }
      return crypto::hex(crypto::sha256(bytes.subspan(std::min<std::size_t>(bytes.size(), image::kHeaderSize),
                                                      static_cast<std::size_t>(size))));
    }
    case IdentityKind::slot_digest: {
      std::vector<std::uint8_t> slot(bytes.begin(),
                                     bytes.begin() + static_cast<std::ptrdiff_t>(
                                                         std::min<std::uint64_t>(bytes.size(), settings.slot_size)));
      slot.resize(static_cast<std::size_t>(settings.slot_size), settings.slot_fill);
      return crypto::hex(crypto::sha256(slot));
    }
  }
  return {};
}

std::string image_identity(const BuiltImage& built, const IdentitySettings& settings) {
  return image_identity(built.bytes, built.version, settings);
}

nlohmann::json resolve_identity(Observation& o, const std::vector<const BuiltImage*>& candidates,
                                const IdentitySettings& settings) {
  if (settings.kind == IdentityKind::digest || !o.booted) return nullptr;
  const std::string reported = settings.kind == IdentityKind::version ? o.version : o.digest;
  o.identity = reported;
  const BuiltImage* chosen = nullptr;
  bool chosen_version_matches = false;
  std::vector<std::string> also;
  for (const auto* img : candidates) {
    if (!img || image_identity(*img, settings) != reported) continue;
    const bool version_matches = img->version == o.version;
    if (chosen && (chosen->digest == img->digest)) continue;
    if (!chosen || (version_matches && !chosen_version_matches)) {
      if (chosen) also.push_back(chosen->name);
      chosen = img;
      chosen_version_matches = version_matches;
    } else {
      also.push_back(img->name);
    }
  }
  nlohmann::json j{{"identity", settings.name()}, {"reported", reported}};
  if (chosen) {
    o.digest = chosen->digest;
    j["image"] = chosen->name;
    if (!also.empty()) j["also_matches"] = also;
  } else {
    o.digest = settings.name() + ":" + reported;
    j["image"] = nullptr;
  }
  return j;
}

}  // namespace otarig::harness
