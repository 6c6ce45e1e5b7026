// otarig-vboard: the virtual board as a process of its own (a process board,
// docs/process-boards.md). The same bootloader, OTA agent and application as
// the in-process board (otarig_drivers_virtual), with the flash persisted in
// a file write-through, the console on stdin/stdout, and updates downloaded
// over HTTP(S) from the URL an `update URL` command names.
//
// An `update-feed URL` command follows a release feed instead: it fetches the
// manifest at URL (docs/network.md), refuses a release older than the one
// running (version or anti-rollback counter), and otherwise downloads the image the manifest names and
// checks it against the manifest's size and SHA-256 before the agent gets it (which checks the image's
// signed header again).
//
//   power on  = this process starts: boot from the flash file
//   power off = SIGKILL: the flash file keeps every flash operation that completed
//               (under the rig's crash model: what its barriers made durable, and
//               a seeded choice of the rest; --sync puts a barrier after every
//               flash operation, as a NOR flash's completed operation is durable;
//               --sync-call sync|syncfs makes every barrier a sync(2) or syncfs(2),
//               as a shell updater's `dd ... && sync` does)
//
// --state-file FILE keeps the boot-state area (the boot records) in a file of
// its own beside the flash file, as a U-Boot environment or a swap-status
// partition is; --defect-storage NAME writes it without the barriers it needs.
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <system_error>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <optional>
#include <string>
#include <vector>

#include "download.hpp"
#include "otarig/core/crypto.hpp"
#include "otarig/core/errors.hpp"
#include "otarig/core/image.hpp"
#include "otarig/drivers/net/manifest.hpp"
#include "otarig/drivers/process/flash_file.hpp"
#include "otarig/drivers/process/device_console.hpp"
#include "otarig/core/unique_fd.hpp"
#include "otarig/drivers/virtual/boot_state.hpp"
#include "otarig/drivers/virtual/board.hpp"

namespace {

namespace vb = otarig::drivers::vboard;
namespace proc = otarig::drivers::process;
using otarig::vboard_tool::DownloadError;
using otarig::vboard_tool::DownloadOptions;

struct Options {
  std::string flash;
  std::string mode = "ab";
  std::vector<std::string> defects;
  bool no_verify = false;
  bool read_to_eof = false;
  bool no_download_deadline = false;
  bool no_feed_version_check = false;
  bool version_from_manifest = false;
  bool trust_manifest_digest = false;
  bool client_cert_on_refusal = false;
  bool tls_no_verify = false;
  bool server_ca_before_verify = false;
  std::vector<std::string> trust;
  std::string signer_expiry = "enforced";
  std::string clock_1970 = "refuses-updates";
  std::string device_type;
  std::uint64_t chunk_size = 4096;
  std::uint64_t slot_size = 1u << 20;
  std::uint64_t sector_size = 4096;
  std::uint64_t program_align = 8;
  std::uint32_t metadata_sectors = 2;
  bool sync = false;
  std::string sync_call = "fdatasync";
  std::string state_file;
  std::string defect_storage;
  std::uint64_t progress_every = 65536;
  unsigned download_timeout_ms = 60000;
  unsigned step_timeout_ms = 10000;
  unsigned resume_attempts = 2;
  unsigned check_interval_ms = 1000;
  unsigned check_retry_ms = 250;
  unsigned check_retry_max_ms = 1000;
  bool check_no_retry = false;
};

// The console: stdout is the pty. Every line goes out in full, at once.
void emit(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(STDOUT_FILENO, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) std::_Exit(0);  // the console is gone: nobody is left to talk to
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

void say(std::string_view line) {
  std::string out(line);
  out += '\n';
  emit(out);
}

std::string env_or(const char* name, std::string fallback = {}) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

std::vector<otarig::crypto::PublicKey> trusted_keys(const Options& o) {
  std::vector<std::string> texts = o.trust;
  // OTARIG_TRUSTED_KEYS: hex Ed25519 public keys separated by commas or spaces.
  std::string list = env_or("OTARIG_TRUSTED_KEYS");
  std::string word;
  for (char c : list + ",") {
    if (c == ',' || c == ' ' || c == '\t' || c == '\n') {
      if (!word.empty()) texts.push_back(std::exchange(word, {}));
    } else {
      word += c;
    }
  }
  std::vector<otarig::crypto::PublicKey> keys;
  for (const auto& t : texts) {
    otarig::crypto::Bytes raw;
    try {
      raw = otarig::crypto::from_hex(t);
    } catch (const std::exception&) {
      throw otarig::InputError(fmt::format("trusted key '{}': not hex", t));
    }
    if (raw.size() != 32) throw otarig::InputError(fmt::format("trusted key '{}': not 32 bytes", t));
    otarig::crypto::PublicKey k{};
    std::copy(raw.begin(), raw.end(), k.begin());
    keys.push_back(k);
  }
  return keys;
}

// OTARIG_KEY_VALIDITY: KEYHEX=NOT_BEFORE:NOT_AFTER entries (UNIX seconds, 0
// unbounded), separated by commas: the validity periods of trusted keys.
std::vector<otarig::image::TrustEntry> trust_entries(const std::vector<otarig::crypto::PublicKey>& keys) {
  std::vector<otarig::image::TrustEntry> out;
  for (const auto& k : keys) out.push_back({k, 0, 0, false});
  std::string list = env_or("OTARIG_KEY_VALIDITY");
  std::size_t start = 0;
  while (start < list.size()) {
    auto end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    const auto item = list.substr(start, end - start);
    start = end + 1;
    unsigned long long nb = 0, na = 0;
    char hex[65] = {};
    if (std::sscanf(item.c_str(), "%64[0-9a-f]=%llu:%llu", hex, &nb, &na) != 3)
      throw otarig::InputError(fmt::format("OTARIG_KEY_VALIDITY: '{}' is not KEYHEX=NOT_BEFORE:NOT_AFTER", item));
    for (auto& e : out)
      if (otarig::crypto::hex(e.key) == hex) e.not_before = nb, e.not_after = na;
  }
  return out;
}

[[noreturn]] void fail_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

void pwrite_all(int fd, const std::uint8_t* data, std::size_t n, off_t offset, const std::string& file) {
  while (n > 0) {
    ssize_t w = ::pwrite(fd, data, n, offset);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail_errno("write " + file);
    data += w;
    n -= static_cast<std::size_t>(w);
    offset += w;
  }
}

// What a barrier is (--sync-call): fsync/fdatasync of what was written, or
// sync(2) or syncfs(2) of the file system, which a FUSE layer never sees
// (the rig sees them through the device's seccomp filter, docs/crash-model.md).
enum class SyncCall { fdatasync, sync, syncfs };

SyncCall parse_sync_call(const std::string& name) {
  return name == "sync" ? SyncCall::sync : name == "syncfs" ? SyncCall::syncfs : SyncCall::fdatasync;
}

// A barrier over `fd` (the file or folder written): fdatasync (`data_only`)
// or fsync, or the sync(2)/syncfs(2) that --sync-call names instead.
void barrier(SyncCall call, int fd, bool data_only, const std::string& what) {
  switch (call) {
    case SyncCall::fdatasync:
      if ((data_only ? ::fdatasync(fd) : ::fsync(fd)) != 0) fail_errno((data_only ? "fdatasync " : "fsync ") + what);
      return;
    case SyncCall::sync:
      ::sync();
      return;
    case SyncCall::syncfs:
      if (::syncfs(fd) != 0) fail_errno("syncfs " + what);
      return;
  }
}

void fsync_path(const std::filesystem::path& path, bool directory, SyncCall call) {
  otarig::UniqueFd fd(::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC));
  if (!fd) fail_errno("open " + path.string());
  barrier(call, fd.get(), false, path.string());
}

std::filesystem::path folder_of(const std::filesystem::path& file) {
  auto dir = std::filesystem::absolute(file).parent_path();
  return dir.empty() ? std::filesystem::path(".") : dir;
}

// How the boot-state area is kept in --state-file.
enum class StateLayout {
  log,       ///< the area's bytes, written in place where the flash would (fdatasync after each op with --sync)
  nobarrier, ///< defect no-barrier-boot-record: as log, never synced (the slots are)
  rename,    ///< defect rename-nosync: the whole area replaced by write-to-temp + rename, nothing synced
  inplace,   ///< defect inplace-bootstate: the newest record only, rewritten in place by two half writes
};

// The boot-state area in a file of its own (--state-file).
class StateFile {
 public:
  StateFile(std::filesystem::path path, StateLayout layout, bool sync, SyncCall call, std::uint32_t magic,
            std::uint64_t area)
      : path_(std::move(path)), layout_(layout), sync_(sync), call_(call), magic_(magic), area_(area) {}

