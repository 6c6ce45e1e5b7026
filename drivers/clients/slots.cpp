// Slot storage, boot state and the boot ROM of the real-client boards.
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "otarig/drivers/clients/device.hpp"
#include "otarig/drivers/clients/tools.hpp"
#include "otarig/core/crypto.hpp"
#include "otarig/core/errors.hpp"
#include "otarig/core/image.hpp"

namespace otarig::drivers::clients {

const char* to_string(Bootloader b) {
  switch (b) {
    case Bootloader::uboot_env: return "uboot-env";
    case Bootloader::rauc_custom: return "rauc-custom";
    case Bootloader::mender_uboot: return "mender-uboot";
  }
  return "?";
}

std::optional<Bootloader> parse_bootloader(std::string_view text) {
  if (text == "uboot-env") return Bootloader::uboot_env;
  if (text == "rauc-custom") return Bootloader::rauc_custom;
  if (text == "mender-uboot") return Bootloader::mender_uboot;
  return std::nullopt;
}

int mender_slot_index(std::string_view partition) {
  if (partition == "2") return 0;
  if (partition == "3") return 1;
  return -1;
}

int slot_index(std::string_view name) {
  if (name == "A" || name == "a") return 0;
  if (name == "B" || name == "b") return 1;
  return -1;
}

namespace {

// Writes `bytes` at the start of `file` and zeroes the rest of `size` bytes.
void write_slot(const std::filesystem::path& file, std::span<const std::uint8_t> bytes, std::uint64_t size) {
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw BenchError(fmt::format("cannot open {}: {}", file.string(), std::strerror(errno)));
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = errno;
      ::close(fd);
      throw BenchError(fmt::format("cannot write {}: {}", file.string(), std::strerror(e)));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    const int e = errno;
    ::close(fd);
    throw BenchError(fmt::format("cannot size {}: {}", file.string(), std::strerror(e)));
  }
  ::close(fd);
}

std::string env_script(const std::map<std::string, std::string>& values) {
  std::string s;
  for (const auto& [k, v] : values) s += k + "=" + v + "\n";
  return s;
}

std::uint32_t to_u32(const std::map<std::string, std::string>& env, const std::string& key, std::uint32_t fallback) {
  auto it = env.find(key);
  if (it == env.end() || it->second.empty()) return fallback;
  try {
    return static_cast<std::uint32_t>(std::stoul(it->second));
  } catch (const std::exception&) {
    return fallback;
  }
}

}  // namespace

void provision_slots(const SlotLayout& layout, const ProvisionSpec& spec, std::span<const std::uint8_t> image) {
  if (image.size() > spec.slot_size)
    throw InputError(fmt::format("the image ({} bytes) does not fit a slot of {} bytes", image.size(), spec.slot_size));
  std::filesystem::create_directories(layout.dir);
  write_slot(layout.slot(0), image, spec.slot_size);
  write_slot(layout.slot(1), {}, spec.slot_size);
  if (spec.bootloader == Bootloader::uboot_env || spec.bootloader == Bootloader::mender_uboot) {
    ubootenv::write_config(layout);
    write_slot(layout.env(), {}, 2 * kEnvSize);
    std::map<std::string, std::string> env{{"rootpart", "A"},
                                           {"upgrade_available", "0"},
                                           {"bootcount", "0"},
                                           {"bootlimit", std::to_string(spec.bootlimit)}};
    if (spec.bootloader == Bootloader::mender_uboot) {
      env.erase("rootpart");
      env["mender_boot_part"] = mender_partition(0);
      env["mender_boot_part_hex"] = mender_partition(0);
      std::error_code ignored;
      std::filesystem::remove_all(layout.dir / "mender-data", ignored);
    }
    ubootenv::write(layout, env, env);
  } else {
    RaucBootState s;
    s.primary = 0;
    s.left[0] = spec.bootlimit;
    s.left[1] = 0;
    s.enabled[0] = true;
    s.enabled[1] = false;
    s.write(layout);
    std::error_code ignored;
    std::filesystem::remove_all(layout.dir / "rauc-data", ignored);
  }
  std::error_code ignored;
  std::filesystem::remove(layout.booted(), ignored);
}

