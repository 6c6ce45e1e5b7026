#include "otarig/drivers/bench/register.hpp"

#include <fmt/format.h>

#include <charconv>
#include <initializer_list>
#include <string_view>
#include <utility>

#include "otarig/core/errors.hpp"

namespace otarig::drivers::bench {
namespace {

CommandSpec parse_command(const Config& c) {
  if (c.is_scalar()) {
    auto line = c.as_string();
    if (line.empty()) c.fail("empty command");
    return CommandSpec::shell(std::move(line));
  }
  if (c.is_sequence()) {
    auto argv = c.as_string_list();
    if (argv.empty()) c.fail("empty command");
    return CommandSpec{std::move(argv)};
  }
  c.fail("expected a command: a string (run by /bin/sh -c) or a list of arguments");
}

std::chrono::milliseconds non_negative_duration(const Config& section, const std::string& key,
                                                std::chrono::milliseconds fallback) {
  auto c = section.find(key);
  if (!c) return fallback;
  auto d = c->as_duration();
  if (d.count() < 0) c->fail("must not be negative");
  return d;
}

std::chrono::milliseconds positive_duration(const Config& section, const std::string& key,
                                            std::chrono::milliseconds fallback) {
  auto c = section.find(key);
  if (!c) return fallback;
  auto d = c->as_duration();
  if (d.count() <= 0) c->fail("must be longer than 0 ms");
  return d;
}

std::string device_name(const Config& section) {
  return section.path().empty() ? std::string("device") : section.path();
}

// The keys that pick a GPIO line, shared by the power line and the pulse lines.
GpioLineSpec parse_line_keys(const Config& c) {
  GpioLineSpec spec;
  spec.chip = c.string_or("chip", "");
  if (auto offset = c.find("offset")) {
    auto v = offset->as_int();
    if (v < 0 || v > 1023) offset->fail("a line offset is 0..1023");
    spec.offset = static_cast<unsigned>(v);
  }
  spec.name = c.string_or("line", "");
  spec.active_low = c.bool_or("active_low", false);
  if (spec.offset && !spec.name.empty()) c.fail("give either 'offset' or 'line' (a line name), not both");
  if (!spec.offset && spec.name.empty())
    c.fail("missing the line: 'chip' with 'offset', or 'line' (a line name)");
  if (spec.offset && spec.chip.empty()) c.fail("'offset' needs 'chip'");
  return spec;
}

GpioPulse parse_pulse(const Config& c, const char* time_key, std::chrono::milliseconds fallback) {
  c.only_keys({"chip", "offset", "line", "active_low", time_key});
  return GpioPulse{parse_line_keys(c), positive_duration(c, time_key, fallback)};
}

std::uint16_t parse_usb_id(const Config& c) {
  // USB ids are hex by convention: "0483", 0x0483 and 483 all mean 0x0483.
  auto text = c.as_string();
  std::string_view digits = text;
  if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X'))
    digits.remove_prefix(2);
  unsigned value = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value, 16);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || value > 0xffff) {
    c.fail(fmt::format("expected a 16-bit USB id in hex such as 0483, found '{}'", text));
  }
  return static_cast<std::uint16_t>(value);
}

ConsoleReaderOptions parse_reader_keys(const Config& c) {
  ConsoleReaderOptions o;
  o.device = device_name(c);
  o.reconnect_interval = positive_duration(c, "reconnect_interval", o.reconnect_interval);
  o.write_timeout = positive_duration(c, "write_timeout", o.write_timeout);
  if (auto max_line = c.find("max_line")) {
    auto v = max_line->as_size();
    if (v < 80 || v > (1u << 20)) max_line->fail("max_line is 80..1MiB");
    o.max_line = v;
  }
  return o;
}

