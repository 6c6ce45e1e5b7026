#pragma once
// A device-management server's API as the rig's update server plays it
// (docs/network.md): Mender's device API (mender_api.hpp) or hawkBit's
// Direct Device Integration API (hawkbit_ddi.hpp). The update server hands
// it the requests under its path prefix (UpdateServer::set_api); the
// console-command link offers every delivery as a deployment; the harness
// reads what the device reported (DeviceReportsProtocol).
// Plain C++: no Beast here.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace otarig::drivers::net {

/// An HTTP request under an API's prefix as the server received it.
struct ApiRequest {
  std::string method;         ///< "POST", "PUT", ...
  std::string target;         ///< as sent, query included
  std::string authorization;  ///< the Authorization header, empty when none
  std::string signature;      ///< the X-MEN-Signature header, empty when none
  std::string body;
};

struct ApiResponse {
  unsigned status = 404;
  std::string content_type = "application/json";
  std::string body;
};

/// A delivery as a device-management server offers it.
struct DeploymentOffer {
  std::uint64_t delivery = 0;              ///< the delivery's number (1-based): the deployment's id derives from it
  std::string artifact_name;               ///< the release's name (otarig-1.1.0.2), "otarig-unknown" when unknown
  std::string version;                     ///< the release's version (1.1.0.2), empty when unknown
  std::vector<std::string> device_types;   ///< the device types it is for
  std::string uri;                         ///< where the device downloads it (through the fault proxy)
  std::span<const std::uint8_t> package;   ///< the bytes delivered (sizes and hashes), valid during offer() only
};

class DeviceManagementApi {
 public:
  virtual ~DeviceManagementApi() = default;
  /// "mender" or "hawkbit".
  virtual std::string_view protocol() const = 0;
  /// The requests the server hands over: those whose target starts so.
  virtual std::string path_prefix() const = 0;
  /// Answers a request under path_prefix(); nullopt for 404.
  virtual std::optional<ApiResponse> handle(const ApiRequest& request) = 0;
  /// Offers `offer` to the device from now on (replaces an earlier one);
  /// returns the deployment's id as the device will report it.
  virtual std::string offer(const DeploymentOffer& offer) = 0;
  /// No deployment offered any more.
  virtual void withdraw() = 0;
  /// Every status the device reported for deployment `id`, in order.
  virtual std::vector<std::string> statuses(const std::string& id) const = 0;
  /// The last final status (success, failure, already-installed) reported
  /// for deployment `id`; nullopt when none.
  virtual std::optional<std::string> final_status(const std::string& id) const = 0;
  /// What the device did since the last call (JSON objects with `seq` and
  /// `kind`); the list starts empty again.
  virtual std::vector<nlohmann::json> take_records() = 0;
};

}  // namespace otarig::drivers::net
