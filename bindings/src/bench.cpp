// otarig.Bench: a board profile with its drivers, campaigns, plans, single
// trials, and the Python hooks (custom steps and oracles) that plug into them.
//
// Threads: every blocking call releases the GIL. Campaign workers call Python
// (hooks, progress) from their own threads and take the GIL for the call; a
// Python exception raised there is kept, stops the campaign, and is raised
// again by the call that started it.
#include <fmt/format.h>
#include <pybind11/stl/filesystem.h>
#include <re2/re2.h>

#include <algorithm>
#include <map>

#include "common.hpp"
#include "otarig/harness/evidence.hpp"

namespace otarig::python {

namespace {

// ------------------------------------------------------------------ helpers

std::string fspath(py::handle v) { return py::module_::import("os").attr("fspath")(v).cast<std::string>(); }

py::str decode(const std::string& bytes) {
  PyObject* s = PyUnicode_DecodeUTF8(bytes.data(), static_cast<Py_ssize_t>(bytes.size()), "replace");
  if (!s) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(s);
}

/// A name for a callable in messages: `oracle_name`, `__name__`, or its type.
std::string callable_label(py::handle fn) {
  for (const char* attr : {"oracle_name", "__name__"})
    if (py::hasattr(fn, attr)) {
      auto v = fn.attr(attr);
      if (py::isinstance<py::str>(v)) return v.cast<std::string>();
    }
  return py::str(py::type::of(fn).attr("__name__")).cast<std::string>();
}

py::list as_callables(py::handle seq, const char* what) {
  py::list out;
  if (seq.is_none()) return out;
  for (auto item : seq) {
    if (!PyCallable_Check(item.ptr()))
      throw py::type_error(fmt::format("{} must be callables, got {}", what,
                                       py::str(py::type::of(item).attr("__name__")).cast<std::string>()));
    out.append(item);
  }
  return out;
}

json observation_event(const harness::Observation& o) {
  json j{{"step", o.step}, {"booted", o.booted}};
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

ScenarioRef scenario_arg(py::handle v) {
  if (py::isinstance<ScenarioRef>(v)) return v.cast<ScenarioRef>();
  return load_scenario_ref(fspath(v));
}

// ------------------------------------------------------------------ images and deliveries

struct Image {
  std::shared_ptr<const harness::BuiltImage> image;
  std::string detail;  ///< what a fault variant did to the release
};

struct Delivery {
  std::string status;
  std::string detail;
  std::uint64_t bytes_sent = 0;
};

std::shared_ptr<const harness::BuiltImage> image_arg(py::handle v, const std::shared_ptr<const harness::ReleaseSet>& rs) {
  if (py::isinstance<Image>(v)) return v.cast<const Image&>().image;
  if (py::isinstance<py::str>(v)) {
    const auto& img = rs->get(v.cast<std::string>());
    return std::shared_ptr<const harness::BuiltImage>(rs, &img);
  }
  if (py::isinstance<py::bytes>(v) || py::isinstance<py::bytearray>(v) || py::isinstance<py::memoryview>(v)) {
    auto img = std::make_shared<harness::BuiltImage>();
    std::string bytes = py::bytes(py::reinterpret_borrow<py::object>(v)).cast<std::string>();
    img->name = "bytes";
    img->bytes.assign(bytes.begin(), bytes.end());
    img->digest = harness::device_digest(img->bytes);
    return img;
  }
  throw py::type_error("expected a release name (str), an otarig.Image or bytes");
}

// ------------------------------------------------------------------ driver handles

class Power {
 public:
  explicit Power(std::shared_ptr<BoundBench> b) : b_(std::move(b)) {}
  void on() {
    std::lock_guard lock(b_->mu);
    b_->bench().power_on("power.on()");
  }
  void off() {
    std::lock_guard lock(b_->mu);
    b_->bench().power_off("power.off()");
  }
  void cycle(std::chrono::milliseconds off_time) {
    std::lock_guard lock(b_->mu);
    auto& bench = b_->bench();
    try {
      bench.parts().power->cycle(off_time);
    } catch (const BenchError&) {
      throw;
    } catch (const InputError&) {
      throw;
    } catch (const std::exception& e) {
      throw BenchError(fmt::format("{}: power cycle failed during power.cycle(): {}", bench.profile().name, e.what()));
    }
  }
  bool is_on() {
    std::lock_guard lock(b_->mu);
    return b_->bench().parts().power->is_on();
  }

 private:
  std::shared_ptr<BoundBench> b_;
};

struct ConsoleMatch {
  std::string text;    ///< the matched text
  std::string before;  ///< output before the match
  std::vector<std::optional<std::string>> groups;
  std::map<std::string, std::optional<std::string>> named;
};

class Console {
 public:
  explicit Console(std::shared_ptr<BoundBench> b) : b_(std::move(b)) {}

  void write(const std::string& bytes) {
    std::lock_guard lock(b_->mu);
    auto& bench = b_->bench();
    wrap(bench, "console.write()", [&] { bench.parts().console->write(bytes); });
  }

  std::string read(std::chrono::milliseconds timeout) {
    std::lock_guard lock(b_->mu);
    auto& bench = b_->bench();
    std::string out = std::exchange(b_->console_buffer, {});
    if (out.empty()) out = read_some(bench, timeout);
    for (;;) {
      auto more = read_some(bench, std::chrono::milliseconds(0));
      if (more.empty()) break;
      out += more;
    }
    return out;
  }

  ConsoleMatch expect(const std::string& pattern, std::chrono::milliseconds timeout) {
    re2::RE2 re(pattern, re2::RE2::Quiet);
    if (!re.ok()) throw InputError(fmt::format("console.expect: bad RE2 pattern '{}': {}", pattern, re.error()));
    std::lock_guard lock(b_->mu);
    auto& bench = b_->bench();
    auto& clock = bench.clock();
    const auto deadline = clock.now() + timeout;
    const int n = re.NumberOfCapturingGroups();
    std::vector<re2::StringPiece> sub(static_cast<std::size_t>(n) + 1);
    for (;;) {
      auto& buf = b_->console_buffer;
      if (re.Match(buf, 0, buf.size(), re2::RE2::UNANCHORED, sub.data(), n + 1)) {
        ConsoleMatch m;
        auto start = static_cast<std::size_t>(sub[0].data() - buf.data());
        auto end = start + sub[0].size();
        m.text = std::string(sub[0].data(), sub[0].size());
        m.before = buf.substr(0, start);
        for (int i = 1; i <= n; ++i) {
          const auto& s = sub[static_cast<std::size_t>(i)];
          m.groups.push_back(s.data() ? std::optional<std::string>(std::string(s.data(), s.size())) : std::nullopt);
        }
        for (const auto& [name, index] : re.NamedCapturingGroups()) m.named[name] = m.groups[static_cast<std::size_t>(index - 1)];
        buf.erase(0, end);
        return m;
      }
      auto now = clock.now();
      if (now >= deadline) {
        std::string tail = buf.size() > 200 ? "..." + buf.substr(buf.size() - 200) : buf;
        throw TimeoutError(fmt::format("{}: console.expect('{}'): no match within {} ms (output since the last "
                                       "match: {})",
                                       bench.profile().name, pattern, timeout.count(),
                                       tail.empty() ? std::string("none") : "'" + tail + "'"));
      }
      auto wait = std::min(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now) +
                               std::chrono::milliseconds(1),
                           std::chrono::milliseconds(200));
      auto bytes = read_some(bench, wait);
      // A modelled clock moves only when the device says so; make sure waiting costs time.
      if (bytes.empty() && clock.is_manual() && clock.now() == now) clock.advance(wait);
      buf += bytes;
    }
  }

  void clear() {
    std::lock_guard lock(b_->mu);
    b_->console_buffer.clear();
  }
  std::string pending() {
    std::lock_guard lock(b_->mu);
    return b_->console_buffer;
  }

 private:
  template <class F>
  static void wrap(harness::Bench& bench, const char* step, F&& f) {
    try {
      f();
    } catch (const BenchError&) {
      throw;
    } catch (const InputError&) {
      throw;
    } catch (const std::exception& e) {
      throw BenchError(fmt::format("{}: {} failed: {}", bench.profile().name, step, e.what()));
    }
  }
  static std::string read_some(harness::Bench& bench, std::chrono::milliseconds timeout) {
    std::string bytes;
    wrap(bench, "console.read()", [&] { bytes = bench.parts().console->read(timeout); });
    return bytes;
  }
  std::shared_ptr<BoundBench> b_;
};

// ------------------------------------------------------------------ BenchDrivers

/// What otarig.Bench and a hook's ctx.bench share: the drivers of one bound bench.
class Drivers {
 public:
  virtual ~Drivers() = default;
  virtual std::shared_ptr<BoundBench> bound() = 0;
  virtual std::shared_ptr<harness::BoardProfile> profile_ptr() = 0;
  virtual std::shared_ptr<const harness::ReleaseSet> releases_ptr() = 0;

