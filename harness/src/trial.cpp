#include "otarig/harness/trial.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>

#include <thread>

#include "otarig/core/image.hpp"
#include "otarig/drivers/process/cut.hpp"
#include "otarig/harness/rng.hpp"

namespace otarig::harness {

const char* to_string(TrialStep s) {
  switch (s) {
    case TrialStep::prepare: return "prepare";
    case TrialStep::inject: return "inject";
    case TrialStep::deliver: return "deliver";
    case TrialStep::recover: return "recover";
    case TrialStep::observe: return "observe";
    case TrialStep::retry: return "retry";
    case TrialStep::judge: return "judge";
    case TrialStep::record: return "record";
    case TrialStep::done: return "done";
  }
  return "?";
}

std::vector<std::string> TrialOutcome::broken() const {
  std::vector<std::string> out;
  for (const auto& o : oracles)
    if (!o.held) out.push_back(o.name);
  return out;
}

nlohmann::json erase_runs(const std::vector<std::uint32_t>& counts) {
  nlohmann::json runs = nlohmann::json::array();
  for (std::size_t i = 0; i < counts.size();) {
    std::size_t j = i;
    while (j + 1 < counts.size() && counts[j + 1] == counts[i]) ++j;
    if (counts[i] != 0) runs.push_back({{"sectors", {i, j}}, {"erases", counts[i]}});
    i = j + 1;
  }
  return runs;
}

namespace {

nlohmann::json obs_json(const Observation& o) {
  nlohmann::json j{{"step", o.step}, {"booted", o.booted}};
  if (o.booted) {
    j["slot"] = o.slot;
    j["version"] = o.version;
    j["digest"] = o.digest;
    if (o.counter) j["counter"] = *o.counter;
    if (!o.state.empty()) j["state"] = o.state;
    if (!o.health.empty()) j["health"] = o.health;
  }
  j["waited_ms"] = o.waited_ms;
  return j;
}

std::string op_text(const drivers::FlashOp& op) {
  return fmt::format("{} {:#010x}+{} (phase {})", op.kind == drivers::FlashOp::Kind::erase ? "erase" : "program",
                     op.address, op.length, op.phase);
}

bool has_tag(const BoardProfile& profile, const std::string& tag) {
  const auto tags = profile.root.find("tags");
  if (!tags) return false;
  const auto list = tags->as_string_list();
  return std::find(list.begin(), list.end(), tag) != list.end();
}

// A board tagged `no-trial-boot` installs an image for good before it runs
// (overwrite-only): it cannot revert one that fails its self-test. It is held
// to what it can do instead: report the failure (health=failed on the image it
// was given) and take the next clean update. Every other unhealthy or silent
// observation still breaks `recovered`.
OracleResult recovered_without_revert(const OracleInput& in) {
  OracleResult r{"recovered", true, ""};
  for (std::size_t i = in.fault_index; i < in.history.size(); ++i) {
    const auto& o = in.history[i];
    if (!o.booted) {
      r.held = false;
      r.detail = fmt::format("{}: no healthy boot within the boot budget ({:.0f} ms waited)", o.step, o.waited_ms);
      return r;
    }
    if (o.health.empty() || o.health == "ok") continue;
    const bool reported = o.digest == in.delivered_digest && o.health == "failed" &&
                          (!in.has_retry || i < in.retry_index);
    if (!reported) {
      r.held = false;
      r.detail = fmt::format("{}: the device runs but reports health={} (a board without trial boot must report "
                             "the failing image and take the next update)",
                             o.step, o.health);
      return r;
    }
  }
  return r;
}

// How many bytes past the image an endless body may have been sent when the
// device let go at the image's declared size: what the sockets between the
// update server and the device (server, fault proxy, device, each direction's
// kernel buffers) can hold. More than this was read by the device.
constexpr std::uint64_t kEndlessSlack = 16u << 20;

drivers::process::CutProtocol* delivery_cuts(Bench& bench) {
  return dynamic_cast<drivers::process::CutProtocol*>(bench.parts().link.get());
}

// The board's link when its device reads the release feed, else null.
drivers::process::ReleaseFeedProtocol* release_feed(Bench& bench) {
  auto* feed = dynamic_cast<drivers::process::ReleaseFeedProtocol*>(bench.parts().link.get());
  return feed && feed->follows_feed() ? feed : nullptr;
}

drivers::process::NetworkFaultProtocol* network_faults(Bench& bench) {
  return dynamic_cast<drivers::process::NetworkFaultProtocol*>(bench.parts().link.get());
}

class Runner {
 public:
  Runner(Bench& bench, const ReleaseSet& releases, const TrialSpec& spec, const TrialHooks* hooks)
      : bench_(bench), releases_(releases), spec_(spec), hooks_(hooks), s_(*spec.scenario) {
    out_.spec = spec;
  }

