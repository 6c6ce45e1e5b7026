#include "otarig/harness/oracles.hpp"

#include <fmt/format.h>

#include <stdexcept>

#include "otarig/core/image.hpp"

namespace otarig::harness {

int compare_versions(const std::string& a, const std::string& b) {
  try {
    auto va = image::Version::parse(a), vb = image::Version::parse(b);
    return va < vb ? -1 : (vb < va ? 1 : 0);
  } catch (const std::exception&) {
    return a < b ? -1 : (b < a ? 1 : 0);
  }
}

namespace {

std::string short_digest(const std::string& d) { return d.size() > 12 ? d.substr(0, 12) : d; }

OracleResult authentic(const OracleInput& in) {
  OracleResult r{"authentic", true, ""};
  for (std::size_t i = 0; i < in.history.size(); ++i) {
    const auto& o = in.history[i];
    if (!o.booted) continue;
    // Between the hostile delivery and the clean retry, running the delivered
    // bytes means the device booted what it should have refused.
    bool after_bad = !in.delivered_authentic && i >= in.fault_index && (!in.has_retry || i < in.retry_index);
    if (after_bad && o.digest == in.delivered_digest) {
      r.held = false;
      r.detail = fmt::format("{}: the device runs the inauthentic image it was given (digest {})", o.step,
                             short_digest(o.digest));
      return r;
    }
    if (!in.authentic_digests.count(o.digest)) {
      r.held = false;
      r.detail = fmt::format("{}: the device runs an image no trusted key signed (digest {})", o.step,
                             short_digest(o.digest));
      return r;
    }
  }
  return r;
}

OracleResult atomic(const OracleInput& in) {
  OracleResult r{"atomic", true, ""};
  auto check = [&](std::size_t i, const std::string& old_d, const std::string& new_d) {
    if (!r.held || i >= in.history.size()) return;
    const auto& o = in.history[i];
    if (!o.booted) {
      r.held = false;
      r.detail = fmt::format("{}: no image runs (the device did not boot)", o.step);
    } else if (o.digest != old_d && o.digest != new_d) {
      r.held = false;
      r.detail = fmt::format("{}: the running image (digest {}) is neither the old ({}) nor the new ({})", o.step,
                             short_digest(o.digest), short_digest(old_d), short_digest(new_d));
    }
  };
  check(in.fault_index, in.before_digest, in.delivered_digest);
  // A delivery that brings a second image: it too is the old or the new one.
  if (r.held && !in.delivered_image1_digest.empty() && in.fault_index < in.history.size()) {
    const auto& o = in.history[in.fault_index];
    if (o.booted && !o.image1_digest.empty() && o.image1_digest != in.before_image1_digest &&
        o.image1_digest != in.delivered_image1_digest) {
      r.held = false;
      r.detail = fmt::format("{}: the second image (digest {}) is neither the old ({}) nor the new ({})", o.step,
                             short_digest(o.image1_digest), short_digest(in.before_image1_digest),
                             short_digest(in.delivered_image1_digest));
    }
  }
  if (in.has_retry) {
    const auto& at_fault = in.history[in.fault_index];
    check(in.retry_index, at_fault.booted ? at_fault.digest : in.before_digest, in.retry_digest);
  }
  return r;
}

OracleResult no_rollback(const OracleInput& in) {
  OracleResult r{"no-rollback", true, ""};
  std::string max_version;
  std::optional<std::uint64_t> max_counter;
  for (const auto& o : in.history) {
    if (!o.booted) continue;
    if (!max_version.empty() && compare_versions(o.version, max_version) < 0) {
      r.held = false;
      r.detail = fmt::format("{}: the running version {} is below the earlier {}", o.step, o.version, max_version);
      return r;
    }
    if (o.counter && max_counter && *o.counter < *max_counter) {
      r.held = false;
      r.detail = fmt::format("{}: the anti-rollback counter {} is below the earlier {}", o.step, *o.counter,
                             *max_counter);
      return r;
    }
    if (max_version.empty() || compare_versions(o.version, max_version) > 0) max_version = o.version;
    if (o.counter && (!max_counter || *o.counter > *max_counter)) max_counter = o.counter;
  }
  return r;
}

OracleResult recovered(const OracleInput& in) {
  OracleResult r{"recovered", true, ""};
  for (std::size_t i = in.fault_index; i < in.history.size(); ++i) {
    const auto& o = in.history[i];
    if (!o.booted) {
      r.held = false;
      r.detail = fmt::format("{}: no healthy boot within the boot budget ({:.0f} ms waited)", o.step, o.waited_ms);
      return r;
    }
    if (!o.health.empty() && o.health != "ok") {
      r.held = false;
      r.detail = fmt::format("{}: the device runs but reports health={}{}", o.step, o.health,
                             o.digest == in.delivered_digest && in.delivered_fails_self_test
                                 ? " (the image that failed its self-test was not reverted)"
                                 : "");
      return r;
    }
  }
  return r;
}

OracleResult still_updatable(const OracleInput& in) {
  OracleResult r{"still-updatable", true, ""};
  if (!in.has_retry) return r;
  if (!in.retry_problem.empty()) {
    r.held = false;
    r.detail = "retry: " + in.retry_problem;
    return r;
  }
  if (in.retry_index >= in.history.size()) {
    r.held = false;
    r.detail = "retry: no observation after the clean update";
    return r;
  }
  const auto& o = in.history[in.retry_index];
  if (!o.booted) {
    r.held = false;
    r.detail = "retry: the device did not come up after a clean update";
  } else if (o.digest != in.retry_digest) {
    r.held = false;
    r.detail = fmt::format("retry: a clean update did not take (running {}, expected {})", short_digest(o.digest),
                           short_digest(in.retry_digest));
  }
  return r;
}

OracleResult compatible(const OracleInput& in) {
  OracleResult r{"compatible", true, ""};
  if (in.delivered_compatible) return r;
  for (std::size_t i = in.fault_index; i < in.history.size(); ++i) {
    if (in.has_retry && i >= in.retry_index) break;
    const auto& o = in.history[i];
    if (o.booted && o.digest == in.delivered_digest) {
      r.held = false;
      r.detail = fmt::format("{}: the device runs the image made for another device type (digest {})", o.step,
                             short_digest(o.digest));
      return r;
    }
  }
  return r;
}

OracleResult dependencies(const OracleInput& in) {
  OracleResult r{"dependencies", true, ""};
  for (const auto& o : in.history) {
    if (!o.booted || o.image1_version.empty()) continue;
    // The application, then the second image, each against the other as it runs.
    const std::pair<const std::string*, unsigned> running[] = {{&o.digest, 0}, {&o.image1_digest, 1}};
    for (const auto& [digest, index] : running) {
      auto it = in.needs.find(*digest);
      if (it == in.needs.end() || it->second.image == index || it->second.image > 1) continue;
      const auto& other = it->second.image == 1 ? o.image1_version : o.version;
      if (compare_versions(other, it->second.version) < 0) {
        r.held = false;
        r.detail = fmt::format("{}: image {} (digest {}) needs image {} >= {}, but runs beside {}", o.step, index,
                               short_digest(*digest), it->second.image, it->second.version, other);
        return r;
      }
    }
  }
  return r;
}

OracleResult confidential(const OracleInput& in) {
  OracleResult r{"confidential", true, ""};
  // What crossed the network first, then what the rig handed the link (the
  // same bytes, when the proxy could read them), then what sits at rest.
  for (const auto* found : {&in.plaintext_on_wire, &in.plaintext_on_link, &in.plaintext_at_rest}) {
    if (found->empty()) continue;
    r.held = false;
    r.detail += (r.detail.empty() ? "" : "; ") + *found;
  }
  return r;
}

}  // namespace

OracleResult reports_truthfully(const OracleInput& in) {
  OracleResult r{kReportsTruthfully, true, ""};
  if (!in.device_reports || in.deployment.empty() || in.reported_status.empty() ||
      in.fault_index >= in.history.size())
    return r;
  const auto& o = in.history[in.fault_index];
  const bool runs_delivered = o.booted && o.digest == in.delivered_digest;
  const auto seen = o.booted ? fmt::format("runs {} (digest {})", o.version, short_digest(o.digest))
                             : std::string("runs nothing (it did not boot)");
  std::string said;
  for (const auto& s : in.reported_statuses) said += (said.empty() ? "" : ", ") + s;
  auto lie = [&](const std::string& what) {
    r.held = false;
    r.detail = fmt::format("deployment {}: the device reported '{}' ({}), but after the fault it {}: {}",
                           in.deployment, in.reported_status, said, seen, what);
  };
  if (in.reported_status == "success" && !runs_delivered)
    lie(fmt::format("not the delivered image (digest {})", short_digest(in.delivered_digest)));
  else if (in.reported_status == "failure" && runs_delivered && in.delivered_digest != in.before_digest)
    lie("the delivered image, which it said had failed");
  else if (in.reported_status == "already-installed" && !runs_delivered)
    lie(fmt::format("not the delivered image (digest {})", short_digest(in.delivered_digest)));
  return r;
}

void OracleRegistry::add(Oracle oracle) {
  if (oracle.name.empty() || !oracle.check) throw std::logic_error("an oracle needs a name and a check");
  if (find(oracle.name)) throw std::logic_error("oracle registered twice: " + oracle.name);
  oracles_.push_back(std::move(oracle));
}

const Oracle* OracleRegistry::find(std::string_view name) const {
  for (const auto& o : oracles_)
    if (o.name == name) return &o;
  return nullptr;
}

void register_builtin_oracles(OracleRegistry& registry) {
  registry.add({"authentic", authentic});
  registry.add({"atomic", atomic});
  registry.add({"no-rollback", no_rollback});
  registry.add({"recovered", recovered});
  registry.add({"still-updatable", still_updatable});
  registry.add({"compatible", compatible});
  registry.add({"dependencies", dependencies});
  registry.add({"confidential", confidential});
}

const OracleRegistry& builtin_oracles() {
  static const OracleRegistry registry = [] {
    OracleRegistry r;
    register_builtin_oracles(r);
    return r;
  }();
  return registry;
}

std::vector<OracleResult> judge(const OracleInput& in, const OracleRegistry& oracles) {
  std::vector<OracleResult> out;
  out.reserve(oracles.all().size());
  for (const auto& o : oracles.all()) {
    auto r = o.check(in);
    if (r.name.empty()) r.name = o.name;
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<OracleResult> judge(const OracleInput& in) { return judge(in, builtin_oracles()); }

}  // namespace otarig::harness
