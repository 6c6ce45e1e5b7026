// The update server: Boost.Beast HTTP/1.1 over plain TCP or TLS, one
// io_context thread, a deadline on every operation.
#include "otarig/drivers/net/http_server.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <fstream>
#include <map>
#include <mutex>
#include <ostream>
#include <stdexcept>
#include <thread>

#include "otarig/core/crypto.hpp"
#include "otarig/core/errors.hpp"
#include "tls_context.hpp"

namespace otarig::drivers::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using Bytes = std::vector<std::uint8_t>;

namespace {

constexpr std::size_t kFileChunk = 256 * 1024;
constexpr std::size_t kMemoryChunk = 256 * 1024;
constexpr std::size_t kEndlessChunk = 64 * 1024;
constexpr std::uint32_t kHeaderLimit = 16 * 1024;
constexpr std::uint64_t kRequestBodyLimit = 1024 * 1024;

struct FileHandle {
  int fd = -1;
  explicit FileHandle(int f) : fd(f) {}
  ~FileHandle() {
    if (fd >= 0) ::close(fd);
  }
  FileHandle(const FileHandle&) = delete;
  FileHandle& operator=(const FileHandle&) = delete;
};

// What a path resolves to: bytes in memory or an open file, kept alive by `keep`.
struct Blob {
  std::shared_ptr<const Bytes> memory;
  std::shared_ptr<FileHandle> file;
  std::uint64_t size = 0;
};

bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}

// Origin-form target -> decoded path without query. Empty optional when the
// target is malformed or tries to leave the repository.
std::optional<std::string> decode_target(std::string_view target) {
  std::string_view raw = target.substr(0, target.find_first_of("?#"));
  if (!raw.starts_with('/')) return std::nullopt;
  std::string path;
  path.reserve(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    if (c == '%') {
      if (i + 2 >= raw.size()) return std::nullopt;
      if (!is_hex(raw[i + 1]) || !is_hex(raw[i + 2])) return std::nullopt;
      c = static_cast<char>(hex_value(raw[i + 1]) * 16 + hex_value(raw[i + 2]));
      i += 2;
    }
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || c == '\\') return std::nullopt;
    path += c;
  }
  std::size_t pos = 1;
  while (pos <= path.size()) {
    std::size_t end = path.find('/', pos);
    if (end == std::string::npos) end = path.size();
    std::string_view seg = std::string_view(path).substr(pos, end - pos);
    if (seg == "." || seg == ".." || (seg.empty() && end != path.size())) return std::nullopt;
    pos = end + 1;
  }
  return path;
}

std::string content_type(std::string_view path) {
  if (path.ends_with(".json")) return "application/json";
  if (path.ends_with(".txt")) return "text/plain; charset=utf-8";
  return "application/octet-stream";
}

std::string image_path(const std::string& name) { return "/images/" + name + ".bin"; }
std::string manifest_path(const std::string& name) { return "/manifests/" + name + ".json"; }

bool parse_u64(std::string_view s, std::uint64_t& out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// `pattern` with "*" segments (each matches any one segment) against a decoded path.
bool path_matches(std::string_view pattern, std::string_view path) {
  while (true) {
    const auto pe = pattern.find('/', 1);
    const auto qe = path.find('/', 1);
    const auto ps = pattern.substr(0, pe);
    const auto qs = path.substr(0, qe);
    if (ps != qs && !(ps == "/*" && qs.size() > 1)) return false;
    if (pe == std::string_view::npos || qe == std::string_view::npos) return pe == qe;
    pattern.remove_prefix(pe);
    path.remove_prefix(qe);
  }
}

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// The seeded bytes of an endless body, from its offset `at` (a function of
// seed and offset only).
void endless_bytes(std::uint64_t seed, std::uint64_t at, std::uint8_t* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t off = at + i;
    out[i] = static_cast<std::uint8_t>(splitmix64(seed ^ (off / 8) * 0x2545f4914f6cdd1dULL) >> (8 * (off % 8)));
  }
}

class SessionBase {
 public:
  virtual ~SessionBase() = default;
  virtual void abort() = 0;
};

}  // namespace

bool valid_release_name(std::string_view name) {
  if (name.empty() || name.size() > 64 || name == "." || name == "..") return false;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
          c == '-'))
      return false;
  return true;
}

RangeStatus parse_range(std::string_view header, std::uint64_t size, ByteRange& range) {
  std::string_view h = trim_ows(header);
  if (h.size() < 6) return RangeStatus::full;
  for (std::size_t i = 0; i < 5; ++i)
    if (static_cast<char>(std::tolower(static_cast<unsigned char>(h[i]))) != "bytes"[i]) return RangeStatus::full;
  h.remove_prefix(5);
  h = trim_ows(h);
  if (!h.starts_with('=')) return RangeStatus::full;
  h = trim_ows(h.substr(1));
  if (h.find(',') != std::string_view::npos) return RangeStatus::full;
  std::size_t dash = h.find('-');
  if (dash == std::string_view::npos) return RangeStatus::full;
  std::string_view a = trim_ows(h.substr(0, dash));
  std::string_view b = trim_ows(h.substr(dash + 1));
  std::uint64_t first = 0;
  std::uint64_t last = 0;
  if (a.empty()) {  // suffix: the last n bytes
    std::uint64_t n = 0;
    if (!parse_u64(b, n)) return RangeStatus::full;
    if (n == 0 || size == 0) return RangeStatus::unsatisfiable;
    range = {size - std::min(n, size), size - 1};
    return RangeStatus::partial;
  }
  if (!parse_u64(a, first)) return RangeStatus::full;
  if (b.empty()) {
    last = UINT64_MAX;
  } else if (!parse_u64(b, last) || last < first) {
    return RangeStatus::full;
  }
  if (first >= size) return RangeStatus::unsatisfiable;
  range = {first, std::min(last, size - 1)};
  return RangeStatus::partial;
}

