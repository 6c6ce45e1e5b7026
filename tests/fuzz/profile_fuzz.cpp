// Board profile loader: any bytes give a profile or an InputError, nothing else.
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>

#include "otarig/harness/profile.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = "/tmp/otarig-fuzz-profile-" + std::to_string(::getpid()) + ".yaml";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    (void)otarig::harness::load_profile(path);
  } catch (const otarig::InputError&) {
  }
  return 0;
}