  Power power() { return Power(bound()); }
  Console console() { return Console(bound()); }

  harness::Observation observe(const std::string& step) {
    auto b = bound();
    py::gil_scoped_release nogil;
    std::lock_guard lock(b->mu);
    b->console_buffer.clear();  // observe() reads the console: what was left is older than that
    return b->bench().observe(step);
  }

  void provision(py::handle image) {
    auto img = image_arg(image, releases_ptr());
    auto b = bound();
    py::gil_scoped_release nogil;
    std::lock_guard lock(b->mu);
    auto& bench = b->bench();
    b->console_buffer.clear();
    if (!bench.parts().provision)
      throw BenchError(fmt::format("{}: provision(): the board cannot be provisioned with a known-good image",
                                   bench.profile().name));
    bench.power_off("provision()");
    try {
      bench.parts().provision->provision(img->bytes);
    } catch (const BenchError&) {
      throw;
    } catch (const InputError&) {
      throw;
    } catch (const std::exception& e) {
      throw BenchError(fmt::format("{}: provision() of {} failed: {}", bench.profile().name, img->name, e.what()));
    }
  }

  Delivery deliver(py::handle image) {
    auto releases = releases_ptr();
    auto img = image_arg(image, releases);
    auto b = bound();
    py::gil_scoped_release nogil;
    std::lock_guard lock(b->mu);
    auto& bench = b->bench();
    b->console_buffer.clear();
    if (!bench.parts().power->is_on()) bench.power_on("deliver()");
    drivers::DeliveryResult r;
    try {
      // A packaged board (docs/ota-clients.md) takes the image's package.
      r = bench.parts().link->deliver(releases ? releases->artifact(*img) : img->bytes);
    } catch (const BenchError&) {
      throw;
    } catch (const InputError&) {
      throw;
    } catch (const std::exception& e) {
      throw BenchError(fmt::format("{}: delivering {} during deliver() failed: {}", bench.profile().name, img->name,
                                   e.what()));
    }
    return Delivery{drivers::to_string(r.status), r.detail, r.bytes_sent};
  }

  std::vector<std::uint32_t> erase_counts() {
    auto b = bound();
    std::lock_guard lock(b->mu);
    auto& ff = b->bench().parts().flash_faults;
    return ff ? ff->erase_counts() : std::vector<std::uint32_t>{};
  }

  py::list take_transcript() {
    auto b = bound();
    std::vector<harness::TranscriptLine> lines;
    {
      py::gil_scoped_release nogil;
      std::lock_guard lock(b->mu);
      b->console_buffer.clear();
      b->bench().drain_console();
      lines = b->bench().take_transcript();
    }
    py::list out;
    for (const auto& l : lines) out.append(py::make_tuple(l.t_ms, l.text));
    return out;
  }

  std::string identity() {
    auto b = bound();
    std::lock_guard lock(b->mu);
    return b->bench().identity();
  }

  double now_ms() {
    auto b = bound();
    std::lock_guard lock(b->mu);
    return std::chrono::duration<double, std::milli>(b->bench().clock().now()).count();
  }

  Image image(const std::string& release, const std::string& fault, const std::string& variant, std::uint64_t seed) {
    auto rs = releases_ptr();
    const auto& base = rs->get(release);
    if (fault.empty()) return Image{std::shared_ptr<const harness::BuiltImage>(rs, &base), ""};
    harness::Rng rng(seed);
    std::string detail;
    auto v = std::make_shared<harness::BuiltImage>(rs->make_variant(base, fault, variant, rng, &detail));
    return Image{std::move(v), detail};
  }

  std::vector<Image> releases() {
    auto rs = releases_ptr();
    std::vector<Image> out;
    for (const auto& r : rs->all()) out.push_back(Image{std::shared_ptr<const harness::BuiltImage>(rs, &r), ""});
    return out;
  }
};

/// ctx.bench of a custom step or oracle: a campaign worker's bench, borrowed.
class HookDrivers final : public Drivers {
 public:
  HookDrivers(std::shared_ptr<BoundBench> b, std::shared_ptr<harness::BoardProfile> profile,
              std::shared_ptr<const harness::ReleaseSet> releases)
      : b_(std::move(b)), profile_(std::move(profile)), releases_(std::move(releases)) {}
  std::shared_ptr<BoundBench> bound() override { return b_; }
  std::shared_ptr<harness::BoardProfile> profile_ptr() override { return profile_; }
  std::shared_ptr<const harness::ReleaseSet> releases_ptr() override { return releases_; }

