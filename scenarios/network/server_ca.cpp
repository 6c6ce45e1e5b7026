// server-ca-rotation: the update server moves to a certificate from a new
// CA, which a device learns only from a signed update. A CA-rotation message
// is an otarig image with flags bit 1 whose trust block carries an
// add-server-ca entry: the CA certificate (DER) the device adds to the TLS
// trust store it checks its update server with (docs/image-format.md). Then
// the fault proxy presents the server's certificate from that CA
// (`certificate=rotated-ca`, docs/network.md) and relays to the server:
//   told               the message, signed by the release key, installs; the
//                      device is power-cycled (the CA must outlive power
//                      loss); the update through the rotated CA's
//                      certificate must go through (still-updatable)
//   not-told           no message: the device must refuse the certificate
//                      (server-authenticated)
//   untrusted-message  the message signed by a key the device does not
//                      trust: refused (authentic), and the certificate too
//                      (server-authenticated)
//   unsigned-message   the message without a signature: likewise
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "network.hpp"
#include "otarig/core/crypto.hpp"
#include "otarig/core/image.hpp"
#include "otarig/harness/bench.hpp"
#include "otarig/harness/oracles.hpp"
#include "otarig/harness/plan.hpp"
#include "otarig/harness/releases.hpp"
#include "otarig/harness/scenario.hpp"
#include "otarig/harness/trial.hpp"

namespace otarig::scenarios::network {
namespace {

constexpr const char* kPolicy = "server_ca_updates";
constexpr const char* kCertificate = "rotated-ca";

const std::vector<std::string_view>& ca_variants() {
  static const std::vector<std::string_view> v = {"told", "not-told", "untrusted-message", "unsigned-message"};
  return v;
}

struct CaOptions final : harness::FaultOptions {
  std::vector<std::string> variants;
  nlohmann::json json() const override { return {{"variants", variants}}; }
};

struct CaPoint final : harness::FaultPoint {
  std::string variant;
  nlohmann::json json() const override { return {{"variant", variant}}; }
  std::string label() const override { return "server-ca-rotation:" + variant; }
  std::string text() const override { return "server-ca-rotation: " + variant; }
};

class CaRun final : public harness::FaultRun {
 public:
  explicit CaRun(std::string variant)
      : variant_(std::move(variant)),
        network_(make_network_run(std::string("certificate=") + kCertificate,
                                  variant_ == "told" ? std::vector<std::string>{"installed"}
                                                     : std::vector<std::string>{},
                                  variant_ == "told" ? std::string()
                                  : variant_ == "not-told"
                                      ? "a certificate for the update server's names from a rotated CA no signed "
                                        "update told the device of"
                                      : fmt::format("a certificate for the update server's names from a rotated "
                                                    "CA that only {} CA-rotation message named",
                                                    variant_ == "unsigned-message" ? "an unsigned"
                                                                                   : "a wrongly signed"))) {}

