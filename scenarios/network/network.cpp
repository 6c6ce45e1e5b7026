// Network faults: the fault proxy between the device and the rig's update
// server (`network`), and a server that answers with an older release
// (`stale`: a frozen or replaying mirror).
#include "network.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <map>
#include <regex>

#include "otarig/drivers/net/fault_spec.hpp"
#include "otarig/harness/bench.hpp"
#include "otarig/harness/oracles.hpp"
#include "otarig/harness/plan.hpp"
#include "otarig/harness/releases.hpp"
#include "otarig/harness/rng.hpp"
#include "otarig/harness/scenario.hpp"
#include "otarig/harness/trial.hpp"

namespace otarig::scenarios::network {
namespace {

using harness::BoardAbilities;
using harness::FaultParseContext;
using harness::OracleResult;
using harness::PlanContext;
using harness::Rng;
using harness::Scenario;
using harness::TrialPort;
using harness::TrialSpec;

// How many bytes past the image an endless body may have been sent when the
// device let go at the image's declared size: what the sockets between the
// update server and the device (server, fault proxy, device, each direction's
// kernel buffers) can hold. More than this was read by the device.
constexpr std::uint64_t kEndlessSlack = 16u << 20;
// How long the rig waits, after a delivery, for the device to close or use a
// connection it completed the handshake with the impostor on.
constexpr std::chrono::seconds kImpostorSettle{30};

struct NetworkOptions final : harness::FaultOptions {
  std::string faults;                ///< fault proxy spec (${b}: a seeded byte of the image)
  std::string probe;                 ///< "" | no-client-certificate | expired-client-certificate
  std::vector<std::string> expect;   ///< installed, stays-up
  std::string client_certificate;    ///< "" | expired: the device's own for the delivery, renewed before the retry

