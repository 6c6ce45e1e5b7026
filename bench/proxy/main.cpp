// Fault proxy benchmark: the otarig proxy (as its own process) beside socat,
// on loopback, in the same run. See bench/proxy/README.md.
//
//   otarig_proxy_bench proxy --listen ADDR:PORT --upstream HOST:PORT [--fault SPEC] [--seed N] [--spin US]
//   otarig_proxy_bench run [--bytes 1GiB] [--pings 10000] [--runs 3] [--socat PATH] [--spin US]
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "otarig/core/errors.hpp"
#include "otarig/drivers/net/fault_proxy.hpp"
#include "otarig/drivers/net/fault_spec.hpp"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kPatternSize = 1 << 20;
constexpr std::size_t kPingSize = 64;

[[noreturn]] void die(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

int tcp_listen(std::uint16_t& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 64) != 0) die("listen");
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return fd;
}

int tcp_connect(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

std::uint16_t free_port() {
  std::uint16_t port = 0;
  ::close(tcp_listen(port));
  return port;
}

void send_all(int fd, const char* p, std::size_t n) {
  while (n) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      die("send");
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

bool recv_exact(int fd, char* p, std::size_t n) {
  while (n) {
    ssize_t r = ::recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

const std::vector<char>& pattern() {
  static const std::vector<char> p = [] {
    std::vector<char> v(kPatternSize);
    std::mt19937_64 rng(2024);
    for (auto& c : v) c = static_cast<char>(rng());
    return v;
  }();
  return p;
}

// The upstream: the first byte of a connection says what it wants.
// 'T' + 8-byte size: that many pattern bytes, then close. 'E': echo 64-byte
// messages until EOF. Anything else (a readiness probe closing): nothing.
class Upstream {
 public:
  Upstream() {
    listener_ = tcp_listen(port_);
    thread_ = std::thread([this] { run(); });
  }
  ~Upstream() {
    stop_ = true;
    ::shutdown(listener_, SHUT_RDWR);
    thread_.join();
    ::close(listener_);
  }
  std::uint16_t port() const { return port_; }

 private:
  void run() {
    while (!stop_) {
      int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (stop_) return;
        continue;
      }
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      std::thread([fd] { serve(fd); }).detach();
    }
  }
  static void serve(int fd) {
    char cmd = 0;
    if (recv_exact(fd, &cmd, 1)) {
      if (cmd == 'T') {
        std::uint64_t n = 0;
        if (recv_exact(fd, reinterpret_cast<char*>(&n), sizeof n)) {
          const auto& p = pattern();
          try {
            for (std::uint64_t sent = 0; sent < n;) {
              std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(n - sent, p.size()));
              send_all(fd, p.data(), k);
              sent += k;
            }
          } catch (const std::exception&) {
          }
        }
      } else if (cmd == 'E') {
        char buf[kPingSize];
        while (recv_exact(fd, buf, sizeof buf)) {
          try {
            send_all(fd, buf, sizeof buf);
          } catch (const std::exception&) {
            break;
          }
        }
      }
    }
    ::shutdown(fd, SHUT_WR);
    char sink[4096];
    while (::recv(fd, sink, sizeof sink, 0) > 0) {
    }
    ::close(fd);
  }

  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// A middleman process (ours or socat), measured by wait4's rusage.
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (posix_spawnp(&pid_, args[0], &fa, nullptr, args.data(), environ) != 0) die("spawn " + argv[0]);
    posix_spawn_file_actions_destroy(&fa);
  }
  ~Child() {
    if (pid_ > 0) stop();
  }
  // SIGTERM, reap; returns user+system CPU seconds of the process and the
  // children it reaped.
  double stop() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    rusage ru{};
    ::wait4(pid_, &status, 0, &ru);
    pid_ = -1;
    auto secs = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
    return secs(ru.ru_utime) + secs(ru.ru_stime);
  }

 private:
  pid_t pid_ = -1;
};

