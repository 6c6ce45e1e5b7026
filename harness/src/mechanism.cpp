#include "otarig/harness/mechanism.hpp"

#include <fmt/format.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <yaml-cpp/yaml.h>

#include "otarig/core/crypto.hpp"
#include "otarig/core/image.hpp"

namespace otarig::harness {
namespace {

// A profile section as JSON: scalars as text, maps and lists kept, bounded
// depth (a profile is at most 4 MiB; nothing here grows beyond it).
nlohmann::json yaml_json(const YAML::Node& n, int depth = 0) {
  if (depth > 8) return "…";
  if (n.IsScalar()) return n.Scalar();
  if (n.IsSequence()) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& e : n) a.push_back(yaml_json(e, depth + 1));
    return a;
  }
  if (n.IsMap()) {
    nlohmann::json o = nlohmann::json::object();
    for (const auto& kv : n) o[kv.first.Scalar()] = yaml_json(kv.second, depth + 1);
    return o;
  }
  return nullptr;
}

// The listed keys of a profile section, those present.
nlohmann::json pick(const Config& root, const std::string& section, std::initializer_list<const char*> keys) {
  nlohmann::json out = nlohmann::json::object();
  auto s = root.find(section);
  if (!s || !s->is_map()) return out;
  for (const char* k : keys)
    if (auto v = s->find(k)) out[k] = yaml_json(v->node());
  return out;
}

std::string asn1_time(const ASN1_TIME* t) {
  if (!t) return "";
  BIO* b = BIO_new(BIO_s_mem());
  if (!b) return "";
  ASN1_TIME_print(b, t);
  char* data = nullptr;
  const long n = BIO_get_mem_data(b, &data);
  std::string s(data, static_cast<std::size_t>(n > 0 ? n : 0));
  BIO_free(b);
  return s;
}

std::string name_text(const X509_NAME* name) {
  if (!name) return "";
  BIO* b = BIO_new(BIO_s_mem());
  if (!b) return "";
  X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long n = BIO_get_mem_data(b, &data);
  std::string s(data, static_cast<std::size_t>(n > 0 ? n : 0));
  BIO_free(b);
  return s;
}

}  // namespace

nlohmann::json certificate_summary(const std::string& pem) {
  BIO* b = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (!b) return {{"error", "out of memory"}};
  X509* x = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
  BIO_free(b);
  if (!x) return {{"error", "not a PEM certificate"}};
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  std::string fingerprint;
  if (X509_digest(x, EVP_sha256(), md, &len) == 1)
    for (unsigned i = 0; i < len; ++i) fingerprint += fmt::format("{:02x}", md[i]);
  nlohmann::json out{{"subject", name_text(X509_get_subject_name(x))},
                     {"issuer", name_text(X509_get_issuer_name(x))},
                     {"not_before", asn1_time(X509_get0_notBefore(x))},
                     {"not_after", asn1_time(X509_get0_notAfter(x))},
                     {"sha256", fingerprint}};
  X509_free(x);
  return out;
}

nlohmann::json update_mechanism(const BoardProfile& profile, const ReleaseSet& releases,
                                const drivers::BoardParts* parts) {
  const auto& root = profile.root;
  nlohmann::json key_ids = nlohmann::json::array();
  for (const auto& k : releases.trusted()) key_ids.push_back(crypto::hex(crypto::key_id(k)));
  nlohmann::json signing{
      {"image_format", profile.image_format},
      {"image_signature",
       profile.image_format == "otarig"
           ? "Ed25519 over the header and payload, SHA-256 payload digest, key id in the trailer "
             "(docs/image-format.md)"
           : profile.image_format},
      {"signing_key", profile.signing_key},
      {"test_key", profile.signing_key.rfind("test:", 0) == 0},
      {"trusted_key_ids", key_ids}};
  if (profile.key_not_before || profile.key_not_after)
    signing["signing_key_valid"] = fmt::format(
        "{} .. {}", profile.key_not_before ? image::utc_text(profile.key_not_before) : std::string("-"),
        profile.key_not_after ? image::utc_text(profile.key_not_after) : std::string("-"));
  if (profile.signing_time) signing["signing_time"] = image::utc_text(profile.signing_time);
  if (!releases.package_format().empty()) {
    nlohmann::json package = pick(root, "package", {"format", "signer", "hardware", "compatible", "device_type"});
    package["format"] = releases.package_format();
    package["signer_ca"] = certificate_summary(releases.package_trust_pem());
    signing["package"] = std::move(package);
  }
  nlohmann::json transport{{"link", pick(root, "link", {"driver", "base_url", "timeout"})}};
  if (auto dev = root.find("device"); dev && dev->is_map()) {
    if (auto net = dev->find("network"); net && net->is_map()) {
      nlohmann::json n = nlohmann::json::object();
      for (const char* k : {"server", "proxy", "tls", "tls_reason", "legacy_ciphers", "device_api", "listen"})
        if (auto v = net->find(k)) n[k] = yaml_json(v->node());
      transport["network"] = std::move(n);
    }
  }
  nlohmann::json storage = pick(root, "device", {"kind", "mode", "model", "defects"});
  if (auto dev = root.find("device"); dev && dev->is_map())
    if (auto prov = dev->find("provision"); prov && prov->is_map()) {
      nlohmann::json p = nlohmann::json::object();
      for (const char* k : {"format", "bootloader", "slot_size", "bootlimit", "mode"})
        if (auto v = prov->find(k)) p[k] = yaml_json(v->node());
      storage["provision"] = std::move(p);
    }
  if (parts && !parts->power_loss.empty()) storage["power_loss"] = parts->power_loss;
  storage["image_identity"] = profile.observe.identity.json();
  // What the rig reads of the device's state: the named groups of the status pattern.
  nlohmann::json reads = nlohmann::json::array();
  for (const char* g : {"slot", "version", "digest", "counter", "state", "health", "key"})
    if (profile.observe.status.find(fmt::format("(?P<{}>", g)) != std::string::npos) reads.push_back(g);
  storage["status_fields"] = reads;
  if (!profile.observe.boot_attempt.empty()) storage["boot_attempt"] = profile.observe.boot_attempt;
  nlohmann::json policies{{"boot_timeout_ms", profile.observe.boot_timeout.count()}};
  nlohmann::json anti_rollback = nlohmann::json::array();
  for (const auto& r : profile.releases)
    anti_rollback.push_back({{"release", r.name}, {"version", r.version.str()}, {"security_counter", r.security_counter}});
  policies["releases"] = std::move(anti_rollback);
  if (auto dev = root.find("device"); dev && dev->is_map())
    if (auto pol = dev->find("policy")) policies["declared"] = yaml_json(pol->node());
  return {{"signing", std::move(signing)},
          {"transport", std::move(transport)},
          {"storage", std::move(storage)},
          {"policies", std::move(policies)}};
}

}  // namespace otarig::harness