 private:
  std::shared_ptr<BoundBench> b_;
  std::shared_ptr<harness::BoardProfile> profile_;
  std::shared_ptr<const harness::ReleaseSet> releases_;
};

// ------------------------------------------------------------------ trial context

class TrialContextPy {
 public:
  TrialContextPy(const harness::TrialContext& ctx, bool judging, std::shared_ptr<harness::BoardProfile> profile,
                 std::shared_ptr<const harness::ReleaseSet> releases)
      : ctx_(&ctx), judging_(judging) {
    auto leaf = std::make_shared<harness::Scenario>(*ctx.spec.scenario);
    leaf->parts.clear();
    spec_.owner = leaf;
    spec_.spec = ctx.spec;
    spec_.spec.scenario = leaf.get();
    bound_ = std::make_shared<BoundBench>(profile, releases, ctx.bench);
    drivers_ = std::make_shared<HookDrivers>(bound_, std::move(profile), std::move(releases));
  }

  /// The hook returned: nothing here may be used any more.
  void end() { bound_->invalidate(); }

  const harness::TrialContext& get() const {
    if (!bound_->valid())
      throw std::runtime_error("the trial context ended: it is usable only while its custom step or oracle runs");
    return *ctx_;
  }

  const TrialSpecRef& trial() const {
    get();
    return spec_;
  }
  ScenarioRef scenario() const {
    get();
    return ScenarioRef{spec_.owner, spec_.owner.get()};
  }
  std::shared_ptr<Drivers> bench() const {
    get();
    return drivers_;
  }
  bool judging() const { return judging_; }

  harness::Observation observe(const std::string& step) {
    auto& c = get();
    if (judging_)
      throw std::runtime_error("ctx.observe(): a custom oracle judges what was observed; observe in a custom step");
    harness::Observation o;
    {
      py::gil_scoped_release nogil;
      std::lock_guard lock(bound_->mu);
      o = c.bench.observe(step);
    }
    json ev = observation_event(o);
    ev["type"] = "observation";
    c.outcome.events.push_back(std::move(ev));
    c.outcome.observations.push_back(o);
    return o;
  }

  void note(const std::string& type, py::handle data, const py::kwargs& extra) {
    auto& c = get();
    json ev = data.is_none() ? json::object() : to_json(data);
    if (!ev.is_object()) throw py::type_error("ctx.note(type, data): data must be a dict");
    for (auto item : extra) ev[item.first.cast<std::string>()] = to_json(item.second);
    ev["type"] = type;
    c.outcome.events.push_back(std::move(ev));
  }

 private:
  const harness::TrialContext* ctx_;
  bool judging_;
  TrialSpecRef spec_;
  std::shared_ptr<BoundBench> bound_;
  std::shared_ptr<HookDrivers> drivers_;
};

harness::OracleResult to_oracle_result(py::handle r, const std::string& label) {
  if (py::isinstance<harness::OracleResult>(r)) {
    auto o = r.cast<harness::OracleResult>();
    if (o.name.empty()) o.name = label;
    return o;
  }
  if (py::isinstance<py::bool_>(r)) {
    bool held = r.cast<bool>();
    return harness::OracleResult{label, held, held ? "" : label + " returned False"};
  }
  if (py::isinstance<py::tuple>(r)) {
    auto t = r.cast<py::tuple>();
    if (t.size() == 2 || t.size() == 3) {
      harness::OracleResult o;
      o.name = t[0].is_none() ? label : py::str(t[0]).cast<std::string>();
      if (o.name.empty()) o.name = label;
      int truth = PyObject_IsTrue(t[1].ptr());
      if (truth < 0) throw py::error_already_set();
      o.held = truth != 0;
      if (t.size() == 3 && !t[2].is_none()) o.detail = py::str(t[2]).cast<std::string>();
      return o;
    }
  }
  throw py::type_error(fmt::format("custom oracle {} returned {}; expected an otarig.OracleResult, a (name, held, "
                                   "detail) tuple or a bool",
                                   label, py::repr(r).cast<std::string>()));
}

/// Wraps Python callables as C++ hooks. The callables stay referenced by the
/// caller's arguments for the whole blocking call, so the C++ side keeps
/// borrowed pointers and touches them only with the GIL held.
struct HookSet {
  py::list steps, oracles;  ///< keeps the callables alive
  py::object progress = py::none(), on_finding = py::none();
  std::shared_ptr<HookState> state = std::make_shared<HookState>();

  harness::TrialHooks hooks(std::shared_ptr<harness::BoardProfile> profile,
                            std::shared_ptr<const harness::ReleaseSet> releases) const {
    harness::TrialHooks h;
    auto st = state;
    for (auto fn : steps) {
      PyObject* raw = fn.ptr();
      std::string label = callable_label(fn);
      h.steps.push_back([raw, label, st, profile, releases](harness::TrialContext& c) {
        py::gil_scoped_acquire gil;
        auto ctx = std::make_shared<TrialContextPy>(c, false, profile, releases);
        try {
          py::handle{raw}(ctx);
          ctx->end();
        } catch (py::error_already_set& e) {
          ctx->end();
          throw st->capture(std::move(e), "custom step " + label);
        } catch (py::builtin_exception& e) {
          ctx->end();
          e.set_error();
          throw st->capture(py::error_already_set(), "custom step " + label);
        }
      });
    }
    for (auto fn : oracles) {
      PyObject* raw = fn.ptr();
      std::string label = callable_label(fn);
      h.oracles.push_back([raw, label, st, profile, releases](const harness::TrialContext& c) {
        py::gil_scoped_acquire gil;
        auto ctx = std::make_shared<TrialContextPy>(c, true, profile, releases);
        try {
          auto r = to_oracle_result(py::handle{raw}(ctx), label);
          ctx->end();
          return r;
        } catch (py::error_already_set& e) {
          ctx->end();
          throw st->capture(std::move(e), "custom oracle " + label);
        } catch (py::builtin_exception& e) {
          ctx->end();
          e.set_error();
          throw st->capture(py::error_already_set(), "custom oracle " + label);
        }
      });
    }
    return h;
  }

  /// Calls `progress` (if any) and lets Ctrl-C stop the call: signals are
  /// handled on the main thread whenever it takes the GIL here.
  std::function<void(const harness::Progress&)> progress_fn() const {
    PyObject* raw = progress.is_none() ? nullptr : progress.ptr();
    auto st = state;
    return [raw, st](const harness::Progress& p) {
      py::gil_scoped_acquire gil;
      try {
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
        if (raw) py::handle{raw}(p);
      } catch (py::error_already_set& e) {
        throw st->capture(std::move(e), "progress callback");
      }
    };
  }

