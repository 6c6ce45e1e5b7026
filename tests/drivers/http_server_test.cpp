#include "otarig/drivers/net/http_server.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <future>
#include <system_error>

#include "loopback.hpp"
#include "otarig/core/errors.hpp"

using namespace otarig::drivers::net;
using namespace otarig::test::net;

namespace {

std::vector<std::uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }


class HttpServerTest : public testing::Test {
 protected:
  void SetUp() override { start({}); }

  void start(ServerOptions options) {
    server_.reset();
    if (options.timeout == std::chrono::milliseconds(30000)) options.timeout = std::chrono::milliseconds(2000);
    server_ = std::make_unique<UpdateServer>(std::move(options));
    server_->put("/data.bin", bytes_of(body_));
    server_->start();
  }

  HttpResponse get(const std::string& req, bool head = false) {
    Socket s = Socket::connect(server_->port());
    s.write_all(req);
    return read_response(s, head);
  }

  std::string body_ = pattern(10000, 7);
  std::unique_ptr<UpdateServer> server_;
};

}  // namespace

TEST_F(HttpServerTest, GetReturnsTheExactBytes) {
  HttpResponse r = get(request("GET", "/data.bin"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-length"), "10000");
  EXPECT_EQ(r.header("accept-ranges"), "bytes");
  EXPECT_EQ(r.header("content-type"), "application/octet-stream");
  EXPECT_EQ(r.body, body_);
}

TEST_F(HttpServerTest, HeadSendsHeadersOnly) {
  Socket s = Socket::connect(server_->port());
  s.write_all(request("HEAD", "/data.bin"));
  HttpResponse r = read_response(s, true);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-length"), "10000");
  // Nothing follows the header: the next response on the connection starts at once.
  s.write_all(request("GET", "/data.bin", "Range: bytes=0-1\r\n"));
  HttpResponse next = read_response(s);
  EXPECT_EQ(next.status, 206);
  EXPECT_EQ(next.body, body_.substr(0, 2));
}

struct RangeCase {
  const char* header;
  int status;
  std::uint64_t first, last;  // expected body = body[first, last]
  const char* content_range;
};
class HttpRange : public HttpServerTest, public testing::WithParamInterface<RangeCase> {};

TEST_P(HttpRange, ServesTheRange) {
  const RangeCase& c = GetParam();
  HttpResponse r = get(request("GET", "/data.bin", std::string("Range: ") + c.header + "\r\n"));
  EXPECT_EQ(r.status, c.status);
  EXPECT_EQ(r.header("content-range"), c.content_range);
  if (c.status == 206 || c.status == 200) {
    EXPECT_EQ(r.body, body_.substr(c.first, c.last - c.first + 1));
    EXPECT_EQ(r.header("content-length"), std::to_string(c.last - c.first + 1));
  } else {
    EXPECT_EQ(r.body, "");
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, HttpRange,
    testing::Values(RangeCase{"bytes=0-0", 206, 0, 0, "bytes 0-0/10000"},
                    RangeCase{"bytes=100-199", 206, 100, 199, "bytes 100-199/10000"},
                    RangeCase{"bytes=9000-", 206, 9000, 9999, "bytes 9000-9999/10000"},
                    RangeCase{"bytes=-10", 206, 9990, 9999, "bytes 9990-9999/10000"},
                    RangeCase{"bytes=-20000", 206, 0, 9999, "bytes 0-9999/10000"},
                    RangeCase{"bytes=9999-20000", 206, 9999, 9999, "bytes 9999-9999/10000"},
                    RangeCase{"bytes=10000-", 416, 0, 0, "bytes */10000"},
                    RangeCase{"bytes=-0", 416, 0, 0, "bytes */10000"},
                    RangeCase{"bytes=5-1", 200, 0, 9999, ""},
                    RangeCase{"bytes=0-1,x-6", 200, 0, 9999, ""},
                    RangeCase{"bytes=0-9,20000-30000", 206, 0, 9, "bytes 0-9/10000"},
                    RangeCase{"bytes=20000-,30000-", 416, 0, 0, "bytes */10000"},
                    RangeCase{"bytes=0-9999,0-9999", 416, 0, 0, "bytes */10000"},
                    RangeCase{"bytes=0-10,5-15,8-20", 416, 0, 0, "bytes */10000"},
                    RangeCase{"items=0-1", 200, 0, 9999, ""},
                    RangeCase{"bytes=x-1", 200, 0, 9999, ""}));

// ---------------------------------------------------------------------------- multipart/byteranges

namespace {

struct Part {
  std::string content_type, content_range, bytes;
};

// Splits a multipart/byteranges body by its boundary (RFC 9110 14.6, RFC 2046 5.1).
std::vector<Part> parts_of(const std::string& body, const std::string& boundary) {
  std::vector<Part> out;
  const std::string delim = "--" + boundary;
  std::size_t at = body.find(delim);
  EXPECT_EQ(at, 0u) << "the body starts with the first delimiter";
  while (at != std::string::npos) {
    at += delim.size();
    if (body.compare(at, 4, "--\r\n") == 0) {
      EXPECT_EQ(at + 4, body.size()) << "nothing after the closing delimiter";
      return out;
    }
    EXPECT_EQ(body.compare(at, 2, "\r\n"), 0);
    const std::size_t head_end = body.find("\r\n\r\n", at);
    if (head_end == std::string::npos) break;
    Part p;
    std::string head = body.substr(at + 2, head_end - at - 2);
    for (std::size_t line = 0; line < head.size();) {
      std::size_t eol = head.find("\r\n", line);
      if (eol == std::string::npos) eol = head.size();
      const auto text = head.substr(line, eol - line);
      if (text.rfind("Content-Type: ", 0) == 0) p.content_type = text.substr(14);
      if (text.rfind("Content-Range: ", 0) == 0) p.content_range = text.substr(15);
      line = eol + 2;
    }
    const std::size_t next = body.find("\r\n" + delim, head_end + 4);
    if (next == std::string::npos) break;
    p.bytes = body.substr(head_end + 4, next - head_end - 4);
    out.push_back(p);
    at = next + 2;
  }
  ADD_FAILURE() << "no closing delimiter";
  return out;
}

std::string boundary_of(const HttpResponse& r) {
  const auto type = r.header("content-type");
  const std::string key = "multipart/byteranges; boundary=";
  EXPECT_EQ(type.rfind(key, 0), 0u) << type;
  return type.substr(key.size());
}

}  // namespace

TEST_F(HttpServerTest, SeveralRangesAreAnsweredAsMultipartByteranges) {
  HttpResponse r = get(request("GET", "/data.bin", "Range: bytes=0-1, 100-199,-10\r\n"));
  ASSERT_EQ(r.status, 206);
  EXPECT_EQ(r.header("content-range"), "") << "a multipart response names its ranges in its parts";
  EXPECT_EQ(r.header("content-length"), std::to_string(r.body.size()));
  const auto parts = parts_of(r.body, boundary_of(r));
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0].content_range, "bytes 0-1/10000");
  EXPECT_EQ(parts[0].bytes, body_.substr(0, 2));
  EXPECT_EQ(parts[1].content_range, "bytes 100-199/10000");
  EXPECT_EQ(parts[1].bytes, body_.substr(100, 100));
  EXPECT_EQ(parts[2].content_range, "bytes 9990-9999/10000");
  EXPECT_EQ(parts[2].bytes, body_.substr(9990));
  for (const auto& p : parts) EXPECT_EQ(p.content_type, "application/octet-stream");
}

TEST_F(HttpServerTest, MultipartPartsKeepTheOrderAskedAndTwoMayOverlap) {
  HttpResponse r = get(request("GET", "/data.bin", "Range: bytes=5000-5099,10-19,5050-5149\r\n"));
  ASSERT_EQ(r.status, 206);
  const auto parts = parts_of(r.body, boundary_of(r));
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0].bytes, body_.substr(5000, 100));
  EXPECT_EQ(parts[1].bytes, body_.substr(10, 10));
  EXPECT_EQ(parts[2].bytes, body_.substr(5050, 100));
}

