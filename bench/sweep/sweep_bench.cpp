// Power-cut sweeps of a full 1 MiB update on the virtual board, one row per
// board (by default the reference board of every boot mode and the in-place
// flawed board): every cut point N, clean and torn (2N trials of
// power-cut-sweep-torn), run on all cores. Per row: N, trials, wall time,
// trials per second, CPU time per trial as a multiple of one SHA-256 over
// 1 MiB measured in the same process, peak memory; side by side the same
// sweep replaying the update from the start for every cut point
// (`fast_sweep: false`, the approach of MCUboot's simulator). A second table
// says what each cut left (the ota-resilience comparison): the device bricked,
// back on the old image, or on the new one.
//
// A board that takes delta releases gets a third row, `delta`: the same
// sweep (every cut point of its delta update, clean and torn) of release
// `patch` delivered as a delta release against `factory`, measured the same
// way in the same run, with the same target.
//
// Each board is measured in a child process of its own, so peak memory is per board.
//
// Beside it, in the same run, the bootloader-update sweep (scenario
// bootloader-power-cut-sweep: every cut point N of an update of the second
// image alone) on the board with a second-stage bootloader and its in-place
// flawed twin: N, trials, wall time and CPU per trial in SHA-256 (1 MiB)
// units, with what each cut left of the bootloader.
//
//   otarig_sweep_bench [--jobs N] [--slow-every K] [--no-slow] [--no-bootloader] [BOARD.yaml ...]
#include <fmt/format.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <optional>
#include <thread>

#include "otarig/core/crypto.hpp"
#include "otarig/harness/bench.hpp"
#include "otarig/harness/campaign.hpp"
#include "otarig/harness/plan.hpp"
#include "otarig/harness/trial.hpp"

using namespace otarig;
using namespace otarig::harness;
using WallClock = std::chrono::steady_clock;

namespace {

double seconds_since(WallClock::time_point t) { return std::chrono::duration<double>(WallClock::now() - t).count(); }

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto s = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) * 1e-6; };
  return s(ru.ru_utime) + s(ru.ru_stime);
}

double peak_rss_mib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// CPU time, like the trials' cost: other processes on the machine change the
// wall time of both, not their ratio.
double sha256_1mib_seconds() {
  std::vector<std::uint8_t> data(1 << 20, 0x5a);
  for (int i = 0; i < 5; ++i) (void)crypto::sha256(data);
  const int reps = 200;
  const auto t = thread_cpu_seconds();
  for (int i = 0; i < reps; ++i) {
    data[0] = static_cast<std::uint8_t>(i);
    (void)crypto::sha256(data);
  }
  return (thread_cpu_seconds() - t) / reps;
}

struct Outcomes {
  std::size_t bricked = 0, old_image = 0, new_image = 0, other = 0;
  void add(const Observation& o, const std::string& old_digest, const std::string& new_digest) {
    if (!o.booted) ++bricked;
    else if (o.digest == old_digest) ++old_image;
    else if (o.digest == new_digest) ++new_image;
    else ++other;
  }
  std::size_t total() const { return bricked + old_image + new_image + other; }
};

struct SweepResult {
  std::size_t trials = 0;
  std::size_t failed = 0;
  double wall = 0;
  double cpu = 0;
  Outcomes clean, torn;
};

// `deliver`: the release the sweep updates to ("update", or "patch/delta"
// for the delta-apply sweep: the image is the release it assembles).
SweepResult sweep(const BoardProfile& profile, const drivers::DriverRegistry& registry, const ReleaseSet& releases,
                  const std::vector<const TrialSpec*>& trials, unsigned jobs, const std::string& deliver = "update") {
  std::vector<std::unique_ptr<Bench>> benches;
  for (unsigned j = 0; j < jobs; ++j) benches.push_back(std::make_unique<Bench>(profile, registry, releases, 1));
  // Warm each bench: the first clean update records the op log the sweep restores from.
  for (auto& b : benches) (void)count_update_ops(*b, releases, "factory", deliver);
  const auto& old_digest = releases.get("factory").digest;
  const auto& new_digest = releases.get(deliver.substr(0, deliver.find('/'))).digest;
  std::atomic<std::size_t> next{0};
  std::vector<SweepResult> per_job(jobs);
  const auto cpu0 = cpu_seconds();
  const auto t = WallClock::now();
  auto work = [&](unsigned j) {
    constexpr std::size_t chunk = 16;
    auto& r = per_job[j];
    for (;;) {
      const std::size_t begin = next.fetch_add(chunk);
      if (begin >= trials.size()) return;
      for (std::size_t i = begin; i < std::min(trials.size(), begin + chunk); ++i) {
        const auto out = run_trial(*benches[j], releases, *trials[i]);
        if (!out.passed) ++r.failed;
        for (const auto& o : out.observations)
          if (o.step == "after-fault") (trials[i]->fault_json().value("torn", false) ? r.torn : r.clean).add(o, old_digest, new_digest);
      }
    }
  };
  std::vector<std::thread> threads;
  for (unsigned j = 1; j < jobs; ++j) threads.emplace_back(work, j);
  work(0);
  for (auto& th : threads) th.join();
  SweepResult total;
  total.wall = seconds_since(t);
  total.cpu = cpu_seconds() - cpu0;
  total.trials = trials.size();
  for (const auto& r : per_job) {
    total.failed += r.failed;
    for (auto [dst, src] : {std::pair{&total.clean, &r.clean}, std::pair{&total.torn, &r.torn}}) {
      dst->bricked += src->bricked;
      dst->old_image += src->old_image;
      dst->new_image += src->new_image;
      dst->other += src->other;
    }
  }
  return total;
}

