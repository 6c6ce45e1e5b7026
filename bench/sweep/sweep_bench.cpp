// Power-cut sweep of a full 1 MiB update on a virtual board: cut points N,
// wall time, trials per second, and the time per trial as a multiple of one
// SHA-256 over 1 MiB measured in the same process. Side by side: the same
// sweep replaying the update from the start for every cut point (the approach
// of MCUboot's simulator), and the cost of the first quarter / half / whole of
// the sweep (linear in N when each trial restores from snapshots).
//
//   otarig_sweep_bench [BOARD.yaml] [--jobs N]
#include <fmt/format.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>

#include "otarig/drivers/crypto.hpp"
#include "otarig/harness/bench.hpp"
#include "otarig/harness/campaign.hpp"
#include "otarig/harness/plan.hpp"
#include "otarig/harness/trial.hpp"

using namespace otarig;
using namespace otarig::harness;
using WallClock = std::chrono::steady_clock;

namespace {

double seconds_since(WallClock::time_point t) { return std::chrono::duration<double>(WallClock::now() - t).count(); }

double sha256_1mib_seconds() {
  std::vector<std::uint8_t> data(1 << 20, 0x5a);
  for (int i = 0; i < 5; ++i) (void)crypto::sha256(data);
  const int reps = 200;
  auto t = WallClock::now();
  for (int i = 0; i < reps; ++i) {
    data[0] = static_cast<std::uint8_t>(i);
    (void)crypto::sha256(data);
  }
  return seconds_since(t) / reps;
}

struct SweepResult {
  std::size_t trials = 0;
  std::size_t failed = 0;
  double wall = 0;
};

SweepResult sweep(const BoardProfile& profile, const drivers::DriverRegistry& registry, const ReleaseSet& releases,
                  const Plan& plan, std::size_t count, unsigned jobs) {
  std::vector<std::unique_ptr<Bench>> benches;
  for (unsigned j = 0; j < jobs; ++j) benches.push_back(std::make_unique<Bench>(profile, registry, releases, 1));
  // Warm each bench: the first clean update records the op log the sweep restores from.
  for (auto& b : benches) (void)count_update_ops(*b, releases, "factory", "update");
  std::atomic<std::size_t> next{0}, failed{0};
  auto t = WallClock::now();
  auto work = [&](unsigned j) {
    constexpr std::size_t chunk = 16;
    for (;;) {
      std::size_t begin = next.fetch_add(chunk);
      if (begin >= count) return;
      for (std::size_t i = begin; i < std::min(count, begin + chunk); ++i)
        if (!run_trial(*benches[j], releases, plan.trials[i]).passed) ++failed;
    }
  };
  std::vector<std::thread> threads;
  for (unsigned j = 1; j < jobs; ++j) threads.emplace_back(work, j);
  work(0);
  for (auto& th : threads) th.join();
  return {count, failed.load(), seconds_since(t)};
}

std::filesystem::path with_fast_sweep_off(const std::filesystem::path& board) {
  std::ifstream in(board);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto pos = text.find("  defects:");
  text.insert(pos, "  fast_sweep: false\n");
  auto out = std::filesystem::temp_directory_path() / "otarig-sweep-bench-slow.yaml";
  std::ofstream(out) << text;
  return out;
}

long peak_rss_mib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024;
}

}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path board = std::string(OTARIG_SOURCE_DIR) + "/boards/virtual-ab.yaml";
  unsigned jobs = std::max(1u, std::min(2u, std::thread::hardware_concurrency()));
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--jobs" && i + 1 < argc) jobs = static_cast<unsigned>(std::stoul(argv[++i]));
    else board = a;
  }
  drivers::DriverRegistry registry;
  drivers::register_all_drivers(registry);
  auto profile = load_profile(board);
  ReleaseSet releases(profile);
  auto scenario = load_scenario("power-cut-sweep");
  Bench counter(profile, registry, releases, 1);
  auto plan = make_plan(scenario, 1, [&](const std::string& s, const std::string& d) {
    return count_update_ops(counter, releases, s, d);
  });
  const std::size_t n = plan.trials.size();
  const double hash = sha256_1mib_seconds();
  const auto& img = releases.get("update");

  fmt::print("board {} ({}), update image {} bytes\n", profile.name, board.string(), img.bytes.size());
  fmt::print("SHA-256 over 1 MiB: {:.3f} ms\n", hash * 1e3);
  fmt::print("cut points N = {}\n\n", n);
  fmt::print("{:<44} {:>8} {:>10} {:>10} {:>12} {:>12}\n", "sweep", "trials", "wall s", "trials/s", "ms/trial",
             "x SHA-256");
  auto row = [&](const std::string& name, const SweepResult& r, unsigned j) {
    double per = r.wall / static_cast<double>(r.trials);
    // Per-trial cost in CPU terms: wall time x jobs / trials.
    double cpu_per = per * j;
    fmt::print("{:<44} {:>8} {:>10.3f} {:>10.0f} {:>12.3f} {:>12.2f}{}\n", name, r.trials, r.wall,
               static_cast<double>(r.trials) / r.wall, cpu_per * 1e3, cpu_per / hash,
               r.failed ? fmt::format("  ({} failed!)", r.failed) : "");
  };
  for (double frac : {0.25, 0.5, 1.0}) {
    auto count = static_cast<std::size_t>(static_cast<double>(n) * frac);
    row(fmt::format("snapshots, 1 job, first {:.0f}% of cut points", frac * 100),
        sweep(profile, registry, releases, plan, count, 1), 1);
  }
  if (jobs > 1) row(fmt::format("snapshots, {} jobs, all cut points", jobs), sweep(profile, registry, releases, plan, n, jobs), jobs);

  auto slow_board = with_fast_sweep_off(board);
  auto slow_profile = load_profile(slow_board);
  ReleaseSet slow_releases(slow_profile);
  for (double frac : {0.25, 0.5, 1.0}) {
    auto count = static_cast<std::size_t>(static_cast<double>(n) * frac);
    row(fmt::format("replay from start, 1 job, first {:.0f}%", frac * 100),
        sweep(slow_profile, registry, slow_releases, plan, count, 1), 1);
  }
  std::filesystem::remove(slow_board);
  fmt::print("\npeak RSS {} MiB\n", peak_rss_mib());
  fmt::print("x SHA-256 = CPU time per trial / time of one SHA-256 over 1 MiB (target <= 4)\n");
  return 0;
}
