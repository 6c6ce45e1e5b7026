#include "otarig/drivers/registry.hpp"
#include <fmt/format.h>

#include "otarig/core/errors.hpp"

namespace otarig::drivers {
namespace {

template <class Map>
const typename Map::mapped_type* lookup(const Map& m, const std::string& key) {
  auto it = m.find(key);
  return it == m.end() ? nullptr : &it->second;
}

template <class Map>
std::vector<std::string> keys(const Map& m) {
  std::vector<std::string> out;
  for (const auto& [k, v] : m) out.push_back(k);
  return out;
}

}  // namespace

const char* to_string(DeliveryStatus s) {
  switch (s) {
    case DeliveryStatus::accepted: return "accepted";
    case DeliveryStatus::refused: return "refused";
    case DeliveryStatus::power_lost: return "power-lost";
    case DeliveryStatus::unreachable: return "unreachable";
  }
  return "unknown";
}

bool BoardParts::has(std::string_view part) const {
  if (checked.find(part) != checked.end()) return true;
  if (part == "device") return device != nullptr;
  if (part == "power") return power != nullptr;
  if (part == "console") return console != nullptr;
  if (part == "link") return link != nullptr;
  if (part == "probe") return probe != nullptr;
  return false;
}

void DriverRegistry::add_device(std::string kind, DeviceFactory f) { devices_[std::move(kind)] = std::move(f); }
void DriverRegistry::add_power(std::string d, PartFactory f) { power_[std::move(d)] = std::move(f); }
void DriverRegistry::add_console(std::string d, PartFactory f) { console_[std::move(d)] = std::move(f); }
void DriverRegistry::add_link(std::string d, PartFactory f) { link_[std::move(d)] = std::move(f); }
void DriverRegistry::add_probe(std::string d, PartFactory f) { probe_[std::move(d)] = std::move(f); }
void DriverRegistry::add_command(std::string name, CommandFactory f) { commands_[std::move(name)] = std::move(f); }
void DriverRegistry::add_package_format(std::string name, PackageFormatFactory f) {
  package_formats_[std::move(name)] = std::move(f);
}

const DriverRegistry::DeviceFactory* DriverRegistry::device(const std::string& k) const { return lookup(devices_, k); }
const DriverRegistry::PartFactory* DriverRegistry::power(const std::string& d) const { return lookup(power_, d); }
const DriverRegistry::PartFactory* DriverRegistry::console(const std::string& d) const { return lookup(console_, d); }
const DriverRegistry::PartFactory* DriverRegistry::link(const std::string& d) const { return lookup(link_, d); }
const DriverRegistry::PartFactory* DriverRegistry::probe(const std::string& d) const { return lookup(probe_, d); }
const PackageFormatFactory* DriverRegistry::package_format(const std::string& name) const {
  return lookup(package_formats_, name);
}

std::vector<std::string> DriverRegistry::device_kinds() const { return keys(devices_); }
std::vector<std::string> DriverRegistry::power_drivers() const { return keys(power_); }
std::vector<std::string> DriverRegistry::console_drivers() const { return keys(console_); }
std::vector<std::string> DriverRegistry::package_formats() const { return keys(package_formats_); }

}  // namespace otarig::drivers

namespace otarig::drivers {

// A network whose proxy has none of the rig's lifecycle certificates: the
// scenarios that need them are skipped before these are ever asked.
ProbeResult NetworkFaultProtocol::probe_with_client_certificate(const std::string& name) {
  throw BenchError(fmt::format("the board's update server has no '{}' client certificate of the rig's", name));
}

void NetworkFaultProtocol::use_client_certificate(const std::string& name) {
  throw BenchError(fmt::format("the board cannot be given the '{}' client certificate of the rig's", name));
}

std::string NetworkFaultProtocol::certificate_issuer_pem(const std::string&) const { return {}; }

}  // namespace otarig::drivers
