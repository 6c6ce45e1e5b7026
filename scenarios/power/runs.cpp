// Power faults during a trial: arming the cut, where it fell, brown-outs.
#include "runs.hpp"

#include <fmt/format.h>

#include "otarig/harness/bench.hpp"
#include "otarig/harness/plan.hpp"
#include "otarig/harness/releases.hpp"
#include "otarig/harness/rng.hpp"
#include "otarig/harness/scenario.hpp"
#include "otarig/harness/trial.hpp"

namespace otarig::scenarios::power {
namespace {

using harness::Rng;
using harness::TrialPort;

std::string op_text(const drivers::FlashOp& op) {
  return fmt::format("{} {:#010x}+{} (phase {})", op.kind == drivers::FlashOp::Kind::erase ? "erase" : "program",
                     op.address, op.length, op.phase);
}

// The failing twin when the scenario cuts an update that is reverted.
std::string choose_image(TrialPort& port, const std::string& image) {
  if (image != "self-test-fail") return {};
  const auto& base = port.releases().get(port.scenario().deliver);
  Rng rng(port.spec().seed ^ 0x696d616765ULL);
  std::string detail;
  port.use_image(port.releases().make_variant(base, "self-test-fail", "", rng, &detail));
  return detail;
}

class CountedRun final : public harness::FaultRun {
 public:
  explicit CountedRun(const CountedCut& p) : p_(p) {}

  std::string inject(TrialPort& port) override {
    const std::string what = choose_image(port, p_.image);
    auto* ff = port.bench().parts().flash_faults.get();
    if (!ff)
      throw BenchError(fmt::format("{}: the board cannot {} at a flash operation", port.bench().profile().name,
                                   p_.flash_error ? "fail" : "cut power"));
    ff->arm(drivers::FlashCut{p_.before_op, p_.torn, p_.torn_seed, p_.flash_error});
    std::string detail;
    if (p_.flash_error)
      detail = fmt::format("flash operation {} of {} fails with an error{}", p_.before_op, p_.ops_total,
                           p_.torn ? " after part of it landed" : "");
    else
      detail = fmt::format("power cut {} flash operation {} of {}", p_.torn ? "tearing" : "before", p_.before_op,
                           p_.ops_total);
    detail += recovery_text(p_.recovery_cuts);
    if (!what.empty()) detail += " (delivering a " + what + ")";
    return detail;
  }

  void delivered(TrialPort& port) override {
    // A failing operation leaves the device powered: nothing fell, the next prepare disarms.
    if (p_.flash_error) return;
    auto* ff = port.bench().parts().flash_faults.get();
    if (!ff) return;
    fell_ = ff->fired();
    if (fell_) {
      const auto& op = *fell_;
      port.record_cut({{"op", op.index},
                       {"ops_total", p_.ops_total},
                       {"kind", op.kind == drivers::FlashOp::Kind::erase ? "erase" : "program"},
                       {"address", op.address},
                       {"phase", op.phase},
                       {"torn", p_.torn}});
      port.note("power-cut", {{"op", op.index},
                              {"kind", op.kind == drivers::FlashOp::Kind::erase ? "erase" : "program"},
                              {"address", op.address},
                              {"length", op.length},
                              {"phase", op.phase},
                              {"torn", p_.torn}});
    }
    ff->disarm();
  }

  void recover(TrialPort& port) override {
    if (p_.recovery_cuts && fell_) brown_out(port);
  }

