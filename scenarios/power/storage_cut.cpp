// Power cuts at recorded storage operations (process and client boards whose
// storage is a folder under the recording layer, docs/crash-model.md): the
// device finds the crash state of a recorded clean update, cut before its
// storage operation k, in one of the crash model's modes.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <re2/re2.h>

#include <algorithm>
#include <stdexcept>

#include "otarig/harness/bench.hpp"
#include "otarig/harness/plan.hpp"
#include "otarig/harness/releases.hpp"
#include "otarig/harness/rng.hpp"
#include "otarig/harness/scenario.hpp"
#include "otarig/harness/trial.hpp"
#include "power.hpp"
#include "runs.hpp"

namespace otarig::scenarios::power {
namespace {

using harness::Rng;
using harness::TrialPort;

// "write /flash.bin 4096+512" for the evidence.
std::string op_text(const nlohmann::json& op) {
  if (!op.is_object()) return "the end of the recording";
  std::string text = op.value("kind", "?") + " " + op.value("path", "");
  if (op.contains("path2") && !op["path2"].get<std::string>().empty()) text += " -> " + op.value("path2", "");
  if (op.value("length", std::uint64_t{0}) || op.value("kind", "") == "write")
    text += fmt::format(" {}+{}", op.value("offset", std::uint64_t{0}), op.value("length", std::uint64_t{0}));
  return text;
}

// What a crash state keeps of the pending operations: two modes that keep the
// same operations (and tear the same sectors) give the same state.
nlohmann::json state_key(const nlohmann::json& plan) {
  return {plan.value("kept", nlohmann::json::array()), plan.value("torn", nlohmann::json())};
}

std::string shorten(const std::string& line) {
  return line.size() > 120 ? line.substr(0, 117) + "..." : line;
}

// The first line of a recording's console (after the update command)
// matching `pattern` (RE2, anywhere in the line, as the console-command
// link matches), or null.
const nlohmann::json* first_line(const nlohmann::json& console, const std::string& pattern) {
  const re2::RE2 re(pattern, re2::RE2::Quiet);
  if (!re.ok()) throw InputError(fmt::format("console pattern '{}': {}", pattern, re.error()));
  for (const auto& entry : console)
    if (re2::RE2::PartialMatch(entry.value("line", ""), re)) return &entry;
  return nullptr;
}

// The recording of a brown-out's recovery boot (one at a time: each replaces it).
constexpr const char* kRecoveryKey = "brown-out recovery boot";

class StorageCutRun final : public harness::FaultRun {
 public:
  explicit StorageCutRun(const StorageCut& p) : p_(p) {}

  std::string inject(TrialPort& port) override {
    if (p_.image == "self-test-fail") {
      const auto& base = port.releases().get(port.scenario().deliver);
      Rng rng(port.spec().seed ^ 0x696d616765ULL);
      port.use_image(port.releases().make_variant(base, "self-test-fail", "", rng, nullptr));
    }
    auto& bench = port.bench();
    auto* crash = bench.parts().crash_storage.get();
    if (!crash)
      throw BenchError(fmt::format("{}: the board's storage is not under the crash model", bench.profile().name));
    ensure_recording(port, *crash);
    bench.power_off("inject");
    const auto state = crash->apply_crash(p_.key, p_.before_op, p_.mode, p_.seed);
    port.note("crash-state", {{"recording", p_.key}, {"state", state}});
    const auto pending = state.value("pending", nlohmann::json::array());
    std::size_t kept = 0;
    for (const auto& op : pending)
      if (op.value("kept", false)) ++kept;
    port.record_cut({{"op", p_.before_op}, {"ops_total", p_.ops_total}, {"kind", p_.op.is_object() ? p_.op.value("kind", "") : "end"}, {"address", p_.op.is_object() ? p_.op.value("path", "") : ""}, {"phase", p_.op.is_object() ? p_.op.value("path", "") : "(end)"}, {"torn", state.contains("torn") && state["torn"].is_object()}, {"mode", p_.mode}});
    std::string detail = fmt::format("power cut before storage operation {} of {} ({}), crash mode {}: {} of {} "
                                     "operations after the last barrier persisted",
                                     p_.before_op, p_.ops_total, op_text(p_.op), p_.mode, kept, pending.size());
    if (!p_.pattern.empty() && !p_.line.empty())
      detail += fmt::format("; the cut falls at operation {} of {} the device makes after console line '{}'",
                            p_.after_line, p_.ops_after_line + 1, shorten(p_.line));
    else if (!p_.pattern.empty())
      detail += fmt::format("; no console line matched '{}' after the update command in the recorded clean "
                            "update, so the cut falls after its last operation",
                            p_.pattern);
    if (!p_.same_as.empty()) detail += fmt::format(" (the same state as mode {})", fmt::join(p_.same_as, ", "));
    detail += recovery_text(p_.recovery_cuts);
    if (state.contains("torn") && state["torn"].is_object())
      detail += fmt::format("; write {} torn: {} of {} sectors landed", state["torn"].value("op", 0),
                            state["torn"].value("landed", nlohmann::json::array()).size(),
                            state["torn"].value("sectors", 0));
    return detail;
  }

