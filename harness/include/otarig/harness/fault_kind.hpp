#pragma once
// A fault kind is one unit: it parses its scenario section, plans its points
// from each trial's own RNG stream (every random choice at plan time), arms
// and injects itself through the board's protocols during a trial, and
// describes itself for the evidence. Kinds are registered explicitly in a
// FaultRegistry, as drivers are in a DriverRegistry (docs/architecture.md,
// "Add a fault kind").
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "otarig/core/config.hpp"
#include "otarig/drivers/protocols.hpp"

namespace otarig::harness {

class Bench;
struct BuiltImage;
class ReleaseSet;
struct Scenario;
struct TrialSpec;
struct TrialOutcome;
struct Observation;
struct OracleResult;
struct Plan;
struct BoardAbilities;
class FaultKind;

/// A kind's parsed scenario section (its own options struct derives from this).
struct FaultOptions {
  virtual ~FaultOptions() = default;
  /// The options as the Python module shows them (Scenario.fault).
  virtual nlohmann::json json() const { return nlohmann::json::object(); }
};

/// What a kind drew for one trial at plan time. The evidence records json();
/// a trial replays from it and the campaign seed alone.
struct FaultPoint {
  virtual ~FaultPoint() = default;
  /// The point's fields as run.json, the journal and the Python module show
  /// them (besides "kind", "label" and "text", which TrialSpec adds).
  virtual nlohmann::json json() const = 0;
  /// One line for a JUnit test case's fault point, e.g. "power-cut op 3/40 torn".
  virtual std::string label() const = 0;
  /// A short text for the HTML report's tables.
  virtual std::string text() const { return label(); }
};

/// The scenario section of a fault, as its kind parsed it.
struct FaultSpec {
  std::string kind;   ///< the kind's name
  std::string where;  ///< file:line of the section
  const FaultKind* unit = nullptr;
  std::shared_ptr<const FaultOptions> options;