  TrialOutcome run() {
    auto wall_start = std::chrono::steady_clock::now();
    bench_.begin_transcript();
    for (TrialStep step = TrialStep::prepare; step != TrialStep::done; step = next(step)) {
      note_console_events();
      event(step);
      switch (step) {
        case TrialStep::prepare: prepare(); break;
        case TrialStep::inject: inject(); break;
        case TrialStep::deliver: deliver(); break;
        case TrialStep::recover: recover(); break;
        case TrialStep::observe: observe(); break;
        case TrialStep::retry: retry(); break;
        case TrialStep::judge: judge_trial(); break;
        case TrialStep::record: break;
        case TrialStep::done: break;
      }
    }
    bench_.drain_console();
    out_.transcript = std::move(kept_transcript_);
    for (auto& line : bench_.take_transcript()) out_.transcript.push_back(std::move(line));
    note_console_events();
    if (bench_.parts().flash_faults) out_.erase_counts = bench_.parts().flash_faults->erase_counts();
    out_.duration_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - wall_start).count();
    return std::move(out_);
  }

 private:
  static TrialStep next(TrialStep s) { return static_cast<TrialStep>(static_cast<int>(s) + 1); }

  void event(TrialStep step, nlohmann::json extra = nlohmann::json::object()) {
    extra["type"] = "step";
    extra["step"] = to_string(step);
    extra["t_ms"] = std::chrono::duration<double, std::milli>(bench_.clock().now()).count();
    out_.events.push_back(std::move(extra));
  }
  void note(const std::string& type, nlohmann::json data) {
    data["type"] = type;
    out_.events.push_back(std::move(data));
  }
  // The console driver's own events (the adapter vanished, came back), so the
  // evidence shows a gap in the console: t_ms on the steps' clock, console_ms
  // as console.log's stamps.
  void note_console_events() {
    for (const auto& e : bench_.take_console_events())
      note("console", {{"event", e.event},
                       {"detail", e.text},
                       {"t_ms", std::chrono::duration<double, std::milli>(e.at).count()},
                       {"console_ms", e.t_ms}});
  }

  drivers::DeliveryResult deliver_image(const BuiltImage& img, const std::string& step,
                                        bool as_stale_release = false) {
    if (!bench_.parts().power->is_on()) bench_.power_on(step);
    if (auto* feed = release_feed(bench_)) {
      feed->describe_next(img.version, img.security_counter);
      if (as_stale_release) feed->serve_as_release(img.name);
    }
    auto* ff = bench_.parts().flash_faults.get();
    const auto erases_before = ff ? ff->erase_counts() : std::vector<std::uint32_t>{};
    drivers::DeliveryResult r;
    try {
      r = bench_.parts().link->deliver(releases_.artifact(img));
    } catch (const BenchError&) {
      throw;
    } catch (const std::exception& e) {
      throw BenchError(fmt::format("{}: delivering {} during {} failed: {}", bench_.profile().name, img.name, step,
                                   e.what()));
    }
    note("delivery", {{"step", step},
                      {"image", img.name},
                      {"status", drivers::to_string(r.status)},
                      {"detail", r.detail},
                      {"bytes", r.bytes_sent}});
    if (ff) {
      // The erase cycles this delivery cost (the update, and the reboots it ran).
      const auto after = ff->erase_counts();
      std::uint64_t total = 0, max = 0;
      std::vector<std::uint32_t> delta(after.size(), 0);
      for (std::size_t i = 0; i < after.size() && i < erases_before.size(); ++i) {
        delta[i] = after[i] >= erases_before[i] ? after[i] - erases_before[i] : after[i];
        total += delta[i];
        max = std::max<std::uint64_t>(max, delta[i]);
      }
      note("wear", {{"step", step}, {"erases", total}, {"max_per_sector", max}, {"per_sector", erase_runs(delta)}});
    }
    return r;
  }

  void power_up_if_off(const std::string& step) {
    if (!bench_.parts().power->is_on()) bench_.power_on(step);
  }

  Observation look(const std::string& step) {
    auto o = bench_.observe(step);
    note("observation", obs_json(o));
    out_.observations.push_back(o);
    return o;
  }