RangeAnswer parse_ranges(std::string_view header, std::uint64_t size) {
  RangeAnswer out;
  std::string_view h = trim_ows(header);
  if (h.size() < 6) return out;
  for (std::size_t i = 0; i < 5; ++i)
    if (static_cast<char>(std::tolower(static_cast<unsigned char>(h[i]))) != "bytes"[i]) return out;
  h.remove_prefix(5);
  h = trim_ows(h);
  if (!h.starts_with('=')) return out;
  h = h.substr(1);
  std::size_t members = 0;
  bool any = false;
  while (true) {
    const std::size_t comma = h.find(',');
    std::string_view spec = trim_ows(h.substr(0, comma));
    if (!spec.empty()) {  // empty list elements are allowed (RFC 9110 5.6.1)
      any = true;
      if (++members > kMaxRanges) {
        out = RangeAnswer{RangeAnswer::Kind::unsatisfiable, {},
                          "range abuse: more than " + std::to_string(kMaxRanges) + " ranges"};
        return out;
      }
      const std::size_t dash = spec.find('-');
      if (dash == std::string_view::npos) return RangeAnswer{};
      std::string_view a = trim_ows(spec.substr(0, dash));
      std::string_view b = trim_ows(spec.substr(dash + 1));
      if (a.empty()) {  // suffix: the last n bytes
        std::uint64_t n = 0;
        if (!parse_u64(b, n)) return RangeAnswer{};
        if (n > 0 && size > 0) out.ranges.push_back({size - std::min(n, size), size - 1});
      } else {
        std::uint64_t first = 0, last = UINT64_MAX;
        if (!parse_u64(a, first)) return RangeAnswer{};
        if (!b.empty() && (!parse_u64(b, last) || last < first)) return RangeAnswer{};
        if (first < size) out.ranges.push_back({first, std::min(last, size - 1)});
      }
    }
    if (comma == std::string_view::npos) break;
    h.remove_prefix(comma + 1);
  }
  if (!any) return RangeAnswer{};
  if (out.ranges.empty()) {
    out.kind = RangeAnswer::Kind::unsatisfiable;
    out.why = "no satisfiable range";
    return out;
  }
  if (out.ranges.size() == 1) {
    out.kind = RangeAnswer::Kind::single;
    return out;
  }
  // Abuse (RFC 9110 14.2: a server may reject overlapping ranges): more
  // bytes in all than the body has, or a byte three ranges ask for.
  std::uint64_t asked = 0;
  for (const auto& r : out.ranges) asked += r.last - r.first + 1;
  auto refuse = [&](std::string why) {
    out.kind = RangeAnswer::Kind::unsatisfiable;
    out.ranges.clear();
    out.why = "range abuse: " + std::move(why);
    return out;
  };
  if (asked > size)
    return refuse(std::to_string(out.ranges.size()) + " ranges ask for " + std::to_string(asked) +
                  " bytes of a " + std::to_string(size) + "-byte body");
  auto sorted = out.ranges;
  std::sort(sorted.begin(), sorted.end(), [](const ByteRange& x, const ByteRange& y) { return x.first < y.first; });
  for (std::size_t i = 0; i + 2 < sorted.size(); ++i)
    if (sorted[i + 2].first <= std::min(sorted[i].last, sorted[i + 1].last))
      return refuse("three ranges overlap at byte " + std::to_string(sorted[i + 2].first));
  out.kind = RangeAnswer::Kind::multipart;
  return out;
}

MultipartLayout multipart_layout(const std::vector<ByteRange>& ranges, std::uint64_t size, std::string_view type,
                                 std::string_view boundary) {
  MultipartLayout m;
  m.boundary = std::string(boundary);
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    const auto& r = ranges[i];
    std::string head = i == 0 ? "" : "\r\n";
    head += "--" + m.boundary + "\r\nContent-Type: " + std::string(type) + "\r\nContent-Range: bytes " +
            std::to_string(r.first) + "-" + std::to_string(r.last) + "/" + std::to_string(size) + "\r\n\r\n";
    m.length += head.size() + (r.last - r.first + 1);
    m.heads.push_back(std::move(head));
  }
  m.heads.push_back("\r\n--" + m.boundary + "--\r\n");
  m.length += m.heads.back().size();
  return m;
}

nlohmann::json to_json(const RequestRecord& r) {
  return nlohmann::json{{"seq", r.seq},     {"connection", r.connection}, {"time_ns", r.time.count()},
                        {"method", r.method}, {"target", r.target},       {"range", r.range},
                        {"status", r.status}, {"bytes", r.bytes},         {"endless", r.endless},
                        {"note", r.note}};
}

