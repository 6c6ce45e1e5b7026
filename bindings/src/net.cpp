// otarig.UpdateServer and otarig.FaultProxy as context managers (drivers/net).
#include "common.hpp"

#ifdef OTARIG_PYTHON_HAVE_NET

#include <fmt/format.h>
#include <pybind11/stl/filesystem.h>

#include "otarig/drivers/net/fault_proxy.hpp"
#include "otarig/drivers/net/fault_spec.hpp"
#include "otarig/drivers/net/http_server.hpp"

namespace otarig::python {

namespace net = drivers::net;

namespace {

bool finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing() != 0;
#else
  return _Py_IsFinalizing() != 0;
#endif
}

std::vector<std::uint8_t> bytes_arg(py::handle v) {
  // bytes(x) honours __bytes__ (otarig.Image) and the buffer protocol.
  auto b = py::module_::import("builtins").attr("bytes")(v).cast<std::string>();
  return std::vector<std::uint8_t>(b.begin(), b.end());
}

py::dict manifest_dict(const net::Manifest& m) {
  py::dict d;
  d["name"] = m.name;
  d["version"] = m.version;
  d["security_counter"] = m.security_counter;
  d["size"] = m.size;
  d["sha256"] = m.sha256;
  d["url"] = m.url;
  return d;
}

net::Direction direction_arg(const std::string& s) {
  if (s == "down") return net::Direction::down;
  if (s == "up") return net::Direction::up;
  throw InputError(fmt::format("direction '{}': expected 'up' or 'down'", s));
}

class UpdateServerPy {
 public:
  explicit UpdateServerPy(net::ServerOptions options) : server_(std::make_unique<net::UpdateServer>(std::move(options))) {}
  ~UpdateServerPy() {
    if (server_ && !finalizing()) {
      py::gil_scoped_release nogil;
      server_.reset();
    }
  }
  net::UpdateServer& get() { return *server_; }

 private:
  std::unique_ptr<net::UpdateServer> server_;
};

class FaultProxyPy {
 public:
  explicit FaultProxyPy(net::ProxyOptions options) : proxy_(std::make_unique<net::FaultProxy>(std::move(options))) {}
  ~FaultProxyPy() {
    *alive_ = false;
    if (proxy_ && !finalizing()) {
      // A watch callback may wait for the GIL on a proxy thread that stop() joins.
      py::gil_scoped_release nogil;
      proxy_.reset();
    }
  }
  net::FaultProxy& get() { return *proxy_; }

  void on_bytes(std::uint64_t bytes, const py::function& callback, std::uint64_t connection,
                const std::string& direction) {
    auto dir = direction_arg(direction);
    callbacks_.append(callback);
    PyObject* raw = callback.ptr();
    auto alive = alive_;
    py::gil_scoped_release nogil;
    proxy_->on_bytes(connection, dir, bytes, [raw, alive](const net::BytesPassed& p) {
      py::gil_scoped_acquire gil;
      if (!*alive) return;
      try {
        py::dict d;
        d["connection"] = p.connection;
        d["direction"] = net::to_string(p.direction);
        d["bytes"] = p.bytes;
        py::handle{raw}(d);
      } catch (py::error_already_set& e) {
        e.discard_as_unraisable("otarig.FaultProxy.on_bytes callback");
      }
    });
  }
  void clear_watches() {
    {
      py::gil_scoped_release nogil;
      proxy_->clear_watches();
    }
    // Callbacks of connections already open may still run; keep them referenced.
  }