TEST_F(HttpServerTest, AMultipartResponseLongerThanAWriteAndThenTheNextRequestOnTheConnection) {
  const std::string big = pattern(600 * 1024, 3);  // parts longer than one write of the body
  server_->put("/big.bin", bytes_of(big));
  Socket s = Socket::connect(server_->port());
  s.write_all(request("GET", "/big.bin", "Range: bytes=0-299999,300000-614399\r\n"));
  HttpResponse r = read_response(s);
  ASSERT_EQ(r.status, 206);
  const auto parts = parts_of(r.body, boundary_of(r));
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].bytes + parts[1].bytes, big);
  s.write_all(request("GET", "/data.bin", "Range: bytes=3-4\r\n"));
  HttpResponse next = read_response(s);
  EXPECT_EQ(next.status, 206);
  EXPECT_EQ(next.body, body_.substr(3, 2));
}

TEST_F(HttpServerTest, RangeAbuseIsRefusedWith416AndTheServerStaysUp) {
  std::string many = "bytes=";
  for (std::size_t i = 0; i <= kMaxRanges; ++i) many += std::to_string(i) + "-" + std::to_string(i) + ",";
  HttpResponse r = get(request("GET", "/data.bin", "Range: " + many + "\r\n"));
  EXPECT_EQ(r.status, 416);
  EXPECT_EQ(r.header("content-range"), "bytes */10000");
  // A huge count, up to the header limit: refused without keeping them.
  std::string huge = "bytes=";
  while (huge.size() < 15000) huge += "0-0,";
  EXPECT_EQ(get(request("GET", "/data.bin", "Range: " + huge + "\r\n")).status, 416);
  // Beyond the header limit the request itself is refused.
  std::string over = "bytes=";
  while (over.size() < 20000) over += "0-0,";
  EXPECT_EQ(get(request("GET", "/data.bin", "Range: " + over + "\r\n")).status, 400);
  EXPECT_EQ(get(request("GET", "/data.bin")).body, body_);
  EXPECT_TRUE(eventually([&] {
    for (const auto& rec : server_->request_log())
      if (rec.status == 416 && rec.note.find("range abuse: more than 256 ranges") != std::string::npos) return true;
    return false;
  }));
}