struct UpdateServer::Impl {
  // Declared first: destroyed last, after everything its handlers refer to.
  asio::io_context ioc{1};
  ServerOptions options;
  SteadyClock steady;
  const Clock* clock = nullptr;
  std::optional<tcp::acceptor> acceptor;
  std::shared_ptr<ssl::context> tls;
  std::thread thread;
  std::atomic<std::uint16_t> port{0};
  std::atomic<bool> stopping{false};
  std::uint64_t next_connection = 1;  // io thread only
  std::vector<std::weak_ptr<SessionBase>> sessions;  // io thread only

  mutable std::mutex repo_mutex;
  std::map<std::string, std::shared_ptr<const Bytes>, std::less<>> files;
  std::optional<std::string> latest;
  std::vector<std::pair<std::string, EndlessBody>> endless;
  std::vector<std::string> wrong_ranges;
  struct Hook {
    std::uint64_t id = 0;
    std::uint64_t byte = 0;
    BodyByteCallback callback;
  };
  std::map<std::string, Hook, std::less<>> hooks;
  std::uint64_t next_hook = 1;
  std::shared_ptr<const UpdateServer::ApiHandler> api;
  std::string api_prefix = "/api/";

  mutable std::mutex log_mutex;
  std::vector<RequestRecord> log;
  std::uint64_t next_seq = 1;
  ServerStats counters;
  std::map<std::uint64_t, RequestRecord> in_progress;  // by connection

  explicit Impl(ServerOptions o) : options(std::move(o)), clock(options.clock ? options.clock : &steady) {}

  // Only a regular file whose real path stays inside the root is served: a
  // symlink that leads out of the root, a folder, a FIFO, a socket or a device
  // is answered 404. Nothing else is ever opened, and what is opened is opened
  // without blocking (a FIFO swapped in meanwhile cannot stall the io thread)
  // and checked again as the file it turned out to be.
  std::optional<Blob> find_file(const std::string& path) const {
    if (options.root.empty()) return std::nullopt;
    std::error_code ec;
    const auto root = std::filesystem::canonical(options.root, ec);
    if (ec) return std::nullopt;
    const auto real = std::filesystem::canonical(root / std::filesystem::path(path.substr(1)), ec);
    if (ec || !inside(root, real) || !std::filesystem::is_regular_file(real, ec)) return std::nullopt;
    int fd = ::open(real.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY);
    if (fd < 0) return std::nullopt;
    auto handle = std::make_shared<FileHandle>(fd);
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
    const auto opened = std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(fd), ec);
    if (ec || !inside(root, opened)) return std::nullopt;
    return Blob{nullptr, handle, static_cast<std::uint64_t>(st.st_size)};
  }

  static bool inside(const std::filesystem::path& root, const std::filesystem::path& p) {
    auto r = root.begin();
    auto q = p.begin();
    for (; r != root.end(); ++r, ++q)
      if (q == p.end() || *r != *q) return false;
    return q != p.end();
  }

  std::optional<Blob> find(const std::string& requested) const {
    std::string path = requested;
    {
      std::lock_guard lock(repo_mutex);
      if (path == "/manifest.json") {
        if (!latest) return std::nullopt;
        path = manifest_path(*latest);
      }
      if (auto it = files.find(path); it != files.end()) return Blob{it->second, nullptr, it->second->size()};
    }
    return find_file(path);
  }

  std::optional<EndlessBody> endless_for(std::string_view path) const {
    std::lock_guard lock(repo_mutex);
    for (const auto& [pattern, body] : endless)
      if (path_matches(pattern, path)) return body;
    return std::nullopt;
  }

  bool wrong_ranges_for(std::string_view path) const {
    std::lock_guard lock(repo_mutex);
    for (const auto& pattern : wrong_ranges)
      if (path_matches(pattern, path)) return true;
    return false;
  }

  // The armed hook of `path`: (id, byte).
  std::optional<std::pair<std::uint64_t, std::uint64_t>> hook_for(const std::string& path) const {
    std::lock_guard lock(repo_mutex);
    auto it = hooks.find(path);
    if (it == hooks.end()) return std::nullopt;
    return std::make_pair(it->second.id, it->second.byte);
  }

  // Disarms hook `id` of `path` and returns its callback (empty when it was
  // cleared or replaced meanwhile).
  BodyByteCallback take_hook(const std::string& path, std::uint64_t id) {
    std::lock_guard lock(repo_mutex);
    auto it = hooks.find(path);
    if (it == hooks.end() || it->second.id != id) return {};
    auto cb = std::move(it->second.callback);
    hooks.erase(it);
    return cb;
  }

  void progress(const RequestRecord& r) {
    std::lock_guard lock(log_mutex);
    in_progress[r.connection] = r;
  }

  void record(RequestRecord r) {
    {
      std::lock_guard lock(log_mutex);
      in_progress.erase(r.connection);
      r.seq = next_seq++;
      r.time = clock->now();
      if (r.status != 0) ++counters.requests;
      if (r.status == 400) ++counters.bad_requests;
      counters.bytes_sent += r.bytes;
      if (log.size() < options.max_log_records) log.push_back(r);
    }
    if (options.on_record) options.on_record(r);
  }

  void count(std::uint64_t ServerStats::*field) {
    std::lock_guard lock(log_mutex);
    ++(counters.*field);
  }

  void accept();
  void shutdown();
};

