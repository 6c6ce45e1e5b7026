// otarig-jtag-tap-sim: the remote_bitbang TAP simulator as a program, for
// trying the OpenOCD probe by hand:
//   otarig-jtag-tap-sim &   # prints the port
//   openocd -c 'adapter driver remote_bitbang' -c 'remote_bitbang host 127.0.0.1'
//           -c 'remote_bitbang port PORT' -c 'transport select jtag'
//           -c 'jtag newtap sim cpu -irlen 4 -expected-id 0x4ba00477' -c init
// (one command line). It stops on SIGINT or SIGTERM.
#include <signal.h>
#include <unistd.h>

#include <cstdio>

#include "jtag_tap_sim.hpp"

int main() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  otarig::test::JtagTapSim sim;
  std::printf("%u\n", static_cast<unsigned>(sim.port()));
  std::fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  return 0;
}