TEST_F(HttpServerTest, AServerThatAnswersRangesWronglyShiftsEveryPart) {
  server_->set_wrong_ranges("/data.bin");
  HttpResponse r = get(request("GET", "/data.bin", "Range: bytes=10-19,9990-9999\r\n"));
  ASSERT_EQ(r.status, 206);
  const auto parts = parts_of(r.body, boundary_of(r));
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].content_range, "bytes 10-19/10000");
  EXPECT_EQ(parts[0].bytes, body_.substr(11, 10));
  EXPECT_EQ(parts[1].content_range, "bytes 9990-9999/10000");
  EXPECT_EQ(parts[1].bytes, body_.substr(9989, 10));
  HttpResponse one = get(request("GET", "/data.bin", "Range: bytes=100-109\r\n"));
  EXPECT_EQ(one.header("content-range"), "bytes 100-109/10000");
  EXPECT_EQ(one.body, body_.substr(101, 10));
  EXPECT_EQ(get(request("GET", "/data.bin")).body, body_) << "the whole body is answered rightly";
  server_->clear_wrong_ranges();
  EXPECT_EQ(get(request("GET", "/data.bin", "Range: bytes=100-109\r\n")).body, body_.substr(100, 10));
}

TEST(HttpRangeSet, ParsesEveryRangeAndRefusesAbuse) {
  auto a = parse_ranges("bytes=0-1,5-6", 10);
  EXPECT_EQ(a.kind, RangeAnswer::Kind::multipart);
  ASSERT_EQ(a.ranges.size(), 2u);
  EXPECT_EQ(a.ranges[1].first, 5u);
  EXPECT_EQ(a.ranges[1].last, 6u);
  EXPECT_EQ(parse_ranges("bytes=0-1,,", 10).kind, RangeAnswer::Kind::single) << "empty list elements";
  EXPECT_EQ(parse_ranges("bytes=,", 10).kind, RangeAnswer::Kind::full);
  EXPECT_EQ(parse_ranges("bytes=0-1,7-3", 10).kind, RangeAnswer::Kind::full) << "a malformed member";
  EXPECT_EQ(parse_ranges("lines=0-1,2-3", 10).kind, RangeAnswer::Kind::full);
  EXPECT_EQ(parse_ranges("bytes=10-,20-", 10).kind, RangeAnswer::Kind::unsatisfiable);
  EXPECT_EQ(parse_ranges("bytes=0-,0-", 10).kind, RangeAnswer::Kind::unsatisfiable) << "20 bytes of 10";
  const auto three = parse_ranges("bytes=0-3,2-4,3-3", 10);
  EXPECT_EQ(three.kind, RangeAnswer::Kind::unsatisfiable);
  EXPECT_NE(three.why.find("three ranges overlap at byte 3"), std::string::npos) << three.why;
  EXPECT_EQ(parse_ranges("bytes=0-3,2-4", 10).kind, RangeAnswer::Kind::multipart);
  EXPECT_EQ(parse_ranges("bytes=99999999999999999999-1", 10).kind, RangeAnswer::Kind::full);
  const auto m = multipart_layout({{0, 1}, {5, 6}}, 10, "application/octet-stream", "B");
  EXPECT_EQ(m.heads.front(), "--B\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 0-1/10\r\n\r\n");
  EXPECT_EQ(m.heads.back(), "\r\n--B--\r\n");
  std::uint64_t n = 4;
  for (const auto& h : m.heads) n += h.size();
  EXPECT_EQ(m.length, n);
}

