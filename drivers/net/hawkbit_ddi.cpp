// hawkBit's DDI API, the subset SWUpdate 2022.12's suricatta uses
// (hawkbit_ddi.hpp, docs/network.md). Requests as suricatta/server_hawkbit.c
// and corelib/channel_curl.c of SWUpdate 2022.12 make them: the controller
// base (server_get_device_info), the deployment (server_get_deployment_info),
// feedback (server_send_deployment_reply), configData
// (server_send_target_data).
#include "otarig/drivers/net/hawkbit_ddi.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>

#include "otarig/core/crypto.hpp"
#include "otarig/core/errors.hpp"
#include "otarig/core/openssl_ptr.hpp"

namespace otarig::drivers::net {
namespace {

bool valid_name(const std::string& s) {
  return !s.empty() && s.size() <= 64 && s != "." && s != ".." &&
         std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                  c == '-';
         });
}

bool valid_sleep(const std::string& s) {
  if (s.size() != 8 || s[2] != ':' || s[5] != ':') return false;
  for (std::size_t i : {0u, 1u, 3u, 4u, 6u, 7u})
    if (s[i] < '0' || s[i] > '9') return false;
  return s[3] <= '5' && s[6] <= '5';
}

std::string digest_hex(const EVP_MD* md, std::span<const std::uint8_t> bytes) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), out, &n, md, nullptr) != 1)
    throw BenchError("hawkBit DDI: cannot hash the artifact: " + ossl::last_error());
  return crypto::hex(std::span<const std::uint8_t>(out, n));
}

ApiResponse json_response(unsigned status, const nlohmann::json& body) { return {status, "application/json", body.dump()}; }

// hawkBit's error body: {"errorCode", "message"}.
ApiResponse error_response(unsigned status, const std::string& code, const std::string& message) {
  return json_response(status, {{"errorCode", code}, {"message", message}});
}

constexpr const char* kExecutions[] = {"closed", "proceeding", "canceled", "scheduled",
                                       "rejected", "resumed",    "download", "downloaded"};
constexpr const char* kFinished[] = {"success", "failure", "none"};

bool one_of(const std::string& v, std::span<const char* const> values) {
  return std::any_of(values.begin(), values.end(), [&](const char* x) { return v == x; });
}

// A JSON string, or nullptr when `j` has no string at `key`.
const std::string* string_at(const nlohmann::json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get_ptr<const std::string*>() : nullptr;
}

}  // namespace

std::string generate_target_token() {
  unsigned char raw[16];
  if (RAND_bytes(raw, sizeof raw) != 1) throw BenchError("hawkBit DDI: no randomness for a target token");
  return crypto::hex(std::span<const std::uint8_t>(raw, sizeof raw));
}

HawkbitDdiApi::HawkbitDdiApi(HawkbitOptions options) : o_(std::move(options)) {
  if (!valid_name(o_.tenant))
    throw InputError(fmt::format("hawkBit DDI: tenant '{}' is not 1-64 of [A-Za-z0-9._-]", o_.tenant));
  if (!valid_name(o_.controller_id))
    throw InputError(fmt::format("hawkBit DDI: controller id '{}' is not 1-64 of [A-Za-z0-9._-]", o_.controller_id));
  if (!valid_sleep(o_.polling_sleep))
    throw InputError(fmt::format("hawkBit DDI: polling time '{}' is not HH:MM:SS", o_.polling_sleep));
  if (!valid_name(o_.artifact_filename))
    throw InputError(fmt::format("hawkBit DDI: artifact name '{}' is not 1-64 of [A-Za-z0-9._-]", o_.artifact_filename));
}

std::string HawkbitDdiApi::path_prefix() const { return "/" + o_.tenant + "/controller/"; }

void HawkbitDdiApi::set_base_url(std::string url) {
  std::lock_guard lock(mu_);
  while (!url.empty() && url.back() == '/') url.pop_back();
  o_.base_url = std::move(url);
}

std::string HawkbitDdiApi::controller_url() const {
  return fmt::format("{}/{}/controller/v1/{}", o_.base_url, o_.tenant, o_.controller_id);
}

nlohmann::json& HawkbitDdiApi::add(nlohmann::json record) {
  record["seq"] = next_seq_++;
  records_.push_back(std::move(record));
  return records_.back();
}

std::string HawkbitDdiApi::offer(const DeploymentOffer& offer) {
  Action a;
  a.id = std::to_string(offer.delivery);
  a.name = offer.artifact_name.empty() ? std::string("otarig-unknown") : offer.artifact_name;
  a.version = offer.version.empty() ? std::string("unknown") : offer.version;
  a.uri = offer.uri;
  a.size = offer.package.size();
  a.sha1 = digest_hex(EVP_sha1(), offer.package);
  a.md5 = digest_hex(EVP_md5(), offer.package);
  a.sha256 = digest_hex(EVP_sha256(), offer.package);
  std::lock_guard lock(mu_);
  open_ = a.id;
  actions_[a.id] = std::move(a);
  return *open_;
}

