#pragma once
// The part of Mender's device API (docs.mender.io, "Device APIs") that the
// Mender 3.4 daemon uses, played by the rig's update server for a managed
// device (docs/network.md, "Mender's device API"; docs/ota-clients.md,
// "Managed mode"):
//
//   POST  /api/devices/v1/authentication/auth_requests   the device's identity and public key, signed
//                                                         (X-MEN-Signature) with its key: a token, or 401
//   POST  /api/devices/v2/deployments/device/deployments/next   (v1: POST, then GET with a query)
//                                                         the published deployment (200) or none (204)
//   PUT   /api/devices/v1/deployments/device/deployments/ID/status   {"status": "..."}: 204
//   PUT   /api/devices/v1/deployments/device/deployments/ID/log      {"messages": [...]}: 204
//   PUT|PATCH /api/devices/v1/inventory/device/attributes            [{"name","value"}...]: 200
//
// Every request but the authentication request needs `Authorization:
// Bearer TOKEN` with a token this object issued (else 401, and the device
// authenticates again). Only the device key the rig provisioned is accepted.
// Everything the device sends is recorded (records(), take_records()).
// Plain C++: the server hands it requests (UpdateServer::set_api).
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "otarig/drivers/net/device_api.hpp"

namespace otarig::drivers::net {

/// A deployment as the server offers it to the device.
struct MenderDeployment {
  std::string id;
  std::string artifact_name;                 ///< the name inside the artifact (Mender compares them)
  std::vector<std::string> device_types;     ///< device_types_compatible
  std::string uri;                           ///< where the device downloads the artifact
};

/// The statuses that end a deployment on a device.
bool is_final_mender_status(const std::string& status);

/// Empty when `signature_b64` (base64) is a valid signature of `data` by the
/// public key `public_key_pem` (RSA PKCS#1 v1.5 or ECDSA with SHA-256, or
/// Ed25519: what Mender's keystore signs with); else why not.
std::string verify_mender_signature(const std::string& public_key_pem, const std::string& data,
                                    const std::string& signature_b64);

/// A fresh device key as Mender's keystore reads it: EC P-256, PEM (PKCS#8).
/// BenchError when OpenSSL fails.
std::string generate_device_key_pem();

class MenderDeviceApi final : public DeviceManagementApi {
 public:
  /// The one device key the server accepts (a PEM public key, or a private
  /// key whose public half is taken). InputError when it does not parse.
  void accept_device_key(const std::string& pem);
  /// Offers `deployment` to the device from now on (replaces an earlier one).
  void publish(MenderDeployment deployment);
  /// No deployment: the device's next-deployment request answers 204.
  void withdraw() override;
  std::optional<MenderDeployment> deployment() const;

  /// Handles a request for /api/devices/...; nullopt for any other path.
  std::optional<ApiResponse> handle(const ApiRequest& request) override;

  std::string_view protocol() const override { return "mender"; }
  std::string path_prefix() const override { return "/api/"; }
  /// Publishes the delivery as deployment
  /// 00000000-0000-4000-8000-NNNNNNNNNNNN (N: the delivery's number).
  std::string offer(const DeploymentOffer& offer) override;

  /// What the device did, in order (JSON objects with `seq` and `kind`:
  /// auth, next, status, log, inventory, unauthorized, unknown).
  std::vector<nlohmann::json> records() const;
  /// The records since the last call; the list starts empty again.
  std::vector<nlohmann::json> take_records() override;
  /// Every status the device reported for deployment `id`, in order.
  std::vector<std::string> statuses(const std::string& id) const override;
  /// The last final status (success, failure, already-installed) reported
  /// for deployment `id`; nullopt when none.
  std::optional<std::string> final_status(const std::string& id) const override;
  /// Tokens issued so far (accepted authentication requests).
  std::size_t tokens_issued() const;

 private:
  ApiResponse auth(const ApiRequest& request, nlohmann::json& record);
  bool authorized(const ApiRequest& request) const;
  std::optional<std::string> final_status_locked(const std::string& id) const;
  nlohmann::json& add(nlohmann::json record);

  mutable std::mutex mu_;
  std::string device_key_der_;  ///< SubjectPublicKeyInfo, DER
  std::string device_key_pem_;
  std::optional<MenderDeployment> deployment_;
  std::set<std::string> tokens_;
  std::map<std::string, std::vector<std::string>> statuses_;
  std::vector<nlohmann::json> records_;
  std::size_t taken_ = 0;
  std::uint64_t next_seq_ = 1;
};

}  // namespace otarig::drivers::net