  std::function<void(const std::string&)> finding_fn() const {
    if (on_finding.is_none()) return {};
    PyObject* raw = on_finding.ptr();
    auto st = state;
    return [raw, st](const std::string& line) {
      py::gil_scoped_acquire gil;
      try {
        py::handle{raw}(line);
      } catch (py::error_already_set& e) {
        throw st->capture(std::move(e), "on_finding callback");
      }
    };
  }
};

HookSet make_hookset(py::handle steps, py::handle oracles, py::handle progress, py::handle on_finding) {
  HookSet h;
  h.steps = as_callables(steps, "steps");
  h.oracles = as_callables(oracles, "oracles");
  if (!progress.is_none() && !PyCallable_Check(progress.ptr())) throw py::type_error("progress must be callable");
  if (!on_finding.is_none() && !PyCallable_Check(on_finding.ptr()))
    throw py::type_error("on_finding must be callable");
  h.progress = py::reinterpret_borrow<py::object>(progress);
  h.on_finding = py::reinterpret_borrow<py::object>(on_finding);
  return h;
}

// ------------------------------------------------------------------ Plan

struct PlanPy {
  std::shared_ptr<const harness::Scenario> owner;
  const harness::Scenario* scenario = nullptr;
  std::uint64_t seed = 1;
  harness::Plan plan;
  std::string board;  ///< profile name the plan was measured on

  TrialSpecRef at(std::size_t i) const { return TrialSpecRef{owner, plan.trials.at(i)}; }
  PlanPy with(std::vector<harness::TrialSpec> trials) const {
    PlanPy p = *this;
    p.plan.trials = std::move(trials);
    return p;
  }
};

Trial trial_from_outcome(harness::TrialOutcome&& o) {
  Trial t;
  t.raw = trial_json(o);
  t.transcript = std::move(o.transcript);
  t.events = std::move(o.events);
  return t;
}

// ------------------------------------------------------------------ Bench

class BenchPy final : public Drivers {
 public:
  BenchPy(const std::string& board, std::uint64_t seed) : board_(board), seed_(seed) {
    py::gil_scoped_release nogil;
    profile_ = std::make_shared<harness::BoardProfile>(harness::load_profile(harness::resolve_board(board)));
    // The driver sections are checked as `otarig run` checks them (nothing is
    // opened): an unknown device kind or driver raises here, not on first use.
    harness::validate_drivers(*profile_, harness::builtin_registries().drivers);
    releases_ = std::make_shared<const harness::ReleaseSet>(*profile_);
  }

  std::shared_ptr<BoundBench> bound() override {
    // Binding may open ports or start processes: without the GIL, and the GIL
    // is given up before mu_ is taken (never wait for one holding the other).
    std::optional<py::gil_scoped_release> nogil;
    if (PyGILState_Check()) nogil.emplace();
    std::lock_guard lock(mu_);
    if (!bound_ || !bound_->valid()) bound_ = std::make_shared<BoundBench>(profile_, releases_, seed_);
    return bound_;
  }
  std::shared_ptr<harness::BoardProfile> profile_ptr() override { return profile_; }
  std::shared_ptr<const harness::ReleaseSet> releases_ptr() override { return releases_; }

  void close() {
    std::shared_ptr<BoundBench> b;
    {
      std::lock_guard lock(mu_);
      b = std::exchange(bound_, nullptr);
    }
    if (b) {
      py::gil_scoped_release nogil;
      b->invalidate();
    }
  }

  const std::string& board() const { return board_; }
  const std::filesystem::path& profile_path() const { return profile_->path; }
  std::uint64_t seed() const { return seed_; }

  CampaignResult run(py::handle scenario, std::optional<std::uint64_t> seed, std::optional<std::uint64_t> trials,
                     py::handle trial, py::handle shard, py::handle out, bool resume, bool force, unsigned jobs,
                     py::handle signing_key, py::handle progress, py::handle on_finding, py::handle oracles,
                     py::handle steps) {
    harness::CampaignOptions o;
    o.board = board_;
    o.scenario = py::isinstance<ScenarioRef>(scenario) ? scenario.cast<ScenarioRef>().get().path.string()
                                                       : fspath(scenario);
    o.seed = seed.value_or(seed_);
    o.trials = trials;
    if (!trial.is_none()) o.only = trial_index(trial);
    if (!shard.is_none()) std::tie(o.shard, o.shards) = shard_arg(shard);
    o.out = fspath(out);
    o.resume = resume;
    o.force = force;
    o.spelling = {.resume = "resume=True", .force = "force=True", .out = "out"};
    o.jobs = jobs;
    if (!signing_key.is_none()) o.bundle.signing_key = fspath(signing_key);
    auto hs = make_hookset(steps, oracles, progress, on_finding);
    o.hooks = hs.hooks(profile_, releases_);
    harness::use_registries(harness::builtin_registries(), o.hooks, o.bundle);
    o.on_progress = hs.progress_fn();
    o.on_finding = hs.finding_fn();
    // A lab board's port or probe opens once: direct calls give it up for the campaign.
    if (profile_->device_kind != "virtual") close();

    harness::CampaignResult r;
    try {
      py::gil_scoped_release nogil;
      r = harness::run_campaign(o, harness::builtin_registries());
    } catch (...) {
      hs.state->rethrow_if_failed();
      throw;
    }
    hs.state->rethrow_if_failed();
    auto result = make_result(r);
    if (!r.aborted.empty()) {
      auto& types = error_types();
      py::object exc = types.bench_failure(r.aborted);
      exc.attr("result") = py::cast(result);
      PyErr_SetObject(types.bench_failure.ptr(), exc.ptr());
      throw py::error_already_set();
    }
    return result;
  }

  PlanPy plan(py::handle scenario, std::optional<std::uint64_t> seed) {
    auto sc = scenario_arg(scenario);
    harness::check_release_names(sc.get(), *profile_);
    auto b = bound();
    PlanPy p;
    p.owner = sc.root;
    p.scenario = sc.node;
    p.seed = seed.value_or(seed_);
    p.board = profile_->name;
    py::gil_scoped_release nogil;
    std::lock_guard lock(b->mu);
    b->console_buffer.clear();
    auto abilities = harness::board_abilities(b->bench(), *releases_);
    if (abilities.count_ops)
      abilities.count_ops = [&](const std::string& s, const std::string& d) { return count_ops(*b, s, d); };
    p.plan = harness::make_plan(*sc.node, p.seed, abilities);
    return p;
  }

  std::vector<Trial> run_plan(const PlanPy& plan, py::handle progress, py::handle oracles, py::handle steps) {
    if (plan.board != profile_->name)
      throw InputError(fmt::format("run_plan: the plan was made for board {}, this bench is {}", plan.board,
                                   profile_->name));
    auto hs = make_hookset(steps, oracles, progress, py::none());
    return run_specs(plan.plan.trials, hs);
  }

