// The fault proxy: Asio TCP (and, for the impostor, TLS) relay applying the
// faults of a FaultSpec. Every alteration is reproducible from (seed,
// connection, direction, stream offset), independent of how reads happened to
// split the stream.
#include "otarig/drivers/net/fault_proxy.hpp"

#include <linux/sockios.h>
#include <sys/ioctl.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <nlohmann/json.hpp>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <atomic>
#include <charconv>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <ostream>
#include <random>
#include <set>
#include <thread>
#include <type_traits>
#include <utility>

#include "otarig/core/crypto.hpp"
#include "otarig/core/encryption.hpp"
#include "otarig/core/errors.hpp"
#include "otarig/drivers/net/pki.hpp"
#include "tls_context.hpp"

namespace otarig::drivers::net {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using Bytes = std::vector<std::uint8_t>;
using Duration = Clock::duration;
using TlsStream = ssl::stream<tcp::socket>;

namespace {

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// What a seeded stream is used for; each purpose has its own stream so one
// fault's draws never shift another's.
enum class Purpose : std::uint64_t { mask = 1, position = 2, jitter = 3, endless = 4 };

std::uint64_t stream_key(std::uint64_t seed, std::uint64_t connection, Direction d, Purpose p) {
  std::uint64_t k = splitmix64(seed);
  k = splitmix64(k ^ connection);
  return splitmix64(k ^ (static_cast<std::uint64_t>(d) << 8) ^ static_cast<std::uint64_t>(p));
}

// A nonzero XOR mask for the byte at `offset`.
std::uint8_t seeded_mask(std::uint64_t key, std::uint64_t offset) {
  return static_cast<std::uint8_t>(1 + splitmix64(key ^ offset) % 255);
}

// Failures before the next success of a Bernoulli(p) stream, from one draw.
std::uint64_t geometric(std::mt19937_64& rng, double p) {
  if (p >= 1.0) return 0;
  double u = static_cast<double>((rng() >> 11) + 1) * 0x1p-53;  // (0, 1]
  double g = std::floor(std::log(u) / std::log1p(-p));
  return g >= 0x1p62 ? (1ull << 62) : static_cast<std::uint64_t>(g);
}

constexpr std::uint64_t kNanosPerSecond = 1000000000ull;

tcp::socket& lowest(tcp::socket& s) { return s; }
tcp::socket& lowest(TlsStream& s) { return s.next_layer(); }

bool is_eof(const error_code& ec) { return ec == asio::error::eof || ec == ssl::error::stream_truncated; }

struct Watch {
  std::uint64_t connection = 0;
  Direction direction = Direction::down;
  std::uint64_t bytes = 0;
  BytesCallback callback;
};

// What connections accepted from now on are given.
struct Config {
  FaultSpec spec;
  std::uint64_t seed = 0;
  std::uint64_t generation = 0;
  /// The spec's outage, and when it ends (proxy clock).
  std::optional<Outage> outage;
  Duration outage_end{0};
  std::vector<Watch> watches;
  std::set<std::pair<std::uint64_t, Direction>> record_sources;
};

struct RateState {
  double rate = 0;
  std::uint8_t mask = 0;
  std::uint64_t next = 0;
  std::mt19937_64 rng;
};

struct CutPlan {
  enum Kind { truncate, reset, stall } kind = truncate;
  std::uint64_t at = 0;
};

struct WatchPlan {
  std::uint64_t at = 0;
  BytesCallback callback;
};

// The faults of one direction of one connection.
struct Plan {
  std::vector<Corrupt> ranges;
  std::vector<RateState> rates;
  std::optional<CutPlan> cut;
  std::optional<Throttle> throttle;
  std::optional<Latency> latency;
  std::optional<Slice> slice;
  std::optional<Endless> endless;
  std::optional<Replay> replay;
  bool record = false;
  std::vector<WatchPlan> watches;
  FaultSpec applied;  // for the open event

  bool plain() const {
    return ranges.empty() && rates.empty() && !cut && !throttle && !latency && !slice && !endless && !replay &&
           !record && watches.empty();
  }
};

Plan make_plan(const Config& config, std::uint64_t connection, Direction d) {
  Plan plan;
  for (const FaultRule& rule : config.spec.rules) {
    if (!rule.applies_to(connection) || !rule.applies_to(d) || std::holds_alternative<Impostor>(rule.fault) ||
        std::holds_alternative<AskClientCert>(rule.fault) || std::holds_alternative<ServerCertificate>(rule.fault) ||
        std::holds_alternative<Outage>(rule.fault))
      continue;
    plan.applied.rules.push_back(rule);
    std::visit(
        [&](const auto& f) {
          using T = std::decay_t<decltype(f)>;
          auto cut = [&](CutPlan::Kind kind, std::uint64_t at) {
            if (!plan.cut || at < plan.cut->at) plan.cut = CutPlan{kind, at};
          };
          if constexpr (std::is_same_v<T, Corrupt>) {
            if (f.offset) {
              plan.ranges.push_back(f);
            } else {
              RateState st{f.rate, f.mask, 0,
                           std::mt19937_64(stream_key(config.seed, connection, d, Purpose::position) +
                                           plan.rates.size())};
              st.next = geometric(st.rng, st.rate);
              plan.rates.push_back(std::move(st));
            }
          } else if constexpr (std::is_same_v<T, Truncate>) {
            cut(CutPlan::truncate, f.at);
          } else if constexpr (std::is_same_v<T, Reset>) {
            cut(CutPlan::reset, f.at);
          } else if constexpr (std::is_same_v<T, Stall>) {
            cut(CutPlan::stall, f.at);
          } else if constexpr (std::is_same_v<T, Throttle>) {
            plan.throttle = f;
          } else if constexpr (std::is_same_v<T, Latency>) {
            plan.latency = f;
          } else if constexpr (std::is_same_v<T, Slice>) {
            plan.slice = f;
          } else if constexpr (std::is_same_v<T, Endless>) {
            plan.endless = f;
          } else if constexpr (std::is_same_v<T, Replay>) {
            plan.replay = f;
          }
        },
        rule.fault);
  }
  plan.record = config.record_sources.count({connection, d}) != 0;
  for (const Watch& w : config.watches)
    if ((w.connection == 0 || w.connection == connection) && w.direction == d)
      plan.watches.push_back({w.bytes, w.callback});
  std::stable_sort(plan.watches.begin(), plan.watches.end(),
                   [](const WatchPlan& a, const WatchPlan& b) { return a.at < b.at; });
  return plan;
}

// Runs `ioc` until it is stopped, spinning before it blocks: after any
// handler the thread keeps polling (epoll_wait with a zero timeout, running
// what became ready, yielding the CPU between polls) for `spin`, and only
// then waits in epoll for the next handler. The window is CPU time on this
// host: the steady clock, never the proxy's (possibly manual) clock.
void run_spin_then_block(asio::io_context& ioc, std::chrono::microseconds spin) {
  if (spin.count() <= 0) {
    ioc.run();
    return;
  }
  using steady = std::chrono::steady_clock;
  auto until = steady::now() + spin;
  while (!ioc.stopped()) {
    if (ioc.poll() > 0) {
      until = steady::now() + spin;
    } else if (steady::now() >= until) {
      if (ioc.run_one() == 0) return;
      until = steady::now() + spin;
    } else {
      // The peer this thread just woke (the upstream given a request) may
      // have been placed on this CPU: let it run now, not when the window ends.
      std::this_thread::yield();
    }
  }
}

// Who terminates a connection's TLS at the proxy, if anyone.
enum class Terminate { none, impostor, ask_client_cert, certificate };

Terminate terminated_by(const Config& config, std::uint64_t connection, std::string* certificate) {
  for (const FaultRule& rule : config.spec.rules) {
    if (!rule.applies_to(connection)) continue;
    if (std::holds_alternative<Impostor>(rule.fault)) return Terminate::impostor;
    if (std::holds_alternative<AskClientCert>(rule.fault)) return Terminate::ask_client_cert;
    if (const auto* c = std::get_if<ServerCertificate>(&rule.fault)) {
      *certificate = c->name;
      return Terminate::certificate;
    }
  }
  return Terminate::none;
}

class ConnectionBase {
 public:
  virtual ~ConnectionBase() = default;
  /// Closes both sockets; only while no proxy thread runs.
  virtual void abort_stopped() = 0;
  /// Resets both sockets (RST) from any thread, on the connection's executor.
  virtual void reset_soon() = 0;
};

}  // namespace

nlohmann::json to_json(const FaultEvent& e) {
  return nlohmann::json{{"seq", e.seq},
                        {"time_ns", e.time.count()},
                        {"connection", e.connection},
                        {"generation", e.generation},
                        {"direction", to_string(e.direction)},
                        {"offset", e.offset},
                        {"kind", e.kind},
                        {"before", crypto::hex(e.before)},
                        {"after", crypto::hex(e.after)},
                        {"detail", e.detail}};
}

namespace {
std::string fmt_outage(const char* what, long long ms) { return std::string(what) + std::to_string(ms) + " ms"; }
}  // namespace

struct FaultProxy::Impl {
  // Declared first: destroyed last, after everything its handlers refer to.
  asio::io_context ioc;
  ProxyOptions options;
  SteadyClock steady;
  const Clock* clock = nullptr;
  std::optional<tcp::acceptor> acceptor;
  tcp::resolver::results_type upstream;
  std::shared_ptr<ssl::context> impostor_ctx;
  std::shared_ptr<ssl::context> ask_ctx;  ///< the server's identity, asking an optional client certificate
  std::map<std::string, std::shared_ptr<ssl::context>> certificate_ctx;  ///< certificate=NAME
  std::shared_ptr<ssl::context> upstream_ctx;
  std::vector<std::thread> threads;
  std::atomic<std::uint16_t> port{0};
  std::atomic<bool> stopping{false};