TEST(HttpRangeParser, EmptyBodyHasNoSatisfiableRange) {
  ByteRange r;
  EXPECT_EQ(parse_range("bytes=0-", 0, r), RangeStatus::unsatisfiable);
  EXPECT_EQ(parse_range("bytes=-5", 0, r), RangeStatus::unsatisfiable);
  EXPECT_EQ(parse_range(" BYTES = 1 - 2 ", 10, r), RangeStatus::partial);
  EXPECT_EQ(r.first, 1u);
  EXPECT_EQ(r.last, 2u);
}

TEST_F(HttpServerTest, MissingPathIs404AndOtherMethodsAre405) {
  EXPECT_EQ(get(request("GET", "/nope")).status, 404);
  HttpResponse r = get(request("POST", "/data.bin"));
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.header("allow"), "GET, HEAD");
  EXPECT_EQ(get(request("GET", "/../etc/passwd")).status, 400);
  EXPECT_EQ(get(request("GET", "/a/%2e%2e/data.bin")).status, 400);
}

TEST_F(HttpServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  Socket s = Socket::connect(server_->port());
  for (int i = 0; i < 3; ++i) {
    s.write_all(request("GET", "/data.bin", "Range: bytes=" + std::to_string(i) + "-" + std::to_string(i + 9) + "\r\n"));
    HttpResponse r = read_response(s);
    EXPECT_EQ(r.status, 206);
    EXPECT_EQ(r.body, body_.substr(static_cast<std::size_t>(i), 10));
  }
  // Pipelined: two requests in one write, two responses in order.
  s.write_all(request("GET", "/data.bin", "Range: bytes=0-0\r\n") + request("GET", "/nope"));
  EXPECT_EQ(read_response(s).status, 206);
  EXPECT_EQ(read_response(s).status, 404);
  EXPECT_TRUE(eventually([&] { return server_->stats().requests == 5u; })) << server_->stats().requests;
  EXPECT_EQ(server_->stats().connections, 1u);
}

TEST_F(HttpServerTest, ConnectionCloseIsHonoured) {
  Socket s = Socket::connect(server_->port());
  s.write_all(request("GET", "/data.bin", "Connection: close\r\n"));
  HttpResponse r = read_response(s);
  EXPECT_EQ(r.body, body_);
  ReadResult rest = s.read_until_closed(std::chrono::seconds(2));
  EXPECT_TRUE(rest.eof);
  EXPECT_EQ(rest.data, "");
}

TEST_F(HttpServerTest, MalformedRequestGets400AndTheConnectionCloses) {
  Socket s = Socket::connect(server_->port());
  s.write_all("GARBAGE\x01 / HTTP/9\r\n\r\n");
  HttpResponse r = read_response(s);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.header("connection"), "close");
  EXPECT_TRUE(s.read_until_closed(std::chrono::seconds(2)).eof);
  EXPECT_TRUE(eventually([&] { return server_->request_log().size() == 1u; }));
  auto log = server_->request_log();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].status, 400u);
  EXPECT_NE(log[0].note.find("malformed request"), std::string::npos);
  EXPECT_EQ(server_->stats().bad_requests, 1u);
}

TEST_F(HttpServerTest, OversizedHeadersAndBodiesGet400AndTheServerServesOn) {
  // Headers over the 16 KiB the server reads, and a body over its 1 MiB
  // (refused from its Content-Length, before a byte of it is read: none is
  // sent, so the server's close leaves nothing unread to reset the answer).
  const std::string big_header =
      "GET /data.bin HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(17 * 1024, 'a') + "\r\n\r\n";
  const std::string big_body = "PUT /data.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n";
  for (const auto& req : {big_header, big_body}) {
    Socket s = Socket::connect(server_->port());
    s.write_all(req);
    HttpResponse r = read_response(s);
    EXPECT_EQ(r.status, 400) << req.substr(0, 40);
    EXPECT_EQ(r.header("connection"), "close");
  }
  EXPECT_TRUE(eventually([&] { return server_->stats().bad_requests == 2u; }));
  HttpResponse ok = get(request("GET", "/data.bin"));
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, body_);
}