  StateLayout layout() const { return layout_; }

  /// The area as the file keeps it (erased where it says nothing).
  std::vector<std::uint8_t> load() const {
    std::vector<std::uint8_t> area(area_, 0xFF);
    std::vector<std::uint8_t> raw;
    {
      otarig::UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd) {
        if (errno == ENOENT) return area;
        fail_errno("open " + path_.string());
      }
      std::uint8_t buf[65536];
      while (true) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail_errno("read " + path_.string());
        if (n == 0) break;
        raw.insert(raw.end(), buf, buf + n);
      }
    }
    if (layout_ == StateLayout::inplace) {
      // The record, when it is whole; else no boot state.
      if (raw.size() >= vb::kBootRecordSize) {
        std::span<const std::uint8_t, vb::kBootRecordSize> rec(raw.data(), vb::kBootRecordSize);
        if (vb::decode(rec, magic_)) std::copy(rec.begin(), rec.end(), area.begin());
      }
      return area;
    }
    std::copy_n(raw.begin(), std::min<std::size_t>(raw.size(), area.size()), area.begin());
    return area;
  }

  /// Factory state from the flash file: written with every barrier, whatever the layout.
  void format(std::span<const std::uint8_t> area) {
    auto tmp = path_;
    tmp += ".tmp";
    std::vector<std::uint8_t> bytes = encode_file(area, {});
    {
      otarig::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
      if (!fd) fail_errno("create " + tmp.string());
      pwrite_all(fd.get(), bytes.data(), bytes.size(), 0, tmp.string());
      barrier(call_, fd.get(), false, tmp.string());
    }
    if (::rename(tmp.c_str(), path_.c_str()) != 0) fail_errno("rename " + tmp.string());
    fsync_path(folder_of(path_), true, call_);
  }

  /// One flash operation on the area: `before` is the area before it,
  /// `after` the area with it applied; [offset, offset + length) is what it wrote.
  void apply(std::span<const std::uint8_t> before, std::span<const std::uint8_t> after, std::uint64_t offset,
             std::uint64_t length) {
    switch (layout_) {
      case StateLayout::log:
      case StateLayout::nobarrier: {
        otarig::UniqueFd fd = open_rw();
        pwrite_all(fd.get(), after.data() + offset, length, static_cast<off_t>(offset), path_.string());
        if (layout_ == StateLayout::log && sync_) barrier(call_, fd.get(), true, path_.string());
        return;
      }
      case StateLayout::rename: {
        // The flaw: neither the new file's data nor the directory entry the
        // rename makes is synced.
        auto tmp = path_;
        tmp += ".tmp";
        otarig::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        if (!fd) fail_errno("create " + tmp.string());
        pwrite_all(fd.get(), after.data(), after.size(), 0, tmp.string());
        fd.reset();
        if (::rename(tmp.c_str(), path_.c_str()) != 0) fail_errno("rename " + tmp.string());
        return;
      }
      case StateLayout::inplace: {
        auto old_rec = newest(before);
        auto new_rec = newest(after);
        if (!new_rec || old_rec == new_rec) return;
        // The record in place, in two halves: the first invalidates the old
        // record (its CRC no longer matches), the second completes the new
        // one. The flaw: no barrier between them (one after), so a disk may
        // persist either half alone.
        otarig::UniqueFd fd = open_rw();
        constexpr auto half = vb::kBootRecordSize / 2;
        pwrite_all(fd.get(), new_rec->data(), half, 0, path_.string());
        pwrite_all(fd.get(), new_rec->data() + half, half, half, path_.string());
        if (sync_) barrier(call_, fd.get(), true, path_.string());
        return;
      }
    }
  }

 private:
  otarig::UniqueFd open_rw() const {
    otarig::UniqueFd fd(::open(path_.c_str(), O_RDWR | O_CLOEXEC));
    if (!fd) fail_errno("open " + path_.string());
    return fd;
  }

  /// The newest valid record of an area.
  std::optional<std::array<std::uint8_t, vb::kBootRecordSize>> newest(std::span<const std::uint8_t> area) const {
    std::optional<std::array<std::uint8_t, vb::kBootRecordSize>> best;
    std::uint32_t best_seq = 0;
    for (std::size_t at = 0; at + vb::kBootRecordSize <= area.size(); at += vb::kBootRecordSize) {
      std::span<const std::uint8_t, vb::kBootRecordSize> rec(area.data() + at, vb::kBootRecordSize);
      auto r = vb::decode(rec, magic_);
      if (!r || (best && r->seq <= best_seq)) continue;
      best_seq = r->seq;
      best.emplace();
      std::copy(rec.begin(), rec.end(), best->begin());
    }
    return best;
  }

  std::vector<std::uint8_t> encode_file(std::span<const std::uint8_t> area, int) const {
    if (layout_ != StateLayout::inplace) return {area.begin(), area.end()};
    std::vector<std::uint8_t> out(vb::kBootRecordSize, 0xFF);
    if (auto rec = newest(area)) std::copy(rec->begin(), rec->end(), out.begin());
    return out;
  }

  std::filesystem::path path_;
  StateLayout layout_;
  bool sync_;
  SyncCall call_;
  std::uint32_t magic_;
  std::uint64_t area_;
};

