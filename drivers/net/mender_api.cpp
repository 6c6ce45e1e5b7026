// Mender's device API, the subset the Mender 3.4 daemon uses (mender_api.hpp,
// docs/network.md). Requests as client/client_auth.go, client_update.go,
// client_status.go, client_log.go and client_inventory.go of mender 3.4.0
// make them.
#include "otarig/drivers/net/mender_api.hpp"

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "otarig/core/crypto.hpp"
#include "otarig/core/errors.hpp"
#include "otarig/core/openssl_ptr.hpp"

namespace otarig::drivers::net {
namespace {

constexpr std::string_view kPrefix = "/api/devices/";
constexpr std::string_view kDeployments = "/api/devices/v1/deployments/device/deployments/";

ossl::PkeyPtr read_key(const std::string& pem) {
  ossl::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return nullptr;
  ossl::PkeyPtr key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (key) return key;
  ossl::BioPtr again(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  key.reset(PEM_read_bio_PrivateKey(again.get(), nullptr, nullptr, nullptr));
  return key;
}

std::string public_der(EVP_PKEY* key) {
  unsigned char* out = nullptr;
  const int n = i2d_PUBKEY(key, &out);
  if (n <= 0) return {};
  std::string der(reinterpret_cast<const char*>(out), static_cast<std::size_t>(n));
  OPENSSL_free(out);
  return der;
}

std::optional<std::string> base64_decode(const std::string& text) {
  if (text.empty() || text.size() % 4 != 0) return std::nullopt;
  std::string out(text.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  std::size_t size = static_cast<std::size_t>(n);
  for (auto it = text.rbegin(); it != text.rend() && *it == '='; ++it) --size;  // EVP_DecodeBlock keeps the padding's zeros
  out.resize(size);
  return out;
}

std::string path_of(const std::string& target) { return target.substr(0, target.find_first_of("?#")); }

ApiResponse json_response(unsigned status, const nlohmann::json& body) { return {status, "application/json", body.dump()}; }
ApiResponse error_response(unsigned status, const std::string& error) {
  return json_response(status, {{"error", error}, {"request_id", "otarig"}});
}
ApiResponse no_content() { return {204, "", ""}; }

// A short name of a key for the evidence: the first 16 hex digits of its
// SubjectPublicKeyInfo's SHA-256.
std::string key_id(const std::string& der) {
  const auto d = crypto::sha256(std::string_view(der));
  return crypto::hex(std::span<const std::uint8_t>(d.data(), d.size())).substr(0, 16);
}

}  // namespace

bool is_final_mender_status(const std::string& status) {
  return status == "success" || status == "failure" || status == "already-installed";
}

std::string verify_mender_signature(const std::string& public_key_pem, const std::string& data,
                                    const std::string& signature_b64) {
  auto key = read_key(public_key_pem);
  if (!key) return "the public key does not parse";
  auto sig = base64_decode(signature_b64);
  if (!sig) return "the signature is not base64";
  ossl::MdCtxPtr ctx(EVP_MD_CTX_new());
  const bool ed = EVP_PKEY_get_base_id(key.get()) == EVP_PKEY_ED25519;
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, ed ? nullptr : EVP_sha256(), nullptr, key.get()) != 1)
    return "cannot verify with this key: " + ossl::last_error();
  const int ok = EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig->data()), sig->size(),
                                  reinterpret_cast<const unsigned char*>(data.data()), data.size());
  if (ok != 1) {
    (void)ossl::last_error();
    return "the signature does not verify with the key in the request";
  }
  return {};
}