void wait_listening(std::uint16_t port) {
  auto end = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < end) {
    int fd = tcp_connect(port);
    if (fd >= 0) {
      ::close(fd);
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  throw std::runtime_error("middleman did not listen on port " + std::to_string(port));
}

struct Transfer {
  double seconds = 0;
  std::uint64_t bytes = 0;
  std::uint64_t altered = 0;  // bytes that differ from what the upstream sent
};

Transfer download(std::uint16_t port, std::uint64_t size) {
  Transfer t;
  auto begin = Clock::now();
  int fd = tcp_connect(port);
  if (fd < 0) die("connect");
  char cmd[9] = {'T'};
  std::memcpy(cmd + 1, &size, sizeof size);
  send_all(fd, cmd, sizeof cmd);
  std::vector<char> buf(1 << 20);
  const auto& p = pattern();
  while (true) {
    ssize_t r = ::recv(fd, buf.data(), buf.size(), 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    auto n = static_cast<std::size_t>(r);
    for (std::size_t i = 0; i < n;) {  // compare against the pattern, a pattern-period at a time
      std::size_t at = static_cast<std::size_t>((t.bytes + i) % p.size());
      std::size_t k = std::min(n - i, p.size() - at);
      if (std::memcmp(buf.data() + i, p.data() + at, k) != 0)  // rare: narrow down by 4 KiB blocks
        for (std::size_t b = 0; b < k; b += 4096) {
          std::size_t m = std::min<std::size_t>(4096, k - b);
          if (std::memcmp(buf.data() + i + b, p.data() + at + b, m) != 0)
            for (std::size_t j = b; j < b + m; ++j) t.altered += buf[i + j] != p[at + j];
        }
      i += k;
    }
    t.bytes += n;
  }
  t.seconds = std::chrono::duration<double>(Clock::now() - begin).count();
  ::close(fd);
  return t;
}

struct Latency {
  double p50_us = 0;
  double p99_us = 0;
};

// One connection that echoes 64-byte messages (through a middleman or not).
class Pinger {
 public:
  explicit Pinger(std::uint16_t port) : fd_(tcp_connect(port)) {
    if (fd_ < 0) die("connect");
    send_all(fd_, "E", 1);
    std::memset(msg_, 'p', sizeof msg_);
    for (int i = 0; i < 500; ++i) once();  // warm up
  }
  ~Pinger() { ::close(fd_); }
  // Appends the round-trip times of `n` exchanges, in microseconds.
  void run(int n, std::vector<double>& us) {
    for (int i = 0; i < n; ++i) {
      auto begin = Clock::now();
      once();
      us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - begin).count());
    }
  }

 private:
  void once() {
    send_all(fd_, msg_, sizeof msg_);
    if (!recv_exact(fd_, msg_, sizeof msg_)) throw std::runtime_error("ping-pong: connection closed");
  }
  int fd_;
  char msg_[kPingSize];
};

Latency percentiles(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  return {us[us.size() / 2], us[us.size() * 99 / 100]};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int run_proxy(int argc, char** argv) {
  otarig::drivers::net::ProxyMainOptions o;
  o.print_events = false;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    std::string v = argv[i + 1];
    if (k == "--listen") o.listen = v;
    else if (k == "--upstream") o.upstream = v;
    else if (k == "--fault") o.fault = v;
    else if (k == "--seed") o.seed = std::stoull(v);
    else if (k == "--threads") o.threads = static_cast<unsigned>(std::stoul(v));
    else if (k == "--spin") o.spin = std::chrono::microseconds(std::stol(v));
    else throw otarig::InputError("unknown option " + k);
  }
  return otarig::drivers::net::proxy_main(o, std::cout);
}