  void prepare() {
    const auto& start = releases_.get(s_.start);
    auto& parts = bench_.parts();
    if (parts.flash_faults) parts.flash_faults->disarm();
    if (auto* cuts = delivery_cuts(bench_)) cuts->disarm();
    if (auto* net = network_faults(bench_)) {
      net->set_network_faults("", 0);
      (void)net->take_network_events();
    }
    if (!parts.provision)
      throw BenchError(fmt::format("{}: prepare: the board cannot be provisioned with a known-good image",
                                   bench_.profile().name));
    bench_.power_off("prepare");
    parts.provision->provision(start.bytes);
    bench_.power_on("prepare");
    auto o = look("prepare");
    if (!o.booted || o.digest != start.digest)
      throw BenchError(fmt::format("{}: prepare: the device did not come up on release {} after provisioning{}",
                                   bench_.profile().name, start.name,
                                   o.booted ? fmt::format(" (it runs {})", o.digest.substr(0, 12)) : ""));
    for (const auto& name : s_.before) {
      const auto& rel = releases_.get(name);
      auto r = deliver_image(rel, "before:" + name);
      power_up_if_off("before:" + name);
      auto ob = look("before:" + name);
      if (r.status != drivers::DeliveryStatus::accepted || !ob.booted || ob.digest != rel.digest)
        setup_problem_ = fmt::format("the clean update to {} before the fault did not take ({}: {})", name,
                                     drivers::to_string(r.status), r.detail);
    }
    before_digest_ = out_.observations.back().booted ? out_.observations.back().digest : start.digest;
  }

  void inject() {
    const auto& f = s_.fault;
    const auto& base = releases_.get(s_.deliver);
    Rng rng(spec_.seed ^ 0x696d616765ULL);
    std::string detail;
    if (f.kind == "tamper" || f.kind == "unsigned" || f.kind == "wrong-key" || f.kind == "self-test-fail") {
      variant_ = releases_.make_variant(base, f.kind, spec_.variant, rng, &detail);
      image_ = &*variant_;
    } else if (f.kind == "power-cut" && f.image == "self-test-fail") {
      variant_ = releases_.make_variant(base, "self-test-fail", "", rng, &detail);
      image_ = &*variant_;
    } else if (f.kind == "major-downgrade") {
      variant_ = major_downgrade(base, &detail);
      image_ = &*variant_;
    } else if (f.kind == "stale") {
      image_ = &releases_.get(f.serve);
      if (release_feed(bench_)) {
        stale_feed_ = true;
        detail = fmt::format("the update server's feed is frozen at an older release: asked for the latest, "
                             "expected {} ({}), it answers with the manifest of {} ({}) and serves its image",
                             base.name, base.version, image_->name, image_->version);
      } else {
        detail = fmt::format("the update server answers the request for {} ({}) with the image of {} ({}) at "
                             "the update's URL (the device's update command reads no manifest)",
                             base.name, base.version, image_->name, image_->version);
      }
    } else {
      image_ = &base;
      if (f.kind == "replay") detail = fmt::format("replay of older release {} ({})", base.name, base.version);
    }
    if (f.kind == "power-cut" && !spec_.cut_at.empty()) {
      arm_delivery_cut(detail);
    } else if (f.kind == "power-cut" || f.kind == "flash-error") {
      auto* ff = bench_.parts().flash_faults.get();
      if (!ff) throw BenchError(fmt::format("{}: the board cannot {} at a flash operation", bench_.profile().name,
                                            spec_.flash_error ? "fail" : "cut power"));
      ff->arm(drivers::FlashCut{spec_.cut_op, spec_.torn, spec_.torn_seed, spec_.flash_error});
      const std::string what = detail;
      if (spec_.flash_error)
        detail = fmt::format("flash operation {} of {} fails with an error{}", spec_.cut_op, spec_.ops_total,
                             spec_.torn ? " after part of it landed" : "");
      else
        detail = fmt::format("power cut {} flash operation {} of {}", spec_.torn ? "tearing" : "before",
                             spec_.cut_op, spec_.ops_total);
      if (spec_.recovery_cuts)
        detail += fmt::format(", then {} more cut{} while it recovers", spec_.recovery_cuts,
                              spec_.recovery_cuts == 1 ? "" : "s");
      if (!what.empty()) detail += " (delivering a " + what + ")";
    }
    if (f.kind == "network") {
      auto* net = network_faults(bench_);
      if (!net) throw BenchError(fmt::format("{}: the board has no fault proxy to inject network faults with",
                                             bench_.profile().name));
      net->set_network_faults(spec_.network, spec_.seed);
      std::vector<std::string> parts;
      if (!spec_.network.empty()) parts.push_back("network faults " + spec_.network);
      if (!f.probe.empty()) parts.push_back("a client without a certificate asks the update server for the image");
      if (f.expects("installed")) parts.push_back("the device must still finish the update");
      if (f.expects("stays-up"))
        parts.push_back("the device must give up or finish by itself within the link's timeout and answer its "
                        "status right after, before any power cycle");
      detail = fmt::format("{}", fmt::join(parts, "; "));
    }
    if (f.kind == "bit-rot") {
      auto* ff = bench_.parts().flash_faults.get();
      bench_.power_off("inject");
      std::optional<std::string> flipped;
      if (ff) flipped = ff->flip_at_rest(drivers::StorageFlip{spec_.rot_running, spec_.rot_bits, spec_.rot_seed});
      if (!flipped)
        throw BenchError(fmt::format("{}: the board cannot flip stored bits at rest", bench_.profile().name));
      detail = "storage fault at rest: " + *flipped;
    }
    out_.delivered = image_->name;
    out_.fault_detail = detail;
    note("fault", {{"fault", spec_.fault_json()}, {"detail", detail}, {"image", image_->name},
                   {"image_digest", image_->digest}});
  }

