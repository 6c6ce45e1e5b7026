// otarig-jtag-tap-sim: the remote_bitbang TAP simulator as a program, for
// trying the OpenOCD probe by hand:
//   otarig-jtag-tap-sim &   # prints the port
//   openocd -c 'adapter driver remote_bitbang' -c 'remote_bitbang host 127.0.0.1'
//           -c 'remote_bitbang port PORT' -c 'transport select jtag'
//           -c 'jtag newtap sim cpu -irlen 4 -expected-id 0x4ba00477' -c init
// (one command line). With --riscv it presents a RISC-V hart with 64 KiB of
// RAM at 0x80000000 instead:
//           -c 'jtag newtap riscv cpu -irlen 5 -expected-id 0xdeadbeef'
//           -c 'target create riscv.cpu riscv -chain-position riscv.cpu'
//           -c 'riscv set_mem_access sysbus' -c init
// It stops on SIGINT or SIGTERM.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "jtag_tap_sim.hpp"

int main(int argc, char** argv) {
  otarig::test::JtagTapSim::Options options;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--riscv") == 0) {
      options = otarig::test::JtagTapSim::Options::riscv_target();
    } else {
      std::fprintf(stderr, "usage: %s [--riscv]\n", argv[0]);
      return 2;
    }
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  otarig::test::JtagTapSim sim(options);
  std::printf("%u\n", static_cast<unsigned>(sim.port()));
  std::fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  return 0;
}
