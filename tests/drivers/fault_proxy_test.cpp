#include "otarig/drivers/net/fault_proxy.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <future>

#include "loopback.hpp"
#include "otarig/core/errors.hpp"
#include "otarig/drivers/net/http_server.hpp"

using namespace otarig::drivers::net;
using namespace otarig::test::net;
using namespace std::chrono_literals;

namespace {

// A scripted upstream with the proxy in front of it.
class ProxyTest : public testing::Test {
 protected:
  void start(ScriptedServer::Handler upstream, const std::string& spec, std::uint64_t seed = 1,
             ProxyOptions options = {}) {
    upstream_ = std::make_unique<ScriptedServer>(std::move(upstream));
    options.upstream_port = upstream_->port();
    options.faults = parse_fault_spec(spec);
    options.seed = seed;
    if (!options.clock) options.clock = &clock_;
    proxy_ = std::make_unique<FaultProxy>(std::move(options));
    proxy_->start();
  }
  Socket connect() { return Socket::connect(proxy_->port()); }

  std::vector<FaultEvent> events_of(const std::string& kind) {
    std::vector<FaultEvent> out;
    for (auto& e : proxy_->events())
      if (e.kind == kind) out.push_back(e);
    return out;
  }

  // Waits (real time, bounded) for the proxy to log `n` events of `kind`.
  void wait_events(const std::string& kind, std::size_t n) {
    eventually([&] { return events_of(kind).size() >= n; });
  }

  // An echo upstream behind the proxy, and a connection through it that an
  // earlier trial opened and left open (its open already logged).
  Socket start_echo_with_an_earlier_trials_connection() {
    start(echo(), "");
    Socket old_trial = connect();
    old_trial.write_all("ping");
    EXPECT_EQ(old_trial.read_exact(4), "ping");
    wait_events("open", 1);
    return old_trial;
  }

  // Takes the current schedule's events, each checked to be of connection 1
  // of schedule 1, and returns their kinds in order.
  std::vector<std::string> take_kinds_of_the_first_connection() {
    std::vector<std::string> kinds;
    for (const auto& e : proxy_->take_events()) {
      kinds.push_back(e.kind);
      EXPECT_EQ(e.connection, 1u) << "connection numbers restart with the schedule";
      EXPECT_EQ(e.generation, 1u);
      EXPECT_EQ(to_json(e)["generation"], 1u);
    }
    return kinds;
  }

  otarig::SteadyClock clock_;
  otarig::ManualClock manual_;  // outlives the proxy that reads it
  std::unique_ptr<ScriptedServer> upstream_;
  std::unique_ptr<FaultProxy> proxy_;
};

std::string xor_diff_positions(const std::string& a, const std::string& b) {
  std::string out;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    if (a[i] != b[i]) out += std::to_string(i) + " ";
  return out;
}

}  // namespace

TEST_F(ProxyTest, NoFaultForwardsBothDirectionsByteExact) {
  start(echo(), "");
  Socket s = connect();
  std::string data = pattern(3 << 20, 11);
  std::thread writer([&] {
    s.write_all(data);
    s.shutdown_write();
  });
  ReadResult r = s.read_until_closed(10s);
  writer.join();
  EXPECT_TRUE(r.eof);
  EXPECT_TRUE(r.data == data) << "got " << r.data.size() << " bytes";
  // Only the connection's open and close were logged: nothing was altered.
  wait_events("close", 1);
  auto ev = proxy_->events();
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].kind, "open");
  EXPECT_EQ(ev[0].detail, "no faults");
  EXPECT_EQ(ev[1].kind, "close");
  EXPECT_EQ(proxy_->stats().bytes_up, data.size());
  EXPECT_EQ(proxy_->stats().bytes_down, data.size());
}