namespace {

template <class Stream>
constexpr bool kIsTls = !std::is_same_v<Stream, beast::tcp_stream>;

template <class Stream>
class Session : public SessionBase, public std::enable_shared_from_this<Session<Stream>> {
 public:
  Session(UpdateServer::Impl& server, std::uint64_t id, Stream stream)
      : server_(server), id_(id), stream_(std::move(stream)) {}

  void start() {
    if constexpr (kIsTls<Stream>) {
      deadline();
      stream_.async_handshake(ssl::stream_base::server, [self = this->shared_from_this()](const error_code& ec) {
        if (ec) {
          self->server_.count(&ServerStats::tls_failures);
          self->drop(ec == beast::error::timeout ? "timeout during the TLS handshake"
                                                 : "TLS handshake failed: " + detail::tls_error_text(ec));
          return;
        }
        self->read_request();
      });
    } else {
      read_request();
    }
  }

  void abort() override {
    error_code ec;
    beast::get_lowest_layer(stream_).socket().close(ec);
  }

 private:
  void deadline() { beast::get_lowest_layer(stream_).expires_after(server_.options.timeout); }

  void read_request() {
    if (server_.stopping) return;
    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    parser_->body_limit(kRequestBodyLimit);
    deadline();
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](const error_code& ec, std::size_t) { self->on_request(ec); });
  }

  void on_request(const error_code& ec) {
    if (ec == http::error::end_of_stream || (kIsTls<Stream> && ec == ssl::error::stream_truncated &&
                                             !parser_->got_some())) {
      close();
      return;
    }
    if (ec == beast::error::timeout) {
      server_.count(&ServerStats::timeouts);
      std::string limit = std::to_string(server_.options.timeout.count()) + " ms";
      drop(parser_->got_some() ? "timeout: request incomplete after " + limit : "timeout: no request within " + limit);
      return;
    }
    if (ec) {
      bool parse_error = ec.category() == http::make_error_code(http::error::bad_method).category() &&
                         ec != http::error::partial_message;
      if (parse_error) {
        bad_request(ec.message());
      } else if (ec != asio::error::operation_aborted) {  // aborted: the server is stopping
        drop(parser_->got_some() ? "client went away mid-request: " + ec.message()
                                 : "connection error: " + ec.message());
      }
      return;
    }
    handle(parser_->get());
  }

  void handle(const http::request<http::string_body>& req) {
    record_ = RequestRecord{};
    record_.connection = id_;
    record_.method = std::string(req.method_string());
    record_.target = std::string(req.target());
    if (auto it = req.find(http::field::range); it != req.end()) record_.range = std::string(it->value());
    close_ = !req.keep_alive();
    head_ = {};
    head_.version(req.version());
    head_only_ = req.method() == http::verb::head;
    endless_.reset();
    hook_.reset();
    path_.clear();
    parts_.clear();

    std::shared_ptr<const UpdateServer::ApiHandler> api;
    std::string api_prefix;
    {
      std::lock_guard lock(server_.repo_mutex);
      api = server_.api;
      api_prefix = server_.api_prefix;
    }
    if (api && std::string_view(req.target().data(), req.target().size()).starts_with(api_prefix)) {
      ApiRequest a{std::string(req.method_string()), record_.target, {}, {}, req.body()};
      if (auto it = req.find(http::field::authorization); it != req.end()) a.authorization = std::string(it->value());
      if (auto it = req.find("X-MEN-Signature"); it != req.end()) a.signature = std::string(it->value());
      head_only_ = false;
      auto r = (*api)(a);
      if (!r) {
        send_text(http::status::not_found, "not found\n");
        return;
      }
      send_bytes(static_cast<http::status>(r->status), r->content_type, std::move(r->body));
      return;
    }
    if (!req.body().empty()) {
      bad_request("unexpected body");
      return;
    }
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      head_.set(http::field::allow, "GET, HEAD");
      send_text(http::status::method_not_allowed, "method not allowed\n");
      return;
    }
    std::optional<std::string> path = decode_target(std::string_view(req.target().data(), req.target().size()));
    if (!path) {
      close_ = true;
      record_.note = "bad target";
      send_text(http::status::bad_request, "bad request target\n");
      return;
    }
    std::optional<Blob> blob = server_.find(*path);
    if (!blob) {
      send_text(http::status::not_found, "not found\n");
      return;
    }
    head_.set(http::field::content_type, content_type(*path));
    head_.set(http::field::accept_ranges, "bytes");
    parts_.clear();
    const RangeAnswer answer = record_.range.empty() ? RangeAnswer{} : parse_ranges(record_.range, blob->size);
    if (answer.kind == RangeAnswer::Kind::unsatisfiable) {
      record_.note = answer.why;
      head_.set(http::field::content_range, "bytes */" + std::to_string(blob->size));
      send_text(http::status::range_not_satisfiable, "");
      return;
    }
    if (answer.kind == RangeAnswer::Kind::multipart) {
      // One part a range, in the order asked; the body is made as it is
      // written (at most kMaxRanges part headers are kept).
      path_ = *path;
      const auto boundary =
          "otarig-" + crypto::hex(crypto::sha256(std::string_view(record_.range))).substr(0, 32);
      auto layout = multipart_layout(answer.ranges, blob->size, content_type(*path), boundary);
      head_.result(http::status::partial_content);
      head_.set(http::field::content_type, "multipart/byteranges; boundary=" + boundary);
      record_.note = std::to_string(answer.ranges.size()) + " ranges, multipart/byteranges";
      const bool wrong = server_.wrong_ranges_for(*path);
      for (std::size_t i = 0; i <= answer.ranges.size(); ++i)
        parts_.push_back(Part{std::move(layout.heads[i]),
                              i < answer.ranges.size() ? lied(answer.ranges[i], blob->size, wrong) : 0,
                              i < answer.ranges.size() ? answer.ranges[i].last - answer.ranges[i].first + 1 : 0});
      if (wrong) record_.note += "; wrong ranges: each part's bytes are shifted by one";
      part_ = 0;
      part_done_ = 0;
      blob_ = std::move(*blob);
      body_offset_ = 0;
      body_length_ = layout.length;
      write_head();
      return;
    }
    ByteRange r = answer.kind == RangeAnswer::Kind::single ? answer.ranges.front() : ByteRange{};
    const RangeStatus rs = answer.kind == RangeAnswer::Kind::single ? RangeStatus::partial : RangeStatus::full;
    if (rs == RangeStatus::full) r = {0, blob->size - 1};
    if (rs == RangeStatus::full) endless_ = server_.endless_for(*path);
    if (endless_) close_ = true;  // the body ends with the connection
    if (!head_only_) hook_ = server_.hook_for(*path);
    path_ = *path;
    head_.result(rs == RangeStatus::partial ? http::status::partial_content : http::status::ok);
    if (rs == RangeStatus::partial)
      head_.set(http::field::content_range,
                "bytes " + std::to_string(r.first) + "-" + std::to_string(r.last) + "/" + std::to_string(blob->size));
    if (rs == RangeStatus::partial && server_.wrong_ranges_for(*path)) {
      const auto at = lied(r, blob->size, true);
      if (at != r.first) record_.note = "wrong ranges: the bytes at " + std::to_string(at) + " answer the range asked";
      r.last = at + (r.last - r.first);
      r.first = at;
    }
    blob_ = std::move(*blob);
    body_offset_ = r.first;
    body_length_ = blob_.size == 0 ? 0 : r.last - r.first + 1;
    write_head();
  }

  // Where a range's bytes are read from: its own first byte, or with `wrong`
  // one past it (one before, for a range that ends at the last byte).
  static std::uint64_t lied(const ByteRange& r, std::uint64_t size, bool wrong) {
    if (!wrong) return r.first;
    if (r.last + 1 < size) return r.first + 1;
    return r.first > 0 ? r.first - 1 : r.first;
  }

  void send_text(http::status status, std::string text) {
    send_bytes(status, "text/plain; charset=utf-8", std::move(text));
  }

  void send_bytes(http::status status, const std::string& type, std::string text) {
    parts_.clear();
    head_.result(status);
    if (!type.empty()) head_.set(http::field::content_type, type);
    text_ = std::make_shared<const Bytes>(text.begin(), text.end());
    blob_ = Blob{text_, nullptr, text_->size()};
    body_offset_ = 0;
    body_length_ = text_->size();
    write_head();
  }

  void bad_request(const std::string& why) {
    record_ = RequestRecord{};
    record_.connection = id_;
    record_.note = "malformed request: " + why;
    head_ = {};
    head_.version(11);
    head_only_ = false;
    close_ = true;
    send_text(http::status::bad_request, "bad request: " + why + "\n");
  }

  void write_head() {
    head_.set(http::field::server, "otarig");
    if (!endless_) head_.content_length(body_length_);
    head_.keep_alive(!close_);
    record_.status = static_cast<unsigned>(head_.result_int());
    server_.progress(record_);
    deadline();
    http::async_write(stream_, head_, [self = this->shared_from_this()](const error_code& ec, std::size_t) {
      if (ec) return self->failed_response(ec);
      if (self->head_only_) return self->finish();
      self->write_body();
    });
  }

  // A multipart/byteranges body: each part's head, then its bytes of the blob.
  void write_parts() {
    while (part_ < parts_.size() && part_done_ == parts_[part_].head.size() + parts_[part_].length) {
      ++part_;
      part_done_ = 0;
    }
    if (part_ == parts_.size()) return finish();
    const Part& p = parts_[part_];
    asio::const_buffer buf;
    if (part_done_ < p.head.size()) {
      buf = asio::buffer(p.head.data() + part_done_, p.head.size() - static_cast<std::size_t>(part_done_));
    } else {
      const std::uint64_t done = part_done_ - p.head.size();
      const std::uint64_t want =
          std::min<std::uint64_t>(p.length - done, blob_.memory ? kMemoryChunk : kFileChunk);
      if (!blob_bytes(p.first + done, want, buf)) return;
    }
    deadline();
    asio::async_write(stream_, buf, [self = this->shared_from_this()](const error_code& ec, std::size_t n) {
      self->record_.bytes += n;
      self->part_done_ += n;
      self->server_.progress(self->record_);
      if (ec) return self->failed_response(ec);
      self->write_parts();
    });
  }

  // `want` bytes of the blob at `at` into `buf` (a file is read into chunk_);
  // false (the response aborted) when the file got shorter.
  bool blob_bytes(std::uint64_t at, std::uint64_t want, asio::const_buffer& buf) {
    if (blob_.memory) {
      buf = asio::buffer(blob_.memory->data() + at, static_cast<std::size_t>(want));
      return true;
    }
    chunk_.resize(kFileChunk);
    ssize_t n = ::pread(blob_.file->fd, chunk_.data(), static_cast<std::size_t>(want), static_cast<off_t>(at));
    if (n <= 0) {
      record_.note = "file shorter than when the response began";
      server_.record(record_);
      abort();
      return false;
    }
    buf = asio::buffer(chunk_.data(), static_cast<std::size_t>(n));
    return true;
  }

  void write_body() {
    if (!parts_.empty()) return write_parts();
    std::uint64_t remaining = body_length_ - record_.bytes;
    if (remaining == 0) return endless_ ? write_endless() : finish();
    std::uint64_t at = body_offset_ + record_.bytes;
    std::uint64_t want = std::min<std::uint64_t>(remaining, blob_.memory ? kMemoryChunk : kFileChunk);
    if (hook_ && hook_->second >= at && hook_->second < at + want) {
      if (hook_->second == at) {
        // Every byte before the hooked one has been written: run the hook now,
        // before any more of the body goes.
        const auto [id, byte] = *hook_;
        hook_.reset();
        if (auto callback = server_.take_hook(path_, id)) {
          callback(BodyByte{id_, record_.method, record_.target, record_.range, byte, body_offset_, kIsTls<Stream>});
          if (server_.stopping) return;
        }
      } else {
        want = hook_->second - at;  // up to the hooked byte, then the hook
      }
    }
    asio::const_buffer buf;
    if (!blob_bytes(at, want, buf)) return;
    deadline();
    asio::async_write(stream_, buf, [self = this->shared_from_this()](const error_code& ec, std::size_t n) {
      self->record_.bytes += n;
      self->server_.progress(self->record_);
      if (ec) return self->failed_response(ec);
      self->write_body();
    });
  }

  // After the resource's bytes of an endless body: seeded bytes until the
  // limit or until the client goes away.
  void write_endless() {
    if (record_.note.empty()) {
      record_.note = "endless body: sending";
      server_.progress(record_);
    }
    const std::uint64_t limit = endless_->limit;
    if (limit != 0 && record_.endless >= limit) {
      record_.note = "endless body: " + std::to_string(record_.endless) + " bytes after the resource's " +
                     std::to_string(record_.bytes - record_.endless) + ", the limit; closed";
      return finish();
    }
    std::uint64_t n = kEndlessChunk;
    if (limit != 0) n = std::min<std::uint64_t>(n, limit - record_.endless);
    chunk_.resize(kEndlessChunk);
    endless_bytes(endless_->seed, record_.endless, chunk_.data(), static_cast<std::size_t>(n));
    deadline();
    asio::async_write(stream_, asio::buffer(chunk_.data(), static_cast<std::size_t>(n)),
                      [self = this->shared_from_this()](const error_code& ec, std::size_t sent) {
                        self->record_.bytes += sent;
                        self->record_.endless += sent;
                        self->server_.progress(self->record_);
                        if (ec) return self->failed_response(ec);
                        self->write_endless();
                      });
  }

  void failed_response(const error_code& ec) {
    if (ec == beast::error::timeout) {
      server_.count(&ServerStats::timeouts);
      record_.note = "timeout: client did not take the response within " +
                     std::to_string(server_.options.timeout.count()) + " ms";
    } else {
      record_.note = "client went away during the response: " + ec.message();
    }
    if (endless_ && record_.bytes >= body_length_)
      record_.note = "endless body: the client went away after " + std::to_string(record_.endless) +
                     " bytes after the resource's " + std::to_string(body_length_) + " (" + record_.note + ")";
    server_.record(record_);
    abort();
  }

  void finish() {
    server_.record(record_);
    blob_ = {};
    if (close_) return close();
    read_request();
  }

  // A connection that ends without a response.
  void drop(const std::string& note) {
    RequestRecord r;
    r.connection = id_;
    r.note = note;
    server_.record(std::move(r));
    abort();
  }

  void close() {
    if constexpr (kIsTls<Stream>) {
      deadline();
      stream_.async_shutdown([self = this->shared_from_this()](const error_code&) { self->abort(); });
    } else {
      error_code ec;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
      // Linger briefly for the client's FIN so unread request bytes do not turn
      // the close into a reset that could destroy the response in flight.
      deadline();
      stream_.async_read_some(asio::buffer(drain_), [self = this->shared_from_this()](const error_code&, std::size_t) {
        self->abort();
      });
    }
  }

  UpdateServer::Impl& server_;
  std::uint64_t id_;
  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::empty_body> head_;
  RequestRecord record_;
  Blob blob_;
  std::shared_ptr<const Bytes> text_;
  std::uint64_t body_offset_ = 0;
  std::uint64_t body_length_ = 0;
  bool head_only_ = false;
  bool close_ = false;
  std::optional<EndlessBody> endless_;
  /// A multipart/byteranges response: its parts (head, then `length` blob bytes at `first`).
  struct Part {
    std::string head;
    std::uint64_t first = 0;
    std::uint64_t length = 0;
  };
  std::vector<Part> parts_;
  std::size_t part_ = 0;
  std::uint64_t part_done_ = 0;  ///< bytes of parts_[part_] written
  std::optional<std::pair<std::uint64_t, std::uint64_t>> hook_;  // (id, byte) of the path's hook
  std::string path_;
  std::vector<std::uint8_t> chunk_;
  std::array<char, 512> drain_{};
};

}  // namespace

