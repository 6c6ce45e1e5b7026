// Kind `outage`: the device checks the update server by itself (the link's
// check command); the server then becomes unreachable for a seeded while
// (connections refused, or silently dropped) while a new release is
// published, and comes back. The device must keep checking and take the
// release; oracle `timely-update` judges its checks from the server's
// request log against the interval its profile declares
// (observe.update_check_interval, observe.update_check_margin).
#include <fmt/format.h>

#include <algorithm>

#include "lifecycle.hpp"
#include "otarig/harness/bench.hpp"
#include "otarig/harness/oracles.hpp"
#include "otarig/harness/plan.hpp"
#include "otarig/harness/releases.hpp"
#include "otarig/harness/rng.hpp"
#include "otarig/harness/scenario.hpp"
#include "otarig/harness/trial.hpp"
#include "update_checks.hpp"

namespace otarig::scenarios::lifecycle {
namespace {

using harness::BoardAbilities;
using harness::FaultParseContext;
using harness::OracleResult;
using harness::PlanContext;
using harness::Rng;
using harness::Scenario;
using harness::TrialPort;
using harness::TrialSpec;

// What the device may take, after its check found the release, to download
// and install it (the delivery's budget beyond the check): a hung device
// ends the trial here.
constexpr std::chrono::seconds kInstallBudget{60};

struct OutageOptions final : harness::FaultOptions {
  std::vector<std::string> modes;  ///< refuse, drop: a trial each (times `trials`)
  std::chrono::milliseconds shortest{0}, longest{0};
  nlohmann::json json() const override {
    return {{"modes", modes}, {"shortest_ms", shortest.count()}, {"longest_ms", longest.count()}};
  }
};

struct OutagePoint final : harness::FaultPoint {
  std::string mode;
  std::chrono::milliseconds length{0};
  // `variant`: the evidence's name for what distinguishes trials of one
  // kind (a defect is grouped by it, reports/src/defects.cpp).
  nlohmann::json json() const override { return {{"variant", mode}, {"outage_ms", length.count()}}; }
  std::string label() const override { return fmt::format("outage {} {} ms", mode, length.count()); }
};

class OutageRun final : public harness::FaultRun {
 public:
  explicit OutageRun(const OutagePoint& p) : p_(p) {}

  std::string inject(TrialPort& port) override {
    auto& bench = port.bench();
    auto* checks = bench.parts().update_check.get();
    auto* net = bench.parts().network.get();
    const auto& interval = bench.profile().observe.update_check_interval;
    if (!checks || !net || !interval)
      throw BenchError(fmt::format("{}: the board cannot run an outage (no check command, fault proxy or "
                                   "update_check_interval)",
                                   bench.profile().name));
    policy_ = {*interval, bench.profile().observe.update_check_margin};
    // The device checks by itself from now on, the server offering what it
    // runs; its checks before the outage measure how often it checks.
    const auto& s = port.scenario();
    const auto& running = port.releases().get(s.before.empty() ? s.start : s.before.back());
    (void)checks->take_requests();
    checks->start_checks(port.releases().artifact(running));
    const auto watch = 2 * policy_.interval + policy_.margin;
    bench.clock().sleep_for(watch);
    net->set_network_faults(fmt::format("outage={},for={}ms", p_.mode, p_.length.count()), port.spec().seed);
    checks->found_by_check_next(p_.length + policy_.allowed(), p_.length + policy_.allowed() + kInstallBudget);
    return fmt::format("the device checks the update server by itself ({} ms watched); then the server is "
                       "unreachable for {} ms ({}) while {} ({}) is published; the device must check again "
                       "within {} ms of its return (update_check_interval {} ms + margin {} ms) and take it",
                       watch.count(), p_.length.count(),
                       p_.mode == "refuse" ? "every connection reset at once" : "every connection held silent",
                       port.image().name, port.image().version, policy_.allowed().count(), policy_.interval.count(),
                       policy_.margin.count());
  }

  void network_events(TrialPort&, const nlohmann::json& events) override {
    for (const auto& e : events)
      if (e.is_object() && !e.contains("source")) proxy_events_.push_back(e);
  }

  void delivered(TrialPort& port) override {
    auto* checks = port.bench().parts().update_check.get();
    nlohmann::json requests = nlohmann::json::array();
    for (const auto& text : checks->take_requests()) requests.push_back(nlohmann::json::parse(text, nullptr, false));
    measured_ = measure_update_checks(requests, proxy_events_, p_.length, policy_);
    // The server's request log is evidence of its own: what the device asked
    // for and when, on the clock of the proxy's events.
    port.note("requests", {{"step", "deliver"}, {"records", std::move(requests)}});
    auto j = measured_.json();
    j["update_check_interval_ms"] = policy_.interval.count();
    j["update_check_margin_ms"] = policy_.margin.count();
    j["mode"] = p_.mode;
    j["outage_ms"] = p_.length.count();
    port.note("update-checks", std::move(j));
  }

