#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>

#include <fstream>
#include <future>

#include "loopback.hpp"
#include "otarig/core/errors.hpp"
#include "otarig/core/openssl_ptr.hpp"
#include "otarig/drivers/net/fault_proxy.hpp"
#include "otarig/drivers/net/http_server.hpp"
#include "otarig/drivers/net/pki.hpp"

using namespace otarig::drivers::net;
using namespace otarig::test::net;
using namespace std::chrono_literals;

namespace {

// One PKI for the whole suite: key generation is the slow part.
const TestPki& pki() {
  static const TestPki p = TestPki::generate();
  return p;
}

std::unique_ptr<UpdateServer> https_server(bool mutual, std::chrono::milliseconds timeout = 2000ms) {
  ServerOptions o;
  o.tls = TlsConfig{pki().server.cert_pem, pki().server.key_pem, mutual ? pki().ca.cert_pem : std::string()};
  o.timeout = timeout;
  auto s = std::make_unique<UpdateServer>(std::move(o));
  s->put("/hello.txt", {'h', 'i'});
  s->start();
  return s;
}

std::string fetch(std::uint16_t port, const TlsClientOptions& o, const std::string& path = "/hello.txt") {
  TlsClient c(port, o);
  c.write_all(request("GET", path));
  HttpResponse r = read_response(c);
  return std::to_string(r.status) + " " + r.body;
}

std::string read_n_tls(Transport& t, std::size_t n) {
  std::string out(n, '\0');
  std::size_t got = 0;
  while (got < n) {
    std::size_t k = t.read_some(out.data() + got, n - got);
    if (k == 0) throw std::runtime_error("closed after " + std::to_string(got) + " bytes");
    got += k;
  }
  return out;
}

}  // namespace