void UpdateServer::Impl::accept() {
  acceptor->async_accept([this](const error_code& ec, tcp::socket socket) {
    if (ec || stopping) return;
    std::erase_if(sessions, [](const auto& w) { return w.expired(); });
    error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    std::uint64_t id = next_connection++;
    count(&ServerStats::connections);
    if (tls) {
      auto s = std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(
          *this, id, beast::ssl_stream<beast::tcp_stream>(beast::tcp_stream(std::move(socket)), *tls));
      sessions.push_back(s);
      s->start();
    } else {
      auto s = std::make_shared<Session<beast::tcp_stream>>(*this, id, beast::tcp_stream(std::move(socket)));
      sessions.push_back(s);
      s->start();
    }
    accept();
  });
}

void UpdateServer::Impl::shutdown() {
  stopping = true;
  error_code ec;
  if (acceptor) acceptor->close(ec);
  for (auto& w : sessions)
    if (auto s = w.lock()) s->abort();
  sessions.clear();
}

UpdateServer::UpdateServer(ServerOptions options) : impl_(std::make_shared<Impl>(std::move(options))) {}

UpdateServer::~UpdateServer() { stop(); }

void UpdateServer::start() {
  if (impl_->thread.joinable()) throw BenchError("update server: already started");
  if (impl_->options.tls) impl_->tls = detail::make_server_context(*impl_->options.tls);
  error_code ec;
  auto address = asio::ip::make_address(impl_->options.address, ec);
  if (ec) throw InputError("update server: bad listen address '" + impl_->options.address + "'");
  tcp::endpoint endpoint(address, impl_->options.port);
  auto& acc = impl_->acceptor.emplace(impl_->ioc);
  acc.open(endpoint.protocol(), ec);
  if (!ec) acc.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acc.bind(endpoint, ec);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw BenchError("update server: cannot listen on " + impl_->options.address + ":" +
                     std::to_string(impl_->options.port) + ": " + ec.message());
  impl_->port = acc.local_endpoint().port();
  impl_->accept();
  impl_->thread = std::thread([impl = impl_.get()] { impl->ioc.run(); });
}

