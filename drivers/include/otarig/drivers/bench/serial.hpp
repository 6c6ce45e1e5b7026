#pragma once
// Serial consoles through libserialport: a port by path, or found by USB
// VID:PID and serial number so the console survives re-plugging and
// re-enumeration (ttyACM0 becoming ttyACM1). Read by ConsoleReader.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "otarig/drivers/bench/console.hpp"
#include "otarig/drivers/bench/io.hpp"
#include "otarig/drivers/protocols.hpp"

struct sp_port;

namespace otarig::drivers::bench {

enum class Parity { none, odd, even, mark, space };
enum class FlowControl { none, xon_xoff, rts_cts, dtr_dsr };

struct SerialSettings {
  int baud = 115200;
  int data_bits = 8;  ///< 5..8
  Parity parity = Parity::none;
  int stop_bits = 1;  ///< 1 or 2
  FlowControl flow = FlowControl::none;
  /// Levels set after opening; unset = as libserialport leaves them.
  std::optional<bool> dtr;
  std::optional<bool> rts;
};

/// A USB serial adapter by identity.
struct UsbMatch {
  std::uint16_t vid = 0;
  std::uint16_t pid = 0;
  std::string serial;  ///< empty: any serial number (then exactly one adapter may match)
  /// "0483:374b serial 066DFF..."
  std::string describe() const;
};

/// A port as libserialport lists it.
struct SerialPortInfo {
  std::string path;
  std::string description;
  bool usb = false;
  std::uint16_t vid = 0;
  std::uint16_t pid = 0;
  std::string serial;
};

/// Every port libserialport finds (sp_list_ports). std::system_error on failure.
std::vector<SerialPortInfo> list_serial_ports();
/// The path of the single port among `ports` that matches. BenchError when
/// none or more than one does; the message lists the USB ports seen.
std::string select_usb_port(const UsbMatch& match, const std::vector<SerialPortInfo>& ports);
/// libserialport's version, for the evidence bundle.
std::string libserialport_version();

/// An open libserialport port. Move-only; closed and freed once.
/// Errors are std::system_error with the errno libserialport saw.
class SerialPort {
 public:
  /// Opens `path` and applies `settings`. A symlink (udev's /dev/serial/by-id/...)
  /// is resolved first: libserialport finds a port's details by its /dev name.
  static SerialPort open(const std::string& path, const SerialSettings& settings);

  SerialPort(SerialPort&&) noexcept = default;
  SerialPort& operator=(SerialPort&&) noexcept = default;
  SerialPort(const SerialPort&) = delete;
  SerialPort& operator=(const SerialPort&) = delete;
  ~SerialPort() = default;

  /// The descriptor libserialport reads and writes (owned by the port).
  int fd() const;
  /// The resolved device path, e.g. /dev/ttyACM0.
  const std::string& path() const { return path_; }
  void apply(const SerialSettings& settings);
  void set_dtr(bool on);
  void set_rts(bool on);
  void start_break();
  void end_break();
  /// Closes now; unlike the destructor, reports a failure.
  void close();

 private:
  struct Deleter {
    void operator()(sp_port* port) const noexcept;
  };
  SerialPort() = default;
  sp_port* get() const;
  std::unique_ptr<sp_port, Deleter> port_;
  std::string path_;
};

/// A serial port the reader can reopen: by path, or by USB identity.
class SerialSource final : public ConsoleSource {
 public:
  SerialSource(std::string path, SerialSettings settings);
  SerialSource(UsbMatch usb, SerialSettings settings);
  std::unique_ptr<ConsoleConnection> open() override;
  std::string describe() const override;

 private:
  std::string path_;
  std::optional<UsbMatch> usb_;
  SerialSettings settings_;
};

/// The connection SerialSource opens; serial line controls act on it.
class SerialConnection final : public ConsoleConnection {
 public:
  explicit SerialConnection(SerialPort port) : port_(std::move(port)) {}
  int fd() const override { return port_.fd(); }
  SerialPort& port() { return port_; }

 private:
  SerialPort port_;
};

struct SerialConsoleConfig {
  std::string path;             ///< a device path or symlink, or
  std::optional<UsbMatch> usb;  ///< a USB adapter by identity
  SerialSettings settings;
  ConsoleReaderOptions reader;  ///< reader.device names the console in errors
};

/// ConsoleProtocol on a serial port, with the line controls of a UART.
class SerialConsole final : public ConsoleProtocol, public StampedConsoleProtocol {
 public:
  /// Opens the port (BenchError when it is not there) and starts reading.
  SerialConsole(std::shared_ptr<BenchIo> io, SerialConsoleConfig config, const Clock* clock = nullptr);

  void write(std::string_view bytes) override { reader_.write(bytes); }
  std::string read(std::chrono::milliseconds timeout) override { return reader_.read(timeout); }
  ConsoleRecord take_record() override { return reader_.take_record(); }

  ConsoleReader& reader() { return reader_; }
  const Transcript& transcript() const { return reader_.transcript(); }
  void set_dtr(bool on);
  void set_rts(bool on);
  /// Holds the line in break for `duration` (SysRq, bootloader entry).
  void send_break(std::chrono::milliseconds duration);
  /// The device currently open, e.g. /dev/ttyACM1 after a re-plug.
  std::string port_path();

 private:
  std::shared_ptr<BenchIo> io_;
  ConsoleReader reader_;
};

}  // namespace otarig::drivers::bench