  void deliver() {
    if (s_.fault.kind == "bit-rot") {
      // The fault is the storage itself: nothing is delivered; the device boots what it holds.
      out_.delivery_status = "none";
      out_.delivery_detail = "no delivery: the image at rest was corrupted";
      return;
    }
    drivers::DeliveryResult r;
    try {
      r = deliver_image(*image_, "deliver", stale_feed_);
    } catch (...) {
      if (auto* net = network_faults(bench_)) net->set_network_faults("", 0);
      throw;
    }
    out_.delivery_status = drivers::to_string(r.status);
    out_.delivery_detail = r.detail;
    if (auto* cuts = delivery_cuts(bench_); cuts && !spec_.cut_at.empty()) {
      if (auto fell = cuts->fired()) {
        placed_cut_fell_ = true;
        note("power-cut", {{"at", spec_.cut_at}, {"detail", fell->detail}, {"at_ms", fell->at.count()},
                           {"bytes", fell->bytes}});
      } else {
        note("power-cut", {{"at", spec_.cut_at},
                           {"detail", "the cut did not fall: the delivery ended first"},
                           {"fell", false}});
      }
      cuts->disarm();
    }
    if (auto* net = network_faults(bench_)) {
      auto events = net->take_network_events();
      net->set_network_faults("", 0);
      nlohmann::json list = nlohmann::json::array();
      for (const auto& e : events) list.push_back(nlohmann::json::parse(e, nullptr, false));
      for (const auto& e : list)
        if (e.is_object() && e.value("source", "") == "server" && e.value("kind", "") == "endless-body")
          judge_endless_body(e);
      if (!list.empty()) note("network", {{"step", "deliver"}, {"events", std::move(list)}});
      if (s_.fault.probe == "no-client-certificate") {
        probe_ = net->probe_without_client_certificate();
        note("probe", {{"probe", s_.fault.probe}, {"answered", probe_->answered}, {"detail", probe_->detail}});
      }
    }
    if (auto* ff = bench_.parts().flash_faults.get(); ff && s_.fault.kind == "power-cut") {
      out_.cut_fell_at = ff->fired();
      if (out_.cut_fell_at) {
        const auto& op = *out_.cut_fell_at;
        note(spec_.flash_error ? "flash-error" : "power-cut", {{"op", op.index},
                           {"kind", op.kind == drivers::FlashOp::Kind::erase ? "erase" : "program"},
                           {"address", op.address},
                           {"length", op.length},
                           {"phase", op.phase},
                           {"torn", spec_.torn}});
      }
      ff->disarm();
    }
  }

  // DESIGN.md: after every fault the device is recovered by a power cycle, so
  // damage a running device has not noticed yet (a slot it overwrote, a
  // half-written trailer) shows at the next boot.
  void recover() {
    if (s_.fault.expects("stays-up")) check_stays_up();
    if (spec_.recovery_cuts && out_.cut_fell_at && !spec_.flash_error) brown_out();
    if (spec_.recovery_cuts && placed_cut_fell_) timed_brown_out();
    if (bench_.parts().power->is_on()) bench_.power_off("recover");
    bench_.power_on("recover");
  }

