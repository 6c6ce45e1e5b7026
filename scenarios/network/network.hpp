#pragma once
// Network faults: `network` (the fault proxy's spec, probes, expectations)
// `stale` (the update server answers with an older release),
// `lying-mirror` (its manifest disagrees with the image it names) and
// `server-ca-rotation` (the server's certificate from a CA a signed update
// told the device of, or did not).
#include <memory>
#include <string>
#include <vector>

#include "otarig/harness/fault_kind.hpp"

namespace otarig::scenarios::network {

void register_network_faults(harness::FaultRegistry& registry);
/// `lying-mirror` (lying_mirror.cpp): a manifest that disagrees with the image it names.
void register_lying_mirror(harness::FaultRegistry& registry);
/// `server-ca-rotation` (server_ca.cpp).
void register_server_ca(harness::FaultRegistry& registry);

/// A `network` trial's run for the proxy spec `faults` with the
/// expectations `expect` (installed, stays-up). `must_refuse`, when not
/// empty, names what the spec presents that the device must refuse: oracle
/// server-authenticated is then judged from the proxy's TLS log, in those words.
std::unique_ptr<harness::FaultRun> make_network_run(const std::string& faults, std::vector<std::string> expect,
                                                    std::string must_refuse);

}  // namespace otarig::scenarios::network