  std::string inject(harness::TrialPort& port) override {
    auto& bench = port.bench();
    auto* net = bench.parts().network.get();
    if (!net)
      throw BenchError(fmt::format("{}: the board has no fault proxy to present the rotated CA's certificate with",
                                   bench.profile().name));
    std::string detail;
    if (variant_ != "not-told") {
      const auto pem = net->certificate_issuer_pem(kCertificate);
      if (pem.empty())
        throw BenchError(fmt::format("{}: the board's fault proxy has no certificate from a rotated CA",
                                     bench.profile().name));
      const auto change = image::server_ca_change(
          std::span(reinterpret_cast<const std::uint8_t*>(pem.data()), pem.size()), "the rotated CA");
      const auto subject = image::certificate_subject(change.certificate);
      const auto fingerprint = crypto::hex(change.entry.key).substr(0, 16);
      if (variant_ == "told") {
        const auto message = ca_message(port, change, port.releases().signing_key(), true, "ca-rotation");
        if (!port.update_before_fault(message))
          return fmt::format("the CA-rotation message {} adding server CA {} ({}), signed by the release key, did "
                             "not install",
                             message.name, fingerprint, subject);
        // A learned CA outlives power loss, as the device's key store does.
        bench.power_off("inject");
        bench.power_on("inject");
        detail = fmt::format("{} (signed by the release key {}) added server CA {} ({}); the device was power-cycled; "
                             "the update server then presents a certificate from that CA, and {} must install",
                             message.name, crypto::hex(port.releases().signing_key().id()), fingerprint, subject,
                             port.image().name);
      } else {
        const bool unsigned_message = variant_ == "unsigned-message";
        const auto rogue = crypto::Ed25519Key::test_key("otarig untrusted rotation signer");
        auto message = ca_message(port, change, rogue, false, variant_);
        if (unsigned_message) {
          message.bytes = image::tamper::strip_signature(message.bytes);
          message.digest = harness::device_digest(message.bytes);
        }
        const auto r = port.deliver(message, "before:" + variant_);
        if (!bench.parts().power->is_on()) bench.power_on("before:" + variant_);
        const auto o = port.look("before:" + variant_);
        port.note("ca-message", {{"variant", variant_},
                                 {"image", message.name},
                                 {"image_digest", message.digest},
                                 {"delivery", drivers::to_string(r.status)},
                                 {"detail", r.detail},
                                 {"runs_message", o.booted && o.digest == message.digest}});
        detail = fmt::format("a CA-rotation message adding server CA {} ({}), {}, was delivered ({}: {}) and must "
                             "be refused; the update server then presents a certificate from that CA, which the "
                             "device must refuse",
                             fingerprint, subject,
                             unsigned_message ? "without a signature"
                                              : "signed by the untrusted key " + crypto::hex(rogue.id()),
                             drivers::to_string(r.status), r.detail);
      }
    } else {
      detail = "no update told the device of the rotated CA; the update server presents a certificate from it, "
               "which the device must refuse";
    }
    const auto armed = network_->inject(port);
    return detail + "; " + armed;
  }

  void network_events(harness::TrialPort& port, const nlohmann::json& events) override {
    network_->network_events(port, events);
  }
  void delivered(harness::TrialPort& port) override { network_->delivered(port); }
  void recover(harness::TrialPort& port) override { network_->recover(port); }
  void judge(harness::TrialPort& port, std::vector<harness::OracleResult>& oracles) override {
    network_->judge(port, oracles);
  }

 private:
  // A CA-rotation message: the start release's payload behind a trust block
  // adding the server CA, one build newer, at the same security counter.
  harness::BuiltImage ca_message(harness::TrialPort& port, const image::TrustChange& change,
                                 const crypto::Ed25519Key& by, bool authentic, const std::string& role) const {
    const auto& from = port.releases().get(port.scenario().start);
    const auto parsed = image::parse(from.bytes, from.name);
    image::Header h = parsed.header;
    if (h.version.build == 0xFFFFFFFFu)
      throw InputError(fmt::format("{}: scenario '{}': release {} has no build number left for a CA-rotation message",
                                   port.scenario().fault.where, port.scenario().name, from.name));
    h.version.build += 1;
    h.flags |= image::kFlagTrustUpdate;
    h.signing_time = port.bench().profile().signing_time;
    const std::vector<image::TrustChange> changes{change};
    const auto block = image::encode_trust_block(changes);
    image::Bytes payload(parsed.payload.begin(), parsed.payload.end());
    if (payload.size() < block.size())
      throw InputError(fmt::format("{}: scenario '{}': release {} has a {}-byte payload, a trust block with the CA "
                                   "certificate needs {}",
                                   port.scenario().fault.where, port.scenario().name, from.name, payload.size(),
                                   block.size()));
    std::copy(block.begin(), block.end(), payload.begin());
    harness::BuiltImage img = from;
    img.variant = "server-ca-rotation/" + role;
    img.name = from.name + "/" + role;
    img.bytes = image::build(h, payload, by);
    img.version = h.version.str();
    img.security_counter = h.security_counter;
    img.digest = harness::device_digest(img.bytes);
    img.authentic = authentic;
    img.fails_self_test = false;
    img.package.clear();
    img.package_of.clear();
    img.delta.clear();
    return img;
  }

