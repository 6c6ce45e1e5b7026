// Writes the sample evidence bundle of the reports tests into a folder (for
// the browser test and for a look at report.html): otarig_sample_bundle OUT
#include <cstdio>
#include <exception>

#include "sample_bundle.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT\n", argv[0]);
    return 2;
  }
  try {
    otarig::reports::testing::write_sample_bundle(argv[1]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", argv[1], e.what());
    return 1;
  }
  std::printf("%s\n", argv[1]);
  return 0;
}