TEST(Tls, GeneratedCertificatesAreDistinctPem) {
  const TestPki& p = pki();
  for (const CertifiedKey* k : {&p.ca, &p.server, &p.client, &p.wrong_ca, &p.impostor}) {
    EXPECT_TRUE(k->cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    EXPECT_TRUE(k->key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
  }
  EXPECT_NE(p.ca.cert_pem, p.wrong_ca.cert_pem);
  EXPECT_NE(p.server.key_pem, p.impostor.key_pem);
}

TEST(Tls, HttpsWithTheTestCa) {
  auto server = https_server(false);
  EXPECT_EQ(fetch(server->port(), {.ca_pem = pki().ca.cert_pem}), "200 hi");
  EXPECT_EQ(server->base_url().substr(0, 8), "https://");
}

TEST(Tls, OnlyAeadSuitesAreAcceptedUnlessLegacyCiphersAreAskedFor) {
  auto server = https_server(false);
  const TlsClientOptions cbc_only{.ca_pem = pki().ca.cert_pem,
                                  .tls12_ciphers = "ECDHE-ECDSA-AES128-SHA",
                                  .max_version = TLS1_2_VERSION};
  EXPECT_THROW(fetch(server->port(), cbc_only), std::runtime_error);
  for (const char* aead : {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"})
    EXPECT_EQ(fetch(server->port(), {.ca_pem = pki().ca.cert_pem, .tls12_ciphers = aead,
                                     .max_version = TLS1_2_VERSION}),
              "200 hi")
        << aead;
  EXPECT_EQ(fetch(server->port(), {.ca_pem = pki().ca.cert_pem}), "200 hi");  // TLS 1.3

  ServerOptions o;
  o.tls = TlsConfig{pki().server.cert_pem, pki().server.key_pem, {}, true};
  o.timeout = 2000ms;
  UpdateServer legacy(std::move(o));
  legacy.put("/hello.txt", {'h', 'i'});
  legacy.start();
  EXPECT_EQ(fetch(legacy.port(), cbc_only), "200 hi");
}

TEST(Tls, BodyByteHookCountsPlaintextOnAKeptAliveTlsConnection) {
  auto server = https_server(true);
  const std::string big = pattern(400000, 8);
  const std::uint64_t b = 262145;  // one past the first 256 KiB write
  server->put("/deliveries/1/image.bin", std::vector<std::uint8_t>(big.begin(), big.end()));
  std::promise<BodyByte> fired;
  std::promise<void> release;
  auto released = release.get_future().share();
  std::uint64_t sent_then = 0;
  server->on_body_byte("/deliveries/1/image.bin", b, [&](const BodyByte& at) {
    for (const auto& r : server->responses_in_progress()) sent_then = r.bytes;
    fired.set_value(at);
    released.wait();
  });
  ReleaseOnExit guard{release};  // the hook returns however the test ends
  TlsClient c(server->port(), {.ca_pem = pki().ca.cert_pem, .cert_pem = pki().client.cert_pem,
                               .key_pem = pki().client.key_pem});
  c.write_all(request("HEAD", "/deliveries/1/image.bin"));
  EXPECT_EQ(read_response(c, true).header("content-length"), "400000");
  c.write_all(request("GET", "/deliveries/1/image.bin"));
  // Header and the first b body bytes arrive while the server is inside the hook.
  std::string got;
  char buf[65536];
  auto at = fired.get_future();
  while (got.find("\r\n\r\n") == std::string::npos || got.size() - got.find("\r\n\r\n") - 4 < b) {
    std::size_t n = c.read_some(buf, sizeof buf);
    ASSERT_GT(n, 0u);
    got.append(buf, n);
  }
  const std::string body = got.substr(got.find("\r\n\r\n") + 4);
  EXPECT_EQ(body.size(), b) << "bytes past the hooked one arrived before the hook returned";
  EXPECT_EQ(body, big.substr(0, b));
  ASSERT_EQ(at.wait_for(5s), std::future_status::ready);
  const BodyByte where = at.get();
  EXPECT_TRUE(where.tls);
  EXPECT_EQ(where.byte, b);
  EXPECT_EQ(sent_then, b);
  guard.now();
  EXPECT_EQ(read_n_tls(c, big.size() - b), big.substr(b));
}

TEST(Tls, EndlessBodyTravelsInsideTheTlsStream) {
  auto server = https_server(false);
  server->put("/deliveries/3/image.bin", {'i', 'm', 'g'});
  server->set_endless("/deliveries/*/image.bin", {300000, 1});
  TlsClient c(server->port(), {.ca_pem = pki().ca.cert_pem});
  c.write_all(request("GET", "/deliveries/3/image.bin"));
  std::string got;
  char buf[65536];
  while (std::size_t n = c.read_some(buf, sizeof buf)) got.append(buf, n);  // until close_notify
  const auto end = got.find("\r\n\r\n");
  ASSERT_NE(end, std::string::npos);
  EXPECT_EQ(got.substr(0, end).find("Content-Length"), std::string::npos) << got.substr(0, end);
  EXPECT_EQ(got.size() - end - 4, 3u + 300000u);
  EXPECT_EQ(got.substr(end + 4, 3), "img");
}

TEST(Tls, ClientTrustingAnotherCaRefusesTheServer) {
  auto server = https_server(false);
  try {
    fetch(server->port(), {.ca_pem = pki().wrong_ca.cert_pem});
    FAIL() << "verified against the wrong CA";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("certificate"), std::string::npos) << e.what();
  }
  eventually([&] { return server->stats().tls_failures != 0; });
  EXPECT_EQ(server->stats().tls_failures, 1u);
}

TEST(Tls, MutualTlsRefusesAClientWithoutACertificate) {
  auto server = https_server(true);
  // TLS 1.3 may finish the client's handshake before the server refuses: the
  // refusal then arrives as an alert on the first read. Either way, no response.
  EXPECT_THROW(fetch(server->port(), {.ca_pem = pki().ca.cert_pem}), std::runtime_error);
  eventually([&] { return server->stats().tls_failures != 0; });
  EXPECT_EQ(server->stats().tls_failures, 1u);
  EXPECT_EQ(server->stats().requests, 0u);
  auto log = server->request_log();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_NE(log[0].note.find("TLS handshake failed"), std::string::npos) << log[0].note;
}

TEST(Tls, MutualTlsRefusesACertificateFromAnotherCa) {
  auto server = https_server(true);
  EXPECT_THROW(fetch(server->port(), {.ca_pem = pki().ca.cert_pem, .cert_pem = pki().impostor.cert_pem,
                                      .key_pem = pki().impostor.key_pem}),
               std::runtime_error);
}

TEST(Tls, MutualTlsAcceptsTheClientCertificate) {
  auto server = https_server(true);
  EXPECT_EQ(fetch(server->port(), {.ca_pem = pki().ca.cert_pem, .cert_pem = pki().client.cert_pem,
                                   .key_pem = pki().client.key_pem}),
            "200 hi");
}

// libcurl resumes its TLS session on every new connection of a handle
// (SWUpdate's suricatta: its feedback after a broken download). A server
// that verifies client certificates and names no session id context makes
// OpenSSL refuse every such resumption with a handshake failure.
TEST(Tls, MutualTlsResumesASessionWithItsVerifiedCertificate) {
  auto server = https_server(true);
  const TlsClientOptions o{.ca_pem = pki().ca.cert_pem, .cert_pem = pki().client.cert_pem,
                           .key_pem = pki().client.key_pem};
  // The first connection stays open: OpenSSL marks the session of a
  // connection freed without a shutdown as not resumable.
  TlsClient first(server->port(), o);
  first.write_all(request("GET", "/hello.txt"));
  ASSERT_EQ(read_response(first).status, 200);
  SSL_SESSION* session = first.session();
  ASSERT_NE(session, nullptr);
  auto again = o;
  again.resume = session;
  TlsClient second(server->port(), again);
  second.write_all(request("GET", "/hello.txt"));
  EXPECT_EQ(read_response(second).status, 200);
  EXPECT_TRUE(second.resumed());
  SSL_SESSION_free(session);
}

TEST(Tls, SilentTlsClientIsDroppedAtTheDeadline) {
  auto server = https_server(false, 200ms);
  Socket s = Socket::connect(server->port());
  ReadResult r = s.read_until_closed(3s);
  EXPECT_TRUE(r.eof || r.error);
  EXPECT_FALSE(r.timed_out);
  EXPECT_TRUE(eventually([&] { return server->stats().timeouts + server->stats().tls_failures == 1u; }));
}

TEST(Tls, ThroughTheProxyWithoutFaultsTlsPassesUntouched) {
  auto server = https_server(true);
  ProxyOptions o;
  o.upstream_port = server->port();
  FaultProxy proxy(o);
  proxy.start();
  EXPECT_EQ(fetch(proxy.port(), {.ca_pem = pki().ca.cert_pem, .cert_pem = pki().client.cert_pem,
                                 .key_pem = pki().client.key_pem}),
            "200 hi");
}

TEST(Tls, ImpostorFailsVerificationAgainstTheRealCa) {
  auto server = https_server(false);
  ProxyOptions o;
  o.upstream_port = server->port();
  o.faults = parse_fault_spec("impostor");
  o.impostor = TlsConfig{pki().impostor.cert_pem, pki().impostor.key_pem, {}};
  FaultProxy proxy(o);
  proxy.start();
  try {
    fetch(proxy.port(), {.ca_pem = pki().ca.cert_pem});
    FAIL() << "a client trusting the real CA accepted the impostor";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("verify"), std::string::npos) << e.what();
  }
  eventually([&] { return !proxy.events().empty(); });
  std::vector<FaultEvent> ev = proxy.events();
  ASSERT_FALSE(ev.empty());
  EXPECT_EQ(ev[0].kind, "impostor");
  EXPECT_NE(ev[0].detail.find("refused"), std::string::npos) << ev[0].detail;
}

TEST(Tls, ImpostorAcceptedByANonVerifyingClientRelaysToTheUpstream) {
  auto server = https_server(true);
  ProxyOptions o;
  o.upstream_port = server->port();
  o.faults = parse_fault_spec("impostor;down:corrupt@offset=0,mask=0x01");  // "HTTP" -> "ITTP"
  o.upstream_client = TlsConfig{pki().client.cert_pem, pki().client.key_pem, {}};
  FaultProxy proxy(o);  // impostor certificate generated by the proxy
  proxy.start();
  TlsClient c(proxy.port(), {});  // verifies nothing: the defect the impostor exposes
  c.write_all(request("GET", "/hello.txt", "Connection: close\r\n"));
  // The proxy ends the client's side without a TLS close_notify once the
  // upstream has finished, so the stream ends in an error after the bytes.
  std::string got;
  char buf[4096];
  try {
    while (std::size_t n = c.read_some(buf, sizeof buf)) got.append(buf, n);
  } catch (const std::runtime_error&) {
  }
  EXPECT_TRUE(got.starts_with("ITTP/1.1 200 OK")) << got;
  EXPECT_TRUE(got.ends_with("\r\n\r\nhi")) << got;
  auto ev = proxy.events();
  ASSERT_GE(ev.size(), 2u);
  EXPECT_EQ(ev[0].kind, "impostor");
  EXPECT_NE(ev[0].detail.find("accepted"), std::string::npos);
}

// The plaintext watch reads TLS the proxy terminates (here the impostor's):
// the upstream's decrypted stream, scanned before the fault alters it. The
// same server's TLS relayed without termination is counted as opaque.
TEST(Tls, PlaintextWatchReadsTlsTheProxyTerminatesAndOnlyThat) {
  auto server = https_server(true);
  ProxyOptions o;
  o.upstream_port = server->port();
  o.upstream_is_tls = true;
  o.faults = parse_fault_spec("impostor;down:corrupt@offset=0,mask=0x01");  // "HTTP" -> "ITTP" for the client
  o.upstream_client = TlsConfig{pki().client.cert_pem, pki().client.key_pem, {}};
  FaultProxy proxy(o);
  proxy.start();
  const std::string status = "HTTP/1.1 200 OK";
  proxy.watch_plaintext({{"status line", std::vector<std::uint8_t>(status.begin(), status.end())}});
  {
    TlsClient c(proxy.port(), {});
    c.write_all(request("GET", "/hello.txt", "Connection: close\r\n"));
    std::string got;
    char buf[4096];
    try {
      while (std::size_t n = c.read_some(buf, sizeof buf)) got.append(buf, n);
    } catch (const std::runtime_error&) {
    }
    EXPECT_TRUE(got.starts_with("ITTP/1.1 200 OK")) << got;
  }
  auto scan = proxy.take_plaintext_scan();
  EXPECT_EQ(scan.scanned, 1u);
  EXPECT_EQ(scan.opaque, 0u);
  ASSERT_EQ(scan.sightings.size(), 1u);
  EXPECT_EQ(scan.sightings[0].offset, 0u);

  // No termination: the proxy relays the server's TLS records as they are.
  proxy.set_faults(parse_fault_spec(""), 1);
  TlsClientOptions trusting;
  trusting.ca_pem = pki().ca.cert_pem;
  trusting.cert_pem = pki().client.cert_pem;
  trusting.key_pem = pki().client.key_pem;
  EXPECT_NE(fetch(proxy.port(), trusting).find("hi"), std::string::npos);
  scan = proxy.take_plaintext_scan();
  EXPECT_EQ(scan.scanned, 0u);
  EXPECT_EQ(scan.opaque, 1u);
  EXPECT_TRUE(scan.sightings.empty());
}

// ask-client-cert: the proxy speaks as the server, asks for a client
// certificate without requiring one, logs whether one came, and relays.
TEST(Tls, AskClientCertLogsWhetherTheClientPresentedOne) {
  auto server = https_server(true);
  ProxyOptions o;
  o.upstream_port = server->port();
  o.faults = parse_fault_spec("ask-client-cert");
  o.upstream_client = TlsConfig{pki().client.cert_pem, pki().client.key_pem, {}};
  o.server_identity = TlsConfig{pki().server.cert_pem, pki().server.key_pem, pki().ca.cert_pem};
  FaultProxy proxy(o);
  proxy.start();
  auto certificate_event = [&] {
    std::vector<FaultEvent> seen;
    eventually([&] {
      for (const auto& e : proxy.take_events())
        if (e.kind == "client-certificate") seen.push_back(e);
      return !seen.empty();
    });
    return seen.empty() ? std::string() : seen[0].detail;
  };
  // With its certificate: the relay answers, the log says it was presented.
  EXPECT_EQ(fetch(proxy.port(), {.ca_pem = pki().ca.cert_pem, .cert_pem = pki().client.cert_pem,
                                 .key_pem = pki().client.key_pem}),
            "200 hi");
  EXPECT_EQ(certificate_event(), "client presented a certificate that chains to the client CA");
  // Without: the handshake goes on (the server would have refused it).
  EXPECT_EQ(fetch(proxy.port(), {.ca_pem = pki().ca.cert_pem}), "200 hi");
  EXPECT_EQ(certificate_event(), "client presented no certificate (asked for, not required)");
  // With one of another CA: logged as not verifying.
  EXPECT_EQ(fetch(proxy.port(), {.ca_pem = pki().ca.cert_pem, .cert_pem = pki().impostor.cert_pem,
                                 .key_pem = pki().impostor.key_pem}),
            "200 hi");
  EXPECT_NE(certificate_event().find("does not verify"), std::string::npos);
  // The canonical spec text names it, with no direction.
  EXPECT_EQ(parse_fault_spec("ask-client-cert").text(), "ask-client-cert");
  EXPECT_THROW(parse_fault_spec("up:ask-client-cert"), otarig::InputError);
}

TEST(Tls, PkiWritesFilesTheServerLoads) {
  TempDir dir;
  pki().write(dir.path());
  for (const char* f : {"ca.pem", "server.pem", "server.key", "client.pem", "client.key", "wrong-ca.pem",
                        "impostor.pem", "impostor.key"})
    EXPECT_TRUE(std::filesystem::exists(dir.path() / f)) << f;
  EXPECT_EQ(std::filesystem::status(dir.path() / "server.key").permissions() & std::filesystem::perms::group_read,
            std::filesystem::perms::none);
  ServerOptions o;
  o.tls = TlsConfig::from_files(dir.path() / "server.pem", dir.path() / "server.key", dir.path() / "ca.pem");
  UpdateServer server(o);
  server.put("/x", {'x'});
  server.start();
  EXPECT_EQ(fetch(server.port(), {.ca_pem = pki().ca.cert_pem, .cert_pem = pki().client.cert_pem,
                                  .key_pem = pki().client.key_pem}, "/x"),
            "200 x");
  EXPECT_THROW(TlsConfig::from_files(dir.path() / "missing.pem", {}), otarig::InputError);
  ServerOptions bad;
  bad.tls = TlsConfig{"not pem", "not pem", {}};
  UpdateServer broken(bad);
  EXPECT_THROW(broken.start(), otarig::InputError);
}

// ---- Certificates of a support period (pki.hpp) and the proxy presenting them.

namespace {

X509* parse_pem(const std::string& pem, otarig::ossl::X509Ptr& holder) {
  otarig::ossl::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  holder.reset(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  return holder.get();
}

// -1: the validity has ended before now; 1: it begins after now; 0: valid now.
int validity_now(const std::string& pem) {
  otarig::ossl::X509Ptr holder;
  X509* x = parse_pem(pem, holder);
  if (!x) throw std::runtime_error("not a certificate");
  if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0) return -1;
  if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0) return 1;
  return 0;
}

// Whether `pem` was signed by `issuer_pem`'s key.
bool signed_by(const std::string& pem, const std::string& issuer_pem) {
  otarig::ossl::X509Ptr a, b;
  X509* cert = parse_pem(pem, a);
  X509* issuer = parse_pem(issuer_pem, b);
  return cert && issuer && X509_verify(cert, X509_get0_pubkey(issuer)) == 1;
}

std::string serial_of(const std::string& pem) {
  otarig::ossl::X509Ptr holder;
  X509* x = parse_pem(pem, holder);
  return std::to_string(ASN1_INTEGER_get(X509_get0_serialNumber(x)));
}

}  // namespace

TEST(Pki, EachCertificateIsValidAsMade) {
  const TestPki& p = pki();
  struct Case {
    const char* name;
    const CertifiedKey* cert;
    int validity;
    const CertifiedKey* issuer;
  };
  const Case cases[] = {{"ca", &p.ca, 0, &p.ca},
                        {"server", &p.server, 0, &p.ca},
                        {"client", &p.client, 0, &p.ca},
                        {"expired", &p.expired, -1, &p.ca},
                        {"not-yet-valid", &p.not_yet_valid, 1, &p.ca},
                        {"renewed", &p.renewed, 0, &p.ca},
                        {"rotated-ca", &p.rotated_ca, 0, &p.rotated_ca},
                        {"rotated", &p.rotated, 0, &p.rotated_ca},
                        {"expired-client", &p.expired_client, -1, &p.ca}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(validity_now(c.cert->cert_pem), c.validity);
    EXPECT_TRUE(signed_by(c.cert->cert_pem, c.issuer->cert_pem));
  }
  // A renewal: the same CA, another key and serial. A rotation: another CA.
  EXPECT_NE(p.renewed.key_pem, p.server.key_pem);
  EXPECT_NE(serial_of(p.renewed.cert_pem), serial_of(p.server.cert_pem));
  EXPECT_FALSE(signed_by(p.rotated.cert_pem, p.ca.cert_pem));
  EXPECT_EQ(p.server_certificates().size(), 4u);
}

TEST(Pki, AClientTrustingTheCaRefusesTheExpiredAndTheEarlyCertificateAndTakesTheRenewedOne) {
  auto server = https_server(false);
  ProxyOptions o;
  o.upstream_port = server->port();
  for (const auto& [name, ck] : pki().server_certificates()) o.server_certificates[name] = {ck.cert_pem, ck.key_pem, {}};
  FaultProxy proxy(o);
  proxy.start();
  auto through = [&](const std::string& name, const std::string& ca) {
    proxy.set_faults(parse_fault_spec("certificate=" + name), 1);
    std::string answer;
    try {
      answer = fetch(proxy.port(), {.ca_pem = ca});
    } catch (const std::runtime_error& e) {
      answer = std::string("error: ") + e.what();
    }
    std::string detail;
    eventually([&] {
      for (const auto& e : proxy.take_events())
        if (e.kind == "certificate") detail = e.detail;
      return !detail.empty();
    });
    return std::pair{answer, detail};
  };
  for (const char* lapsed : {"expired", "not-yet-valid"}) {
    auto [answer, detail] = through(lapsed, pki().ca.cert_pem);
    EXPECT_TRUE(answer.starts_with("error: ")) << lapsed << ": " << answer;
    EXPECT_TRUE(detail.starts_with(std::string("client refused the ") + lapsed)) << detail;
  }
  auto [renewed, renewed_detail] = through("renewed", pki().ca.cert_pem);
  EXPECT_EQ(renewed, "200 hi");
  EXPECT_TRUE(renewed_detail.starts_with("client accepted the renewed")) << renewed_detail;
  // The rotated CA: refused by a client that was not told of it, taken by one that was.
  auto [unknown, unknown_detail] = through("rotated-ca", pki().ca.cert_pem);
  EXPECT_TRUE(unknown.starts_with("error: ")) << unknown;
  auto [told, told_detail] = through("rotated-ca", pki().rotated_ca.cert_pem);
  EXPECT_EQ(told, "200 hi") << told_detail;
}

TEST(Outage, RefusedConnectionsAreResetAndLoggedThenTheServerIsBack) {
  auto server = https_server(false);
  ProxyOptions o;
  o.upstream_port = server->port();
  FaultProxy proxy(o);
  proxy.start();
  proxy.set_faults(parse_fault_spec("outage=refuse,for=600ms"), 1);
  EXPECT_THROW(fetch(proxy.port(), {.ca_pem = pki().ca.cert_pem}), std::runtime_error);
  std::vector<FaultEvent> seen;
  eventually([&] {
    for (auto& e : proxy.take_events()) seen.push_back(e);
    return std::any_of(seen.begin(), seen.end(), [](const FaultEvent& e) { return e.detail.starts_with("ends"); });
  });
  ASSERT_GE(seen.size(), 3u);
  EXPECT_EQ(seen[0].connection, 0u);
  EXPECT_TRUE(seen[0].detail.starts_with("begins: every connection is reset")) << seen[0].detail;
  EXPECT_EQ(seen[1].kind, "outage");
  EXPECT_EQ(seen[1].connection, 1u);
  EXPECT_TRUE(seen[1].detail.starts_with("refused")) << seen[1].detail;
  EXPECT_EQ(fetch(proxy.port(), {.ca_pem = pki().ca.cert_pem}), "200 hi");
}

TEST(Outage, ADroppedConnectionIsHeldSilentUntilTheOutageEndsThenRelayed) {
  auto server = https_server(false);
  ProxyOptions o;
  o.upstream_port = server->port();
  FaultProxy proxy(o);
  proxy.start();
  const auto t0 = std::chrono::steady_clock::now();
  proxy.set_faults(parse_fault_spec("outage=drop,for=700ms"), 1);
  // The client's handshake waits through the outage, then completes.
  EXPECT_EQ(fetch(proxy.port(), {.ca_pem = pki().ca.cert_pem}), "200 hi");
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 650ms);
  std::vector<std::string> details;
  for (const auto& e : proxy.take_events())
    if (e.kind == "outage" && e.connection == 1) details.push_back(e.detail);
  ASSERT_EQ(details.size(), 2u);
  EXPECT_TRUE(details[0].starts_with("dropped")) << details[0];
  EXPECT_TRUE(details[1].starts_with("released")) << details[1];
}

TEST(Outage, AConnectionOpenWhenItBeginsIsResetSoKeepAliveDoesNotCarryChecksThroughIt) {
  auto server = https_server(false);
  ProxyOptions o;
  o.upstream_port = server->port();
  FaultProxy proxy(o);
  proxy.start();
  TlsClient c(proxy.port(), {.ca_pem = pki().ca.cert_pem});
  c.write_all(request("GET", "/hello.txt"));
  EXPECT_EQ(read_response(c).status, 200);
  proxy.set_faults(parse_fault_spec("outage=drop,for=2s"), 1);
  bool failed = false;
  try {
    c.write_all(request("GET", "/hello.txt"));
    failed = read_response(c).status != 200;
  } catch (const std::runtime_error&) {
    failed = true;
  }
  EXPECT_TRUE(failed) << "the kept-alive connection still answered during the outage";
  auto ev = proxy.take_events();
  ASSERT_FALSE(ev.empty());
  EXPECT_NE(ev[0].detail.find("1 connection(s) open before it reset"), std::string::npos) << ev[0].detail;
}