  bool expects(std::string_view what) const { return std::find(expect.begin(), expect.end(), what) != expect.end(); }
  nlohmann::json json() const override {
    nlohmann::json j{{"faults", faults}, {"probe", probe}, {"expect", expect}};
    if (!client_certificate.empty()) j["client_certificate"] = client_certificate;
    return j;
  }
};

struct NetworkPoint final : harness::FaultPoint {
  std::string faults;  ///< this trial's spec, ${b} filled in
  std::string probe;
  std::vector<std::string> expect;
  std::string client_certificate;
  std::uint64_t image_size = 0;
  nlohmann::json json() const override {
    nlohmann::json j = nlohmann::json::object();
    if (!faults.empty()) j["faults"] = faults;
    if (!probe.empty()) j["probe"] = probe;
    if (!expect.empty()) j["expect"] = expect;
    if (!client_certificate.empty()) j["client_certificate"] = client_certificate;
    return j;
  }
  std::string label() const override {
    if (!faults.empty()) return "network: " + faults;
    if (!client_certificate.empty()) return "network: client certificate " + client_certificate;
    if (!probe.empty()) return "network: " + probe;
    return "network";
  }
};

std::string fill_b(std::string text, std::uint64_t b) {
  for (std::size_t at; (at = text.find("${b}")) != std::string::npos;) text.replace(at, 4, std::to_string(b));
  return text;
}

std::shared_ptr<NetworkOptions> parse_network(const Config& c) {
  auto f = std::make_shared<NetworkOptions>();
  f->faults = c.string_or("faults", "");
  f->probe = c.string_or("probe", "");
  if (!f->probe.empty() && f->probe != "no-client-certificate" && f->probe != "expired-client-certificate")
    c.at("probe").fail(
        fmt::format("unknown probe '{}' (known: no-client-certificate, expired-client-certificate)", f->probe));
  f->client_certificate = c.string_or("client_certificate", "");
  if (!f->client_certificate.empty() && f->client_certificate != "expired")
    c.at("client_certificate")
        .fail(fmt::format("unknown client_certificate '{}' (known: expired: the device's own certificate is expired "
                          "for the delivery and renewed before the retry)",
                          f->client_certificate));
  if (auto e = c.find("expect")) {
    // One expectation, or a list of them.
    const std::vector<Config> items = e->is_sequence() ? e->items() : std::vector<Config>{*e};
    if (items.empty()) e->fail("name at least one expectation (known: installed, stays-up)");
    for (const auto& item : items) {
      auto what = item.as_string();
      if (what != "installed" && what != "stays-up")
        item.fail(fmt::format("unknown expectation '{}' (known: installed, stays-up)", what));
      if (f->expects(what)) item.fail(fmt::format("expectation '{}' named twice", what));
      f->expect.push_back(what);
    }
  }
  if (f->faults.empty() && f->probe.empty() && f->client_certificate.empty())
    c.fail("a network fault needs `faults` or `probe` (or `client_certificate`)");
  if (!f->faults.empty()) {
    // Checked now with a sample byte, so a bad spec names its line.
    try {
      (void)drivers::net::parse_fault_spec(fill_b(f->faults, 0), "faults");
    } catch (const InputError& e) {
      c.at("faults").fail(e.what());
    }
  }
  return f;
}

void break_oracle(std::vector<OracleResult>& oracles, const char* name, const std::string& why) {
  for (auto& r : oracles)
    if (r.name == name) {
      r.detail = r.held ? why : r.detail + "; " + why;
      r.held = false;
    }
}

// The certificate a `certificate=NAME` rule presents, or "".
std::string certificate_of(const std::string& faults) {
  if (faults.empty()) return {};
  for (const auto& rule : drivers::net::parse_fault_spec(fill_b(faults, 0), "faults").rules)
    if (const auto* c = std::get_if<drivers::net::ServerCertificate>(&rule.fault)) return c->name;
  return {};
}

template <class Fault>
bool has_fault(const std::string& faults) {
  if (faults.empty()) return false;
  for (const auto& rule : drivers::net::parse_fault_spec(fill_b(faults, 0), "faults").rules)
    if (std::holds_alternative<Fault>(rule.fault)) return true;
  return false;
}

// What the fault proxy's TLS log says of one connection the impostor
// terminated: whether the device completed the handshake with it (it took
// the certificate of an unrelated CA), and what crossed afterwards.
struct ImpostorConnection {
  bool accepted = false;
  std::string handshake;       ///< the proxy's words on the handshake
  std::uint64_t sent = 0;      ///< bytes the device sent the impostor (its request)
  std::uint64_t received = 0;  ///< bytes the impostor delivered to the device
  bool closed = false;         ///< the proxy logged its close (so the counts are final)
};

class NetworkRun final : public harness::FaultRun {
 public:
  /// `must_refuse`: what the proxy presents that the device must refuse
  /// (oracle server-authenticated, in these words), for a certificate the
  /// spec alone does not say it must refuse.
  explicit NetworkRun(const NetworkPoint& p, std::string must_refuse = {})
      : p_(p),
        impostor_(has_fault<drivers::net::Impostor>(p.faults)),
        ask_client_cert_(has_fault<drivers::net::AskClientCert>(p.faults)) {
    if (!must_refuse.empty()) {
      impostor_ = true;
      presented_ = std::move(must_refuse);
    }
    // A certificate out of its validity period is judged as the impostor's
    // is: the device must refuse it.
    const auto certificate = certificate_of(p.faults);
    if (certificate == "expired" || certificate == "not-yet-valid") {
      impostor_ = true;
      presented_ = certificate == "expired" ? "an expired certificate for the update server's names, from its own CA"
                                            : "a certificate for the update server's names from its own CA, not yet "
                                              "valid";
    }
  }

  std::string inject(TrialPort& port) override {
    auto* net = port.bench().parts().network.get();
    if (!net)
      throw BenchError(fmt::format("{}: the board has no fault proxy to inject network faults with",
                                   port.bench().profile().name));
    std::vector<std::string> parts;
    if (p_.client_certificate == "expired") {
      // The device's certificate is changed while it is off, as a
      // provisioning would; it reads it at its next connection.
      port.bench().power_off("inject");
      net->use_client_certificate("expired");
      port.bench().power_on("inject");
      port.note("client-certificate", {{"device", "expired"}});
      parts.push_back("the device's client certificate (from the CA the server trusts) expired a day ago: the "
                      "server must refuse it, and the device keep its image and stay healthy; it is renewed (a "
                      "new key and certificate from the same CA) before the retry, which must take");
    }
    net->set_network_faults(p_.faults, port.spec().seed);
    if (!p_.faults.empty()) parts.push_back("network faults " + p_.faults);
    if (p_.probe == "no-client-certificate")
      parts.push_back("a client without a certificate asks the update server for the image");
    if (p_.probe == "expired-client-certificate")
      parts.push_back("a client presenting an expired certificate from the CA the server trusts asks the update "
                      "server for the image");
    if (expects("installed")) parts.push_back("the device must still finish the update");
    if (expects("stays-up"))
      parts.push_back("the device must give up or finish by itself within the link's timeout and answer its "
                      "status right after, before any power cycle");
    return fmt::format("{}", fmt::join(parts, "; "));
  }