TEST_F(ProxyTest, CorruptAtOffsetXorsExactlyThoseBytesAndLogsThem) {
  std::string payload = pattern(10000, 3);
  start(send_and_close({payload}), "down:corrupt@offset=1000,count=4", 42);
  Socket s = connect();
  ReadResult r = s.read_until_closed(5s);
  ASSERT_TRUE(r.eof);
  ASSERT_EQ(r.data.size(), payload.size());
  EXPECT_EQ(xor_diff_positions(payload, r.data), "1000 1001 1002 1003 ");
  auto ev = events_of("corrupt");
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].connection, 1u);
  EXPECT_EQ(ev[0].direction, Direction::down);
  EXPECT_EQ(ev[0].offset, 1000u);
  EXPECT_EQ(std::string(ev[0].before.begin(), ev[0].before.end()), payload.substr(1000, 4));
  EXPECT_EQ(std::string(ev[0].after.begin(), ev[0].after.end()), r.data.substr(1000, 4));
  auto j = to_json(ev[0]);
  EXPECT_EQ(j["direction"], "down");
  EXPECT_EQ(j["before"].get<std::string>().size(), 8u);

  // Same seed, same connection: the same bytes again. Another seed: other masks.
  proxy_->set_faults(parse_fault_spec("down:corrupt@offset=1000,count=4"), 42);
  Socket again = connect();
  EXPECT_EQ(again.read_until_closed(5s).data, r.data);
  proxy_->set_faults(parse_fault_spec("down:corrupt@offset=1000,count=4"), 43);
  Socket other = connect();
  std::string o = other.read_until_closed(5s).data;
  EXPECT_EQ(xor_diff_positions(payload, o), "1000 1001 1002 1003 ");
  EXPECT_NE(o, r.data);
}

TEST_F(ProxyTest, CorruptWithFixedMaskAndUpDirection) {
  auto sink = std::make_shared<Received>();
  start(record_into(sink), "up:corrupt@offset=5,count=2,mask=0x01");
  Socket s = connect();
  std::string data = "0123456789";
  s.write_all(data);
  s.shutdown_write();
  s.read_until_closed(5s);
  eventually([&] { return sink->get(1).size() >= data.size(); });
  EXPECT_EQ(sink->get(1), "0123447789");
}

TEST_F(ProxyTest, CorruptAtARateIsSeededAndFullyLogged) {
  std::string payload = pattern(1 << 20, 5);
  start(send_and_close({payload}), "down:corrupt@rate=1e-3", 7);
  auto fetch = [&] {
    Socket s = connect();
    ReadResult r = s.read_until_closed(10s);
    EXPECT_TRUE(r.eof);
    EXPECT_EQ(r.data.size(), payload.size());
    return r.data;
  };
  std::string first = fetch();
  wait_events("close", 1);
  auto ev = events_of("corrupt");
  std::string logged;
  for (auto& e : ev) {
    logged += std::to_string(e.offset) + " ";
    ASSERT_EQ(e.before.size(), 1u);
    EXPECT_EQ(e.before[0], static_cast<std::uint8_t>(payload[e.offset]));
    EXPECT_EQ(e.after[0], static_cast<std::uint8_t>(first[e.offset]));
  }
  EXPECT_EQ(xor_diff_positions(payload, first), logged);
  EXPECT_GT(ev.size(), 700u);  // ~1049 expected
  EXPECT_LT(ev.size(), 1400u);
  proxy_->set_faults(parse_fault_spec("down:corrupt@rate=1e-3"), 7);
  EXPECT_EQ(fetch(), first) << "same seed, same connection: same corruption";
}

TEST_F(ProxyTest, TruncateDeliversExactlyBBytesThenEof) {
  std::string payload = pattern(100000, 9);
  start(send_and_close({payload}), "down:truncate@b=4096");
  Socket s = connect();
  ReadResult r = s.read_until_closed(5s);
  EXPECT_TRUE(r.eof);
  EXPECT_EQ(r.error, 0);
  EXPECT_EQ(r.data, payload.substr(0, 4096));
  auto ev = events_of("truncate");
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].offset, 4096u);
}

TEST_F(ProxyTest, TruncateUpstreamSideClosesAfterB) {
  auto sink = std::make_shared<Received>();
  start(record_into(sink), "up:truncate@b=10");
  Socket s = connect();
  s.write_all(pattern(5000, 2));
  ReadResult r = s.read_until_closed(5s);
  EXPECT_TRUE(r.eof || r.error);
  eventually([&] {
    std::lock_guard lock(sink->mutex);
    return sink->eof[1];
  });
  EXPECT_EQ(sink->get(1), pattern(5000, 2).substr(0, 10));
}

