#include "otarig/drivers/bench/serial.hpp"

#include <fmt/format.h>
#include <libserialport.h>
#include <termios.h>

#include <boost/asio/steady_timer.hpp>
#include <filesystem>
#include <new>
#include <system_error>

#include "otarig/core/errors.hpp"

namespace otarig::drivers::bench {
namespace {

// libserialport results become std::system_error carrying the errno.
void check(sp_return result, const std::string& step) {
  if (result >= 0) return;
  switch (result) {
    case SP_ERR_FAIL: {
      int code = sp_last_error_code();
      char* message = sp_last_error_message();
      std::string text = message != nullptr ? message : "";
      sp_free_error_message(message);
      throw std::system_error(code != 0 ? code : EIO, std::generic_category(),
                              text.empty() ? step : step + " (" + text + ")");
    }
    case SP_ERR_ARG:
      throw std::system_error(EINVAL, std::generic_category(), step + ": invalid argument");
    case SP_ERR_MEM:
      throw std::bad_alloc();
    case SP_ERR_SUPP:
      throw std::system_error(ENOTSUP, std::generic_category(), step + ": not supported");
    default:
      throw std::system_error(EIO, std::generic_category(), step);
  }
}

sp_parity to_sp(Parity p) {
  switch (p) {
    case Parity::none:
      return SP_PARITY_NONE;
    case Parity::odd:
      return SP_PARITY_ODD;
    case Parity::even:
      return SP_PARITY_EVEN;
    case Parity::mark:
      return SP_PARITY_MARK;
    case Parity::space:
      return SP_PARITY_SPACE;
  }
  return SP_PARITY_NONE;
}

sp_flowcontrol to_sp(FlowControl f) {
  switch (f) {
    case FlowControl::none:
      return SP_FLOWCONTROL_NONE;
    case FlowControl::xon_xoff:
      return SP_FLOWCONTROL_XONXOFF;
    case FlowControl::rts_cts:
      return SP_FLOWCONTROL_RTSCTS;
    case FlowControl::dtr_dsr:
      return SP_FLOWCONTROL_DTRDSR;
  }
  return SP_FLOWCONTROL_NONE;
}

struct PortListDeleter {
  void operator()(sp_port** list) const noexcept { sp_free_port_list(list); }
};

std::string describe_port(const SerialPortInfo& p) {
  if (!p.usb) return p.path;
  return fmt::format("{} ({:04x}:{:04x}{}{})", p.path, p.vid, p.pid, p.serial.empty() ? "" : " serial ",
                     p.serial);
}

}  // namespace

std::string UsbMatch::describe() const {
  return serial.empty() ? fmt::format("{:04x}:{:04x}", vid, pid)
                        : fmt::format("{:04x}:{:04x} serial {}", vid, pid, serial);
}

std::vector<SerialPortInfo> list_serial_ports() {
  sp_port** raw = nullptr;
  check(sp_list_ports(&raw), "list serial ports");
  std::unique_ptr<sp_port*, PortListDeleter> list(raw);
  std::vector<SerialPortInfo> out;
  for (sp_port** p = raw; *p != nullptr; ++p) {
    SerialPortInfo info;
    const char* name = sp_get_port_name(*p);
    const char* description = sp_get_port_description(*p);
    info.path = name != nullptr ? name : "";
    info.description = description != nullptr ? description : "";
    if (sp_get_port_transport(*p) == SP_TRANSPORT_USB) {
      int vid = 0, pid = 0;
      if (sp_get_port_usb_vid_pid(*p, &vid, &pid) == SP_OK) {
        info.usb = true;
        info.vid = static_cast<std::uint16_t>(vid);
        info.pid = static_cast<std::uint16_t>(pid);
        const char* serial = sp_get_port_usb_serial(*p);
        info.serial = serial != nullptr ? serial : "";
      }
    }
    out.push_back(std::move(info));
  }
  return out;
}

std::string select_usb_port(const UsbMatch& match, const std::vector<SerialPortInfo>& ports) {
  std::vector<const SerialPortInfo*> found;
  std::string usb_ports;
  for (const auto& p : ports) {
    if (!p.usb) continue;
    usb_ports += (usb_ports.empty() ? "" : ", ") + describe_port(p);
    if (p.vid == match.vid && p.pid == match.pid && (match.serial.empty() || p.serial == match.serial)) {
      found.push_back(&p);
    }
  }
  if (usb_ports.empty()) usb_ports = "none";
  if (found.empty()) {
    throw BenchError(fmt::format("no USB serial port {} is connected (USB serial ports: {})",
                                 match.describe(), usb_ports));
  }
  if (found.size() > 1) {
    throw BenchError(fmt::format(
        "{} USB serial ports match {}; give the serial number to choose one (USB serial ports: {})",
        found.size(), match.describe(), usb_ports));
  }
  return found.front()->path;
}

std::string libserialport_version() { return sp_get_package_version_string(); }

void SerialPort::Deleter::operator()(sp_port* port) const noexcept {
  sp_close(port);  // an error here only means it was not open
  sp_free_port(port);
}

SerialPort SerialPort::open(const std::string& path, const SerialSettings& settings) {
  std::error_code ec;
  auto device = std::filesystem::canonical(path, ec);
  if (ec) throw std::system_error(ec, fmt::format("resolve {}", path));
  sp_port* raw = nullptr;
  auto found = sp_get_port_by_name(device.c_str(), &raw);
  if (found == SP_ERR_ARG) {
    throw std::system_error(ENODEV, std::generic_category(),
                            fmt::format("{} is not a serial port libserialport recognises", device.string()));
  }
  check(found, fmt::format("look up {}", device.string()));
  SerialPort port;
  port.port_.reset(raw);
  port.path_ = device.string();
  check(sp_open(raw, SP_MODE_READ_WRITE), fmt::format("open {}", port.path_));
  port.apply(settings);
  // libserialport leaves VMIN = VTIME = 0, where read() returns 0 whenever no
  // byte is waiting; the reader takes 0 for a hang-up. With VMIN = 1 on the
  // non-blocking descriptor an empty read is EAGAIN and 0 means hang-up again.
  // libserialport re-reads the termios before each change, so this stays.
  termios tio{};
  if (::tcgetattr(port.fd(), &tio) != 0) throw std::system_error(errno, std::generic_category(), "tcgetattr");
  tio.c_cc[VMIN] = 1;
  tio.c_cc[VTIME] = 0;
  if (::tcsetattr(port.fd(), TCSANOW, &tio) != 0) {
    throw std::system_error(errno, std::generic_category(), "tcsetattr VMIN");
  }
  return port;
}

sp_port* SerialPort::get() const {
  if (!port_) throw std::logic_error("serial port used after close or move");
  return port_.get();
}

int SerialPort::fd() const {
  int fd = -1;
  check(sp_get_port_handle(get(), &fd), "get port handle");
  return fd;
}

void SerialPort::apply(const SerialSettings& s) {
  sp_port* p = get();
  check(sp_set_baudrate(p, s.baud), fmt::format("set baud rate {}", s.baud));
  check(sp_set_bits(p, s.data_bits), fmt::format("set {} data bits", s.data_bits));
  check(sp_set_parity(p, to_sp(s.parity)), "set parity");
  check(sp_set_stopbits(p, s.stop_bits), fmt::format("set {} stop bits", s.stop_bits));
  check(sp_set_flowcontrol(p, to_sp(s.flow)), "set flow control");
  if (s.dtr) set_dtr(*s.dtr);
  if (s.rts) set_rts(*s.rts);
}

void SerialPort::set_dtr(bool on) { check(sp_set_dtr(get(), on ? SP_DTR_ON : SP_DTR_OFF), "set DTR"); }
void SerialPort::set_rts(bool on) { check(sp_set_rts(get(), on ? SP_RTS_ON : SP_RTS_OFF), "set RTS"); }
void SerialPort::start_break() { check(sp_start_break(get()), "start break"); }
void SerialPort::end_break() { check(sp_end_break(get()), "end break"); }

void SerialPort::close() {
  if (!port_) return;
  auto result = sp_close(port_.get());
  sp_free_port(port_.release());
  check(result, "close " + path_);
}

SerialSource::SerialSource(std::string path, SerialSettings settings)
    : path_(std::move(path)), settings_(settings) {}
SerialSource::SerialSource(UsbMatch usb, SerialSettings settings)
    : usb_(std::move(usb)), settings_(settings) {}

std::unique_ptr<ConsoleConnection> SerialSource::open() {
  auto path = usb_ ? select_usb_port(*usb_, list_serial_ports()) : path_;
  return std::make_unique<SerialConnection>(SerialPort::open(path, settings_));
}

std::string SerialSource::describe() const {
  return usb_ ? "serial usb " + usb_->describe() : "serial " + path_;
}

namespace {

std::unique_ptr<ConsoleSource> make_source(const SerialConsoleConfig& config) {
  if (config.usb) return std::make_unique<SerialSource>(*config.usb, config.settings);
  return std::make_unique<SerialSource>(config.path, config.settings);
}

// Runs a control on the serial port, naming the console in errors.
template <class F>
void control(ConsoleReader& reader, const char* what, std::chrono::milliseconds limit, F fn) {
  reader.with_connection(what, limit, [&reader, what, fn](std::shared_ptr<ConsoleConnection> c, Done done) {
    auto serial = std::dynamic_pointer_cast<SerialConnection>(c);
    if (!serial) throw std::logic_error("serial control on a console that is not a serial port");
    try {
      fn(std::move(serial), std::move(done));
    } catch (const std::system_error& e) {
      throw BenchError(fmt::format("{}: {}: {}", reader.describe(), what, e.what()));
    }
  });
}

}  // namespace

SerialConsole::SerialConsole(std::shared_ptr<BenchIo> io, SerialConsoleConfig config, const Clock* clock)
    : io_(io), reader_(std::move(io), make_source(config), config.reader, clock) {
  reader_.start();
}

void SerialConsole::set_dtr(bool on) {
  control(reader_, "set DTR", std::chrono::milliseconds(0),
          [on](std::shared_ptr<SerialConnection> c, Done done) {
            c->port().set_dtr(on);
            done(nullptr);
          });
}

void SerialConsole::set_rts(bool on) {
  control(reader_, "set RTS", std::chrono::milliseconds(0),
          [on](std::shared_ptr<SerialConnection> c, Done done) {
            c->port().set_rts(on);
            done(nullptr);
          });
}

void SerialConsole::send_break(std::chrono::milliseconds duration) {
  auto& ctx = io_->context();
  control(reader_, "break", duration, [&ctx, duration](std::shared_ptr<SerialConnection> c, Done done) {
    c->port().start_break();
    auto timer = std::make_shared<boost::asio::steady_timer>(ctx, duration);
    // The connection stays open until the break has ended.
    timer->async_wait([timer, c, done](const boost::system::error_code&) {
      try {
        c->port().end_break();
        done(nullptr);
      } catch (...) {
        done(std::current_exception());
      }
    });
  });
}

std::string SerialConsole::port_path() {
  auto path = std::make_shared<std::string>();
  control(reader_, "port path", std::chrono::milliseconds(0),
          [path](std::shared_ptr<SerialConnection> c, Done done) {
            *path = c->port().path();
            done(nullptr);
          });
  return *path;
}

}  // namespace otarig::drivers::bench
