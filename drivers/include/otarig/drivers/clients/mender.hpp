#pragma once
// Mender artifacts (docs/ota-clients.md, "Mender"): the rig builds them with
// Debian's `mender-artifact write rootfs-image`, signs them with the board's
// package signer (EC P-256, as Mender verifies with ArtifactVerifyKey), and
// adds the state scripts of the rig's Mender board.
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "otarig/drivers/clients/package.hpp"

namespace otarig::drivers::clients::mender {

/// The device type the rig's Mender board has (its `device_type` file).
inline constexpr const char* kDeviceType = "otarig-board";
/// The slots as Mender's rootfs-image installer sees them inside the
/// device's mount namespace (RootfsPartA/B); the trailing digits are
/// Mender's partition numbers (mender_boot_part).
inline constexpr const char* kRootfsPart[2] = {"/dev/otarig/mmcblk0p2", "/dev/otarig/mmcblk0p3"};
/// The file in the device's /etc (its running root file system) that names
/// the running release: `VERSION=MAJOR.MINOR.PATCH.BUILD`.
inline constexpr const char* kReleaseFile = "/etc/otarig-release";

/// The Mender states a standalone install passes through whose state
/// scripts come with the artifact.
inline constexpr const char* kArtifactStates[] = {"ArtifactInstall",  "ArtifactReboot",         "ArtifactCommit",
                                                  "ArtifactRollback", "ArtifactRollbackReboot", "ArtifactFailure"};

/// One state script: its file name (STATE_ACTION_NN_NAME) and its text.
struct Script {
  std::string name;
  std::string text;
};

/// The board's artifact state scripts: for every state of kArtifactStates
/// and every action (Enter, Leave, Error) a script that prints
/// `mender-state: STATE_ACTION` on the device's console (/dev/console) and
/// succeeds. With `downgrade_check`, also ArtifactInstall_Enter_10: it
/// refuses (exit 1) when `version` is older than the running release
/// (kReleaseFile), compared number by number; the same version passes (a
/// retry). Mender itself does not compare versions.
std::vector<Script> state_scripts(const std::string& version, bool downgrade_check);

/// What an artifact is made of.
struct ArtifactSpec {
  std::string name;                 ///< artifact_name, e.g. "otarig-1.1.0.2"
  std::string device_type = kDeviceType;
  std::string version;              ///< rootfs-image.version (MAJOR.MINOR.PATCH.BUILD)
  Bytes image;                      ///< the rootfs-image payload (the slot content)
  std::vector<Script> scripts;
};

/// The artifact's name for a release version: "otarig-" + version.
std::string artifact_name(const std::string& version);

/// `mender-artifact write rootfs-image --compression none` in a temporary
/// folder; signed with `signer_key_pem` (PEM, any encoding OpenSSL reads;
/// handed to mender-artifact as a traditional EC key) unless it is empty.
/// BenchError when mender-artifact fails or is missing.
Bytes write_artifact(const ArtifactSpec& spec, const std::string& signer_key_pem);

/// The public key (SubjectPublicKeyInfo PEM) of a private key or of a
/// certificate: what mender.conf's ArtifactVerifyKey names. BenchError when
/// OpenSSL cannot read it.
std::string public_key_pem(const std::string& key_or_cert_pem);

/// Where `needle` first occurs in `bytes`; npos when it does not.
std::size_t find(const Bytes& bytes, const std::string& needle);
std::size_t find(const Bytes& bytes, std::span<const std::uint8_t> needle);

}  // namespace otarig::drivers::clients::mender
