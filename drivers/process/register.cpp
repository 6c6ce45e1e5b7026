// Registers the process-board drivers: device kinds `process` and `lab`,
// power `process`, console `pty`, link `console-command`.
#include "otarig/drivers/process/register.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <initializer_list>
#include <map>
#include <mutex>
#include <optional>
#include <string_view>

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

// Whether the board's device section is of one of `kinds`: by the device
// bound, or in a validate-only bind by the kind checked (BoardParts::checked),
// so both apply the same rules below.
bool device_is(const BindContext& context, const BoardParts& parts,
               std::initializer_list<std::string_view> kinds) {
  std::string kind;
  if (context.validate_only) {
    if (auto it = parts.checked.find("device"); it != parts.checked.end()) kind = it->second;
  } else if (auto host = find_device_host(parts)) {
    kind = host->config().kind;
  }
  return std::find(kinds.begin(), kinds.end(), kind) != kinds.end();
}

void require_process_device(const Config& section, const BindContext& context, const BoardParts& parts,
                            const char* what) {
  if (!device_is(context, parts, {"process"}))
    section.fail(fmt::format("the '{}' driver needs the device section `kind: process`", what));
}

// The console-command link's rules about the rest of the board, then its section.
// `has_server`: the device section runs the rig's update server.
LinkConfig check_console_command_link(const Config& section, bool has_device_host, bool has_server,
                                      const BoardParts& parts) {
  if (!has_device_host)
    section.at("driver").fail(
        "the 'console-command' link needs the device section `kind: process` or `kind: lab` (the rig's "
        "update server, fault proxy and storage for the board)");
  if (!parts.has("power"))
    section.fail("the 'console-command' link needs a `power:` section (before `link:`)");
  if (!parts.has("console"))
    section.fail("the 'console-command' link needs a `console:` section (before `link:`)");
  auto config = LinkConfig::from_config(section);
  if (config.serve == LinkConfig::Serve::http && !has_server)
    (section.has("serve") ? section.at("serve") : section.at("driver"))
        .fail("the console-command link serves over HTTP, but the device has no update server "
              "(device.network.server: false); use `serve: file`");
  return config;
}

// In a validate-only bind: whether the device section checked runs a server.
constexpr const char* kCheckedServer = "device.network.server";
// In a validate-only bind: the device section's power_loss ("crash", "kill: ...").
constexpr const char* kCheckedPowerLoss = "device.power_loss";

// Under the crash model, a device command that names storage the layer
// cannot see (a block device, an MTD or UBI volume) would keep every write it
// makes there through every power cut: refused at the command's line.
void check_command_storage(const Config& command_node, const std::vector<std::string>& argv) {
  static constexpr std::string_view harmless[] = {"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom",
                                                  "/dev/tty", "/dev/stdin", "/dev/stdout", "/dev/stderr"};
  for (std::size_t i = 1; i < argv.size(); ++i) {
    // Each /dev/ path in the word (a script given to `sh -c` has several).
    const std::string_view word = argv[i];
    std::optional<std::string_view> found;
    for (auto at = word.find("/dev/"); at != std::string_view::npos; at = word.find("/dev/", at + 1)) {
      if (at != 0 && std::string_view(" \t=<>'\"").find(word[at - 1]) == std::string_view::npos) continue;
      auto end = word.find_first_of(" \t\n;'\"|&<>)", at);
      const auto path = word.substr(at, end == std::string_view::npos ? std::string_view::npos : end - at);
      if (std::find(std::begin(harmless), std::end(harmless), path) != std::end(harmless)) continue;
      found = path;
      break;
    }
    if (!found) continue;
    const auto path = *found;
    command_node.fail(fmt::format(
        "'{}' is a device outside the storage folder: the crash model sees only the storage folder "
        "(${{storage}}), so what the device writes there would survive every power cut; keep the device's "
        "storage under ${{storage}}, or set device.power_loss: {{model: kill, reason: \"...\"}}",
        path));
  }
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
  auto config = check_console_command_link(section, device != nullptr, device && device->config().server, parts);
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
  // The link is also the board's placed cuts, and with the rig's update
  // server its release feed and (through the fault proxy) network faults.
  parts.cuts = link;
  if (device->config().server) parts.feed = link;
  if (device->config().server && device->config().proxy) parts.network = link;
  if (device->device_api()) parts.device_reports = link;
  if (device->config().server && link->checks_by_itself()) parts.update_check = link;
  parts.link = std::move(link);
}

}  // namespace process