  void network_events(TrialPort& port, const nlohmann::json& list) override {
    for (const auto& e : list) {
      if (!e.is_object()) continue;
      if (e.value("source", "") == "server" && e.value("kind", "") == "endless-body") judge_endless_body(port, e);
      if (impostor_ && !e.contains("source")) read_tls_log(e);
      if (ask_client_cert_ && e.value("kind", "") == "client-certificate")
        client_certs_.emplace_back(e.value("connection", std::uint64_t{0}), e.value("detail", ""));
    }
  }

  void delivered(TrialPort& port) override {
    auto* net = port.bench().parts().network.get();
    if (!net) return;
    if (impostor_) await_undecided_handshakes(port, *net);
    if (p_.probe == "no-client-certificate") probe_ = net->probe_without_client_certificate();
    if (p_.probe == "expired-client-certificate") probe_ = net->probe_with_client_certificate("expired");
    if (probe_) port.note("probe", {{"probe", p_.probe}, {"answered", probe_->answered}, {"detail", probe_->detail}});
  }

  void recover(TrialPort& port) override {
    if (expects("stays-up")) check_stays_up(port);
    if (p_.client_certificate == "expired") check_up_with_expired_certificate(port);
    if (p_.client_certificate == "expired") {
      // Renewed while the device is off; the recovery powers it on.
      if (auto* net = port.bench().parts().network.get()) {
        port.bench().power_off("recover");
        net->use_client_certificate("renewed");
        port.note("client-certificate", {{"device", "renewed"}});
      }
    }
  }

  void judge(TrialPort& port, std::vector<OracleResult>& oracles) override {
    if (!stays_up_problem_.empty()) break_oracle(oracles, "recovered", stays_up_problem_);
    if (!endless_problem_.empty()) break_oracle(oracles, "recovered", endless_problem_);
    if (!expired_problem_.empty()) break_oracle(oracles, "recovered", expired_problem_);
    const auto& out = port.outcome();
    const auto fault_index = port.fault_index();
    if (expects("installed") && fault_index < out.observations.size()) {
      const auto& o = out.observations[fault_index];
      if (!o.booted || o.digest != port.image().digest)
        for (auto& r : oracles)
          if (r.name == "still-updatable" && r.held) {
            r.held = false;
            r.detail = fmt::format("the device did not finish the update through the fault ({}: {}); it runs {}",
                                   out.delivery_status, out.delivery_detail,
                                   o.booted ? o.version + " " + o.digest.substr(0, 12) : "nothing");
          }
    }
    if (impostor_) judge_server_authenticated(port, oracles);
    if (ask_client_cert_) judge_client_certificate(port, oracles);
    if (probe_) {
      const std::string who = p_.probe == "expired-client-certificate"
                                  ? "a client presenting an expired certificate from the CA it trusts"
                                  : "a client without a certificate";
      oracles.push_back({"mutual-tls", !probe_->answered,
                         probe_->answered ? fmt::format("the update server answered {}: {}", who, probe_->detail)
                                          : fmt::format("{} was refused: {}", who, probe_->detail)});
    }
  }

 private:
  bool expects(std::string_view what) const {
    return std::find(p_.expect.begin(), p_.expect.end(), what) != p_.expect.end();
  }

  // The device must come through a network fault by itself: it answered the
  // update command within the link's timeout (it timed out, refused or
  // installed on its own), and it answers its status now, before the
  // recovery power cycle that would hide a hung updater.
  void check_stays_up(TrialPort& port) {
    const auto& out = port.outcome();
    auto& bench = port.bench();
    std::vector<std::string> problems;
    if (out.delivery_status == drivers::to_string(drivers::DeliveryStatus::unreachable))
      problems.push_back(fmt::format("it did not answer the update command within the link's timeout ({})",
                                     out.delivery_detail));
    if (!bench.parts().power->is_on()) {
      problems.push_back("its power was off after the delivery");
    } else {
      const auto o = port.look("before-recovery");
      if (!o.booted)
        problems.push_back(fmt::format("it did not answer its status within {:.0f} ms afterwards, before any power "
                                       "cycle",
                                       o.waited_ms));
      else if (!o.health.empty() && o.health != "ok")
        problems.push_back(fmt::format("it reports health={} afterwards", o.health));
    }
    if (!problems.empty())
      stays_up_problem_ = fmt::format("the device did not stay up through the network fault: {}",
                                      fmt::join(problems, "; "));
    port.note("expectation", {{"expect", "stays-up"},
                              {"held", problems.empty()},
                              {"detail", problems.empty() ? "answered the update command and its status by itself"
                                                          : stays_up_problem_}});
  }

