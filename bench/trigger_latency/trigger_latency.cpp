// Trigger latency: from the moment the last byte of a console pattern is
// written to a pty until the power-off action starts.
//
// The console is the rig's ConsoleReader (Boost.Asio on the pty slave, RE2
// trigger); the power is CommandPower running an external command (default
// /bin/true). One event:
//   t0  taken immediately before the write() that carries the whole line
//       "... CUT-NOW <n>;\r\n" to the pty master (the pattern ends at ';');
//   t1  taken in the trigger callback, immediately before async_off(), which
//       calls posix_spawn for the command — the start of the power-off action;
//   t2  after async_off() returned: the command's process exists;
//   t3  when the command's exit was observed.
// Latency = t1 - t0. Events run one at a time, with console noise between
// them. Prints one line of key=value pairs per figure.
#include <pty.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "otarig/drivers/bench/console.hpp"
#include "otarig/drivers/bench/external_power.hpp"

using namespace otarig::drivers::bench;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  int events = 1000;
  std::string command = "/bin/true";
  int warmup = 20;
  std::string samples;  // append each trigger latency (us) to this file
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--events") {
      o.events = std::atoi(value().c_str());
    } else if (a == "--command") {
      o.command = value();
    } else if (a == "--warmup") {
      o.warmup = std::atoi(value().c_str());
    } else if (a == "--samples") {
      o.samples = value();
    } else {
      std::fprintf(stderr, "usage: %s [--events N] [--command CMD] [--warmup N] [--samples FILE]\n", argv[0]);
      std::exit(2);
    }
  }
  if (o.events < 1) o.events = 1;
  return o;
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  auto rank = static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(rank, v.size() - 1)];
}

void report(const char* name, const std::vector<double>& us) {
  std::printf("ours metric=%s events=%zu p50_us=%.1f p99_us=%.1f max_us=%.1f\n", name, us.size(),
              percentile(us, 50), percentile(us, 99), *std::max_element(us.begin(), us.end()));
}

}  // namespace

int main(int argc, char** argv) {
  auto options = parse(argc, argv);

  int master = -1, slave = -1;
  char name[128] = {};
  if (::openpty(&master, &slave, name, nullptr, nullptr) != 0) {
    std::perror("openpty");
    return 1;
  }
  termios tio{};
  ::tcgetattr(slave, &tio);
  ::cfmakeraw(&tio);
  ::tcsetattr(slave, TCSANOW, &tio);

  auto io = std::make_shared<BenchIo>("trigger-latency");
  ConsoleReader console(io, std::make_unique<TtyPathSource>(name));
  console.start();
  ::close(slave);

  CommandPowerConfig power_config;
  power_config.on = CommandSpec{{options.command}};
  power_config.off = CommandSpec{{options.command}};
  power_config.timeout = std::chrono::milliseconds(5000);
  CommandPower power(io, power_config);

  const int total = options.warmup + options.events;
  std::vector<Clock::time_point> t0(static_cast<std::size_t>(total)), t1(t0.size()), t2(t0.size()),
      t3(t0.size());
  std::mutex mutex;
  std::condition_variable cv;
  int completed = -1;
  std::atomic<int> failures{0};

  console.add_trigger(R"(CUT-NOW (\d+);)", [&](const TriggerMatch& m) {
    auto now = Clock::now();
    auto i = static_cast<std::size_t>(std::stoul(m.captures[0]));
    t1[i] = now;
    power.async_off([&, i](std::exception_ptr error) {
      t3[i] = Clock::now();
      if (error) ++failures;
      std::lock_guard lock(mutex);
      completed = static_cast<int>(i);
      cv.notify_all();
    });
    t2[i] = Clock::now();
  });

  std::mt19937_64 rng(20240611);
  for (int i = 0; i < total; ++i) {
    // Boot-log noise first, then the event line written in one piece.
    auto noise = "[" + std::to_string(i) + ".000] mmc0: new high speed SDHC card at address aaaa\r\n";
    [[maybe_unused]] auto n = ::write(master, noise.data(), noise.size());
    std::string line = "ota: applying update, CUT-NOW " + std::to_string(i) + ";\r\n";
    t0[static_cast<std::size_t>(i)] = Clock::now();
    if (::write(master, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      std::perror("write");
      return 1;
    }
    std::unique_lock lock(mutex);
    if (!cv.wait_for(lock, std::chrono::seconds(10), [&] { return completed == i; })) {
      std::fprintf(stderr, "event %d: no power-off within 10 s\n", i);
      return 1;
    }
    lock.unlock();
    // Let the loop go idle between events (0.2..1 ms). A sleep, not a spin:
    // under SCHED_FIFO a spinning writer would starve the kernel worker that
    // moves pty data.
    std::this_thread::sleep_for(std::chrono::microseconds(200 + static_cast<int>(rng() % 800)));
  }
  if (failures > 0) {
    std::fprintf(stderr, "%d power-off commands failed\n", failures.load());
    return 1;
  }

  std::vector<double> trigger, spawned, finished;
  for (int i = options.warmup; i < total; ++i) {
    auto k = static_cast<std::size_t>(i);
    auto us = [](Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); };
    trigger.push_back(us(t1[k] - t0[k]));
    spawned.push_back(us(t2[k] - t0[k]));
    finished.push_back(us(t3[k] - t0[k]));
  }
  if (!options.samples.empty()) {
    if (FILE* f = std::fopen(options.samples.c_str(), "a")) {
      for (double v : trigger) std::fprintf(f, "%.1f\n", v);
      std::fclose(f);
    }
  }
  report("trigger", trigger);
  report("spawned", spawned);
  report("command_done", finished);
  ::close(master);
  return 0;
}
