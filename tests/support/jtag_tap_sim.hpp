#pragma once
// A JTAG TAP behind OpenOCD's remote_bitbang protocol, for tests of the
// OpenOCD probe without hardware. A small TCP server on 127.0.0.1: '0'..'7'
// drive TCK/TMS/TDI (bit 2/1/0), 'R' reads TDO, 'r'/'s'/'t'/'u' set TRST/SRST
// ('t' and 'u' assert TRST, which resets the TAP), 'B'/'b' blink, 'Q' quits.
// The TAP follows the IEEE 1149.1 state machine, has a 4-bit instruction
// register, an IDCODE register, BYPASS, and a 32-bit data register selected by
// `data_instruction` that scans read and write.
//
// Options::riscv_target() presents a RISC-V hart instead: IR length 5, IDCODE
// at 0x01, BYPASS at 0x1f, and the debug transport's dtmcs (0x10) and dmi
// (0x11) in front of RiscvDebugModule (jtag_tap_sim_riscv.hpp); SRST resets
// the hart.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "jtag_tap_sim_riscv.hpp"

namespace otarig::test {

class JtagTapSim {
 public:
  struct Options {
    std::uint32_t idcode = 0x4ba00477;
    std::uint32_t idcode_instruction = 0xe;
    std::uint32_t data_instruction = 0x8;
    std::uint32_t bypass_instruction = 0xf;
    std::uint32_t data_reset_value = 0x0badf00d;
    unsigned ir_length = 4;
    /// A RISC-V debug target behind dtmcs and dmi.
    std::optional<RiscvDebugModule::Options> riscv;

    /// The TAP of a RISC-V hart with its RAM at 0x80000000 (64 KiB).
    static Options riscv_target();
  };
  static constexpr std::uint32_t kRiscvIdcode = 0xdeadbeef;

  /// Listens on 127.0.0.1 at a port the kernel picks and serves one client
  /// at a time until destroyed.
  explicit JtagTapSim(Options options);
  JtagTapSim() : JtagTapSim(Options{}) {}
  ~JtagTapSim();
  JtagTapSim(const JtagTapSim&) = delete;
  JtagTapSim& operator=(const JtagTapSim&) = delete;

  std::uint16_t port() const { return port_; }
  std::uint32_t data_register() const;
  std::uint32_t instruction() const;
  /// Clients accepted so far.
  unsigned connections() const { return connections_; }
  /// TAP resets through TRST or five TMS=1 clocks.
  unsigned resets() const { return resets_; }
  /// Times the adapter asserted the system reset line (SRST), and whether it
  /// holds it now.
  unsigned srst_pulses() const { return srst_pulses_; }
  bool srst_asserted() const { return srst_; }

  /// The RISC-V target (Options::riscv): what its hart went through, and its
  /// RAM. std::logic_error on a TAP without one.
  RiscvDebugModule::Record riscv_record() const;
  void write_memory(std::uint32_t address, std::span<const std::uint32_t> words);
  std::vector<std::uint32_t> read_memory(std::uint32_t address, std::size_t count) const;

  /// Handles the protocol bytes of one client; returns the TDO replies.
  /// Public so a test can drive the TAP without a socket.
  std::string feed(std::string_view bytes, bool* quit = nullptr);

 private:
  enum class State {
    reset,
    idle,
    select_dr,
    capture_dr,
    shift_dr,
    exit1_dr,
    pause_dr,
    exit2_dr,
    update_dr,
    select_ir,
    capture_ir,
    shift_ir,
    exit1_ir,
    pause_ir,
    exit2_ir,
    update_ir
  };
  static State next(State s, bool tms);
  void clock(bool tms, bool tdi);
  void enter(State s);
  bool tdo() const;
  void serve();

  Options options_;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  std::uint16_t port_ = 0;
  std::thread thread_;

  mutable std::mutex mutex_;
  State state_ = State::reset;
  bool tck_ = false;
  std::uint32_t ir_ = 0;
  std::uint32_t ir_shift_ = 0;
  std::uint64_t dr_shift_ = 0;
  unsigned dr_length_ = 1;
  std::uint32_t data_ = 0;
  std::unique_ptr<RiscvDebugModule> riscv_;
  std::atomic<unsigned> connections_{0};
  std::atomic<unsigned> resets_{0};
  std::atomic<unsigned> srst_pulses_{0};
  std::atomic<bool> srst_{false};
};

}  // namespace otarig::test
