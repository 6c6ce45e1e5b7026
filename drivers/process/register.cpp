// Registers the process-board drivers: device kinds `process` and `lab`,
// power `process`, console `pty`, link `console-command`.
#include "otarig/drivers/process/register.hpp"

#include <fmt/format.h>

#include <map>
#include <mutex>

#include "otarig/drivers/process/board.hpp"

namespace otarig::drivers {
namespace process {
namespace {

// BoardParts::device is type-erased; this maps the devices this family made
// back to their type, so a part driver can check that its board is a
// process board (or a lab board with a DeviceHost).
struct DeviceIndex {
  std::mutex mu;
  std::map<const void*, std::weak_ptr<DeviceHost>> devices;
};
DeviceIndex& index() {
  static DeviceIndex i;
  return i;
}

void remember(const std::shared_ptr<DeviceHost>& device) {
  auto& i = index();
  std::lock_guard lock(i.mu);
  std::erase_if(i.devices, [](const auto& entry) { return entry.second.expired(); });
  i.devices[device.get()] = device;
}

std::shared_ptr<ProcessDevice> bound_device(const Config& section, const BoardParts& parts,
                                            const char* what) {
  auto device = find_process_device(parts);
  if (!device) section.fail(fmt::format("the '{}' driver needs the device section `kind: process`", what));
  return device;
}

}  // namespace

std::shared_ptr<DeviceHost> find_device_host(const BoardParts& parts) {
  if (!parts.device) return nullptr;
  auto& i = index();
  std::lock_guard lock(i.mu);
  auto it = i.devices.find(parts.device.get());
  return it == i.devices.end() ? nullptr : it->second.lock();
}

std::shared_ptr<ProcessDevice> find_process_device(const BoardParts& parts) {
  return std::dynamic_pointer_cast<ProcessDevice>(find_device_host(parts));
}

void bind_console_command_link(const Config& section, BoardParts& parts) {
  auto device = find_device_host(parts);
  if (!device)
    section.at("driver").fail(
        "the 'console-command' link needs the device section `kind: process` or `kind: lab` (the rig's "
        "update server, fault proxy and storage for the board)");
  if (!parts.power) section.fail("the 'console-command' link needs a `power:` section (before `link:`)");
  if (!parts.console) section.fail("the 'console-command' link needs a `console:` section (before `link:`)");
  auto config = LinkConfig::from_config(section);
  // A process board's own drivers already are what the link drives; any
  // other driver is wrapped, and the wrapper replaces it in the parts.
  auto power = std::dynamic_pointer_cast<CuttablePower>(parts.power);
  if (!power) power = std::make_shared<CountedPower>(parts.power, device->board_name());
  auto console = std::dynamic_pointer_cast<WatchedConsole>(parts.console);
  if (!console) console = std::make_shared<HeldConsole>(parts.console);
  auto link = std::make_shared<ConsoleCommandLink>(device, power, console, std::move(config));
  device->set_power(power);
  if (parts.probe) device->set_probe(parts.probe);
  parts.power = std::move(power);
  parts.console = std::move(console);
  parts.link = std::move(link);
}

}  // namespace process

void register_process_drivers(DriverRegistry& registry) {
  using namespace process;
  registry.add_device("process", [](const Config& section, const BindContext& context, BoardParts& parts) {
    auto device = std::make_shared<ProcessDevice>(DeviceConfig::from_config(section, "process"), context);
    remember(device);
    parts.device = device;
    if (device->config().provision != DeviceConfig::ProvisionFormat::none) parts.provision = device;
  });
  // A physical board: its parts are the bench family's drivers (power
  // `gpio`/`command`, console `serial`/`tty`, probe `openocd`); the device
  // section gives it the rig's side of the network and its provisioning.
  registry.add_device("lab", [](const Config& section, const BindContext& context, BoardParts& parts) {
    auto device = std::make_shared<DeviceHost>(DeviceConfig::from_config(section, "lab"), context);
    remember(device);
    parts.device = device;
    if (device->config().provision != DeviceConfig::ProvisionFormat::none) parts.provision = device;
  });
  registry.add_power("process", [](const Config& section, const BindContext&, BoardParts& parts) {
    auto device = bound_device(section, parts, "process");
    auto power = std::make_shared<ProcessPower>(device, PowerConfig::from_config(section));
    device->attach_power(power);
    parts.power = power;
    parts.component_versions["device-command"] = power->command_text();
  });
  // A process board's console is the pty of its power driver's current run.
  // A tty or pty found by path (on a lab board, or one QEMU made) is the
  // bench family's console `tty`.
  registry.add_console("pty", [](const Config& section, const BindContext&, BoardParts& parts) {
    auto device = find_process_device(parts);
    if (!device)
      section.at("driver").fail(
          "the 'pty' console is the pty of a process board (device `kind: process`); for a tty or pty "
          "device by path use `driver: tty` with `path:`");
    section.only_keys({"driver"});
    auto power = device->power();
    if (!power) section.fail("the 'pty' console needs the power driver `process` (a pty per power-on)");
    parts.console = std::make_shared<PtyConsole>(power);
  });
  registry.add_link("console-command", [](const Config& section, const BindContext&, BoardParts& parts) {
    bind_console_command_link(section, parts);
  });
}

}  // namespace otarig::drivers
