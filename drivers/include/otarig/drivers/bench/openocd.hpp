#pragma once
// A debug probe through OpenOCD's TCL RPC port: attach to a running OpenOCD,
// or start one (own process group, bound to 127.0.0.1, a free tcl_port) and
// stop it at the end. Commands end with byte 0x1a and so do the replies; each
// has a deadline. When a started OpenOCD dies (EOF, ECONNRESET) it is started
// again and the command retried once.
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "otarig/core/clock.hpp"
#include "otarig/drivers/bench/io.hpp"
#include "otarig/drivers/bench/process.hpp"
#include "otarig/drivers/protocols.hpp"

namespace otarig::drivers::bench {

/// How to start OpenOCD. The rig adds `bindto 127.0.0.1`, `tcl_port N`,
/// `telnet_port disabled` and `gdb_port disabled` before the files.
struct OpenOcdLaunch {
  std::string executable = "openocd";
  std::vector<std::string> search_dirs;   ///< -s DIR
  std::vector<std::string> config_files;  ///< -f FILE, in order (interface/stlink.cfg, target/stm32f4x.cfg)
  std::vector<std::string> commands;      ///< -c CMD, after the files
  bool init = true;                       ///< end with -c init
  std::chrono::milliseconds startup_timeout{10000};
  /// OpenOCD's output; empty: a temporary file removed with the probe.
  std::filesystem::path log_file;
};

/// Where the device keeps its status struct, read word by word.
struct StatusLayout {
  std::uint64_t address = 0;
  std::map<std::string, unsigned> fields;  ///< field name -> index of its 32-bit word
  std::optional<unsigned> magic_word;      ///< a word that must hold `magic`
  std::uint32_t magic = 0;
  std::size_t words() const;
};

struct OpenOcdConfig {
  std::string device = "probe";  ///< names the device in errors
  /// Attach to a running OpenOCD when `launch` is empty.
  std::string host = "127.0.0.1";
  std::uint16_t port = 6666;
  std::optional<OpenOcdLaunch> launch;
  std::chrono::milliseconds command_timeout{5000};
  std::chrono::milliseconds program_timeout{120000};
  std::optional<StatusLayout> status;
};

enum class ResetMode { run, halt, init };

/// ProbeProtocol over OpenOCD. Use from one thread at a time (the harness);
/// not from the io thread.
class OpenOcdProbe final : public ProbeProtocol {
 public:
  /// Starts or attaches and checks the connection (BenchError when it fails,
  /// with the tail of OpenOCD's output). `clock` measures the start-up
  /// deadline (a steady clock when null; it must outlive the probe).
  OpenOcdProbe(std::shared_ptr<BenchIo> io, OpenOcdConfig config, Clock* clock = nullptr);
  /// Stops an OpenOCD this probe started.
  ~OpenOcdProbe() override;
  OpenOcdProbe(const OpenOcdProbe&) = delete;
  OpenOcdProbe& operator=(const OpenOcdProbe&) = delete;

  /// Runs a command and returns its output (`capture`); a Tcl error is a
  /// BenchError naming the command and OpenOCD's message.
  std::string command(std::string_view cmd, std::chrono::milliseconds timeout) override;
  std::string command(std::string_view cmd) { return command(cmd, config_.command_timeout); }
  /// `read_memory ADDR 32 COUNT` (OpenOCD 0.12), or `mdw` where that is missing.
  std::vector<std::uint32_t> read_words(std::uint64_t address, std::size_t count) override;

  /// Sends `tcl` as it is and returns the reply (no error detection).
  std::string raw(std::string_view tcl, std::chrono::milliseconds timeout);

  void reset(ResetMode mode);
  void halt();
  void resume();
  /// `program FILE [ADDRESS] [verify] [reset]` (flashes, verifies, resets).
  void program(const std::filesystem::path& image, std::optional<std::uint64_t> address = std::nullopt,
               bool verify = true, bool reset = true);
  /// `flash write_image [erase] FILE OFFSET`.
  void flash_write_image(const std::filesystem::path& image, std::uint64_t offset, bool erase = true);
  /// The status struct's fields (StatusLayout in the config). BenchError
  /// without a layout, or when the magic word does not match.
  std::map<std::string, std::uint32_t> read_status();
  std::string version();

  /// Shuts down a started OpenOCD (`shutdown`, then SIGKILL to its group
  /// after 2 s) or drops the connection to an attached one. Idempotent.
  void stop();

  const OpenOcdConfig& config() const { return config_; }
  std::uint16_t tcl_port() const { return port_; }
  /// The started OpenOCD's pid; nullopt when attached or stopped.
  std::optional<pid_t> server_pid() const;
  /// How many times OpenOCD was started again after it died.
  unsigned restarts() const { return restarts_; }
  /// The last lines OpenOCD printed (started servers only).
  std::string log_tail(std::size_t lines = 15) const;

 private:
  class Connection;
  std::string transact(const std::string& text, std::chrono::milliseconds timeout, std::string_view what);
  std::string checked(std::string_view cmd, std::chrono::milliseconds timeout);
  void connect(std::chrono::milliseconds timeout);
  void start_server();
  void recover(const std::string& reason);
  void kill_server();

  std::shared_ptr<BenchIo> io_;
  OpenOcdConfig config_;
  Clock& clock_;
  std::mutex mutex_;
  std::shared_ptr<Connection> conn_;
  ChildProcess server_;
  std::uint16_t port_ = 0;
  std::filesystem::path log_file_;
  bool own_log_file_ = false;
  unsigned restarts_ = 0;
  bool use_mdw_ = false;
  bool stopped_ = false;
};

/// `"text"` with \ " $ [ ] escaped: a Tcl word that stands for `text` as is.
std::string tcl_quote(std::string_view text);
/// `format "%d %s" [catch {capture "CMD"} r] $r`: the output, prefixed by 0, or the error, prefixed by 1.
std::string wrap_capture(std::string_view cmd);
/// The words of a `read_memory` reply ("0x12 0x34 ..."). BenchError on anything else.
std::vector<std::uint32_t> parse_read_memory(std::string_view reply, std::size_t count);
/// The words of `mdw` output ("0x20000000: 12345678 9abcdef0 ..."). BenchError on anything else.
std::vector<std::uint32_t> parse_mdw(std::string_view output, std::size_t count);
/// A free TCP port on 127.0.0.1 (the kernel's choice of an ephemeral port).
std::uint16_t free_loopback_port();

}  // namespace otarig::drivers::bench