TEST_F(HttpServerTest, ClientClosingMidRequestIsLogged) {
  {
    Socket s = Socket::connect(server_->port());
    s.write_all("GET /data.bin HTTP/1.1\r\nHost: te");
  }
  // The server notices the close at once, long before its deadline.
  EXPECT_TRUE(eventually([&] { return !server_->request_log().empty(); }));
  auto log = server_->request_log();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].status, 0u);
  EXPECT_NE(log[0].note.find("mid-request"), std::string::npos) << log[0].note;
  EXPECT_EQ(server_->stats().timeouts, 0u);
}

TEST_F(HttpServerTest, SilentClientIsDroppedAtTheDeadline) {
  ServerOptions o;
  o.timeout = std::chrono::milliseconds(200);
  start(std::move(o));
  Socket silent = Socket::connect(server_->port());
  Socket slow = Socket::connect(server_->port());
  slow.write_all("GET /data.bin HTT");
  auto begin = std::chrono::steady_clock::now();
  ReadResult a = silent.read_until_closed(std::chrono::seconds(5));
  ReadResult b = slow.read_until_closed(std::chrono::seconds(5));
  auto waited = std::chrono::steady_clock::now() - begin;
  EXPECT_TRUE(a.eof || a.error);
  EXPECT_TRUE(b.eof || b.error);
  EXPECT_EQ(a.data, "");
  EXPECT_LT(waited, std::chrono::seconds(3));
  EXPECT_TRUE(eventually([&] { return server_->stats().timeouts == 2u; })) << server_->stats().timeouts;
  // The server is still serving others.
  EXPECT_EQ(get(request("GET", "/data.bin")).status, 200);
}