  mutable std::mutex mutex;  // guards everything below
  std::shared_ptr<const Config> config;
  std::uint64_t next_connection = 1;
  std::map<std::tuple<std::uint64_t, std::uint64_t, Direction>, std::shared_ptr<Bytes>> recordings;
  std::vector<FaultEvent> events;
  std::uint64_t next_seq = 1;
  ProxyStats counters;
  std::vector<std::weak_ptr<ConnectionBase>> connections;

  std::atomic<std::uint64_t> bytes_up{0};
  std::atomic<std::uint64_t> bytes_down{0};

  // The plaintext watch (guarded by `mutex`): what connections accepted from
  // now on look for, and what those of the current watch saw.
  std::shared_ptr<const std::vector<WatchedBytes>> watched;
  std::uint64_t watch_generation = 0;
  PlaintextScan scan;

  struct Watching {
    std::shared_ptr<const std::vector<WatchedBytes>> watched;
    std::uint64_t generation = 0;
  };
  // A new connection's watch; counts it as scanned or opaque.
  Watching watch_connection(bool opaque) {
    std::lock_guard lock(mutex);
    if (!watched || watched->empty()) return {};
    ++(opaque ? scan.opaque : scan.scanned);
    return {opaque ? nullptr : watched, watch_generation};
  }
  void scanned(std::uint64_t generation, std::uint64_t bytes, const Sighting* seen) {
    std::lock_guard lock(mutex);
    if (generation != watch_generation) return;  // a connection of an earlier watch
    scan.bytes += bytes;
    if (seen) scan.sightings.push_back(*seen);
  }

  explicit Impl(ProxyOptions o)
      : ioc(static_cast<int>(std::max(1u, o.threads))),
        options(std::move(o)),
        clock(options.clock ? options.clock : &steady) {
    config = make_config(options.faults, options.seed, 0, {});
  }

  static std::shared_ptr<const Config> make_config(FaultSpec spec, std::uint64_t seed, std::uint64_t generation,
                                                   std::vector<Watch> watches, Duration outage_end = {}) {
    auto c = std::make_shared<Config>();
    c->outage = spec.outage();
    c->outage_end = outage_end;
    for (const FaultRule& r : spec.rules)
      if (const auto* replay = std::get_if<Replay>(&r.fault)) {
        if (r.up) c->record_sources.insert({replay->from, Direction::up});
        if (r.down) c->record_sources.insert({replay->from, Direction::down});
      }
    c->spec = std::move(spec);
    c->seed = seed;
    c->generation = generation;
    c->watches = std::move(watches);
    return c;
  }

  void event(FaultEvent e) {
    {
      std::lock_guard lock(mutex);
      e.seq = next_seq++;
      e.time = clock->now();
      ++counters.events;
      if (events.size() < options.max_events) events.push_back(e);
      else ++counters.events_dropped;
    }
    if (options.on_event) options.on_event(e);
  }

  void count(Direction d, std::uint64_t n) {
    (d == Direction::up ? bytes_up : bytes_down).fetch_add(n, std::memory_order_relaxed);
  }

  void record(std::uint64_t generation, std::uint64_t connection, Direction d, const std::uint8_t* data,
              std::size_t n) {
    std::lock_guard lock(mutex);
    auto& rec = recordings[{generation, connection, d}];
    if (!rec) rec = std::make_shared<Bytes>();
    std::size_t room = options.max_recording > rec->size() ? options.max_recording - rec->size() : 0;
    rec->insert(rec->end(), data, data + std::min(n, room));
  }

  std::shared_ptr<const Bytes> recording(std::uint64_t generation, std::uint64_t connection, Direction d) const {
    std::lock_guard lock(mutex);
    auto it = recordings.find({generation, connection, d});
    if (it == recordings.end() || !it->second) return nullptr;
    return std::make_shared<const Bytes>(*it->second);
  }

  void track(std::weak_ptr<ConnectionBase> c) {
    std::lock_guard lock(mutex);
    std::erase_if(connections, [](const auto& w) { return w.expired(); });
    connections.push_back(std::move(c));
  }