void UpdateServer::stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  Impl* impl = impl_.get();
  asio::post(impl->ioc, [impl] { impl->shutdown(); });
  asio::post(impl->ioc, [impl] { impl->ioc.stop(); });
  impl->thread.join();
}

std::uint16_t UpdateServer::port() const { return impl_->port; }

std::string UpdateServer::base_url() const {
  std::string host = impl_->options.address;
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return std::string(impl_->options.tls ? "https://" : "http://") + host + ":" + std::to_string(port());
}

void UpdateServer::put(const std::string& path, std::vector<std::uint8_t> bytes) {
  auto decoded = decode_target(path);
  if (!decoded || *decoded != path || path.find_first_of("?#%") != std::string::npos)
    throw InputError("update server: bad path '" + path + "' (absolute, no dot segments, no '?', '#' or '%')");
  auto shared = std::make_shared<const Bytes>(std::move(bytes));
  std::lock_guard lock(impl_->repo_mutex);
  impl_->files[path] = std::move(shared);
}

void UpdateServer::remove(const std::string& path) {
  std::lock_guard lock(impl_->repo_mutex);
  impl_->files.erase(path);
}

Manifest UpdateServer::add_release(const Release& release) {
  if (!valid_release_name(release.name)) throw InputError("release name '" + release.name + "': use [A-Za-z0-9._-]");
  Manifest m = make_manifest(release.name, release.version, release.security_counter, release.image,
                             image_path(release.name));
  std::string text = to_json_text(m);
  put(image_path(release.name), release.image);
  put(manifest_path(release.name), Bytes(text.begin(), text.end()));
  return m;
}