// The device program.
class Device {
 public:
  Device(const Options& o, const vb::BoardConfig& config, proc::FlashFile file,
         std::vector<otarig::crypto::PublicKey> keys)
      : o_(o),
        file_(std::move(file)),
        device_key_(otarig::crypto::Ed25519Key::test_key("otarig-vboard device")) {
    if (o.no_verify || o.trust_manifest_digest) keys.push_back(device_key_.public_key());
    board_ = std::make_unique<vb::VirtualBoard>(config, keys);
    board_->set_trust(trust_entries(keys));
    load_key_store();
    auto bytes = file_.read_all();
    const auto& g = file_.geometry();
    meta_offset_ = g.metadata_offset();
    meta_length_ = std::uint64_t{g.metadata_sectors} * g.sector_size;
    if (!o.state_file.empty()) {
      StateLayout layout = StateLayout::log;
      if (o.defect_storage == "no-barrier-boot-record") layout = StateLayout::nobarrier;
      if (o.defect_storage == "rename-nosync") layout = StateLayout::rename;
      if (o.defect_storage == "inplace-bootstate") layout = StateLayout::inplace;
      state_.emplace(o.state_file, layout, o.sync, parse_sync_call(o.sync_call), vb::record_magic(config.mode),
                     meta_length_);
      std::span<const std::uint8_t> in_flash(bytes.data() + meta_offset_, meta_length_);
      if (std::any_of(in_flash.begin(), in_flash.end(), [](std::uint8_t b) { return b != 0xFF; })) {
        // A provisioned flash carries its boot state in the flash file: it
        // moves to the state file (with every barrier), then leaves the flash.
        state_->format(in_flash);
        std::vector<std::uint8_t> erased(meta_length_, 0xFF);
        file_.write(meta_offset_, erased, true);
      } else {
        if (!std::filesystem::exists(o.state_file)) state_->format(in_flash);  // erased: no boot state
        auto area = state_->load();
        std::copy(area.begin(), area.end(), bytes.begin() + static_cast<std::ptrdiff_t>(meta_offset_));
      }
    }
    board_->flash().write_raw(0, bytes);
    // Write-through: every flash operation lands in the file (one pwrite of
    // at most a sector) before the board applies it in RAM, so a SIGKILL
    // keeps exactly the operations that completed. The board's console
    // output is passed on here too, so the rig sees progress as it happens.
    // (Reading the board's console from inside its flash observer is safe:
    // the fast sweep, the only other user of the observer, is off.)
    board_->flash().set_observer(
        [this](const otarig::drivers::FlashOp& op, std::span<const std::uint8_t> data) {
          flush();
          persist(op, data);
        });
  }