  void accept();
  void set_faults_locked(FaultSpec spec, std::uint64_t seed);
  void begin_outage(const Outage& outage);
  /// Runs `fn` on the proxy's io_context once the proxy clock reaches `due`
  /// (a manual clock is polled every millisecond).
  void at_time(Duration due, std::function<void()> fn);
};

void FaultProxy::Impl::at_time(Duration due, std::function<void()> fn) {
  auto timer = std::make_shared<asio::steady_timer>(ioc);
  auto step = std::make_shared<std::function<void()>>();
  *step = [this, timer, due, fn = std::move(fn), weak = std::weak_ptr<std::function<void()>>(step)]() {
    if (stopping) return;
    const Duration now = clock->now();
    if (now >= due) return fn();
    Duration wait = due - now;
    if (clock->is_manual()) wait = std::min<Duration>(wait, std::chrono::milliseconds(1));
    timer->expires_after(wait);
    timer->async_wait([timer, keep = weak.lock()](const error_code& ec) {
      if (!ec && keep) (*keep)();
    });
  };
  asio::post(ioc, [step] { (*step)(); });
}

// The outage's own events (connection 0): when it begins, and when it ends.
void FaultProxy::Impl::begin_outage(const Outage& outage) {
  std::uint64_t generation = 0;
  Duration end{0};
  {
    std::lock_guard lock(mutex);
    generation = config->generation;
    end = config->outage_end;
  }
  // The connections open now do not outlive the outage (a client's kept-alive
  // connection would otherwise carry its checks through it): reset them.
  std::vector<std::shared_ptr<ConnectionBase>> open;
  {
    std::lock_guard lock(mutex);
    for (const auto& w : connections)
      if (auto c = w.lock()) open.push_back(std::move(c));
  }
  for (const auto& c : open) c->reset_soon();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(outage.length).count();
  FaultEvent e;
  e.connection = 0;
  e.generation = generation;
  e.kind = "outage";
  e.detail = (outage.mode == Outage::Mode::refuse
                  ? fmt_outage("begins: every connection is reset as soon as it is accepted, for ", ms)
                  : fmt_outage("begins: every connection is held without a byte either way until the outage ends, for ",
                               ms)) +
             "; " + std::to_string(open.size()) + " connection(s) open before it reset";
  event(std::move(e));
  at_time(end, [this, generation] {
    FaultEvent done;
    done.connection = 0;
    done.generation = generation;
    done.kind = "outage";
    done.detail = "ends: the update server is reachable again";
    event(std::move(done));
  });
}

namespace {

// One direction of a proxied connection: its fault plan, its buffer and
// where its stream stands.
enum class Mode { forward, replay_pending, replaying, discard, endless };

struct Flow {
  Flow(Direction d, const Config& config, std::uint64_t connection, std::size_t buffer_size,
       const asio::any_io_executor& executor)
      : dir(d),
        plan(make_plan(config, connection, d)),
        plain(plan.plain()),
        cap(std::max<std::size_t>(buffer_size, 1024)),
        buf(new std::uint8_t[cap]),
        mask_key(stream_key(config.seed, connection, d, Purpose::mask)),
        endless_key(stream_key(config.seed, connection, d, Purpose::endless)),
        jitter(stream_key(config.seed, connection, d, Purpose::jitter)),
        timer(executor) {
    if (plan.replay) mode = Mode::replay_pending;
    if (plan.throttle) burst = std::max<std::uint64_t>(plan.throttle->bytes_per_second / 20, 1);
  }
  Direction dir;
  Plan plan;
  bool plain;
  std::size_t cap;
  std::unique_ptr<std::uint8_t[]> buf;
  std::uint64_t mask_key;
  std::uint64_t endless_key;
  std::mt19937_64 jitter;
  asio::steady_timer timer;

  std::uint64_t out = 0;  // bytes delivered
  std::size_t len = 0;    // chunk being delivered: buf[0, len), buf[pos, len) left
  std::size_t pos = 0;
  Mode mode = Mode::forward;
  bool reading = false;
  bool source_eof = false;
  bool finished = false;
  std::shared_ptr<const Bytes> replay;
  std::size_t replay_pos = 0;
  std::uint64_t endless_sent = 0;
  bool throttle_started = false;
  Duration throttle_start{0};
  std::uint64_t throttle_sent = 0;
  std::uint64_t burst = 0;
  std::size_t next_watch = 0;
  int flush_polls = 0;
};

// What a flow's faults do to its bytes and its pace, apart from the sockets:
// the corruption of a chunk, the endless bytes, how much of a chunk may go
// (cuts, endless after an offset), the latency of a chunk and the throttle's
// allowance. Every value is a function of the seed, the connection, the
// direction and the stream offset (or, for jitter, the chunk).
class FlowFaults {
 public:
  using EventSink = std::function<void(Direction, std::uint64_t, std::string, std::string, Bytes, Bytes)>;

  // How many of the next n bytes may be delivered before a cut or the
  // offset where endless bytes take over.
  static std::size_t deliverable(const Flow& f, std::size_t n) {
    if (f.plan.cut) n = static_cast<std::size_t>(std::min<std::uint64_t>(n, f.plan.cut->at - f.out));
    if (f.plan.endless && f.plan.endless->after && f.mode != Mode::endless && *f.plan.endless->after > f.out)
      n = static_cast<std::size_t>(std::min<std::uint64_t>(n, *f.plan.endless->after - f.out));
    return n;
  }

  // The hold of the next chunk (latency ± seeded jitter).
  static Duration latency(Flow& f) {
    auto delay = std::chrono::duration_cast<Duration>(f.plan.latency->delay);
    auto j = f.plan.latency->jitter.count();
    if (j > 0) {
      auto span = static_cast<std::uint64_t>(2 * j + 1);
      auto offset = static_cast<std::int64_t>(f.jitter() % span) - j;
      delay += std::chrono::duration_cast<Duration>(std::chrono::microseconds(offset));
    }
    return delay;
  }

  // Applies the flow's corruption to buf[0, n), the stream's bytes at f.out.
  static void corrupt(Flow& f, std::size_t n, const EventSink& event) {
    const std::uint64_t lo = f.out;
    const std::uint64_t hi = f.out + n;
    std::uint8_t* data = f.buf.get();
    for (const Corrupt& c : f.plan.ranges) {
      std::uint64_t a = std::max(lo, *c.offset);
      std::uint64_t b = std::min(hi, *c.offset + c.count);
      if (a >= b) continue;
      Bytes before(data + (a - lo), data + (b - lo));
      for (std::uint64_t o = a; o < b; ++o) data[o - lo] ^= c.mask ? c.mask : seeded_mask(f.mask_key, o);
      Bytes after(data + (a - lo), data + (b - lo));
      event(f.dir, a, "corrupt", "offset=" + std::to_string(*c.offset) + ",count=" + std::to_string(c.count),
            std::move(before), std::move(after));
    }
    for (RateState& st : f.plan.rates) {
      while (st.next < lo) st.next += 1 + geometric(st.rng, st.rate);
      while (st.next < hi) {
        std::uint8_t& byte = data[st.next - lo];
        Bytes before{byte};
        byte ^= st.mask ? st.mask : seeded_mask(f.mask_key, st.next);
        event(f.dir, st.next, "corrupt", "rate", std::move(before), Bytes{byte});
        st.next += 1 + geometric(st.rng, st.rate);
      }
    }
  }

  // Fills the buffer with the next endless bytes; returns how many (0: the
  // limit is reached). Byte k of the endless stream is byte k%8 of
  // splitmix64(key ^ k/8).
  static std::size_t fill_endless(Flow& f) {
    const std::uint64_t limit = f.plan.endless->limit;
    if (limit && f.endless_sent >= limit) return 0;
    std::size_t n = f.cap;
    if (limit) n = static_cast<std::size_t>(std::min<std::uint64_t>(n, limit - f.endless_sent));
    std::uint64_t k = f.endless_sent;
    for (std::size_t i = 0; i < n;) {
      std::uint64_t word = splitmix64(f.endless_key ^ (k / 8));
      unsigned from = static_cast<unsigned>(k % 8);
      std::size_t take = std::min<std::size_t>(8 - from, n - i);
      for (std::size_t j = 0; j < take; ++j) f.buf[i + j] = static_cast<std::uint8_t>(word >> (8 * (from + j)));
      i += take;
      k += take;
    }
    f.endless_sent += n;
    return n;
  }

