#pragma once
// The five oracles of DESIGN.md. Each judges a trial's observations and says
// whether it held, and why not. They are registered at the composition root
// (Registries::oracles) beside drivers and fault kinds; a lab adds its own to
// a copy of the registries.
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "otarig/harness/bench.hpp"

namespace otarig::harness {

inline constexpr const char* kOracleNames[] = {"authentic",  "atomic",       "no-rollback", "recovered", "still-updatable",
                                               "compatible", "dependencies", "confidential"};

struct OracleResult {
  std::string name;
  bool held = true;
  std::string detail;  ///< why it did not hold (empty when it held)
};

/// Everything the oracles need to know about one trial.
struct OracleInput {
  std::vector<Observation> history;   ///< in order: prepare, before:*, after-fault, retry
  std::size_t fault_index = 0;        ///< index in history of the after-fault observation
  std::string before_digest;          ///< running before the faulted delivery
  std::string delivered_digest;       ///< header+payload digest of what was delivered
  bool delivered_authentic = true;    ///< false for tampered, unsigned, wrong-key images
  bool delivered_fails_self_test = false;
  /// false when what was delivered is made for another device (the
  /// wrong-device variant: validly signed, its header or package for
  /// another device type).
  bool delivered_compatible = true;
  /// A device with a second image (Observation::image1_digest): its digest
  /// before the faulted delivery, and the delivery's own image 1 ("" when it
  /// brings none).
  std::string before_image1_digest;
  std::string delivered_image1_digest;
  /// What each image the rig built needs (by its digest): the index of the
  /// other image and the lowest version of it (header.needs_image/_version).
  struct Need {
    unsigned image = 0;
    std::string version;
  };
  std::map<std::string, Need> needs;
  /// confidential (docs/scenarios.md, "Encrypted images"): where the
  /// plaintext of an encrypted release was found in the bytes the rig
  /// handed the link, in what the fault proxy relayed from the update server
  /// to the device (docs/network.md, "Plaintext watch"), or at rest before
  /// verification; empty when it was not.
  std::string plaintext_on_link;
  std::string plaintext_on_wire;
  std::string plaintext_at_rest;
  std::set<std::string> authentic_digests;  ///< every validly signed image the rig built
  bool has_retry = false;
  std::string retry_digest;
  std::size_t retry_index = 0;        ///< index in history of the retry observation
  std::string retry_problem;          ///< the retry delivery's own failure, if any
  /// A board whose update server is a device-management server
  /// (BoardParts::device_reports): the faulted delivery's deployment and
  /// what the device reported about it by the after-fault observation.
  bool device_reports = false;
  std::string deployment;
  std::string reported_status;                ///< the last final status; empty when none
  std::vector<std::string> reported_statuses;  ///< every status, in order
};

/// An oracle that judges every trial from its observations.
struct Oracle {
  std::string name;
  std::function<OracleResult(const OracleInput&)> check;
};

/// The oracles every trial is judged by, in the order they judge.
class OracleRegistry {
 public:
  /// std::logic_error when the name is empty or already registered.
  void add(Oracle oracle);
  const Oracle* find(std::string_view name) const;
  const std::vector<Oracle>& all() const { return oracles_; }

 private:
  std::vector<Oracle> oracles_;
};

/// Adds the five oracles of DESIGN.md and `compatible` (kOracleNames, in that
/// order). `compatible`: after an image made for another device was
/// delivered, the device never runs it (docs/scenarios.md, "wrong-device").
/// `dependencies`: the device never runs an application beside a second
/// image older than it needs (nor a second image beside an application
/// older than it needs); it holds on a device that reports no second image.
void register_builtin_oracles(OracleRegistry& registry);
/// The five, registered once.
const OracleRegistry& builtin_oracles();

/// `reports-truthfully`, for boards whose server records the device's
/// deployment statuses (OracleInput::device_reports): the last final status
/// the device reported for the faulted deployment matches what the rig
/// observed after the fault (`success` only when the device runs the
/// delivered image, `failure` only when it does not). No final status is no
/// claim, and holds. The trial adds it to the five on such boards.
inline constexpr const char* kReportsTruthfully = "reports-truthfully";
OracleResult reports_truthfully(const OracleInput& in);

/// Judges by every registered oracle, in order.
std::vector<OracleResult> judge(const OracleInput& in, const OracleRegistry& oracles);
/// Judges by the five built-in oracles.
std::vector<OracleResult> judge(const OracleInput& in);

/// Compares "1.2.3+4" versions; unparsable versions compare as strings.
int compare_versions(const std::string& a, const std::string& b);

}  // namespace otarig::harness