  // The device must come through a network fault by itself: it answered the
  // update command within the link's timeout (it timed out, refused or
  // installed on its own), and it answers its status now, before the
  // recovery power cycle that would hide a hung updater.
  void check_stays_up() {
    std::vector<std::string> problems;
    if (out_.delivery_status == drivers::to_string(drivers::DeliveryStatus::unreachable))
      problems.push_back(fmt::format("it did not answer the update command within the link's timeout ({})",
                                     out_.delivery_detail));
    if (!bench_.parts().power->is_on()) {
      problems.push_back("its power was off after the delivery");
    } else {
      const auto o = look("before-recovery");
      if (!o.booted)
        problems.push_back(fmt::format("it did not answer its status within {:.0f} ms afterwards, before any power "
                                       "cycle",
                                       o.waited_ms));
      else if (!o.health.empty() && o.health != "ok")
        problems.push_back(fmt::format("it reports health={} afterwards", o.health));
    }
    if (!problems.empty())
      stays_up_problem_ = fmt::format("the device did not stay up through the network fault: {}",
                                      fmt::join(problems, "; "));
    note("expectation", {{"expect", "stays-up"},
                         {"held", problems.empty()},
                         {"detail", problems.empty() ? "answered the update command and its status by itself"
                                                     : stays_up_problem_}});
  }

  // The update server's count of an endless body (a `server:endless` fault):
  // the device must stop at the image's declared size and let go.
  void judge_endless_body(const nlohmann::json& e) {
    const std::uint64_t extra = e.value("endless", std::uint64_t{0});
    const std::uint64_t sent = e.value("bytes", std::uint64_t{0});
    const std::uint64_t image = sent >= extra ? sent - extra : 0;
    std::string problem;
    if (e.value("in_progress", false))
      problem = fmt::format("the update server was still sending the endless body when the delivery ended ({} "
                            "bytes after the {}-byte image): the device kept the connection instead of stopping "
                            "at the declared size",
                            extra, image);
    else if (extra > kEndlessSlack)
      problem = fmt::format("the device took {} bytes after the {}-byte image before it let go (the sockets on the "
                            "way hold at most {}): it did not stop at the size the image header declares",
                            extra, image, kEndlessSlack);
    note("endless-body", {{"image_bytes", image},
                          {"bytes_after_image", extra},
                          {"slack", kEndlessSlack},
                          {"held", problem.empty()},
                          {"detail", problem.empty() ? e.value("note", "") : problem}});
    if (!problem.empty() && endless_problem_.empty()) endless_problem_ = problem;
  }

  // Brown-out: power fails again while the device recovers. Each further cut
  // falls at a seeded op among those a clean boot from the current state
  // would do; that count is measured by booting once (counting only) and then
  // rebuilding the state from the trial's own steps, which is exact on a
  // deterministic board. The measuring boots are kept out of the transcript.
  void brown_out() {
    auto* ff = bench_.parts().flash_faults.get();
    if (!ff || !bench_.parts().provision) return;
    Rng rng(mix64(spec_.seed ^ 0x726563757473ULL));
    std::vector<drivers::FlashCut> cuts;
    for (std::uint32_t r = 0; r < spec_.recovery_cuts; ++r) {
      bench_.drain_console();
      for (auto& line : bench_.take_transcript()) kept_transcript_.push_back(std::move(line));
      if (bench_.parts().power->is_on()) bench_.power_off("brown-out");
      ff->arm(drivers::FlashCut{0, false, 0});
      bench_.power_on("brown-out");
      const std::uint64_t boot_ops = ff->ops_counted();
      ff->disarm();
      if (boot_ops == 0) {
        note("brown-out", {{"cut", r + 1}, {"boot_ops", 0}, {"detail", "the recovery boot writes no flash"}});
        return;  // that clean boot is the recovery: keep its output
      }
      rebuild(cuts);
      bench_.drain_console();
      (void)bench_.take_transcript();
      const drivers::FlashCut cut{rng.between(1, boot_ops), rng.chance(s_.fault.torn), rng.next(), false};
      ff->arm(cut);
      bench_.power_on("brown-out");
      const auto fell = ff->fired();
      ff->disarm();
      note("brown-out", {{"cut", r + 1},
                         {"boot_ops", boot_ops},
                         {"before_op", cut.before_op},
                         {"torn", cut.torn},
                         {"fell_at", fell ? op_text(*fell) : "did not fall"}});
      out_.fault_detail += fmt::format("; recovery boot {} cut {} op {} of {}", r + 1,
                                       cut.torn ? "tearing" : "before", cut.before_op, boot_ops);
      if (bench_.parts().power->is_on()) bench_.power_off("brown-out");
      cuts.push_back(cut);
    }
  }