TEST_F(ProxyTest, ResetDeliversBBytesThenConnectionReset) {
  std::string payload = pattern(100000, 9);
  start(send_and_close({payload}), "down:reset@b=4096");
  Socket s = connect();
  ReadResult r = s.read_until_closed(5s);
  EXPECT_EQ(r.error, ECONNRESET);
  EXPECT_FALSE(r.eof);
  EXPECT_EQ(r.data, payload.substr(0, 4096));
}

TEST_F(ProxyTest, StallDeliversBBytesThenHoldsTheConnectionOpen) {
  std::string payload = pattern(100000, 9);
  start(send_and_close({payload}), "down:stall@b=4096");
  Socket s = connect();
  std::string got = s.read_exact(4096);
  EXPECT_EQ(got, payload.substr(0, 4096));
  EXPECT_TRUE(s.silent_for(300ms)) << "a byte or the close came through the stall";
  wait_events("stall", 1);
  EXPECT_EQ(events_of("stall").size(), 1u);
  EXPECT_EQ(events_of("close").size(), 0u) << "the stalled connection stays open";
}

TEST_F(ProxyTest, ThrottleNeverExceedsTheRateOnAManualClock) {
  otarig::ManualClock& clock = manual_;
  ProxyOptions o;
  o.clock = &clock;
  std::string payload = pattern(3000, 4);
  start(send_and_close({payload}), "down:throttle=1000", 1, o);  // burst: 1000/20 = 50 bytes
  Socket s = connect();
  EXPECT_EQ(s.read_exact(50), payload.substr(0, 50));
  EXPECT_TRUE(s.silent_for(100ms)) << "bytes beyond the burst passed while the clock stood still";
  clock.advance(1s);
  EXPECT_EQ(s.read_exact(1000), payload.substr(50, 1000));
  EXPECT_TRUE(s.silent_for(50ms));
  clock.advance(500ms);
  EXPECT_EQ(s.read_exact(500), payload.substr(1050, 500));
  EXPECT_TRUE(s.silent_for(50ms));
  clock.advance(2s);
  ReadResult rest = s.read_until_closed(5s);
  EXPECT_TRUE(rest.eof);
  EXPECT_EQ(rest.data, payload.substr(1550));
}

TEST_F(ProxyTest, ThrottleOnRealTimeHoldsTheLowerBound) {
  std::string payload = pattern(300000, 4);
  start(send_and_close({payload}), "down:throttle=1MB");  // 1e6 B/s, burst 50000
  otarig::Clock& measure = clock_;
  auto begin = measure.now();  // before the proxy can see the connection
  Socket s = connect();
  ReadResult r = s.read_until_closed(10s);
  double seconds = std::chrono::duration<double>(measure.now() - begin).count();
  EXPECT_EQ(r.data, payload);
  EXPECT_GE(seconds, (300000.0 - 50000.0) / 1e6);  // a throttle can only be slower
  EXPECT_LT(seconds, 5.0);                          // loose: the bytes do get through
}

TEST_F(ProxyTest, LatencyHoldsEachChunkOnAManualClock) {
  otarig::ManualClock& clock = manual_;
  ProxyOptions o;
  o.clock = &clock;
  start(send_and_close({"hello"}), "down:latency=100ms,jitter=20ms", 1, o);
  Socket s = connect();
  EXPECT_TRUE(s.silent_for(100ms));
  clock.advance(79ms);
  EXPECT_TRUE(s.silent_for(50ms)) << "released before delay - jitter";
  clock.advance(42ms);
  EXPECT_EQ(s.read_exact(5), "hello");
}

TEST_F(ProxyTest, SliceWritesAtMostNBytesPerWrite) {
  otarig::ManualClock& clock = manual_;
  ProxyOptions o;
  o.clock = &clock;
  std::string payload = pattern(1000, 8);
  start(send_and_close({payload}), "down:slice=100,delay=10ms", 1, o);
  Socket s = connect();
  // One slice per clock step: every read sees at most 100 bytes.
  std::string got;
  for (int i = 0; i < 30 && got.size() < payload.size(); ++i) {
    char buf[4096];
    std::size_t n = s.read_some(buf, sizeof buf);
    ASSERT_GT(n, 0u);
    EXPECT_LE(n, 100u);
    got.append(buf, n);
    EXPECT_TRUE(s.silent_for(20ms)) << "a second slice came before the clock moved";
    clock.advance(10ms);
  }
  EXPECT_EQ(got, payload);
}

