#pragma once
// A RISC-V debug target for the JTAG TAP simulator: the Debug Transport
// Module (dtmcs, dmi) and a Debug Module with one hart, as the RISC-V External
// Debug Support spec 0.13 defines them, and a RAM behind the DM's system bus
// access. It holds what OpenOCD 0.12's `riscv` target needs to examine the
// hart, halt and resume it, reset it through ndmreset and read and write
// memory, and no more: the hart executes nothing (a running hart keeps its
// pc), there is no program buffer, abstract commands reach the GPRs and a few
// CSRs, and the system bus reaches only the RAM.
//
// Not thread-safe: JtagTapSim calls it under its lock.
#include <cstdint>
#include <map>
#include <span>
#include <vector>

namespace otarig::test {

class RiscvDebugModule {
 public:
  struct Options {
    std::uint32_t ram_base = 0x80000000;
    std::uint32_t ram_bytes = 64 * 1024;
    std::uint32_t reset_pc = 0x80000000;
  };
  /// What the hart went through, for tests to check what reached it.
  struct Record {
    bool halted = false;           ///< the hart is halted now
    bool in_reset = false;         ///< ndmreset or hartreset is held now
    bool havereset = false;        ///< dmstatus.havereset, not yet acknowledged
    unsigned halts = 0;            ///< times the hart entered debug mode
    unsigned resumes = 0;          ///< times it left it
    unsigned ndmresets = 0;        ///< ndmreset pulses (system resets)
    unsigned hartresets = 0;       ///< hartreset pulses
    unsigned dm_resets = 0;        ///< dmcontrol.dmactive cleared (the debugger resets the DM)
    unsigned sb_errors = 0;        ///< system bus accesses that set sberror
    std::uint32_t dpc = 0;         ///< where the hart halted or resumes
    std::uint32_t dcsr_cause = 0;  ///< dcsr.cause of the last halt (3: haltreq, 4: step)
  };

  static constexpr std::uint32_t kDtmcsInstruction = 0x10;
  static constexpr std::uint32_t kDmiInstruction = 0x11;
  static constexpr unsigned kAbits = 7;
  static constexpr unsigned kDmiLength = kAbits + 34;
  static constexpr std::uint32_t kMisa = 0x40001105;  ///< RV32IMAC

  explicit RiscvDebugModule(Options options);
  RiscvDebugModule() : RiscvDebugModule(Options{}) {}

  /// dtmcs as Capture-DR loads it: version 1 (spec 0.13), abits 7, idle 0.
  std::uint32_t dtmcs() const;
  /// Update-DR of dtmcs (dmireset and dmihardreset: nothing is ever stuck).
  void write_dtmcs(std::uint32_t value);
  /// dmi as Capture-DR loads it: the address and the data of the last
  /// operation, op status 0 (every operation completes at once).
  std::uint64_t dmi_capture() const;
  /// Update-DR of dmi: {address, data, op} carries out op (1 read, 2 write).
  void dmi_update(std::uint64_t bits);

  /// A DM register read or write as the DMI carries it out.
  std::uint32_t dmi_read(std::uint32_t address);
  void dmi_write(std::uint32_t address, std::uint32_t value);

  /// The board's reset line (SRST): while it is held the hart is in reset.
  void set_system_reset(bool asserted);

  /// The RAM, word by word (little-endian); std::out_of_range outside it.
  void write_memory(std::uint32_t address, std::span<const std::uint32_t> words);
  std::vector<std::uint32_t> read_memory(std::uint32_t address, std::size_t count) const;
  const Options& options() const { return options_; }
  Record record() const;

 private:
  enum class BusError : std::uint32_t { none = 0, bad_address = 2, misaligned = 3, bad_size = 4 };

  bool hart_selected() const { return hartsel_ == 0; }
  bool in_reset() const { return ndmreset_ || hartreset_ || system_reset_; }
  void update_reset(bool was_in_reset);
  void reset_dm();
  void write_dmcontrol(std::uint32_t value);
  std::uint32_t dmstatus() const;
  void enter_debug(std::uint32_t cause);
  void leave_debug();
  void reset_hart();
  void run_command(std::uint32_t command);
  // The abstract access-register command: a cmderr value, 0 on success.
  std::uint32_t access_register(std::uint32_t regno, bool write, unsigned size_log2);
  bool csr_read(std::uint32_t csr, std::uint32_t& value) const;
  bool csr_write(std::uint32_t csr, std::uint32_t value);
  void write_sbcs(std::uint32_t value);
  void sb_read();
  void sb_write();
  BusError bus_access(std::uint32_t address, unsigned size_log2, std::uint32_t* value, bool write);

  Options options_;
  std::vector<std::uint8_t> ram_;
  Record record_;  // the counters; record() adds the state

  // the DMI's last operation, for Capture-DR
  std::uint32_t dmi_address_ = 0;
  std::uint32_t dmi_data_ = 0;

  // the Debug Module
  bool dmactive_ = false;
  std::uint32_t hartsel_ = 0;
  bool haltreq_ = false;
  bool ndmreset_ = false;
  bool hartreset_ = false;
  bool system_reset_ = false;
  bool resumeack_ = false;
  std::uint32_t cmderr_ = 0;
  std::uint32_t data_[2] = {0, 0};
  std::uint32_t sbcs_ = 0;  // the writable fields and sberror/sbbusyerror
  std::uint32_t sbaddress_ = 0;
  std::uint32_t sbdata_ = 0;

  // the hart
  bool halted_ = false;
  bool havereset_ = false;
  std::uint32_t gpr_[32] = {};
  std::uint32_t pc_ = 0;
  std::uint32_t dpc_ = 0;
  std::uint32_t dcsr_ = 0;
  std::map<std::uint32_t, std::uint32_t> csrs_;  // the plain read/write machine CSRs
};

}  // namespace otarig::test