namespace ubootenv {

void write_config(const SlotLayout& layout) {
  const auto env = std::filesystem::absolute(layout.env()).string();
  const auto text = fmt::format("# otarig: the device's U-Boot environment, two redundant copies\n"
                                "{} 0x0000 {:#06x}\n{} {:#06x} {:#06x}\n",
                                env, kEnvSize, env, kEnvSize, kEnvSize);
  std::ifstream in(layout.env_config());
  std::stringstream current;
  current << in.rdbuf();
  if (current.str() != text) write_text_atomically(layout.env_config(), text);
}

std::optional<std::map<std::string, std::string>> read(const SlotLayout& layout) {
  auto r = run_tool({"fw_printenv", "-c", layout.env_config().string()}, std::chrono::seconds(10));
  if (!r.ok() || r.output.find("Cannot read environment") != std::string::npos) return std::nullopt;
  std::map<std::string, std::string> env;
  std::stringstream lines(r.output);
  std::string line;
  while (std::getline(lines, line)) {
    auto eq = line.find('=');
    if (eq == std::string::npos || eq == 0) continue;
    env[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return env;
}

void write(const SlotLayout& layout, const std::map<std::string, std::string>& values,
           const std::map<std::string, std::string>& defaults) {
  write_config(layout);
  TempDir tmp("otarig-env");
  const auto script = tmp.path() / "script";
  write_text(script, env_script(values));
  std::vector<std::string> argv{"fw_setenv", "-c", layout.env_config().string()};
  if (!defaults.empty()) {
    const auto def = tmp.path() / "defaults";
    write_text(def, env_script(defaults));
    argv.push_back("-f");
    argv.push_back(def.string());
  }
  argv.push_back("-s");
  argv.push_back(script.string());
  auto r = run_tool(argv, std::chrono::seconds(10));
  if (!r.ok()) throw BenchError(fmt::format("fw_setenv -c {}: exit status {}: {}", layout.env_config().string(),
                                            r.status, r.output));
}

}  // namespace ubootenv

RaucBootState RaucBootState::read(const SlotLayout& layout, std::uint32_t bootlimit) {
  RaucBootState s;
  s.left[0] = bootlimit;
  std::optional<bool> enabled[2];
  std::ifstream in(layout.bootstate());
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    const auto key = line.substr(0, eq), value = line.substr(eq + 1);
    try {
      if (key == "primary" && slot_index(value) >= 0) s.primary = slot_index(value);
      if (key == "A_left") s.left[0] = static_cast<std::uint32_t>(std::stoul(value));
      if (key == "B_left") s.left[1] = static_cast<std::uint32_t>(std::stoul(value));
      if (key == "A_enabled") enabled[0] = value == "1";
      if (key == "B_enabled") enabled[1] = value == "1";
    } catch (const std::exception&) {
    }
  }
  for (int i : {0, 1}) s.enabled[i] = enabled[i].value_or(s.left[i] > 0 || i == s.primary);
  return s;
}

void RaucBootState::write(const SlotLayout& layout) const {
  write_text_atomically(layout.bootstate(),
                        fmt::format("primary={}\nA_left={}\nB_left={}\nA_enabled={}\nB_enabled={}\n",
                                    slot_name(primary), left[0], left[1], enabled[0] ? 1 : 0, enabled[1] ? 1 : 0));
}

SlotImage inspect_slot(const std::filesystem::path& file) {
  SlotImage s;
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    s.problem = "the slot cannot be read";
    return s;
  }
  image::Bytes head(image::kHeaderSize);
  in.read(reinterpret_cast<char*>(head.data()), static_cast<std::streamsize>(head.size()));
  if (in.gcount() != static_cast<std::streamsize>(head.size())) {
    s.problem = "the slot is shorter than an image header";
    return s;
  }
  const auto h = image::decode_header(std::span<const std::uint8_t, image::kHeaderSize>(head.data(), head.size()));
  if (h.magic != image::kHeaderMagic) {
    s.problem = "no image header (bad magic)";
    return s;
  }
  const std::uint64_t total = std::uint64_t{image::kHeaderSize} + h.payload_size + image::kTrailerSize;
  std::error_code ec;
  const auto size = std::filesystem::file_size(file, ec);
  if (ec || total > size) {
    s.problem = fmt::format("the header's payload size {} runs past the slot", h.payload_size);
    return s;
  }
  image::Bytes bytes(total);
  std::copy(head.begin(), head.end(), bytes.begin());
  in.read(reinterpret_cast<char*>(bytes.data() + head.size()), static_cast<std::streamsize>(total - head.size()));
  try {
    auto parsed = image::parse(bytes, file.filename().string());
    s.parsed = true;
    s.version = parsed.header.version.str();
    const auto& v = parsed.header.version;
    s.client_version = fmt::format("{}.{}.{}.{}", v.major, v.minor, v.patch, v.build);
    s.security_counter = parsed.header.security_counter;
    s.flags = parsed.header.flags;
    s.digest = crypto::hex(crypto::sha256(parsed.signed_part));
  } catch (const std::exception& e) {
    s.problem = e.what();
  }
  return s;
}