  // The throttle at `now`: how many of `piece` bytes may go now (0 < result),
  // or nullopt and the time they may go at in `due`. Allowance after e ns:
  // burst + floor(e * rate / 1e9), in exact integers.
  static std::optional<std::size_t> throttle(Flow& f, std::size_t piece, Duration now, Duration& due) {
    const std::uint64_t rate = f.plan.throttle->bytes_per_second;
    if (!f.throttle_started) {
      f.throttle_started = true;
      f.throttle_start = now;
    }
    auto e = static_cast<std::uint64_t>(std::max<Duration::rep>(0, (now - f.throttle_start).count()));
    std::uint64_t allowed = f.burst + (e / kNanosPerSecond) * rate + (e % kNanosPerSecond) * rate / kNanosPerSecond;
    std::uint64_t can = allowed > f.throttle_sent ? allowed - f.throttle_sent : 0;
    std::uint64_t want = std::min<std::uint64_t>(piece, f.burst);
    if (can < want) {
      std::uint64_t k = f.throttle_sent + want - f.burst;
      std::uint64_t need = (k / rate) * kNanosPerSecond + ((k % rate) * kNanosPerSecond + rate - 1) / rate;
      due = f.throttle_start + Duration(static_cast<Duration::rep>(need));
      return std::nullopt;
    }
    return static_cast<std::size_t>(std::min<std::uint64_t>(piece, can));
  }
};

// One proxied connection once both ends are established. C and U are the
// client-side and upstream-side stream types (tcp::socket or TlsStream).
template <class C, class U>
class Connection : public ConnectionBase, public std::enable_shared_from_this<Connection<C, U>> {
 public:
  Connection(FaultProxy::Impl& proxy, std::uint64_t id, std::shared_ptr<const Config> config, C client, U upstream)
      : proxy_(proxy),
        id_(id),
        config_(std::move(config)),
        client_(std::move(client)),
        upstream_(std::move(upstream)),
        up_(Direction::up, *config_, id_, proxy_.options.buffer_size, lowest(client_).get_executor()),
        down_(Direction::down, *config_, id_, proxy_.options.buffer_size, lowest(client_).get_executor()),
        close_timer_(lowest(client_).get_executor()) {
    // Without terminating the client's TLS the proxy relays the upstream's
    // TLS records as they are: it cannot read what they carry.
    const bool opaque = std::is_same_v<C, tcp::socket> && proxy_.options.upstream_is_tls;
    auto w = proxy_.watch_connection(opaque);
    watch_generation_ = w.generation;
    if (w.watched)
      for (const auto& item : *w.watched) {
        watch_names_.push_back(item.name);
        searches_.emplace_back(item.bytes);
      }
  }

  void start() {
    FaultSpec applied = up_.plan.applied;
    for (const auto& r : down_.plan.applied.rules)
      if (std::find(applied.rules.begin(), applied.rules.end(), r) == applied.rules.end()) applied.rules.push_back(r);
    event(Direction::up, 0, "open", applied.empty() ? "no faults" : applied.text());
    for (Flow* f : {&up_, &down_}) {
      fire_watches(*f);
      read(*f);
    }
  }

  void abort_stopped() override { close_all(false); }
  void reset_soon() override {
    asio::post(lowest(client_).get_executor(), [self = this->shared_from_this()] { self->reset_all(); });
  }

 private:
  using Step = void (Connection::*)(Flow&);

  Flow& other(Flow& f) { return f.dir == Direction::up ? down_ : up_; }

  template <class F>
  void with_source(Flow& f, F&& fn) {
    if (f.dir == Direction::up) fn(client_);
    else fn(upstream_);
  }
  template <class F>
  void with_sink(Flow& f, F&& fn) {
    if (f.dir == Direction::up) fn(upstream_);
    else fn(client_);
  }
  tcp::socket& sink_socket(Flow& f) { return f.dir == Direction::up ? lowest(upstream_) : lowest(client_); }

  void event(Direction d, std::uint64_t offset, std::string kind, std::string detail, Bytes before = {},
             Bytes after = {}) {
    FaultEvent e;
    e.connection = id_;
    e.generation = config_->generation;
    e.direction = d;
    e.offset = offset;
    e.kind = std::move(kind);
    e.detail = std::move(detail);
    e.before = std::move(before);
    e.after = std::move(after);
    proxy_.event(std::move(e));
  }

  // ---- reading ----------------------------------------------------------

  void read(Flow& f) {
    if (closed_ || f.finished) return;
    if (f.plan.cut && f.out >= f.plan.cut->at) return cut(f);
    if (f.mode == Mode::endless) return produce_endless(f);
    if (f.mode == Mode::replaying) return produce_replay(f);
    f.reading = true;
    with_source(f, [&](auto& src) {
      src.async_read_some(asio::buffer(f.buf.get(), f.cap),
                          [self = this->shared_from_this(), &f](const error_code& ec, std::size_t n) {
                            self->on_read(f, ec, n);
                          });
    });
  }

  void on_read(Flow& f, const error_code& ec, std::size_t n) {
    f.reading = false;
    if (closed_) return;
    if (draining_) {
      if (ec) {
        f.source_eof = true;
        if (up_.source_eof && down_.source_eof) close_all(false);
      } else {
        drain(f);
      }
      return;
    }
    if (ec) return source_failed(f, ec);
    if (f.dir == Direction::down && !searches_.empty()) watch(f.buf.get(), n);
    if (f.plain) {
      with_sink(f, [&](auto& dst) {
        asio::async_write(dst, asio::buffer(f.buf.get(), n),
                          [self = this->shared_from_this(), &f](const error_code& wec, std::size_t written) {
                            self->on_plain_written(f, wec, written);
                          });
      });
      return;
    }
    if (f.plan.record) proxy_.record(config_->generation, id_, f.dir, f.buf.get(), n);
    switch (f.mode) {
      case Mode::replay_pending:
        return start_replay(f, n);
      case Mode::discard:
        return read(f);
      default:
        return deliver(f, n);
    }
  }

  // The plaintext watch: the server's next n bytes, before any fault alters them.
  void watch(const std::uint8_t* data, std::size_t n) {
    for (std::size_t i = 0; i < searches_.size(); ++i) {
      auto& search = searches_[i];
      if (search.found()) {
        search.feed({data, n});
        continue;
      }
      if (auto at = search.feed({data, n})) {
        Sighting seen{watch_names_[i], id_, *at};
        proxy_.scanned(watch_generation_, 0, &seen);
        event(Direction::down, *at, "plaintext",
              "the server's stream carries the watched bytes of " + watch_names_[i] + " at offset " +
                  std::to_string(*at));
      }
    }
    proxy_.scanned(watch_generation_, n, nullptr);
  }

  void on_plain_written(Flow& f, const error_code& ec, std::size_t n) {
    if (closed_) return;
    if (ec || draining_) return sink_failed(f, ec);
    f.out += n;
    proxy_.count(f.dir, n);
    read(f);
  }