 private:
  // Brown-out: power fails again while the device recovers. Each further cut
  // falls at a seeded op among those a clean boot from the current state
  // would do; that count is measured by booting once (counting only) and then
  // rebuilding the state from the trial's own steps, which is exact on a
  // deterministic board. The measuring boots are kept out of the transcript.
  void brown_out(TrialPort& port) {
    auto& bench = port.bench();
    auto* ff = bench.parts().flash_faults.get();
    if (!ff || !bench.parts().provision) return;
    Rng rng(harness::mix64(port.spec().seed ^ 0x726563757473ULL));
    const auto& s = port.scenario();
    const double torn_chance = s.fault.as<CutOptions>().torn;
    std::vector<drivers::FlashCut> cuts;
    for (std::uint32_t r = 0; r < p_.recovery_cuts; ++r) {
      port.hold_transcript();
      if (bench.parts().power->is_on()) bench.power_off("brown-out");
      ff->arm(drivers::FlashCut{0, false, 0});
      bench.power_on("brown-out");
      const std::uint64_t boot_ops = ff->ops_counted();
      ff->disarm();
      if (boot_ops == 0) {
        port.note("brown-out", {{"cut", r + 1}, {"boot_ops", 0}, {"detail", "the recovery boot writes no flash"}});
        port.keep_transcript();
        return;  // that clean boot is the recovery: keep its output
      }
      rebuild(port, cuts);
      port.discard_transcript();
      const drivers::FlashCut cut{rng.between(1, boot_ops), rng.chance(torn_chance), rng.next(), false};
      ff->arm(cut);
      bench.power_on("brown-out");
      const auto fell = ff->fired();
      ff->disarm();
      port.note("brown-out", {{"cut", r + 1},
                              {"boot_ops", boot_ops},
                              {"before_op", cut.before_op},
                              {"torn", cut.torn},
                              {"fell_at", fell ? op_text(*fell) : "did not fall"}});
      port.add_detail(fmt::format("; recovery boot {} cut {} op {} of {}", r + 1, cut.torn ? "tearing" : "before",
                                  cut.before_op, boot_ops));
      if (bench.parts().power->is_on()) bench.power_off("brown-out");
      cuts.push_back(cut);
    }
  }

  // The state right after the trial's cut delivery and the recovery cuts in
  // `cuts`, made again from the start (the device is left off).
  void rebuild(TrialPort& port, const std::vector<drivers::FlashCut>& cuts) {
    auto& bench = port.bench();
    auto& parts = bench.parts();
    auto* ff = parts.flash_faults.get();
    const auto& s = port.scenario();
    const auto& releases = port.releases();
    ff->disarm();
    bench.power_off("brown-out");
    parts.provision->provision(releases.get(s.start).bytes);
    bench.power_on("brown-out");
    for (const auto& name : s.before) {
      parts.link->deliver(releases.artifact(releases.get(name)));
      if (!parts.power->is_on()) bench.power_on("brown-out");
    }
    ff->arm(drivers::FlashCut{p_.before_op, p_.torn, p_.torn_seed, false});
    parts.link->deliver(releases.artifact(port.image()));
    ff->disarm();
    for (const auto& c : cuts) {
      if (parts.power->is_on()) bench.power_off("brown-out");
      ff->arm(c);
      bench.power_on("brown-out");
      ff->disarm();
    }
    if (parts.power->is_on()) bench.power_off("brown-out");
  }

  CountedCut p_;
  std::optional<drivers::FlashOp> fell_;
};

class PlacedRun final : public harness::FaultRun {
 public:
  explicit PlacedRun(const PlacedCut& p) : p_(p) {}

  std::string inject(TrialPort& port) override {
    const std::string what = choose_image(port, p_.image);
    auto* cuts = port.bench().parts().cuts.get();
    if (!cuts)
      throw BenchError(fmt::format("{}: the board cannot cut power during a delivery", port.bench().profile().name));
    const std::chrono::milliseconds delay(p_.delay_ms);
    std::string detail;
    if (p_.at == "download-byte") {
      cuts->arm(drivers::PlacedCut::at_byte(p_.byte));
      detail = fmt::format("power cut at byte {} of the {}-byte download", p_.byte, p_.image_size);
    } else if (p_.at == "time") {
      cuts->arm(drivers::PlacedCut::after(delay));
      detail = fmt::format("power cut {} ms after the update command (a clean update took {} ms)", p_.delay_ms,
                           p_.update_ms);
    } else {
      std::string pattern = p_.pattern;
      if (pattern == "${banner}") pattern = port.bench().profile().observe.banner;
      cuts->arm(drivers::PlacedCut::on_console(pattern, delay));
      detail = fmt::format("power cut {} ms after the first console line matching '{}'", p_.delay_ms, pattern);
    }
    detail += recovery_text(p_.recovery_cuts);
    if (!what.empty()) detail += " (delivering a " + what + ")";
    if (auto* crash = port.bench().parts().crash_storage.get(); crash && !p_.crash_mode.empty()) {
      crash->set_power_loss(p_.crash_mode, p_.crash_seed);
      detail += "; the power loss keeps what the crash model's " + p_.crash_mode + " mode keeps";
    }
    return detail;
  }