  /// The options as their kind's own type (the kind that parsed them).
  template <class T>
  const T& as() const {
    return dynamic_cast<const T&>(*options);
  }
};

/// What a kind sees of the scenario while it parses its section.
struct FaultParseContext {
  std::string scenario;     ///< the scenario's name
  std::uint64_t trials = 0; ///< the scenario's `trials` (0 when absent)
  const Config* root = nullptr;  ///< the scenario file's top level (for errors about the scenario as a whole)
};

/// What planning may ask and add.
class PlanContext {
 public:
  virtual ~PlanContext() = default;
  virtual const Scenario& scenario() const = 0;
  virtual const BoardAbilities& board() const = 0;
  /// Adds a trial of this scenario: its index, id and seed are set.
  virtual TrialSpec& add() = 0;
  /// Flash operations of a clean update from the scenario's start to
  /// `deliver` (a release, or "NAME/self-test-fail"), measured once a campaign.
  virtual std::uint64_t ops_per_update(const std::string& deliver) = 0;
  /// Milliseconds of such a clean update, measured once a campaign.
  virtual std::uint64_t update_ms(const std::string& deliver) = 0;
  /// Storage operations of such a clean update, recorded once a campaign
  /// (CrashStorageProtocol::keep_recording under "START->DELIVER").
  virtual std::uint64_t storage_ops(const std::string& deliver) = 0;
  /// The campaign seed.
  virtual std::uint64_t seed() const = 0;
};

/// What a kind may do during a trial. The trial state machine implements it.
class TrialPort {
 public:
  virtual ~TrialPort() = default;
  virtual Bench& bench() = 0;
  virtual const ReleaseSet& releases() const = 0;
  virtual const TrialSpec& spec() const = 0;
  virtual const Scenario& scenario() const = 0;
  virtual const TrialOutcome& outcome() const = 0;
  /// The image the faulted step delivers (the scenario's `deliver` release
  /// until a kind chooses another with use_image()).
  virtual const BuiltImage& image() const = 0;
  virtual void use_image(BuiltImage image) = 0;
  virtual void use_release(const std::string& name) = 0;
  /// An event in the trial's events.jsonl and the journal.
  virtual void note(const std::string& type, nlohmann::json data) = 0;
  /// Asks the device for its status; the observation joins the trial's history.
  virtual Observation look(const std::string& step) = 0;
  /// Appends to the fault's detail in the evidence.
  virtual void add_detail(const std::string& text) = 0;
  /// Delivers `image` through the board's link as the trial's steps do
  /// (powering on first, recording the delivery and wear events). With
  /// `as_release`, a device that reads the release feed finds the image
  /// published as its own release (ReleaseFeedProtocol::serve_as_release).
  virtual drivers::DeliveryResult deliver(const BuiltImage& image, const std::string& step,
                                          bool as_release = false) = 0;
  /// A clean update to `image`, a validly signed image the kind made, before
  /// the faulted delivery (as the scenario's `before` updates are done): the
  /// oracles then count the image as signed and as the old image of the
  /// fault. Returns whether the device runs it; if not, `still-updatable`
  /// breaks with the reason.
  virtual bool update_before_fault(const BuiltImage& image) = 0;
  /// The clean retry delivers `image` instead of the scenario's retry
  /// release: a validly signed image the kind made newer than every image it
  /// delivered (the oracles count it as signed and as the retry's image).
  virtual void use_retry_image(BuiltImage image) = 0;
  /// Ends the delivery step without a delivery (a fault at rest).
  virtual void no_delivery(const std::string& detail) = 0;
  /// The console goes to the trial's transcript (and console.log) as it is
  /// read. hold_transcript() holds back what comes from now on (boots the
  /// rig runs only to measure) until keep_transcript() keeps it or
  /// discard_transcript() lets it go; what is held when the trial ends is kept.
  virtual void keep_transcript() = 0;
  virtual void hold_transcript() = 0;
  virtual void discard_transcript() = 0;
  /// Index in the outcome's observations of the one after the fault.
  virtual std::size_t fault_index() const = 0;
  /// Records where a cut fell: {op, ops_total, kind, address, phase, torn}
  /// (run.json `cut`, the report's charts).
  virtual void record_cut(nlohmann::json cut) = 0;
};

/// One trial's injection of a fault: made at the inject step, asked again
/// at each later step.
class FaultRun {
 public:
  virtual ~FaultRun() = default;
  /// Chooses what is delivered and arms the fault; returns the fault's
  /// detail for the evidence.
  virtual std::string inject(TrialPort& port) = 0;
  /// The delivery step. By default the chosen image goes through the link
  /// as it is (with the fault armed).
  virtual void deliver(TrialPort& port, const std::string& step) { (void)port.deliver(port.image(), step); }
  /// What the fault proxy saw of the delivery's connections, one JSON object
  /// an event (on a board with the proxy), before they join the evidence.
  virtual void network_events(TrialPort&, const nlohmann::json& events) { (void)events; }
  /// After the delivery: what the fault did, disarm.
  virtual void delivered(TrialPort&) {}
  /// Before the recovery power cycle.
  virtual void recover(TrialPort&) {}
  /// Adds to or tightens the oracles' verdicts.
  virtual void judge(TrialPort&, std::vector<OracleResult>&) {}
};

/// A fault kind. One instance serves every scenario and trial (it is const).
class FaultKind {
 public:
  virtual ~FaultKind() = default;
  virtual std::string_view name() const = 0;
  /// power, image, network, storage, time, payload
  virtual std::string_view where() const = 0;
  /// What it does, for `otarig list faults`.
  virtual std::string_view summary() const = 0;
  /// The keys its scenario section takes besides `kind`.
  virtual std::vector<std::string_view> keys() const { return {}; }
  /// Parses its scenario section; a bad value is an InputError at its line.
  virtual std::shared_ptr<const FaultOptions> parse(const Config& section, const FaultParseContext& ctx) const = 0;
  /// Releases the section names, with where, so a campaign checks them
  /// against the board before it runs.
  virtual std::vector<std::pair<std::string, std::string>> releases_named(const FaultSpec&) const { return {}; }
  /// Why the scenario cannot run on a board with these abilities ("" when it can).
  virtual std::string inapplicable(const Scenario&, const BoardAbilities&) const { return {}; }
  /// Adds the scenario's trials with their points (PlanContext::add). Every
  /// random choice comes from the trial's seed.
  virtual void plan(PlanContext& ctx) const = 0;
  /// A trial of this kind, from its planned point.
  virtual std::unique_ptr<FaultRun> start(const TrialSpec& spec) const = 0;
  /// A point for a trial the Python module asks for by its fields (e.g.
  /// `cut_op=17, torn=True`): `fields` over `planned` (the trial's planned
  /// point, or null for a scenario's first trial). InputError for a field
  /// the kind does not take.
  virtual std::shared_ptr<const FaultPoint> point_with(const TrialSpec& trial, const nlohmann::json& fields) const;
};

/// For a kind whose trials differ by one named choice (a variant, a lie),
/// its point_with(): the value `fields` gives `key`, which must be one of
/// `known`; "" when `fields` leaves it out. InputError naming the scenario
/// for any other field, and listing `known` for a value that is not one.
std::string chosen_field(const TrialSpec& trial, const nlohmann::json& fields, std::string_view kind,
                         std::string_view key, const std::vector<std::string_view>& known);

/// The fault kinds a campaign knows, by name.
class FaultRegistry {
 public:
  void add(std::shared_ptr<const FaultKind> kind);
  const FaultKind* find(std::string_view name) const;
  std::vector<const FaultKind*> all() const;
  /// "a, b, c": for error messages.
  std::string names() const;

 private:
  std::map<std::string, std::shared_ptr<const FaultKind>, std::less<>> kinds_;
};

/// A point with no fields (a fault whose trials differ only by their seed).
struct PlainPoint final : FaultPoint {
  explicit PlainPoint(std::string kind) : kind_(std::move(kind)) {}
  nlohmann::json json() const override { return nlohmann::json::object(); }
  std::string label() const override { return kind_; }

 private:
  std::string kind_;
};

}  // namespace otarig::harness