  void source_failed(Flow& f, const error_code& ec) {
    if (ec == asio::error::operation_aborted) return;
    if (is_eof(ec)) {
      f.source_eof = true;
      if (f.plan.endless && f.mode != Mode::endless) return start_endless(f, "the sender ended its stream");
      return finish(f);
    }
    // The sender went away abruptly: pass that on to the other side.
    if (ec == asio::error::connection_reset) return reset_all();
    close_all(false);
  }

  void sink_failed(Flow& f, const error_code& ec) {
    if (draining_) {
      if (!f.reading && !f.source_eof) drain(f);
      return;
    }
    if (ec == asio::error::operation_aborted) return;
    if (ec == asio::error::connection_reset || ec == asio::error::broken_pipe) return reset_all();
    close_all(false);
  }

  // The source ended: half-close towards the receiver.
  void finish(Flow& f) {
    f.finished = true;
    error_code ignored;
    sink_socket(f).shutdown(tcp::socket::shutdown_send, ignored);
    if (other(f).finished) close_all(resetting_);
  }

  // ---- producing --------------------------------------------------------

  void start_replay(Flow& f, std::size_t n) {
    std::uint64_t from = f.plan.replay->from;
    f.replay = proxy_.recording(config_->generation, from, f.dir);
    if (!f.replay || f.replay->empty()) {
      event(f.dir, f.out, "replay",
            "connection " + std::to_string(from) + " recorded nothing; forwarding this connection's own stream");
      f.mode = Mode::forward;
      return deliver(f, n);
    }
    event(f.dir, f.out, "replay",
          "sending the " + std::to_string(f.replay->size()) + " bytes connection " + std::to_string(from) +
              " received in place of this connection's own (discarding them from here on)");
    f.mode = Mode::replaying;
    produce_replay(f);
  }

  void produce_replay(Flow& f) {
    if (f.replay_pos >= f.replay->size()) {
      f.mode = Mode::discard;
      return read(f);
    }
    std::size_t n = std::min(f.cap, f.replay->size() - f.replay_pos);
    std::memcpy(f.buf.get(), f.replay->data() + f.replay_pos, n);
    f.replay_pos += n;
    deliver(f, n);
  }

  void start_endless(Flow& f, const std::string& why) {
    f.mode = Mode::endless;
    std::string detail = "seeded bytes after " + why;
    if (f.plan.endless->limit) detail += ", at most " + std::to_string(f.plan.endless->limit);
    event(f.dir, f.out, "endless", detail);
    produce_endless(f);
  }

  void produce_endless(Flow& f) {
    const std::size_t n = FlowFaults::fill_endless(f);
    if (n == 0) return finish(f);
    deliver(f, n);
  }

  // ---- delivering -------------------------------------------------------

  // buf[0, n) are the next bytes of the delivered stream, at offset f.out.
  void deliver(Flow& f, std::size_t n) {
    n = FlowFaults::deliverable(f, n);
    FlowFaults::corrupt(f, n, [this](Direction d, std::uint64_t offset, std::string kind, std::string detail,
                                     Bytes before, Bytes after) {
      event(d, offset, std::move(kind), std::move(detail), std::move(before), std::move(after));
    });
    f.len = n;
    f.pos = 0;
    if (f.plan.latency)
      return wait_until(f, proxy_.clock->now() + FlowFaults::latency(f), &Connection::write_piece);
    write_piece(f);
  }


  void write_piece(Flow& f) {
    if (closed_ || draining_) return;
    if (f.pos == f.len) return after_chunk(f);
    std::size_t piece = f.len - f.pos;
    if (f.plan.slice) piece = static_cast<std::size_t>(std::min<std::uint64_t>(piece, f.plan.slice->size));
    if (f.next_watch < f.plan.watches.size() && f.plan.watches[f.next_watch].at > f.out)
      piece = static_cast<std::size_t>(std::min<std::uint64_t>(piece, f.plan.watches[f.next_watch].at - f.out));
    if (f.plan.throttle) {
      Duration due{0};
      const auto can = FlowFaults::throttle(f, piece, proxy_.clock->now(), due);
      if (!can) return wait_until(f, due, &Connection::write_piece);
      piece = *can;
    }
    with_sink(f, [&](auto& dst) {
      asio::async_write(dst, asio::buffer(f.buf.get() + f.pos, piece),
                        [self = this->shared_from_this(), &f](const error_code& ec, std::size_t n) {
                          self->on_piece_written(f, ec, n);
                        });
    });
  }

  void on_piece_written(Flow& f, const error_code& ec, std::size_t n) {
    if (closed_) return;
    if (ec || draining_) return sink_failed(f, ec);
    f.pos += n;
    f.out += n;
    f.throttle_sent += n;
    proxy_.count(f.dir, n);
    fire_watches(f);
    if (f.plan.slice && f.plan.slice->delay.count() > 0)
      return wait_until(f, proxy_.clock->now() + std::chrono::duration_cast<Duration>(f.plan.slice->delay),
                        &Connection::write_piece);
    write_piece(f);
  }

  void after_chunk(Flow& f) {
    const auto& endless = f.plan.endless;
    if (endless && endless->after && f.mode != Mode::endless && f.out >= *endless->after &&
        !(f.plan.cut && f.out >= f.plan.cut->at))
      return start_endless(f, "offset " + std::to_string(*endless->after));
    read(f);
  }

  void fire_watches(Flow& f) {
    while (f.next_watch < f.plan.watches.size() && f.plan.watches[f.next_watch].at <= f.out) {
      const WatchPlan& w = f.plan.watches[f.next_watch++];
      if (w.at != f.out) continue;
      try {
        w.callback(BytesPassed{id_, f.dir, w.at});
      } catch (const std::exception& e) {
        event(f.dir, f.out, "watch-error", e.what());
      }
    }
  }

  // Resumes `step` once the proxy clock reaches `due`. A manual clock is
  // polled every millisecond so that advancing it releases the bytes.
  void wait_until(Flow& f, Duration due, Step step) {
    Duration now = proxy_.clock->now();
    if (due <= now) return (this->*step)(f);
    Duration wait = due - now;
    if (proxy_.clock->is_manual()) wait = std::min<Duration>(wait, std::chrono::milliseconds(1));
    f.timer.expires_after(wait);
    f.timer.async_wait([self = this->shared_from_this(), &f, due, step](const error_code& ec) {
      if (ec || self->closed_ || self->draining_) return;
      self->wait_until(f, due, step);
    });
  }

  // ---- faults that end a direction --------------------------------------

  void cut(Flow& f) {
    const CutPlan& c = *f.plan.cut;
    switch (c.kind) {
      case CutPlan::stall:
        event(f.dir, f.out, "stall", "forwarding stopped after " + std::to_string(f.out) + " bytes; connection held open");
        // The connection ends when the other direction does, or when the proxy stops.
        f.finished = true;
        return;
      case CutPlan::truncate:
        event(f.dir, f.out, "truncate", "closed after " + std::to_string(f.out) + " bytes");
        return close_gracefully();
      case CutPlan::reset:
        event(f.dir, f.out, "reset", "reset after " + std::to_string(f.out) + " bytes");
        f.finished = true;
        resetting_ = true;
        return reset_when_flushed(f);
    }
  }