  Trial trial(py::handle scenario, std::optional<std::uint64_t> index, std::optional<std::uint64_t> seed,
              std::optional<std::uint64_t> cut_op, std::optional<bool> torn, std::optional<std::uint64_t> torn_seed,
              std::optional<std::string> variant, py::handle fault, py::handle oracles, py::handle steps,
              py::handle out) {
    auto sc = scenario_arg(scenario);
    harness::check_release_names(sc.get(), *profile_);
    const std::uint64_t s = seed.value_or(seed_);
    if (!index && sc.get().is_suite())
      throw InputError(fmt::format("{}: scenario '{}' is a suite; give one of its parts or a trial index",
                                   sc.get().path.string(), sc.get().name));
    // The trial as the campaign plans it (the first one unless `index` says),
    // then the fields asked for, checked by the scenario's fault kind.
    auto p = plan(scenario, s);
    const std::uint64_t want = index.value_or(0);
    auto it = std::find_if(p.plan.trials.begin(), p.plan.trials.end(),
                           [&](const harness::TrialSpec& t) { return t.index == want; });
    if (it == p.plan.trials.end())
      throw InputError(fmt::format("trial index {}: the plan of {} with seed {} has no such trial", want,
                                   sc.get().name, s));
    harness::TrialSpec spec = *it;
    sc = ScenarioRef{p.owner, spec.scenario};
    json fields = json::object();
    if (cut_op) fields["cut_op"] = *cut_op;
    if (torn) fields["torn"] = *torn;
    if (torn_seed) fields["torn_seed"] = *torn_seed;
    if (variant) fields["variant"] = *variant;
    if (!fault.is_none()) {
      if (!py::isinstance<py::dict>(fault))
        throw InputError("trial(fault=...): a dict of the fault point's fields, e.g. {'lie': 'mix-and-match'}");
      const json given = to_json(fault);
      for (auto f = given.begin(); f != given.end(); ++f) {
        if (fields.contains(f.key()))
          throw InputError(fmt::format("trial(fault=...): {} is given twice, as a keyword and in fault", f.key()));
        fields[f.key()] = *f;
      }
    }
    spec.point = spec.scenario->fault.unit->point_with(spec, fields);
    auto hs = make_hookset(steps, oracles, py::none(), py::none());
    auto keep = sc.root;  // the spec points into it
    const std::filesystem::path evidence = out.is_none() ? std::filesystem::path() : std::filesystem::path(fspath(out));
    return run_specs({spec}, hs, evidence).at(0);
  }

 private:
  static std::uint64_t trial_index(py::handle v) {
    if (py::isinstance<py::int_>(v)) return v.cast<std::uint64_t>();
    auto s = py::str(v).cast<std::string>();
    try {
      std::size_t used = 0;
      auto i = std::stoull(s, &used);
      if (used == s.size()) return i;
    } catch (const std::exception&) {
    }
    throw InputError(fmt::format("--trial {}: expected a trial id such as 00042", s));
  }

  static std::pair<unsigned, unsigned> shard_arg(py::handle v) {
    if (py::isinstance<py::tuple>(v) || py::isinstance<py::list>(v)) {
      auto t = v.cast<std::vector<unsigned>>();
      if (t.size() == 2) return {t[0], t[1]};
    } else {
      auto s = py::str(v).cast<std::string>();
      auto slash = s.find('/');
      try {
        std::size_t a = 0, b = 0;
        if (slash != std::string::npos) {
          auto i = static_cast<unsigned>(std::stoul(s.substr(0, slash), &a));
          auto n = static_cast<unsigned>(std::stoul(s.substr(slash + 1), &b));
          if (a == slash && b == s.size() - slash - 1) return {i, n};
        }
      } catch (const std::exception&) {
      }
      throw InputError(fmt::format("--shard {}: expected I/N with 0 <= I < N, e.g. 0/4", s));
    }
    throw InputError("shard: expected 'I/N' or a tuple (I, N)");
  }

  std::uint64_t count_ops(BoundBench& b, const std::string& start, const std::string& deliver) {
    auto key = start + "->" + deliver;
    if (auto it = ops_.find(key); it != ops_.end()) return it->second;
    auto n = harness::count_update_ops(b.bench(), *releases_, start, deliver);
    ops_[key] = n;
    return n;
  }

  /// Runs the trials one after another; with `evidence`, each writes its
  /// folder there (trials/ID/) as a campaign does.
  std::vector<Trial> run_specs(const std::vector<harness::TrialSpec>& specs, const HookSet& hs,
                               const std::filesystem::path& evidence = {}) {
    auto hooks = hs.hooks(profile_, releases_);
    auto progress = hs.progress_fn();
    auto b = bound();
    std::vector<Trial> out;
    try {
      py::gil_scoped_release nogil;
      std::lock_guard lock(b->mu);
      b->console_buffer.clear();
      harness::Progress p;
      p.total = specs.size();
      const auto t0 = std::chrono::steady_clock::now();
      for (const auto& spec : specs) {
        auto outcome = harness::run_trial(b->bench(), *releases_, spec, &hooks);
        ++p.done;
        if (!outcome.passed) ++p.findings;
        p.last_trial = spec.id;
        p.last_passed = outcome.passed;
        p.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        p.eta_s = p.elapsed_s / static_cast<double>(p.done) * static_cast<double>(p.total - p.done);
        if (evidence.empty()) {
          out.push_back(trial_from_outcome(std::move(outcome)));
        } else {
          const auto summary = harness::trial_summary(outcome);
          harness::write_trial_evidence(evidence, outcome, summary);
          auto t = trial_from_outcome(std::move(outcome));
          t.raw = summary;
          t.out = std::filesystem::absolute(evidence);
          out.push_back(std::move(t));
        }
        progress(p);
      }
    } catch (...) {
      hs.state->rethrow_if_failed();
      throw;
    }
    hs.state->rethrow_if_failed();
    return out;
  }

