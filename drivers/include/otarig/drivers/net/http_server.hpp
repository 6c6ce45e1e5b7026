#pragma once
// The update server: HTTP/1.1 (optionally TLS or mutual TLS) over a release
// repository, for devices that download their updates. Boost.Beast lives in
// the .cpp; this header is cheap to include.
//
//   GET/HEAD /manifest.json          manifest of the release set by set_latest()
//   GET/HEAD /manifests/NAME.json    manifest of release NAME
//   GET/HEAD /images/NAME.bin        image of release NAME
//   GET/HEAD /any/other/path         a file put() in memory, or under `root`
//   any      PREFIX...                the API handler set_api() installed (Mender's device API
//                                     under /api/, hawkBit's DDI under /TENANT/controller/)
//
// Single byte ranges (206, 416), keep-alive, 400 for malformed requests (then
// the connection closes), 404, 405. Every read, write and TLS handshake has a
// deadline. On purpose, per path: an endless body (set_endless), and a call
// back when a chosen body byte is about to be sent (on_body_byte). See
// docs/network.md.
#include <nlohmann/json_fwd.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "otarig/core/clock.hpp"
#include "otarig/drivers/net/manifest.hpp"
#include "otarig/drivers/net/device_api.hpp"
#include "otarig/drivers/net/tls.hpp"

