#pragma once
// The Mender board's client runs (docs/ota-clients.md, "Mender"): Debian's
// `mender` in standalone mode, in a private mount namespace that gives it
// the device it expects — the slots as partitions under /dev, the U-Boot
// environment's fw_env.config and the running release under /etc, its
// configuration and data in the device's storage.
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "otarig/drivers/clients/device.hpp"

namespace otarig::clientboard {

class MenderClient {
 public:
  /// `verify_key`: the public key file artifacts must be signed with
  /// (ArtifactVerifyKey). `timeout_ms`: deadline of one run of `mender`.
  /// `init_store`: the device creates Mender's database itself, whole or
  /// not at all, before Mender first runs (ensure_store); false leaves it to
  /// Mender (flawed: a cut while LMDB creates it can leave a database LMDB
  /// refuses for good).
  MenderClient(drivers::clients::SlotLayout layout, std::string verify_key, unsigned timeout_ms, bool init_store);

  /// `mender install URL` on the device booted from `booted` (running
  /// `running`). nullopt: installed (the environment selects the other slot
  /// for a trial boot); otherwise why it was refused.
  std::optional<std::string> install(const std::string& url, int booted, const drivers::clients::SlotImage& running);
  /// `mender commit` after a trial boot whose self-test passed; true when committed.
  bool commit(int booted, const drivers::clients::SlotImage& running);
  /// `mender rollback` after a trial boot whose self-test failed.
  void rollback(int booted, const drivers::clients::SlotImage& running);

  // Managed mode (docs/ota-clients.md, "Managed mode"): `mender daemon`
  // against the rig's server (ServerURL), authenticating with `device_key`
  // (Security.AuthPrivateKey; empty: Mender makes a key of its own in its
  // data folder, which the rig's server does not know).
  struct Managed {
    std::string server_url;
    std::string device_key;
    std::string server_ca;  ///< with https: the CA the server's certificate must chain to (ServerCertificate)
    /// With mutual TLS: the device's client certificate and its key (HttpsClient).
    std::string client_cert;
    std::string client_key;
  };
  void set_managed(Managed managed) { managed_ = std::move(managed); }
  bool managed() const { return managed_.has_value(); }
  /// How a run of `mender daemon` ended.
  enum class DaemonEnd {
    reboot,         ///< Mender ran `reboot` (ArtifactReboot, ArtifactRollbackReboot)
    reported,       ///< it reported a deployment's final status and went idle
    no_deployment,  ///< it asked for a deployment and the server had none for it
    auth_refused,   ///< the server refused its authentication request
    timed_out,
    exited,
  };
  struct DaemonResult {
    DaemonEnd end = DaemonEnd::exited;
    std::string error;  ///< the first error Mender logged that names a cause
    /// The deployment names the running artifact: Mender reported
    /// already-installed without installing anything.
    bool already_installed = false;
    /// The reboot is ArtifactRollbackReboot's (the update was rolled back).
    bool rollback = false;
  };
  /// Runs `mender daemon` until one of DaemonEnd happens (then the daemon is
  /// killed, as a reboot would).
  DaemonResult daemon(int booted, const drivers::clients::SlotImage& running);
  /// A deployment is in progress on the device: set (synced) before the
  /// daemon takes one, cleared once it has reported. Every boot with it set
  /// runs the daemon, as a device whose daemon starts at boot would.
  bool pending() const;
  void set_pending(bool on);

 private:
  struct Outcome {
    int status = -1;
    bool timed_out = false;
    bool stopped = false;             ///< `stop` said so and the client was killed
    std::vector<std::string> errors;  ///< Mender's `level=error` messages, in order
  };
  /// `data`: Mender's data folder when not the device's (ensure_store's
  /// scratch). `stop(level, msg)`: true ends the run (SIGKILL).
  Outcome run(const std::vector<std::string>& command, int booted, const drivers::clients::SlotImage& running,
              const std::filesystem::path& data = {},
              const std::function<bool(const std::string&, const std::string&)>& stop = {});
  std::string first_cause(const std::vector<std::string>& errors) const;
  void write_config() const;
  /// First boot: when the data folder has no mender-store, Mender creates
  /// one in a scratch folder (`mender show-artifact`), the board syncs it
  /// and renames it into the data folder, then syncs the folder.
  void ensure_store(int booted, const drivers::clients::SlotImage& running);
  std::filesystem::path config_dir() const { return layout_.dir / "mender"; }
  std::filesystem::path data_dir() const { return layout_.dir / "mender-data"; }

  drivers::clients::SlotLayout layout_;
  std::string verify_key_;
  unsigned timeout_ms_;
  bool init_store_;
  std::optional<Managed> managed_;
};

/// In a forked child: the private mount namespace of a Mender run. On top of
/// enter_device_namespace (a tmpfs /run, an /etc overlay with `etc_files`):
/// a tmpfs /dev with the character devices a program needs, the slots as
/// /dev/otarig/mmcblk0p2 and p3 (links to the slot files), /dev/console (the
/// board's console); a tmpfs /sys/class whose ubi/otarig/mmcblk0pN holds the
/// slot's size in 512-byte sectors; and /run/otarig/bin first on PATH with
/// `mount`, which lists the booted slot as the root file system. Empty on
/// success, else what failed.
std::string enter_mender_namespace(const drivers::clients::SlotLayout& layout, int booted,
                                   const std::vector<std::pair<std::string, std::string>>& etc_files,
                                   const std::string& console);

}  // namespace otarig::clientboard