  // Each bench (device) keeps its own recordings: a bench that did not plan
  // the campaign records the same clean update once, and it must be the same.
  void ensure_recording(TrialPort& port, drivers::CrashStorageProtocol& crash) {
    try {
      (void)crash.recorded_ops(p_.key);
      return;
    } catch (const std::out_of_range&) {
    }
    port.hold_transcript();
    const auto arrow = p_.key.find("->");
    const auto n = harness::record_update_storage(port.bench(), port.releases(), p_.key.substr(0, arrow),
                                                  p_.key.substr(arrow + 2));
    port.discard_transcript();
    if (n != p_.ops_total)
      throw BenchError(fmt::format("{}: recording the update {} again gave {} storage operations, not {}: the "
                                   "device's update does not write the same way twice, so its crash states "
                                   "cannot be planned once",
                                   port.bench().profile().name, p_.key, n, p_.ops_total));
    if (p_.line.empty()) return;
    const auto console = crash.recorded_console(p_.key);
    const auto* line = first_line(console, p_.pattern);
    const auto before = line ? line->value("ops", std::uint64_t{0}) : std::uint64_t{0};
    if (!line || before != p_.ops_before_line)
      throw BenchError(fmt::format("{}: recording the update {} again, the device printed '{}' after {} storage "
                                   "operations, not {}: the cut after that line cannot be planned once",
                                   port.bench().profile().name, p_.key, shorten(p_.line),
                                   line ? std::to_string(before) : std::string("no"), p_.ops_before_line));
  }

  // The update is the recording: the device finds its crash state at power-on.
  void deliver(TrialPort& port, const std::string&) override {
    port.no_delivery(fmt::format("no delivery: the device finds the crash state of the recorded update {}",
                                 p_.key));
  }