namespace otarig::drivers::net {

/// One line of the request log: a response sent, or a connection dropped.
struct RequestRecord {
  std::uint64_t seq = 0;         ///< 1-based, in the order records were made
  std::uint64_t connection = 0;  ///< 1-based, in accept order
  std::chrono::nanoseconds time{0};  ///< server clock when the record was made
  std::string method;            ///< empty when no request could be parsed
  std::string target;
  std::string range;             ///< the Range header as sent, empty when none
  unsigned status = 0;           ///< 0: no response (timeout, client gone, TLS failure)
  std::uint64_t bytes = 0;       ///< body bytes written to the client
  /// Of `bytes`, the seeded bytes an endless body sent after the resource's
  /// own (set_endless); 0 for every other response.
  std::uint64_t endless = 0;
  std::string note;              ///< why a request failed or was cut short
};
nlohmann::json to_json(const RequestRecord& record);

struct ServerStats {
  std::uint64_t connections = 0;
  std::uint64_t requests = 0;      ///< responses sent, any status
  std::uint64_t bytes_sent = 0;    ///< body bytes
  std::uint64_t bad_requests = 0;  ///< 400s
  std::uint64_t timeouts = 0;      ///< connections dropped at a deadline
  std::uint64_t tls_failures = 0;  ///< failed handshakes
};

struct ServerOptions {
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;  ///< 0: an ephemeral port, see UpdateServer::port()
  /// Files under `root` are served when no in-memory entry has the path.
  /// Empty: memory only.
  std::filesystem::path root;
  /// Set: HTTPS; with `peer_ca_pem`, clients must present a certificate.
  std::optional<TlsConfig> tls;
  /// Deadline of every read (a whole request, including waiting for it on a
  /// kept-alive connection), write and TLS handshake. A client that is silent
  /// or slower than this is dropped.
  std::chrono::milliseconds timeout{30000};
  /// Records beyond this are counted but not kept.
  std::size_t max_log_records = 100000;
  /// Time stamps of the request log; a SteadyClock when null. Deadlines run
  /// on real time.
  const Clock* clock = nullptr;
  /// Called on the server thread for every record as it is made.
  std::function<void(const RequestRecord&)> on_record;
};

/// The endless-data attack at the HTTP level: a GET for the resource is
/// answered 200 without Content-Length and with `Connection: close` (a body
/// that ends when the connection does), and after the resource's own bytes
/// come seeded bytes until `limit` of them were sent (0: until the client
/// goes away), then the server closes. Ranges (206) are answered as usual.
struct EndlessBody {
  std::uint64_t limit = 0;
  std::uint64_t seed = 0;
  bool operator==(const EndlessBody&) const = default;
};

/// Body byte `byte` of `path` is the next byte a response is to send.
struct BodyByte {
  std::uint64_t connection = 0;  ///< 1-based accept order
  std::string method;            ///< GET
  std::string target;            ///< as the client sent it
  std::string range;             ///< the Range header, empty when none
  std::uint64_t byte = 0;        ///< offset in the resource (from 0)
  std::uint64_t first = 0;       ///< offset of the response's first body byte (a Range's start)
  bool tls = false;              ///< the connection is TLS (the count is of plaintext bytes)
};
using BodyByteCallback = std::function<void(const BodyByte&)>;

/// Whether `name` can name a release: 1..64 of [A-Za-z0-9._-], not "." or "..".
bool valid_release_name(std::string_view name);

/// A release as the server publishes it.
struct Release {
  std::string name;
  std::string version;  ///< "1.2.3" or "1.2.3+4"
  std::uint32_t security_counter = 0;
  std::vector<std::uint8_t> image;
};

/// The inclusive byte range a Range header selects.
struct ByteRange {
  std::uint64_t first = 0;
  std::uint64_t last = 0;
};
enum class RangeStatus {
  full,           ///< no usable single range: send the whole body (200)
  partial,        ///< send `range` (206)
  unsatisfiable,  ///< 416
};
/// Interprets a Range header value for a body of `size` bytes. Only one
/// "bytes=" range is honoured; other units, several ranges and malformed
/// values are ignored (RFC 9110 14.2).
RangeStatus parse_range(std::string_view header, std::uint64_t size, ByteRange& range);

/// The most ranges one request may ask for; more is refused (416).
inline constexpr std::size_t kMaxRanges = 256;
/// How the server answers a Range header (RFC 9110 14.2, 15.3.7, 14.6).
struct RangeAnswer {
  enum class Kind {
    full,           ///< no usable range set (another unit, bad syntax): the whole body (200)
    single,         ///< one satisfiable range: 206 with Content-Range
    multipart,      ///< several: 206 multipart/byteranges, one part each, in the order asked
    unsatisfiable,  ///< 416: none satisfiable, or refused as abuse (`why`)
  };
  Kind kind = Kind::full;
  std::vector<ByteRange> ranges;  ///< the satisfiable ranges, in the order asked (at most kMaxRanges)
  std::string why;                ///< unsatisfiable: what was refused
};
/// Interprets a Range header value for a body of `size` bytes, with every
/// range of a "bytes=" range set. Unsatisfiable members are dropped; none
/// left is 416. Abuse is refused with 416 and a reason: more than
/// kMaxRanges ranges (counted without keeping them), ranges that ask for more
/// bytes in all than the body has, or a byte asked for by more than two
/// ranges. A malformed set or another unit is ignored (200).
RangeAnswer parse_ranges(std::string_view header, std::uint64_t size);

/// The multipart/byteranges body of `ranges` of a `size`-byte resource:
/// for each range its delimiter and headers (Content-Type `type`,
/// Content-Range), then the closing delimiter. `heads[i]` goes before range
/// i's bytes, `heads.back()` after the last one.
struct MultipartLayout {
  std::string boundary;
  std::vector<std::string> heads;  ///< ranges.size() + 1
  std::uint64_t length = 0;        ///< the whole body's bytes
};
MultipartLayout multipart_layout(const std::vector<ByteRange>& ranges, std::uint64_t size, std::string_view type,
                                 std::string_view boundary);

class UpdateServer {
 public:
  explicit UpdateServer(ServerOptions options = {});
  /// Stops the server.
  ~UpdateServer();
  UpdateServer(const UpdateServer&) = delete;
  UpdateServer& operator=(const UpdateServer&) = delete;

  /// Binds and starts serving on a thread of its own. Throws BenchError when
  /// the address cannot be bound and InputError for bad TLS material.
  void start();
  /// Closes the listener and every connection, joins the thread. Idempotent.
  void stop();
  std::uint16_t port() const;
  /// "http://127.0.0.1:PORT" or "https://...".
  std::string base_url() const;