  void power_on() {
    board_->on();
    flush();
  }

  // The key store (trust updates' additions and revocations, the server CAs
  // they added, and the clock floor) outlives power loss, as a device's OTP or key partition does: it
  // is kept beside the flash file, replaced whole with a barrier.
  std::string key_store_path() const { return o_.flash + ".keys"; }
  void load_key_store() {
    if (!std::filesystem::exists(key_store_path())) return;
    std::ifstream in(key_store_path());
    if (!in) return;
    // Lines: `floor SECONDS`, `KEYHEX NOT_BEFORE NOT_AFTER REVOKED`, `ca DERHEX`.
    vb::VirtualBoard::KeyState state;
    std::string text;
    while (std::getline(in, text)) {
      std::istringstream line(text);
      std::string first;
      if (!(line >> first)) continue;
      if (first == "floor") {
        unsigned long long floor = 0;
        if (line >> floor) state.time_floor = floor;
      } else if (first == "ca") {
        std::string der;
        if (!(line >> der)) continue;
        try {
          state.server_cas.push_back(otarig::crypto::from_hex(der));
        } catch (const std::exception&) {
        }
      } else {
        otarig::image::TrustEntry e;
        unsigned long long nb = 0, na = 0;
        int revoked = 0;
        if (!(line >> nb >> na >> revoked)) continue;
        otarig::crypto::Bytes raw;
        try {
          raw = otarig::crypto::from_hex(first);
        } catch (const std::exception&) {
          continue;
        }
        if (raw.size() != e.key.size()) continue;
        std::copy(raw.begin(), raw.end(), e.key.begin());
        e.not_before = nb, e.not_after = na, e.revoked = revoked != 0;
        state.keys.push_back(e);
      }
    }
    if (state.keys.empty()) state.keys = board_->key_store();
    board_->restore_key_state(state);
    saved_ = board_->key_state();
  }
  void save_key_store() {
    const auto state = board_->key_state();
    if (state.keys == saved_.keys && state.time_floor == saved_.time_floor && state.server_cas == saved_.server_cas)
      return;
    std::string text = fmt::format("floor {}\n", state.time_floor);
    for (const auto& e : state.keys)
      text += fmt::format("{} {} {} {}\n", otarig::crypto::hex(e.key), e.not_before, e.not_after, e.revoked ? 1 : 0);
    for (const auto& ca : state.server_cas) text += fmt::format("ca {}\n", otarig::crypto::hex(ca));
    const auto tmp = key_store_path() + ".new";
    {
      otarig::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
      if (!fd) fail_errno("open " + tmp);
      if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) fail_errno("write " + tmp);
      if (::fsync(fd.get()) != 0) fail_errno("fsync " + tmp);
    }
    if (::rename(tmp.c_str(), key_store_path().c_str()) != 0) fail_errno("rename " + tmp);
    fsync_path(folder_of(o_.flash), true, parse_sync_call("fdatasync"));
    saved_ = state;
  }

  void line(std::string text) {
    while (!text.empty() && (text.back() == '\r' || text.back() == ' ')) text.pop_back();
    std::size_t start = text.find_first_not_of(' ');
    text = start == std::string::npos ? std::string() : text.substr(start);
    if (board_->run_state() != vb::RunState::running) return;  // a bricked board is silent
    if (text.rfind("update-feed ", 0) == 0 || text == "update-feed") {
      update_from_feed(text.substr(std::min<std::size_t>(text.size(), 12)));
    } else if (text.rfind("watch-feed ", 0) == 0 || text == "watch-feed") {
      watch_feed(text.substr(std::min<std::size_t>(text.size(), 11)));
    } else if (text.rfind("update ", 0) == 0) {
      update(text.substr(7));
    } else {
      board_->write(text + "\n");
    }
    flush();
  }

  // The device's own timer: with a feed to watch, checks it when due.
  // Returns how long the console may wait for input before the next call
  // (-1: no timer).
  int tick() {
    if (watch_url_.empty() || board_->run_state() != vb::RunState::running) return -1;
    auto now = std::chrono::steady_clock::now();
    if (now >= next_check_) {
      check_once();
      flush();
      if (watch_url_.empty()) return -1;
      now = std::chrono::steady_clock::now();
    }
    return static_cast<int>(
        std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(next_check_ - now).count()) + 1);
  }

 private:
  enum class Outcome { installed, refused, failed };

  // `watch-feed URL`: from now on the device checks the feed by itself every
  // --check-interval, and takes a release newer than the one it runs. A
  // check that fails (the server unreachable, a bad answer) is tried again
  // after a back-off that doubles from --check-retry up to
  // --check-retry-max. A reboot (an installed update) ends the watch: the
  // device checks again when told.
  void watch_feed(std::string url) {
    url = trimmed(std::move(url));
    if (url.empty()) {
      say("ota: refused: no URL (usage: watch-feed URL)");
      return;
    }
    watch_url_ = url;
    failures_ = 0;
    next_check_ = std::chrono::steady_clock::now();
    say(fmt::format("ota: checking {} by itself every {} ms", url, o_.check_interval_ms));
  }

  void check_failed(const std::string& why) {
    if (o_.check_no_retry) {
      // Flawed: one failed check ends the watch for good.
      say(fmt::format("ota: check failed: {}; not checking again", why));
      watch_url_.clear();
      return;
    }
    ++failures_;
    const std::uint64_t doubled = std::uint64_t{o_.check_retry_ms} << std::min(failures_ - 1, 20u);
    const auto wait = std::min<std::uint64_t>(doubled, o_.check_retry_max_ms);
    next_check_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait);
    say(fmt::format("ota: check failed: {}; retrying in {} ms", why, wait));
  }

  void check_once() {
    auto d = download_options();
    d.max_bytes = 64u << 10;
    d.stop_at_declared_size = true;
    d.resume_attempts = 0;
    otarig::drivers::net::Manifest m;
    try {
      auto body = fetch(watch_url_, d);
      m = otarig::drivers::net::parse_manifest(std::string_view(reinterpret_cast<const char*>(body.data()), body.size()),
                                               "the feed's manifest");
    } catch (const DownloadError& e) {
      return check_failed(fmt::format("fetching the feed failed: {}", e.what()));
    } catch (const otarig::InputError& e) {
      return check_failed(e.what());
    }
    const auto running = board_->running();
    const auto offered = otarig::image::Version::parse(m.version);
    const bool newer = !running || (running->version < offered && m.security_counter >= running->security_counter);
    failures_ = 0;
    next_check_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(o_.check_interval_ms);
    if (!newer || m.sha256 == refused_sha256_) {
      say(fmt::format("ota: check: nothing new (the feed offers {}{}); next in {} ms", m.version,
                      m.sha256 == refused_sha256_ ? ", refused before" : "", o_.check_interval_ms));
      return;
    }
    say(fmt::format("ota: feed offers {} {} (counter {}, {} bytes)", m.name, m.version, m.security_counter, m.size));
    switch (install_from(resolve(watch_url_, m.url), &m, true)) {
      case Outcome::installed: watch_url_.clear(); break;
      case Outcome::refused: refused_sha256_ = m.sha256; break;
      case Outcome::failed: check_failed("the download failed"); break;
    }
  }

  void flush() {
    auto out = board_->read(std::chrono::milliseconds(0));
    if (!out.empty()) emit(out);
  }

  void persist(const otarig::drivers::FlashOp& op, std::span<const std::uint8_t> data) {
    const auto& flash = board_->flash();
    std::vector<std::uint8_t> after;
    if (op.kind == otarig::drivers::FlashOp::Kind::erase) {
      after.assign(op.length, 0xFF);
    } else {
      auto before = flash.read(op.address, op.length);
      after.resize(op.length);
      for (std::size_t i = 0; i < after.size(); ++i) after[i] = before[i] & data[i];
    }
    const bool boot_state = op.address >= meta_offset_ && op.address < meta_offset_ + meta_length_;
    if (boot_state && state_) {
      auto area_before = flash.read(meta_offset_, meta_length_);
      std::vector<std::uint8_t> area(area_before.begin(), area_before.end());
      const auto at = op.address - meta_offset_;
      std::copy(after.begin(), after.end(), area.begin() + static_cast<std::ptrdiff_t>(at));
      state_->apply(area_before, area, at, after.size());
      return;
    }
    // no-barrier-boot-record in the flash file itself: the boot records are
    // written without their fdatasync (the slots keep theirs).
    const bool skip_sync = boot_state && o_.defect_storage == "no-barrier-boot-record";
    const auto call = parse_sync_call(o_.sync_call);
    file_.write(op.address, after, o_.sync && !skip_sync && call == SyncCall::fdatasync);
    if (o_.sync && !skip_sync && call != SyncCall::fdatasync) {
      otarig::UniqueFd fd(::open(file_.path().c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd) fail_errno("open " + file_.path().string());
      barrier(call, fd.get(), true, file_.path().string());
    }
  }

  DownloadOptions download_options() const {
    DownloadOptions d;
    d.ca_file = env_or("OTARIG_CA");
    d.client_cert_file = env_or("OTARIG_CLIENT_CERT");
    d.client_key_file = env_or("OTARIG_CLIENT_KEY");
    d.step_timeout = std::chrono::milliseconds(o_.step_timeout_ms);
    d.total_timeout = std::chrono::milliseconds(o_.download_timeout_ms);
    d.resume_attempts = o_.resume_attempts;
    d.max_bytes = file_.geometry().slot_size;
    d.stop_at_declared_size = !o_.read_to_eof;
    d.deadlines = !o_.no_download_deadline;
    d.verify_server = !o_.tls_no_verify;
    // The server CAs trust updates added, besides the one it was provisioned with.
    d.extra_ca_der = board_->key_state().server_cas;
    return d;
  }

  // --client-cert-on-refusal: each connection goes first without the client
  // certificate, and presents it only after the server refused.
  std::vector<std::uint8_t> fetch(const std::string& url, const DownloadOptions& d) {
    if (!o_.client_cert_on_refusal || d.client_cert_file.empty()) return otarig::vboard_tool::download(url, d);
    auto bare = d;
    bare.client_cert_file.clear();
    bare.client_key_file.clear();
    try {
      return otarig::vboard_tool::download(url, bare);
    } catch (const DownloadError& e) {
      say(fmt::format("ota: refused without a client certificate ({}); presenting it", e.what()));
      return otarig::vboard_tool::download(url, d);
    }
  }

  static std::string trimmed(std::string url) {
    while (!url.empty() && url.front() == ' ') url.erase(0, 1);
    return url;
  }

  void update(std::string url) {
    url = trimmed(std::move(url));
    if (url.empty()) {
      say("ota: refused: no URL (usage: update URL)");
      return;
    }
    install_from(url, nullptr);
  }

  // The manifest's `url` is absolute, or a path on the feed's own server.
  static std::string resolve(const std::string& feed, const std::string& target) {
    if (target.rfind("http://", 0) == 0 || target.rfind("https://", 0) == 0) return target;
    const auto scheme = feed.find("://");
    if (scheme == std::string::npos) return target;
    const auto path = feed.find('/', scheme + 3);
    return (path == std::string::npos ? feed : feed.substr(0, path)) + target;
  }

  void update_from_feed(std::string url) {
    url = trimmed(std::move(url));
    if (url.empty()) {
      say("ota: refused: no URL (usage: update-feed URL)");
      return;
    }
    say("ota: checking feed " + url);
    auto d = download_options();
    d.max_bytes = 64u << 10;  // a manifest is a few hundred bytes
    d.stop_at_declared_size = true;
    d.resume_attempts = 0;
    otarig::drivers::net::Manifest m;
    try {
      auto body = fetch(url, d);
      m = otarig::drivers::net::parse_manifest(std::string_view(reinterpret_cast<const char*>(body.data()), body.size()),
                                               "the feed's manifest");
    } catch (const DownloadError& e) {
      say(fmt::format("ota: refused: fetching the feed failed: {}", e.what()));
      return;
    } catch (const otarig::InputError& e) {
      say(fmt::format("ota: refused: {}", e.what()));
      return;
    }
    say(fmt::format("ota: feed offers {} {} (counter {}, {} bytes)", m.name, m.version, m.security_counter, m.size));
    if (!o_.no_feed_version_check) {
      // What the firmware knows of itself; the agent checks the image again.
      if (auto running = board_->running()) {
        const auto offered = otarig::image::Version::parse(m.version);
        if (offered < running->version) {
          say(fmt::format("ota: refused: the feed offers {}, older than the running {}", m.version,
                          running->version.str()));
          return;
        }
        if (m.security_counter < running->security_counter) {
          say(fmt::format("ota: refused: the feed offers anti-rollback counter {}, below the running {}",
                          m.security_counter, running->security_counter));
          return;
        }
      }
    }
    install_from(resolve(url, m.url), &m);
  }

  // Downloads `url` and hands the image to the agent; with a manifest, the
  // download stops at its size and the image must match its size and SHA-256.
  // `watching`: a failed download is a failed check (retried), not a refusal.
  Outcome install_from(const std::string& url, const otarig::drivers::net::Manifest* manifest, bool watching = false) {
    say("ota: downloading " + url);
    auto d = download_options();
    if (manifest) d.expected_size = manifest->size;
    std::uint64_t received = 0, reported = 0;
    d.on_chunk = [&](std::span<const std::uint8_t> chunk) {
      received += chunk.size();
      if (o_.progress_every > 0 && received - reported >= o_.progress_every) {
        reported = received;
        say(fmt::format("ota: received {} bytes", received));
      }
    };
    d.on_resume = [&](const std::string& why, std::uint64_t kept) {
      say(fmt::format("ota: download interrupted ({}), resuming at byte {}", why, kept));
    };
    std::vector<std::uint8_t> image;
    try {
      image = fetch(url, d);
    } catch (const DownloadError& e) {
      say(std::string(watching ? "ota: check: download failed: " : "ota: refused: download failed: ") + e.what());
      return Outcome::failed;
    }
    if (received != reported) say(fmt::format("ota: received {} bytes", received));
    bool vouched = false;
    if (manifest && !o_.no_verify) {
      const auto digest = otarig::crypto::hex(otarig::crypto::sha256(image));
      if (image.size() != manifest->size || digest != manifest->sha256) {
        say(fmt::format("ota: refused: the image does not match the feed's manifest ({} bytes, sha256 {}; the "
                        "manifest names {} bytes, sha256 {})",
                        image.size(), digest, manifest->size, manifest->sha256));
        return Outcome::refused;
      }
      vouched = o_.trust_manifest_digest;
    }
    if (o_.no_verify || vouched) {
      // Flawed updater: whatever arrived is taken as it is and sealed with the
      // device's own key, which the bootloader trusts; nobody checks who
      // signed the download, or whether it is intact.
      try {
        image = otarig::image::tamper::resign(image, device_key_);
      } catch (const otarig::InputError&) {
      }
    }
    if (o_.server_ca_before_verify) take_server_cas_unverified(image);
    const auto before = board_->running();
    board_->deliver(image);
    save_key_store();
    const auto after = board_->running();
    const bool changed = after && (!before || after->version != before->version ||
                                   after->security_counter != before->security_counter);
    return changed ? Outcome::installed : Outcome::refused;
  }

  // --server-ca-before-verify: the server CAs of a key-rotation message go
  // into the TLS trust store as soon as it arrives, before the agent checks
  // who signed it (the agent may refuse the image, the CAs stay).
  void take_server_cas_unverified(std::span<const std::uint8_t> image) {
    std::vector<otarig::image::TrustChange> changes;
    try {
      const auto parsed = otarig::image::parse(image, "the download");
      if (!(parsed.header.flags & otarig::image::kFlagTrustUpdate)) return;
      changes = otarig::image::decode_trust_block(parsed.payload, "the download");
    } catch (const otarig::InputError&) {
      return;
    }
    auto state = board_->key_state();
    bool added = false;
    for (const auto& c : changes)
      if (c.action == otarig::image::TrustAction::add_server_ca &&
          std::find(state.server_cas.begin(), state.server_cas.end(), c.certificate) == state.server_cas.end()) {
        state.server_cas.push_back(c.certificate);
        added = true;
        say(fmt::format("ota: trust: took server CA {} from the download", otarig::image::certificate_subject(c.certificate)));
      }
    if (!added) return;
    board_->restore_key_state(state);
    save_key_store();
  }

  vb::VirtualBoard::KeyState saved_;
  const Options& o_;
  std::string watch_url_;
  std::chrono::steady_clock::time_point next_check_{};
  unsigned failures_ = 0;
  std::string refused_sha256_;
  proc::FlashFile file_;
  std::uint64_t meta_offset_ = 0, meta_length_ = 0;
  std::optional<StateFile> state_;
  otarig::crypto::Ed25519Key device_key_;
  std::unique_ptr<vb::VirtualBoard> board_;
};