  // With an expired client certificate the device must fail safely: it
  // answers its status, healthy, after the delivery and before any power
  // cycle, whatever the delivery's outcome (a device that polls a
  // device-management server never sees the update it cannot fetch, so an
  // unanswered update command is no fault here).
  void check_up_with_expired_certificate(TrialPort& port) {
    std::string problem;
    if (!port.bench().parts().power->is_on()) {
      problem = "its power was off after the delivery";
    } else {
      const auto o = port.look("before-recovery");
      if (!o.booted)
        problem = fmt::format("it did not answer its status within {:.0f} ms after the delivery", o.waited_ms);
      else if (!o.health.empty() && o.health != "ok")
        problem = fmt::format("it reports health={} after the delivery", o.health);
    }
    if (!problem.empty())
      expired_problem_ = "with an expired client certificate the device did not stay up (before any power cycle): " +
                         problem;
    port.note("expectation", {{"expect", "up-with-expired-client-certificate"},
                              {"held", problem.empty()},
                              {"detail", problem.empty() ? "answered its status, healthy, after the delivery"
                                                         : expired_problem_}});
  }

  // The update server's count of an endless body (a `server:endless` fault):
  // the device must stop at the image's declared size and let go.
  void judge_endless_body(TrialPort& port, const nlohmann::json& e) {
    const std::uint64_t extra = e.value("endless", std::uint64_t{0});
    const std::uint64_t sent = e.value("bytes", std::uint64_t{0});
    const std::uint64_t image = sent >= extra ? sent - extra : 0;
    std::string problem;
    if (e.value("in_progress", false))
      problem = fmt::format("the update server was still sending the endless body when the delivery ended ({} "
                            "bytes after the {}-byte image): the device kept the connection instead of stopping "
                            "at the declared size",
                            extra, image);
    else if (extra > kEndlessSlack)
      problem = fmt::format("the device took {} bytes after the {}-byte image before it let go (the sockets on the "
                            "way hold at most {}): it did not stop at the size the image header declares",
                            extra, image, kEndlessSlack);
    port.note("endless-body", {{"image_bytes", image},
                               {"bytes_after_image", extra},
                               {"slack", kEndlessSlack},
                               {"held", problem.empty()},
                               {"detail", problem.empty() ? e.value("note", "") : problem}});
    if (!problem.empty() && endless_problem_.empty()) endless_problem_ = problem;
  }

  // A connection that completed its handshake with the impostor and is not
  // closed yet (or none logged at all) is still being decided by the device: a client that checks
  // the certificate after the handshake closes it without a byte, one that
  // took the impostor talks on it. The device can answer the update command
  // before the proxy sees which (a loaded host), so the rig waits for the
  // close, up to kImpostorSettle: the verdict then does not depend on how
  // fast the host ran the device. What the proxy logs meanwhile joins the
  // trial's evidence.
  void await_undecided_handshakes(TrialPort& port, drivers::NetworkFaultProtocol& net) {
    // No connection logged yet: the proxy's side of the device's handshake
    // has not ended (the device answered first); wait for it too.
    auto undecided = [&] {
      return tls_log_.empty() || std::any_of(tls_log_.begin(), tls_log_.end(), [](const auto& c) {
        return c.second.accepted && !c.second.closed;
      });
    };
    auto& clock = port.bench().clock();
    const auto deadline = clock.now() + kImpostorSettle;
    nlohmann::json later = nlohmann::json::array();
    while (undecided() && clock.now() < deadline) {
      const auto events = net.take_network_events();
      for (const auto& text : events) {
        auto e = nlohmann::json::parse(text, nullptr, false);
        if (e.is_object() && !e.contains("source")) read_tls_log(e);
        later.push_back(std::move(e));
      }
      if (events.empty()) clock.sleep_for(std::chrono::milliseconds(20));
    }
    if (!later.empty()) port.note("network", {{"step", "after-deliver"}, {"events", std::move(later)}});
  }