void UpdateServer::set_latest(const std::string& name) {
  if (!valid_release_name(name)) throw InputError("release name '" + name + "': use [A-Za-z0-9._-]");
  bool in_memory = false;
  {
    std::lock_guard lock(impl_->repo_mutex);
    in_memory = impl_->files.count(manifest_path(name)) != 0;
  }
  if (!in_memory && !impl_->find_file(manifest_path(name)))
    throw InputError("update server: no manifest for release '" + name + "' (" + manifest_path(name) + ")");
  std::lock_guard lock(impl_->repo_mutex);
  impl_->latest = name;
}

void UpdateServer::clear_latest() {
  std::lock_guard lock(impl_->repo_mutex);
  impl_->latest.reset();
}

std::optional<std::string> UpdateServer::latest() const {
  std::lock_guard lock(impl_->repo_mutex);
  return impl_->latest;
}

void UpdateServer::set_endless(const std::string& path, EndlessBody body) {
  if (path.empty() || path.front() != '/') throw InputError("update server: endless body: bad path '" + path + "'");
  std::lock_guard lock(impl_->repo_mutex);
  for (auto& [p, b] : impl_->endless)
    if (p == path) {
      b = body;
      return;
    }
  impl_->endless.emplace_back(path, body);
}

void UpdateServer::clear_endless() {
  std::lock_guard lock(impl_->repo_mutex);
  impl_->endless.clear();
}

