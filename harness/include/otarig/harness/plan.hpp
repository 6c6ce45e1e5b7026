#pragma once
// A Plan turns a scenario (or a suite) and a seed into trials. Every random
// choice of a trial comes from trial_seed(seed, index).
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "otarig/harness/fault_kind.hpp"
#include "otarig/harness/policy.hpp"
#include "otarig/harness/scenario.hpp"

namespace otarig::harness {

struct TrialSpec {
  std::uint64_t index = 0;
  std::string id;                   ///< zero-padded index, also the evidence folder name
  const Scenario* scenario = nullptr;
  std::uint64_t seed = 0;           ///< this trial's stream
  /// What the scenario's fault kind drew for this trial at plan time.
  std::shared_ptr<const FaultPoint> point;

  /// The point as its kind's own type.
  template <class T>
  const T& point_as() const {
    return dynamic_cast<const T&>(*point);
  }
  /// The fault as recorded in the evidence: {"kind", ...the point's fields,
  /// "label", "text"}.
  nlohmann::json fault_json() const;
};

/// A scenario of a suite that does not apply to the board, and why.
struct SkippedScenario {
  std::string scenario;
  std::string reason;
};

struct Plan {
  std::vector<TrialSpec> trials;
  /// Flash operations one update takes, per "start->deliver" pair measured.
  std::map<std::string, std::uint64_t> ops_per_update;
  /// Storage operations one update made, per "start->deliver" pair recorded
  /// (boards whose storage is under the crash model).
  std::map<std::string, std::uint64_t> storage_ops_per_update;
  /// Milliseconds a clean update took, per "start->deliver" pair measured
  /// (boards whose power cuts are placed in time).
  std::map<std::string, std::uint64_t> update_ms;
  std::vector<SkippedScenario> skipped;
};

/// Measures the flash operations of a clean update from `start` to `deliver`
/// (a release name, or "NAME/self-test-fail" for its twin that fails its self-test).
using CountOps = std::function<std::uint64_t(const std::string& start, const std::string& deliver)>;

/// What the board can do, as far as planning needs to know.
struct BoardAbilities {
  /// Counted flash operations (virtual boards); empty when the board has none.
  CountOps count_ops;
  /// Power cuts placed in a delivery: at a download byte, a time, a console line.
  bool delivery_cuts = false;
  /// The fault proxy between device and update server: "" none, else the
  /// device's TLS mode ("off", "tls", "mutual").
  std::string network;
  /// The device downloads from the rig's update server (with or without
  /// the fault proxy), so the server can answer with another release.
  bool server = false;
  /// The device reads a manifest from the rig's update server before it
  /// fetches the image (ReleaseFeedProtocol::follows_feed).
  bool reads_manifest = false;
  /// Storage operations of a clean update, recorded under the crash model
  /// (process boards whose storage is a folder); empty when the board has none.
  CountOps storage_ops;
  /// The board's crash storage, for planning crash states (null when none).
  drivers::CrashStorageProtocol* crash_storage = nullptr;
  /// The profile's boot banner (observe.banner): a scenario's `${banner}`.
  std::string banner;
  /// Why the board takes no delta release ("" when it does: its profile's
  /// `delta:` section, and a package format that makes delta packages).
  std::string no_delta = "the board takes no delta releases";
  /// The device fetches a delta's data from the update server in byte
  /// ranges (SWUpdate's delta handler), not as one file.
  bool delta_ranges = false;
  /// Bytes of a release's image as delivered.
  std::function<std::uint64_t(const std::string& release)> image_size;
  /// Bytes of `release` delivered as a delta made against `base` (the delta
  /// release, or a package format's delta package); empty when the board
  /// cannot say.
  std::function<std::uint64_t(const std::string& release, const std::string& base)> delta_size;
  /// The bytes a scenario's faulted step delivers: the delta's with
  /// `delivery: delta`, else the release's image (0 when the board cannot say).
  std::uint64_t delivered_size(const Scenario& s) const {
    if (s.delta && delta_size) return delta_size(s.deliver, s.delta_base());
    return image_size ? image_size(s.deliver) : 0;
  }
  /// Milliseconds of a clean update from `start` to `deliver` (measured on the board).
  CountOps update_ms;
  /// The device's client refuses a download whose length the server does
  /// not state (profile: device.network.length_required), so a body without
  /// end never reaches it (Mender: "Will not continue with unknown image size").
  bool length_required = false;
  /// Why the device's client does no more TLS than `network` says (profile:
  /// device.network.tls_reason): with "off", why no TLS; with "tls", why no
  /// client certificate. The TLS scenarios skipped on it say so, and with
  /// "tls" it skips the server's client-certificate probe (mtls-required).
  std::string tls_reason;
  /// The rig can set the device's clock (BoardParts::device_clock).
  bool device_clock = false;
  /// The device takes the rig's packages (swu, raucb, mender), not otarig images.
  std::string package_format;
  /// Why the board's packages cannot be signed by a signer certificate
  /// outside its validity ("" when they can, or the board takes no packages).
  std::string no_signer_validity;
  /// The profile's declared policy (`device.policy`); null for none.
  const DevicePolicy* policy = nullptr;
  /// The device's server certificates are the rig's test PKI (no
  /// device.network.pki), so the proxy can present the expired, early,
  /// renewed and rotated ones (`certificate=NAME`).
  bool test_pki = false;
  /// The link can make the device check the update server by itself
  /// (drivers::UpdateCheckProtocol: link.check_command).
  bool update_check = false;
  /// How often the profile says the device checks (observe.update_check_interval),
  /// and the margin it allows (observe.update_check_margin).
  std::optional<std::chrono::milliseconds> update_check_interval;
  std::chrono::milliseconds update_check_margin{1000};
  /// The device checks what device an image is for: the profile declares a
  /// device_type, or its packages name one (docs/board-profile.md, "Device type").
  bool device_type = false;
  /// The device has a second updatable image and reports it
  /// (BoardProfile::reports_second_image).
  bool second_image = false;
  /// The board's releases are encrypted for the device (the profile's `encryption:`).
  bool encryption = false;
};

/// Builds the plan. A scenario the board cannot run is an InputError naming
/// it; in a suite it is skipped instead, and Plan::skipped says why. Counted
/// power cuts (every-flash-op, random-flash-op) run as cuts placed in the
/// delivery on a board without counted flash operations (docs/scenarios.md).
Plan make_plan(const Scenario& scenario, std::uint64_t seed, const BoardAbilities& board);
/// The same for a board whose only ability is `count_ops` (may be empty).
Plan make_plan(const Scenario& scenario, std::uint64_t seed, const CountOps& count_ops);

/// Keeps `n` trials chosen by the seed (in index order), for --trials. A plan of
/// several scenarios (a suite) keeps at least one trial of each when `n` allows.
void limit_plan(Plan& plan, std::uint64_t n, std::uint64_t seed);
/// Keeps trials whose index % count == shard.
void shard_plan(Plan& plan, unsigned shard, unsigned count);

}  // namespace otarig::harness