  void delivered(TrialPort& port) override {
    if (auto* crash = port.bench().parts().crash_storage.get()) {
      const auto loss = crash->last_power_loss();
      if (!loss.is_null()) port.note("power-loss", {{"mode", p_.crash_mode}, {"state", loss}});
    }
    auto* cuts = port.bench().parts().cuts.get();
    if (!cuts) return;
    if (auto fell = cuts->fired()) {
      fell_ = true;
      port.note("power-cut",
                {{"at", p_.at}, {"detail", fell->detail}, {"at_ms", fell->at.count()}, {"bytes", fell->bytes}});
    } else {
      port.note("power-cut",
                {{"at", p_.at}, {"detail", "the cut did not fall: the delivery ended first"}, {"fell", false}});
    }
    cuts->disarm();
  }

  // Brown-out on a board whose flash the rig cannot count: power comes back
  // and goes again right after the console line at which the bootloader has
  // counted the boot attempt (the profile's observe.boot_attempt), the
  // moment a bootloader that never gives attempts back loses one for good;
  // on a profile without that line, after a seeded time (0-100 ms).
  void recover(TrialPort& port) override {
    if (!p_.recovery_cuts || !fell_) return;
    auto& bench = port.bench();
    Rng rng(harness::mix64(port.spec().seed ^ 0x726563757473ULL));
    for (std::uint32_t r = 0; r < p_.recovery_cuts; ++r) {
      if (cut_after_boot_attempt(port, r)) continue;
      if (bench.parts().power->is_on()) bench.power_off("brown-out");
      const auto ms = rng.between(0, 100);
      bench.power_on("brown-out");
      bench.clock().sleep_for(std::chrono::milliseconds(ms));
      bench.power_off("brown-out");
      port.note("brown-out", {{"cut", r + 1}, {"after_power_on_ms", ms}});
      port.add_detail(fmt::format("; recovery boot {} cut {} ms after power-on", r + 1, ms));
    }
  }

 private:
  PlacedCut p_;
  bool fell_ = false;
};

}  // namespace

std::string recovery_text(std::uint32_t cuts) {
  if (!cuts) return {};
  return fmt::format(", then {} more cut{} while it recovers", cuts, cuts == 1 ? "" : "s");
}

bool cut_after_boot_attempt(TrialPort& port, std::uint32_t r) {
  auto& bench = port.bench();
  const auto& attempt = bench.profile().observe.boot_attempt;
  if (attempt.empty()) return false;
  if (bench.parts().power->is_on()) bench.power_off("brown-out");
  // The boot-attempt line may come before the wait starts: only what the
  // previous boot printed is forgotten.
  bench.forget_console();
  bench.power_on("brown-out");
  const auto line = bench.wait_for_line(attempt, bench.profile().observe.boot_timeout);
  if (bench.parts().power->is_on()) bench.power_off("brown-out");
  port.note("brown-out", {{"cut", r + 1},
                          {"at", "boot-attempt"},
                          {"line", line.value_or("")},
                          {"fell", line ? "right after the boot-attempt line" : "at the boot timeout: no boot-attempt line"}});
  port.add_detail(fmt::format("; recovery boot {} cut {}", r + 1,
                              line ? "right after its boot-attempt line" : "at the boot timeout"));
  return true;
}

std::unique_ptr<harness::FaultRun> make_counted_run(const CountedCut& point) {
  return std::make_unique<CountedRun>(point);
}
std::unique_ptr<harness::FaultRun> make_placed_run(const PlacedCut& point) {
  return std::make_unique<PlacedRun>(point);
}

}  // namespace otarig::scenarios::power