std::string generate_device_key_pem() {
  ossl::PkeyPtr key(EVP_EC_gen("P-256"));
  ossl::BioPtr out(BIO_new(BIO_s_mem()));
  if (!key || !out || PEM_write_bio_PrivateKey(out.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
    throw BenchError("mender device API: cannot make a device key: " + ossl::last_error());
  char* data = nullptr;
  const long n = BIO_get_mem_data(out.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

void MenderDeviceApi::accept_device_key(const std::string& pem) {
  auto key = read_key(pem);
  if (!key) throw InputError("mender device API: the device key does not parse");
  std::lock_guard lock(mu_);
  device_key_der_ = public_der(key.get());
  device_key_pem_ = pem;
}

void MenderDeviceApi::publish(MenderDeployment deployment) {
  std::lock_guard lock(mu_);
  deployment_ = std::move(deployment);
}

std::string MenderDeviceApi::offer(const DeploymentOffer& offer) {
  auto id = fmt::format("00000000-0000-4000-8000-{:012d}", offer.delivery);
  publish(MenderDeployment{id, offer.artifact_name, offer.device_types, offer.uri});
  return id;
}

void MenderDeviceApi::withdraw() {
  std::lock_guard lock(mu_);
  deployment_.reset();
}

std::optional<MenderDeployment> MenderDeviceApi::deployment() const {
  std::lock_guard lock(mu_);
  return deployment_;
}

nlohmann::json& MenderDeviceApi::add(nlohmann::json record) {
  record["seq"] = next_seq_++;
  records_.push_back(std::move(record));
  return records_.back();
}

bool MenderDeviceApi::authorized(const ApiRequest& request) const {
  constexpr std::string_view bearer = "Bearer ";
  if (request.authorization.rfind(bearer, 0) != 0) return false;
  return tokens_.count(request.authorization.substr(bearer.size())) != 0;
}

ApiResponse MenderDeviceApi::auth(const ApiRequest& request, nlohmann::json& record) {
  record["kind"] = "auth";
  auto refuse = [&](const std::string& why) {
    record["result"] = "refused";
    record["reason"] = why;
    return error_response(401, "authentication request refused: " + why);
  };
  if (request.method != "POST") return refuse("method " + request.method);
  const auto body = nlohmann::json::parse(request.body, nullptr, false);
  if (!body.is_object() || !body.contains("pubkey") || !body["pubkey"].is_string() || !body.contains("id_data") ||
      !body["id_data"].is_string())
    return refuse("the body is not an authentication request (id_data, pubkey)");
  const auto pubkey = body["pubkey"].get<std::string>();
  record["id_data"] = body["id_data"];
  auto key = read_key(pubkey);
  if (!key) return refuse("the public key does not parse");
  const auto der = public_der(key.get());
  record["key"] = key_id(der);
  if (request.signature.empty()) return refuse("no X-MEN-Signature");
  if (auto bad = verify_mender_signature(pubkey, request.body, request.signature); !bad.empty()) return refuse(bad);
  if (device_key_der_.empty()) return refuse("the server knows no device key");
  if (der != device_key_der_)
    return refuse(fmt::format("unknown device key {} (the provisioned key is {})", key_id(der), key_id(device_key_der_)));
  unsigned char raw[24];
  if (RAND_bytes(raw, sizeof raw) != 1) return error_response(500, "no randomness");
  const auto token = "otarig." + crypto::hex(std::span<const std::uint8_t>(raw, sizeof raw));
  tokens_.insert(token);
  record["result"] = "accepted";
  return {200, "application/jwt", token};
}

std::optional<ApiResponse> MenderDeviceApi::handle(const ApiRequest& request) {
  const auto path = path_of(request.target);
  if (path.rfind(kPrefix, 0) != 0) return std::nullopt;
  std::lock_guard lock(mu_);
  nlohmann::json record{{"method", request.method}, {"target", request.target}};
  if (path == "/api/devices/v1/authentication/auth_requests") {
    auto r = auth(request, record);
    add(std::move(record))["http_status"] = r.status;
    return r;
  }
  if (!authorized(request)) {
    record["kind"] = "unauthorized";
    record["reason"] = request.authorization.empty() ? "no token" : "a token this server did not issue";
    add(std::move(record))["http_status"] = 401;
    return error_response(401, "unauthorized");
  }
  auto finish = [&](ApiResponse r) {
    add(std::move(record))["http_status"] = r.status;
    return r;
  };
  if (path == "/api/devices/v2/deployments/device/deployments/next" ||
      path == "/api/devices/v1/deployments/device/deployments/next") {
    record["kind"] = "next";
    const auto body = nlohmann::json::parse(request.body, nullptr, false);
    if (body.is_object()) record["device_provides"] = body.contains("device_provides") ? body["device_provides"] : body;
    // A deployment the device finished is not offered again (as the real
    // server: it is over for this device).
    if (!deployment_ || final_status_locked(deployment_->id)) {
      record["deployment"] = nullptr;
      return finish(no_content());
    }
    record["deployment"] = deployment_->id;
    nlohmann::json artifact{{"id", deployment_->id},
                            {"artifact_name", deployment_->artifact_name},
                            {"source", {{"uri", deployment_->uri}, {"expire", "2099-01-01T00:00:00Z"}}},
                            {"device_types_compatible", deployment_->device_types}};
    return finish(json_response(200, {{"id", deployment_->id}, {"artifact", artifact}}));
  }
  if (path.rfind(kDeployments, 0) == 0) {
    const auto rest = path.substr(kDeployments.size());
    const auto slash = rest.find('/');
    const auto id = rest.substr(0, slash);
    const auto what = slash == std::string::npos ? std::string() : rest.substr(slash + 1);
    record["deployment"] = id;
    if (what == "status" && request.method == "PUT") {
      record["kind"] = "status";
      const auto body = nlohmann::json::parse(request.body, nullptr, false);
      if (!body.is_object() || !body.contains("status") || !body["status"].is_string())
        return finish(error_response(400, "no status"));
      const auto status = body["status"].get<std::string>();
      record["status"] = status;
      if (body.contains("substate")) record["substate"] = body["substate"];
      statuses_[id].push_back(status);
      return finish(no_content());
    }
    if (what == "log" && request.method == "PUT") {
      record["kind"] = "log";
      const auto body = nlohmann::json::parse(request.body, nullptr, false);
      if (!body.is_object() || !body.contains("messages") || !body["messages"].is_array())
        return finish(error_response(400, "no messages"));
      record["messages"] = body["messages"];
      return finish(no_content());
    }
  }
  if (path == "/api/devices/v1/inventory/device/attributes" && (request.method == "PUT" || request.method == "PATCH")) {
    record["kind"] = "inventory";
    const auto body = nlohmann::json::parse(request.body, nullptr, false);
    record["attributes"] = body.is_discarded() ? nlohmann::json(nullptr) : body;
    return finish(json_response(200, nlohmann::json::object()));
  }
  record["kind"] = "unknown";
  return finish(error_response(404, "not part of the rig's device API"));
}

std::optional<std::string> MenderDeviceApi::final_status_locked(const std::string& id) const {
  auto it = statuses_.find(id);
  if (it == statuses_.end()) return std::nullopt;
  for (auto s = it->second.rbegin(); s != it->second.rend(); ++s)
    if (is_final_mender_status(*s)) return *s;
  return std::nullopt;
}

std::vector<nlohmann::json> MenderDeviceApi::records() const {
  std::lock_guard lock(mu_);
  return records_;
}

std::vector<nlohmann::json> MenderDeviceApi::take_records() {
  std::lock_guard lock(mu_);
  std::vector<nlohmann::json> out(records_.begin() + static_cast<std::ptrdiff_t>(taken_), records_.end());
  taken_ = records_.size();
  return out;
}

std::vector<std::string> MenderDeviceApi::statuses(const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = statuses_.find(id);
  return it == statuses_.end() ? std::vector<std::string>{} : it->second;
}

std::optional<std::string> MenderDeviceApi::final_status(const std::string& id) const {
  std::lock_guard lock(mu_);
  return final_status_locked(id);
}

std::size_t MenderDeviceApi::tokens_issued() const {
  std::lock_guard lock(mu_);
  return tokens_.size();
}

}  // namespace otarig::drivers::net
