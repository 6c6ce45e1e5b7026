#pragma once
// The images a campaign delivers: the profile's releases, signed with its key,
// and the damaged or hostile variants a fault asks for.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "otarig/drivers/crypto.hpp"
#include "otarig/drivers/image.hpp"
#include "otarig/harness/profile.hpp"
#include "otarig/harness/rng.hpp"

namespace otarig::harness {

struct BuiltImage {
  std::string name;          ///< release name, or release name + "/" + variant
  image::Bytes bytes;
  std::string digest;        ///< hex SHA-256 of header+payload: what the device reports running it
  std::string version;
  std::uint32_t security_counter = 0;
  bool authentic = true;     ///< validly signed by a trusted key, unmodified
  bool fails_self_test = false;
  std::string variant;       ///< "" for a release as built
};

/// Loads a key reference: "test:LABEL" (deterministic test key) or a PEM path
/// relative to `dir`.
crypto::Ed25519Key load_key_ref(const std::string& ref, const std::filesystem::path& dir);

class ReleaseSet {
 public:
  explicit ReleaseSet(const BoardProfile& profile);
  const BuiltImage& get(const std::string& name) const;
  const std::vector<BuiltImage>& all() const { return releases_; }
  const std::vector<crypto::PublicKey>& trusted() const { return trusted_; }
  /// Digests of every validly signed image the rig can deliver (releases and
  /// their self-test-failing twins).
  const std::vector<std::string>& authentic_digests() const { return authentic_; }

  /// A variant of `base` for fault `kind` ("tamper" with `variant`, "unsigned",
  /// "wrong-key", "self-test-fail"); offsets are drawn from `rng`.
  BuiltImage make_variant(const BuiltImage& base, const std::string& kind, const std::string& variant,
                          Rng& rng, std::string* detail) const;

 private:
  std::vector<BuiltImage> releases_;
  std::vector<crypto::PublicKey> trusted_;
  std::vector<std::string> authentic_;
  std::unique_ptr<crypto::Ed25519Key> key_;
  std::unique_ptr<crypto::Ed25519Key> wrong_key_;
};

/// SHA-256 (hex) of the header+payload part of an image, as far as it is present.
std::string device_digest(std::span<const std::uint8_t> image);

}  // namespace otarig::harness
