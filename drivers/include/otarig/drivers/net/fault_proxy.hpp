#pragma once
// The fault proxy: a TCP proxy between a device and the update server that
// applies seeded faults per connection and direction (fault_spec.hpp), logs
// every alteration, and reports when chosen bytes have passed so the
// controller can cut power at an exact point of a download. Asio lives in the
// .cpp. See docs/network.md.
#include <nlohmann/json_fwd.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "otarig/core/clock.hpp"
#include "otarig/drivers/net/fault_spec.hpp"
#include "otarig/drivers/net/tls.hpp"

namespace otarig::drivers::net {

/// One thing the proxy did to a connection.
struct FaultEvent {
  std::uint64_t seq = 0;             ///< 1-based, in the order events were made
  std::chrono::nanoseconds time{0};  ///< proxy clock
  std::uint64_t connection = 0;      ///< 1-based since the fault spec was set
  /// Which set_faults() the connection was accepted under (0: the spec the
  /// proxy started with, then 1, 2, ...).
  std::uint64_t generation = 0;
  Direction direction = Direction::down;
  /// Offset in the stream delivered in `direction` (bytes of it before this point).
  std::uint64_t offset = 0;
  /// open, close, upstream-failed, corrupt, truncate, reset, stall, endless,
  /// replay, impostor, client-certificate, certificate, outage (connection 0:
  /// the outage begins or ends; else what the outage did to that connection).
  std::string kind;
  std::vector<std::uint8_t> before;  ///< corrupt: the bytes as the sender sent them
  std::vector<std::uint8_t> after;   ///< corrupt: the bytes as delivered
  std::string detail;
};
/// {"seq","time_ns","connection","generation","direction","offset","kind","before","after","detail"};
/// bytes as lowercase hex.
nlohmann::json to_json(const FaultEvent& event);

struct ProxyStats {
  std::uint64_t connections = 0;
  std::uint64_t bytes_up = 0;    ///< delivered to the upstream
  std::uint64_t bytes_down = 0;  ///< delivered to clients
  std::uint64_t events = 0;
  std::uint64_t events_dropped = 0;  ///< beyond ProxyOptions::max_events
};

/// `bytes` bytes of `direction` on `connection` have been delivered.
struct BytesPassed {
  std::uint64_t connection = 0;
  Direction direction = Direction::down;
  std::uint64_t bytes = 0;
};
using BytesCallback = std::function<void(const BytesPassed&)>;

/// A byte string the proxy looks for in what the server sends to the
/// device: the plaintext marker of an encrypted release (docs/network.md,
/// "Plaintext watch").
struct WatchedBytes {
  std::string name;  ///< what it is, for the evidence (a release's name)
  std::vector<std::uint8_t> bytes;
};

/// Where a watched byte string crossed the proxy: the offset of its first
/// byte in the server's application stream to the device on `connection`.
struct Sighting {
  std::string name;
  std::uint64_t connection = 0;
  std::uint64_t offset = 0;
};

/// What the plaintext watch saw since it was set (FaultProxy::watch_plaintext).
struct PlaintextScan {
  std::vector<Sighting> sightings;  ///< the first of each name on each connection
  /// Connections whose server bytes the proxy read as the application's
  /// (plain TCP, or TLS it terminated).
  std::uint64_t scanned = 0;
  /// Connections relayed as TLS the proxy did not terminate: their bytes
  /// are TLS records, and nothing can be said of what they carry.
  std::uint64_t opaque = 0;
  std::uint64_t bytes = 0;  ///< server bytes scanned
};

struct ProxyOptions {
  std::string listen_address = "127.0.0.1";
  std::uint16_t listen_port = 0;  ///< 0: ephemeral, see FaultProxy::port()
  std::string upstream_host = "127.0.0.1";
  std::uint16_t upstream_port = 0;
  FaultSpec faults;
  std::uint64_t seed = 0;
  /// Per direction of each connection; one read fills at most this much.
  std::size_t buffer_size = 256 * 1024;
  /// io_context threads; connections are spread over them (each on a strand).
  unsigned threads = 1;
  /// After it has run a handler, how long a proxy thread keeps polling its
  /// sockets without blocking before it sleeps in epoll again. A reply that
  /// comes back within the window (the upstream answering a request, the
  /// client's next request) is relayed without first waking the thread,
  /// which on a virtual CPU costs tens of microseconds. An idle proxy spins
  /// once for the window and then sleeps. 0: block at once.
  std::chrono::microseconds spin{100};
  /// Deadline of connecting to the upstream and of the impostor's handshake.
  std::chrono::milliseconds connect_timeout{5000};
  /// The impostor's certificate. Unset: one signed by a freshly generated,
  /// unrelated CA (TestPki::impostor).
  std::optional<TlsConfig> impostor;
  /// After the impostor has terminated a client's TLS, the proxy talks to the
  /// upstream in TLS (true) or in plain TCP (false). It does not verify the
  /// upstream; `upstream_client` is the certificate it presents (mutual TLS).
  bool upstream_tls = true;
  TlsConfig upstream_client;
  /// The update server's own certificate and its client CA (`peer_ca_pem`),
  /// for ask-client-cert: the proxy terminates the client's TLS as the
  /// server would, asks for a client certificate without requiring one, and
  /// logs whether one was presented. Unset: ask-client-cert connections are
  /// closed with an event saying so.
  std::optional<TlsConfig> server_identity;
  /// Other certificates for the update server's names, by the names a
  /// `certificate=NAME` rule takes (expired, not-yet-valid, renewed,
  /// rotated-ca; TestPki makes them). The proxy terminates the client's TLS
  /// with one of them as the server would (asking the client certificate
  /// `server_identity` asks for), then relays. A name without one: the
  /// connection is closed with an event saying so.
  std::map<std::string, TlsConfig> server_certificates;
  /// The upstream speaks TLS itself: a connection the proxy relays without
  /// terminating it carries TLS records the plaintext watch cannot read
  /// (PlaintextScan::opaque).
  bool upstream_is_tls = false;
  /// Events beyond this are counted but not kept.
  std::size_t max_events = 100000;
  /// Bytes recorded per connection and direction for replay.
  std::size_t max_recording = 16 * 1024 * 1024;
  /// Time of events and of throttle/latency/slice pacing; SteadyClock when
  /// null. With a manual clock, paced bytes move only as the clock is advanced.
  const Clock* clock = nullptr;
  /// Called on the proxy thread for every event as it is made.
  std::function<void(const FaultEvent&)> on_event;
};

class FaultProxy {
 public:
  explicit FaultProxy(ProxyOptions options);
  /// Stops the proxy.
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  /// Resolves the upstream, binds, and starts the io_context threads. Throws
  /// BenchError when it cannot listen or resolve.
  void start();
  /// Closes the listener and every connection; joins the threads. Idempotent.
  void stop();
  std::uint16_t port() const;

