#include "otarig/harness/trial.hpp"

#include "otarig/core/encryption.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <memory>

#include "otarig/core/image.hpp"
#include "otarig/harness/console_log.hpp"
#include "otarig/harness/identity.hpp"
#include "otarig/harness/rng.hpp"
#include "otarig/harness/scenario.hpp"

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

// Publishes what the device fetches beside `img` (a delta package's files),
// then delivers `img` over the link.
drivers::DeliveryResult deliver_with_files(drivers::BoardParts& parts, const ReleaseSet& releases,
                                           const BuiltImage& img, const std::string& board) {
  auto files = releases.files_beside(img);
  if (!files.empty() && !parts.link->publish_beside(std::move(files)))
    throw BenchError(fmt::format("{}: {} needs files published beside it on the update server, and the board's "
                                 "link publishes none",
                                 board, img.name));
  return parts.link->deliver(releases.artifact(img));
}

// Where the device reaches files published beside a delivery (empty: nowhere).
std::string files_url(Bench& bench) {
  return bench.parts().link ? bench.parts().link->files_url() : std::string();
}

nlohmann::json obs_json(const Observation& o) {
  nlohmann::json j{{"step", o.step}, {"booted", o.booted}};
  if (o.booted) {
    j["slot"] = o.slot;
    j["version"] = o.version;
    j["digest"] = o.digest;
    if (o.counter) j["counter"] = *o.counter;
    if (!o.state.empty()) j["state"] = o.state;
    if (!o.health.empty()) j["health"] = o.health;
    if (!o.image1_version.empty()) j["image1"] = {{"version", o.image1_version}, {"digest", o.image1_digest}};
  }
  j["waited_ms"] = o.waited_ms;
  return j;
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

class Runner final : public TrialPort {
 public:
  Runner(Bench& bench, const ReleaseSet& releases, const TrialSpec& spec, const TrialHooks* hooks)
      : bench_(bench), releases_(releases), spec_(spec), hooks_(hooks), s_(*spec.scenario) {
    out_.spec = spec;
  }

  TrialOutcome run() {
    const SteadyClock host;  // the rig's own run time, not the device's
    const auto wall_start = host.now();
    bench_.begin_transcript();
    if (hooks_ && !hooks_->evidence_root.empty()) {
      if (!is_plain_name(spec_.id)) throw BenchError(fmt::format("trial id '{}' is not a plain file name", spec_.id));
      log_ = std::make_unique<ConsoleLogFile>(hooks_->evidence_root / "trials" / spec_.id);
      kept_transcript_.on_head([this](const TranscriptLine& line) {
        if (log_) log_->write(line);
      });
    }
    // Every line the bench reads comes here at once: into the transcript and
    // console.log, or held back while a boot only measures.
    bench_.stream_lines([this](TranscriptLine line) {
      if (holding_)
        held_.add(std::move(line));
      else
        kept_transcript_.add(std::move(line));
    });
    const struct Unsink {
      Bench& bench;
      ~Unsink() { bench.stream_lines({}); }
    } unsink{bench_};
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
    keep_transcript();  // the line still arriving, and what a measuring boot left held
    out_.transcript = take_kept();
    note_console_events();
    if (bench_.parts().flash_faults) out_.erase_counts = bench_.parts().flash_faults->erase_counts();
    out_.duration_ms = std::chrono::duration<double, std::milli>(host.now() - wall_start).count();
    return std::move(out_);
  }

  // ---- TrialPort: what the trial's fault kind may do.
  Bench& bench() override { return bench_; }
  const ReleaseSet& releases() const override { return releases_; }
  const TrialSpec& spec() const override { return spec_; }
  const Scenario& scenario() const override { return s_; }
  const TrialOutcome& outcome() const override { return out_; }
  const BuiltImage& image() const override { return *image_; }
  void use_image(BuiltImage image) override {
    variant_ = std::move(image);
    image_ = &*variant_;
  }
  void use_release(const std::string& name) override { image_ = &releases_.get(name); }
  void note(const std::string& type, nlohmann::json data) override {
    data["type"] = type;
    out_.events.push_back(std::move(data));
  }
  Observation look(const std::string& step) override {
    const BuiltImage* expected = image_;
    if (step == "prepare") expected = &releases_.get(s_.start);
    if (step == "retry" && !s_.retry.empty()) expected = &retry_image();
    return look_expecting(step, expected);
  }
  // The observation, its identity resolved to an image the rig built (the
  // one the step expects first) when the device reports no rig digest.
  Observation look_expecting(const std::string& step, const BuiltImage* expected) {
    auto o = bench_.observe(step);
    std::vector<const BuiltImage*> candidates{expected, image_};
    for (const auto& m : made_up_) candidates.push_back(&m);
    if (retry_variant_) candidates.push_back(&*retry_variant_);
    for (const auto& r : releases_.all()) candidates.push_back(&r);
    const auto resolved = resolve_identity(o, candidates, bench_.profile().observe.identity);
    auto j = obs_json(o);
    if (!resolved.is_null()) j["identity"] = resolved;
    note("observation", std::move(j));
    out_.observations.push_back(o);
    return o;
  }
  void add_detail(const std::string& text) override { out_.fault_detail += text; }
  void no_delivery(const std::string& detail) override {
    out_.delivery_status = "none";
    out_.delivery_detail = detail;
  }
  void keep_transcript() override {
    bench_.drain_console();
    (void)bench_.take_transcript();  // finishes the line still arriving (streamed)
    for (auto& line : held_.take()) kept_transcript_.add(std::move(line));
    holding_ = false;
  }
  void hold_transcript() override {
    keep_transcript();
    holding_ = true;
  }
  void discard_transcript() override {
    bench_.drain_console();
    (void)bench_.take_transcript();
    (void)held_.take();
    holding_ = false;
  }
  // The kept transcript, and console.log finished with it.
  std::vector<TranscriptLine> take_kept() {
    auto lines = kept_transcript_.take();
    if (log_) {
      log_->finish(lines);
      log_.reset();
      out_.console_logged = true;
    }
    return lines;
  }
  std::size_t fault_index() const override { return fault_index_; }
  void record_cut(nlohmann::json cut) override { out_.cut = std::move(cut); }

  drivers::DeliveryResult deliver(const BuiltImage& img, const std::string& step, bool as_release) override {
    if (!bench_.parts().power->is_on()) bench_.power_on(step);
    if (auto* feed = bench_.parts().feed.get(); feed && feed->follows_feed()) {
      feed->describe_next(img.version, img.security_counter);
      if (as_release) feed->serve_as_release(img.name);
    }
    auto* ff = bench_.parts().flash_faults.get();
    const auto erases_before = ff ? ff->erase_counts() : std::vector<std::uint32_t>{};
    drivers::DeliveryResult r;
    try {
      const auto artifact = releases_.artifact(img);
      // confidential: the plaintext of an encrypted release never crosses the link.
      if (!img.marker.empty() && plaintext_on_link_.empty() && encryption::contains(artifact, img.marker))
        plaintext_on_link_ = fmt::format("{}: the bytes delivered for {} carry its plaintext (the rig's marker)", step,
                                         img.name);
      if (step == "deliver" && !img.marker.empty() && bench_.parts().storage_scan)
        marker_before_ = bench_.parts().storage_scan->storage_contains(img.marker, nullptr);
      auto files = releases_.files_beside(img);
      if (!files.empty() && !bench_.parts().link->publish_beside(std::move(files)))
        throw BenchError(fmt::format("{}: {} needs files published beside it on the update server, and the "
                                     "board's link publishes none",
                                     bench_.profile().name, img.name));
      watch_plaintext(img);
      r = bench_.parts().link->deliver(artifact);
      judge_plaintext_watch(step, img);
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
    if (step == "deliver") {
      out_.delivery_status = drivers::to_string(r.status);
      out_.delivery_detail = r.detail;
    }
    if (ff) note_wear(step, erases_before, ff->erase_counts());
    return r;
  }

 private:
  static TrialStep next(TrialStep s) { return static_cast<TrialStep>(static_cast<int>(s) + 1); }

  // confidential, on the network (docs/network.md, "Plaintext watch"): the
  // fault proxy looks for the plaintext marker of every encrypted release in
  // what the update server sends the device during a delivery.
  void watch_plaintext(const BuiltImage& img) {
    auto* net = bench_.parts().network.get();
    if (!net) return;
    std::vector<std::pair<std::string, std::vector<std::uint8_t>>> watched;
    for (const auto& r : releases_.all())
      if (!r.marker.empty()) watched.emplace_back(r.name, r.marker);
    if (!img.marker.empty() &&
        std::none_of(watched.begin(), watched.end(), [&](const auto& w) { return w.second == img.marker; }))
      watched.emplace_back(img.name, img.marker);
    net->watch_plaintext(watched);
  }
  void judge_plaintext_watch(const std::string& step, const BuiltImage& img) {
    auto* net = bench_.parts().network.get();
    if (!net || img.marker.empty()) return;
    const auto report = net->take_plaintext_watch();
    net->watch_plaintext({});
    if (!report) return;
    nlohmann::json data{{"step", step},
                        {"connections_scanned", report->scanned},
                        {"connections_opaque", report->opaque},
                        {"bytes_scanned", report->bytes},
                        {"sightings", report->sightings}};
    if (!report->sightings.empty()) {
      if (plaintext_on_wire_.empty())
        plaintext_on_wire_ = fmt::format(
            "{}: the fault proxy relayed plaintext of encrypted releases from the update server to the device (the "
            "rig's marker): {}",
            step, fmt::join(report->sightings, "; "));
      data["judged"] = "the plaintext crossed the network";
    } else if (report->scanned == 0 && report->opaque > 0) {
      data["judged"] = fmt::format(
          "not judged on the network: the fault proxy relayed {} TLS connection(s) without terminating them and "
          "cannot see whether what they carry is encrypted",
          report->opaque);
    } else if (report->scanned == 0) {
      data["judged"] = "not judged on the network: no connection reached the update server through the fault proxy";
    } else {
      data["judged"] = fmt::format("no plaintext in the {} bytes of {} connection(s) the fault proxy read",
                                   report->bytes, report->scanned);
      if (report->opaque > 0)
        data["judged"] = fmt::format("{}; {} TLS connection(s) relayed without terminating them were not read",
                                     data["judged"].get<std::string>(), report->opaque);
    }
    note("plaintext-watch", std::move(data));
  }

  void event(TrialStep step, nlohmann::json extra = nlohmann::json::object()) {
    extra["type"] = "step";
    extra["step"] = to_string(step);
    extra["t_ms"] = std::chrono::duration<double, std::milli>(bench_.clock().now()).count();
    out_.events.push_back(std::move(extra));
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

  // The erase cycles a delivery cost (the update, and the reboots it ran).
  void note_wear(const std::string& step, const std::vector<std::uint32_t>& before,
                 const std::vector<std::uint32_t>& after) {
    std::uint64_t total = 0, max = 0;
    std::vector<std::uint32_t> delta(after.size(), 0);
    for (std::size_t i = 0; i < after.size() && i < before.size(); ++i) {
      delta[i] = after[i] >= before[i] ? after[i] - before[i] : after[i];
      total += delta[i];
      max = std::max<std::uint64_t>(max, delta[i]);
    }
    note("wear", {{"step", step}, {"erases", total}, {"max_per_sector", max}, {"per_sector", erase_runs(delta)}});
  }

  void power_up_if_off(const std::string& step) {
    if (!bench_.parts().power->is_on()) bench_.power_on(step);
  }

  // Every fault the board can arm is disarmed before a trial starts.
  void disarm_all() {
    auto& parts = bench_.parts();
    if (parts.flash_faults) parts.flash_faults->disarm();
    if (parts.cuts) parts.cuts->disarm();
    if (parts.network) {
      parts.network->begin_network_trial();
      (void)parts.network->take_network_events();
    }
    if (parts.device_reports) (void)parts.device_reports->take_device_records();
    // A power-off loses what the device did not make durable.
    if (parts.crash_storage) parts.crash_storage->set_power_loss("lost", spec_.seed);
  }

  void prepare() {
    const auto& start = releases_.get(s_.start);
    auto& parts = bench_.parts();
    disarm_all();
    if (!parts.provision)
      throw BenchError(fmt::format("{}: prepare: the board cannot be provisioned with a known-good image",
                                   bench_.profile().name));
    bench_.power_off("prepare");
    parts.provision->provision(start.bytes);
    bench_.power_on("prepare");
    auto o = look("prepare");
    if (!o.booted || o.digest != start.digest) {
      // What the device said is the first clue: the bench error carries the
      // console's last lines.
      keep_transcript();
      std::string tail;
      for (const auto& line : kept_transcript_.last(12)) tail += "\n  | " + line.text;
      const auto device_exit = bench_.parts().power->device_exit();
      const auto what = fmt::format(
          "{}: prepare: the device did not come up on release {} after provisioning{}{}; {}", bench_.profile().name,
          start.name, o.booted ? fmt::format(" (it runs {})", o.digest.substr(0, 12)) : "",
          device_exit ? fmt::format(" (its program {})", *device_exit) : "",
          tail.empty() ? "its console printed nothing" : fmt::format("the last lines of its console:{}", tail));
      nlohmann::json failure{{"step", "prepare"},
                             {"detail", what},
                             {"release", start.name},
                             {"expected_digest", start.digest},
                             {"device_exit", device_exit ? nlohmann::json(*device_exit) : nlohmann::json(nullptr)},
                             {"observed", obs_json(o)}};
      note("bench-failure", failure);
      out_.transcript = take_kept();
      throw TrialBenchError(what, std::move(out_), std::move(failure));
    }
    for (const auto& name : s_.before) (void)clean_update(releases_.get(name), name);
    before_digest_ = out_.observations.back().booted ? out_.observations.back().digest : start.digest;
    before_image1_ = out_.observations.back().image1_digest;
  }

  bool clean_update(const BuiltImage& img, const std::string& label) {
    auto r = deliver(img, "before:" + label, false);
    power_up_if_off("before:" + label);
    auto ob = look_expecting("before:" + label, &img);
    const bool took = r.status == drivers::DeliveryStatus::accepted && ob.booted && ob.digest == img.digest;
    if (!took && setup_problem_.empty())
      setup_problem_ = fmt::format("the clean update to {} before the fault did not take ({}: {})", label,
                                   drivers::to_string(r.status), r.detail);
    return took;
  }

 public:
  void use_retry_image(BuiltImage image) override {
    retry_variant_ = std::move(image);
    extra_authentic_.push_back(retry_variant_->digest);
  }
  const BuiltImage& retry_image() const { return retry_variant_ ? *retry_variant_ : releases_.get(s_.retry); }

  bool update_before_fault(const BuiltImage& img) override {
    made_up_.push_back(img);
    const bool took = clean_update(made_up_.back(), img.name + " (" + img.version + ")");
    extra_authentic_.push_back(img.digest);
    if (out_.observations.back().booted) {
      before_digest_ = out_.observations.back().digest;
      before_image1_ = out_.observations.back().image1_digest;
    }
    return took;
  }

 private:

  void inject() {
    if (!s_.fault.unit)
      throw InputError(fmt::format("{}: scenario '{}' has no fault kind", s_.fault.where, s_.name));
    image_ = &releases_.get(s_.deliver);
    if (s_.delta) use_image(releases_.delta(*image_, releases_.get(s_.delta_base()), files_url(bench_)));
    run_ = s_.fault.unit->start(spec_);
    const auto detail = run_->inject(*this);
    out_.delivered = image_->name;
    out_.fault_detail = detail;
    note("fault", {{"fault", spec_.fault_json()}, {"detail", detail}, {"image", image_->name},
                   {"image_digest", image_->digest}});
  }

  void deliver() {
    auto* reports = bench_.parts().device_reports.get();
    const auto before = reports ? reports->last_deployment() : std::string();
    try {
      run_->deliver(*this, "deliver");
    } catch (...) {
      if (auto* net = bench_.parts().network.get()) net->set_network_faults("", 0);
      throw;
    }
    note_network_events();
    // Only a deployment this trial delivered: a trial that finds the crash
    // state of a recorded update delivers nothing, and what the device
    // reported while that update was recorded is no claim about this trial.
    if (reports) {
      const auto last = reports->last_deployment();
      deployment_ = last != before ? last : std::string();
    }
    run_->delivered(*this);
  }

  // What the device told a device-management server (Mender's device API):
  // its authentication requests, deployment checks, status reports and logs.
  void note_device_reports(const std::string& step) {
    auto* reports = bench_.parts().device_reports.get();
    if (!reports) return;
    nlohmann::json list = nlohmann::json::array();
    for (const auto& r : reports->take_device_records()) list.push_back(nlohmann::json::parse(r, nullptr, false));
    nlohmann::json e{{"step", step}, {"records", std::move(list)}};
    if (step == "after-fault") {
      reported_status_ = deployment_.empty() ? std::string() : reports->final_status(deployment_);
      reported_statuses_ = deployment_.empty() ? std::vector<std::string>{} : reports->statuses(deployment_);
      e["deployment"] = deployment_;
      e["reported_status"] = reported_status_;
      e["reported_statuses"] = reported_statuses_;
    }
    note("device-api", std::move(e));
  }

  // What the fault proxy saw of this trial's connections, whatever the fault:
  // the kind judges them first (an endless body), then they are the trial's
  // `network` event; the proxy's faults end with the delivery.
  void note_network_events() {
    auto* net = bench_.parts().network.get();
    if (!net) return;
    const auto events = net->take_network_events();
    net->set_network_faults("", 0);
    nlohmann::json list = nlohmann::json::array();
    for (const auto& e : events) list.push_back(nlohmann::json::parse(e, nullptr, false));
    run_->network_events(*this, list);
    if (!list.empty()) note("network", {{"step", "deliver"}, {"events", std::move(list)}});
  }

  // DESIGN.md: after every fault the device is recovered by a power cycle, so
  // damage a running device has not noticed yet (a slot it overwrote, a
  // half-written trailer) shows at the next boot.
  void recover() {
    run_->recover(*this);
    if (bench_.parts().power->is_on()) bench_.power_off("recover");
    bench_.power_on("recover");
  }

  void observe() {
    fault_index_ = out_.observations.size();
    look("after-fault");
    // confidential: an encrypted release the device did not take leaves no
    // plaintext at rest (the profile's encryption.plaintext_before_verify: forbidden).
    // Only an image that fails verification (or is not the device's to decrypt)
    // is judged so: an authentic one may be refused after it was decrypted
    // (a rollback found in the plaintext, a flash error while writing it), and
    // plaintext the device held before the delivery is not the delivery's.
    if (!image_->marker.empty() && !bench_.profile().plaintext_before_verify && bench_.parts().storage_scan &&
        !marker_before_ && (!image_->authentic || image_->variant == "other-device-key") &&
        (out_.delivery_status == "refused" || out_.delivery_status == "failed")) {
      std::string where;
      if (bench_.parts().storage_scan->storage_contains(image_->marker, &where))
        plaintext_at_rest_ = fmt::format("after-fault: the {} delivery of {} was not taken, yet its plaintext (the "
                                         "rig's marker) sits at {}: decrypted before it was verified",
                                         out_.delivery_status, image_->name, where);
    }
    note_device_reports("after-fault");
    if (hooks_) {
      TrialContext ctx{bench_, spec_, out_};
      for (const auto& step : hooks_->steps) step(ctx);
    }
  }

  void retry() {
    if (s_.retry.empty()) return;
    const auto& rel = retry_image();
    auto r = deliver(rel, "retry", false);
    power_up_if_off("retry");
    retry_index_ = out_.observations.size();
    look("retry");
    note_device_reports("retry");
    if (r.status != drivers::DeliveryStatus::accepted)
      retry_problem_ = fmt::format("the clean update to {} was {} ({})", rel.name, drivers::to_string(r.status),
                                   r.detail);
  }

  OracleInput oracle_input() const {
    OracleInput in;
    in.history = out_.observations;
    in.fault_index = fault_index_;
    in.before_digest = before_digest_;
    in.delivered_digest = image_->digest;
    in.delivered_authentic = image_->authentic;
    in.delivered_fails_self_test = image_->fails_self_test;
    in.delivered_compatible = image_->compatible;
    in.plaintext_on_link = plaintext_on_link_;
    in.plaintext_on_wire = plaintext_on_wire_;
    in.plaintext_at_rest = plaintext_at_rest_;
    in.before_image1_digest = before_image1_;
    for (const auto& c : image_->components)
      if (c.image_index == 1) in.delivered_image1_digest = c.digest;
    auto add_needs = [&](const BuiltImage& b) {
      for (const auto& c : b.components)
        if (c.needs_image) in.needs[c.digest] = {static_cast<unsigned>(c.needs_image - 1), c.needs_version};
    };
    for (const auto& r : releases_.all()) add_needs(r);
    add_needs(*image_);
    for (const auto& m : made_up_) add_needs(m);
    if (!s_.retry.empty()) add_needs(retry_image());
    in.authentic_digests.insert(releases_.authentic_digests().begin(), releases_.authentic_digests().end());
    if (image_->authentic) in.authentic_digests.insert(image_->digest);
    in.authentic_digests.insert(extra_authentic_.begin(), extra_authentic_.end());
    in.device_reports = bench_.parts().device_reports != nullptr;
    in.deployment = deployment_;
    in.reported_status = reported_status_;
    in.reported_statuses = reported_statuses_;
    in.has_retry = !s_.retry.empty();
    if (in.has_retry) {
      in.retry_digest = retry_image().digest;
      in.retry_index = retry_index_;
      in.retry_problem = retry_problem_;
    }
    return in;
  }

  void judge_trial() {
    const auto in = oracle_input();
    out_.oracles = harness::judge(in, hooks_ && hooks_->registered_oracles ? *hooks_->registered_oracles
                                                                           : builtin_oracles());
    if (in.delivered_fails_self_test && has_tag(bench_.profile(), "no-trial-boot")) {
      for (auto& o : out_.oracles)
        if (o.name == "recovered") o = recovered_without_revert(in);
      note("expectation", {{"oracle", "recovered"},
                           {"detail", "the board declares no-trial-boot: a failing image must be reported "
                                      "(health=failed) and replaced by the next clean update"}});
    }
    if (in.device_reports) out_.oracles.push_back(reports_truthfully(in));
    run_->judge(*this, out_.oracles);
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
  std::unique_ptr<FaultRun> run_;
  std::optional<BuiltImage> variant_;
  const BuiltImage* image_ = nullptr;
  std::string before_digest_;
  std::string plaintext_on_link_, plaintext_on_wire_, plaintext_at_rest_;  ///< what the confidential oracle found
  bool marker_before_ = false;  ///< the delivered release's plaintext was in storage before the delivery
  std::string before_image1_;  ///< the second image's digest before the faulted delivery ("" without one)
  std::vector<std::string> extra_authentic_;  ///< images a fault kind installed before its delivery
  std::deque<BuiltImage> made_up_;            ///< those images, for resolving what the device reports
  std::optional<BuiltImage> retry_variant_;   ///< the retry image a kind chose (use_retry_image)
  std::string setup_problem_;
  std::string retry_problem_;
  // The faulted delivery's deployment on a device-management server, and
  // what the device had reported about it by the after-fault observation.
  std::string deployment_, reported_status_;
  std::vector<std::string> reported_statuses_;
  std::size_t fault_index_ = 0;
  std::size_t retry_index_ = 0;
  BoundedTranscript kept_transcript_;  ///< its head also goes to console.log as it comes
  BoundedTranscript held_;             ///< lines of a boot that only measures (hold_transcript)
  bool holding_ = false;
  std::unique_ptr<ConsoleLogFile> log_;
};

}  // namespace

TrialOutcome run_trial(Bench& bench, const ReleaseSet& releases, const TrialSpec& spec, const TrialHooks* hooks) {
  return Runner(bench, releases, spec, hooks).run();
}

namespace {

// A release, or "NAME/self-test-fail": the release's twin that fails its self-test.
BuiltImage image_for(Bench& bench, const ReleaseSet& releases, const std::string& start, const std::string& deliver) {
  const auto slash = deliver.find('/');
  const auto& base = releases.get(deliver.substr(0, slash));
  if (slash == std::string::npos) return base;
  if (deliver.substr(slash + 1) == "delta") return releases.delta(base, releases.get(start), files_url(bench));
  Rng unused(0);
  return releases.make_variant(base, deliver.substr(slash + 1), "", unused, nullptr);
}

}  // namespace

std::uint64_t count_update_ops(Bench& bench, const ReleaseSet& releases, const std::string& start,
                               const std::string& deliver) {
  auto& parts = bench.parts();
  if (!parts.flash_faults || !parts.provision) return 0;
  const auto& s = releases.get(start);
  const auto d = image_for(bench, releases, start, deliver);
  parts.flash_faults->disarm();
  bench.power_off("count flash operations");
  parts.provision->provision(s.bytes);
  bench.power_on("count flash operations");
  parts.flash_faults->arm(drivers::FlashCut{0, false, 0});
  auto r = deliver_with_files(parts, releases, d, bench.profile().name);
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
  const auto d = image_for(bench, releases, start, deliver);
  bench.power_off("measure an update");
  parts.provision->provision(releases.get(start).bytes);
  bench.power_on("measure an update");
  // As in a trial: the update starts once the device is up on its image (a
  // lab board may drop console input while it boots).
  if (const auto up = bench.observe("measure an update"); !up.booted)
    throw BenchError(fmt::format("{}: timing a clean update from {} to {}: no status within {:.0f} ms of power-on",
                                 bench.profile().name, start, deliver, up.waited_ms));
  bench.drain_console();
  const auto t0 = bench.clock().now();
  auto r = deliver_with_files(parts, releases, d, bench.profile().name);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(bench.clock().now() - t0);
  bench.drain_console();
  (void)bench.take_transcript();
  if (r.status != drivers::DeliveryStatus::accepted)
    throw BenchError(fmt::format("{}: timing a clean update from {} to {}: it was {} ({})", bench.profile().name,
                                 start, deliver, drivers::to_string(r.status), r.detail));
  return static_cast<std::uint64_t>(std::max<std::int64_t>(1, ms.count()));
}

std::uint64_t record_update_storage(Bench& bench, const ReleaseSet& releases, const std::string& start,
                                    const std::string& deliver) {
  auto& parts = bench.parts();
  auto* crash = parts.crash_storage.get();
  if (!crash || !parts.provision) return 0;
  const auto d = image_for(bench, releases, start, deliver);
  const std::string step = "record an update's storage operations";
  bench.power_off(step);
  crash->set_power_loss("lost", 0);
  parts.provision->provision(releases.get(start).bytes);
  bench.power_on(step);
  if (const auto up = bench.observe(step); !up.booted)
    throw BenchError(fmt::format("{}: recording a clean update from {} to {}: no status within {:.0f} ms of "
                                 "power-on",
                                 bench.profile().name, start, deliver, up.waited_ms));
  // What the device prints from here on is the update's: cuts placed after
  // a console line are planned from the lines after this mark.
  crash->mark_console();
  auto r = deliver_with_files(parts, releases, d, bench.profile().name);
  if (r.status != drivers::DeliveryStatus::accepted)
    throw BenchError(fmt::format("{}: recording a clean update from {} to {}: it was {} ({})", bench.profile().name,
                                 start, deliver, drivers::to_string(r.status), r.detail));
  // Back up and healthy on the new image: whatever it writes to confirm it is in the recording.
  if (!parts.power->is_on()) bench.power_on(step);
  (void)bench.observe(step);
  const auto n = crash->keep_recording(start + "->" + deliver);
  bench.drain_console();
  (void)bench.take_transcript();
  bench.power_off(step);
  return n;
}

BoardAbilities board_abilities(Bench& bench, const ReleaseSet& releases) {
  BoardAbilities a;
  if (bench.parts().flash_faults)
    a.count_ops = [&bench, &releases](const std::string& s, const std::string& d) {
      return count_update_ops(bench, releases, s, d);
    };
  a.delivery_cuts = bench.parts().cuts != nullptr;
  a.banner = bench.profile().observe.banner;
  if (auto* net = bench.parts().network.get()) a.network = net->tls_mode();
  a.server = bench.parts().feed != nullptr;
  a.device_clock = bench.parts().device_clock != nullptr;
  a.package_format = releases.package_format();
  a.no_signer_validity = releases.no_signer_validity();
  a.policy = &bench.profile().policy;
  a.reads_manifest = a.server && bench.parts().feed->follows_feed();
  if (auto device = bench.profile().root.find("device"))
    if (auto net = device->find("network")) {
      a.length_required = net->bool_or("length_required", false);
      a.tls_reason = net->string_or("tls_reason", "");
      a.test_pki = !a.network.empty() && a.network != "off" && net->string_or("pki", "").empty();
    }
  a.update_check = bench.parts().update_check != nullptr;
  a.update_check_interval = bench.profile().observe.update_check_interval;
  a.update_check_margin = bench.profile().observe.update_check_margin;
  if (auto* crash = bench.parts().crash_storage.get()) {
    a.crash_storage = crash;
    a.storage_ops = [&bench, &releases](const std::string& s, const std::string& d) {
      return record_update_storage(bench, releases, s, d);
    };
  }
  if (!bench.profile().delta)
    a.no_delta = "the board declares no delta updates (no `delta:` in its profile)";
  else if (!releases.makes_deltas())
    a.no_delta = releases.no_deltas();
  else
    a.no_delta.clear();
  a.device_type = !bench.profile().device_type.empty() || !releases.package_format().empty();
  a.delta_ranges = a.no_delta.empty() && releases.delta_fetches_ranges();
  a.second_image = bench.profile().reports_second_image();
  a.encryption = releases.encrypted();
  a.image_size = [&releases](const std::string& name) -> std::uint64_t {
    return releases.artifact(releases.get(name)).size();
  };
  a.delta_size = [&bench, &releases](const std::string& name, const std::string& base) -> std::uint64_t {
    return releases.artifact(image_for(bench, releases, base, name + "/delta")).size();
  };
  a.update_ms = [&bench, &releases](const std::string& s, const std::string& d) {
    return measure_update_ms(bench, releases, s, d);
  };
  return a;
}

}  // namespace otarig::harness