  // FIN to both sides, then wait (bounded) for both peers to close so that
  // closing with unread data cannot turn into a reset that destroys bytes
  // still in flight.
  void close_gracefully() {
    draining_ = true;
    up_.finished = down_.finished = true;
    up_.timer.cancel();
    down_.timer.cancel();
    error_code ignored;
    lowest(client_).shutdown(tcp::socket::shutdown_send, ignored);
    lowest(upstream_).shutdown(tcp::socket::shutdown_send, ignored);
    for (Flow* f : {&up_, &down_})
      if (!f->reading && !f->source_eof) drain(*f);
    close_timer_.expires_after(std::chrono::seconds(2));
    close_timer_.async_wait([self = this->shared_from_this()](const error_code& ec) {
      if (!ec) self->close_all(false);
    });
  }

  void drain(Flow& f) {
    f.reading = true;
    with_source(f, [&](auto& src) {
      src.async_read_some(asio::buffer(f.buf.get(), f.cap),
                          [self = this->shared_from_this(), &f](const error_code& ec, std::size_t n) {
                            self->on_read(f, ec, n);
                          });
    });
  }

  // The b bytes must reach the receiver before the reset, which would
  // discard whatever is still queued: wait (bounded) for the queue to empty.
  void reset_when_flushed(Flow& f) {
    if (closed_) return;
    int queued = 0;
    if (::ioctl(sink_socket(f).native_handle(), SIOCOUTQ, &queued) != 0 || queued == 0 || ++f.flush_polls > 2000)
      return reset_all();
    f.timer.expires_after(std::chrono::milliseconds(1));
    f.timer.async_wait([self = this->shared_from_this(), &f](const error_code& ec) {
      if (!ec) self->reset_when_flushed(f);
    });
  }

  void reset_all() { close_all(true); }

  void close_all(bool reset) {
    if (closed_) return;
    closed_ = true;
    error_code ignored;
    up_.timer.cancel();
    down_.timer.cancel();
    close_timer_.cancel();
    for (tcp::socket* s : {&lowest(client_), &lowest(upstream_)}) {
      if (reset) s->set_option(asio::socket_base::linger(true, 0), ignored);
      s->close(ignored);
    }
    event(Direction::up, up_.out, "close",
          std::string(reset ? "reset" : "closed") + "; up " + std::to_string(up_.out) + " bytes, down " +
              std::to_string(down_.out) + " bytes");
  }

  FaultProxy::Impl& proxy_;
  std::uint64_t id_;
  std::shared_ptr<const Config> config_;
  C client_;
  U upstream_;
  Flow up_;
  Flow down_;
  asio::steady_timer close_timer_;
  bool closed_ = false;
  bool draining_ = false;
  bool resetting_ = false;  // a reset fault is flushing: any close from here on is a reset
  // The plaintext watch of this connection's server bytes (down).
  std::uint64_t watch_generation_ = 0;
  std::vector<std::string> watch_names_;
  std::vector<encryption::StreamSearch> searches_;
};

// Accepted connection until both ends are established: the impostor's
// handshake, connecting the upstream, the upstream's handshake.
class Setup : public std::enable_shared_from_this<Setup> {
 public:
  Setup(FaultProxy::Impl& proxy, std::uint64_t id, std::shared_ptr<const Config> config, tcp::socket client)
      : proxy_(proxy),
        id_(id),
        config_(std::move(config)),
        client_(std::move(client)),
        upstream_(client_.get_executor()),
        timer_(client_.get_executor()) {}

  void start() {
    error_code ignored;
    client_.set_option(tcp::no_delay(true), ignored);
    if (config_->outage) {
      const Duration now = proxy_.clock->now();
      if (now < config_->outage_end) return outage(config_->outage_end - now);
    }
    begin();
  }

 private:
  void begin() {
    terminate_ = terminated_by(*config_, id_, &certificate_);
    if (terminate_ == Terminate::impostor) return impostor_handshake();
    if (terminate_ == Terminate::ask_client_cert) return ask_client_cert_handshake();
    if (terminate_ == Terminate::certificate) return certificate_handshake();
    connect();
  }

  void note(const std::string& kind, const std::string& detail) {
    FaultEvent e;
    e.connection = id_;
    e.generation = config_->generation;
    e.kind = kind;
    e.detail = detail;
    proxy_.event(std::move(e));
  }

  // A connection accepted while the update server is out: reset at once, or
  // held without a byte until the outage ends and then relayed as usual.
  void outage(Duration left) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(left).count();
    error_code ignored;
    if (config_->outage->mode == Outage::Mode::refuse) {
      note("outage", "refused: reset as soon as accepted (" + std::to_string(ms) + " ms of the outage left)");
      client_.set_option(asio::socket_base::linger(true, 0), ignored);
      client_.close(ignored);
      return;
    }
    note("outage", "dropped: held without a byte either way until the outage ends (" + std::to_string(ms) +
                       " ms left)");
    proxy_.at_time(config_->outage_end, [self = shared_from_this()] {
      self->note("outage", "released: the outage ended; the connection is relayed as usual");
      self->begin();
    });
  }

  void arm(const std::function<void()>& on_timeout) {
    timer_.expires_after(proxy_.options.connect_timeout);
    timer_.async_wait([self = shared_from_this(), on_timeout](const error_code& ec) {
      if (!ec) on_timeout();
    });
  }

  void fail(const std::string& kind, const std::string& detail) {
    FaultEvent e;
    e.connection = id_;
    e.generation = config_->generation;
    e.direction = Direction::down;
    e.kind = kind;
    e.detail = detail;
    proxy_.event(std::move(e));
    error_code ignored;
    if (tls_client_) tls_client_->next_layer().close(ignored);
    client_.close(ignored);
    upstream_.close(ignored);
  }

  // Terminates the client's TLS at the proxy with `ctx`. A failed handshake
  // ends the connection (`refused` and why); a completed one is logged as
  // `kind` with what `accepted` reads of it, then the proxy relays.
  template <class Accepted>
  void terminate_tls(ssl::context& ctx, const char* kind, const char* refused, Accepted accepted) {
    tls_client_.emplace(std::move(client_), ctx);
    arm([this] {
      error_code ignored;
      tls_client_->next_layer().close(ignored);
    });
    tls_client_->async_handshake(ssl::stream_base::server,
                                 [self = shared_from_this(), kind, refused, accepted](const error_code& ec) {
                                   self->timer_.cancel();
                                   if (self->proxy_.stopping) return;
                                   if (ec) {
                                     self->fail(kind, refused + detail::tls_error_text(ec));
                                     return;
                                   }
                                   FaultEvent e;
                                   e.connection = self->id_;
                                   e.generation = self->config_->generation;
                                   e.kind = kind;
                                   e.detail = accepted(*self);
                                   self->proxy_.event(std::move(e));
                                   self->connect();
                                 });
  }

  void impostor_handshake() {
    terminate_tls(*proxy_.impostor_ctx, "impostor", "client refused the impostor certificate: ", [](Setup&) {
      return std::string("client accepted the impostor certificate (TLS terminated at the proxy)");
    });
  }

  // The server's own certificate, a client certificate asked for but not
  // required: the log says whether the client presented one (and whether it
  // chains to the server's client CA), then the proxy relays.
  void ask_client_cert_handshake() {
    if (!proxy_.ask_ctx) {
      fail("client-certificate", "the proxy has no server identity to ask a client certificate with (no mutual TLS)");
      return;
    }
    terminate_tls(*proxy_.ask_ctx, "client-certificate", "TLS handshake failed: ", [](Setup& c) {
      SSL* ssl = c.tls_client_->native_handle();
      X509* cert = SSL_get1_peer_certificate(ssl);
      const bool presented = cert != nullptr;
      if (cert) X509_free(cert);
      const long verified = SSL_get_verify_result(ssl);
      return !presented ? std::string("client presented no certificate (asked for, not required)")
             : verified == X509_V_OK
                 ? std::string("client presented a certificate that chains to the client CA")
                 : std::string("client presented a certificate that does not verify: ") +
                       X509_verify_cert_error_string(verified);
    });
  }

