#pragma once
// Private to the virtual board: its RAM state, its firmware (bootloader,
// agent, application, console) and the fast-sweep recordings.
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "otarig/core/image.hpp"
#include "otarig/drivers/virtual/board.hpp"
#include "otarig/drivers/virtual/boot_state.hpp"

namespace otarig::drivers::vboard {

/// What verifying one slot found. Memoized on (content of the slot, slot size).
struct SlotVerdict {
  bool structure_ok = false;
  bool hash_ok = false;
  bool key_known = false;
  bool signature_ok = false;
  std::string structure_error;
  image::Header header;
  image::Trailer trailer;
  std::size_t signed_size = 0;  ///< header + payload
  std::size_t total_size = 0;   ///< header + payload + trailer
  crypto::Digest digest{};      ///< SHA-256 over header + payload as read from flash
};

/// The slot the bootloader hands to the application.
struct BootSelection {
  int slot = 0;
  bool trial = false;
};

/// Device RAM: lost at every power loss, reset at every reboot except `boots`.
struct Ram {
  RunState state = RunState::off;
  int slot = -1;
  bool trial = false;
  bool healthy = false;
  image::Header header;
  crypto::KeyId key{};
  std::size_t signed_size = 0;
  /// Boots since the last healthy application in this power-on.
  unsigned boots = 0;
  std::string input;
  /// counter-not-persisted: the counter the application raised, kept in RAM only.
  std::uint32_t counter_raised = 0;
  /// The second image the first stage chose (-1: none; docs/virtual-board.md, "A second image").
  int image1_slot = -1;
  bool image1_trial = false;
  image::Header image1_header;
  crypto::Digest image1_digest{};
};

/// One op of a recorded uncut delivery, with what the outside had seen when it began.
struct RecordedOp {
  FlashOp op;
  Bytes data;
  std::vector<std::uint64_t> ids;  ///< content ids of the sectors the op touched, after it
  std::size_t console = 0;  ///< bytes of recorded console output before the op
  std::uint64_t bytes_sent = 0;
  Clock::duration elapsed{};  ///< modelled time since the delivery began
};

/// The uncut delivery of `image` from provisioned state `provisioned`, and a
/// cursor: the flash after the first `cursor_ops` ops.
struct Recording {
  std::uint64_t provisioned = 0;
  Bytes image;
  std::vector<RecordedOp> ops;
  std::string console;
  FlashState cursor;
  std::size_t cursor_ops = 0;
};

struct ProvisionedState {
  std::uint64_t id = 0;
  Bytes image;
  FlashState state;
};

struct VirtualBoard::Impl {
  Impl(BoardConfig config, std::vector<crypto::PublicKey> keys, Clock* clk);

  BoardConfig cfg;
  /// The factory key store and the one in force (OTP-like: it survives power
  /// loss; trust updates add and revoke keys; provisioning restores the factory set).
  std::vector<image::TrustEntry> rom_keys, keys;
  std::vector<crypto::KeyId> key_ids;  ///< key_id of each entry of `keys`
  /// CA certificates (DER) the device's TLS client trusts for its update
  /// server besides the one it was provisioned with: added by trust updates
  /// (add_server_ca), kept as the key store is, cleared by provisioning.
  std::vector<Bytes> server_cas;
  /// The signing time of the last image confirmed (with clock_floor, the
  /// agent's clock never reads earlier); kept beside the key store.
  std::uint64_t time_floor = 0;
  DeviceTime device_time;
  Clock::duration powered_at{};  ///< `elapsed` at the last power-on
  Clock* clock = nullptr;
  NorFlash flash;
  BootStateLog log;
  AntiRollbackCounter counter;
  BootStateLog image1_log;  ///< the second image's A/B state (unused without one)

  bool powered = false;
  Ram ram;
  int last_slot = -1;            ///< the slot an application last ran from (outlives power loss)
  std::string out;               ///< printed, not yet read
  Clock::duration elapsed{};     ///< modelled time so far
  std::uint64_t link_bytes = 0;  ///< bytes the agent has taken of the current delivery

  std::map<std::pair<std::uint64_t, std::uint64_t>, SlotVerdict> verdicts;
  Stats stats;

  std::vector<ProvisionedState> provisioned_cache;
  std::uint64_t next_provision_id = 1;
  std::optional<std::uint64_t> provisioned;  ///< the cache entry the flash was last set to
  std::uint64_t provisioned_mutations = 0;   ///< flash.mutations() right after that
  std::vector<Recording> recordings;

