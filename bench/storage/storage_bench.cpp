// Figures of the storage layer (docs/crash-model.md): operations recorded per
// second through the FUSE layer against the same loop on a plain folder, and
// crash states materialized per second for a 1 MiB slot file written by
// ~300 operations (every cut, every mode).
//
//   otarig_storage_bench [--writes N] [--slot-mib N] [--other-mib N]
#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "otarig/drivers/storage/crash_model.hpp"
#include "otarig/drivers/storage/recorder.hpp"
#include "otarig/drivers/storage/recording_folder.hpp"

namespace fs = std::filesystem;
using namespace otarig::drivers::storage;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The device's loop: `writes` writes of 4 KiB, an fsync every 16, then a
// temp-file-and-rename of a small state file. Returns seconds (in the child).
double device_loop(const fs::path& dir, int writes) {
  auto t0 = Clock::now();
  std::string block(4096, 'd');
  int fd = ::open((dir / "slot").c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
  for (int i = 0; i < writes; ++i) {
    if (::pwrite(fd, block.data(), block.size(), static_cast<off_t>(i) * 4096) != 4096) return -1;
    if (i % 16 == 15) ::fsync(fd);
  }
  ::fsync(fd);
  ::close(fd);
  int st = ::open((dir / "state.tmp").c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
  if (::write(st, "state", 5) != 5) return -1;
  ::fsync(st);
  ::close(st);
  ::rename((dir / "state.tmp").c_str(), (dir / "state").c_str());
  return seconds_since(t0);
}

// Runs the loop in a child (inside the recorder's namespace when given).
double timed_child(const fs::path& dir, int writes, int ns_fd) {
  int pipefd[2];
  if (::pipe(pipefd) != 0) return -1;
  pid_t pid = ::fork();
  if (pid == 0) {
    if (ns_fd >= 0 && enter_mount_namespace(ns_fd) != 0) ::_exit(1);
    double s = device_loop(dir, writes);
    (void)!::write(pipefd[1], &s, sizeof s);
    ::_exit(0);
  }
  ::close(pipefd[1]);
  double s = -1;
  (void)!::read(pipefd[0], &s, sizeof s);
  ::close(pipefd[0]);
  ::waitpid(pid, nullptr, 0);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  int writes = 4000, slot_mib = 1, other_mib = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--writes")) writes = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--slot-mib")) slot_mib = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--other-mib")) other_mib = std::atoi(argv[i + 1]);
  }
  std::string tmpl = (fs::temp_directory_path() / "otarig-storage-bench.XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) return 3;
  const fs::path work = tmpl;

  // 1. Recording through FUSE against a plain folder.
  fs::create_directories(work / "plain");
  fs::create_directories(work / "layer");
  double plain = timed_child(work / "plain", writes, -1);
  std::printf("device loop (%d x 4 KiB writes, fsync every 16, state rename)\n", writes);
  std::printf("  plain folder                               %8.3f s\n", plain);
  for (bool apply : {false, true}) {
    try {
      fs::remove_all(work / "layer");
      fs::create_directories(work / "layer");
      RecorderOptions options;
      options.recording.apply_barriers = apply;
      Recorder r = Recorder::start(work / "layer", work / "layer", options);
      double layer = timed_child(work / "layer", writes, r.mount_namespace_fd());
      std::uint64_t ops = r.op_count();
      std::printf("  through the FUSE layer, barriers %-9s %8.3f s  (%.2fx), %llu ops recorded, %.0f ops/s\n",
                  apply ? "applied" : "recorded", layer, layer / plain, static_cast<unsigned long long>(ops),
                  static_cast<double>(ops) / layer);
    } catch (const std::exception& e) {
      std::printf("fuse layer: not measured (%s)\n", e.what());
    }
  }

  // 2. Crash states: a slot of slot_mib MiB written by ~300 operations,
  // another untouched file of other_mib MiB beside it.
  const fs::path backing = work / "backing";
  fs::create_directories(backing);
  {
    std::string old(static_cast<std::size_t>(slot_mib) << 20, 'o');
    std::string other(static_cast<std::size_t>(other_mib) << 20, 'x');
    FILE* f = std::fopen((backing / "slot-b.img").c_str(), "wb");
    std::fwrite(old.data(), 1, old.size(), f);
    std::fclose(f);
    f = std::fopen((backing / "slot-a.img").c_str(), "wb");
    std::fwrite(other.data(), 1, other.size(), f);
    std::fclose(f);
  }
  snapshot_folder(backing, work / "snapshot");
  RecordingFolder rf(backing, OpLog(work));
  {
    Handle h;
    rf.open("/slot-b.img", O_WRONLY, h);
    const std::uint64_t size = static_cast<std::uint64_t>(slot_mib) << 20;
    const std::uint64_t chunk = size / 280;
    std::string data(chunk, 'n');
    for (std::uint64_t off = 0, i = 0; off < size; off += chunk, ++i) {
      rf.write(h, "/slot-b.img", std::string_view(data.data(), std::min(chunk, size - off)), static_cast<off_t>(off));
      if (i % 32 == 31) rf.fsync(h, "/slot-b.img", true);
    }
    rf.fsync(h, "/slot-b.img", false);
    rf.close(h);
    Handle e;
    rf.create("/env.tmp", O_WRONLY, 0644, e);
    rf.write(e, "/env.tmp", std::string_view("rootpart=B\nupgrade_available=1\n"), 0);
    rf.fsync(e, "/env.tmp", false);
    rf.close(e);
    rf.rename("/env.tmp", "/env");
    rf.fsync_dir("/");
  }
  OpLog log = rf.replace_log(OpLog(work));
  CrashModel model(work / "snapshot", log);
  for (auto untouched : {UntouchedFiles::reflink_or_copy, UntouchedFiles::hardlink}) {
    MaterializeOptions opt;
    opt.untouched = untouched;
    std::uint64_t states = 0;
    auto t0 = Clock::now();
    for (auto mode : kAllCrashModes)
      for (std::uint64_t cut = 1; cut <= model.cut_points(); ++cut) {
        model.materialize({cut, mode, 1}, work / "target", opt);
        ++states;
      }
    double s = seconds_since(t0);
    std::printf("crash states: %llu ops on a %d MiB slot (+ %d MiB untouched file, %s): %llu states in %.3f s, %.0f states/s, %.2f ms each\n",
                static_cast<unsigned long long>(log.size()), slot_mib, other_mib,
                untouched == UntouchedFiles::hardlink ? "hard-linked" : "reflink or copy",
                static_cast<unsigned long long>(states), s, static_cast<double>(states) / s, 1000 * s / static_cast<double>(states));
  }
  std::error_code ec;
  fs::remove_all(work, ec);
  return 0;
}