TEST_F(ProxyTest, SliceOnRealTimeSpacesTheSlices) {
  // On real time a busy client may read two slices at once, so the bound on
  // each read is checked on the manual clock above; here: the bytes arrive
  // intact, no sooner than the 19 delays between 20 slices allow.
  std::string payload = pattern(2000, 8);
  start(send_and_close({payload}), "down:slice=100,delay=5ms");
  otarig::Clock& measure = clock_;
  auto begin = measure.now();  // before the proxy can see the connection
  Socket s = connect();
  ReadResult r = s.read_until_closed(5s);
  auto elapsed = measure.now() - begin;
  EXPECT_EQ(r.data, payload);
  EXPECT_GE(elapsed, 19 * 5ms);
}

TEST_F(ProxyTest, EndlessKeepsSendingSeededBytesAfterTheResponse) {
  std::string payload = pattern(1000, 6);
  start(send_and_close({payload}), "down:endless", 5);
  Socket s = connect();
  std::string got = s.read_exact(200000);
  EXPECT_EQ(got.substr(0, 1000), payload);
  EXPECT_GT(got.size(), payload.size());
  auto ev = events_of("endless");
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].offset, 1000u);

  proxy_->set_faults(parse_fault_spec("down:endless@limit=5000"), 5);
  Socket limited = connect();
  ReadResult r = limited.read_until_closed(5s);
  EXPECT_TRUE(r.eof);
  ASSERT_EQ(r.data.size(), 6000u);
  EXPECT_EQ(r.data, got.substr(0, 6000)) << "seeded: the same extra bytes for the same (seed, connection)";
}

TEST_F(ProxyTest, EndlessFromAnOffsetReplacesTheRest) {
  std::string payload = pattern(5000, 6);
  start(send_and_close({payload}), "down:endless@after=100,limit=1000");
  Socket s = connect();
  ReadResult r = s.read_until_closed(5s);
  ASSERT_EQ(r.data.size(), 1100u);
  EXPECT_EQ(r.data.substr(0, 100), payload.substr(0, 100));
  EXPECT_NE(r.data.substr(100), payload.substr(100, 1000));
}

TEST_F(ProxyTest, ReplayServesTheEarlierConnectionsResponse) {
  std::string first = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nv1";
  std::string second = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nv2";
  start(send_and_close({first, second}), "conn=2:down:replay@from=1");
  {
    Socket a = connect();
    a.write_all("GET /manifest.json HTTP/1.1\r\n\r\n");
    EXPECT_EQ(a.read_until_closed(5s).data, first);
  }
  Socket b = connect();
  b.write_all("GET /manifest.json HTTP/1.1\r\n\r\n");
  ReadResult r = b.read_until_closed(5s);
  EXPECT_EQ(r.data, first) << "the second connection got the upstream's fresh response";
  EXPECT_EQ(upstream_->connections(), 2u);
  auto rec = proxy_->recording(1, Direction::down);
  EXPECT_EQ(std::string(rec.begin(), rec.end()), first);
  auto ev = events_of("replay");
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].connection, 2u);
}

TEST_F(ProxyTest, RulesSelectConnectionsAndSetFaultsRestartsNumbering) {
  std::string payload = pattern(1000, 1);
  start(send_and_close({payload}), "conn=2:down:truncate@b=10");
  EXPECT_EQ(connect().read_until_closed(5s).data, payload);
  EXPECT_EQ(connect().read_until_closed(5s).data, payload.substr(0, 10));
  EXPECT_EQ(connect().read_until_closed(5s).data, payload);
  proxy_->set_faults(parse_fault_spec("conn=1:down:truncate@b=20"), 1);
  EXPECT_EQ(connect().read_until_closed(5s).data, payload.substr(0, 20));
  EXPECT_EQ(connect().read_until_closed(5s).data, payload);
}

