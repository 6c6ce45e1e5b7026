// Board profile loader and its driver sections: any bytes give a profile
// whose device and driver sections (power, console, probe, link) bind as a
// run would bind them, or an InputError, nothing else. Binding is checked
// without building anything (validate_drivers: no process, port or server).
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>

#include "otarig/harness/bench.hpp"
#include "otarig/harness/composition.hpp"
#include "otarig/harness/profile.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = "/tmp/otarig-fuzz-profile-" + std::to_string(::getpid()) + ".yaml";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    const auto profile = otarig::harness::load_profile(path);
    otarig::harness::validate_drivers(profile, otarig::harness::builtin_registries().drivers);
  } catch (const otarig::InputError&) {
  }
  return 0;
}
