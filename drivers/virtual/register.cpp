// Registers the virtual board: device kind "virtual" builds the board and
// fills every part it implements; the "virtual" power, console and link
// drivers bind to that device.
#include <fmt/format.h>

#include "otarig/drivers/registry.hpp"
#include "otarig/drivers/virtual/board.hpp"

namespace otarig::drivers {
namespace vboard {

std::shared_ptr<VirtualBoard> make_virtual_board(const Config& device, const BindContext& context) {
  auto cfg = BoardConfig::from_config(device);
  cfg.device_type_name = context.device_type;
  cfg.device_type = image::device_type_id(context.device_type);
  cfg.encryption_secret = context.encryption_secret;
  auto board = std::make_shared<VirtualBoard>(std::move(cfg), context.trusted_keys, context.clock);
  if (!context.trust.empty()) board->set_trust(context.trust);
  return board;
}

}  // namespace vboard

namespace {

// The board these drivers bind to; null in a validate-only bind, which knows
// the device by the kind checked (BoardParts::checked).
std::shared_ptr<vboard::VirtualBoard> bound_board(const Config& section, const BindContext& context,
                                                  const BoardParts& parts, const char* what) {
  section.only_keys({"driver"});  // the device section says everything about the board
  auto board = std::dynamic_pointer_cast<vboard::VirtualBoard>(parts.flash_faults);
  const auto checked = parts.checked.find("device");
  const bool virtual_device = context.validate_only
                                  ? checked != parts.checked.end() && checked->second == "virtual"
                                  : parts.device && board;
  if (!virtual_device)
    section.fail(fmt::format("the 'virtual' {} driver needs the device section `kind: virtual`", what));
  return board;
}

}  // namespace

void register_virtual_drivers(DriverRegistry& registry) {
  registry.add_device("virtual", [](const Config& section, const BindContext& context, BoardParts& parts) {
    if (context.validate_only) {
      (void)vboard::BoardConfig::from_config(section);
      for (const char* part : {"power", "console", "link"}) parts.checked[part] = "virtual";
      return;
    }
    auto board = vboard::make_virtual_board(section, context);
    parts.power = board;
    parts.console = board;
    parts.link = board;
    parts.provision = board;
    parts.flash_faults = board;
    parts.device_clock = board;
    parts.storage_scan = board;
    parts.device = board;
    parts.component_versions["otarig-vboard"] =
        fmt::format("bootloader 1.0 mode={}", vboard::to_string(board->config().mode));
  });
  registry.add_power("virtual", [](const Config& section, const BindContext& context, BoardParts& parts) {
    if (auto board = bound_board(section, context, parts, "power")) parts.power = std::move(board);
  });
  registry.add_console("virtual", [](const Config& section, const BindContext& context, BoardParts& parts) {
    if (auto board = bound_board(section, context, parts, "console")) parts.console = std::move(board);
  });
  registry.add_link("virtual", [](const Config& section, const BindContext& context, BoardParts& parts) {
    if (auto board = bound_board(section, context, parts, "link")) parts.link = std::move(board);
  });
}

}  // namespace otarig::drivers
