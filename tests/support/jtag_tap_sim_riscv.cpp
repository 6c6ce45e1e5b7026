#include "jtag_tap_sim_riscv.hpp"

#include <cstdio>
#include <stdexcept>
#include <string>

namespace otarig::test {
namespace {

// Debug Module register addresses (spec 0.13, table 3.8).
enum : std::uint32_t {
  kData0 = 0x04,
  kData1 = 0x05,
  kDmcontrol = 0x10,
  kDmstatus = 0x11,
  kHartinfo = 0x12,
  kHaltsum1 = 0x13,
  kAbstractcs = 0x16,
  kCommand = 0x17,
  kAuthdata = 0x30,
  kHaltsum2 = 0x34,
  kHaltsum3 = 0x35,
  kSbcs = 0x38,
  kSbaddress0 = 0x39,
  kSbdata0 = 0x3c,
  kHaltsum0 = 0x40,
};

// dmcontrol
constexpr std::uint32_t kDmactive = 1u << 0;
constexpr std::uint32_t kNdmreset = 1u << 1;
constexpr std::uint32_t kAckhavereset = 1u << 28;
constexpr std::uint32_t kHartreset = 1u << 29;
constexpr std::uint32_t kResumereq = 1u << 30;
constexpr std::uint32_t kHaltreq = 1u << 31;
// One hart: hartsel has a single bit, so OpenOCD finds hartsellen 1 and
// hart 1 nonexistent.
constexpr std::uint32_t kHartselMask = 0x1;

// dmstatus
constexpr std::uint32_t kDmstatusVersion = 2;  // spec 0.13
constexpr std::uint32_t kAuthenticated = 1u << 7;
constexpr std::uint32_t kAnyhalted = 1u << 8;
constexpr std::uint32_t kAnyrunning = 1u << 10;
constexpr std::uint32_t kAnyunavail = 1u << 12;
constexpr std::uint32_t kAnynonexistent = 1u << 14;
constexpr std::uint32_t kAnyresumeack = 1u << 16;
constexpr std::uint32_t kAnyhavereset = 1u << 18;
// Each all* bit sits one above its any* bit; with one hart they agree.
constexpr std::uint32_t both(std::uint32_t any) { return any | (any << 1); }

// abstractcs
constexpr std::uint32_t kDatacount = 2;
constexpr unsigned kCmderrShift = 8;
enum : std::uint32_t {
  kCmderrNone = 0,
  kCmderrNotSupported = 2,
  kCmderrException = 3,
  kCmderrHaltResume = 4
};

// command, cmdtype 0 (access register)
constexpr unsigned kCmdtypeShift = 24;
constexpr unsigned kAarsizeShift = 20;
constexpr std::uint32_t kPostexec = 1u << 18;
constexpr std::uint32_t kTransfer = 1u << 17;
constexpr std::uint32_t kWrite = 1u << 16;
constexpr std::uint32_t kGpr0 = 0x1000;

// sbcs (sbversion 1)
constexpr std::uint32_t kSbversion = 1u << 29;
constexpr std::uint32_t kSbbusyerror = 1u << 22;
constexpr std::uint32_t kSbreadonaddr = 1u << 20;
constexpr unsigned kSbaccessShift = 17;
constexpr std::uint32_t kSbaccessMask = 0x7u << kSbaccessShift;
constexpr std::uint32_t kSbautoincrement = 1u << 16;
constexpr std::uint32_t kSbreadondata = 1u << 15;
constexpr unsigned kSberrorShift = 12;
constexpr std::uint32_t kSberrorMask = 0x7u << kSberrorShift;
constexpr std::uint32_t kSbasize = 32u << 5;
constexpr std::uint32_t kSbaccess8_16_32 = 0x7;
constexpr std::uint32_t kSbcsWritable = kSbreadonaddr | kSbaccessMask | kSbautoincrement | kSbreadondata;

// CSRs
enum : std::uint32_t {
  kMstatus = 0x300,
  kMisaCsr = 0x301,
  kMie = 0x304,
  kMtvec = 0x305,
  kMscratch = 0x340,
  kMepc = 0x341,
  kMcause = 0x342,
  kMtval = 0x343,
  kMip = 0x344,
  kDcsr = 0x7b0,
  kDpc = 0x7b1,
  kDscratch0 = 0x7b2,
  kDscratch1 = 0x7b3,
  kMvendorid = 0xf11,
  kMarchid = 0xf12,
  kMimpid = 0xf13,
  kMhartid = 0xf14,
};
// dcsr: xdebugver 4 (external debug support as the spec describes it), prv M.
constexpr std::uint32_t kDcsrReset = (4u << 28) | 0x3;
constexpr unsigned kDcsrCauseShift = 6;
constexpr std::uint32_t kDcsrCauseMask = 0x7u << kDcsrCauseShift;
constexpr std::uint32_t kDcsrStep = 1u << 2;
// ebreakm, stepie, stopcount, stoptime, mprven, step; an M-only hart has no
// ebreaks/ebreaku and stays in prv 3.
constexpr std::uint32_t kDcsrWritable =
    (1u << 15) | (1u << 11) | (1u << 10) | (1u << 9) | (1u << 4) | kDcsrStep;
constexpr std::uint32_t kCauseHaltreq = 3;
constexpr std::uint32_t kCauseStep = 4;

std::out_of_range outside_ram(std::uint64_t address) {
  char text[64];
  std::snprintf(text, sizeof text, "RAM has no word at 0x%llx", static_cast<unsigned long long>(address));
  return std::out_of_range(text);
}

}  // namespace

RiscvDebugModule::RiscvDebugModule(Options options) : options_(options), ram_(options.ram_bytes, 0) {
  reset_dm();
  reset_hart();  // a board comes up running from its reset vector
}

// ---- the DTM ----

std::uint32_t RiscvDebugModule::dtmcs() const {
  return 1u /* version 0.13 */ | (kAbits << 4) /* dmistat 0, idle 0 */;
}

void RiscvDebugModule::write_dtmcs(std::uint32_t) {}

std::uint64_t RiscvDebugModule::dmi_capture() const {
  return (static_cast<std::uint64_t>(dmi_address_) << 34) | (static_cast<std::uint64_t>(dmi_data_) << 2);
}

void RiscvDebugModule::dmi_update(std::uint64_t bits) {
  const auto op = static_cast<unsigned>(bits & 0x3);
  const auto data = static_cast<std::uint32_t>(bits >> 2);
  const auto address = static_cast<std::uint32_t>(bits >> 34) & ((1u << kAbits) - 1);
  if (op == 1) {
    dmi_address_ = address;
    dmi_data_ = dmi_read(address);
  } else if (op == 2) {
    dmi_address_ = address;
    dmi_write(address, data);
  }
  // op 0 (nop) and 3 (reserved) leave the last result to be captured again.
}

// ---- the Debug Module ----

void RiscvDebugModule::reset_dm() {
  dmactive_ = false;
  hartsel_ = 0;
  haltreq_ = false;
  resumeack_ = false;
  cmderr_ = kCmderrNone;
  data_[0] = data_[1] = 0;
  sbcs_ = 2u << kSbaccessShift;  // sbaccess resets to 32 bits
  sbaddress_ = 0;
  sbdata_ = 0;
  if (ndmreset_ || hartreset_) {
    // The DM's own reset ends the resets it held.
    ndmreset_ = hartreset_ = false;
    if (!system_reset_) reset_hart();
  }
}

void RiscvDebugModule::set_system_reset(bool asserted) {
  const bool was_in_reset = in_reset();
  system_reset_ = asserted;
  update_reset(was_in_reset);
}

void RiscvDebugModule::update_reset(bool was_in_reset) {
  if (in_reset() && !was_in_reset) {
    halted_ = false;
  } else if (!in_reset() && was_in_reset) {
    reset_hart();
    if (haltreq_) enter_debug(kCauseHaltreq);
  }
}

void RiscvDebugModule::write_dmcontrol(std::uint32_t value) {
  if ((value & kDmactive) == 0) {
    if (dmactive_) ++record_.dm_resets;
    reset_dm();
    return;
  }
  dmactive_ = true;
  const std::uint32_t hartsel = ((value >> 16) & 0x3ff) | (((value >> 6) & 0x3ff) << 10);
  hartsel_ = hartsel & kHartselMask;
  const bool selected = hartsel_ == 0;

  const bool was_in_reset = in_reset();
  const bool ndmreset = (value & kNdmreset) != 0;
  if (ndmreset && !ndmreset_) ++record_.ndmresets;
  ndmreset_ = ndmreset;
  if (selected) {
    const bool hartreset = (value & kHartreset) != 0;
    if (hartreset && !hartreset_) ++record_.hartresets;
    hartreset_ = hartreset;
    haltreq_ = (value & kHaltreq) != 0;
    if ((value & kAckhavereset) != 0) havereset_ = false;
  }
  update_reset(was_in_reset);
  if (!selected) return;

  if (haltreq_) {
    if (!in_reset() && !halted_) enter_debug(kCauseHaltreq);
  } else if ((value & kResumereq) != 0) {
    resumeack_ = false;
    if (halted_ && !in_reset()) leave_debug();
  }
}

std::uint32_t RiscvDebugModule::dmstatus() const {
  std::uint32_t s = kDmstatusVersion | kAuthenticated;
  if (!hart_selected()) return s | both(kAnynonexistent);
  if (in_reset()) {
    s |= both(kAnyunavail);
  } else {
    s |= both(halted_ ? kAnyhalted : kAnyrunning);
  }
  if (resumeack_) s |= both(kAnyresumeack);
  if (havereset_) s |= both(kAnyhavereset);
  return s;
}

std::uint32_t RiscvDebugModule::dmi_read(std::uint32_t address) {
  switch (address) {
    case kData0:
    case kData1:
      return data_[address - kData0];
    case kDmcontrol: {
      if (!dmactive_) return 0;
      std::uint32_t v = kDmactive | ((hartsel_ & 0x3ff) << 16) | (((hartsel_ >> 10) & 0x3ff) << 6);
      if (ndmreset_) v |= kNdmreset;
      if (hartreset_) v |= kHartreset;
      return v;  // hasel reads 0: no hart array mask
    }
    case kDmstatus:
      return dmstatus();
    case kHartinfo:
      return 0;  // no data registers shadowed in memory, no dscratch for the debugger
    case kAbstractcs:
      return kDatacount | (cmderr_ << kCmderrShift);  // busy 0, progbufsize 0
    case kHaltsum0:
    case kHaltsum1:
    case kHaltsum2:
    case kHaltsum3:
      return halted_ && !in_reset() ? 1 : 0;  // hart 0 is the first of every group
    case kSbcs:
      return kSbversion | sbcs_ | kSbasize | kSbaccess8_16_32;
    case kSbaddress0:
      return sbaddress_;
    case kSbdata0: {
      const std::uint32_t value = sbdata_;
      if ((sbcs_ & (kSberrorMask | kSbbusyerror)) == 0 && (sbcs_ & kSbreadondata) != 0) sb_read();
      return value;
    }
    case kAuthdata:  // authenticated from the start: nothing to exchange
    default:
      // command and abstractauto read 0, as do the registers this DM lacks
      // (data2-11, progbuf, confstrptr, nextdm, hawindow, sbaddress1-3, sbdata1-3).
      return 0;
  }
}

void RiscvDebugModule::dmi_write(std::uint32_t address, std::uint32_t value) {
  if (address == kDmcontrol) {
    write_dmcontrol(value);
    return;
  }
  if (!dmactive_) return;  // the rest of the DM is held in reset
  switch (address) {
    case kData0:
    case kData1:
      data_[address - kData0] = value;
      break;
    case kAbstractcs:
      cmderr_ &= ~((value >> kCmderrShift) & 0x7);  // W1C
      break;
    case kCommand:
      if (cmderr_ == kCmderrNone) run_command(value);  // spec: ignored while cmderr is set
      break;
    case kSbcs:
      write_sbcs(value);
      break;
    case kSbaddress0:
      sbaddress_ = value;
      if ((sbcs_ & (kSberrorMask | kSbbusyerror)) == 0 && (sbcs_ & kSbreadonaddr) != 0) sb_read();
      break;
    case kSbdata0:
      sbdata_ = value;
      if ((sbcs_ & (kSberrorMask | kSbbusyerror)) == 0) sb_write();
      break;
    default:
      break;  // abstractauto, authdata, progbuf, hawindow...: nothing to keep
  }
}

// ---- the hart ----

void RiscvDebugModule::reset_hart() {
  for (auto& r : gpr_) r = 0;
  pc_ = options_.reset_pc;
  dpc_ = 0;
  dcsr_ = kDcsrReset;
  csrs_ = {{kMstatus, 0}, {kMie, 0},   {kMtvec, 0}, {kMscratch, 0},  {kMepc, 0},
           {kMcause, 0},  {kMtval, 0}, {kMip, 0},   {kDscratch0, 0}, {kDscratch1, 0}};
  halted_ = false;
  havereset_ = true;
}

void RiscvDebugModule::enter_debug(std::uint32_t cause) {
  dpc_ = pc_;
  dcsr_ = (dcsr_ & ~kDcsrCauseMask) | (cause << kDcsrCauseShift);
  halted_ = true;
  ++record_.halts;
}

void RiscvDebugModule::leave_debug() {
  pc_ = dpc_;
  halted_ = false;
  resumeack_ = true;
  ++record_.resumes;
  // The hart executes nothing: a single step ends where it began.
  if ((dcsr_ & kDcsrStep) != 0) enter_debug(kCauseStep);
}

void RiscvDebugModule::run_command(std::uint32_t command) {
  if (!halted_ || in_reset()) {
    cmderr_ = kCmderrHaltResume;
    return;
  }
  // Only access register, without postexec: there is no program buffer.
  if ((command >> kCmdtypeShift) != 0 || (command & kPostexec) != 0) {
    cmderr_ = kCmderrNotSupported;
    return;
  }
  if ((command & kTransfer) == 0) return;
  cmderr_ = access_register(command & 0xffff, (command & kWrite) != 0, (command >> kAarsizeShift) & 0x7);
}

std::uint32_t RiscvDebugModule::access_register(std::uint32_t regno, bool write, unsigned size_log2) {
  // RV32: registers are 32 bits; wider accesses fail (that is how OpenOCD
  // learns XLEN), narrower reads must work.
  if (size_log2 > 2) return kCmderrNotSupported;
  const std::uint32_t mask = size_log2 == 2 ? 0xffffffffu : (1u << (8u << size_log2)) - 1;
  if (regno >= kGpr0 && regno < kGpr0 + 32) {
    const auto index = regno - kGpr0;
    if (write) {
      if (index != 0) gpr_[index] = data_[0] & mask;
    } else {
      data_[0] = gpr_[index] & mask;
    }
    return kCmderrNone;
  }
  if (regno < 0x1000) {
    // A CSR the hart lacks raises an exception, as the instruction would;
    // cmderr 2 would make OpenOCD give up on abstract CSR access altogether.
    if (write) return csr_write(regno, data_[0] & mask) ? kCmderrNone : kCmderrException;
    std::uint32_t value = 0;
    if (!csr_read(regno, value)) return kCmderrException;
    data_[0] = value & mask;
    return kCmderrNone;
  }
  return kCmderrNotSupported;  // FPRs, custom registers
}

bool RiscvDebugModule::csr_read(std::uint32_t csr, std::uint32_t& value) const {
  switch (csr) {
    case kMisaCsr:
      value = kMisa;
      return true;
    case kDcsr:
      value = dcsr_;
      return true;
    case kDpc:
      value = dpc_;
      return true;
    case kMvendorid:
    case kMarchid:
    case kMimpid:
    case kMhartid:
      value = 0;
      return true;
    default:
      break;
  }
  auto it = csrs_.find(csr);
  if (it == csrs_.end()) return false;
  value = it->second;
  return true;
}

bool RiscvDebugModule::csr_write(std::uint32_t csr, std::uint32_t value) {
  switch (csr) {
    case kMisaCsr:
      return true;  // WARL: the extensions stay as they are
    case kDcsr:
      dcsr_ = (dcsr_ & ~kDcsrWritable) | (value & kDcsrWritable);
      return true;
    case kDpc:
      dpc_ = value & ~1u;
      return true;
    case kMvendorid:
    case kMarchid:
    case kMimpid:
    case kMhartid:
      return false;  // read-only
    default:
      break;
  }
  auto it = csrs_.find(csr);
  if (it == csrs_.end()) return false;
  it->second = value;
  return true;
}

// ---- system bus access ----

void RiscvDebugModule::write_sbcs(std::uint32_t value) {
  std::uint32_t errors = sbcs_ & (kSberrorMask | kSbbusyerror);
  errors &= ~(value & (kSberrorMask | kSbbusyerror));  // W1C
  sbcs_ = (value & kSbcsWritable) | errors;
}

void RiscvDebugModule::sb_read() {
  const unsigned size_log2 = (sbcs_ & kSbaccessMask) >> kSbaccessShift;
  if (auto error = bus_access(sbaddress_, size_log2, &sbdata_, false); error != BusError::none) {
    sbcs_ |= static_cast<std::uint32_t>(error) << kSberrorShift;
    ++record_.sb_errors;
  } else if ((sbcs_ & kSbautoincrement) != 0) {
    sbaddress_ += 1u << size_log2;
  }
}

void RiscvDebugModule::sb_write() {
  const unsigned size_log2 = (sbcs_ & kSbaccessMask) >> kSbaccessShift;
  if (auto error = bus_access(sbaddress_, size_log2, &sbdata_, true); error != BusError::none) {
    sbcs_ |= static_cast<std::uint32_t>(error) << kSberrorShift;
    ++record_.sb_errors;
  } else if ((sbcs_ & kSbautoincrement) != 0) {
    sbaddress_ += 1u << size_log2;
  }
}

RiscvDebugModule::BusError RiscvDebugModule::bus_access(std::uint32_t address, unsigned size_log2,
                                                        std::uint32_t* value, bool write) {
  if (size_log2 > 2) return BusError::bad_size;
  const std::uint32_t bytes = 1u << size_log2;
  if ((address & (bytes - 1)) != 0) return BusError::misaligned;
  const std::uint64_t offset = static_cast<std::uint64_t>(address) - options_.ram_base;
  if (address < options_.ram_base || offset + bytes > ram_.size()) return BusError::bad_address;
  if (write) {
    for (std::uint32_t i = 0; i < bytes; ++i) ram_[offset + i] = static_cast<std::uint8_t>(*value >> (8 * i));
  } else {
    std::uint32_t v = 0;
    for (std::uint32_t i = 0; i < bytes; ++i) v |= static_cast<std::uint32_t>(ram_[offset + i]) << (8 * i);
    *value = v;
  }
  return BusError::none;
}

// ---- the test's view ----

void RiscvDebugModule::write_memory(std::uint32_t address, std::span<const std::uint32_t> words) {
  for (std::size_t i = 0; i < words.size(); ++i) {
    std::uint32_t word = words[i];
    if (bus_access(address + static_cast<std::uint32_t>(4 * i), 2, &word, true) != BusError::none)
      throw outside_ram(address + 4 * i);
  }
}

std::vector<std::uint32_t> RiscvDebugModule::read_memory(std::uint32_t address, std::size_t count) const {
  std::vector<std::uint32_t> out;
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint64_t offset = static_cast<std::uint64_t>(address) + 4 * i - options_.ram_base;
    if (address < options_.ram_base || offset + 4 > ram_.size() || address % 4 != 0)
      throw outside_ram(address + 4 * i);
    std::uint32_t v = 0;
    for (unsigned b = 0; b < 4; ++b) v |= static_cast<std::uint32_t>(ram_[offset + b]) << (8 * b);
    out.push_back(v);
  }
  return out;
}

RiscvDebugModule::Record RiscvDebugModule::record() const {
  Record r = record_;
  r.halted = halted_ && !in_reset();
  r.in_reset = in_reset();
  r.havereset = havereset_;
  r.dpc = dpc_;
  r.dcsr_cause = (dcsr_ & kDcsrCauseMask) >> kDcsrCauseShift;
  return r;
}

}  // namespace otarig::test
