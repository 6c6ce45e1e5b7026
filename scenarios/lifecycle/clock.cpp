// device-clock: the device's wall clock set wrong for a trial, a dead RTC at
// 1970, far in the future, or off by a seeded amount, while a validly signed
// release is delivered. The declared policy (clock_1970, clock_future,
// clock_skew) says whether the device must still install it (`recovers`) or
// may refuse until its clock is right (`refuses-updates`: the clock is put
// right before the recovery power cycle, and the clean retry must then take).
#include <fmt/format.h>

#include <algorithm>

#include "common.hpp"
#include "lifecycle.hpp"
#include "otarig/core/image.hpp"
#include "otarig/harness/releases.hpp"
#include "otarig/harness/rng.hpp"
#include "otarig/harness/scenario.hpp"

namespace otarig::scenarios::lifecycle {
namespace {

using drivers::DeviceTime;

// 2200-01-01T00:00:00Z: far beyond any signer's or certificate's lifetime.
constexpr std::int64_t kFarFuture = 7258118400;
// A skew draws its size from one minute to 30 days, ahead or behind.
constexpr std::int64_t kSkewMin = 60, kSkewMax = 30LL * 24 * 3600;

struct ClockPoint final : harness::FaultPoint {
  std::string variant;
  std::int64_t seconds = 0;  ///< 1970/future: the clock at power-on; skew: the offset from the host's time
  DeviceTime time() const {
    return variant == "skew" ? DeviceTime{DeviceTime::Kind::offset, seconds} : DeviceTime{DeviceTime::Kind::at, seconds};
  }
  std::string setting() const {
    if (variant == "skew")
      return fmt::format("{}{} s from the true time", seconds < 0 ? "" : "+", seconds);
    return image::utc_text(static_cast<std::uint64_t>(seconds));
  }
  nlohmann::json json() const override { return {{"variant", variant}, {"seconds", seconds}}; }
  std::string label() const override { return "device-clock:" + variant; }
  std::string text() const override { return "device clock " + variant + ": " + setting(); }
};

std::string policy_key(const std::string& variant) {
  return variant == "1970" ? "clock_1970" : variant == "future" ? "clock_future" : "clock_skew";
}

class ClockRun final : public harness::FaultRun {
 public:
  explicit ClockRun(ClockPoint point) : point_(std::move(point)) {}
  ~ClockRun() override {
    if (clock_) clock_->set_device_time({});
  }

  std::string inject(harness::TrialPort& port) override {
    auto& bench = port.bench();
    clock_ = bench.parts().device_clock;
    if (!clock_) throw BenchError(fmt::format("{}: the rig cannot set this board's clock", bench.profile().name));
    const auto key = policy_key(point_.variant);
    promise_ = bench.profile().policy.get(key).value_or("");
    clock_->set_device_time(point_.time());
    // The clock takes effect at a power-on, as a device reads its RTC at boot.
    bench.power_off("inject");
    bench.power_on("inject");
    port.note("device-clock", {{"variant", point_.variant},
                               {"setting", point_.setting()},
                               {"policy", {{key, promise_}}}});
    return fmt::format("device clock {} ({}); device.policy.{}: {} — {}", point_.variant, point_.setting(), key,
                       promise_,
                       promise_ == "recovers"
                           ? "the validly signed release must install with the clock wrong, and the retry too"
                           : "the device may refuse while its clock is wrong; the clock is put right before the "
                             "recovery boot and the clean retry must take");
  }

  void recover(harness::TrialPort& port) override {
    if (promise_ == "recovers") return;
    clock_->set_device_time({});
    port.note("device-clock", {{"variant", "host"}, {"setting", "the true time, before the recovery boot"}});
  }

  void judge(harness::TrialPort& port, std::vector<harness::OracleResult>& oracles) override {
    if (promise_ == "recovers")
      require_installed(port, oracles, port.image(),
                        fmt::format("with its clock at {} the device declares {}: recovers",
                                    point_.setting(), policy_key(point_.variant)));
    clock_->set_device_time({});
  }

 private:
  ClockPoint point_;
  std::shared_ptr<drivers::DeviceClockProtocol> clock_;
  std::string promise_;
};

class ClockKind final : public harness::FaultKind {
 public:
  std::string_view name() const override { return "device-clock"; }
  std::string_view where() const override { return "time"; }
  std::string_view summary() const override {
    return "set the device's clock for the trial: 1970 (a dead RTC), future (2200-01-01), skew (a seeded offset of "
           "one minute to 30 days, ahead or behind), then deliver a validly signed release; device.policy "
           "clock_1970 / clock_future / clock_skew say whether it must still install (recovers) or may refuse "
           "until its clock is right (refuses-updates)";
  }
  std::vector<std::string_view> keys() const override { return {"variants"}; }
  std::shared_ptr<const harness::FaultOptions> parse(const Config& c,
                                                     const harness::FaultParseContext&) const override {
    return parse_variants(c, name(), clock_variants());
  }
  std::string inapplicable(const harness::Scenario& s, const harness::BoardAbilities& board) const override {
    if (!board.device_clock)
      return "the rig cannot set this board's clock (no virtual clock, libfaketime or `clock:` console command)";
    for (const auto& v : s.fault.as<VariantOptions>().variants)
      if (auto why = missing_policy(board, policy_key(v)); !why.empty()) return why;
    return {};
  }
  void plan(harness::PlanContext& ctx) const override {
    const std::uint64_t count = std::max<std::uint64_t>(1, ctx.scenario().trials);
    for (const auto& v : ctx.scenario().fault.as<VariantOptions>().variants)
      for (std::uint64_t i = 0; i < count; ++i) {
        auto& t = ctx.add();
        auto p = std::make_shared<ClockPoint>();
        p->variant = v;
        if (v == "1970") {
          p->seconds = 0;
        } else if (v == "future") {
          p->seconds = kFarFuture;
        } else {
          harness::Rng rng(t.seed ^ 0x636c6f636bULL);
          const auto size = kSkewMin + static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(kSkewMax - kSkewMin + 1)));
          p->seconds = rng.below(2) ? size : -size;
        }
        t.point = std::move(p);
      }
  }
  std::unique_ptr<harness::FaultRun> start(const harness::TrialSpec& spec) const override {
    return std::make_unique<ClockRun>(spec.point_as<ClockPoint>());
  }
  std::shared_ptr<const harness::FaultPoint> point_with(const harness::TrialSpec& trial,
                                                        const nlohmann::json& fields) const override {
    auto p = std::make_shared<ClockPoint>(trial.point_as<ClockPoint>());
    for (const auto& [key, value] : fields.items()) {
      if (key == "variant") {
        const auto v = value.get<std::string>();
        const auto& known = clock_variants();
        if (std::find(known.begin(), known.end(), v) == known.end())
          throw InputError(fmt::format("variant '{}': unknown device-clock variant", v));
        p->variant = v;
      } else if (key == "seconds") {
        if (!value.is_number_integer())
          throw InputError(fmt::format("{}: seconds is a whole number of seconds, not {}", trial.scenario->name,
                                       value.dump()));
        p->seconds = value.get<std::int64_t>();
      } else {
        throw InputError(fmt::format("{}: a device-clock trial takes variant and seconds, not {}",
                                     trial.scenario->name, key));
      }
    }
    return p;
  }
};

}  // namespace

const std::vector<std::string_view>& clock_variants() {
  static const std::vector<std::string_view> v = {"1970", "future", "skew"};
  return v;
}

std::shared_ptr<const harness::FaultKind> make_clock_kind() { return std::make_shared<ClockKind>(); }

}  // namespace otarig::scenarios::lifecycle