TEST_F(HttpServerTest, ReleasesAndLatestManifest) {
  EXPECT_EQ(get(request("GET", "/manifest.json")).status, 404);
  std::vector<std::uint8_t> v1(5000, 0x11), v2(7000, 0x22);
  Manifest m1 = server_->add_release({"v1", "1.0.0", 1, v1});
  Manifest m2 = server_->add_release({"v2", "2.0.0", 2, v2});
  server_->set_latest("v2");
  HttpResponse r = get(request("GET", "/manifest.json"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(parse_manifest(r.body, "served"), m2);
  HttpResponse img = get(request("GET", m2.url));
  EXPECT_EQ(img.body, std::string(v2.begin(), v2.end()));
  server_->set_latest("v1");
  EXPECT_EQ(parse_manifest(get(request("GET", "/manifest.json")).body, "served"), m1);
  EXPECT_EQ(server_->latest(), "v1");
  EXPECT_THROW(server_->set_latest("v9"), otarig::InputError);
  server_->clear_latest();
  EXPECT_EQ(get(request("GET", "/manifest.json")).status, 404);
}

TEST_F(HttpServerTest, RequestLogAndCounters) {
  get(request("GET", "/data.bin", "Range: bytes=10-19\r\n"));
  get(request("HEAD", "/data.bin"), true);
  get(request("GET", "/missing"));
  EXPECT_TRUE(eventually([&] { return server_->request_log().size() == 3u; }));
  auto log = server_->take_request_log();
  ASSERT_EQ(log.size(), 3u);
  EXPECT_EQ(log[0].method, "GET");
  EXPECT_EQ(log[0].target, "/data.bin");
  EXPECT_EQ(log[0].range, "bytes=10-19");
  EXPECT_EQ(log[0].status, 206u);
  EXPECT_EQ(log[0].bytes, 10u);
  EXPECT_EQ(log[1].method, "HEAD");
  EXPECT_EQ(log[1].bytes, 0u);
  EXPECT_EQ(log[2].status, 404u);
  EXPECT_EQ(log[0].seq + 2, log[2].seq);
  EXPECT_TRUE(server_->request_log().empty());
  EXPECT_EQ(to_json(log[0])["range"], "bytes=10-19");
  ServerStats s = server_->stats();
  EXPECT_EQ(s.requests, 3u);
  EXPECT_EQ(s.connections, 3u);
  EXPECT_EQ(s.bytes_sent, 10u + 10u);  // "not found\n" is 10 bytes
}

namespace {

// Reads one response header (up to and including the blank line) byte by
// byte, so nothing of the body is consumed.
std::string read_header(Transport& t) {
  std::string head;
  char c;
  while (head.size() < 4 || head.compare(head.size() - 4, 4, "\r\n\r\n") != 0) {
    if (t.read_some(&c, 1) != 1) throw std::runtime_error("closed in the header: " + head);
    head += c;
  }
  return head;
}

std::string read_n(Transport& t, std::size_t n) {
  std::string out(n, '\0');
  std::size_t got = 0;
  while (got < n) {
    std::size_t k = t.read_some(out.data() + got, n - got);
    if (k == 0) throw std::runtime_error("closed after " + std::to_string(got) + " of " + std::to_string(n));
    got += k;
  }
  return out;
}

bool has_header(const std::string& head, const std::string& name) {
  std::string lower;
  for (char c : head) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower.find("\r\n" + name + ":") != std::string::npos;
}

}  // namespace

TEST_F(HttpServerTest, EndlessBodyHasNoLengthAndSendsSeededBytesUpToItsLimit) {
  server_->put("/deliveries/7/image.bin", bytes_of(body_));
  server_->set_endless("/deliveries/*/image.bin", {100000, 3});
  auto fetch = [&] {
    Socket s = Socket::connect(server_->port());
    s.write_all(request("GET", "/deliveries/7/image.bin"));
    ReadResult r = s.read_until_closed(5s);
    EXPECT_TRUE(r.eof);
    auto end = r.data.find("\r\n\r\n");
    EXPECT_NE(end, std::string::npos);
    return std::make_pair(r.data.substr(0, end + 4), r.data.substr(end + 4));
  };
  auto [head, body] = fetch();
  EXPECT_EQ(head.rfind("HTTP/1.1 200", 0), 0u) << head;
  EXPECT_FALSE(has_header(head, "content-length")) << head;
  EXPECT_NE(head.find("Connection: close"), std::string::npos) << head;
  ASSERT_EQ(body.size(), body_.size() + 100000u);
  EXPECT_EQ(body.substr(0, body_.size()), body_);
  EXPECT_EQ(fetch().second, body) << "the endless bytes are a function of the seed";
  EXPECT_TRUE(eventually([&] { return server_->request_log().size() == 2u; }));
  auto log = server_->request_log();
  EXPECT_EQ(log[0].bytes, body_.size() + 100000u);
  EXPECT_EQ(log[0].endless, 100000u);
  EXPECT_NE(log[0].note.find("the limit"), std::string::npos) << log[0].note;
  EXPECT_EQ(to_json(log[0])["endless"], 100000u);
  EXPECT_TRUE(server_->responses_in_progress().empty());
  // Other paths, ranges and HEAD: as before, or the same headers without a body.
  EXPECT_EQ(get(request("GET", "/data.bin")).header("content-length"), "10000");
  HttpResponse part = get(request("GET", "/deliveries/7/image.bin", "Range: bytes=5-9\r\n"));
  EXPECT_EQ(part.status, 206);
  EXPECT_EQ(part.body, body_.substr(5, 5));
  Socket h = Socket::connect(server_->port());
  h.write_all(request("HEAD", "/deliveries/7/image.bin"));
  ReadResult hr = h.read_until_closed(5s);
  EXPECT_TRUE(hr.eof);
  EXPECT_FALSE(has_header(hr.data, "content-length")) << hr.data;
  EXPECT_EQ(hr.data.substr(hr.data.size() - 4), "\r\n\r\n");
  server_->clear_endless();
  EXPECT_EQ(get(request("GET", "/deliveries/7/image.bin")).body, body_);
}

TEST_F(HttpServerTest, EndlessBodyRecordsWhatItSentBeforeTheClientLeft) {
  server_->put("/deliveries/1/image.bin", bytes_of(body_));
  server_->set_endless("/deliveries/*/image.bin", {0, 9});  // no limit
  {
    Socket s = Socket::connect(server_->port());
    s.write_all(request("GET", "/deliveries/1/image.bin"));
    read_header(s);
    const std::string got = read_n(s, body_.size() + 5000);
    EXPECT_EQ(got.substr(0, body_.size()), body_);
  }
  // The client read the resource and a little more, then left.
  EXPECT_TRUE(eventually([&] { return server_->request_log().size() == 1u; }, 5s));
  auto r = server_->request_log().at(0);
  EXPECT_EQ(r.status, 200u);
  EXPECT_GE(r.endless, 5000u);
  EXPECT_EQ(r.bytes, body_.size() + r.endless);
  EXPECT_NE(r.note.find("endless body: the client went away after"), std::string::npos) << r.note;
  EXPECT_TRUE(server_->responses_in_progress().empty());
}

TEST_F(HttpServerTest, BodyByteHookRunsAfterExactlyThatManyBytesOnAKeptAliveConnection) {
  // HEAD, then GET on the same connection (as SWUpdate does); the hook falls
  // inside the second 256 KiB write of the body.
  const std::string big = pattern(700000, 5);
  const std::uint64_t b = 300001;
  server_->put("/deliveries/2/image.bin", bytes_of(big));
  std::promise<BodyByte> fired;
  std::promise<void> release;
  auto released = release.get_future().share();
  std::atomic<std::uint64_t> server_count{0};
  server_->on_body_byte("/deliveries/2/image.bin", b, [&](const BodyByte& at) {
    for (const auto& r : server_->responses_in_progress()) server_count = r.bytes;
    fired.set_value(at);
    released.wait();
  });
  Socket s = Socket::connect(server_->port());
  s.write_all(request("HEAD", "/deliveries/2/image.bin"));
  EXPECT_EQ(read_response(s, true).header("content-length"), "700000");
  s.write_all(request("GET", "/deliveries/2/image.bin"));
  read_header(s);
  ReleaseOnExit guard{release};  // the hook returns however the test ends
  const std::string before = read_n(s, b);
  auto fired_future = fired.get_future();
  ASSERT_EQ(fired_future.wait_for(5s), std::future_status::ready) << "the hook did not run after byte " << b - 1;
  auto at = fired_future.get();
  // The server is inside the hook: nothing after byte b-1 has been sent.
  EXPECT_TRUE(s.silent_for(300ms)) << "bytes past " << b << " arrived before the hook returned";
  EXPECT_EQ(server_count.load(), b);
  EXPECT_EQ(before, big.substr(0, b));
  EXPECT_EQ(at.byte, b);
  EXPECT_EQ(at.first, 0u);
  EXPECT_EQ(at.connection, 1u);
  EXPECT_EQ(at.method, "GET");
  EXPECT_EQ(at.target, "/deliveries/2/image.bin");
  EXPECT_FALSE(at.tls);
  guard.now();
  EXPECT_EQ(read_n(s, big.size() - b), big.substr(b));
  // Once: the next GET passes byte b without a call.
  s.write_all(request("GET", "/deliveries/2/image.bin"));
  EXPECT_EQ(read_response(s).body, big);
}

TEST_F(HttpServerTest, BodyByteHookWaitsForARangeThatReachesIt) {
  server_->put("/f.bin", bytes_of(body_));
  std::atomic<int> calls{0};
  std::atomic<std::uint64_t> first{99};
  server_->on_body_byte("/f.bin", 6000, [&](const BodyByte& at) {
    ++calls;
    first = at.first;
  });
  EXPECT_EQ(get(request("GET", "/f.bin", "Range: bytes=7000-\r\n")).body, body_.substr(7000));
  EXPECT_EQ(get(request("GET", "/f.bin", "Range: bytes=0-5999\r\n")).body, body_.substr(0, 6000));
  EXPECT_EQ(calls.load(), 0) << "a response that does not send byte 6000 must not run the hook";
  EXPECT_EQ(get(request("GET", "/f.bin", "Range: bytes=5000-\r\n")).body, body_.substr(5000));
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(first.load(), 5000u);
  server_->on_body_byte("/f.bin", 10, [&](const BodyByte&) { ++calls; });
  server_->clear_body_hooks();
  EXPECT_EQ(get(request("GET", "/f.bin")).body, body_);
  EXPECT_EQ(calls.load(), 1);
}

TEST(HttpServerDirectory, ServesFilesUnderRootAndWrittenReleases) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() / "sub");
  std::ofstream(dir.path() / "sub" / "f.txt") << "hello file";
  std::vector<std::uint8_t> image(300000);
  for (std::size_t i = 0; i < image.size(); ++i) image[i] = static_cast<std::uint8_t>(i * 31);
  Manifest m = write_release(dir.path(), {"r1", "1.0.0", 4, image});
  ServerOptions o;
  o.root = dir.path();
  UpdateServer server(std::move(o));
  server.start();
  server.set_latest("r1");
  Socket s = Socket::connect(server.port());
  s.write_all(request("GET", "/sub/f.txt"));
  EXPECT_EQ(read_response(s).body, "hello file");
  s.write_all(request("GET", "/manifest.json"));
  EXPECT_EQ(parse_manifest(read_response(s).body, "dir"), m);
  s.write_all(request("GET", "/images/r1.bin"));
  HttpResponse img = read_response(s);
  EXPECT_EQ(img.body, std::string(image.begin(), image.end()));
  s.write_all(request("GET", "/images/r1.bin", "Range: bytes=262140-262150\r\n"));
  EXPECT_EQ(read_response(s).body, std::string(image.begin() + 262140, image.begin() + 262151));
  s.write_all(request("GET", "/sub"));
  EXPECT_EQ(read_response(s).status, 404);
  s.write_all(request("GET", "/sub/%2e%2e/%2e%2e/etc/passwd"));
  EXPECT_EQ(read_response(s).status, 400);
}

