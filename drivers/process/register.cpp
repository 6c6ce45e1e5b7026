// Registers the process-board drivers: device kind `process`, power
// `process`, console `pty`, link `console-command`.
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
// process board.
struct DeviceIndex {
  std::mutex mu;
  std::map<const void*, std::weak_ptr<ProcessDevice>> devices;
};
DeviceIndex& index() {
  static DeviceIndex i;
  return i;
}

void remember(const std::shared_ptr<ProcessDevice>& device) {
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

std::shared_ptr<ProcessDevice> find_process_device(const BoardParts& parts) {
  if (!parts.device) return nullptr;
  auto& i = index();
  std::lock_guard lock(i.mu);
  auto it = i.devices.find(parts.device.get());
  return it == i.devices.end() ? nullptr : it->second.lock();
}

}  // namespace process

void register_process_drivers(DriverRegistry& registry) {
  using namespace process;
  registry.add_device("process", [](const Config& section, const BindContext& context, BoardParts& parts) {
    auto device = std::make_shared<ProcessDevice>(DeviceConfig::from_config(section), context);
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
    auto device = bound_device(section, parts, "console-command");
    auto power = device->power();
    auto console = std::dynamic_pointer_cast<PtyConsole>(parts.console);
    if (!power || !console)
      section.fail(
          "the 'console-command' link needs the power driver `process` and the console driver `pty`");
    parts.link =
        std::make_shared<ConsoleCommandLink>(device, power, console, LinkConfig::from_config(section));
  });
}

}  // namespace otarig::drivers