  std::string board_;
  std::uint64_t seed_;
  std::shared_ptr<harness::BoardProfile> profile_;
  std::shared_ptr<const harness::ReleaseSet> releases_;
  std::mutex mu_;
  std::shared_ptr<BoundBench> bound_;
  std::map<std::string, std::uint64_t> ops_;
};

// ------------------------------------------------------------------ the Python classes

void register_handles(py::module_& m) {
  // ---------------------------------------------------------------- Image, Delivery
  py::class_<Image>(m, "Image",
                    "An update image the rig built: a release of the profile, signed with its key,\n"
                    "or a damaged variant of one (Bench.image(release, fault=...)). ``bytes(image)``\n"
                    "gives its bytes.")
      .def_property_readonly("name", [](const Image& i) { return i.image->name; },
                             "Release name, or 'RELEASE/VARIANT' for a damaged one.")
      .def_property_readonly("version", [](const Image& i) { return i.image->version; }, "The header's version.")
      .def_property_readonly("security_counter", [](const Image& i) { return i.image->security_counter; },
                             "The header's anti-rollback counter.")
      .def_property_readonly("digest", [](const Image& i) { return i.image->digest; },
                             "SHA-256 (hex) of header+payload: what the device reports when it runs it.")
      .def_property_readonly("size", [](const Image& i) { return i.image->bytes.size(); }, "Bytes in the image.")
      .def_property_readonly("authentic", [](const Image& i) { return i.image->authentic; },
                             "True when validly signed by a trusted key and unmodified.")
      .def_property_readonly("fails_self_test", [](const Image& i) { return i.image->fails_self_test; },
                             "True for a signed image whose self-test fails after it boots.")
      .def_property_readonly("variant", [](const Image& i) { return i.image->variant; }, "'' for a release as built.")
      .def_property_readonly("detail", [](const Image& i) { return i.detail; }, "What the fault did to the release.")
      .def_property_readonly(
          "data",
          [](const Image& i) {
            return py::bytes(reinterpret_cast<const char*>(i.image->bytes.data()), i.image->bytes.size());
          },
          "The image's bytes.")
      .def("__bytes__",
           [](const Image& i) {
             return py::bytes(reinterpret_cast<const char*>(i.image->bytes.data()), i.image->bytes.size());
           })
      .def("__len__", [](const Image& i) { return i.image->bytes.size(); })
      .def("__repr__", [](const Image& i) {
        return fmt::format("<Image {} version {} counter {} ({} bytes{})>", i.image->name, i.image->version,
                           i.image->security_counter, i.image->bytes.size(),
                           i.image->authentic ? "" : ", not authentic");
      });

  py::class_<Delivery>(m, "Delivery", "How handing an image to the device's updater ended.")
      .def_readonly("status", &Delivery::status, "'accepted', 'refused', 'power-lost' or 'unreachable'.")
      .def_readonly("detail", &Delivery::detail, "The updater's reason, or where a cut fell.")
      .def_readonly("bytes_sent", &Delivery::bytes_sent, "Bytes handed to the device.")
      .def_property_readonly("accepted", [](const Delivery& d) { return d.status == "accepted"; },
                             "True when the updater took the image.")
      .def("__repr__", [](const Delivery& d) {
        return fmt::format("Delivery(status={}, detail={}, bytes_sent={})", py::repr(py::str(d.status)).cast<std::string>(),
                           py::repr(py::str(d.detail)).cast<std::string>(), d.bytes_sent);
      });

  // ---------------------------------------------------------------- Power, Console
  py::class_<Power>(m, "Power", "The board's power switch (relay, PDU, process, virtual supply).")
      .def("on", &Power::on, py::call_guard<py::gil_scoped_release>(), "Switches power on.")
      .def("off", &Power::off, py::call_guard<py::gil_scoped_release>(), "Switches power off.")
      .def(
          "cycle",
          [](Power& p, py::handle off_time) {
            auto ms = seconds_arg(off_time, "off_time");
            py::gil_scoped_release nogil;
            p.cycle(ms);
          },
          py::arg("off_time") = 1.0,
           "Off, keep it off for `off_time` (seconds as a float, or a timedelta), on.")
      .def_property_readonly("is_on", &Power::is_on, py::call_guard<py::gil_scoped_release>(),
                             "True while the board is powered.");

  py::class_<ConsoleMatch>(m, "ConsoleMatch", "What console.expect() matched.")
      .def_readonly("text", &ConsoleMatch::text, "The matched text.")
      .def_readonly("before", &ConsoleMatch::before, "Console output before the match (consumed with it).")
      .def_property_readonly("groups", [](const ConsoleMatch& cm) { return py::tuple(py::cast(cm.groups)); },
                             "The capture groups, None for a group that did not take part.")
      .def("group",
           [](const ConsoleMatch& cm, py::handle which) -> std::optional<std::string> {
             if (py::isinstance<py::int_>(which)) {
               auto i = which.cast<std::size_t>();
               if (i == 0) return cm.text;
               if (i > cm.groups.size()) throw py::index_error("no such group");
               return cm.groups[i - 1];
             }
             auto it = cm.named.find(py::str(which).cast<std::string>());
             if (it == cm.named.end()) throw py::index_error("no such group");
             return it->second;
           },
           py::arg("group") = 0, "A group by number (0: the whole match) or by name, like re.Match.group.")
      .def("groupdict", [](const ConsoleMatch& cm) { return cm.named; }, "The named groups.")
      .def("__getitem__",
           [](const ConsoleMatch& cm, const std::string& name) -> std::optional<std::string> {
             auto it = cm.named.find(name);
             if (it == cm.named.end()) throw py::key_error(name);
             return it->second;
           })
      .def("__repr__", [](const ConsoleMatch& cm) {
        return fmt::format("<ConsoleMatch {}>", py::repr(py::str(cm.text)).cast<std::string>());
      });

  py::class_<Console>(m, "Console",
                      "The board's console. expect() takes RE2 patterns (the syntax of Python's re\n"
                      "for the common cases, including (?P<name>...) groups; no backreferences or\n"
                      "lookaround) and matches in linear time. Output read by read()/expect() and not\n"
                      "consumed waits for the next expect(); bench calls that read the console\n"
                      "themselves (observe, deliver, provision, trials) drop it as stale. Bytes read\n"
                      "here do not enter a trial's console.log.")
      .def("write", &Console::write, py::arg("data"), py::call_guard<py::gil_scoped_release>(),
           "Writes str (UTF-8) or bytes to the device.")
      .def(
          "read",
          [](Console& c, py::handle timeout) {
            auto ms = seconds_arg(timeout, "timeout");
            std::string bytes;
            {
              py::gil_scoped_release nogil;
              bytes = c.read(ms);
            }
            return decode(bytes);
          },
          py::arg("timeout") = 0.0,
          "What the device printed (and expect() left unconsumed): waits up to `timeout`\n"
          "seconds for the first byte, returns '' when none came. Undecodable bytes become U+FFFD.")
      .def(
          "expect",
          [](Console& c, const std::string& pattern, py::handle timeout) {
            auto ms = seconds_arg(timeout, "timeout");
            py::gil_scoped_release nogil;
            return c.expect(pattern, ms);
          },
          py::arg("pattern"), py::arg("timeout") = 5.0,
           "Reads until the RE2 `pattern` matches (searching, not anchored) and returns the\n"
           "match; output up to the end of the match is consumed. Raises BenchTimeout (a\n"
           "TimeoutError) after `timeout` seconds of the bench clock (modelled time on a\n"
           "virtual board, so a timeout costs no real time there) and InputError for a bad pattern.")
      .def("clear", &Console::clear, py::call_guard<py::gil_scoped_release>(), "Forgets output read but not consumed by expect().")
      .def_property_readonly("pending", &Console::pending, py::call_guard<py::gil_scoped_release>(), "Output read but not consumed by expect().");
}

void register_trial_context(py::module_& m) {
  // ---------------------------------------------------------------- BenchDrivers
  py::class_<Drivers, std::shared_ptr<Drivers>>(
      m, "BenchDrivers",
      "The drivers of a bound bench: what otarig.Bench offers for direct use and what a\n"
      "custom step or oracle sees as ``ctx.bench``. Every call releases the GIL.")
      .def_property_readonly("profile", &Drivers::profile_ptr, "The board profile.")
      .def_property_readonly("power", &Drivers::power, "The power switch (binds the drivers on first use).")
      .def_property_readonly("console", &Drivers::console, "The console (binds the drivers on first use).")
      .def("observe", &Drivers::observe, py::arg("step") = "observe",
           "Asks for the device's status (the profile's status_command, re-asked every\n"
           "status_interval) and waits for the status pattern up to the boot timeout.\n"
           "Returns an Observation; booted is False when no status came.")
      .def("provision", &Drivers::provision, py::arg("image"),
           "Writes a known-good image outside the updater (a release name, an Image or bytes),\n"
           "leaving the device confirmed on it and powered off.")
      .def("deliver", &Drivers::deliver, py::arg("image"),
           "Hands an image (a release name, an Image or bytes) to the device's updater,\n"
           "powering it on first if it is off. Returns a Delivery.")
      .def("erase_counts", &Drivers::erase_counts, py::call_guard<py::gil_scoped_release>(),
           "Erase count per flash sector since the last provision ([] when the board does not count).")
      .def("take_transcript", &Drivers::take_transcript,
           "The console lines the bench captured (observe() reads the console) as (t_ms, line)\n"
           "pairs since the last call.")
      .def_property_readonly("identity", &Drivers::identity, py::call_guard<py::gil_scoped_release>(), "The first boot banner line seen (device identity).")
      .def_property_readonly("now_ms", &Drivers::now_ms, py::call_guard<py::gil_scoped_release>(), "The bench clock in milliseconds (modelled on virtual boards).")
      .def("image", &Drivers::image, py::arg("release"), py::arg("fault") = "", py::arg("variant") = "",
           py::arg("seed") = 0,
           "A release as an Image, or a damaged variant of it: fault 'tamper' (variant\n"
           "'header-bit-flip', 'payload-bit-flip', 'digest-bit-flip', 'digest-resigned',\n"
           "'signature-bit-flip', 'truncated', 'appended', 'version-edited'), 'unsigned',\n"
           "'wrong-key' or\n"
           "'self-test-fail'. `seed` picks the damaged offsets.")
      .def_property_readonly("releases", &Drivers::releases, "The profile's releases as built Images.");

  // ---------------------------------------------------------------- TrialContext
  py::class_<TrialContextPy, std::shared_ptr<TrialContextPy>>(
      m, "TrialContext",
      "What a custom step or oracle receives. Usable only while that hook runs.\n\n"
      "Custom steps run after the standard observe step (after the fault and the\n"
      "recovering power cycle) and before the retry; custom oracles run after the\n"
      "five standard ones.")
      .def_property_readonly("trial", &TrialContextPy::trial, "The trial's spec (index, id, fault, ...).")
      .def_property_readonly("scenario", &TrialContextPy::scenario, "The trial's scenario.")
      .def_property_readonly("bench", &TrialContextPy::bench, "The bench the trial runs on (power, console, observe).")
      .def_property_readonly("judging", &TrialContextPy::judging, "True in a custom oracle, False in a custom step.")
      .def_property_readonly("observations",
                             [](const TrialContextPy& c) { return c.get().outcome.observations; },
                             "The observations so far, in order.")
      .def_property_readonly("oracles", [](const TrialContextPy& c) { return c.get().outcome.oracles; },
                             "The oracle results so far (in an oracle: the standard five and earlier custom ones).")
      .def_property_readonly("delivered", [](const TrialContextPy& c) { return c.get().outcome.delivered; },
                             "Name of the image the faulted step delivered.")
      .def_property_readonly("delivery_status",
                             [](const TrialContextPy& c) { return c.get().outcome.delivery_status; },
                             "accepted, refused, power-lost or unreachable.")
      .def_property_readonly("delivery_detail",
                             [](const TrialContextPy& c) { return c.get().outcome.delivery_detail; },
                             "The updater's reason, or where the cut fell.")
      .def_property_readonly("fault_detail", [](const TrialContextPy& c) { return c.get().outcome.fault_detail; },
                             "What the fault did.")
      .def_property_readonly(
          "cut",
          [](const TrialContextPy& c) -> py::object {
            const auto& o = c.get().outcome;
            if (!o.cut.is_object()) return py::none();
            return to_py(o.cut);
          },
          "Where a counted power cut fell, or None.")
      .def_property_readonly("events", [](const TrialContextPy& c) { return to_py(c.get().outcome.events); },
                             "The trial's events so far.")
      .def("observe", &TrialContextPy::observe, py::arg("step") = "custom",
           "Observes the device now and adds the observation to the trial (custom steps only).")
      .def("note", &TrialContextPy::note, py::arg("type"), py::arg("data") = py::none(),
           "Adds an event {type, **data, **kwargs} to the trial's events.jsonl and the journal.")
      .def("erase_counts",
           [](const TrialContextPy& c) {
             auto& ff = c.get().bench.parts().flash_faults;
             return ff ? ff->erase_counts() : std::vector<std::uint32_t>{};
           },
           "Erase count per flash sector since this trial provisioned the device.");
}

void register_plan_and_bench(py::module_& m) {
  // ---------------------------------------------------------------- Plan
  py::class_<PlanPy>(m, "Plan",
                     "The trials of a scenario for a seed, as a campaign would run them. Filter it and\n"
                     "run it with Bench.run_plan(); Plans are immutable (filters return new ones).")
      .def_property_readonly("scenario", [](const PlanPy& p) { return ScenarioRef{p.owner, p.scenario}; },
                             "The scenario (or suite) planned.")
      .def_readonly("seed", &PlanPy::seed, "The campaign seed the trials derive from.")
      .def_readonly("board", &PlanPy::board, "Name of the board the plan was measured on.")
      .def_property_readonly(
          "trials",
          [](const PlanPy& p) {
            std::vector<TrialSpecRef> out;
            for (std::size_t i = 0; i < p.plan.trials.size(); ++i) out.push_back(p.at(i));
            return out;
          },
          "The trials, in index order.")
      .def_property_readonly("ops_per_update", [](const PlanPy& p) { return p.plan.ops_per_update; },
                             "Flash operations of one update, per 'start->deliver' pair measured.")
      .def_property_readonly(
          "skipped",
          [](const PlanPy& p) {
            std::vector<std::pair<std::string, std::string>> out;
            for (const auto& k : p.plan.skipped) out.emplace_back(k.scenario, k.reason);
            return out;
          },
          "Scenarios of the suite the board cannot run, as (name, reason) pairs.")
      .def("__len__", [](const PlanPy& p) { return p.plan.trials.size(); })
      .def("__getitem__",
           [](const PlanPy& p, std::ptrdiff_t i) {
             auto n = static_cast<std::ptrdiff_t>(p.plan.trials.size());
             if (i < 0) i += n;
             if (i < 0 || i >= n) throw py::index_error("plan index out of range");
             return p.at(static_cast<std::size_t>(i));
           })
      .def(
          "__iter__",
          [](const PlanPy& p) {
            py::list out;
            for (std::size_t i = 0; i < p.plan.trials.size(); ++i) out.append(p.at(i));
            return py::iter(out);
          })
      .def(
          "filter",
          [](const PlanPy& p, const py::function& keep) {
            std::vector<harness::TrialSpec> kept;
            for (std::size_t i = 0; i < p.plan.trials.size(); ++i) {
              int truth = PyObject_IsTrue(keep(p.at(i)).ptr());
              if (truth < 0) throw py::error_already_set();
              if (truth) kept.push_back(p.plan.trials[i]);
            }
            return p.with(std::move(kept));
          },
          py::arg("predicate"), "The trials for which predicate(TrialSpec) is true.")
      .def(
          "limit",
          [](const PlanPy& p, std::uint64_t n) {
            PlanPy q = p;
            harness::limit_plan(q.plan, n, q.seed);
            return q;
          },
          py::arg("n"), "Keeps n trials chosen by the seed, as --trials N does.")
      .def(
          "shard",
          [](const PlanPy& p, unsigned index, unsigned count) {
            if (count == 0 || index >= count)
              throw InputError(fmt::format("--shard {}/{}: the shard index must be below the shard count", index,
                                           count));
            PlanPy q = p;
            harness::shard_plan(q.plan, index, count);
            return q;
          },
          py::arg("index"), py::arg("count"), "The trials whose index % count == index, as --shard I/N does.")
      .def("__repr__", [](const PlanPy& p) {
        return fmt::format("<Plan {} seed {}: {} trials>", p.scenario->name, p.seed, p.plan.trials.size());
      });

  // ---------------------------------------------------------------- Bench
  py::class_<BenchPy, Drivers, std::shared_ptr<BenchPy>>(
      m, "Bench",
      "A board profile bound to its drivers: run campaigns, plans and single trials on\n"
      "it, or drive the board directly (power, console, observe, provision, deliver).\n\n"
      "    bench = otarig.Bench('virtual-ab')          # a name from boards/, or a path\n"
      "    result = bench.run('nightly', seed=1, out='OUT')\n\n"
      "A missing or malformed profile raises InputError (a ValueError) naming file and\n"
      "line. The drivers bind on first direct use; close() (or leaving a `with` block)\n"
      "releases them.")
      .def(py::init([](py::handle board, std::uint64_t seed) { return std::make_shared<BenchPy>(fspath(board), seed); }),
           py::arg("board"), py::arg("seed") = 1,
           "`board`: a path or a name (boards/NAME.yaml in the data directories, as the\n"
           "command line resolves it). `seed`: the default campaign seed.")
      .def_property_readonly("board", &BenchPy::board, "The board as given (replay commands repeat it).")
      .def_property_readonly("seed", &BenchPy::seed, "The default seed.")
      .def("close", &BenchPy::close, "Releases the drivers bound for direct use (they bind again on next use).")
      .def("__enter__", [](std::shared_ptr<BenchPy> self) { return self; })
      .def("__exit__", [](BenchPy& self, py::args) { self.close(); })
      .def("run", &BenchPy::run, py::arg("scenario"), py::kw_only(), py::arg("seed") = py::none(),
           py::arg("trials") = py::none(), py::arg("trial") = py::none(), py::arg("shard") = py::none(),
           py::arg("out") = "otarig-out", py::arg("resume") = false, py::arg("force") = false, py::arg("jobs") = 0,
           py::arg("signing_key") = py::none(), py::arg("progress") = py::none(),
           py::arg("on_finding") = py::none(), py::arg("oracles") = py::tuple(), py::arg("steps") = py::tuple(),
           "Runs a campaign (as `otarig run`) and writes its evidence bundle into `out`.\n\n"
           "scenario: a name, a path or a Scenario. seed: default the bench's. trials: keep\n"
           "this many trials chosen by the seed (--trials). trial: only this index or id\n"
           "(--trial). shard: 'I/N' or (I, N). resume: continue the journal in `out`. force:\n"
           "replace an earlier campaign's evidence in `out` (--force). jobs:\n"
           "benches in parallel (0: the command line's default). signing_key: the Ed25519\n"
           "private key (PKCS#8 PEM file) that signs the bundle's attestation (--signing-key);\n"
           "without one a key made for this bundle alone signs it and the attestation says\n"
           "test_key. progress(Progress) is called after each trial, on_finding(line) with\n"
           "each finding's one-line replay command.\n"
           "oracles: callables ctx -> OracleResult | (name, held, detail) | bool, judged beside\n"
           "the five standard oracles. steps: callables ctx -> None run after the observe step.\n\n"
           "Returns a CampaignResult. Raises InputError for bad input, BenchFailure (a\n"
           "RuntimeError, with .result) when the bench stopped the campaign, and the exception\n"
           "itself when a hook or callback raised. Releases the GIL; Ctrl-C stops it.")
      .def("plan", &BenchPy::plan, py::arg("scenario"), py::kw_only(), py::arg("seed") = py::none(),
           "The plan a campaign of `scenario` with `seed` would run (power-cut scenarios\n"
           "measure the flash operations of an update on this bench).")
      .def("run_plan", &BenchPy::run_plan, py::arg("plan"), py::kw_only(), py::arg("progress") = py::none(),
           py::arg("oracles") = py::tuple(), py::arg("steps") = py::tuple(),
           "Runs the trials of a plan one after another on this bench and returns them as\n"
           "Trials. No evidence folder is written (use run() for an evidence bundle).")
      .def("trial", &BenchPy::trial, py::arg("scenario"), py::kw_only(), py::arg("index") = py::none(),
           py::arg("seed") = py::none(), py::arg("cut_op") = py::none(), py::arg("torn") = py::none(),
           py::arg("torn_seed") = py::none(), py::arg("variant") = py::none(), py::arg("fault") = py::none(),
           py::arg("oracles") = py::tuple(), py::arg("steps") = py::tuple(), py::arg("out") = py::none(),
           "Runs one trial with a fault you choose and returns its Trial.\n\n"
           "out: a folder to write the trial's evidence into, OUT/trials/ID/ (console.log,\n"
           "console.raw when the console sent control bytes, events.jsonl, verdict.json),\n"
           "as `otarig run --trial ID --out OUT` writes it; without it nothing is written.\n"
           "index: take that trial of the scenario's plan (as --trial does). Otherwise the\n"
           "trial is index 0 of a single scenario with: cut_op (power cut before flash\n"
           "operation k, 0 = none), torn (tear that operation), torn_seed, variant (a tamper\n"
           "damage, default the scenario's first), and fault: a dict of any other field the\n"
           "scenario's fault kind takes (lie for lying-mirror, seconds for device-clock, as\n"
           "run.json shows a trial's fault). The same overrides apply to a planned trial.")
      .def("__repr__", [](const BenchPy& b) {
        return fmt::format("<Bench {} ({})>", b.board(), b.profile_path().string());
      });
}

}  // namespace

void register_bench(py::module_& m) {
  register_handles(m);
  register_trial_context(m);
  register_plan_and_bench(m);
}

}  // namespace otarig::python