 private:
  std::unique_ptr<net::FaultProxy> proxy_;
  py::list callbacks_;
  std::shared_ptr<std::atomic<bool>> alive_ = std::make_shared<std::atomic<bool>>(true);
};

std::pair<std::string, std::uint16_t> upstream_arg(py::handle v) {
  if (py::hasattr(v, "port") && !py::isinstance<py::str>(v) && !py::isinstance<py::tuple>(v))
    return {"127.0.0.1", v.attr("port").cast<std::uint16_t>()};
  if (py::isinstance<py::int_>(v)) return {"127.0.0.1", v.cast<std::uint16_t>()};
  if (py::isinstance<py::tuple>(v)) {
    auto t = v.cast<std::pair<std::string, std::uint16_t>>();
    return t;
  }
  auto s = py::str(v).cast<std::string>();
  auto colon = s.rfind(':');
  try {
    if (colon != std::string::npos && colon + 1 < s.size()) {
      std::size_t used = 0;
      auto port = std::stoul(s.substr(colon + 1), &used);
      if (used == s.size() - colon - 1 && port <= 65535)
        return {s.substr(0, colon), static_cast<std::uint16_t>(port)};
    }
  } catch (const std::exception&) {
  }
  throw InputError(fmt::format("upstream '{}': expected HOST:PORT, a port, (host, port) or an UpdateServer", s));
}

}  // namespace

