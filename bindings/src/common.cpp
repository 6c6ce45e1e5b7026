#include "common.hpp"

#include <fmt/format.h>

#include "otarig/harness/composition.hpp"

namespace otarig::python {

py::object to_py(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return py::none();
    case json::value_t::boolean: return py::bool_(v.get<bool>());
    case json::value_t::number_integer: return py::int_(v.get<std::int64_t>());
    case json::value_t::number_unsigned: return py::int_(v.get<std::uint64_t>());
    case json::value_t::number_float: return py::float_(v.get<double>());
    case json::value_t::string: return py::str(v.get_ref<const std::string&>());
    case json::value_t::array: {
      py::list out;
      for (const auto& e : v) out.append(to_py(e));
      return out;
    }
    case json::value_t::object: {
      py::dict out;
      for (const auto& [k, e] : v.items()) out[py::str(k)] = to_py(e);
      return out;
    }
    case json::value_t::binary: {
      const auto& b = v.get_binary();
      return py::bytes(reinterpret_cast<const char*>(b.data()), b.size());
    }
    case json::value_t::discarded: break;
  }
  return py::none();
}

json to_json(py::handle v) {
  if (v.is_none()) return nullptr;
  if (py::isinstance<py::bool_>(v)) return v.cast<bool>();
  if (py::isinstance<py::int_>(v)) {
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v.ptr(), &overflow);
    if (overflow == 0) return static_cast<std::int64_t>(x);
    if (overflow > 0) {
      unsigned long long u = PyLong_AsUnsignedLongLong(v.ptr());
      if (!PyErr_Occurred()) return static_cast<std::uint64_t>(u);
      PyErr_Clear();
    }
    throw py::value_error("integer out of the 64-bit range");
  }
  if (py::isinstance<py::float_>(v)) return v.cast<double>();
  if (py::isinstance<py::str>(v)) return v.cast<std::string>();
  if (py::isinstance<py::dict>(v)) {
    json out = json::object();
    for (auto item : v.cast<py::dict>()) {
      if (!py::isinstance<py::str>(item.first))
        throw py::type_error(fmt::format("dictionary keys must be str, not {}",
                                         py::str(py::type::of(item.first).attr("__name__")).cast<std::string>()));
      out[item.first.cast<std::string>()] = to_json(item.second);
    }
    return out;
  }
  if (py::isinstance<py::list>(v) || py::isinstance<py::tuple>(v)) {
    json out = json::array();
    for (auto e : v) out.push_back(to_json(e));
    return out;
  }
  if (py::hasattr(v, "__fspath__")) return py::module_::import("os").attr("fspath")(v).cast<std::string>();
  throw py::type_error(fmt::format("cannot record a {} (use dict, list, str, int, float, bool or None)",
                                   py::str(py::type::of(v).attr("__name__")).cast<std::string>()));
}

std::chrono::milliseconds seconds_arg(py::handle v, const char* what) {
  double seconds = 0;
  if (py::isinstance<py::int_>(v) || py::isinstance<py::float_>(v))
    seconds = v.cast<double>();
  else if (py::hasattr(v, "total_seconds"))
    seconds = v.attr("total_seconds")().cast<double>();
  else
    throw py::type_error(fmt::format("{}: expected seconds (int or float) or a datetime.timedelta", what));
  if (!(seconds >= 0) || seconds > 1e9) throw py::value_error(fmt::format("{}: {} s is out of range", what, seconds));
  return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000.0 + 0.5));
}

ErrorTypes& error_types() {
  // Never destroyed: the interpreter may be gone when static objects die.
  static auto* types = new ErrorTypes;
  return *types;
}

void register_errors(py::module_& m) {
  auto& t = error_types();
  py::exception<InputError> input(m, "InputError", PyExc_ValueError);
  input.attr("__doc__") =
      "Bad input: a board profile, scenario, image, argument or fault spec is wrong.\n\n"
      "The message names the file and line (or the image and field), as the command\n"
      "line prints it after ``otarig: `` (exit status 2). A subclass of ValueError.";
  py::exception<BenchError> bench(m, "BenchError", PyExc_RuntimeError);
  bench.attr("__doc__") =
      "The bench itself failed: a device unreachable, a driver error, a tool that died.\n\n"
      "The message names the device and the step, as the command line prints it after\n"
      "``otarig: bench failure: `` (exit status 3). A subclass of RuntimeError.";
  py::exception<TimeoutError> timeout(m, "BenchTimeout", PyExc_TimeoutError);
  timeout.attr("__doc__") =
      "A deadline passed while waiting for a device or a peer (console.expect, a driver).\n\n"
      "A subclass of the built-in TimeoutError.";
  py::exception<HookAbort> failure(m, "BenchFailure", bench.ptr());
  failure.attr("__doc__") =
      "A campaign that the bench stopped (exit status 3).\n\n"
      "The trials completed before the failure are in the evidence folder; ``result``\n"
      "holds the CampaignResult (``result.aborted`` is this message).";
  t.input_error = input;
  t.bench_error = bench;
  t.timeout_error = timeout;
  t.bench_failure = failure;

  py::register_exception_translator([](std::exception_ptr p) {
    auto& types = error_types();
    try {
      if (p) std::rethrow_exception(p);
    } catch (const InputError& e) {
      PyErr_SetString(types.input_error.ptr(), e.what());
    } catch (const TimeoutError& e) {
      PyErr_SetString(types.timeout_error.ptr(), e.what());
    } catch (const BenchError& e) {
      PyErr_SetString(types.bench_error.ptr(), e.what());
    }
  });
}

HookAbort HookState::capture(py::error_already_set error, const std::string& where) {
  std::string message = fmt::format("{} raised {}", where, error.what());
  std::lock_guard lock(mu_);
  if (!error_) error_.emplace(std::move(error));
  return HookAbort(message);
}

void HookState::rethrow_if_failed() {
  std::optional<py::error_already_set> error;
  {
    std::lock_guard lock(mu_);
    error.swap(error_);
  }
  if (error) throw py::error_already_set(std::move(*error));
}

BoundBench::BoundBench(std::shared_ptr<const harness::BoardProfile> profile,
                       std::shared_ptr<const harness::ReleaseSet> releases, std::uint64_t seed)
    : profile_(std::move(profile)), releases_(std::move(releases)) {
  owned_ = std::make_unique<harness::Bench>(*profile_, registry(), *releases_, seed);
  borrowed_ = owned_.get();
  owning_ = true;
}

BoundBench::BoundBench(std::shared_ptr<const harness::BoardProfile> profile,
                       std::shared_ptr<const harness::ReleaseSet> releases, harness::Bench& bench)
    : profile_(std::move(profile)), releases_(std::move(releases)), borrowed_(&bench) {}

BoundBench::~BoundBench() = default;

harness::Bench& BoundBench::bench() {
  if (!valid_ || !borrowed_)
    throw std::runtime_error(owning_ ? "the bench is closed"
                                                  : "the trial context ended: a bench seen by a custom step or "
                                                    "oracle is usable only while that hook runs");
  return *borrowed_;
}

void BoundBench::invalidate() {
  std::lock_guard lock(mu);
  valid_ = false;
  owned_.reset();
}

const drivers::DriverRegistry& registry() { return harness::builtin_registries().drivers; }

}  // namespace otarig::python