  // The state right after the trial's cut delivery and the recovery cuts in
  // `cuts`, made again from the start (the device is left off).
  void rebuild(const std::vector<drivers::FlashCut>& cuts) {
    auto& parts = bench_.parts();
    auto* ff = parts.flash_faults.get();
    ff->disarm();
    bench_.power_off("brown-out");
    parts.provision->provision(releases_.get(s_.start).bytes);
    bench_.power_on("brown-out");
    for (const auto& name : s_.before) {
      parts.link->deliver(releases_.artifact(releases_.get(name)));
      power_up_if_off("brown-out");
    }
    ff->arm(drivers::FlashCut{spec_.cut_op, spec_.torn, spec_.torn_seed, false});
    parts.link->deliver(releases_.artifact(*image_));
    ff->disarm();
    for (const auto& c : cuts) {
      if (parts.power->is_on()) bench_.power_off("brown-out");
      ff->arm(c);
      bench_.power_on("brown-out");
      ff->disarm();
    }
    if (parts.power->is_on()) bench_.power_off("brown-out");
  }

  // A cut placed in the delivery (boards that do not count flash operations).
  void arm_delivery_cut(std::string& detail) {
    auto* cuts = delivery_cuts(bench_);
    if (!cuts) throw BenchError(fmt::format("{}: the board cannot cut power during a delivery",
                                            bench_.profile().name));
    using drivers::process::ProcessCut;
    const std::string what = detail;
    const std::chrono::milliseconds delay(spec_.cut_delay_ms);
    if (spec_.cut_at == "download-byte") {
      cuts->arm(ProcessCut::at_byte(spec_.cut_byte));
      detail = fmt::format("power cut at byte {} of the {}-byte download", spec_.cut_byte, spec_.image_size);
    } else if (spec_.cut_at == "time") {
      cuts->arm(ProcessCut::after(delay));
      detail = fmt::format("power cut {} ms after the update command (a clean update took {} ms)",
                           spec_.cut_delay_ms, spec_.update_ms);
    } else {
      std::string pattern = spec_.cut_pattern;
      if (pattern == "${banner}") pattern = bench_.profile().observe.banner;
      cuts->arm(ProcessCut::on_console(pattern, delay));
      detail = fmt::format("power cut {} ms after the first console line matching '{}'", spec_.cut_delay_ms,
                           pattern);
    }
    if (spec_.recovery_cuts)
      detail += fmt::format(", then {} more cut{} while it recovers", spec_.recovery_cuts,
                            spec_.recovery_cuts == 1 ? "" : "s");
    if (!what.empty()) detail += " (delivering a " + what + ")";
  }

  // Brown-out on a board whose flash the rig cannot count: power comes back
  // and goes again after a seeded time (0-100 ms) into the recovery boot.
  void timed_brown_out() {
    Rng rng(mix64(spec_.seed ^ 0x726563757473ULL));
    for (std::uint32_t r = 0; r < spec_.recovery_cuts; ++r) {
      if (bench_.parts().power->is_on()) bench_.power_off("brown-out");
      const auto ms = rng.between(0, 100);
      bench_.power_on("brown-out");
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      bench_.power_off("brown-out");
      note("brown-out", {{"cut", r + 1}, {"after_power_on_ms", ms}});
      out_.fault_detail += fmt::format("; recovery boot {} cut {} ms after power-on", r + 1, ms);
    }
  }

  // A validly signed image older than `base` only by its major number.
  BuiltImage major_downgrade(const BuiltImage& base, std::string* detail) const {
    auto parsed = image::parse(base.bytes, base.name);
    image::Header h = parsed.header;
    if (h.version.major == 0)
      throw InputError(fmt::format("{}: scenario '{}': release {} ({}) has major version 0, nothing is older by "
                                   "its major number",
                                   s_.fault.where, s_.name, base.name, base.version));
    h.version.major = static_cast<std::uint8_t>(h.version.major - 1);
    h.version.minor = 255;
    const auto& profile = bench_.profile();
    const auto key = load_key_ref(profile.signing_key, profile.path.parent_path());
    BuiltImage v = base;
    v.variant = "major-downgrade";
    v.name = base.name + "/major-downgrade";
    v.bytes = image::build(h, parsed.payload, key);
    v.version = h.version.str();
    v.digest = device_digest(v.bytes);
    v.authentic = true;
    if (detail)
      *detail = fmt::format("{} signed as {} (older than {} only by its major number, security counter {})",
                            base.name, v.version, base.version, h.security_counter);
    return v;
  }