  // The proxy's events of the connections the impostor terminated.
  void read_tls_log(const nlohmann::json& e) {
    const auto kind = e.value("kind", "");
    const auto id = e.value("connection", std::uint64_t{0});
    const auto detail = e.value("detail", "");
    if (kind == "impostor" || kind == "certificate") {
      auto& c = tls_log_[id];
      c.handshake = detail;
      c.accepted = detail.rfind("client accepted", 0) == 0;
    } else if (kind == "close" && tls_log_.count(id)) {
      // "closed; up N bytes, down M bytes": what was relayed each way.
      static const std::regex counts(R"(up (\d+) bytes, down (\d+) bytes)");
      std::smatch m;
      if (std::regex_search(detail, m, counts)) {
        tls_log_[id].sent = std::stoull(m[1].str());
        tls_log_[id].received = std::stoull(m[2].str());
        tls_log_[id].closed = true;
      }
    }
  }

  // server-authenticated: the device must refuse the impostor's certificate.
  // Completing the TLS handshake with it means the device took a server of
  // an unrelated CA for its update server, and a request sent or a byte
  // taken from it is named; except when the device closed the connection
  // right after the handshake without sending or taking a single byte: a
  // client that checks the certificate's verification result after the
  // handshake (Mender 3.4: OpenSSL's handshake without verification, then
  // its own check of the result) refused it there.
  void judge_server_authenticated(TrialPort& port, std::vector<OracleResult>& oracles) {
    std::vector<std::string> accepted;
    std::uint64_t refused = 0, refused_after = 0;
    for (const auto& [id, c] : tls_log_) {
      if (!c.accepted) {
        ++refused;
        continue;
      }
      if (c.closed && c.sent == 0 && c.received == 0) {
        ++refused_after;
        continue;
      }
      accepted.push_back(
          c.closed ? fmt::format("connection {}: the device completed the TLS handshake with {}, sent it {} bytes "
                                 "and took {} bytes from it",
                                 id, presented_, c.sent, c.received)
                   : fmt::format("connection {}: the device completed the TLS handshake with {}; the connection "
                                 "was still open {} s after the delivery ended",
                                 id, presented_, kImpostorSettle.count()));
    }
    const bool held = accepted.empty();
    const std::string detail =
        held ? ""
             : fmt::format("the device took a server it must refuse for its update server: {}",
                           fmt::join(accepted, "; "));
    std::string held_detail = fmt::format("the device refused {} on {} of {} connections", presented_,
                                          refused + refused_after, tls_log_.size());
    if (refused_after)
      held_detail += fmt::format(" ({} of them after completing the TLS handshake: it closed the connection "
                                 "without sending or taking a byte)",
                                 refused_after);
    port.note("server-authentication",
              {{"held", held},
               {"impostor_connections", tls_log_.size()},
               {"refused", refused},
               {"refused_after_handshake", refused_after},
               {"detail", held ? held_detail : detail}});
    oracles.push_back({"server-authenticated", held, detail});
  }

  // mutual-tls, the device's side: the profile says mutual TLS, so on every
  // connection where the proxy (as the server) asked for a client
  // certificate without requiring it, the device must have presented one
  // that chains to the client CA. A device that proceeds without it would
  // talk to any server that does not insist.
  void judge_client_certificate(TrialPort& port, std::vector<OracleResult>& oracles) {
    std::vector<std::string> missing;
    std::uint64_t presented = 0;
    for (const auto& [id, detail] : client_certs_) {
      if (detail.rfind("client presented a certificate that chains", 0) == 0)
        ++presented;
      else
        missing.push_back(fmt::format("connection {}: {}", id, detail));
    }
    const bool held = missing.empty() && presented > 0;
    std::string detail;
    if (client_certs_.empty())
      detail = "the device opened no connection on which the server asked for its client certificate";
    else if (!missing.empty())
      detail = fmt::format("the device went on without presenting its client certificate where the server asked "
                           "for one without requiring it (the profile says mutual TLS): {}",
                           fmt::join(missing, "; "));
    port.note("client-certificate",
              {{"held", held},
               {"connections", client_certs_.size()},
               {"presented", presented},
               {"detail", held ? fmt::format("the device presented its client certificate on {} of {} connections",
                                             presented, client_certs_.size())
                               : detail}});
    oracles.push_back({"mutual-tls", held, detail});
  }