// A key whose value is one of a few words: "parity is none, odd or even, not 'x'".
template <class E>
E parse_word(const Config& c, std::string_view key,
             std::initializer_list<std::pair<std::string_view, E>> words) {
  auto v = c.as_string();
  std::string choices;
  std::size_t i = 0;
  for (const auto& [word, value] : words) {
    if (v == word) return value;
    choices += i == 0 ? "" : i + 1 == words.size() ? " or " : ", ";
    choices += word;
    ++i;
  }
  c.fail(fmt::format("{} is {}, not '{}'", key, choices, v));
}

std::filesystem::path beside_profile(const std::string& file, const std::filesystem::path& profile_dir) {
  std::filesystem::path p(file);
  if (p.is_absolute() || profile_dir.empty()) return p;
  auto local = profile_dir / p;
  std::error_code ec;
  return std::filesystem::exists(local, ec) ? local : p;
}

}  // namespace

GpioPowerConfig parse_gpio_power(const Config& s) {
  s.only_keys({"driver", "chip", "offset", "line", "active_low", "off_time", "settle", "initial", "reset",
               "boot_mode", "consumer"});
  GpioPowerConfig config;
  config.device = device_name(s);
  config.power = parse_line_keys(s);
  config.off_time = non_negative_duration(s, "off_time", config.off_time);
  config.settle = non_negative_duration(s, "settle", config.settle);
  if (auto initial = s.find("initial")) {
    auto v = initial->as_string();
    if (v == "on" || v == "true")
      config.initial_on = true;
    else if (v == "off" || v == "false")
      config.initial_on = false;
    else
      initial->fail(fmt::format("expected on or off, found '{}'", v));
  }
  if (auto reset = s.find("reset"))
    config.reset = parse_pulse(*reset, "pulse", std::chrono::milliseconds(100));
  if (auto boot = s.find("boot_mode"))
    config.boot_mode = parse_pulse(*boot, "hold", std::chrono::milliseconds(100));
  config.consumer = s.string_or("consumer", config.consumer);
  return config;
}

CommandPowerConfig parse_command_power(const Config& s) {
  s.only_keys({"driver", "on", "off", "cycle", "timeout", "off_time", "settle"});
  CommandPowerConfig config;
  config.device = device_name(s);
  config.on = parse_command(s.at("on"));
  config.off = parse_command(s.at("off"));
  if (auto cycle = s.find("cycle")) config.cycle = parse_command(*cycle);
  config.timeout = positive_duration(s, "timeout", config.timeout);
  config.off_time = non_negative_duration(s, "off_time", config.off_time);
  config.settle = non_negative_duration(s, "settle", config.settle);
  return config;
}

SerialConsoleConfig parse_serial_console(const Config& s) {
  s.only_keys({"driver", "path", "usb", "baud", "data_bits", "parity", "stop_bits", "flow_control", "dtr",
               "rts", "reconnect_interval", "write_timeout", "max_line"});
  SerialConsoleConfig config;
  auto path = s.find("path");
  auto usb = s.find("usb");
  if (path && usb) s.fail("give either 'path' or 'usb', not both");
  if (!path && !usb) s.fail("missing the port: 'path' or 'usb: {vid, pid, serial}'");
  if (path) config.path = path->as_string();
  if (usb) {
    usb->only_keys({"vid", "pid", "serial"});
    config.usb =
        UsbMatch{parse_usb_id(usb->at("vid")), parse_usb_id(usb->at("pid")), usb->string_or("serial", "")};
  }
  auto& st = config.settings;
  if (auto baud = s.find("baud")) {
    auto v = baud->as_int();
    if (v < 50 || v > 20000000) baud->fail(fmt::format("baud rate {} is out of range", v));
    st.baud = static_cast<int>(v);
  }
  if (auto bits = s.find("data_bits")) {
    auto v = bits->as_int();
    if (v < 5 || v > 8) bits->fail("data_bits is 5, 6, 7 or 8");
    st.data_bits = static_cast<int>(v);
  }
  if (auto parity = s.find("parity")) {
    st.parity = parse_word<Parity>(*parity, "parity",
                                   {{"none", Parity::none},
                                    {"odd", Parity::odd},
                                    {"even", Parity::even},
                                    {"mark", Parity::mark},
                                    {"space", Parity::space}});
  }
  if (auto stop = s.find("stop_bits")) {
    auto v = stop->as_int();
    if (v != 1 && v != 2) stop->fail("stop_bits is 1 or 2");
    st.stop_bits = static_cast<int>(v);
  }
  if (auto flow = s.find("flow_control")) {
    st.flow = parse_word<FlowControl>(*flow, "flow_control",
                                      {{"none", FlowControl::none},
                                       {"xon_xoff", FlowControl::xon_xoff},
                                       {"rts_cts", FlowControl::rts_cts},
                                       {"dtr_dsr", FlowControl::dtr_dsr}});
  }
  if (auto dtr = s.find("dtr")) st.dtr = dtr->as_bool();
  if (auto rts = s.find("rts")) st.rts = rts->as_bool();
  config.reader = parse_reader_keys(s);
  return config;
}