  // Brown-out: power fails again while the device recovers. On a profile
  // with a boot-attempt line each further cut falls right after it. Otherwise
  // each recovery boot runs until the device answers its status (or its boot
  // timeout), its storage operations are kept as a recording, and the storage
  // becomes that boot's crash state cut before a seeded one of them, in a
  // seeded mode: on any host the same operation is cut. What that boot
  // printed past the cut never happened, so it is kept out of the console log.
  void recover(TrialPort& port) override {
    if (!p_.recovery_cuts) return;
    auto& bench = port.bench();
    auto* crash = bench.parts().crash_storage.get();
    const auto& modes = port.scenario().fault.as<CutOptions>().modes;
    Rng rng(harness::mix64(port.spec().seed ^ 0x726563757473ULL));
    for (std::uint32_t r = 0; r < p_.recovery_cuts; ++r) {
      if (cut_after_boot_attempt(port, r)) continue;
      if (bench.parts().power->is_on()) bench.power_off("brown-out");
      port.hold_transcript();
      bench.power_on("brown-out");
      const auto up = bench.observe("brown-out");
      const std::uint64_t n = crash->keep_recording(kRecoveryKey);
      if (n == 0) {
        port.keep_transcript();
        bench.power_off("brown-out");
        port.note("brown-out", {{"cut", r + 1}, {"storage_ops", 0}, {"detail", "the recovery boot writes no storage"}});
        port.add_detail(fmt::format("; recovery boot {} writes no storage, so no cut falls in it", r + 1));
        return;
      }
      port.discard_transcript();
      bench.power_off("brown-out");
      const auto k = rng.between(1, n);
      const auto& mode = modes[rng.below(modes.size())];
      const auto seed = rng.next();
      const auto ops = crash->recorded_ops(kRecoveryKey);
      const auto& op = ops.at(k - 1);
      const auto state = crash->apply_crash(kRecoveryKey, k, mode, seed);
      port.note("brown-out", {{"cut", r + 1},
                              {"at", "storage-op"},
                              {"storage_ops", n},
                              {"status_answered", up.booted},
                              {"before_op", k},
                              {"op", op},
                              {"mode", mode},
                              {"crash_seed", seed},
                              {"state", state}});
      port.add_detail(fmt::format("; recovery boot {} cut before storage operation {} of {} ({}), crash mode {}",
                                  r + 1, k, n, op_text(op), mode));
    }
  }