void HawkbitDdiApi::withdraw() {
  std::lock_guard lock(mu_);
  open_.reset();
}

std::optional<std::string> HawkbitDdiApi::open_action() const {
  std::lock_guard lock(mu_);
  if (!open_ || actions_.at(*open_).closed) return std::nullopt;
  return open_;
}

std::optional<ApiResponse> HawkbitDdiApi::handle(const ApiRequest& request) {
  const auto path = request.target.substr(0, request.target.find_first_of("?#"));
  const auto prefix = path_prefix();
  if (path.rfind(prefix, 0) != 0) return std::nullopt;
  std::lock_guard lock(mu_);
  nlohmann::json record{{"method", request.method}, {"target", request.target}};
  auto finish = [&](ApiResponse r) {
    add(std::move(record))["http_status"] = r.status;
    return r;
  };
  // The target token first, as hawkBit authenticates before it routes.
  constexpr std::string_view kScheme = "TargetToken ";
  if (request.authorization.rfind(kScheme, 0) != 0 || o_.target_token.empty() ||
      request.authorization.substr(kScheme.size()) != o_.target_token) {
    record["kind"] = "unauthorized";
    record["reason"] = request.authorization.empty()                           ? "no Authorization header"
                       : request.authorization.rfind("GatewayToken ", 0) == 0 ? "a gateway token (this server takes the device's target token only)"
                       : request.authorization.rfind(kScheme, 0) != 0          ? "not a TargetToken"
                                                                               : "a target token this server did not provision";
    return finish(error_response(401, "hawkbit.server.error.unauthorized", "authentication required"));
  }
  return finish(route(request, path.substr(prefix.size()), record));
}

ApiResponse HawkbitDdiApi::route(const ApiRequest& request, const std::string& rest, nlohmann::json& record) {
  auto unknown = [&](const std::string& why) {
    record["kind"] = "unknown";
    record["reason"] = why;
    return error_response(404, "hawkbit.server.error.repo.entitiyNotFound", why);
  };
  auto wrong_method = [&](const char* allowed) {
    record["kind"] = "bad-method";
    record["reason"] = fmt::format("{} takes {}", request.method, allowed);
    return error_response(405, "hawkbit.server.error.rest.methodNotAllowed", fmt::format("allowed: {}", allowed));
  };
  constexpr std::string_view kV1 = "v1/";
  if (rest.rfind(kV1, 0) != 0) return unknown("not DDI v1");
  const auto after = rest.substr(kV1.size());
  const auto slash = after.find('/');
  const auto controller = after.substr(0, slash);
  const auto sub = slash == std::string::npos ? std::string() : after.substr(slash + 1);
  record["controller"] = controller;
  if (controller != o_.controller_id) return unknown(fmt::format("unknown controller '{}'", controller));

  if (sub.empty()) {
    record["kind"] = "poll";
    if (request.method != "GET") return wrong_method("GET");
    nlohmann::json links = nlohmann::json::object();
    if (open_ && !actions_.at(*open_).closed) {
      links["deploymentBase"] = {{"href", fmt::format("{}/deploymentBase/{}", controller_url(), *open_)}};
      record["deployment"] = *open_;
    } else {
      record["deployment"] = nullptr;
    }
    if (!config_sent_) links["configData"] = {{"href", controller_url() + "/configData"}};
    nlohmann::json body{{"config", {{"polling", {{"sleep", o_.polling_sleep}}}}}};
    if (!links.empty()) body["_links"] = links;
    return json_response(200, body);
  }
  if (sub == "configData") {
    record["kind"] = "config-data";
    if (request.method != "PUT") return wrong_method("PUT");
    const auto body = nlohmann::json::parse(request.body, nullptr, false);
    if (!body.is_object() || !body.contains("data") || !body["data"].is_object()) {
      record["reason"] = "the body is not {\"data\": {...}}";
      return error_response(400, "hawkbit.server.error.rest.body.notReadable", "expected {\"data\": {...}}");
    }
    record["attributes"] = body["data"];
    attributes_ = body["data"];
    config_sent_ = true;
    return json_response(200, nlohmann::json::object());
  }
  constexpr std::string_view kDeployment = "deploymentBase/";
  if (sub.rfind(kDeployment, 0) == 0) {
    const auto tail = sub.substr(kDeployment.size());
    const auto cut = tail.find('/');
    const auto action = tail.substr(0, cut);
    const auto what = cut == std::string::npos ? std::string() : tail.substr(cut + 1);
    record["deployment"] = action;
    auto it = actions_.find(action);
    if (what == "feedback") return feedback(request, action, record);
    if (!what.empty()) return unknown(fmt::format("no resource '{}' of a deployment", what));
    record["kind"] = "deployment";
    if (request.method != "GET") return wrong_method("GET");
    if (it == actions_.end()) return unknown(fmt::format("unknown action '{}'", action));
    const auto& a = it->second;
    const bool https = a.uri.rfind("https:", 0) == 0;
    nlohmann::json artifact{{"filename", o_.artifact_filename},
                            {"size", a.size},
                            {"hashes", {{"sha1", a.sha1}, {"md5", a.md5}, {"sha256", a.sha256}}},
                            {"_links", {{https ? "download" : "download-http", {{"href", a.uri}}}}}};
    nlohmann::json chunk{{"part", "os"}, {"version", a.version}, {"name", a.name}, {"artifacts", {artifact}}};
    return json_response(200, {{"id", a.id},
                               {"deployment", {{"download", "forced"}, {"update", "forced"}, {"chunks", {chunk}}}}});
  }
  return unknown(fmt::format("no DDI resource '{}'", sub));
}