void UpdateServer::set_wrong_ranges(const std::string& path) {
  if (path.empty() || path.front() != '/') throw InputError("update server: wrong ranges: bad path '" + path + "'");
  std::lock_guard lock(impl_->repo_mutex);
  if (std::find(impl_->wrong_ranges.begin(), impl_->wrong_ranges.end(), path) == impl_->wrong_ranges.end())
    impl_->wrong_ranges.push_back(path);
}

void UpdateServer::clear_wrong_ranges() {
  std::lock_guard lock(impl_->repo_mutex);
  impl_->wrong_ranges.clear();
}

void UpdateServer::on_body_byte(const std::string& path, std::uint64_t byte, BodyByteCallback callback) {
  std::lock_guard lock(impl_->repo_mutex);
  impl_->hooks[path] = Impl::Hook{impl_->next_hook++, byte, std::move(callback)};
}

void UpdateServer::clear_body_hooks() {
  std::map<std::string, Impl::Hook, std::less<>> gone;
  {
    std::lock_guard lock(impl_->repo_mutex);
    gone.swap(impl_->hooks);
  }
}

void UpdateServer::set_api(ApiHandler handler, std::string prefix) {
  if (prefix.empty() || prefix.front() != '/') throw std::invalid_argument("an API's path prefix starts with '/'");
  auto h = handler ? std::make_shared<const ApiHandler>(std::move(handler)) : nullptr;
  std::lock_guard lock(impl_->repo_mutex);
  impl_->api = std::move(h);
  impl_->api_prefix = std::move(prefix);
}

std::vector<RequestRecord> UpdateServer::responses_in_progress() const {
  std::lock_guard lock(impl_->log_mutex);
  std::vector<RequestRecord> out;
  for (const auto& [connection, r] : impl_->in_progress) out.push_back(r);
  return out;
}

std::vector<RequestRecord> UpdateServer::request_log() const {
  std::lock_guard lock(impl_->log_mutex);
  return impl_->log;
}

std::vector<RequestRecord> UpdateServer::take_request_log() {
  std::lock_guard lock(impl_->log_mutex);
  return std::exchange(impl_->log, {});
}

ServerStats UpdateServer::stats() const {
  std::lock_guard lock(impl_->log_mutex);
  return impl_->counters;
}

Manifest write_release(const std::filesystem::path& root, const Release& release) {
  if (!valid_release_name(release.name)) throw InputError("release name '" + release.name + "': use [A-Za-z0-9._-]");
  Manifest m = make_manifest(release.name, release.version, release.security_counter, release.image,
                             image_path(release.name));
  auto write = [](const std::filesystem::path& file, const void* data, std::size_t size) {
    std::filesystem::create_directories(file.parent_path());
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
    if (!out) throw BenchError("cannot write " + file.string());
  };
  write(root / "images" / (release.name + ".bin"), release.image.data(), release.image.size());
  std::string text = to_json_text(m);
  write(root / "manifests" / (release.name + ".json"), text.data(), text.size());
  return m;
}

int serve_main(const ServeOptions& o, std::ostream& out) {
  if (o.root.empty()) throw InputError("serve: --root is required");
  if (!std::filesystem::is_directory(o.root)) throw InputError("serve: --root " + o.root.string() + ": not a directory");
  if (o.tls_cert.empty() != o.tls_key.empty()) throw InputError("serve: --tls-cert and --tls-key go together");
  if (!o.client_ca.empty() && o.tls_cert.empty()) throw InputError("serve: --client-ca needs --tls-cert and --tls-key");
  ServerOptions so;
  so.address = o.address;
  so.port = o.port;
  so.root = o.root;
  so.timeout = o.timeout;
  if (!o.tls_cert.empty()) so.tls = TlsConfig::from_files(o.tls_cert, o.tls_key, o.client_ca);
  std::mutex out_mutex;
  so.on_record = [&](const RequestRecord& r) {
    std::lock_guard lock(out_mutex);
    out << to_json(r).dump() << std::endl;
  };
  UpdateServer server(std::move(so));
  if (!o.latest.empty()) server.set_latest(o.latest);
  for (const auto& path : o.wrong_ranges) server.set_wrong_ranges(path);
  // The signal handler (any thread may take the signal) wakes this io_context.
  asio::io_context signals_ioc(1);
  asio::signal_set signals(signals_ioc, SIGINT, SIGTERM);
  server.start();
  {
    std::lock_guard lock(out_mutex);
    out << "listening on " << server.base_url() << std::endl;
  }
  signals.async_wait([&](const error_code&, int) {});
  signals_ioc.run();
  server.stop();
  return 0;
}

}  // namespace otarig::drivers::net