TEST(HttpServerDirectory, ServesOnlyRegularFilesWhoseRealPathStaysInsideTheRoot) {
  TempDir outside;
  std::ofstream(outside.path() / "secret.txt") << "host secret";
  TempDir dir;
  std::filesystem::create_directories(dir.path() / "sub");
  std::ofstream(dir.path() / "sub" / "f.txt") << "hello file";
  std::filesystem::create_directory_symlink(outside.path(), dir.path() / "out-link");
  std::filesystem::create_symlink(outside.path() / "secret.txt", dir.path() / "secret-link.txt");
  std::filesystem::create_symlink("/dev/zero", dir.path() / "zero");
  std::filesystem::create_symlink("sub/f.txt", dir.path() / "inside-link.txt");
  ServerOptions o;
  o.root = dir.path();
  UpdateServer server(std::move(o));
  server.start();
  Socket s = Socket::connect(server.port());
  for (const char* escape : {"/out-link/secret.txt", "/secret-link.txt", "/zero"}) {
    s.write_all(request("GET", escape));
    HttpResponse r = read_response(s);
    EXPECT_EQ(r.status, 404) << escape;
    EXPECT_EQ(r.body.find("host secret"), std::string::npos) << escape;
  }
  s.write_all(request("GET", "/inside-link.txt"));
  EXPECT_EQ(read_response(s).body, "hello file");
}