// What the firmware does about signer validity and a clock at 1970.
void apply_policy(const Options& o, vb::BoardConfig& config) {
  config.signer_expiry = o.signer_expiry == "ignored"        ? vb::SignerExpiry::ignored
                         : o.signer_expiry == "signing-time" ? vb::SignerExpiry::signing_time
                                                             : vb::SignerExpiry::enforced;
  config.clock_floor = o.clock_1970 == "recovers";
}

int run(const Options& o) {
  // The flash file, when there is one, says the geometry; the mode must fit it.
  std::optional<proc::FlashFile> file;
  vb::BoardConfig config;
  if (std::filesystem::exists(o.flash)) {
    file.emplace(proc::FlashFile::open(o.flash));
    auto base = file->geometry();
    base.swap_sectors = 0;
    config = proc::vboard_config(o.mode, o.defects, o.chunk_size, base, "otarig-vboard arguments");
    apply_policy(o, config);
    if (!proc::same_layout(config.layout(), file->geometry()))
      throw otarig::InputError(
          fmt::format("{}: the flash was made for another layout ({} swap sectors); mode {} needs {} "
                      "(provision it for this mode)",
                      o.flash, file->geometry().swap_sectors, o.mode, config.layout().swap_sectors));
  } else {
    vb::FlashGeometry geometry;
    geometry.slot_size = o.slot_size;
    geometry.sector_size = o.sector_size;
    geometry.program_align = o.program_align;
    geometry.metadata_sectors = o.metadata_sectors;
    config = proc::vboard_config(o.mode, o.defects, o.chunk_size, geometry, "otarig-vboard arguments");
    apply_policy(o, config);
    file.emplace(proc::FlashFile::create(o.flash, config.layout()));  // an erased flash: nothing boots
    if (o.sync) {
      // The new file's data, and its name in the folder.
      fsync_path(o.flash, false, parse_sync_call(o.sync_call));
      fsync_path(folder_of(o.flash), true, parse_sync_call(o.sync_call));
    }
  }

  // The device's type: an image built for another type is refused.
  config.device_type_name = o.device_type.empty() ? env_or("OTARIG_DEVICE_TYPE") : o.device_type;
  config.device_type = otarig::image::device_type_id(config.device_type_name);
  // The device's X25519 secret for encrypted images (hex), as the rig hands it over.
  if (const auto key = env_or("OTARIG_ENCRYPTION_KEY"); !key.empty()) {
    otarig::crypto::Bytes raw;
    try {
      raw = otarig::crypto::from_hex(key);
    } catch (const std::exception&) {
    }
    if (raw.size() != 32) throw otarig::InputError("OTARIG_ENCRYPTION_KEY: not 64 hex digits");
    std::array<std::uint8_t, 32> secret{};
    std::copy(raw.begin(), raw.end(), secret.begin());
    config.encryption_secret = secret;
  }
  Device device(o, config, std::move(*file), trusted_keys(o));
  device.power_on();
  otarig::drivers::process::serve_console([&](std::string line) { device.line(std::move(line)); }, {},
                                          [&] { return device.tick(); });
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  Options o;
  CLI::App app{"otarig-vboard: the otarig virtual board as a process (console on stdin/stdout)"};
  app.add_option("--flash", o.flash, "flash file (created erased when missing)")->required();
  app.add_option("--mode", o.mode, "bootloader mode")->capture_default_str();
  app.add_option("--defect", o.defects,
                 "a defect of the virtual board (inplace-overwrite, no-rollback-check)");
  app.add_flag("--no-verify", o.no_verify,
               "flawed: install whatever is downloaded without checking who signed it, or whether it matches "
               "the feed's manifest");
  app.add_flag("--read-to-eof", o.read_to_eof,
               "flawed: read a body without Content-Length until the server closes, with no size bound "
               "(not stopping at the size the image header declares)");
  app.add_flag("--no-download-deadline", o.no_download_deadline,
               "flawed: no deadline on the download's steps or on the whole download (a stalled server "
               "holds the updater)");
  app.add_flag("--no-feed-version-check", o.no_feed_version_check,
               "flawed: `update-feed` installs whatever release the feed names, older ones included");
  app.add_flag("--version-from-manifest", o.version_from_manifest,
               "flawed: the downgrade check (version and anti-rollback counter) is made against the feed's "
               "manifest only; neither the agent nor the bootloader compares the image's signed header with the "
               "running one");
  app.add_flag("--trust-manifest-digest", o.trust_manifest_digest,
               "flawed: an image whose size and SHA-256 match the feed's manifest is taken as verified and "
               "installed without checking its own signed digest or signature");
  app.add_flag("--client-cert-on-refusal", o.client_cert_on_refusal,
               "flawed: connect without the client certificate first and present it only after the server "
               "refused, so a server that asks for it without insisting never sees it");
  app.add_flag("--tls-no-verify", o.tls_no_verify,
               "flawed: over https, take any server certificate (no chain to $OTARIG_CA, no name check), so "
               "an impostor server is taken for the update server");
  app.add_flag("--server-ca-before-verify", o.server_ca_before_verify,
               "flawed: the server CAs a key-rotation message adds (trust block entries add-server-ca) are "
               "trusted as soon as the message is downloaded, before its signature is checked; a message the "
               "agent refuses leaves them trusted");
  app.add_option("--trust", o.trust, "a trusted Ed25519 public key (hex), besides $OTARIG_TRUSTED_KEYS");
  app.add_option("--signer-expiry", o.signer_expiry,
                 "how the agent judges a signer's validity period: against the device clock (enforced), the "
                 "image's signing time (signing-time), or not at all (ignored)")
      ->check(CLI::IsMember({"enforced", "signing-time", "ignored"}))
      ->capture_default_str();
  app.add_option("--clock-1970", o.clock_1970,
                 "recovers: the agent never takes its clock to be earlier than the signing time of the last image "
                 "it confirmed; refuses-updates: it believes its clock")
      ->check(CLI::IsMember({"recovers", "refuses-updates"}))
      ->capture_default_str();
  app.add_option("--device-type", o.device_type,
                 "the device's type (default $OTARIG_DEVICE_TYPE): an image for another type is refused");
  app.add_option("--chunk-size", o.chunk_size, "agent write size")->capture_default_str();
  app.add_option("--slot-size", o.slot_size, "slot size of a new flash file")->capture_default_str();
  app.add_option("--sector-size", o.sector_size, "sector size of a new flash file")->capture_default_str();
  app.add_option("--program-align", o.program_align, "program alignment of a new flash file")
      ->capture_default_str();
  app.add_option("--metadata-sectors", o.metadata_sectors, "boot-state sectors of a new flash file")
      ->capture_default_str();
  app.add_flag("--sync", o.sync,
               "a barrier after every flash operation (fdatasync of the flash file, or of the state file for a "
               "boot-state operation); a flash file it creates is fsynced with its folder");
  app.add_option("--sync-call", o.sync_call,
                 "the call every barrier makes: fdatasync (fsync for a new file or folder), or sync (sync(2)) or "
                 "syncfs (syncfs(2) of the file written), as updaters that only `sync` do")
      ->check(CLI::IsMember({"fdatasync", "sync", "syncfs"}))
      ->capture_default_str();
  app.add_option("--state-file", o.state_file,
                 "keep the boot-state area (the boot records) in this file instead of the flash file (a "
                 "provisioned flash's boot state moves there at the first boot)");
  app.add_option("--defect-storage", o.defect_storage,
                 "flawed storage writes: no-barrier-boot-record (boot records never synced, slots synced), "
                 "rename-nosync (--state-file replaced by write-to-temp + rename, nothing synced), "
                 "inplace-bootstate (--state-file holds the newest record only, rewritten in place by two "
                 "half writes, the first invalidating it, no barrier between them)")
      ->check(CLI::IsMember({"no-barrier-boot-record", "rename-nosync", "inplace-bootstate"}));
  app.add_option("--progress-every", o.progress_every,
                 "print `ota: received N bytes` every N bytes (0: never)")
      ->capture_default_str();
  app.add_option("--download-timeout", o.download_timeout_ms, "deadline of a whole download, ms")
      ->capture_default_str();
  app.add_option("--resume-attempts", o.resume_attempts,
                 "times an interrupted download is resumed with a Range request (0: give up at once)")
      ->capture_default_str();
  app.add_option("--step-timeout", o.step_timeout_ms, "deadline of each network step, ms")
      ->capture_default_str();
  app.add_option("--check-interval", o.check_interval_ms,
                 "`watch-feed`: ms between the device's own checks of the feed while nothing fails")
      ->capture_default_str()
      ->check(CLI::Range(1u, 86400000u));
  app.add_option("--check-retry", o.check_retry_ms, "`watch-feed`: ms before the first retry of a failed check")
      ->capture_default_str()
      ->check(CLI::Range(1u, 86400000u));
  app.add_option("--check-retry-max", o.check_retry_max_ms,
                 "`watch-feed`: the back-off doubles from --check-retry up to this many ms")
      ->capture_default_str()
      ->check(CLI::Range(1u, 86400000u));
  app.add_flag("--check-no-retry", o.check_no_retry,
               "flawed: one failed `watch-feed` check ends the device's own checks for good");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if ((o.defect_storage == "rename-nosync" || o.defect_storage == "inplace-bootstate") && o.state_file.empty()) {
    std::cerr << "otarig-vboard: --defect-storage " << o.defect_storage << " needs --state-file\n";
    return 2;
  }
  // The header's version and counter are never compared on the device: the
  // feed's manifest check (kept) is the only downgrade check.
  if (o.version_from_manifest) o.defects.push_back("no-rollback-check");
  try {
    return run(o);
  } catch (const otarig::InputError& e) {
    std::cerr << "otarig-vboard: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "otarig-vboard: " << e.what() << "\n";
    return 3;
  }
}