TEST_F(ProxyTest, TakeEventsHoldsOnlyTheConnectionsOfTheCurrentSchedule) {
  // A connection of one trial is still open when the next trial's schedule is
  // set; its close must not show up among the next trial's events.
  Socket old_trial = start_echo_with_an_earlier_trials_connection();
  proxy_->set_faults(parse_fault_spec("down:corrupt@offset=0,mask=0x01"), 2);
  EXPECT_TRUE(proxy_->take_events().empty()) << "the open of the earlier schedule's connection was kept";
  Socket this_trial = connect();
  this_trial.write_all("a");
  EXPECT_EQ(this_trial.read_exact(1), "`");  // 'a' ^ 0x01
  old_trial.close();
  this_trial.close();
  wait_events("close", 2);
  auto all = proxy_->events();
  ASSERT_EQ(std::count_if(all.begin(), all.end(), [](const FaultEvent& e) { return e.kind == "close"; }), 2);
  EXPECT_EQ(take_kinds_of_the_first_connection(), (std::vector<std::string>{"open", "corrupt", "close"}));
  // Everything was taken: the old connection's close went with it.
  EXPECT_TRUE(proxy_->take_events().empty());
  EXPECT_TRUE(proxy_->events().empty());
}

TEST_F(ProxyTest, ANewScheduleWithoutFaultsStillDropsTheEarlierTrialsConnections) {
  // A trial whose faults are the server's own (an endless body) arms no proxy
  // rule; a connection the previous trial left open (a device hung on a slow
  // body) closes during it and must not log into it.
  Socket old_trial = start_echo_with_an_earlier_trials_connection();
  proxy_->set_faults({}, 0);  // clearing the faults keeps the schedule
  proxy_->new_schedule();
  EXPECT_TRUE(proxy_->take_events().empty()) << "the open of the earlier schedule's connection was kept";
  Socket this_trial = connect();
  this_trial.write_all("b");
  EXPECT_EQ(this_trial.read_exact(1), "b");
  old_trial.close();
  this_trial.close();
  wait_events("close", 2);
  EXPECT_EQ(take_kinds_of_the_first_connection(), (std::vector<std::string>{"open", "close"}));
}

TEST_F(ProxyTest, BytesCallbackFiresAtTheExactByteBeforeMoreIsForwarded) {
  std::string payload = pattern(300000, 1);
  start(send_and_close({payload}), "");
  std::promise<std::pair<BytesPassed, std::uint64_t>> seen;
  proxy_->on_bytes(1, Direction::down, 123457, [&](const BytesPassed& b) {
    seen.set_value({b, proxy_->stats().bytes_down});
  });
  Socket s = connect();
  ReadResult r = s.read_until_closed(5s);
  EXPECT_EQ(r.data, payload);
  auto [passed, delivered] = seen.get_future().get();
  EXPECT_EQ(passed.connection, 1u);
  EXPECT_EQ(passed.direction, Direction::down);
  EXPECT_EQ(passed.bytes, 123457u);
  EXPECT_EQ(delivered, 123457u) << "the proxy forwarded past the watched byte before the callback";
}

TEST_F(ProxyTest, UnreachableUpstreamClosesTheClientAndIsLogged) {
  ProxyOptions o;
  o.clock = &clock_;
  o.upstream_port = 1;  // nothing listens there
  FaultProxy proxy(o);
  proxy.start();
  Socket s = Socket::connect(proxy.port());
  ReadResult r = s.read_until_closed(5s);
  EXPECT_TRUE(r.eof || r.error);
  auto ev = proxy.events();
  ASSERT_FALSE(ev.empty());
  EXPECT_EQ(ev[0].kind, "upstream-failed");
}

TEST_F(ProxyTest, SeveralThreadsCarryConcurrentConnections) {
  ProxyOptions o;
  o.threads = 2;
  start(echo(), "", 1, o);
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int i = 0; i < 6; ++i)
    clients.emplace_back([&, i] {
      Socket s = connect();
      std::string data = pattern(200000, static_cast<std::uint64_t>(i));
      std::thread w([&] {
        s.write_all(data);
        s.shutdown_write();
      });
      ReadResult r = s.read_until_closed(10s);
      w.join();
      if (r.data == data) ++ok;
    });
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok, 6);
}

