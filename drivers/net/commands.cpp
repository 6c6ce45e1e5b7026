// The net family's own commands: `otarig serve` (the update server on its
// own) and `otarig proxy` (the fault proxy on its own), docs/network.md.
#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>

#include "otarig/core/numbers.hpp"
#include "otarig/drivers/net/fault_proxy.hpp"
#include "otarig/drivers/net/http_server.hpp"
#include "otarig/drivers/net/register.hpp"

namespace otarig::drivers::net {
namespace {

struct ServeCommand {
  ServeOptions opts;
  std::string tls_cert, tls_key, client_ca, timeout;

  void add(CLI::App& app) {
    auto* cmd = app.add_subcommand("serve", "serve a release repository over HTTP(S) (loopback by default)");
    cmd->add_option("--root", opts.root, "directory to serve")->required();
    cmd->add_option("--address", opts.address, "address to listen on");
    cmd->add_option("--port", opts.port, "port (0: any free port, printed)");
    cmd->add_option("--latest", opts.latest, "release that /manifest.json names");
    cmd->add_option("--wrong-ranges", opts.wrong_ranges,
                    "answer range requests for this path with the bytes one past each range (a server that answers "
                    "ranges wrongly); repeatable");
    cmd->add_option("--tls-cert", tls_cert, "server certificate (PEM): serve HTTPS");
    cmd->add_option("--tls-key", tls_key, "server key (PEM)");
    cmd->add_option("--client-ca", client_ca, "require client certificates signed by this CA (mTLS)");
    cmd->add_option("--timeout", timeout,
                    "milliseconds a read, a write or a TLS handshake may take before the client is dropped "
                    "(default 30000)");
  }

  int operator()() {
    if (!timeout.empty()) opts.timeout = std::chrono::milliseconds(parse_number(timeout, 1, 3600000, "--timeout"));
    opts.tls_cert = tls_cert;
    opts.tls_key = tls_key;
    opts.client_ca = client_ca;
    return serve_main(opts, std::cout);
  }
};

struct ProxyCommand {
  ProxyMainOptions opts;
  std::string impostor_cert, impostor_key, seed;
  bool no_upstream_tls = false;
  long spin_us = static_cast<long>(opts.spin.count());

  void add(CLI::App& app) {
    auto* cmd = app.add_subcommand("proxy", "a TCP proxy that injects seeded faults (docs/network.md)");
    cmd->add_option("--listen", opts.listen, "PORT or ADDRESS:PORT");
    cmd->add_option("--upstream", opts.upstream, "HOST:PORT")->required();
    cmd->add_option("--fault", opts.fault, "fault spec, e.g. 'down:corrupt@offset=1000,count=4'");
    cmd->add_option("--seed", seed, "seed of every random choice");
    cmd->add_option("--threads", opts.threads, "io threads");
    cmd->add_option("--spin", spin_us,
                    "microseconds a proxy thread keeps polling after a handler before it sleeps (0 to 10000)");
    cmd->add_option("--impostor-cert", impostor_cert, "certificate the impostor endpoint presents");
    cmd->add_option("--impostor-key", impostor_key, "its key");
    cmd->add_flag("--no-upstream-tls", no_upstream_tls, "the impostor relays to a plain upstream");
  }

  int operator()() {
    if (!seed.empty()) opts.seed = parse_number(seed, 0, UINT64_MAX, "--seed");
    opts.impostor_cert = impostor_cert;
    opts.impostor_key = impostor_key;
    opts.upstream_tls = !no_upstream_tls;
    opts.spin = std::chrono::microseconds(spin_us);
    return proxy_main(opts, std::cout);
  }
};

// The command's options live as long as the command line that parses them.
template <class Command>
std::function<int()> add_command(CLI::App& app) {
  auto command = std::make_shared<Command>();
  command->add(app);
  return [command] { return (*command)(); };
}

}  // namespace
}  // namespace otarig::drivers::net

namespace otarig::drivers {

void register_net_drivers(DriverRegistry& registry) {
  registry.add_command("serve", net::add_command<net::ServeCommand>);
  registry.add_command("proxy", net::add_command<net::ProxyCommand>);
}

}  // namespace otarig::drivers