namespace {

// The application's self-test on the image it runs.
bool self_test(const SlotImage& img) { return img.parsed && !(img.flags & image::kFlagSelfTestFails); }

void note_booted(const SlotLayout& layout, int slot) {
  try {
    write_text_atomically(layout.booted(), std::string(1, slot_name(slot)) + "\n");
  } catch (const std::exception&) {
  }
}

// How a U-Boot environment names the boot slot: SWUpdate's integration
// (rootpart=A|B) or Mender's (mender_boot_part=2|3, with its _hex twin).
struct UbootNames {
  bool mender = false;
  /// Flawed (Mender): altbootcmd switches mender_boot_part but leaves
  /// upgrade_available=1, so the old slot boots as if it were the update.
  bool keeps_upgrade = false;
  const char* var() const { return mender ? "mender_boot_part" : "rootpart"; }
  int slot(const std::string& value) const {
    const int s = mender ? mender_slot_index(value) : slot_index(value);
    return s < 0 ? 0 : s;
  }
  std::string value(int slot) const { return mender ? mender_partition(slot) : std::string(1, slot_name(slot)); }
  // altbootcmd: the other slot, no upgrade pending.
  std::map<std::string, std::string> fallback(int slot) const {
    if (mender && keeps_upgrade)
      return {{"mender_boot_part", value(slot)}, {"mender_boot_part_hex", value(slot)}, {"bootcount", "0"}};
    if (mender)
      return {{"mender_boot_part", value(slot)}, {"mender_boot_part_hex", value(slot)}, {"upgrade_available", "0"},
              {"bootcount", "0"}};
    return {{"rootpart", value(slot)}, {"upgrade_available", "0"}, {"bootcount", "0"}, {"ustate", "3"}};
  }
};

BootResult boot_uboot(const SlotLayout& layout, std::uint32_t default_limit,
                      const std::function<void(const std::string&)>& log, const UbootNames& names,
                      const TrialHook& on_trial) {
  BootResult r;
  ubootenv::write_config(layout);
  for (int attempt = 0; attempt < 64; ++attempt) {
    ++r.boots;
    auto read = ubootenv::read(layout);
    if (!read) {
      log(fmt::format("boot: no valid U-Boot environment; using the default ({}={})", names.var(), names.value(0)));
      read = std::map<std::string, std::string>{};
    }
    auto& env = *read;
    const auto limit = to_u32(env, "bootlimit", default_limit);
    const bool upgrade = env["upgrade_available"] == "1";
    int slot = names.slot(env[names.var()]);
    std::map<std::string, std::string> changes;
    bool fell_back = false;
    if (upgrade) {
      const auto count = to_u32(env, "bootcount", 0) + 1;
      changes["bootcount"] = std::to_string(count);
      if (count > limit) {
        // altbootcmd: give up on the new slot, go back to the other one.
        slot = 1 - slot;
        log(fmt::format("boot: bootcount {} > bootlimit {}: altbootcmd, falling back to slot {}", count, limit,
                        slot_name(slot)));
        changes = names.fallback(slot);
        fell_back = true;
      }
      ubootenv::write(layout, changes);
    }
    const bool trial = upgrade && !fell_back;
    log(fmt::format("boot: {}={} upgrade_available={} bootcount={} bootlimit={}: {} boot of slot {}", names.var(),
                    names.value(slot), trial ? 1 : 0, trial ? changes["bootcount"] : "0", limit,
                    trial ? "trial" : "normal", slot_name(slot)));
    auto img = inspect_slot(layout.slot(slot));
    if (!img.parsed) {
      log(fmt::format("boot: slot {} holds no bootable image ({})", slot_name(slot), img.problem));
      if (trial) {
        log("boot: resetting");
        continue;
      }
      log("boot: halted");
      return r;
    }
    note_booted(layout, slot);
    r.running = true;
    r.slot = slot;
    r.image = img;
    const bool passed = self_test(img);
    if (passed) {
      r.healthy = true;
      r.state = "confirmed";
      if (trial && !names.mender) {
        ubootenv::write(layout, {{"upgrade_available", "0"}, {"bootcount", "0"}});
        log(fmt::format("app: version {} self-test passed; confirmed slot {}", img.version, slot_name(slot)));
        return r;
      }
      log(fmt::format("app: version {} self-test passed", img.version));
      if (trial && (!on_trial || !on_trial(slot, img, true))) r.state = "trial";
      return r;
    }
    log(fmt::format("app: version {} self-test FAILED", img.version));
    if (trial) {
      if (names.mender && on_trial) on_trial(slot, img, false);
      log("app: rebooting (trial not confirmed)");
      r.running = false;
      continue;
    }
    r.state = "confirmed";
    r.healthy = false;
    return r;
  }
  log("boot: reset loop; halted");
  r.running = false;
  return r;
}

// The first enabled slot in primary order with attempts left; -1 if none.
int rauc_pick(const RaucBootState& s) {
  for (int candidate : {s.primary, 1 - s.primary})
    if (s.enabled[candidate] && s.left[candidate] > 0) return candidate;
  return -1;
}

BootResult boot_rauc(const SlotLayout& layout, std::uint32_t bootlimit,
                     const std::function<void(const std::string&)>& log, WhenExhausted when_exhausted) {
  BootResult r;
  for (int attempt = 0; attempt < 64; ++attempt) {
    ++r.boots;
    auto s = RaucBootState::read(layout, bootlimit);
    int slot = rauc_pick(s);
    if (slot < 0 && when_exhausted == WhenExhausted::reset_attempts && (s.enabled[0] || s.enabled[1])) {
      // barebox bootchooser reset_attempts="all-zero": every enabled slot
      // gets its attempts back. Power cuts that each fell after an attempt
      // was counted and before the slot was marked good leave the board
      // bootable; a slot marked bad stays disabled.
      const auto before = fmt::format("A_left={} B_left={}", s.left[0], s.left[1]);
      for (int i : {0, 1})
        if (s.enabled[i]) s.left[i] = bootlimit;
      s.write(layout);
      log(fmt::format("boot: primary={} {}: no enabled slot has boot attempts left; reset_attempts all-zero: "
                      "A_left={} B_left={}",
                      slot_name(s.primary), before, s.left[0], s.left[1]));
      slot = rauc_pick(s);
    }
    if (slot < 0) {
      log(fmt::format("boot: primary={} A_left={} B_left={}: no slot has boot attempts left; halted",
                      slot_name(s.primary), s.left[0], s.left[1]));
      return r;
    }
    --s.left[slot];
    s.write(layout);
    log(fmt::format("boot: primary={} A_left={} B_left={}: booting slot {}", slot_name(s.primary), s.left[0],
                    s.left[1], slot_name(slot)));
    auto img = inspect_slot(layout.slot(slot));
    if (!img.parsed) {
      log(fmt::format("boot: slot {} holds no bootable image ({}); resetting", slot_name(slot), img.problem));
      continue;
    }
    note_booted(layout, slot);
    if (self_test(img)) {
      s.left[slot] = bootlimit;  // rauc status mark-good: the backend's set-state SLOT good
      s.enabled[slot] = true;
      s.write(layout);
      log(fmt::format("app: version {} self-test passed; marked slot {} good", img.version, slot_name(slot)));
      r.running = true;
      r.slot = slot;
      r.image = img;
      r.healthy = true;
      r.state = "confirmed";
      return r;
    }
    log(fmt::format("app: version {} self-test FAILED; rebooting (slot not marked good)", img.version));
  }
  log("boot: reset loop; halted");
  return r;
}

}  // namespace