 private:
  StorageCut p_;
};

}  // namespace

nlohmann::json StorageCut::json() const {
  nlohmann::json j{{"at", at}, {"storage_op", before_op}, {"ops_total", ops_total}, {"mode", mode},
                   {"crash_seed", seed}, {"recording", key}};
  // The chart and the fault point read a counted cut's fields.
  j["before_op"] = before_op;
  if (op.is_object()) j["op"] = op;
  if (!same_as.empty()) j["same_as"] = same_as;
  if (!image.empty()) j["image"] = image;
  if (recovery_cuts) j["recovery_cuts"] = recovery_cuts;
  if (!pattern.empty()) {
    j["pattern"] = pattern;
    j["line"] = line;
    j["ops_before_line"] = ops_before_line;
    j["after_line"] = after_line;
    j["ops_after_line"] = ops_after_line;
  }
  return j;
}

std::string StorageCut::label() const {
  if (!line.empty())
    return fmt::format("power-cut storage op {}/{} (#{} after '{}') {}", before_op, ops_total, after_line,
                       shorten(line), mode);
  return fmt::format("power-cut storage op {}/{} {}{}", before_op, ops_total, mode,
                     recovery_cuts ? fmt::format(" +{} recovery cuts", recovery_cuts) : std::string());
}

std::string StorageCut::text() const {
  if (!line.empty())
    return fmt::format("power-cut before storage op {}/{} ({}), operation {} after console line '{}' [{}]",
                       before_op, ops_total, op_text(op), after_line, shorten(line), mode);
  return fmt::format("power-cut before storage op {}/{} ({}) [{}]", before_op, ops_total, op_text(op), mode);
}

bool plan_console_storage_cuts(harness::PlanContext& ctx, const CutOptions& f, const std::string& delivered) {
  auto* crash = ctx.board().crash_storage;
  if (!crash) return false;
  const auto& s = ctx.scenario();
  const auto key = s.start + "->" + delivered;
  const std::uint64_t n = ctx.storage_ops(delivered);
  const auto console = crash->recorded_console(key);
  if (console.empty()) return false;
  const auto ops = crash->recorded_ops(key);
  const auto patterns = f.patterns.empty() ? std::vector<std::string>{f.pattern} : f.patterns;
  for (std::uint64_t i = 0; i < std::max<std::uint64_t>(1, s.trials); ++i) {
    auto& t = ctx.add();
    Rng rng(t.seed);
    auto p = std::make_shared<StorageCut>();
    p->at = f.at;
    p->key = key;
    p->ops_total = n;
    p->image = f.image;
    p->pattern = patterns[i % patterns.size()];
    if (p->pattern == "${banner}") p->pattern = ctx.board().banner;
    if (const auto* line = first_line(console, p->pattern)) {
      p->line = line->value("line", "");
      p->ops_before_line = std::min(line->value("ops", std::uint64_t{0}), n);
      p->ops_after_line = n - p->ops_before_line;
      // 1..after: before each operation after the line; after+1: after them all.
      p->after_line = rng.between(1, p->ops_after_line + 1);
      p->before_op = p->ops_before_line + p->after_line;
    } else {
      p->before_op = n + 1;
    }
    p->mode = f.modes[rng.below(f.modes.size())];
    p->seed = harness::mix64(t.seed ^ 0x6372617368ULL);
    if (p->before_op >= 1 && p->before_op <= ops.size()) p->op = ops[p->before_op - 1];
    t.point = std::move(p);
  }
  return true;
}

void plan_storage_cuts(harness::PlanContext& ctx, const CutOptions& f, const std::string& delivered) {
  const auto& s = ctx.scenario();
  const auto key = s.start + "->" + delivered;
  const std::uint64_t n = ctx.storage_ops(delivered);
  auto* crash = ctx.board().crash_storage;
  if (n == 0 || !crash)
    throw BenchError(fmt::format("{}: the update from {} to {} did no storage operation", s.name, s.start, delivered));
  const auto ops = crash->recorded_ops(key);
  auto cut = [&](const harness::TrialSpec& t, std::uint64_t k, const std::string& mode) {
    auto p = std::make_shared<StorageCut>();
    p->at = f.at;
    p->key = key;
    p->before_op = k;
    p->ops_total = n;
    p->mode = mode;
    p->seed = harness::mix64(t.seed ^ 0x6372617368ULL);
    p->image = f.image;
    if (k >= 1 && k <= ops.size()) p->op = ops[k - 1];
    return p;
  };
  if (f.at == "every-flash-op") {
    // Every cut point (before each operation, and after the last), in each
    // mode the scenario names; a mode whose crash state equals an earlier
    // mode's at the same point is one trial, which says so.
    for (std::uint64_t k = 1; k <= n + 1; ++k) {
      std::vector<std::pair<nlohmann::json, std::vector<std::string>>> states;  // key, modes
      std::vector<std::string> first_modes;
      for (const auto& mode : f.modes) {
        const auto seed = harness::mix64(harness::trial_seed(ctx.seed(), k) ^ 0x6372617368ULL);
        const auto key_of = state_key(crash->plan_crash(key, k, mode, seed));
        auto it = std::find_if(states.begin(), states.end(), [&](const auto& e) { return e.first == key_of; });
        if (it != states.end()) {
          it->second.push_back(mode);
          continue;
        }
        states.push_back({key_of, {mode}});
      }
      for (const auto& [state, modes] : states) {
        auto& t = ctx.add();
        auto p = cut(t, k, modes.front());
        p->seed = harness::mix64(harness::trial_seed(ctx.seed(), k) ^ 0x6372617368ULL);
        p->same_as.assign(modes.begin() + 1, modes.end());
        t.point = std::move(p);
      }
    }
    return;
  }
  for (std::uint64_t i = 0; i < s.trials; ++i) {
    auto& t = ctx.add();
    Rng rng(t.seed);
    const auto k = rng.between(1, n + 1);
    const auto& mode = f.modes[rng.below(f.modes.size())];
    auto p = cut(t, k, mode);
    p->recovery_cuts = recovery_cut_count(t.seed, f.recovery_cuts);
    t.point = std::move(p);
  }
}

std::unique_ptr<harness::FaultRun> make_storage_run(const StorageCut& point) {
  return std::make_unique<StorageCutRun>(point);
}

}  // namespace otarig::scenarios::power