  // certificate=NAME: the update server's names, another certificate (an
  // expired one, a renewed one, one from the rotated CA); the log says
  // whether the client accepted it, then the proxy relays.
  void certificate_handshake() {
    auto it = proxy_.certificate_ctx.find(certificate_);
    if (it == proxy_.certificate_ctx.end()) {
      fail("certificate", "the proxy has no '" + certificate_ +
                              "' certificate (the board's certificates were not made by the rig's test PKI)");
      return;
    }
    certificate_accepted_ = "client accepted the " + certificate_ + " server certificate (TLS terminated at the proxy)";
    certificate_refused_ = "client refused the " + certificate_ + " server certificate: ";
    terminate_tls(*it->second, "certificate", certificate_refused_.c_str(),
                  [](Setup& c) { return c.certificate_accepted_; });
  }

  void connect() {
    arm([this] {
      error_code ignored;
      upstream_.close(ignored);
    });
    asio::async_connect(upstream_, proxy_.upstream,
                        [self = shared_from_this()](const error_code& ec, const tcp::endpoint&) {
                          self->timer_.cancel();
                          if (self->proxy_.stopping) return;
                          if (ec) {
                            self->fail("upstream-failed", "cannot connect to the upstream: " + ec.message());
                            return;
                          }
                          error_code ignored;
                          self->upstream_.set_option(tcp::no_delay(true), ignored);
                          if (self->terminate_ != Terminate::none && self->proxy_.options.upstream_tls)
                            return self->upstream_handshake();
                          self->launch();
                        });
  }

  void upstream_handshake() {
    tls_upstream_.emplace(std::move(upstream_), *proxy_.upstream_ctx);
    arm([this] {
      error_code ignored;
      tls_upstream_->next_layer().close(ignored);
    });
    tls_upstream_->async_handshake(ssl::stream_base::client, [self = shared_from_this()](const error_code& ec) {
      self->timer_.cancel();
      if (self->proxy_.stopping) return;
      if (ec) {
        self->fail("upstream-failed", "TLS handshake with the upstream failed: " + detail::tls_error_text(ec));
        return;
      }
      self->launch();
    });
  }

  template <class C, class U>
  void run(C&& client, U&& upstream) {
    auto c = std::make_shared<Connection<std::decay_t<C>, std::decay_t<U>>>(proxy_, id_, config_, std::move(client),
                                                                           std::move(upstream));
    proxy_.track(c);
    c->start();
  }

  void launch() {
    if (!tls_client_) return run(std::move(client_), std::move(upstream_));
    if (!tls_upstream_) return run(std::move(*tls_client_), std::move(upstream_));
    run(std::move(*tls_client_), std::move(*tls_upstream_));
  }

  FaultProxy::Impl& proxy_;
  std::uint64_t id_;
  std::shared_ptr<const Config> config_;
  tcp::socket client_;
  tcp::socket upstream_;
  std::optional<TlsStream> tls_client_;
  std::optional<TlsStream> tls_upstream_;
  asio::steady_timer timer_;
  Terminate terminate_ = Terminate::none;
  std::string certificate_, certificate_accepted_, certificate_refused_;
};

}  // namespace

void FaultProxy::Impl::accept() {
  auto on_accept = [this](const error_code& ec, tcp::socket socket) {
    if (stopping) return;
    if (!ec) {
      std::shared_ptr<const Config> cfg;
      std::uint64_t id = 0;
      {
        std::lock_guard lock(mutex);
        cfg = config;
        id = next_connection++;
        ++counters.connections;
      }
      std::make_shared<Setup>(*this, id, std::move(cfg), std::move(socket))->start();
    }
    accept();
  };
  if (options.threads > 1) acceptor->async_accept(asio::make_strand(ioc), on_accept);
  else acceptor->async_accept(ioc.get_executor(), on_accept);
}

FaultProxy::FaultProxy(ProxyOptions options) : impl_(std::make_shared<Impl>(std::move(options))) {}

FaultProxy::~FaultProxy() { stop(); }

void FaultProxy::start() {
  Impl& p = *impl_;
  if (!p.threads.empty()) throw BenchError("fault proxy: already started");
  // A later set_faults() may ask for the impostor: always prepare it.
  TlsConfig identity;
  if (p.options.impostor) {
    identity = *p.options.impostor;
  } else {
    TestPki pki = TestPki::generate({.label = "otarig impostor"});
    identity = TlsConfig{pki.impostor.cert_pem, pki.impostor.key_pem, {}};
  }
  identity.peer_ca_pem.clear();  // the impostor asks no client certificate
  p.impostor_ctx = detail::make_server_context(identity);
  p.upstream_ctx = detail::make_client_context(p.options.upstream_client, false);
  if (p.options.server_identity && !p.options.server_identity->peer_ca_pem.empty()) {
    p.ask_ctx = detail::make_server_context(*p.options.server_identity);
    // Asked, not required: the handshake goes on without one, and with one
    // that does not verify, so the log can say which.
    p.ask_ctx->set_verify_mode(ssl::verify_peer);
    p.ask_ctx->set_verify_callback([](bool, ssl::verify_context&) { return true; });
  }
  for (const auto& [name, config] : p.options.server_certificates) {
    TlsConfig c = config;
    // Asks for the client certificate the update server asks for.
    c.peer_ca_pem = p.options.server_identity ? p.options.server_identity->peer_ca_pem : std::string();
    p.certificate_ctx[name] = detail::make_server_context(c);
  }

  error_code ec;
  tcp::resolver resolver(p.ioc);
  p.upstream = resolver.resolve(p.options.upstream_host, std::to_string(p.options.upstream_port), ec);
  if (ec || p.upstream.empty())
    throw BenchError("fault proxy: cannot resolve upstream " + p.options.upstream_host + ": " + ec.message());
  auto address = asio::ip::make_address(p.options.listen_address, ec);
  if (ec) throw InputError("fault proxy: bad listen address '" + p.options.listen_address + "'");
  tcp::endpoint endpoint(address, p.options.listen_port);
  auto& acc = p.acceptor.emplace(p.ioc);
  acc.open(endpoint.protocol(), ec);
  if (!ec) acc.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acc.bind(endpoint, ec);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw BenchError("fault proxy: cannot listen on " + p.options.listen_address + ":" +
                     std::to_string(p.options.listen_port) + ": " + ec.message());
  p.port = acc.local_endpoint().port();
  p.accept();
  for (unsigned i = 0; i < std::max(1u, p.options.threads); ++i)
    p.threads.emplace_back([impl = impl_.get()] { run_spin_then_block(impl->ioc, impl->options.spin); });
}