// After a handler a proxy thread polls its sockets for `spin`, then sleeps in
// epoll: exchanges inside the window and long after it are relayed alike.
class ProxySpinTest : public ProxyTest, public testing::WithParamInterface<std::chrono::microseconds> {};

TEST_P(ProxySpinTest, RelaysWhatArrivesInsideAndAfterTheWindow) {
  ProxyOptions o;
  o.spin = GetParam();
  start(echo(), "", 1, o);
  Socket s = connect();
  s.write_all("ping");
  EXPECT_EQ(s.read_exact(4), "ping");
  s.write_all("pong");  // at once: inside a 5 ms window
  EXPECT_EQ(s.read_exact(4), "pong");
  std::this_thread::sleep_for(30ms);  // past every window: the thread sleeps in epoll
  s.write_all("late");
  EXPECT_EQ(s.read_exact(4), "late");
  std::string data = pattern(1 << 20, 5);
  std::thread writer([&] {
    s.write_all(data);
    s.shutdown_write();
  });
  ReadResult r = s.read_until_closed(10s);
  writer.join();
  EXPECT_TRUE(r.eof);
  EXPECT_TRUE(r.data == data) << "got " << r.data.size() << " bytes";
}

INSTANTIATE_TEST_SUITE_P(Windows, ProxySpinTest, testing::Values(0us, 50us, 5000us),
                         [](const auto& param_info) { return std::to_string(param_info.param.count()) + "us"; });

TEST_F(ProxyTest, AnIdleProxyStopsPollingAfterTheWindow) {
  auto cpu_seconds = [] {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    auto secs = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
    return secs(ru.ru_utime) + secs(ru.ru_stime);
  };
  ProxyOptions o;
  o.spin = 5ms;  // long enough to show, short beside the idle time
  start(echo(), "", 1, o);
  Socket s = connect();
  s.write_all("ping");
  ASSERT_EQ(s.read_exact(4), "ping");
  auto before = cpu_seconds();
  std::this_thread::sleep_for(300ms);
  EXPECT_LT(cpu_seconds() - before, 0.06) << "the proxy kept polling while nothing moved";
  s.write_all("pong");
  EXPECT_EQ(s.read_exact(4), "pong");
}

TEST_F(ProxyTest, StopClosesOpenConnections) {
  start(echo(), "");
  Socket s = connect();
  s.write_all("ping");
  EXPECT_EQ(s.read_exact(4), "ping");
  proxy_->stop();
  ReadResult r = s.read_until_closed(2s);
  EXPECT_TRUE(r.eof || r.error);
  proxy_->stop();
}

TEST(ProxyWithServer, CorruptsAnImageDownloadAtABodyOffset) {
  UpdateServer server;
  std::vector<std::uint8_t> image(50000);
  for (std::size_t i = 0; i < image.size(); ++i) image[i] = static_cast<std::uint8_t>(i);
  server.put("/images/a.bin", image);
  server.start();
  // The response header is measured first so the fault lands on body byte 777.
  std::size_t header_size = 0;
  {
    Socket direct = Socket::connect(server.port());
    direct.write_all(request("HEAD", "/images/a.bin", "Connection: close\r\n"));
    header_size = direct.read_until_closed(5s).data.size();
  }
  ProxyOptions o;
  o.upstream_port = server.port();
  o.faults = parse_fault_spec("down:corrupt@offset=" + std::to_string(header_size + 777) + ",mask=0xff");
  FaultProxy proxy(o);
  proxy.start();
  Socket s = Socket::connect(proxy.port());
  s.write_all(request("GET", "/images/a.bin", "Connection: close\r\n"));
  HttpResponse r = read_response(s);
  EXPECT_EQ(r.status, 200);
  ASSERT_EQ(r.body.size(), image.size());
  std::string expected(image.begin(), image.end());
  expected[777] = static_cast<char>(expected[777] ^ 0xff);
  EXPECT_EQ(r.body, expected);
  EXPECT_TRUE(eventually([&] { return server.request_log().size() == 2u; }));
  auto log = server.request_log();
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[1].bytes, image.size()) << "the server sent the whole image; the proxy altered it";
}