int run_bench(int argc, char** argv) {
  std::uint64_t bytes = 1ull << 30;
  int pings = 10000;
  int runs = 3;
  std::string socat = "socat";
  std::string spin;  // --spin for the otarig proxy; empty: its default
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    std::string v = argv[i + 1];
    if (k == "--bytes") bytes = otarig::drivers::net::parse_size(v, "--bytes");
    else if (k == "--pings") pings = std::stoi(v);
    else if (k == "--runs") runs = std::stoi(v);
    else if (k == "--socat") socat = v;
    else if (k == "--spin") spin = v;
    else throw otarig::InputError("unknown option " + k);
  }
  std::string self = "/proc/self/exe";
  {
    char path[4096];
    ssize_t n = ::readlink("/proc/self/exe", path, sizeof path - 1);
    if (n > 0) self.assign(path, static_cast<std::size_t>(n));
  }
  const std::string corrupt = "down:corrupt@rate=1e-6";
  Upstream upstream;
  std::string up = "127.0.0.1:" + std::to_string(upstream.port());

  struct Row {
    std::string name;
    std::function<std::vector<std::string>(const std::string&, const std::string&, std::uint16_t, const std::string&)>
        argv;
    std::string fault;
    std::vector<double> gbps, cpu_per_gb;
    std::uint64_t altered = 0;
    Latency latency;
  };
  auto ours = [spin](const std::string& self_path, const std::string& upstream_addr, std::uint16_t port,
                     const std::string& fault) {
    std::vector<std::string> a = {self_path, "proxy", "--listen", "127.0.0.1:" + std::to_string(port), "--upstream",
                                  upstream_addr};
    if (!fault.empty()) {
      a.push_back("--fault");
      a.push_back(fault);
      a.push_back("--seed");
      a.push_back("1");
    }
    if (!spin.empty()) {
      a.push_back("--spin");
      a.push_back(spin);
    }
    return a;
  };
  auto socat_argv = [](const std::string& socat_path, const std::string& upstream_addr, std::uint16_t port,
                       const std::string&) {
    return std::vector<std::string>{socat_path, "TCP-LISTEN:" + std::to_string(port) + ",reuseaddr,fork",
                                    "TCP:" + upstream_addr};
  };
  std::vector<Row> rows = {{"socat", socat_argv, "", {}, {}, 0, {}},
                           {"otarig proxy", ours, "", {}, {}, 0, {}},
                           {"otarig proxy, " + corrupt, ours, corrupt, {}, {}, 0, {}}};

  auto launch = [&](Row& r) {
    std::uint16_t port = free_port();
    auto child = std::make_unique<Child>(r.argv(r.name == "socat" ? socat : self, up, port, r.fault));
    wait_listening(port);
    // Let socat reap the child its readiness probe forked, so it is not counted.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return std::pair{std::move(child), port};
  };

  for (int run = 0; run < runs; ++run) {
    for (Row& r : rows) {
      auto [child, port] = launch(r);
      Transfer t = download(port, bytes);
      // socat's per-connection child exits at EOF; give the parent time to reap it.
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      double cpu = child->stop();
      if (t.bytes != bytes)
        throw std::runtime_error(r.name + ": received " + std::to_string(t.bytes) + " of " + std::to_string(bytes));
      r.gbps.push_back(static_cast<double>(t.bytes) / t.seconds / 1e9);
      r.cpu_per_gb.push_back(cpu / (static_cast<double>(t.bytes) / 1e9));
      r.altered = t.altered;
      std::cerr << "run " << run + 1 << "/" << runs << " " << r.name << ": " << r.gbps.back() << " GB/s, "
                << cpu << " CPU s, " << t.altered << " bytes altered\n";
    }
  }
  // Latency: one connection each (direct, socat, ours), exchanged in
  // interleaved rounds so that a burst of load elsewhere hits all alike.
  Latency direct;
  {
    std::vector<std::pair<std::unique_ptr<Child>, std::uint16_t>> middlemen;
    std::vector<Row*> measured;
    for (Row& r : rows)
      if (r.fault.empty()) {
        middlemen.push_back(launch(r));
        measured.push_back(&r);
      }
    std::vector<std::unique_ptr<Pinger>> pingers;
    pingers.push_back(std::make_unique<Pinger>(upstream.port()));
    for (auto& m : middlemen) pingers.push_back(std::make_unique<Pinger>(m.second));
    std::vector<std::vector<double>> samples(pingers.size());
    const int rounds = 20;
    for (int round = 0; round < rounds; ++round)
      for (std::size_t i = 0; i < pingers.size(); ++i) pingers[i]->run(pings / rounds, samples[i]);
    direct = percentiles(samples[0]);
    for (std::size_t i = 0; i < measured.size(); ++i) measured[i]->latency = percentiles(samples[i + 1]);
    pingers.clear();
    for (auto& m : middlemen) m.first->stop();
  }

  std::printf("fault proxy benchmark: loopback, %.2f GiB download x %d runs (median), %d x %zu-byte ping-pongs\n",
              static_cast<double>(bytes) / (1 << 30), runs, pings, kPingSize);
  std::printf("%-40s %12s %12s %14s %14s %10s\n", "", "GB/s", "CPU s/GB", "p50 added us", "p99 added us", "altered");
  std::printf("%-40s %12s %12s %14.1f %14.1f %10s\n", "direct (no middleman; absolute us)", "-", "-", direct.p50_us,
              direct.p99_us, "-");
  for (const Row& r : rows) {
    char p50[32] = "-";
    char p99[32] = "-";
    if (r.fault.empty()) {
      std::snprintf(p50, sizeof p50, "%.1f", r.latency.p50_us - direct.p50_us);
      std::snprintf(p99, sizeof p99, "%.1f", r.latency.p99_us - direct.p99_us);
    }
    std::printf("%-40s %12.2f %12.3f %14s %14s %10llu\n", r.name.c_str(), median(r.gbps), median(r.cpu_per_gb), p50,
                p99, static_cast<unsigned long long>(r.altered));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "proxy") return run_proxy(argc, argv);
    if (cmd == "run") return run_bench(argc, argv);
    std::cerr << "usage: otarig_proxy_bench run [--bytes 1GiB] [--pings 10000] [--runs 3] [--socat PATH] [--spin US]\n"
                 "       otarig_proxy_bench proxy --listen ADDR:PORT --upstream HOST:PORT [--fault SPEC] [--seed N]"
                 " [--threads N] [--spin US]\n";
    return 2;
  } catch (const otarig::InputError& e) {
    std::cerr << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 3;
  }
}