ApiResponse HawkbitDdiApi::feedback(const ApiRequest& request, const std::string& action, nlohmann::json& record) {
  record["kind"] = "feedback";
  auto bad = [&](const std::string& why) {
    record["reason"] = why;
    return error_response(400, "hawkbit.server.error.rest.body.notReadable", why);
  };
  if (request.method != "POST") {
    record["kind"] = "bad-method";
    record["reason"] = request.method + " takes POST";
    return error_response(405, "hawkbit.server.error.rest.methodNotAllowed", "allowed: POST");
  }
  auto it = actions_.find(action);
  if (it == actions_.end()) {
    record["reason"] = fmt::format("unknown action '{}'", action);
    return error_response(404, "hawkbit.server.error.repo.entitiyNotFound", fmt::format("unknown action '{}'", action));
  }
  const auto body = nlohmann::json::parse(request.body, nullptr, false);
  if (body.is_discarded()) return bad("the body is not JSON");
  if (!body.is_object() || !body.contains("status") || !body["status"].is_object())
    return bad("the body has no status object");
  const auto& status = body["status"];
  const auto* execution = string_at(status, "execution");
  if (!execution || !one_of(*execution, kExecutions)) return bad("status.execution is not a DDI execution state");
  const std::string* finished = nullptr;
  if (status.contains("result")) finished = string_at(status["result"], "finished");
  if (!finished || !one_of(*finished, kFinished)) return bad("status.result.finished is not success, failure or none");
  if (body.contains("id")) {
    const auto& id = body["id"];
    const auto text = id.is_string() ? id.get<std::string>() : id.is_number_integer() ? std::to_string(id.get<std::int64_t>()) : "?";
    if (text != action) return bad(fmt::format("the body's id {} is not the action {}", id.dump(), action));
  }
  record["execution"] = *execution;
  record["finished"] = *finished;
  if (status["result"].contains("progress")) record["progress"] = status["result"]["progress"];
  if (status.contains("details")) record["details"] = status["details"];
  auto& a = it->second;
  if (a.closed || open_ != action) {
    record["reason"] = a.closed ? "the action is closed" : "the action is no longer offered";
    return error_response(410, "hawkbit.server.error.action.notActive",
                          fmt::format("action {} is not active", action));
  }
  // A closed action ends with its result; until then the execution state
  // is the status (proceeding, ...).
  const auto reported = *execution == "closed" ? (*finished == "none" ? std::string("closed") : *finished) : *execution;
  record["status"] = reported;
  statuses_[action].push_back(reported);
  if (*execution == "closed") a.closed = true;
  return json_response(200, nlohmann::json::object());
}

std::vector<std::string> HawkbitDdiApi::statuses(const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = statuses_.find(id);
  return it == statuses_.end() ? std::vector<std::string>{} : it->second;
}

std::optional<std::string> HawkbitDdiApi::final_status(const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = statuses_.find(id);
  if (it == statuses_.end()) return std::nullopt;
  for (auto s = it->second.rbegin(); s != it->second.rend(); ++s)
    if (*s == "success" || *s == "failure") return *s;
  return std::nullopt;
}

std::vector<nlohmann::json> HawkbitDdiApi::records() const {
  std::lock_guard lock(mu_);
  return records_;
}

std::vector<nlohmann::json> HawkbitDdiApi::take_records() {
  std::lock_guard lock(mu_);
  std::vector<nlohmann::json> out(records_.begin() + static_cast<std::ptrdiff_t>(taken_), records_.end());
  taken_ = records_.size();
  return out;
}

nlohmann::json HawkbitDdiApi::attributes() const {
  std::lock_guard lock(mu_);
  return attributes_;
}

}  // namespace otarig::drivers::net