  NetworkPoint p_;
  bool impostor_ = false;
  /// What the proxy presented instead of the server's certificate.
  std::string presented_ = "the impostor (a certificate from an unrelated CA)";
  bool ask_client_cert_ = false;
  std::vector<std::pair<std::uint64_t, std::string>> client_certs_;
  std::map<std::uint64_t, ImpostorConnection> tls_log_;
  std::optional<drivers::ProbeResult> probe_;
  std::string stays_up_problem_;
  std::string endless_problem_;
  std::string expired_problem_;
};

class NetworkKind final : public harness::FaultKind {
 public:
  std::string_view name() const override { return "network"; }
  std::string_view where() const override { return "network"; }
  std::string_view summary() const override {
    return "faults: a fault proxy spec applied to the delivery's connections (docs/network.md; ${b} is a seeded "
           "byte offset within the image's size; `server:` rules are the update server's own, e.g. "
           "server:endless@limit=64MiB answers the image without Content-Length and keeps sending, "
           "server:wrong-ranges answers each byte range of a delta's files with the bytes one off it); probe: "
           "no-client-certificate also asks the update server for the image without a client certificate, "
           "expired-client-certificate with an expired one, which it must refuse; client_certificate: expired "
           "gives the device an expired client certificate for the delivery, renewed before the retry; expect (one or a list): installed means the device must still finish the "
           "update, stays-up that it must answer the update command within the link's timeout and its status "
           "right after, before any power cycle";
  }
  std::vector<std::string_view> keys() const override { return {"faults", "probe", "expect", "client_certificate"}; }
  std::shared_ptr<const harness::FaultOptions> parse(const Config& c, const FaultParseContext& ctx) const override {
    auto o = parse_network(c);
    // The byte ranges a device asks for are a delta's (SWUpdate's delta
    // handler fetches the chunks it lacks); a full image is fetched whole.
    if (ctx.root && o->faults.find("wrong-ranges") != std::string::npos) {
      const auto how = ctx.root->find("delivery");
      if (!how || how->as_string() != "delta")
        c.at("faults").fail("server:wrong-ranges answers the byte ranges of a delta: the scenario needs "
                            "`delivery: delta`");
    }
    return o;
  }
  std::string inapplicable(const Scenario& s, const BoardAbilities& board) const override {
    const auto& f = s.fault.as<NetworkOptions>();
    if (f.faults.find("wrong-ranges") != std::string::npos && !board.delta_ranges)
      return "the device fetches no byte ranges: its delta releases are delivered whole (otarig delta images, "
             "docs/image-format.md), so a server that answers ranges wrongly has none to answer";
    if (board.network.empty())
      return "the board does not download from the rig's update server through the fault proxy";
    // Why the device's client does no more TLS than its profile says (device.network.tls_reason).
    const std::string why = board.tls_reason.empty() ? std::string() : ": " + board.tls_reason;
    if (board.network == "off" && (f.faults.find("impostor") != std::string::npos || !f.probe.empty()))
      return "the device reaches the update server without TLS (device.network.tls: off)" + why;
    if (!certificate_of(f.faults).empty()) {
      if (board.network == "off")
        return "the device reaches the update server without TLS (device.network.tls: off)" + why;
      if (!board.test_pki)
        return "the update server's certificates are the profile's own (device.network.pki): the rig cannot make "
               "an expired, early, renewed or rotated one for its names";
    }
    if (!f.client_certificate.empty() || f.probe == "expired-client-certificate") {
      if (board.network != "mutual")
        return "the profile does not say the device presents a client certificate (device.network.tls: mutual)" +
               why;
      if (!board.test_pki)
        return "the device's client certificate is the profile's own (device.network.pki): the rig cannot make an "
               "expired or renewed one from the CA the server trusts";
    }
    if (board.network != "mutual" && f.faults.find("ask-client-cert") != std::string::npos)
      return "the profile does not say the device presents a client certificate (device.network.tls: mutual)" +
             why;
    // A client that can present no certificate, said so with a reason: a
    // server that requires one would refuse the device's own update.
    if (board.network == "tls" && !f.probe.empty() && !why.empty())
      return "the device presents no client certificate (device.network.tls: tls)" + why;
    if (board.length_required && f.faults.find("endless") != std::string::npos)
      return "the device's client takes no download whose length the server does not state "
             "(device.network.length_required): a body without end is refused before it is read";
    return {};
  }
  void plan(PlanContext& ctx) const override {
    const auto& s = ctx.scenario();
    const auto& f = s.fault.as<NetworkOptions>();
    const std::uint64_t size = ctx.board().delivered_size(s);
    for (std::uint64_t i = 0; i < std::max<std::uint64_t>(1, s.trials); ++i) {
      auto& t = ctx.add();
      auto p = std::make_shared<NetworkPoint>();
      p->image_size = size;
      p->faults = fill_b(f.faults, size ? Rng(harness::mix64(t.seed ^ 0x6e6574ULL)).below(size) : 0);
      p->probe = f.probe;
      p->expect = f.expect;
      p->client_certificate = f.client_certificate;
      t.point = std::move(p);
    }
  }
  std::unique_ptr<harness::FaultRun> start(const TrialSpec& spec) const override {
    return std::make_unique<NetworkRun>(spec.point_as<NetworkPoint>());
  }
};

struct StaleOptions final : harness::FaultOptions {
  std::string serve;
  nlohmann::json json() const override { return {{"serve", serve}}; }
};

struct StalePoint final : harness::FaultPoint {
  std::string serve;
  nlohmann::json json() const override { return {{"serve", serve}}; }
  std::string label() const override { return "stale: " + serve; }
};

class StaleRun final : public harness::FaultRun {
 public:
  explicit StaleRun(std::string serve) : serve_(std::move(serve)) {}
  std::string inject(TrialPort& port) override {
    const std::string base_name = port.image().name, base_version = port.image().version;
    port.use_release(serve_);
    const auto& served = port.image();
    auto* feed = port.bench().parts().feed.get();
    if (feed && feed->follows_feed()) {
      stale_feed_ = true;
      return fmt::format("the update server's feed is frozen at an older release: asked for the latest, "
                         "expected {} ({}), it answers with the manifest of {} ({}) and serves its image",
                         base_name, base_version, served.name, served.version);
    }
    return fmt::format("the update server answers the request for {} ({}) with the image of {} ({}) at "
                       "the update's URL (the device's update command reads no manifest)",
                       base_name, base_version, served.name, served.version);
  }
  void deliver(TrialPort& port, const std::string& step) override {
    (void)port.deliver(port.image(), step, stale_feed_);
  }