void FaultProxy::stop() {
  if (!impl_ || impl_->threads.empty()) return;
  Impl& p = *impl_;
  p.stopping = true;
  p.ioc.stop();
  for (auto& t : p.threads) t.join();
  p.threads.clear();
  // No proxy thread runs now: close everything from here, then let the
  // aborted handlers finish so connections are freed.
  error_code ignored;
  if (p.acceptor) p.acceptor->close(ignored);
  std::vector<std::weak_ptr<ConnectionBase>> open;
  {
    std::lock_guard lock(p.mutex);
    open.swap(p.connections);
  }
  for (auto& w : open)
    if (auto c = w.lock()) c->abort_stopped();
  p.ioc.restart();
  p.ioc.poll();
}

std::uint16_t FaultProxy::port() const { return impl_->port; }

void FaultProxy::set_faults(FaultSpec spec, std::uint64_t seed) {
  const auto outage = spec.outage();
  {
    std::lock_guard lock(impl_->mutex);
    impl_->set_faults_locked(std::move(spec), seed);
  }
  if (outage) impl_->begin_outage(*outage);
}

void FaultProxy::Impl::set_faults_locked(FaultSpec spec, std::uint64_t seed) {
  Impl* impl_ = this;
  if (spec.empty()) {
    // Clearing the faults ends a trial's faults, not its connections: the
    // generation and the numbering go on, so a connection of the faulted
    // delivery that closes later (a device that completed a handshake with
    // the impostor, then hung up) still logs into the trial's events.
    impl_->config = Impl::make_config(std::move(spec), seed, impl_->config->generation, impl_->config->watches);
    return;
  }
  const auto outage = spec.outage();
  impl_->config = Impl::make_config(std::move(spec), seed, impl_->config->generation + 1, impl_->config->watches,
                                    outage ? clock->now() + std::chrono::duration_cast<Duration>(outage->length)
                                           : Duration{0});
  impl_->next_connection = 1;
  std::erase_if(impl_->recordings, [g = impl_->config->generation](const auto& kv) { return std::get<0>(kv.first) != g; });
}

void FaultProxy::new_schedule() {
  std::lock_guard lock(impl_->mutex);
  impl_->config = Impl::make_config({}, 0, impl_->config->generation + 1, impl_->config->watches);
  impl_->next_connection = 1;
  impl_->recordings.clear();
}

void FaultProxy::on_bytes(std::uint64_t connection, Direction direction, std::uint64_t bytes, BytesCallback callback) {
  std::lock_guard lock(impl_->mutex);
  auto watches = impl_->config->watches;
  watches.push_back({connection, direction, bytes, std::move(callback)});
  impl_->config = Impl::make_config(impl_->config->spec, impl_->config->seed, impl_->config->generation, std::move(watches),
                                    impl_->config->outage_end);
}

void FaultProxy::watch_plaintext(std::vector<WatchedBytes> watched) {
  std::erase_if(watched, [](const WatchedBytes& w) { return w.bytes.empty(); });
  std::lock_guard lock(impl_->mutex);
  impl_->watched = std::make_shared<const std::vector<WatchedBytes>>(std::move(watched));
  ++impl_->watch_generation;
  impl_->scan = {};
}

PlaintextScan FaultProxy::take_plaintext_scan() {
  std::lock_guard lock(impl_->mutex);
  return std::exchange(impl_->scan, {});
}

void FaultProxy::clear_watches() {
  std::lock_guard lock(impl_->mutex);
  impl_->config = Impl::make_config(impl_->config->spec, impl_->config->seed, impl_->config->generation, {},
                                    impl_->config->outage_end);
}

std::vector<FaultEvent> FaultProxy::events() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->events;
}

std::vector<FaultEvent> FaultProxy::take_events() {
  std::lock_guard lock(impl_->mutex);
  auto all = std::exchange(impl_->events, {});
  std::erase_if(all, [g = impl_->config->generation](const FaultEvent& e) { return e.generation != g; });
  return all;
}

ProxyStats FaultProxy::stats() const {
  std::lock_guard lock(impl_->mutex);
  ProxyStats s = impl_->counters;
  s.bytes_up = impl_->bytes_up.load();
  s.bytes_down = impl_->bytes_down.load();
  return s;
}

std::vector<std::uint8_t> FaultProxy::recording(std::uint64_t connection, Direction direction) const {
  std::uint64_t generation = 0;
  {
    std::lock_guard lock(impl_->mutex);
    generation = impl_->config->generation;
  }
  auto rec = impl_->recording(generation, connection, direction);
  return rec ? *rec : Bytes{};
}

namespace {

std::pair<std::string, std::uint16_t> split_host_port(const std::string& text, const std::string& what,
                                                      bool port_only_ok) {
  std::string host;
  std::string port;
  if (port_only_ok && text.find(':') == std::string::npos) {
    port = text;
  } else if (text.starts_with('[')) {
    std::size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      throw InputError(what + ": expected [ADDRESS]:PORT, got '" + text + "'");
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    std::size_t colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0) throw InputError(what + ": expected HOST:PORT, got '" + text + "'");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || value > 65535)
    throw InputError(what + ": bad port '" + port + "'");
  return {host, static_cast<std::uint16_t>(value)};
}

}  // namespace

int proxy_main(const ProxyMainOptions& o, std::ostream& out) {
  ProxyOptions po;
  auto [listen_host, listen_port] = split_host_port(o.listen, "--listen", true);
  if (!listen_host.empty()) po.listen_address = listen_host;
  po.listen_port = listen_port;
  if (o.upstream.empty()) throw InputError("--upstream: required (HOST:PORT)");
  auto [up_host, up_port] = split_host_port(o.upstream, "--upstream", false);
  po.upstream_host = up_host;
  po.upstream_port = up_port;
  po.faults = parse_fault_spec(o.fault, "--fault");
  if (const auto server = po.faults.server_rules(); !server.empty())
    throw InputError("--fault:" + std::to_string(server.rules.front().column) +
                     ": a server: rule is for the update server of `otarig run`, not for the proxy");
  po.seed = o.seed;
  if (o.threads == 0 || o.threads > 64) throw InputError("--threads: 1 to 64");
  po.threads = o.threads;
  if (o.buffer_size < 1024 || o.buffer_size > (64u << 20)) throw InputError("--buffer: 1 KiB to 64 MiB");
  po.buffer_size = o.buffer_size;
  if (o.spin.count() < 0 || o.spin > std::chrono::milliseconds(10)) throw InputError("--spin: 0 to 10000 us");
  po.spin = o.spin;
  if (o.impostor_cert.empty() != o.impostor_key.empty())
    throw InputError("--impostor-cert and --impostor-key go together");
  if (!o.impostor_cert.empty()) po.impostor = TlsConfig::from_files(o.impostor_cert, o.impostor_key);
  po.upstream_tls = o.upstream_tls;
  std::mutex out_mutex;
  if (o.print_events)
    po.on_event = [&](const FaultEvent& e) {
      std::lock_guard lock(out_mutex);
      out << to_json(e).dump() << '\n' << std::flush;
    };
  FaultProxy proxy(std::move(po));
  asio::io_context signals_ioc(1);
  asio::signal_set signals(signals_ioc, SIGINT, SIGTERM);
  proxy.start();
  {
    std::lock_guard lock(out_mutex);
    out << "listening on " << (listen_host.empty() ? std::string("127.0.0.1") : listen_host) << ":" << proxy.port()
        << std::endl;
  }
  signals.async_wait([](const error_code&, int) {});
  signals_ioc.run();
  proxy.stop();
  return 0;
}

}  // namespace otarig::drivers::net
