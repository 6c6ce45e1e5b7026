#pragma once
// Board profiles (boards/*.yaml): how to power, talk to, update and observe a
// device, and the releases the rig builds for it. Schema: docs/board-profile.md.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "otarig/core/config.hpp"
#include "otarig/core/image.hpp"
#include "otarig/harness/identity.hpp"
#include "otarig/harness/policy.hpp"

namespace otarig::harness {

struct ReleaseSpec {
  std::string name;
  image::Version version;
  std::uint32_t security_counter = 0;
  std::uint64_t payload_size = 0;
  std::optional<std::filesystem::path> file;  ///< a prebuilt image instead of a generated one
  /// A generated release whose payload is this earlier release's payload
  /// with every 16th 4 KiB block rewritten (a release a delta is worth
  /// making for: docs/board-profile.md, "Releases"); empty: its own.
  std::string derived_from;
  std::string where;                          ///< FILE:LINE of its definition
  /// Which of the device's images (header.image_index; `image: 1` the second).
  std::uint8_t image_index = 0;
  /// `needs: "1>=2.0.0"`: header.needs_image (index + 1, 0 none) and needs_version.
  std::uint8_t needs_image = 0;
  image::Version needs_version;
  /// `bundle: [A, B]`: the named releases' images back to back
  /// (docs/image-format.md); no version or image of its own.
  std::vector<std::string> bundle;
};

/// How the rig reads the device's state from its console.
struct ObserveSettings {
  std::string banner;          ///< RE2 pattern of the boot banner
  std::string status_command;  ///< written to the console to ask for a status line
  std::string status;          ///< RE2 pattern with named groups slot, version, digest, counter, state, health
  std::chrono::milliseconds boot_timeout{5000};
  std::chrono::milliseconds status_interval{500};  ///< re-ask this often while waiting
  /// RE2 pattern of the console line at which the bootloader has counted a
  /// boot attempt that the system has not yet marked good (optional). A
  /// brown-out on a board whose flash the rig cannot count cuts its recovery
  /// boots right after this line instead of at a seeded time.
  std::string boot_attempt;
  /// What the status line's identity is (docs/board-profile.md, "Identity").
  IdentitySettings identity;
  /// The device checks for a new release by itself at least this often,
  /// outage or not (observe.update_check_interval); absent: the profile
  /// claims no periodic check, and the outage scenarios are skipped.
  std::optional<std::chrono::milliseconds> update_check_interval;
  /// What the host and the network may add to that interval before the
  /// device is judged late (observe.update_check_margin; default 1 s).
  std::chrono::milliseconds update_check_margin{1000};
};

/// A known defect the profile accepts until a date (docs/board-profile.md,
/// "Waivers"): shown as waived, never as a pass; expired, it fails the campaign.
struct WaiverSpec {
  std::string id;
  std::string scenario;              ///< "" for any scenario
  std::vector<std::string> oracles;  ///< the broken oracles it accepts
  std::string reason;
  std::string expires;               ///< YYYY-MM-DD
};

/// What the device does with a delta release made against another base than
/// the image it runs (profile `delta.wrong_base`).
enum class WrongBase { refuse, full_image };

/// The profile's `delta:` section: the device takes delta releases.
struct DeltaSettings {
  WrongBase wrong_base = WrongBase::refuse;
  std::string where;  ///< FILE:LINE of the section
};

struct BoardProfile {
  std::filesystem::path path;
  std::string sha256;  ///< of the profile file's bytes
  std::string name;
  std::string description;
  std::string device_kind;
  std::string image_format = "otarig";
  /// The device's type (docs/board-profile.md, "Device type"): releases are
  /// built for it (header.device_type) and the device refuses another's.
  /// Empty: none declared, releases are for any device.
  std::string device_type;
  /// `encryption:` (docs/board-profile.md, "Encryption"): the device's X25519
  /// key the releases are encrypted for ("test:LABEL" or a PEM file); empty:
  /// releases are not encrypted.
  std::string encryption_key;
  /// `encryption.aes_key`: on a board whose updates are SWUpdate packages,
  /// the device's AES key ("test:LABEL" or SWUpdate's key file, "KEY IV" in
  /// hex; its -K) the images in the packages are encrypted with; empty: none.
  std::string encryption_aes_key;
  /// Whether the releases are encrypted for the device (either key).
  bool encrypted() const { return !encryption_key.empty() || !encryption_aes_key.empty(); }
  /// `encryption.plaintext_before_verify`: false (`forbidden`, the default)
  /// when the decrypted payload must never sit in storage before the image
  /// was verified.
  bool plaintext_before_verify = false;
  ObserveSettings observe;
  std::string signing_key;               ///< "test:LABEL" or a PEM path
  std::vector<std::string> trusted_keys; ///< keys the device trusts (default: the signing key)
  /// The signing key's validity period as the device trusts it (UNIX
  /// seconds, 0: unbounded), and the signing time stamped in the releases
  /// the rig builds (0: none) (docs/board-profile.md, "Signing").
  std::uint64_t key_not_before = 0, key_not_after = 0, signing_time = 0;
  /// What the device declares where devices legitimately differ (`device.policy`).
  DevicePolicy policy;
  /// A lab board's console command that sets its clock after each power-on
  /// (`clock: {console: ...}`, with ${epoch} and ${date}); empty: none.
  std::string clock_console;
  std::string clock_where;
  std::vector<ReleaseSpec> releases;
  std::vector<WaiverSpec> waivers;
  /// Delta releases (`delta:`); absent when the device takes full images only.
  std::optional<DeltaSettings> delta;
  /// The whole document; driver sections are read from it by the drivers.
  Config root;

  const ReleaseSpec* release(const std::string& name) const;
  /// The device has a second updatable image and reports it: the status
  /// pattern has the named group `image1_version` (docs/board-profile.md).
  bool reports_second_image() const { return observe.status.find("(?P<image1_version>") != std::string::npos; }
};

/// Whether `name` can be used as one file or folder name under an output
/// folder: 1-64 characters of [A-Za-z0-9._-], not starting with a dot (so
/// never "." or "..", never a path). Board, release and scenario names and
/// trial ids become such names.
bool is_plain_name(std::string_view name);

/// Throws InputError naming the file and line of `c` (and `what`) unless its
/// value `name` is a plain name.
void check_plain_name(const Config& c, std::string_view name, std::string_view what);

/// Whether `name` can be a device type: 1-64 characters of [A-Za-z0-9._-]
/// (what SWUpdate's -H board name and Mender's device_type take too).
bool is_device_type_name(std::string_view name);
inline constexpr const char* kDeviceTypeRule = "a device type is 1-64 characters of [A-Za-z0-9._-]";

/// Loads and validates a profile. Errors are InputError naming file and line.
BoardProfile load_profile(const std::filesystem::path& file);

/// Finds boards/NAME.yaml (or a path) in the usual places.
std::filesystem::path resolve_board(const std::string& name_or_path);
/// A path as the user gave it: relative to the working folder when it is
/// there, else (a relative path) under the first data folder that has it, so
/// a path `otarig list boards` prints works from any folder. nullopt when
/// neither has it.
std::optional<std::filesystem::path> find_data_path(const std::filesystem::path& given);

/// Data directories searched for boards/ and scenarios/: $OTARIG_DATA_DIR,
/// the installed share/otarig, the source tree.
std::vector<std::filesystem::path> data_dirs();

}  // namespace otarig::harness