 private:
  std::string serve_;
  bool stale_feed_ = false;
};

class StaleKind final : public harness::FaultKind {
 public:
  std::string_view name() const override { return "stale"; }
  std::string_view where() const override { return "network"; }
  std::string_view summary() const override {
    return "the update server answers the request for the new release with an older release's manifest and "
           "image (serve: RELEASE): a frozen or replaying mirror; the device must not go back";
  }
  std::vector<std::string_view> keys() const override { return {"serve"}; }
  std::shared_ptr<const harness::FaultOptions> parse(const Config& c, const FaultParseContext&) const override {
    auto o = std::make_shared<StaleOptions>();
    o->serve = c.at("serve").as_string();
    return o;
  }
  std::vector<std::pair<std::string, std::string>> releases_named(const harness::FaultSpec& f) const override {
    return {{f.as<StaleOptions>().serve, f.where}};
  }
  std::string inapplicable(const Scenario&, const BoardAbilities& board) const override {
    if (!board.server) return "the board does not download from the rig's update server through the fault proxy";
    return {};
  }
  void plan(PlanContext& ctx) const override {
    const auto& s = ctx.scenario();
    for (std::uint64_t i = 0; i < std::max<std::uint64_t>(1, s.trials); ++i) {
      auto p = std::make_shared<StalePoint>();
      p->serve = s.fault.as<StaleOptions>().serve;
      ctx.add().point = std::move(p);
    }
  }
  std::unique_ptr<harness::FaultRun> start(const TrialSpec& spec) const override {
    return std::make_unique<StaleRun>(spec.point_as<StalePoint>().serve);
  }
};

}  // namespace

std::unique_ptr<harness::FaultRun> make_network_run(const std::string& faults, std::vector<std::string> expect,
                                                    std::string must_refuse) {
  NetworkPoint p;
  p.faults = faults;
  p.expect = std::move(expect);
  return std::make_unique<NetworkRun>(p, std::move(must_refuse));
}

void register_network_faults(harness::FaultRegistry& registry) {
  registry.add(std::make_shared<NetworkKind>());
  registry.add(std::make_shared<StaleKind>());
  register_lying_mirror(registry);
  register_server_ca(registry);
}

}  // namespace otarig::scenarios::network