  std::string variant_;
  std::unique_ptr<harness::FaultRun> network_;
};

class CaKind final : public harness::FaultKind {
 public:
  std::string_view name() const override { return "server-ca-rotation"; }
  std::string_view where() const override { return "network"; }
  std::string_view summary() const override {
    return "the update server's certificate from a rotated CA (certificate=rotated-ca): told (a signed "
           "CA-rotation message, a trust block's add-server-ca entry, installs first and the device is "
           "power-cycled; the update must go through), not-told, untrusted-message, unsigned-message (the device "
           "must refuse the certificate: server-authenticated; a message not signed by a trusted key must be "
           "refused: authentic); needs device.policy.server_ca_updates";
  }
  std::vector<std::string_view> keys() const override { return {"variants"}; }
  std::shared_ptr<const harness::FaultOptions> parse(const Config& c,
                                                     const harness::FaultParseContext&) const override {
    auto o = std::make_shared<CaOptions>();
    const auto& known = ca_variants();
    if (auto v = c.find("variants")) {
      for (const auto& item : v->items()) {
        auto name = item.as_string();
        if (std::find(known.begin(), known.end(), name) == known.end())
          item.fail(fmt::format("unknown server-ca-rotation variant '{}' (known: {})", name, fmt::join(known, ", ")));
        o->variants.push_back(name);
      }
      if (o->variants.empty()) v->fail(fmt::format("variants: name at least one of {}", fmt::join(known, ", ")));
    } else {
      for (auto k : known) o->variants.emplace_back(k);
    }
    return o;
  }
  std::string inapplicable(const harness::Scenario&, const harness::BoardAbilities& board) const override {
    if (board.network.empty())
      return "the board does not download from the rig's update server through the fault proxy (no TLS client "
             "the rig could present a rotated CA's certificate to)";
    const std::string why = board.tls_reason.empty() ? std::string() : ": " + board.tls_reason;
    if (board.network == "off") return "the device reaches the update server without TLS (device.network.tls: off)" + why;
    if (!board.test_pki)
      return "the update server's certificates are the profile's own (device.network.pki): the rig has no rotated "
             "CA for its names";
    if (!board.package_format.empty())
      return fmt::format("the board takes {} packages; CA-rotation messages are otarig images with a trust block",
                         board.package_format);
    if (board.second_image)
      return "the board takes bundles of two images: CA-rotation messages are made from one image";
    if (board.encryption) return "the board's releases are encrypted: CA-rotation messages are made as plaintext images";
    const auto declared = board.policy ? board.policy->get(kPolicy) : std::nullopt;
    if (!declared)
      return fmt::format("the profile declares no device.policy.{}, so the rig cannot tell whether the device "
                         "learns a server CA from a signed update",
                         kPolicy);
    if (*declared == "none")
      return fmt::format("the device learns no server CA from an update (device.policy.{}: none)", kPolicy);
    return {};
  }
  void plan(harness::PlanContext& ctx) const override {
    const std::uint64_t count = std::max<std::uint64_t>(1, ctx.scenario().trials);
    for (const auto& v : ctx.scenario().fault.as<CaOptions>().variants)
      for (std::uint64_t i = 0; i < count; ++i) {
        auto p = std::make_shared<CaPoint>();
        p->variant = v;
        ctx.add().point = std::move(p);
      }
  }
  std::unique_ptr<harness::FaultRun> start(const harness::TrialSpec& spec) const override {
    return std::make_unique<CaRun>(spec.point_as<CaPoint>().variant);
  }
  std::shared_ptr<const harness::FaultPoint> point_with(const harness::TrialSpec& trial,
                                                        const nlohmann::json& fields) const override {
    auto p = std::make_shared<CaPoint>(trial.point_as<CaPoint>());
    if (auto v = harness::chosen_field(trial, fields, name(), "variant", ca_variants()); !v.empty()) p->variant = v;
    return p;
  }
};

}  // namespace

void register_server_ca(harness::FaultRegistry& registry) { registry.add(std::make_shared<CaKind>()); }

}  // namespace otarig::scenarios::network
