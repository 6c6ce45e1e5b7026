// The detection table without the CLI: runs detection_main (harness/src/detection.cpp),
// which `otarig detect` calls too.
//
//   otarig_detect [--scenario NAME] [--seed N] [--jobs N] [--out DIR] [--kind KIND] BOARD|FOLDER...
#include <fmt/format.h>

#include <iostream>
#include <string>

#include "otarig/drivers/errors.hpp"
#include "otarig/harness/detection.hpp"

int main(int argc, char** argv) {
  otarig::harness::DetectionOptions o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&] {
      if (i + 1 >= argc) throw otarig::InputError(a + ": needs a value");
      return std::string(argv[++i]);
    };
    try {
      if (a == "--scenario") o.scenario = value();
      else if (a == "--seed") o.seed = std::stoull(value());
      else if (a == "--jobs") o.jobs = static_cast<unsigned>(std::stoul(value()));
      else if (a == "--out") o.out = value();
      else if (a == "--kind") o.kinds.push_back(value());
      else o.boards.emplace_back(a);
    } catch (const std::exception& e) {
      std::cerr << "otarig_detect: " << e.what() << "\n";
      return 2;
    }
  }
  o.on_board = [](const std::string& line) { std::cerr << line << "\n"; };
  try {
    return otarig::harness::detection_main(o, std::cout);
  } catch (const otarig::InputError& e) {
    std::cerr << "otarig_detect: " << e.what() << "\n";
    return 2;
  } catch (const otarig::BenchError& e) {
    std::cerr << "otarig_detect: bench failure: " << e.what() << "\n";
    return 3;
  }
}