  /// Faults for connections accepted from now on (a trial's schedule):
  /// connection numbers restart at 1, recordings start empty, and the
  /// generation of events goes up by one. Connections already open keep the
  /// faults they started with. An empty spec only clears the faults: the
  /// generation, the numbering and the recordings go on.
  void set_faults(FaultSpec spec, std::uint64_t seed);
  /// Starts a trial's schedule with no faults: the generation goes up by
  /// one, connection numbers restart at 1 and recordings start empty, as
  /// set_faults() with faults does. A connection still open from an earlier
  /// trial (a device that hung on a slow body) logs its close into the old
  /// generation, which take_events() drops.
  void new_schedule();
  /// Calls `callback` once `bytes` bytes of `direction` have been delivered on
  /// `connection` (0: on every connection), before any further byte of that
  /// direction is. The callback runs on a proxy thread and that direction waits
  /// for it to return. Applies to connections accepted after the call.
  void on_bytes(std::uint64_t connection, Direction direction, std::uint64_t bytes, BytesCallback callback);
  void clear_watches();

  /// Looks for each of `watched` in the bytes the server sends on
  /// connections accepted from now on, as the application reads them: in a
  /// streaming search over each connection's whole stream (a match split
  /// across reads included), in memory bounded by the watched bytes. Resets
  /// the scan; an empty list stops watching.
  void watch_plaintext(std::vector<WatchedBytes> watched);
  /// What the watch saw since it was set or last taken (the counts restart).
  PlaintextScan take_plaintext_scan();

  /// Every event logged so far, whatever its generation.
  std::vector<FaultEvent> events() const;
  /// The events of connections accepted since the last set_faults() with
  /// faults (the current generation: clearing the faults keeps it, and the
  /// connection numbering with it); the log starts empty again. Events of connections
  /// from an earlier schedule (one still open when a trial ended logs its
  /// close later) are dropped, so a trial's evidence holds its own
  /// connections only.
  std::vector<FaultEvent> take_events();
  ProxyStats stats() const;
  /// What the upstream (down) or client (up) sent on `connection` of the
  /// current spec, when a replay rule names that connection as its source.
  std::vector<std::uint8_t> recording(std::uint64_t connection, Direction direction) const;

  /// Opaque; public only so the implementation's helpers can name it.
  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

/// `otarig proxy`.
struct ProxyMainOptions {
  std::string listen = "127.0.0.1:0";  ///< "PORT" or "ADDRESS:PORT"
  std::string upstream;                ///< "HOST:PORT"
  std::string fault;                   ///< fault spec text; empty: none
  std::uint64_t seed = 0;
  unsigned threads = 1;
  std::size_t buffer_size = 256 * 1024;
  std::chrono::microseconds spin{100};  ///< ProxyOptions::spin
  std::filesystem::path impostor_cert, impostor_key;  ///< default: generated
  bool upstream_tls = true;
  bool print_events = true;
};
/// Proxies until SIGINT or SIGTERM. Prints "listening on ADDRESS:PORT" and,
/// with print_events, one JSON line per event to `out`. Returns 0 after a
/// signal; throws InputError for bad options (a bad fault spec names the
/// column) and BenchError when it cannot listen.
int proxy_main(const ProxyMainOptions& options, std::ostream& out);

}  // namespace otarig::drivers::net