  void judge(TrialPort& port, std::vector<OracleResult>& oracles) override {
    const auto& out = port.outcome();
    std::string detail = measured_.detail;
    bool held = measured_.held;
    const auto fault_index = port.fault_index();
    const bool took = out.delivery_status == drivers::to_string(drivers::DeliveryStatus::accepted) &&
                      fault_index < out.observations.size() && out.observations[fault_index].booted &&
                      out.observations[fault_index].digest == port.image().digest;
    if (!took) {
      held = false;
      const std::string why =
          fmt::format("it did not take the release published during the outage ({}: {})", out.delivery_status,
                      out.delivery_detail);
      detail = measured_.held ? "the device checked in time but " + why : detail + "; " + why;
    }
    oracles.push_back({"timely-update", held, held ? std::string() : detail});
  }

 private:
  OutagePoint p_;
  lifecycle::CheckPolicy policy_;
  nlohmann::json proxy_events_ = nlohmann::json::array();
  CheckMeasurement measured_;
};

class OutageKind final : public harness::FaultKind {
 public:
  std::string_view name() const override { return "outage"; }
  std::string_view where() const override { return "network"; }
  std::string_view summary() const override {
    return "the device checks the rig's update server by itself (link.check_command); the server is then "
           "unreachable for a seeded shortest..longest (modes: refuse resets every connection, drop holds it "
           "silent until the outage ends) while a new release is published; oracle timely-update: the device's "
           "checks, from the server's request log, at most observe.update_check_interval + "
           "update_check_margin apart before the outage and after it, and the release taken";
  }
  std::vector<std::string_view> keys() const override { return {"modes", "shortest", "longest"}; }
  std::shared_ptr<const harness::FaultOptions> parse(const Config& c, const FaultParseContext&) const override {
    auto o = std::make_shared<OutageOptions>();
    if (auto m = c.find("modes")) {
      const std::vector<Config> items = m->is_sequence() ? m->items() : std::vector<Config>{*m};
      if (items.empty()) m->fail("name at least one mode (refuse, drop)");
      for (const auto& item : items) {
        const auto mode = item.as_string();
        if (mode != "refuse" && mode != "drop") item.fail(fmt::format("unknown outage mode '{}' (refuse, drop)", mode));
        if (std::find(o->modes.begin(), o->modes.end(), mode) != o->modes.end())
          item.fail(fmt::format("mode '{}' named twice", mode));
        o->modes.push_back(mode);
      }
    } else {
      o->modes = {"refuse", "drop"};
    }
    o->shortest = c.at("shortest").as_duration();
    o->longest = c.at("longest").as_duration();
    constexpr std::chrono::milliseconds kHour{3600000};
    if (o->shortest.count() < 1 || o->shortest > kHour)
      c.at("shortest").fail("an outage lasts from 1ms to one hour");
    if (o->longest < o->shortest || o->longest > kHour)
      c.at("longest").fail("must be at least `shortest` and at most one hour");
    return o;
  }
  std::string inapplicable(const Scenario&, const BoardAbilities& board) const override {
    if (board.network.empty())
      return "the board does not download from the rig's update server through the fault proxy";
    if (!board.update_check)
      return "the device does not check the update server by itself: its link has no check command "
             "(link.check_command)";
    if (!board.update_check_interval)
      return "the profile does not say how often the device checks for updates (observe.update_check_interval)";
    return {};
  }
  void plan(PlanContext& ctx) const override {
    const auto& s = ctx.scenario();
    const auto& o = s.fault.as<OutageOptions>();
    for (const auto& mode : o.modes)
      for (std::uint64_t i = 0; i < std::max<std::uint64_t>(1, s.trials); ++i) {
        auto& t = ctx.add();
        auto p = std::make_shared<OutagePoint>();
        p->mode = mode;
        const auto span = static_cast<std::uint64_t>((o.longest - o.shortest).count()) + 1;
        p->length = o.shortest + std::chrono::milliseconds(
                                     static_cast<std::int64_t>(Rng(harness::mix64(t.seed ^ 0x6f757461ULL)).below(span)));
        t.point = std::move(p);
      }
  }
  std::unique_ptr<harness::FaultRun> start(const TrialSpec& spec) const override {
    return std::make_unique<OutageRun>(spec.point_as<OutagePoint>());
  }
};

}  // namespace

void register_outage_fault(harness::FaultRegistry& registry) { registry.add(std::make_shared<OutageKind>()); }

}  // namespace otarig::scenarios::lifecycle