TEST(ProxyMain, RejectsABadSpecWithItsColumn) {
  ProxyMainOptions o;
  o.upstream = "127.0.0.1:1";
  o.fault = "down:corrupt@offset=1;up:wat";
  std::ostringstream out;
  try {
    proxy_main(o, out);
    FAIL();
  } catch (const otarig::InputError& e) {
    EXPECT_EQ(std::string(e.what()).substr(0, 11), "--fault:26:") << e.what();
  }
  o.fault = "";
  o.upstream = "nohostport";
  EXPECT_THROW(proxy_main(o, out), otarig::InputError);
  o.upstream = "127.0.0.1:1";
  o.spin = 20ms;
  EXPECT_THROW(proxy_main(o, out), otarig::InputError);
}

// The plaintext watch (docs/network.md, "Plaintext watch"): reads of at most
// 7 bytes, so the 32-byte marker reaches the proxy in several pieces, and the
// server writes it in two. The proxy finds it at its offset in the server's
// stream, logs it, and relays every byte unchanged.
TEST_F(ProxyTest, PlaintextWatchFindsAMarkerSplitAcrossReads) {
  const std::string marker = "otarig-marker-0123456789abcdefgh";
  std::string payload = pattern(5000, 9);
  payload.replace(1234, marker.size(), marker);
  ProxyOptions options;
  options.buffer_size = 7;
  start(
      [payload](Socket& sock, std::size_t) {
        sock.write_all(payload.substr(0, 1240));  // the marker's first 6 bytes end this write
        sock.write_all(payload.substr(1240));
        sock.shutdown_write();
        sock.read_until_closed(10s);
      },
      "", 1, options);
  auto bytes = [](const std::string& s) { return std::vector<std::uint8_t>(s.begin(), s.end()); };
  proxy_->watch_plaintext({{"update", bytes(marker)}, {"next", bytes("a marker that is never sent here")}});
  Socket s = connect();
  ReadResult r = s.read_until_closed(5s);
  EXPECT_TRUE(r.eof);
  EXPECT_TRUE(r.data == payload);
  // The proxy scans a piece before it writes it on: all is counted once the client has it.
  const auto scan = proxy_->take_plaintext_scan();
  ASSERT_EQ(scan.sightings.size(), 1u);
  EXPECT_EQ(scan.sightings[0].name, "update");
  EXPECT_EQ(scan.sightings[0].connection, 1u);
  EXPECT_EQ(scan.sightings[0].offset, 1234u);
  EXPECT_EQ(scan.scanned, 1u);
  EXPECT_EQ(scan.opaque, 0u);
  EXPECT_EQ(scan.bytes, payload.size());
  const auto logged = events_of("plaintext");
  ASSERT_EQ(logged.size(), 1u);
  EXPECT_EQ(logged[0].offset, 1234u);
  EXPECT_EQ(logged[0].direction, Direction::down);
  // Taken: the counts restart. What the client sends is not watched.
  EXPECT_TRUE(proxy_->take_plaintext_scan().sightings.empty());
}

// An upstream that speaks TLS, relayed without terminating it: the proxy
// sees TLS records and says it could not read them rather than find nothing.
TEST_F(ProxyTest, PlaintextWatchSaysWhatItCannotRead) {
  const std::string marker = "otarig-marker-0123456789abcdefgh";
  ProxyOptions options;
  options.upstream_is_tls = true;
  start(send_and_close({"x" + marker + "y"}), "", 1, options);
  proxy_->watch_plaintext({{"update", std::vector<std::uint8_t>(marker.begin(), marker.end())}});
  Socket s = connect();
  EXPECT_EQ(s.read_until_closed(5s).data, "x" + marker + "y");
  const auto scan = proxy_->take_plaintext_scan();
  EXPECT_TRUE(scan.sightings.empty());
  EXPECT_EQ(scan.scanned, 0u);
  EXPECT_EQ(scan.opaque, 1u);
  EXPECT_EQ(scan.bytes, 0u);
  // No watch: nothing counted.
  proxy_->watch_plaintext({});
  Socket again = connect();
  again.read_until_closed(5s);
  EXPECT_EQ(proxy_->take_plaintext_scan().opaque, 0u);
}
