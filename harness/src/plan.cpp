#include "otarig/harness/plan.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "otarig/harness/rng.hpp"

namespace otarig::harness {

nlohmann::json TrialSpec::fault_json() const {
  nlohmann::json j;
  j["kind"] = scenario->fault.kind;
  if (scenario->fault.kind == "power-cut" && !cut_at.empty()) {
    j["at"] = cut_at;
    if (cut_at != scenario->fault.at) j["mapped_from"] = scenario->fault.at;
    if (cut_at == "download-byte") {
      j["byte"] = cut_byte;
      j["image_size"] = image_size;
    }
    if (cut_at == "time") {
      j["delay_ms"] = cut_delay_ms;
      j["update_ms"] = update_ms;
    }
    if (cut_at == "console") {
      j["pattern"] = cut_pattern;
      j["delay_ms"] = cut_delay_ms;
    }
    if (!scenario->fault.image.empty()) j["image"] = scenario->fault.image;
    if (recovery_cuts) j["recovery_cuts"] = recovery_cuts;
  } else if (scenario->fault.kind == "power-cut" || scenario->fault.kind == "flash-error") {
    j["at"] = scenario->fault.at;
    j["before_op"] = cut_op;
    j["ops_total"] = ops_total;
    j["torn"] = torn;
    if (torn) j["torn_seed"] = torn_seed;
    if (!scenario->fault.image.empty()) j["image"] = scenario->fault.image;
    if (flash_error) j["error"] = true;
    if (recovery_cuts) j["recovery_cuts"] = recovery_cuts;
  }
  if (scenario->fault.kind == "bit-rot") {
    j["slot"] = rot_running ? "running" : "other";
    j["bits"] = rot_bits;
    j["seed"] = rot_seed;
  }
  if (scenario->fault.kind == "network") {
    if (!network.empty()) j["faults"] = network;
    if (!scenario->fault.probe.empty()) j["probe"] = scenario->fault.probe;
    if (!scenario->fault.expect.empty()) j["expect"] = scenario->fault.expect;
  }
  if (scenario->fault.kind == "stale") j["serve"] = scenario->fault.serve;
  if (!variant.empty()) j["variant"] = variant;
  return j;
}

namespace {

/// Why `s` cannot run on `board`, or "" when it can.
std::string inapplicable(const Scenario& s, const BoardAbilities& board) {
  const auto& f = s.fault;
  const bool counted = f.at == "every-flash-op" || f.at == "random-flash-op";
  if (f.kind == "power-cut" && counted && !board.count_ops && !board.delivery_cuts)
    return "the board neither counts flash operations nor can cut power during a delivery";
  if (f.kind == "power-cut" && !counted && !board.delivery_cuts)
    return fmt::format("the board cannot cut power during a delivery (at: {}); it cuts at counted flash "
                       "operations instead",
                       f.at);
  if (f.kind == "flash-error" && !board.count_ops)
    return "the board does not count flash operations, so none can be made to fail";
  if (f.kind == "bit-rot" && !board.count_ops) return "the board cannot flip stored bits at rest";
  if ((f.kind == "network" || f.kind == "stale") && board.network.empty())
    return "the board does not download from the rig's update server through the fault proxy";
  if (f.kind == "network" && board.network == "off" &&
      (f.faults.find("impostor") != std::string::npos || !f.probe.empty()))
    return "the device reaches the update server without TLS (device.network.tls: off)";
  return {};
}

std::string fill_b(std::string text, std::uint64_t b) {
  for (std::size_t at; (at = text.find("${b}")) != std::string::npos;) text.replace(at, 4, std::to_string(b));
  return text;
}

}  // namespace

Plan make_plan(const Scenario& scenario, std::uint64_t seed, const CountOps& count_ops) {
  BoardAbilities board;
  board.count_ops = count_ops;
  return make_plan(scenario, seed, board);
}

Plan make_plan(const Scenario& scenario, std::uint64_t seed, const BoardAbilities& board) {
  const auto& count_ops = board.count_ops;
  Plan plan;
  std::uint64_t index = 0;
  auto add = [&](const Scenario* s) -> TrialSpec& {
    TrialSpec t;
    t.index = index++;
    t.id = fmt::format("{:05d}", t.index);
    t.scenario = s;
    t.seed = trial_seed(seed, t.index);
    plan.trials.push_back(t);
    return plan.trials.back();
  };
  for (const Scenario* s : scenario.leaves()) {
    const auto& f = s->fault;
    if (auto why = inapplicable(*s, board); !why.empty()) {
      if (!scenario.is_suite()) throw InputError(fmt::format("{}: scenario '{}' cannot run: {}", f.where, s->name, why));
      plan.skipped.push_back({s->name, why});
      continue;
    }
    const bool counted = f.at == "every-flash-op" || f.at == "random-flash-op";
    if (f.kind == "power-cut" && (!counted || !count_ops)) {
      // Cuts placed in the delivery: at a download byte, a time, a console line.
      const auto& name = f.image.empty() ? s->deliver : s->deliver + "/" + f.image;
      const std::uint64_t size = board.image_size ? board.image_size(s->deliver) : 0;
      const bool timed = f.at == "random-time" || f.at == "every-flash-op" || f.at == "random-flash-op";
      std::uint64_t ms = 0;
      if (timed) {
        const auto key = s->start + "->" + name;
        auto it = plan.update_ms.find(key);
        ms = it != plan.update_ms.end() ? it->second : (board.update_ms ? board.update_ms(s->start, name) : 0);
        plan.update_ms[key] = ms;
      }
      // The window of time cuts: the clean update and a quarter more (the reboot after it).
      const std::uint64_t window = std::max<std::uint64_t>(1, ms + ms / 4);
      auto placed = [&](TrialSpec& t, const std::string& at) {
        t.cut_at = at;
        t.image_size = size;
        t.update_ms = ms;
        if (f.recovery_cuts)
          t.recovery_cuts = static_cast<std::uint32_t>(
              Rng(mix64(t.seed ^ 0x62726f776e6f7574ULL)).between(1, f.recovery_cuts));
      };
      if (f.at == "download-byte" || f.at == "every-flash-op") {
        if (size == 0) throw BenchError(fmt::format("{}: the image of {} is empty", s->name, s->deliver));
        for (std::uint32_t i = 0; i < f.points; ++i) {
          auto& t = add(s);
          placed(t, "download-byte");
          t.cut_byte = size * i / f.points;
        }
        if (f.at == "every-flash-op") {
          const std::uint32_t n = std::max<std::uint32_t>(1, f.points / 2);
          for (std::uint32_t i = 0; i < n; ++i) {
            auto& t = add(s);
            placed(t, "time");
            t.cut_delay_ms = static_cast<std::uint32_t>(window * (2 * i + 1) / (2 * n));
          }
        }
      } else {
        for (std::uint64_t i = 0; i < std::max<std::uint64_t>(1, s->trials); ++i) {
          auto& t = add(s);
          Rng rng(t.seed);
          if (f.at == "console") {
            placed(t, "console");
            t.cut_pattern = f.pattern;
            t.cut_delay_ms = static_cast<std::uint32_t>(rng.between(0, f.delay_ms));
          } else if (f.at == "random-flash-op" && size > 0 && rng.chance(0.5)) {
            placed(t, "download-byte");
            t.cut_byte = rng.below(size);
          } else {
            placed(t, "time");
            t.cut_delay_ms = static_cast<std::uint32_t>(rng.below(window));
          }
        }
      }
      continue;
    }
    if (f.kind == "power-cut" || f.kind == "flash-error") {
      // The update under the cuts: the release, or its twin that fails its self-test ("NAME/self-test-fail").
      const auto delivered = f.image.empty() ? s->deliver : s->deliver + "/" + f.image;
      auto key = s->start + "->" + delivered;
      auto it = plan.ops_per_update.find(key);
      std::uint64_t n = it != plan.ops_per_update.end() ? it->second : count_ops(s->start, delivered);
      plan.ops_per_update[key] = n;
      if (n == 0) throw BenchError(fmt::format("{}: the update from {} to {} did no flash operation", s->name,
                                               s->start, delivered));
      // Brown-out: how many recovery boots are cut again, from a stream of its own.
      auto counted_cut = [&](TrialSpec& t) {
        t.ops_total = n;
        t.flash_error = f.kind == "flash-error";
        if (f.recovery_cuts) t.recovery_cuts = static_cast<std::uint32_t>(
                                 Rng(mix64(t.seed ^ 0x62726f776e6f7574ULL)).between(1, f.recovery_cuts));
      };
      if (f.at == "every-flash-op") {
        for (std::uint64_t k = 1; k <= n; ++k) {
          auto& t = add(s);
          t.cut_op = k;
          counted_cut(t);
          if (f.torn > 0) {
            auto& torn = add(s);
            torn.cut_op = k;
            torn.torn = true;
            torn.torn_seed = Rng(torn.seed).next();
            counted_cut(torn);
          }
        }
      } else {
        for (std::uint64_t i = 0; i < s->trials; ++i) {
          auto& t = add(s);
          Rng rng(t.seed);
          t.cut_op = rng.between(1, n);
          t.torn = rng.chance(f.torn);
          t.torn_seed = rng.next();
          counted_cut(t);
        }
      }
    } else if (f.kind == "tamper") {
      for (const auto& v : f.variants) add(s).variant = v;
    } else if (f.kind == "network") {
      const std::uint64_t size = board.image_size ? board.image_size(s->deliver) : 0;
      for (std::uint64_t i = 0; i < std::max<std::uint64_t>(1, s->trials); ++i) {
        auto& t = add(s);
        t.image_size = size;
        t.network = fill_b(f.faults, size ? Rng(mix64(t.seed ^ 0x6e6574ULL)).below(size) : 0);
      }
    } else if (f.kind == "bit-rot") {
      for (std::uint64_t i = 0; i < std::max<std::uint64_t>(1, s->trials); ++i) {
        auto& t = add(s);
        Rng rng(t.seed);
        t.rot_running = f.slot == "running" || (f.slot == "any" && rng.chance(0.5));
        t.rot_bits = static_cast<std::uint32_t>(rng.between(1, f.bits));
        t.rot_seed = rng.next();
      }
    } else {
      std::uint64_t count = std::max<std::uint64_t>(1, s->trials);
      for (std::uint64_t i = 0; i < count; ++i) add(s);
    }
  }
  return plan;
}

void limit_plan(Plan& plan, std::uint64_t n, std::uint64_t seed) {
  if (n >= plan.trials.size()) return;
  // A seeded partial Fisher-Yates picks which trials stay; order is kept.
  std::vector<std::size_t> idx(plan.trials.size());
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  Rng rng(mix64(seed ^ 0x6c696d6974ULL));
  for (std::size_t i = 0; i < n; ++i) std::swap(idx[i], idx[i + rng.below(idx.size() - i)]);
  idx.resize(n);
  std::sort(idx.begin(), idx.end());
  std::vector<TrialSpec> kept;
  for (auto i : idx) kept.push_back(plan.trials[i]);
  plan.trials = std::move(kept);
}

void shard_plan(Plan& plan, unsigned shard, unsigned count) {
  std::erase_if(plan.trials, [&](const TrialSpec& t) { return t.index % count != shard; });
}

}  // namespace otarig::harness