void register_process_drivers(DriverRegistry& registry) {
  using namespace process;
  // Each factory checks its section (and what it needs of the board) first;
  // a validate-only bind stops there: no storage, server, process or pty.
  registry.add_device("process", [](const Config& section, const BindContext& context, BoardParts& parts) {
    auto config = DeviceConfig::from_config(section, "process");
    if (context.validate_only) {
      parts.checked[kCheckedServer] = config.server ? "yes" : "no";
      parts.checked[kCheckedPowerLoss] = config.power_loss_text();
      parts.power_loss = config.power_loss_text();
      return;
    }
    auto device = std::make_shared<ProcessDevice>(std::move(config), context);
    remember(device);
    parts.device = device;
    parts.power_loss = device->config().power_loss_text();
    if (device->records_storage()) parts.crash_storage = device;
    parts.storage_scan = device;
    if (device->config().provision != DeviceConfig::ProvisionFormat::none) parts.provision = device;
  });
  // A physical board: its parts are the bench family's drivers (power
  // `gpio`/`command`, console `serial`/`tty`, probe `openocd`); the device
  // section gives it the rig's side of the network and its provisioning.
  registry.add_device("lab", [](const Config& section, const BindContext& context, BoardParts& parts) {
    auto config = DeviceConfig::from_config(section, "lab");
    if (context.validate_only) {
      parts.checked[kCheckedServer] = config.server ? "yes" : "no";
      return;
    }
    auto device = std::make_shared<DeviceHost>(std::move(config), context);
    remember(device);
    parts.device = device;
    if (device->config().provision != DeviceConfig::ProvisionFormat::none) parts.provision = device;
  });
  registry.add_power("process", [](const Config& section, const BindContext& context, BoardParts& parts) {
    require_process_device(section, context, parts, "process");
    auto config = PowerConfig::from_config(section);
    bool crash = false;
    if (context.validate_only) {
      const auto it = parts.checked.find(kCheckedPowerLoss);
      crash = it != parts.checked.end() && it->second == "crash";
    } else if (auto device = find_process_device(parts)) {
      crash = device->records_storage();
    }
    if (crash) check_command_storage(section.at("command"), config.command);
    if (context.validate_only) return;
    auto device = find_process_device(parts);
    auto power = std::make_shared<ProcessPower>(device, std::move(config));
    device->attach_power(power);
    parts.power = power;
    // The clock is set through libfaketime: a board without it cannot have its clock set.
    if (libfaketime()) parts.device_clock = power;
    parts.component_versions["device-command"] = power->command_text();
    parts.component_versions["device-program"] = power->program_text();
  });
  // A process board's console is the pty of its power driver's current run.
  // A tty or pty found by path (on a lab board, or one QEMU made) is the
  // bench family's console `tty`.
  registry.add_console("pty", [](const Config& section, const BindContext& context, BoardParts& parts) {
    if (!device_is(context, parts, {"process"}))
      section.at("driver").fail(
          "the 'pty' console is the pty of a process board (device `kind: process`); for a tty or pty "
          "device by path use `driver: tty` with `path:`");
    section.only_keys({"driver"});
    std::shared_ptr<ProcessPower> power;
    bool process_power = false;
    if (context.validate_only) {
      const auto it = parts.checked.find("power");
      process_power = it != parts.checked.end() && it->second == "process";
    } else if (auto device = find_process_device(parts)) {
      power = device->power();
      process_power = power != nullptr;
    }
    if (!process_power)
      section.fail("the 'pty' console needs the power driver `process` (a pty per power-on)");
    if (context.validate_only) return;
    auto console = std::make_shared<PtyConsole>(std::move(power), context.clock);
    parts.console = console;
    parts.console_stamps = std::move(console);
  });
  registry.add_link(
      "console-command", [](const Config& section, const BindContext& context, BoardParts& parts) {
        if (context.validate_only) {
          const auto server = parts.checked.find(kCheckedServer);
          (void)check_console_command_link(section, device_is(context, parts, {"process", "lab"}),
                                           server != parts.checked.end() && server->second == "yes", parts);
          return;
        }
        bind_console_command_link(section, parts);
      });
}

}  // namespace otarig::drivers