  void observe() {
    fault_index_ = out_.observations.size();
    look("after-fault");
    if (hooks_) {
      TrialContext ctx{bench_, spec_, out_};
      for (const auto& step : hooks_->steps) step(ctx);
    }
  }

  void retry() {
    if (s_.retry.empty()) return;
    const auto& rel = releases_.get(s_.retry);
    auto r = deliver_image(rel, "retry");
    power_up_if_off("retry");
    retry_index_ = out_.observations.size();
    look("retry");
    if (r.status != drivers::DeliveryStatus::accepted)
      retry_problem_ = fmt::format("the clean update to {} was {} ({})", rel.name, drivers::to_string(r.status),
                                   r.detail);
  }

  void judge_trial() {
    OracleInput in;
    in.history = out_.observations;
    in.fault_index = fault_index_;
    in.before_digest = before_digest_;
    in.delivered_digest = image_->digest;
    in.delivered_authentic = image_->authentic;
    in.delivered_fails_self_test = image_->fails_self_test;
    in.authentic_digests.insert(releases_.authentic_digests().begin(), releases_.authentic_digests().end());
    if (image_->authentic) in.authentic_digests.insert(image_->digest);
    in.has_retry = !s_.retry.empty();
    if (in.has_retry) {
      in.retry_digest = releases_.get(s_.retry).digest;
      in.retry_index = retry_index_;
      in.retry_problem = retry_problem_;
    }
    out_.oracles = harness::judge(in);
    if (in.delivered_fails_self_test && has_tag(bench_.profile(), "no-trial-boot")) {
      for (auto& o : out_.oracles)
        if (o.name == "recovered") o = recovered_without_revert(in);
      note("expectation", {{"oracle", "recovered"},
                           {"detail", "the board declares no-trial-boot: a failing image must be reported "
                                      "(health=failed) and replaced by the next clean update"}});
    }
    auto break_oracle = [&](const char* name, const std::string& why) {
      for (auto& r : out_.oracles)
        if (r.name == name) {
          r.detail = r.held ? why : r.detail + "; " + why;
          r.held = false;
        }
    };
    if (!stays_up_problem_.empty()) break_oracle("recovered", stays_up_problem_);
    if (!endless_problem_.empty()) break_oracle("recovered", endless_problem_);
    if (s_.fault.expects("installed") && fault_index_ < out_.observations.size()) {
      const auto& o = out_.observations[fault_index_];
      if (!o.booted || o.digest != image_->digest)
        for (auto& r : out_.oracles)
          if (r.name == "still-updatable" && r.held) {
            r.held = false;
            r.detail = fmt::format("the device did not finish the update through the fault ({}: {}); it runs {}",
                                   out_.delivery_status, out_.delivery_detail,
                                   o.booted ? o.version + " " + o.digest.substr(0, 12) : "nothing");
          }
    }
    if (probe_)
      out_.oracles.push_back({"mutual-tls", !probe_->answered,
                              probe_->answered ? "the update server " + probe_->detail
                                               : "a client without a certificate was refused: " + probe_->detail});
    if (!setup_problem_.empty()) {
      for (auto& o : out_.oracles)
        if (o.name == "still-updatable" && o.held) {
          o.held = false;
          o.detail = setup_problem_;
        }
    }
    if (hooks_) {
      TrialContext ctx{bench_, spec_, out_};
      for (const auto& oracle : hooks_->oracles) out_.oracles.push_back(oracle(ctx));
    }
    out_.passed = true;
    for (const auto& o : out_.oracles) {
      note("oracle", {{"oracle", o.name}, {"held", o.held}, {"detail", o.detail}});
      out_.passed = out_.passed && o.held;
    }
  }