std::filesystem::path with_fast_sweep_off(const std::filesystem::path& board) {
  std::ifstream in(board);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto pos = text.find("  defects:");
  text.insert(pos, "  fast_sweep: false\n");
  auto out = std::filesystem::temp_directory_path() / fmt::format("otarig-sweep-bench-slow-{}.yaml", ::getpid());
  std::ofstream(out) << text;
  return out;
}

struct Options {
  unsigned jobs = std::max(1u, std::min(2u, std::thread::hardware_concurrency()));
  std::size_t slow_every = 1;  ///< the slow sweep runs every K-th trial of the plan
  bool slow = true;
  bool bootloader = true;  ///< also the bootloader-update sweep (run_bootloader_sweeps)
};

std::string pct(std::size_t n, std::size_t of) {
  return of ? fmt::format("{:5.1f}%", 100.0 * static_cast<double>(n) / static_cast<double>(of)) : "    -";
}

// power-cut-sweep-torn with its update delivered as a delta release of
// release `patch` made against `factory` (docs/scenarios.md, "Delta
// deliveries"): the same 2N cut points, clean and torn, of a delta update.
std::filesystem::path delta_sweep_scenario() {
  const auto torn = load_scenario("power-cut-sweep-torn");
  std::ifstream in(torn.path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto replace = [&](const std::string& from, const std::string& to) {
    const auto at = text.find(from);
    if (at == std::string::npos) throw InputError(torn.path.string() + ": no '" + from + "' to make the delta sweep of");
    text.replace(at, from.size(), to);
  };
  replace("name: power-cut-sweep-torn", "name: delta-power-cut-sweep-torn");
  replace("deliver: update", "deliver: patch\ndelivery: delta");
  replace("retry: update", "retry: patch");
  // The file name is the scenario's name.
  const auto dir = std::filesystem::temp_directory_path() / fmt::format("otarig-sweep-bench-{}", ::getpid());
  std::filesystem::create_directories(dir);
  auto out = dir / "delta-power-cut-sweep-torn.yaml";
  std::ofstream(out) << text;
  return out;
}

// One board, in its own process: prints its rows to stdout.
int measure(const std::filesystem::path& board, const Options& o) {
  drivers::DriverRegistry registry;
  drivers::register_all_drivers(registry);
  auto profile = load_profile(board);
  ReleaseSet releases(profile);
  auto scenario = load_scenario("power-cut-sweep-torn");
  Bench counter(profile, registry, releases, 1);
  auto plan = make_plan(scenario, 1, [&](const std::string& s, const std::string& d) {
    return count_update_ops(counter, releases, s, d);
  });
  const std::uint64_t n = plan.ops_per_update.begin()->second;
  const double hash = sha256_1mib_seconds();
  const auto mode = profile.root.at("device").string_or("mode", "-");
  std::vector<const TrialSpec*> all;
  for (const auto& t : plan.trials) all.push_back(&t);

  const auto fast = sweep(profile, registry, releases, all, o.jobs);
  const double fast_peak = peak_rss_mib();
  auto row = [&](const char* how, const SweepResult& r, double peak) {
    const double cpu_per = r.cpu / static_cast<double>(r.trials);
    fmt::print("{:<28} {:<15} {:<9} {:>5} {:>6} {:>8.2f} {:>9.0f} {:>9.3f} {:>8.2f} {:>8.0f}{}\n", profile.name, mode,
               how, n, r.trials, r.wall, static_cast<double>(r.trials) / r.wall, cpu_per * 1e3, cpu_per / hash, peak,
               r.failed ? fmt::format("  ({} failed)", r.failed) : "");
  };
  row("snapshots", fast, fast_peak);
  if (o.slow) {
    auto slow_board = with_fast_sweep_off(board);
    auto slow_profile = load_profile(slow_board);
    ReleaseSet slow_releases(slow_profile);
    std::vector<const TrialSpec*> some;
    for (std::size_t i = 0; i < all.size(); i += o.slow_every) some.push_back(all[i]);
    const auto slow = sweep(slow_profile, registry, slow_releases, some, o.jobs);
    std::filesystem::remove(slow_board);
    row(o.slow_every == 1 ? "replay" : fmt::format("replay/{}", o.slow_every).c_str(), slow, peak_rss_mib());
  }
  // The delta-apply sweep, side by side: the same cut points of a delta update.
  std::optional<SweepResult> delta;
  if (profile.delta && profile.release("patch")) {
    const auto file = delta_sweep_scenario();
    auto delta_scenario = load_scenario(file.string());
    std::filesystem::remove_all(file.parent_path());
    auto delta_plan = make_plan(delta_scenario, 1, board_abilities(counter, releases));
    const std::uint64_t dn = delta_plan.ops_per_update.begin()->second;
    std::vector<const TrialSpec*> delta_trials;
    for (const auto& t : delta_plan.trials) delta_trials.push_back(&t);
    delta = sweep(profile, registry, releases, delta_trials, o.jobs, "patch/delta");
    const double cpu_per = delta->cpu / static_cast<double>(delta->trials);
    fmt::print("{:<28} {:<15} {:<9} {:>5} {:>6} {:>8.2f} {:>9.0f} {:>9.3f} {:>8.2f} {:>8.0f}{}\n", profile.name, mode,
               "delta", dn, delta->trials, delta->wall, static_cast<double>(delta->trials) / delta->wall,
               cpu_per * 1e3, cpu_per / hash, peak_rss_mib(),
               delta->failed ? fmt::format("  ({} failed)", delta->failed) : "");
    const auto& patch = releases.get("patch");
    const auto artifact = releases.delta(patch, releases.get("factory")).delta;
    fmt::print("    delta release: {} bytes for a {}-byte image ({:.1f}%)\n", artifact.size(), patch.bytes.size(),
               100.0 * static_cast<double>(artifact.size()) / static_cast<double>(patch.bytes.size()));
  } else {
    fmt::print("{:<28} {:<15} {:<9} (the board takes no delta releases: no `delta:` or no release `patch`)\n",
               profile.name, mode, "delta");
  }
  fmt::print("    SHA-256 over 1 MiB here: {:.3f} ms\n", hash * 1e3);
  for (auto [name, oc] : {std::pair{"clean", &fast.clean}, std::pair{"torn", &fast.torn}})
    fmt::print("    outcome {:<5} cuts: {:>5}  bricked {} ({:>5})  old {} ({:>5})  new {} ({:>5})  other {}\n", name,
               oc->total(), pct(oc->bricked, oc->total()), oc->bricked, pct(oc->old_image, oc->total()), oc->old_image,
               pct(oc->new_image, oc->total()), oc->new_image, oc->other);
  if (delta)
    for (auto [name, oc] : {std::pair{"clean", &delta->clean}, std::pair{"torn", &delta->torn}})
      fmt::print("    delta   {:<5} cuts: {:>5}  bricked {} ({:>5})  old {} ({:>5})  new {} ({:>5})  other {}\n", name,
                 oc->total(), pct(oc->bricked, oc->total()), oc->bricked, pct(oc->old_image, oc->total()),
                 oc->old_image, pct(oc->new_image, oc->total()), oc->new_image, oc->other);
  std::fflush(stdout);
  return 0;
}

// ---------------------------------------------------------------------------- bootloader-update sweep

// One board with a second image, in its own process: every cut point of
// scenario bootloader-power-cut-sweep, on `jobs` benches.
int measure_bootloader_sweep(const std::filesystem::path& board, unsigned jobs) {
  drivers::DriverRegistry registry;
  drivers::register_all_drivers(registry);
  auto profile = load_profile(board);
  ReleaseSet releases(profile);
  auto scenario = load_scenario("bootloader-power-cut-sweep");
  BoardAbilities abilities;
  Bench counter(profile, registry, releases, 1);
  abilities.count_ops = [&](const std::string& s, const std::string& d) {
    return count_update_ops(counter, releases, s, d);
  };
  abilities.second_image = profile.reports_second_image();
  auto plan = make_plan(scenario, 1, abilities);
  const std::uint64_t n = plan.ops_per_update.begin()->second;
  const double hash = sha256_1mib_seconds();
  std::vector<std::unique_ptr<Bench>> benches;
  for (unsigned j = 0; j < jobs; ++j) {
    benches.push_back(std::make_unique<Bench>(profile, registry, releases, 1));
    (void)count_update_ops(*benches.back(), releases, scenario.start, scenario.deliver);
  }
  const auto old_boot = releases.get("boot-1").digest, new_boot = releases.get(scenario.deliver).digest;
  std::atomic<std::size_t> next{0}, failed{0}, bricked{0}, old_image{0}, new_image{0}, other{0};
  const auto cpu0 = cpu_seconds();
  const auto t = WallClock::now();
  auto work = [&](unsigned j) {
    for (std::size_t i; (i = next.fetch_add(1)) < plan.trials.size();) {
      const auto out = run_trial(*benches[j], releases, plan.trials[i]);
      if (!out.passed) ++failed;
      for (const auto& o : out.observations) {
        if (o.step != "after-fault") continue;
        if (!o.booted) ++bricked;
        else if (o.image1_digest == old_boot) ++old_image;
        else if (o.image1_digest == new_boot) ++new_image;
        else ++other;
      }
    }
  };
  std::vector<std::thread> threads;
  for (unsigned j = 1; j < jobs; ++j) threads.emplace_back(work, j);
  work(0);
  for (auto& th : threads) th.join();
  const double wall = seconds_since(t), cpu = cpu_seconds() - cpu0;
  const auto trials = plan.trials.size();
  const double cpu_per = cpu / static_cast<double>(trials);
  fmt::print("{:<28} {:<15} {:<9} {:>5} {:>6} {:>8.2f} {:>9.0f} {:>9.3f} {:>8.2f} {:>8.0f}{}\n", profile.name,
             "ab+bootloader", "snapshots", n, trials, wall, static_cast<double>(trials) / wall, cpu_per * 1e3,
             cpu_per / hash, peak_rss_mib(), failed ? fmt::format("  ({} failed)", failed.load()) : "");
  fmt::print("    outcome cuts: {:>5}  bricked {}  old bootloader {}  new bootloader {}  other {}\n", trials,
             bricked.load(), old_image.load(), new_image.load(), other.load());
  std::fflush(stdout);
  return 0;
}

int run_bootloader_sweeps(unsigned jobs) {
  const std::filesystem::path src = OTARIG_SOURCE_DIR;
  fmt::print("\nbootloader-power-cut-sweep: every cut point N of an update of the second-stage bootloader alone (N "
             "trials), {} job{}\n\n",
             jobs, jobs == 1 ? "" : "s");
  fmt::print("{:<28} {:<15} {:<9} {:>5} {:>6} {:>8} {:>9} {:>9} {:>8} {:>8}\n", "board", "mode", "sweep", "N",
             "trials", "wall s", "trials/s", "cpu ms/t", "x SHA", "peak MiB");
  std::fflush(stdout);
  int rc = 0;
  for (const char* b : {"virtual-ab-bootloader", "flawed/virtual-bootloader-in-place"}) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      try {
        std::_Exit(measure_bootloader_sweep(src / "boards" / (std::string(b) + ".yaml"), jobs));
      } catch (const std::exception& e) {
        fmt::print(stderr, "{}: {}\n", b, e.what());
        std::_Exit(2);
      }
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) rc = 1;
  }
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::vector<std::filesystem::path> boards;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--jobs" && i + 1 < argc) o.jobs = static_cast<unsigned>(std::stoul(argv[++i]));
    else if (a == "--slow-every" && i + 1 < argc) o.slow_every = std::max<std::size_t>(1, std::stoul(argv[++i]));
    else if (a == "--no-slow") o.slow = false;
    else if (a == "--no-bootloader") o.bootloader = false;
    else boards.emplace_back(a);
  }
  if (boards.empty()) {
    const std::filesystem::path src = OTARIG_SOURCE_DIR;
    for (const char* b : {"virtual-ab", "virtual-swap-scratch", "virtual-swap-move", "virtual-overwrite-only",
                          "virtual-direct-xip", "flawed/virtual-inplace", "flawed/virtual-delta-inplace"})
      boards.push_back(src / "boards" / (std::string(b) + ".yaml"));
  }
  fmt::print("power-cut-sweep-torn: every cut point N, clean and torn (2N trials), {} job{}; sweep 'delta': the "
             "same of the update delivered as a delta release (release patch against factory)\n",
             o.jobs, o.jobs == 1 ? "" : "s");
  fmt::print("x SHA-256 = CPU time per trial / one SHA-256 over 1 MiB (target <= 4); peak = peak RSS of the board's "
             "process\n\n");
  fmt::print("{:<28} {:<15} {:<9} {:>5} {:>6} {:>8} {:>9} {:>9} {:>8} {:>8}\n", "board", "mode", "sweep", "N",
             "trials", "wall s", "trials/s", "cpu ms/t", "x SHA", "peak MiB");
  std::fflush(stdout);
  int rc = 0;
  for (const auto& b : boards) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      try {
        std::_Exit(measure(b, o));
      } catch (const std::exception& e) {
        fmt::print(stderr, "{}: {}\n", b.string(), e.what());
        std::_Exit(2);
      }
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) rc = 1;
  }
  if (o.bootloader && run_bootloader_sweeps(o.jobs) != 0) rc = 1;
  return rc;
}