TEST(HttpServerDirectory, AFifoIsNotServedAndBlocksNoOne) {
  TempDir dir;
  ASSERT_EQ(::mkfifo((dir.path() / "p").c_str(), 0600), 0) << std::strerror(errno);
  std::ofstream(dir.path() / "f.txt") << "hello file";
  ServerOptions o;
  o.root = dir.path();
  o.timeout = std::chrono::milliseconds(3000);
  UpdateServer server(std::move(o));
  server.start();
  // A server stuck in a blocking open() of the FIFO is released at the end
  // (a writer appears), so a failure here fails rather than hangs.
  struct ReleaseFifo {
    std::filesystem::path fifo;
    ~ReleaseFifo() {
      int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
      if (fd >= 0) ::close(fd);
    }
  } release{dir.path() / "p"};
  Socket fifo = Socket::connect(server.port());
  fifo.write_all(request("GET", "/p"));
  EXPECT_EQ(read_response(fifo, false, std::chrono::milliseconds(2000)).status, 404);
  Socket other = Socket::connect(server.port());
  other.write_all(request("GET", "/f.txt"));
  EXPECT_EQ(read_response(other, false, std::chrono::milliseconds(2000)).body, "hello file");
}

TEST(HttpServerStop, StopsWithClientsConnected) {
  UpdateServer server;
  server.put("/x", {1, 2, 3});
  server.start();
  Socket idle = Socket::connect(server.port());
  Socket busy = Socket::connect(server.port());
  busy.write_all("GET /x HTTP/1.1\r\n");
  server.stop();
  ReadResult r = idle.read_until_closed(std::chrono::seconds(2));
  EXPECT_TRUE(r.eof || r.error);
  server.stop();  // idempotent
}

TEST(HttpServerStart, BadAddressAndBusyPort) {
  ServerOptions bad;
  bad.address = "not-an-address";
  UpdateServer a(bad);
  EXPECT_THROW(a.start(), otarig::InputError);
  UpdateServer b;
  b.start();
  ServerOptions same;
  same.port = b.port();
  UpdateServer c(same);
  EXPECT_THROW(c.start(), otarig::BenchError);
}