TtyConsoleConfig parse_tty_console(const Config& s) {
  s.only_keys({"driver", "path", "baud", "reconnect_interval", "write_timeout", "max_line"});
  TtyConsoleConfig config;
  config.path = s.at("path").as_string();
  if (auto baud = s.find("baud")) {
    auto v = baud->as_int();
    if (v < 0 || v > 20000000) baud->fail(fmt::format("baud rate {} is out of range", v));
    config.baud = static_cast<unsigned>(v);
  }
  config.reader = parse_reader_keys(s);
  return config;
}

OpenOcdConfig parse_openocd(const Config& s, const std::filesystem::path& profile_dir) {
  s.only_keys({"driver", "attach", "start", "command_timeout", "program_timeout", "status"});
  OpenOcdConfig config;
  config.device = device_name(s);
  auto attach = s.find("attach");
  auto start = s.find("start");
  if (attach && start) s.fail("give either 'attach: HOST:PORT' or 'start: {...}', not both");
  if (!attach && !start) s.fail("missing 'attach: HOST:PORT' (a running OpenOCD) or 'start: {...}'");
  if (attach) {
    auto text = attach->as_string();
    auto colon = text.rfind(':');
    int port = 0;
    if (colon != std::string::npos) {
      auto digits = std::string_view(text).substr(colon + 1);
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
      if (ec != std::errc() || end != digits.data() + digits.size()) port = 0;
    }
    if (colon == std::string::npos || colon == 0 || port <= 0 || port > 65535) {
      attach->fail(fmt::format("expected HOST:PORT such as 127.0.0.1:6666, found '{}'", text));
    }
    config.host = text.substr(0, colon);
    config.port = static_cast<std::uint16_t>(port);
  }
  if (start) {
    start->only_keys(
        {"executable", "search_dirs", "config_files", "commands", "init", "startup_timeout", "log"});
    OpenOcdLaunch launch;
    launch.executable = start->string_or("executable", launch.executable);
    if (auto dirs = start->find("search_dirs")) {
      for (const auto& d : dirs->as_string_list())
        launch.search_dirs.push_back(beside_profile(d, profile_dir).string());
    }
    if (auto files = start->find("config_files")) {
      for (const auto& f : files->as_string_list())
        launch.config_files.push_back(beside_profile(f, profile_dir).string());
    }
    if (auto commands = start->find("commands")) launch.commands = commands->as_string_list();
    launch.init = start->bool_or("init", true);
    launch.startup_timeout = positive_duration(*start, "startup_timeout", launch.startup_timeout);
    if (auto log = start->find("log")) {
      std::filesystem::path p(log->as_string());
      launch.log_file = p.is_absolute() || profile_dir.empty() ? p : profile_dir / p;
    }
    if (launch.config_files.empty() && launch.commands.empty()) {
      start->fail("give 'config_files' or 'commands' that select the adapter and target");
    }
    config.launch = std::move(launch);
  }
  config.command_timeout = positive_duration(s, "command_timeout", config.command_timeout);
  config.program_timeout = positive_duration(s, "program_timeout", config.program_timeout);
  if (auto status = s.find("status")) {
    status->only_keys({"address", "fields", "magic"});
    StatusLayout layout;
    layout.address = status->at("address").as_uint();
    if (layout.address % 4 != 0) status->at("address").fail("the status struct must be 4-byte aligned");
    auto fields = status->at("fields");
    for (const auto& [name, index] : fields.entries()) {
      auto v = index.as_int();
      if (v < 0 || v > 255) index.fail("a field is the index of a 32-bit word, 0..255");
      layout.fields[name] = static_cast<unsigned>(v);
    }
    if (layout.fields.empty()) fields.fail("name at least one field");
    if (auto magic = status->find("magic")) {
      magic->only_keys({"word", "value"});
      auto word = magic->at("word").as_int();
      if (word < 0 || word > 255) magic->at("word").fail("the magic word index is 0..255");
      auto value = magic->at("value").as_uint();
      if (value > 0xffffffffu) magic->at("value").fail("the magic value is a 32-bit word");
      layout.magic_word = static_cast<unsigned>(word);
      layout.magic = static_cast<std::uint32_t>(value);
    }
    config.status = std::move(layout);
  }
  return config;
}

}  // namespace otarig::drivers::bench

