#pragma once
// SWUpdate's runs on the SWUpdate board (docs/ota-clients.md): the device's
// private mount namespace SWUpdate installs in, and suricatta, SWUpdate's
// daemon mode, in hawkBit mode against the rig's DDI server
// (boards/swupdate-ab-suricatta.yaml; docs/ota-clients.md, "SWUpdate's
// suricatta").
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "otarig/drivers/clients/device.hpp"

namespace otarig::clientboard {

/// The files SWUpdate's namespace adds under /etc (fw_env.config,
/// hwrevision, sw-versions) and the slot links under /run/otarig, for a
/// device running `running_version` on hardware `hardware` (board:revision).
struct SwupdateNamespace {
  std::vector<std::pair<std::string, std::string>> etc;
  std::vector<std::pair<std::string, std::string>> links;
};
SwupdateNamespace swupdate_namespace(const drivers::clients::SlotLayout& layout, const std::string& hardware,
                                     const std::string& running_version);

/// The most specific of SWUpdate's error lines: the first one naming a
/// cause, else the first one, without the log prefixes; nullopt when none.
std::optional<std::string> swupdate_reason(const std::vector<std::string>& errors);

class SuricattaClient {
 public:
  struct Settings {
    std::string hardware;         ///< board:revision (-H)
    std::string package_ca;       ///< the CA packages are signed under (-k)
    bool downgrade_check = true;  ///< -N <running version>
    unsigned timeout_ms = 60000;  ///< deadline of one run
    std::string server_url;       ///< hawkBit's URL (the fault proxy)
    std::string tenant, controller_id;
    std::string token_file;       ///< the target token (a file); empty: none is sent
    std::string server_ca;        ///< with https: cafile
    std::string client_cert, client_key;  ///< with mutual TLS: sslcert, sslkey
    std::string aes_key;          ///< the AES key file for encrypted images (-K); empty: none
  };
  SuricattaClient(drivers::clients::SlotLayout layout, Settings settings);

  /// The server offers a deployment: suricatta polls, downloads it through
  /// the fault proxy, installs it into the other slot and reports. nullopt:
  /// installed (SWUpdate began its post-update actions, where the device
  /// reboots); otherwise why not.
  std::optional<std::string> update(int booted, const drivers::clients::SlotImage& running);

  /// At boot: the outcome of an update that SWUpdate's state in the U-Boot
  /// environment (ustate) still holds is reported to the server, as
  /// suricatta does when it starts: ustate=1 on a confirmed slot (the trial
  /// boot passed: `-c 2`, success) or ustate=3 (altbootcmd fell back, or an
  /// install failed: failure). Suricatta then clears ustate. When the server
  /// has no open action for it, the report goes nowhere and the application
  /// clears ustate itself.
  void report_at_boot(const drivers::clients::SlotImage& running);

 private:
  struct Run {
    bool timed_out = false;
    std::vector<std::string> errors;
  };
  void write_config(const std::string& running_version) const;
  std::filesystem::path config_file() const { return layout_.dir / "swupdate" / "swupdate.cfg"; }

  drivers::clients::SlotLayout layout_;
  Settings s_;
};

}  // namespace otarig::clientboard