  /// Serves `bytes` at `path` ("/dir/file"); replaces an earlier entry.
  void put(const std::string& path, std::vector<std::uint8_t> bytes);
  void remove(const std::string& path);
  /// Publishes /images/NAME.bin and /manifests/NAME.json; returns the manifest.
  Manifest add_release(const Release& release);
  /// Makes /manifest.json serve /manifests/NAME.json. Throws InputError when
  /// that manifest is neither in memory nor under `root`.
  void set_latest(const std::string& name);
  /// /manifest.json answers 404 again.
  void clear_latest();
  std::optional<std::string> latest() const;

  /// Answers GET requests for `path` with an endless body (EndlessBody).
  /// A `*` segment of `path` matches any one segment
  /// ("/deliveries/*/image.bin"). Replaces an earlier setting for `path`.
  void set_endless(const std::string& path, EndlessBody body);
  void clear_endless();

  /// A server that answers ranges wrongly: every range of a GET for `path`
  /// (a `*` segment matches any one) is answered with the bytes one past the
  /// range it names (one before, for a range that ends at the last byte),
  /// under the Content-Range it was asked for. The request record's note
  /// says so. A range of the whole body is answered rightly (nothing to shift).
  void set_wrong_ranges(const std::string& path);
  void clear_wrong_ranges();

  /// Calls `callback` once, when byte `byte` of the resource at `path`
  /// (decoded, exact) is the next body byte a GET response is to send: every
  /// byte before it has been written to the connection, none from it on.
  /// It runs on the server thread and the response continues only when it
  /// returns (so a callback that cuts a device's power cuts it at exactly
  /// that byte, with keep-alive, ranges and TLS alike). A response that
  /// starts past `byte` or ends before it leaves the hook armed for a later
  /// one. Replaces an earlier hook for `path`.
  void on_body_byte(const std::string& path, std::uint64_t byte, BodyByteCallback callback);
  void clear_body_hooks();

  /// Requests whose target starts with `prefix` go to `handler` (any
  /// method, with their body, at most 1 MiB); it answers them, or nullopt
  /// for 404. Without a handler such paths are files like any other (GET and
  /// HEAD only). Used for a device-management server's API
  /// (DeviceManagementApi::handle: Mender's device API under /api/,
  /// hawkBit's DDI under /TENANT/controller/).
  using ApiHandler = std::function<std::optional<ApiResponse>(const ApiRequest&)>;
  void set_api(ApiHandler handler, std::string prefix = "/api/");

  std::vector<RequestRecord> request_log() const;
  /// Responses being written now (their bytes so far); a response leaves
  /// this list when its record enters the request log.
  std::vector<RequestRecord> responses_in_progress() const;
  /// The log so far; the log starts empty again (per-trial evidence).
  std::vector<RequestRecord> take_request_log();
  ServerStats stats() const;

  /// Opaque; public only so the implementation's helpers can name it.
  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

/// Writes a release in the layout the server serves (ROOT/images/NAME.bin,
/// ROOT/manifests/NAME.json), for `otarig serve --root ROOT`.
Manifest write_release(const std::filesystem::path& root, const Release& release);

/// `otarig serve`.
struct ServeOptions {
  std::filesystem::path root;  ///< required: the directory to serve
  std::string address = "127.0.0.1";
  std::uint16_t port = 8080;   ///< 0: ephemeral (printed)
  std::string latest;          ///< release /manifest.json names; empty: none
  std::filesystem::path tls_cert, tls_key;  ///< both or neither: HTTPS
  std::filesystem::path client_ca;          ///< mutual TLS
  std::chrono::milliseconds timeout{30000};
  std::vector<std::string> wrong_ranges;  ///< paths whose ranges are answered wrongly (set_wrong_ranges)
};
/// Serves until SIGINT or SIGTERM. Prints "listening on URL" and then one JSON
/// line per request record to `out`. Returns 0 after a signal; throws
/// InputError for bad options and BenchError when it cannot listen.
int serve_main(const ServeOptions& options, std::ostream& out);

}  // namespace otarig::drivers::net
