#include "jtag_tap_sim.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>
#include <string>
#include <system_error>

namespace otarig::test {

JtagTapSim::Options JtagTapSim::Options::riscv_target() {
  Options o;
  o.idcode = kRiscvIdcode;
  o.idcode_instruction = 0x01;
  o.bypass_instruction = 0x1f;
  o.ir_length = 5;
  o.riscv = RiscvDebugModule::Options{};
  return o;
}

JtagTapSim::JtagTapSim(Options options) : options_(options) {
  if (options_.ir_length < 2 || options_.ir_length > 32)
    throw std::invalid_argument("JtagTapSim: IR length must be 2..32");
  ir_ = options_.idcode_instruction;
  data_ = options_.data_reset_value;
  if (options_.riscv) riscv_ = std::make_unique<RiscvDebugModule>(*options_.riscv);
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw std::system_error(errno, std::generic_category(), "socket");
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 4) != 0) {
    int err = errno;
    ::close(listen_fd_);
    throw std::system_error(err, std::generic_category(), "bind/listen 127.0.0.1:0");
  }
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  if (::pipe2(stop_pipe_, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe");
  thread_ = std::thread([this] { serve(); });
}

JtagTapSim::~JtagTapSim() {
  char byte = 'q';
  [[maybe_unused]] auto n = ::write(stop_pipe_[1], &byte, 1);
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
  ::close(stop_pipe_[0]);
  ::close(stop_pipe_[1]);
}

std::uint32_t JtagTapSim::data_register() const {
  std::lock_guard lock(mutex_);
  return data_;
}

std::uint32_t JtagTapSim::instruction() const {
  std::lock_guard lock(mutex_);
  return ir_;
}

RiscvDebugModule::Record JtagTapSim::riscv_record() const {
  std::lock_guard lock(mutex_);
  if (!riscv_) throw std::logic_error("JtagTapSim: no RISC-V target (Options::riscv)");
  return riscv_->record();
}

void JtagTapSim::write_memory(std::uint32_t address, std::span<const std::uint32_t> words) {
  std::lock_guard lock(mutex_);
  if (!riscv_) throw std::logic_error("JtagTapSim: no RISC-V target (Options::riscv)");
  riscv_->write_memory(address, words);
}

std::vector<std::uint32_t> JtagTapSim::read_memory(std::uint32_t address, std::size_t count) const {
  std::lock_guard lock(mutex_);
  if (!riscv_) throw std::logic_error("JtagTapSim: no RISC-V target (Options::riscv)");
  return riscv_->read_memory(address, count);
}

JtagTapSim::State JtagTapSim::next(State s, bool tms) {
  switch (s) {
    case State::reset:
      return tms ? State::reset : State::idle;
    case State::idle:
      return tms ? State::select_dr : State::idle;
    case State::select_dr:
      return tms ? State::select_ir : State::capture_dr;
    case State::capture_dr:
      return tms ? State::exit1_dr : State::shift_dr;
    case State::shift_dr:
      return tms ? State::exit1_dr : State::shift_dr;
    case State::exit1_dr:
      return tms ? State::update_dr : State::pause_dr;
    case State::pause_dr:
      return tms ? State::exit2_dr : State::pause_dr;
    case State::exit2_dr:
      return tms ? State::update_dr : State::shift_dr;
    case State::update_dr:
      return tms ? State::select_dr : State::idle;
    case State::select_ir:
      return tms ? State::reset : State::capture_ir;
    case State::capture_ir:
      return tms ? State::exit1_ir : State::shift_ir;
    case State::shift_ir:
      return tms ? State::exit1_ir : State::shift_ir;
    case State::exit1_ir:
      return tms ? State::update_ir : State::pause_ir;
    case State::pause_ir:
      return tms ? State::exit2_ir : State::pause_ir;
    case State::exit2_ir:
      return tms ? State::update_ir : State::shift_ir;
    case State::update_ir:
      return tms ? State::select_dr : State::idle;
  }
  return State::reset;
}

// The register actions of a state happen at the rising edge that enters it;
// shifting happens at every rising edge spent in a shift state.
void JtagTapSim::enter(State s) {
  if (s == State::reset && state_ != State::reset) ++resets_;
  state_ = s;
  switch (s) {
    case State::reset:
      ir_ = options_.idcode_instruction;
      break;
    case State::capture_ir:
      ir_shift_ = 0x1;
      break;  // IEEE 1149.1: the two low bits capture 01
    case State::update_ir:
      ir_ = ir_shift_;
      break;
    case State::capture_dr:
      if (ir_ == options_.idcode_instruction) {
        dr_shift_ = options_.idcode;
        dr_length_ = 32;
      } else if (ir_ == options_.data_instruction) {
        dr_shift_ = data_;
        dr_length_ = 32;
      } else if (riscv_ && ir_ == RiscvDebugModule::kDtmcsInstruction) {
        dr_shift_ = riscv_->dtmcs();
        dr_length_ = 32;
      } else if (riscv_ && ir_ == RiscvDebugModule::kDmiInstruction) {
        dr_shift_ = riscv_->dmi_capture();
        dr_length_ = RiscvDebugModule::kDmiLength;
      } else {
        dr_shift_ = 0;  // BYPASS and every unknown instruction
        dr_length_ = 1;
      }
      break;
    case State::update_dr:
      if (ir_ == options_.data_instruction) {
        data_ = static_cast<std::uint32_t>(dr_shift_);
      } else if (riscv_ && ir_ == RiscvDebugModule::kDtmcsInstruction) {
        riscv_->write_dtmcs(static_cast<std::uint32_t>(dr_shift_));
      } else if (riscv_ && ir_ == RiscvDebugModule::kDmiInstruction) {
        riscv_->dmi_update(dr_shift_);
      }
      break;
    default:
      break;
  }
}

void JtagTapSim::clock(bool tms, bool tdi) {
  if (state_ == State::shift_dr) {
    dr_shift_ = (dr_shift_ >> 1) | (static_cast<std::uint64_t>(tdi) << (dr_length_ - 1));
  } else if (state_ == State::shift_ir) {
    ir_shift_ = (ir_shift_ >> 1) | (static_cast<std::uint32_t>(tdi) << (options_.ir_length - 1));
  }
  enter(next(state_, tms));
}

bool JtagTapSim::tdo() const {
  if (state_ == State::shift_dr) return (dr_shift_ & 1u) != 0;
  if (state_ == State::shift_ir) return (ir_shift_ & 1u) != 0;
  return false;
}

std::string JtagTapSim::feed(std::string_view bytes, bool* quit) {
  std::lock_guard lock(mutex_);
  std::string replies;
  for (char c : bytes) {
    if (c >= '0' && c <= '7') {
      int v = c - '0';
      bool tck = (v & 4) != 0, tms = (v & 2) != 0, tdi = (v & 1) != 0;
      if (tck && !tck_) clock(tms, tdi);
      tck_ = tck;
    } else if (c == 'R') {
      replies.push_back(tdo() ? '1' : '0');
    } else if (c >= 'r' && c <= 'u') {
      bool trst = ((c - 'r') & 2) != 0;
      bool srst = ((c - 'r') & 1) != 0;
      if (trst) enter(State::reset);
      if (srst && !srst_) ++srst_pulses_;
      srst_ = srst;
      if (riscv_) riscv_->set_system_reset(srst);
    } else if (c == 'Q') {
      if (quit != nullptr) *quit = true;
      break;
    }
    // 'B'/'b' (blink) and anything newer in the protocol: nothing to do.
  }
  return replies;
}

void JtagTapSim::serve() {
  for (;;) {
    pollfd fds[2] = {{stop_pipe_[0], POLLIN, 0}, {listen_fd_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[0].revents != 0) return;
    int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    ++connections_;
    int one = 1;
    ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    {
      std::lock_guard lock(mutex_);
      tck_ = false;
    }
    char buffer[4096];
    bool quit = false;
    while (!quit) {
      pollfd cfds[2] = {{stop_pipe_[0], POLLIN, 0}, {client, POLLIN, 0}};
      if (::poll(cfds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      if (cfds[0].revents != 0) {
        ::close(client);
        return;
      }
      ssize_t n = ::recv(client, buffer, sizeof buffer, 0);
      if (n <= 0) break;
      auto replies = feed(std::string_view(buffer, static_cast<std::size_t>(n)), &quit);
      std::size_t sent = 0;
      while (sent < replies.size()) {
        ssize_t w = ::send(client, replies.data() + sent, replies.size() - sent, MSG_NOSIGNAL);
        if (w <= 0) {
          quit = true;
          break;
        }
        sent += static_cast<std::size_t>(w);
      }
    }
    ::close(client);
  }
}

}  // namespace otarig::test
