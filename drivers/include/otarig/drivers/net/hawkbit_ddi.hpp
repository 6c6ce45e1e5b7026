#pragma once
// The part of hawkBit's Direct Device Integration (DDI) API that SWUpdate
// 2022.12's suricatta daemon uses (suricatta/server_hawkbit.c), played by
// the rig's update server for a device managed over hawkBit
// (docs/network.md, "hawkBit's DDI API"; docs/ota-clients.md, "SWUpdate's
// suricatta"). Under /TENANT/controller/v1/CONTROLLER:
//
//   GET   .../CONTROLLER                         the controller base: config.polling.sleep, and
//                                                _links.deploymentBase while a deployment is open,
//                                                _links.configData until the device sent its attributes
//   GET   .../deploymentBase/ACTION              the deployment: chunks, artifacts (filename, size,
//                                                hashes sha1/md5/sha256, _links.download[-http])
//   POST  .../deploymentBase/ACTION/feedback     {"id", "time", "status": {"execution", "result":
//                                                {"finished", "progress"?}, "details"?}}: 200
//   PUT   .../configData                         {"data": {...}, ...}: 200
//
// Every request needs `Authorization: TargetToken TOKEN` with the token the
// rig provisioned (else 401). Unknown tenant, controller or action: 404; a
// method a route does not take: 405; a body that is not the JSON the route
// reads: 400; feedback for an action that is no longer open: 410. The
// deployment's download link is the delivery's URL through the fault proxy:
// hawkBit may link artifacts anywhere, and suricatta downloads from the link.
// Everything the device sends is recorded (take_records()).
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "otarig/drivers/net/device_api.hpp"

namespace otarig::drivers::net {

struct HawkbitOptions {
  std::string tenant = "DEFAULT";
  std::string controller_id = "otarig-device";
  std::string target_token;               ///< the one token accepted; empty refuses every request
  std::string base_url;                   ///< scheme://host:port the device reaches the server at (its links)
  std::string artifact_filename = "update.swu";  ///< suricatta installs only artifacts named *.swu
  std::string polling_sleep = "00:00:01";  ///< config.polling.sleep, HH:MM:SS
};

/// A fresh target token (32 hex digits). BenchError when OpenSSL has no randomness.
std::string generate_target_token();

class HawkbitDdiApi final : public DeviceManagementApi {
 public:
  /// InputError for a tenant or controller id that is not 1-64 of
  /// [A-Za-z0-9._-], or a polling time that is not HH:MM:SS.
  explicit HawkbitDdiApi(HawkbitOptions options);

  std::string_view protocol() const override { return "hawkbit"; }
  /// /TENANT/controller/
  std::string path_prefix() const override;
  std::optional<ApiResponse> handle(const ApiRequest& request) override;
  /// Opens action N (N: the delivery's number) with one chunk of one
  /// artifact: the package's size and hashes, the offer's URI as its link.
  std::string offer(const DeploymentOffer& offer) override;
  void withdraw() override;
  std::vector<std::string> statuses(const std::string& id) const override;
  std::optional<std::string> final_status(const std::string& id) const override;
  std::vector<nlohmann::json> take_records() override;
  /// Every record so far.
  std::vector<nlohmann::json> records() const;
  /// The action offered now; nullopt when none.
  std::optional<std::string> open_action() const;
  /// The attributes the device last sent (configData); empty when none.
  nlohmann::json attributes() const;
  /// The links the base points the device to (base_url, once the server listens).
  void set_base_url(std::string url);

 private:
  struct Action {
    std::string id;
    std::string name, version, uri;
    std::uint64_t size = 0;
    std::string sha1, md5, sha256;
    bool closed = false;
  };
  ApiResponse route(const ApiRequest& request, const std::string& rest, nlohmann::json& record);
  ApiResponse feedback(const ApiRequest& request, const std::string& action, nlohmann::json& record);
  std::string controller_url() const;
  nlohmann::json& add(nlohmann::json record);

  HawkbitOptions o_;
  mutable std::mutex mu_;
  std::map<std::string, Action> actions_;
  std::optional<std::string> open_;
  bool config_sent_ = false;
  nlohmann::json attributes_ = nlohmann::json::object();
  std::map<std::string, std::vector<std::string>> statuses_;
  std::vector<nlohmann::json> records_;
  std::size_t taken_ = 0;
  std::uint64_t next_seq_ = 1;
};

}  // namespace otarig::drivers::net
