// The _otarig extension module; the otarig package re-exports it.
#include <pybind11/stl/filesystem.h>

#include <algorithm>
#include <set>

#include "common.hpp"
#include "otarig/harness/cli.hpp"
#include "otarig/harness/rng.hpp"

namespace otarig::python {
namespace {

std::vector<std::filesystem::path> list_boards() {
  std::vector<std::filesystem::path> out;
  std::set<std::string> seen;
  for (const auto& d : harness::data_dirs()) {
    auto dir = d / "boards";
    if (!std::filesystem::is_directory(dir)) continue;
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
      if (e.path().extension() == ".yaml") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files)
      if (seen.insert(std::filesystem::relative(f, d).string()).second) out.push_back(f);
  }
  return out;
}

std::vector<std::string> list_scenarios() {
  std::vector<std::string> out;
  for (const auto& f : harness::catalog_scenarios()) out.push_back(f.stem().string());
  return out;
}

int cli(const std::vector<std::string>& args) {
  std::vector<std::string> argv_s{"otarig"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  return harness::cli_main(static_cast<int>(argv_s.size()), argv.data());
}

}  // namespace
}  // namespace otarig::python

PYBIND11_MODULE(_otarig, m) {
  namespace py = pybind11;
  using namespace otarig::python;
  m.doc() =
      "otarig's C++ core: benches, campaigns, plans, trials and drivers. Import the\n"
      "`otarig` package, which re-exports everything here.";
  m.attr("__version__") = otarig::harness::version_string();
  m.attr("git_revision") = otarig::harness::git_revision();

  register_errors(m);
  register_data(m);
  register_bench(m);
  register_network(m);

  m.def("boards", &list_boards,
        "Board profiles in the data directories ($OTARIG_DATA_DIR, the source tree, share/otarig).");
  m.def("scenarios", &list_scenarios, "Names of the scenarios in the catalog.");
  m.def("data_dirs", &otarig::harness::data_dirs, "The directories searched for boards/ and scenarios/.");
  m.def("resolve_board", &otarig::harness::resolve_board, py::arg("name_or_path"),
        "The profile file a board name or path stands for (InputError when there is none).");
  m.def(
      "load_profile",
      [](const std::string& name_or_path) {
        py::gil_scoped_release nogil;
        return std::make_shared<otarig::harness::BoardProfile>(
            otarig::harness::load_profile(otarig::harness::resolve_board(name_or_path)));
      },
      py::arg("board"), "Loads and checks a board profile; InputError names file and line.");
  m.def(
      "trial_seed", [](std::uint64_t seed, std::uint64_t index) { return otarig::harness::trial_seed(seed, index); },
      py::arg("seed"), py::arg("index"), "The seed of trial `index` of a campaign seeded with `seed`.");
  m.def("cli", &cli, py::arg("args"), py::call_guard<py::gil_scoped_release>(),
        "Runs the otarig command line with `args` (without the program name) and returns\n"
        "its exit status. `python -m otarig ...` calls this.");
}
