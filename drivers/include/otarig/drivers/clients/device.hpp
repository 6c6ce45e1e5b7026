#pragma once
// The device side of the real-client boards (docs/ota-clients.md): the slot
// storage the rig provisions, the boot state (a U-Boot environment through
// libubootenv for SWUpdate, a state file behind RAUC's custom bootloader
// backend), and the boot ROM the rig plays at every power-on.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>

namespace otarig::drivers::clients {

/// How the device's boot state is kept.
enum class Bootloader {
  uboot_env,    ///< U-Boot environment (two redundant copies) read and written with fw_printenv/fw_setenv
  rauc_custom,  ///< a state file (primary slot, boot attempts left per slot) behind RAUC's custom backend
  /// U-Boot environment as Mender's U-Boot integration keeps it:
  /// mender_boot_part (2 for slot A, 3 for slot B, the partition numbers of
  /// the device's root file systems), upgrade_available, bootcount, bootlimit.
  /// The boot ROM counts and falls back; the OTA client (`mender commit`,
  /// `mender rollback`) confirms or abandons a trial boot.
  mender_uboot,
};
const char* to_string(Bootloader b);
/// "uboot-env" | "rauc-custom" | "mender-uboot"; nullopt for anything else.
std::optional<Bootloader> parse_bootloader(std::string_view text);

/// Where a client board keeps its state: fixed names inside one folder.
struct SlotLayout {
  std::filesystem::path dir;
  std::filesystem::path slot(int index) const { return dir / (index == 0 ? "slot-a.img" : "slot-b.img"); }
  /// U-Boot environment: two copies of kEnvSize bytes.
  std::filesystem::path env() const { return dir / "uboot.env"; }
  /// libubootenv's configuration naming env() (absolute paths).
  std::filesystem::path env_config() const { return dir / "fw_env.config"; }
  /// RAUC: primary slot and attempts left.
  std::filesystem::path bootstate() const { return dir / "bootstate"; }
  /// The slot the boot ROM booted last ("A" or "B"), for RAUC's get-current.
  std::filesystem::path booted() const { return dir / "booted"; }
};

inline constexpr std::uint32_t kEnvSize = 0x4000;

inline char slot_name(int index) { return index == 0 ? 'A' : 'B'; }
/// Mender's partition number of a slot (mender_boot_part): "2" for A, "3" for B.
inline const char* mender_partition(int index) { return index == 0 ? "2" : "3"; }
/// 0 for "2", 1 for "3", -1 otherwise.
int mender_slot_index(std::string_view partition);
/// 0 for "A"/"a", 1 for "B"/"b", -1 otherwise.
int slot_index(std::string_view name);

struct ProvisionSpec {
  Bootloader bootloader = Bootloader::uboot_env;
  std::uint64_t slot_size = 4u << 20;
  std::uint32_t bootlimit = 3;
};

/// Writes a factory-fresh device while it is off: `image` in slot A (the
/// rest of the slot zeroed), slot B zeroed, and boot state that boots A,
/// confirmed: U-Boot env rootpart=A upgrade_available=0 bootcount=0
/// bootlimit=N (written with fw_setenv), Mender's mender_boot_part=2
/// upgrade_available=0 bootcount=0 bootlimit=N (and no Mender data: the
/// `mender-data` folder is removed), or the RAUC state file primary=A,
/// A good, B bad. InputError when the image does not fit a slot; BenchError
/// when a file or fw_setenv fails.
void provision_slots(const SlotLayout& layout, const ProvisionSpec& spec, std::span<const std::uint8_t> image);

/// U-Boot environment access through libubootenv's tools.
namespace ubootenv {
/// Writes env_config() for this layout (idempotent).
void write_config(const SlotLayout& layout);
/// The whole environment; nullopt when no valid copy exists (fw_printenv fails).
std::optional<std::map<std::string, std::string>> read(const SlotLayout& layout);
/// Sets the variables in one write (an empty value deletes the variable).
/// `defaults` is the environment used when none is valid yet. BenchError when fw_setenv fails.
void write(const SlotLayout& layout, const std::map<std::string, std::string>& values,
           const std::map<std::string, std::string>& defaults = {});
}  // namespace ubootenv

/// RAUC custom-backend state, as barebox's bootchooser keeps it: the primary
/// slot, and per slot the boot attempts left and whether it is enabled (a
/// priority above 0; RAUC's `set-state SLOT bad` disables the slot, as its
/// barebox backend sets the priority to 0).
struct RaucBootState {
  int primary = 0;
  std::uint32_t left[2] = {0, 0};
  bool enabled[2] = {true, false};
  /// A file without the `X_enabled` lines (an older rig's) enables a slot
  /// that has attempts left or is primary.
  static RaucBootState read(const SlotLayout& layout, std::uint32_t bootlimit);
  void write(const SlotLayout& layout) const;
};

/// What the RAUC boot ROM does when no enabled slot has an attempt left.
enum class WhenExhausted {
  /// barebox bootchooser `reset_attempts="all-zero"` (as RAUC's U-Boot
  /// example script resets BOOT_A_LEFT/BOOT_B_LEFT): every enabled slot gets
  /// its attempts back and the boot goes on in primary order. Power cuts
  /// after the attempt is counted and before the slot is marked good cannot
  /// brick the board.
  reset_attempts,
  /// `reset_attempts` empty: halt. Brown-outs during boots of a confirmed
  /// slot use its attempts up and brick the board (flawed on purpose:
  /// otarig-clientboard --halt-when-exhausted).
  halt,
};

/// What a slot holds, as the boot ROM and the application see it.
struct SlotImage {
  bool parsed = false;
  std::string problem;   ///< why it does not parse
  std::string version;   ///< major.minor.patch+build
  std::string client_version;  ///< major.minor.patch.build (SWUpdate's and RAUC's form)
  std::uint32_t security_counter = 0;
  std::uint32_t flags = 0;
  std::string digest;    ///< hex SHA-256 of header + payload
};
SlotImage inspect_slot(const std::filesystem::path& file);

/// The outcome of one power-on: the running slot (or none).
struct BootResult {
  bool running = false;  ///< false: halted, nothing to run (bricked)
  int slot = 0;
  SlotImage image;
  std::string state;     ///< "confirmed" or "trial"
  bool healthy = false;
  int boots = 0;         ///< boot attempts this power-on (resets included)
};

/// Called on a trial boot when the OTA client, not the boot ROM, decides
/// (Bootloader::mender_uboot): `passed` is the self-test's result. Returns
/// true when the client confirmed the slot (`mender commit`); after a failed
/// self-test the hook abandons the trial (`mender rollback`) and the boot
/// ROM resets.
using TrialHook = std::function<bool(int slot, const SlotImage& image, bool passed)>;

/// Plays the boot ROM and the application's start until a stable state:
/// pick the slot (U-Boot: rootpart, bootcount/bootlimit while
/// upgrade_available=1, altbootcmd fallback to the other slot; RAUC: the
/// first enabled slot in primary order with attempts left, one attempt used;
/// when none has any, `when_exhausted` decides), run its self-test (fails
/// when the image does not parse or carries kFlagSelfTestFails), confirm a
/// trial that passed (U-Boot: upgrade_available=0 bootcount=0; RAUC: the
/// slot's attempts reset, as `rauc status mark-good` does through the
/// backend), and reset after a trial that failed. `log` receives console
/// lines. U-Boot's environment counts boots only while upgrade_available=1
/// (bootcount_env), so `when_exhausted` concerns RAUC's backend only.
///
/// Bootloader::mender_uboot plays Mender's U-Boot integration: the slot is
/// mender_boot_part's, bootcount counts while upgrade_available=1, and past
/// bootlimit altbootcmd switches mender_boot_part (and _hex) to the other
/// slot with upgrade_available=0. A trial that passed its self-test is
/// confirmed by `on_trial` (the client); without a hook it stays a trial.
BootResult boot(const SlotLayout& layout, Bootloader bootloader, std::uint32_t bootlimit,
                const std::function<void(const std::string&)>& log,
                WhenExhausted when_exhausted = WhenExhausted::reset_attempts, const TrialHook& on_trial = {},
                bool fallback_keeps_upgrade = false);

/// The RAUC custom backend's commands over the state file: get-primary,
/// set-primary SLOT, get-state SLOT, set-state SLOT good|bad, get-current.
/// Returns the process exit status; `out` receives what to print.
int rauc_backend(const SlotLayout& layout, std::uint32_t bootlimit, const std::vector<std::string>& args,
                 std::string& out);

}  // namespace otarig::drivers::clients