namespace otarig::drivers {

void register_bench_drivers(DriverRegistry& registry) {
  using namespace bench;
  // The device kind of a physical board, `lab` (its network host and
  // provisioning), is the process family's; its parts are the drivers below.
  // Each factory parses its section first; a validate-only bind stops there,
  // before anything is opened.
  registry.add_power("gpio", [](const Config& s, const BindContext& ctx, BoardParts& parts) {
    auto config = parse_gpio_power(s);
    if (ctx.validate_only) return;
    parts.power = std::make_shared<GpioPower>(BenchIo::for_bench(ctx.board_name), std::move(config));
    parts.component_versions["libgpiod"] = libgpiod_version();
  });
  registry.add_power("command", [](const Config& s, const BindContext& ctx, BoardParts& parts) {
    auto config = parse_command_power(s);
    if (ctx.validate_only) return;
    parts.power = std::make_shared<CommandPower>(BenchIo::for_bench(ctx.board_name), std::move(config));
  });
  registry.add_console("serial", [](const Config& s, const BindContext& ctx, BoardParts& parts) {
    auto config = parse_serial_console(s);
    if (ctx.validate_only) return;
    auto console =
        std::make_shared<SerialConsole>(BenchIo::for_bench(ctx.board_name), std::move(config), ctx.clock);
    parts.console = console;
    parts.console_stamps = std::move(console);
    parts.component_versions["libserialport"] = libserialport_version();
  });
  registry.add_console("tty", [](const Config& s, const BindContext& ctx, BoardParts& parts) {
    auto config = parse_tty_console(s);
    std::unique_ptr<TtyPathSource> source;
    try {
      source = std::make_unique<TtyPathSource>(config.path, config.baud);  // checks the speed, opens nothing
    } catch (const std::system_error& e) {
      s.at("baud").fail(e.what());
    }
    if (ctx.validate_only) return;
    auto reader = std::make_shared<ConsoleReader>(BenchIo::for_bench(ctx.board_name), std::move(source),
                                                  config.reader, ctx.clock);
    reader->start();
    parts.console = reader;
    parts.console_stamps = std::move(reader);
  });
  registry.add_probe("openocd", [](const Config& s, const BindContext& ctx, BoardParts& parts) {
    auto config = parse_openocd(s, ctx.profile_dir);
    if (ctx.validate_only) return;
    auto probe = std::make_shared<OpenOcdProbe>(BenchIo::for_bench(ctx.board_name), std::move(config), ctx.clock);
    parts.component_versions["openocd"] = probe->version();
    parts.probe = std::move(probe);
  });
}

}  // namespace otarig::drivers