  // ---- firmware (firmware.cpp)
  void print(std::string_view line);
  void advance(Clock::duration d);
  /// Power gone: RAM lost, the device stops.
  void lose_power();
  /// Runs bootloader and application from reset until an application stays up
  /// or the device gives up. Flash ops may throw PowerLoss; a FlashError
  /// reboots (the bootloaders resume from their records).
  void boot_chain();
  std::optional<BootSelection> bootloader();
  /// Returns true when the application requests a reboot.
  bool application(const BootSelection& selection);
  void confirm();
  DeliveryResult agent(std::span<const std::uint8_t> image);
  /// The slot the agent downloads into.
  int update_target() const;
  /// Writes the record that stages `target` for the next boot.
  void stage(int target);
  void command(std::string_view line);
  std::string status_line();

  /// Parses and checks an image (structure, digest, trusted key, signature); counts the SHA-256.
  SlotVerdict judge_image(std::span<const std::uint8_t> bytes);
  SlotVerdict verdict(int slot);
  void set_keys(std::vector<image::TrustEntry> k);
  const image::TrustEntry* key_entry(const crypto::KeyId& id) const;
  std::uint64_t now_seconds() const;
  /// Why the signer of an image the agent received is outside its validity
  /// period under the policy, or empty.
  std::string validity_failure(const SlotVerdict& v) const;
  /// Applies the trust block of the image in `slot`; why it cannot, or empty.
  std::string apply_trust_update(int slot);
  /// Why the slot's image is not authentic, or empty.
  std::string authenticity_failure(const SlotVerdict& v) const;
  /// Why installing/booting an image with header `h` would roll the device back
  /// (or cannot be represented), or empty. `floor`: the version it must not go below.
  std::string rollback_failure(const image::Header& h, const std::optional<image::Version>& floor) const;
  /// Why an image with header `h` is not for this device, or empty.
  std::string compatibility_failure(const image::Header& h) const;
  /// The bootloader's check of an image it is about to boot or install.
  std::string boot_failure(const SlotVerdict& v, const std::optional<image::Version>& floor) const;
  /// The anti-rollback counter as the firmware sees it.
  std::uint32_t counter_value() const;
  /// Raises the counter (a counted op); `by_application`: the application, not the bootloader.
  void raise_counter(std::uint32_t n, bool by_application);
  BootRecord read_state();
  /// Sectors of a slot the image in it covers (the whole slot when its header does not parse).
  std::uint64_t image_sectors(int slot) const;

  // ---- the second image (image1.cpp)
  bool has_image1() const { return cfg.flash.image1_slot_size != 0; }
  SlotVerdict image1_verdict(int slot);
  /// Why the second image in `v` must not run or be installed (floor: the version it must not go below).
  std::string image1_failure(const SlotVerdict& v, const std::optional<image::Version>& floor) const;
  /// The first stage: chooses the second image (trial, revert, fallback) into RAM; false when none verifies.
  bool boot_image1();
  /// Why an image with header `h` cannot run beside the second image at `image1` (nullopt: the device has
  /// none), or empty.
  std::string dependency_failure(const image::Header& h, const std::optional<image::Version>& image1) const;
  /// The second image's version as it runs now (nullopt without one).
  std::optional<image::Version> image1_running() const;
  /// Erases and programs `bytes` at `base` in chunks (counted ops, phase "download");
  /// `from_link`: the bytes came over the link (counted in link_bytes).
  void write_area(std::uint64_t base, std::span<const std::uint8_t> bytes, bool from_link = true);
  /// Decrypts the encrypted image in `target` into it (counted ops); why it could not, or empty.
  std::string decrypt_slot(int target);

  // ---- bootloaders (bootloaders.cpp)
  std::optional<BootSelection> boot_ab();
  std::optional<BootSelection> boot_swap();
  std::optional<BootSelection> boot_overwrite();
  std::optional<BootSelection> boot_xip();
  /// Swap modes: appends the record that starts a swap of `kind`.
  BootRecord start_swap(BootRecord st, SwapKind kind);
  /// Swap modes: runs the swap `st` describes from its recorded progress, then finishes it.
  BootRecord run_swap(BootRecord st);
  /// overwrite-only: copies slot B over slot A (from the start), then finishes.
  BootRecord run_copy(BootRecord st);
  /// Erases `dst` and programs it with the sector at `src` (two counted ops).
  void copy_sector(std::uint64_t dst, std::uint64_t src, std::string_view phase);

  // ---- deliveries (board.cpp)
  DeliveryResult deliver_slow(std::span<const std::uint8_t> image);
  DeliveryResult deliver_recorded(std::span<const std::uint8_t> image);
  DeliveryResult replay_cut(Recording& rec, std::uint64_t k);
  Recording* find_recording(std::span<const std::uint8_t> image);
  const ProvisionedState* provisioned_state(std::uint64_t id) const;
  bool pristine() const;
};

char slot_name(int slot);
std::string power_lost_detail(const FlashOp& op, bool torn);

}  // namespace otarig::drivers::vboard