namespace {

void register_update_server(py::module_& m) {
  py::class_<UpdateServerPy>(
      m, "UpdateServer",
      "The rig's HTTP(S) update server (docs/network.md), as a context manager:\n\n"
      "    with otarig.UpdateServer(root='repo', port=0) as server:\n"
      "        server.add_release('v2', '1.2.0', 3, bench.image('update'))\n"
      "        server.set_latest('v2')\n"
      "        url = server.url + '/manifest.json'\n\n"
      "Serves /manifest.json, /manifests/NAME.json, /images/NAME.bin, anything put(),\n"
      "and files under `root`. Every blocking call releases the GIL.")
      .def(py::init([](std::optional<std::filesystem::path> root, std::uint16_t port, std::string address,
                       py::handle timeout, std::optional<std::filesystem::path> tls_cert,
                       std::optional<std::filesystem::path> tls_key, std::optional<std::filesystem::path> client_ca) {
             net::ServerOptions o;
             if (root) o.root = *root;
             o.port = port;
             o.address = std::move(address);
             o.timeout = seconds_arg(timeout, "timeout");
             if (tls_cert || tls_key) {
               if (!tls_cert || !tls_key) throw InputError("UpdateServer: give both tls_cert and tls_key, or neither");
               o.tls = net::TlsConfig::from_files(*tls_cert, *tls_key, client_ca.value_or(std::filesystem::path()));
             }
             return std::make_unique<UpdateServerPy>(std::move(o));
           }),
           py::kw_only(), py::arg("root") = py::none(), py::arg("port") = 0, py::arg("address") = "127.0.0.1",
           py::arg("timeout") = 30.0, py::arg("tls_cert") = py::none(),
           py::arg("tls_key") = py::none(), py::arg("client_ca") = py::none(),
           "port 0 picks a free port (see .port). tls_cert/tls_key (PEM files) serve HTTPS;\n"
           "client_ca requires client certificates (mutual TLS). `timeout` (seconds) is the\n"
           "deadline of every read, write and handshake.")
      .def("start", [](UpdateServerPy& s) { s.get().start(); }, py::call_guard<py::gil_scoped_release>(),
           "Binds and serves on a thread of its own (BenchError when it cannot bind).")
      .def("stop", [](UpdateServerPy& s) { s.get().stop(); }, py::call_guard<py::gil_scoped_release>(),
           "Closes the listener and every connection. Idempotent.")
      .def("__enter__",
           [](py::object self) {
             auto& s = self.cast<UpdateServerPy&>();
             {
               py::gil_scoped_release nogil;
               s.get().start();
             }
             return self;
           })
      .def("__exit__",
           [](UpdateServerPy& s, py::args) {
             py::gil_scoped_release nogil;
             s.get().stop();
           })
      .def_property_readonly("port", [](UpdateServerPy& s) { return s.get().port(); }, "The port it listens on.")
      .def_property_readonly("url", [](UpdateServerPy& s) { return s.get().base_url(); },
                             "'http://127.0.0.1:PORT' (or https://).")
      .def("put", [](UpdateServerPy& s, const std::string& path, py::handle data) { s.get().put(path, bytes_arg(data)); },
           py::arg("path"), py::arg("data"), "Serves `data` (bytes) at `path` ('/dir/file'), replacing an earlier entry.")
      .def("remove", [](UpdateServerPy& s, const std::string& path) { s.get().remove(path); }, py::arg("path"))
      .def(
          "add_release",
          [](UpdateServerPy& s, std::string name, std::string version, std::uint32_t counter, py::handle image) {
            return manifest_dict(s.get().add_release(net::Release{std::move(name), std::move(version), counter,
                                                                  bytes_arg(image)}));
          },
          py::arg("name"), py::arg("version"), py::arg("security_counter"), py::arg("image"),
          "Publishes /images/NAME.bin and /manifests/NAME.json (image: bytes or an otarig.Image);\n"
          "returns the manifest as a dict.")
      .def("set_latest", [](UpdateServerPy& s, const std::string& name) { s.get().set_latest(name); },
           py::arg("name"), "Makes /manifest.json serve release NAME's manifest.")
      .def("clear_latest", [](UpdateServerPy& s) { s.get().clear_latest(); }, "/manifest.json answers 404 again.")
      .def_property_readonly("latest", [](UpdateServerPy& s) { return s.get().latest(); },
                             "The release /manifest.json names, or None.")
      .def(
          "request_log",
          [](UpdateServerPy& s) {
            py::list out;
            for (const auto& r : s.get().request_log()) out.append(to_py(net::to_json(r)));
            return out;
          },
          "The request log: one dict per response sent or connection dropped.")
      .def(
          "take_request_log",
          [](UpdateServerPy& s) {
            py::list out;
            for (const auto& r : s.get().take_request_log()) out.append(to_py(net::to_json(r)));
            return out;
          },
          "The request log so far; the log starts empty again.")
      .def_property_readonly("stats", [](UpdateServerPy& s) {
        auto st = s.get().stats();
        py::dict d;
        d["connections"] = st.connections;
        d["requests"] = st.requests;
        d["bytes_sent"] = st.bytes_sent;
        d["bad_requests"] = st.bad_requests;
        d["timeouts"] = st.timeouts;
        d["tls_failures"] = st.tls_failures;
        return d;
      },
      "Counters: connections, requests, bytes_sent, bad_requests, timeouts, tls_failures.");
}

void register_fault_proxy(py::module_& m) {
  py::class_<FaultProxyPy>(
      m, "FaultProxy",
      "A TCP proxy that applies seeded network faults between a device and the update\n"
      "server (docs/network.md), as a context manager:\n\n"
      "    with otarig.FaultProxy(upstream=server, spec='down:corrupt@offset=1000', seed=7) as proxy:\n"
      "        url = f'http://127.0.0.1:{proxy.port}/manifest.json'\n\n"
      "A bad spec raises InputError naming the column. Every blocking call releases the GIL.")
      .def(py::init([](py::handle upstream, const std::string& spec, std::uint64_t seed, std::uint16_t port,
                       std::string address, unsigned threads, bool upstream_tls) {
             net::ProxyOptions o;
             std::tie(o.upstream_host, o.upstream_port) = upstream_arg(upstream);
             o.faults = net::parse_fault_spec(spec, "fault spec");
             o.seed = seed;
             o.listen_port = port;
             o.listen_address = std::move(address);
             o.threads = threads;
             o.upstream_tls = upstream_tls;
             return std::make_unique<FaultProxyPy>(std::move(o));
           }),
           py::kw_only(), py::arg("upstream"), py::arg("spec") = "", py::arg("seed") = 0, py::arg("port") = 0,
           py::arg("address") = "127.0.0.1", py::arg("threads") = 1, py::arg("upstream_tls") = true,
           "upstream: 'HOST:PORT', a port, (host, port) or an UpdateServer. spec: the fault\n"
           "spec text (e.g. 'down:truncate@b=4096;up:latency=5ms'). seed: the faults' seed.\n"
           "upstream_tls: after an impostor fault, talk TLS to the upstream.")
      .def("start", [](FaultProxyPy& p) { p.get().start(); }, py::call_guard<py::gil_scoped_release>(),
           "Resolves the upstream, binds, starts the threads (BenchError when it cannot).")
      .def("stop", [](FaultProxyPy& p) { p.get().stop(); }, py::call_guard<py::gil_scoped_release>(),
           "Closes the listener and every connection. Idempotent.")
      .def("__enter__",
           [](py::object self) {
             auto& p = self.cast<FaultProxyPy&>();
             {
               py::gil_scoped_release nogil;
               p.get().start();
             }
             return self;
           })
      .def("__exit__",
           [](FaultProxyPy& p, py::args) {
             py::gil_scoped_release nogil;
             p.get().stop();
           })
      .def_property_readonly("port", [](FaultProxyPy& p) { return p.get().port(); }, "The port it listens on.")
      .def(
          "set_faults",
          [](FaultProxyPy& p, const std::string& spec, std::uint64_t seed) {
            auto parsed = net::parse_fault_spec(spec, "fault spec");
            py::gil_scoped_release nogil;
            p.get().set_faults(std::move(parsed), seed);
          },
          py::arg("spec"), py::arg("seed") = 0,
          "Faults for connections accepted from now on; connection numbers restart at 1.")
      .def("on_bytes", &FaultProxyPy::on_bytes, py::arg("bytes"), py::arg("callback"), py::kw_only(),
           py::arg("connection") = 0, py::arg("direction") = "down",
           "Calls callback({'connection', 'direction', 'bytes'}) once `bytes` bytes of `direction`\n"
           "('up' or 'down') have been delivered on `connection` (0: every connection), before\n"
           "any further byte of that direction is: cut power at an exact byte of a download.\n"
           "The callback runs on a proxy thread (holding the GIL); an exception in it is reported\n"
           "as unraisable.")
      .def("clear_watches", &FaultProxyPy::clear_watches)
      .def(
          "events",
          [](FaultProxyPy& p) {
            py::list out;
            for (const auto& e : p.get().events()) out.append(to_py(net::to_json(e)));
            return out;
          },
          "What the proxy did, one dict per event (bytes as hex).")
      .def(
          "take_events",
          [](FaultProxyPy& p) {
            py::list out;
            for (const auto& e : p.get().take_events()) out.append(to_py(net::to_json(e)));
            return out;
          },
          "The events so far; the log starts empty again.")
      .def(
          "recording",
          [](FaultProxyPy& p, std::uint64_t connection, const std::string& direction) {
            auto b = p.get().recording(connection, direction_arg(direction));
            return py::bytes(reinterpret_cast<const char*>(b.data()), b.size());
          },
          py::arg("connection"), py::arg("direction") = "down",
          "What was sent on `connection` when a replay rule names it as its source.")
      .def_property_readonly("stats", [](FaultProxyPy& p) {
        auto st = p.get().stats();
        py::dict d;
        d["connections"] = st.connections;
        d["bytes_up"] = st.bytes_up;
        d["bytes_down"] = st.bytes_down;
        d["events"] = st.events;
        d["events_dropped"] = st.events_dropped;
        return d;
      },
      "Counters: connections, bytes_up, bytes_down, events, events_dropped.");
}

}  // namespace

void register_network(py::module_& m) {
  m.attr("HAVE_NETWORK") = true;
  register_update_server(m);
  register_fault_proxy(m);
}

}  // namespace otarig::python

#else

namespace otarig::python {
void register_network(py::module_& m) { m.attr("HAVE_NETWORK") = false; }
}  // namespace otarig::python

#endif