  Bench& bench_;
  const ReleaseSet& releases_;
  const TrialSpec& spec_;
  const TrialHooks* hooks_;
  const Scenario& s_;
  TrialOutcome out_;
  std::optional<BuiltImage> variant_;
  const BuiltImage* image_ = nullptr;
  bool stale_feed_ = false;  ///< stale-manifest on a board that reads the feed
  std::string before_digest_;
  std::string setup_problem_;
  std::string retry_problem_;
  std::string stays_up_problem_;
  std::string endless_problem_;
  std::size_t fault_index_ = 0;
  std::size_t retry_index_ = 0;
  std::vector<TranscriptLine> kept_transcript_;  ///< before brown-out measuring boots
  bool placed_cut_fell_ = false;
  std::optional<drivers::process::ProbeResult> probe_;
};

}  // namespace

TrialOutcome run_trial(Bench& bench, const ReleaseSet& releases, const TrialSpec& spec, const TrialHooks* hooks) {
  return Runner(bench, releases, spec, hooks).run();
}

std::uint64_t count_update_ops(Bench& bench, const ReleaseSet& releases, const std::string& start,
                               const std::string& deliver) {
  auto& parts = bench.parts();
  if (!parts.flash_faults || !parts.provision) return 0;
  const auto& s = releases.get(start);
  // "NAME/self-test-fail": the release's twin that fails its self-test.
  const auto slash = deliver.find('/');
  const auto& base = releases.get(deliver.substr(0, slash));
  std::optional<BuiltImage> twin;
  if (slash != std::string::npos) {
    Rng unused(0);
    twin = releases.make_variant(base, deliver.substr(slash + 1), "", unused, nullptr);
  }
  const auto& d = twin ? *twin : base;
  parts.flash_faults->disarm();
  bench.power_off("count flash operations");
  parts.provision->provision(s.bytes);
  bench.power_on("count flash operations");
  parts.flash_faults->arm(drivers::FlashCut{0, false, 0});
  auto r = parts.link->deliver(releases.artifact(d));
  auto n = parts.flash_faults->ops_counted();
  parts.flash_faults->disarm();
  if (r.status != drivers::DeliveryStatus::accepted)
    throw BenchError(fmt::format("{}: counting flash operations: the clean update from {} to {} was {} ({})",
                                 bench.profile().name, start, deliver, drivers::to_string(r.status), r.detail));
  return n;
}

std::uint64_t measure_update_ms(Bench& bench, const ReleaseSet& releases, const std::string& start,
                                const std::string& deliver) {
  auto& parts = bench.parts();
  if (!parts.provision) return 0;
  const auto slash = deliver.find('/');
  const auto& base = releases.get(deliver.substr(0, slash));
  std::optional<BuiltImage> twin;
  if (slash != std::string::npos) {
    Rng unused(0);
    twin = releases.make_variant(base, deliver.substr(slash + 1), "", unused, nullptr);
  }
  const auto& d = twin ? *twin : base;
  bench.power_off("measure an update");
  parts.provision->provision(releases.get(start).bytes);
  bench.power_on("measure an update");
  // As in a trial: the update starts once the device is up on its image (a
  // lab board may drop console input while it boots).
  if (const auto up = bench.observe("measure an update"); !up.booted)
    throw BenchError(fmt::format("{}: timing a clean update from {} to {}: no status within {:.0f} ms of power-on",
                                 bench.profile().name, start, deliver, up.waited_ms));
  bench.drain_console();
  const auto t0 = std::chrono::steady_clock::now();
  auto r = parts.link->deliver(releases.artifact(d));
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  bench.drain_console();
  (void)bench.take_transcript();
  if (r.status != drivers::DeliveryStatus::accepted)
    throw BenchError(fmt::format("{}: timing a clean update from {} to {}: it was {} ({})", bench.profile().name,
                                 start, deliver, drivers::to_string(r.status), r.detail));
  return static_cast<std::uint64_t>(std::max<std::int64_t>(1, ms.count()));
}

BoardAbilities board_abilities(Bench& bench, const ReleaseSet& releases) {
  BoardAbilities a;
  if (bench.parts().flash_faults)
    a.count_ops = [&bench, &releases](const std::string& s, const std::string& d) {
      return count_update_ops(bench, releases, s, d);
    };
  a.delivery_cuts = delivery_cuts(bench) != nullptr;
  if (auto* net = network_faults(bench)) a.network = net->tls_mode();
  a.image_size = [&releases](const std::string& name) -> std::uint64_t {
    return releases.artifact(releases.get(name)).size();
  };
  a.update_ms = [&bench, &releases](const std::string& s, const std::string& d) {
    return measure_update_ms(bench, releases, s, d);
  };
  return a;
}

}  // namespace otarig::harness