BootResult boot(const SlotLayout& layout, Bootloader bootloader, std::uint32_t bootlimit,
                const std::function<void(const std::string&)>& log, WhenExhausted when_exhausted,
                const TrialHook& on_trial, bool fallback_keeps_upgrade) {
  if (bootloader == Bootloader::rauc_custom) return boot_rauc(layout, bootlimit, log, when_exhausted);
  return boot_uboot(layout, bootlimit, log,
                    UbootNames{bootloader == Bootloader::mender_uboot, fallback_keeps_upgrade}, on_trial);
}

int rauc_backend(const SlotLayout& layout, std::uint32_t bootlimit, const std::vector<std::string>& args,
                 std::string& out) {
  auto s = RaucBootState::read(layout, bootlimit);
  const auto& cmd = args.empty() ? std::string() : args[0];
  auto slot_arg = [&](std::size_t i) { return args.size() > i ? slot_index(args[i]) : -1; };
  if (cmd == "get-primary" && args.size() == 1) {
    out = std::string(1, slot_name(s.primary)) + "\n";
    return 0;
  }
  if (cmd == "get-current" && args.size() == 1) {
    std::ifstream in(layout.booted());
    std::string b;
    std::getline(in, b);
    if (slot_index(b) < 0) return 1;
    out = b + "\n";
    return 0;
  }
  if (cmd == "set-primary" && args.size() == 2 && slot_arg(1) >= 0) {
    s.primary = slot_arg(1);
    s.left[s.primary] = bootlimit;
    s.enabled[s.primary] = true;
    s.write(layout);
    return 0;
  }
  if (cmd == "get-state" && args.size() == 2 && slot_arg(1) >= 0) {
    out = s.enabled[slot_arg(1)] && s.left[slot_arg(1)] > 0 ? "good\n" : "bad\n";
    return 0;
  }
  if (cmd == "set-state" && args.size() == 3 && slot_arg(1) >= 0 && (args[2] == "good" || args[2] == "bad")) {
    // As RAUC's barebox backend: good refills the attempts, bad also disables.
    const bool good = args[2] == "good";
    s.left[slot_arg(1)] = good ? bootlimit : 0;
    s.enabled[slot_arg(1)] = good;
    s.write(layout);
    return 0;
  }
  out = "usage: get-primary | set-primary SLOT | get-state SLOT | set-state SLOT good|bad | get-current\n";
  return 2;
}

}  // namespace otarig::drivers::clients
