// Loads a board profile and runs one scenario through the installed library.
#include <cstdio>

#include "otarig/harness/campaign.hpp"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: consumer BOARD SCENARIO OUT\n");
    return 2;
  }
  otarig::drivers::DriverRegistry registry;
  otarig::drivers::register_all_drivers(registry);
  otarig::harness::CampaignOptions options;
  options.board = argv[1];
  options.scenario = argv[2];
  options.out = argv[3];
  auto result = otarig::harness::run_campaign(options, registry);
  std::printf("%s: %llu trials, %llu findings\n", otarig::harness::version_string(),
              static_cast<unsigned long long>(result.trials), static_cast<unsigned long long>(result.findings));
  return result.exit_code();
}
