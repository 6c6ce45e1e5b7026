// The virtual board's protocols, provisioning, and the fast sweep: a counted
// cut in a delivery from a provisioned state is materialized from the
// recorded uncut delivery instead of rerunning the agent.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>

#include "board_impl.hpp"
#include "otarig/core/errors.hpp"

namespace otarig::drivers::vboard {
namespace {

constexpr std::size_t kMaxProvisioned = 4;
constexpr std::size_t kMaxRecordings = 2;

bool same_bytes(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

// Clears the flash observer when a recorded delivery ends, however it ends.
class ObserverGuard {
 public:
  explicit ObserverGuard(NorFlash& flash) : flash_(flash) {}
  ~ObserverGuard() { flash_.set_observer(nullptr); }
  ObserverGuard(const ObserverGuard&) = delete;
  ObserverGuard& operator=(const ObserverGuard&) = delete;

 private:
  NorFlash& flash_;
};

}  // namespace

std::string power_lost_detail(const FlashOp& op, bool torn) {
  return fmt::format("power lost {} flash op {}: {}", torn ? "during (torn)" : "before", op.index,
                     describe(op));
}

VirtualBoard::Impl::Impl(BoardConfig config, std::vector<crypto::PublicKey> trusted_keys, Clock* clk)
    : cfg(std::move(config)),
      clock(clk),
      flash(cfg.layout()),
      log(flash, record_magic(cfg.mode)),
      counter(flash),
      image1_log(flash, kImage1Magic, flash.geometry().image1_meta_offset(), flash.geometry().image1_meta_sectors) {
  for (const auto& k : trusted_keys) rom_keys.push_back(image::TrustEntry{k, 0, 0, false});
  set_keys(rom_keys);
}

void VirtualBoard::Impl::set_keys(std::vector<image::TrustEntry> k) {
  keys = std::move(k);
  key_ids.clear();
  for (const auto& e : keys) key_ids.push_back(crypto::key_id(e.key));
  verdicts.clear();  // a verdict names the key it found
}

const image::TrustEntry* VirtualBoard::Impl::key_entry(const crypto::KeyId& id) const {
  for (std::size_t i = 0; i < keys.size(); ++i)
    if (key_ids[i] == id) return &keys[i];
  return nullptr;
}

std::uint64_t VirtualBoard::Impl::now_seconds() const {
  const auto host = std::chrono::duration_cast<std::chrono::seconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  const auto since_on = std::chrono::duration_cast<std::chrono::seconds>(elapsed - powered_at).count();
  std::int64_t t = host;
  if (device_time.kind == DeviceTime::Kind::at) t = device_time.seconds + since_on;
  if (device_time.kind == DeviceTime::Kind::offset) t = host + device_time.seconds;
  return static_cast<std::uint64_t>(std::max<std::int64_t>(0, t));
}

// ---------------------------------------------------------------------------- deliveries

bool VirtualBoard::Impl::pristine() const {
  return cfg.fast_sweep && provisioned && flash.mutations() == provisioned_mutations &&
         flash.ops_issued() == 0 && !flash.fired() && !flash.cut().error && powered &&
         ram.state == RunState::running;
}

const ProvisionedState* VirtualBoard::Impl::provisioned_state(std::uint64_t id) const {
  for (const auto& p : provisioned_cache)
    if (p.id == id) return &p;
  return nullptr;
}

Recording* VirtualBoard::Impl::find_recording(std::span<const std::uint8_t> image) {
  for (auto& r : recordings)
    if (r.provisioned == *provisioned && same_bytes(r.image, image)) return &r;
  return nullptr;
}

DeliveryResult VirtualBoard::Impl::deliver_slow(std::span<const std::uint8_t> image) {
  ++stats.slow_deliveries;
  link_bytes = 0;
  try {
    return agent(image);
  } catch (const PowerLoss& loss) {
    lose_power();
    return DeliveryResult{DeliveryStatus::power_lost, power_lost_detail(loss.op, loss.torn), link_bytes};
  }
}

DeliveryResult VirtualBoard::Impl::deliver_recorded(std::span<const std::uint8_t> image) {
  const auto* base = provisioned_state(*provisioned);
  if (!base) return deliver_slow(image);
  Recording rec;
  rec.provisioned = *provisioned;
  rec.image.assign(image.begin(), image.end());
  const std::size_t out_start = out.size();
  const Clock::duration elapsed_start = elapsed;
  DeliveryResult result;
  {
    ObserverGuard guard(flash);
    // The observer sees each op before it is applied; the content ids the
    // previous op left are taken then (and after the last op at the end).
    const auto& g = flash.geometry();
    auto take_ids = [&] {
      if (rec.ops.empty() || !rec.ops.back().ids.empty()) return;
      auto& last = rec.ops.back();
      for (auto sec = last.op.address / g.sector_size; sec <= (last.op.address + last.op.length - 1) / g.sector_size;
           ++sec)
        last.ids.push_back(flash.state().sector_ids[sec]);
    };
    flash.set_observer([&](const FlashOp& op, std::span<const std::uint8_t> data) {
      take_ids();
      rec.ops.push_back(RecordedOp{op, Bytes(data.begin(), data.end()), {}, out.size() - out_start, link_bytes,
                                   elapsed - elapsed_start});
    });
    result = deliver_slow(image);
    take_ids();
  }
  if (result.status == DeliveryStatus::power_lost) return result;
  rec.console = out.substr(out_start);
  rec.cursor = base->state;
  rec.cursor_ops = 0;
  ++stats.recorded_deliveries;
  if (recordings.size() >= kMaxRecordings) recordings.erase(recordings.begin());
  recordings.push_back(std::move(rec));
  return result;
}

DeliveryResult VirtualBoard::Impl::replay_cut(Recording& rec, std::uint64_t k) {
  ++stats.replayed_cuts;
  const RecordedOp& at = rec.ops[k - 1];
  if (rec.cursor_ops > k - 1) {
    const auto* base = provisioned_state(rec.provisioned);
    if (!base) throw std::logic_error("virtual board: fast sweep lost its provisioned state");
    rec.cursor = base->state;
    rec.cursor_ops = 0;
  }
  const auto& g = flash.geometry();
  while (rec.cursor_ops < k - 1) {
    const RecordedOp& op = rec.ops[rec.cursor_ops++];
    NorFlash::apply_op(g, rec.cursor, op.op, op.data);
    // The same bytes as in the recorded run: the same content ids.
    auto sec = op.op.address / g.sector_size;
    for (auto id : op.ids) rec.cursor.sector_ids[sec++] = id;
  }
  flash.replay_cut(rec.cursor, at.op, at.data);
  out.append(rec.console, 0, at.console);
  link_bytes = at.bytes_sent;
  advance(at.elapsed);
  lose_power();
  return DeliveryResult{DeliveryStatus::power_lost, power_lost_detail(at.op, flash.cut().torn),
                        at.bytes_sent};
}

// ---------------------------------------------------------------------------- VirtualBoard

VirtualBoard::VirtualBoard(BoardConfig config, std::vector<crypto::PublicKey> trusted_keys, Clock* clock) {
  if (auto p = config.problem(); !p.empty()) throw std::invalid_argument("virtual board: " + p);
  impl_ = std::make_unique<Impl>(std::move(config), std::move(trusted_keys), clock);
}

VirtualBoard::~VirtualBoard() = default;

void VirtualBoard::on() {
  auto& d = *impl_;
  if (d.powered) return;
  d.powered = true;
  d.powered_at = d.elapsed;
  d.ram = Ram{};
  try {
    d.boot_chain();
  } catch (const PowerLoss&) {
    d.lose_power();
  }
}

void VirtualBoard::off() { impl_->lose_power(); }

void VirtualBoard::cycle(std::chrono::milliseconds off_time) {
  off();
  if (impl_->clock) impl_->clock->advance(off_time);
  on();
}

bool VirtualBoard::is_on() const { return impl_->powered; }

void VirtualBoard::write(std::string_view bytes) {
  auto& d = *impl_;
  for (char c : bytes) {
    if (!d.powered || d.ram.state != RunState::running) return;
    if (c == '\n') {
      std::string line = std::exchange(d.ram.input, {});
      d.command(line);
    } else if (d.ram.input.size() < 256) {
      d.ram.input.push_back(c);
    }
  }
}

std::string VirtualBoard::read(std::chrono::milliseconds timeout) {
  auto& d = *impl_;
  if (!d.out.empty()) return std::exchange(d.out, {});
  if (d.clock) d.clock->advance(timeout);
  return {};
}

DeliveryResult VirtualBoard::deliver(std::span<const std::uint8_t> image) {
  auto& d = *impl_;
  if (!d.powered) return DeliveryResult{DeliveryStatus::unreachable, "device is off", 0};
  if (d.ram.state != RunState::running)
    return DeliveryResult{DeliveryStatus::unreachable, "no application answers (device not booted)", 0};
  // A trust update changes the key store, which a recording does not replay.
  const bool trust_update =
      image.size() >= image::kHeaderSize &&
      (image::decode_header(image.first<image::kHeaderSize>()).flags & image::kFlagTrustUpdate) != 0;
  if (d.pristine() && !trust_update && d.keys == d.rom_keys) {
    const std::uint64_t k = d.flash.cut().before_op;
    if (k == 0) {
      if (!d.find_recording(image)) return d.deliver_recorded(image);
    } else if (auto* rec = d.find_recording(image); rec && k <= rec->ops.size()) {
      return d.replay_cut(*rec, k);
    }
  }
  return d.deliver_slow(image);
}

void VirtualBoard::provision(std::span<const std::uint8_t> image) {
  auto& d = *impl_;
  const auto& g = d.flash.geometry();
  auto parsed = image::parse(image, "provision image");
  const std::size_t app_size = d.has_image1() ? parsed.total_size : image.size();
  if (app_size > g.slot_size)
    throw InputError(
        fmt::format("provision image: {} bytes do not fit the {}-byte slot", app_size, g.slot_size));
  if (parsed.header.security_counter > d.counter.capacity())
    throw InputError(
        fmt::format("provision image: header.security_counter: {} exceeds the counter capacity {}",
                    parsed.header.security_counter, d.counter.capacity()));
  d.lose_power();
  const ProvisionedState* hit = nullptr;
  for (const auto& p : d.provisioned_cache)
    if (same_bytes(p.image, image)) hit = &p;
  if (hit) {
    d.flash.restore(hit->state);
    d.provisioned = hit->id;
  } else {
    d.flash.erase_all_raw();
    if (d.has_image1()) {
      // A bundle (docs/image-format.md): the application into slot A, the
      // second image into its slot A.
      const auto second = image::parse(image.subspan(parsed.total_size), "provision image: image 2");
      if (second.header.image_index != 1 || parsed.header.image_index != 0)
        throw InputError("provision image: a device with a second image is provisioned with a bundle of the "
                         "application (image 0) and the second image (image 1), in that order");
      if (second.total_size > g.image1_slot_size)
        throw InputError(fmt::format("provision image: image 2: {} bytes do not fit the {}-byte slot",
                                     second.total_size, g.image1_slot_size));
      d.flash.write_raw(g.slot_offset(0), image.first(parsed.total_size));
      d.flash.write_raw(g.image1_offset(0), image.subspan(parsed.total_size, second.total_size));
      d.image1_log.format_raw(BootRecord{1, 0, kNoSlot, false, true});
    } else {
      d.flash.write_raw(g.slot_offset(0), image);
    }
    BootRecord initial{1, 0, kNoSlot, false, true};
    if (d.cfg.mode == BootMode::direct_xip) initial.slot_state = {SlotState::confirmed, SlotState::empty};
    d.log.format_raw(initial);
    d.counter.set_raw(parsed.header.security_counter);
    d.flash.reset_erase_counts();
    if (d.provisioned_cache.size() >= kMaxProvisioned) {
      const auto evicted = d.provisioned_cache.front().id;
      d.provisioned_cache.erase(d.provisioned_cache.begin());
      std::erase_if(d.recordings, [&](const Recording& r) { return r.provisioned == evicted; });
    }
    d.provisioned_cache.push_back(
        ProvisionedState{d.next_provision_id++, Bytes(image.begin(), image.end()), d.flash.state()});
    d.provisioned = d.provisioned_cache.back().id;
  }
  d.provisioned_mutations = d.flash.mutations();
  d.last_slot = 0;
  if (d.keys != d.rom_keys) d.set_keys(d.rom_keys);
  d.server_cas.clear();
  d.time_floor = parsed.header.signing_time;
}

void VirtualBoard::set_device_time(const DeviceTime& time) { impl_->device_time = time; }

void VirtualBoard::set_trust(std::vector<image::TrustEntry> trust) {
  impl_->rom_keys = std::move(trust);
  impl_->set_keys(impl_->rom_keys);
}

const std::vector<image::TrustEntry>& VirtualBoard::key_store() const { return impl_->keys; }
VirtualBoard::KeyState VirtualBoard::key_state() const {
  return {impl_->keys, impl_->time_floor, impl_->server_cas};
}
void VirtualBoard::restore_key_state(const KeyState& state) {
  impl_->set_keys(state.keys);
  impl_->time_floor = state.time_floor;
  impl_->server_cas = state.server_cas;
}
std::uint64_t VirtualBoard::device_now() const { return impl_->now_seconds(); }

std::optional<std::string> VirtualBoard::flip_at_rest(const StorageFlip& f) {
  auto& d = *impl_;
  d.lose_power();
  const auto& g = d.flash.geometry();
  const int running = d.last_slot >= 0 ? d.last_slot : 0;
  const int slot = f.running_slot ? running : 1 - running;
  // Within the image the slot holds (the whole slot when its header does not parse).
  std::uint64_t image_end = g.slot_size;
  const auto h = image::decode_header(d.flash.read(g.slot_offset(slot), image::kHeaderSize).first<image::kHeaderSize>());
  if (h.magic == image::kHeaderMagic)
    image_end = std::min<std::uint64_t>(g.slot_size, std::uint64_t{image::kHeaderSize} + h.payload_size + image::kTrailerSize);
  std::mt19937_64 rng(f.seed);
  std::string flipped;
  for (std::uint32_t i = 0; i < std::max<std::uint32_t>(1, f.bits); ++i) {
    const std::uint64_t offset = rng() % image_end;
    const auto bit = static_cast<unsigned>(rng() % 8);
    d.flash.flip_bit_raw(g.slot_offset(slot) + offset, bit);
    flipped += fmt::format("{}{}:{}", flipped.empty() ? "" : ", ", offset, bit);
  }
  return fmt::format("flipped {} bit{} (byte:bit {}) of the {}-byte image in slot {} ({})", std::max<std::uint32_t>(1, f.bits),
                     f.bits > 1 ? "s" : "", flipped, image_end, slot_name(slot), f.running_slot ? "running" : "other");
}

void VirtualBoard::arm(const FlashCut& cut) { impl_->flash.arm(cut); }
void VirtualBoard::disarm() { impl_->flash.disarm(); }
std::uint64_t VirtualBoard::ops_counted() const { return impl_->flash.ops_counted(); }
std::optional<FlashOp> VirtualBoard::fired() const { return impl_->flash.fired(); }
std::vector<std::uint32_t> VirtualBoard::erase_counts() const { return impl_->flash.state().erase_counts; }

bool VirtualBoard::storage_contains(std::span<const std::uint8_t> needle, std::string* where) const {
  const auto bytes = impl_->flash.bytes();
  if (needle.empty()) return true;
  auto it = std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end());
  if (it == bytes.end()) return false;
  if (where) {
    const auto at = static_cast<std::uint64_t>(it - bytes.begin());
    const int slot = impl_->flash.geometry().slot_of(at);
    *where = slot >= 0 ? fmt::format("flash offset {:#x} (slot {})", at, slot_name(slot))
                       : fmt::format("flash offset {:#x}", at);
  }
  return true;
}

const BoardConfig& VirtualBoard::config() const { return impl_->cfg; }
RunState VirtualBoard::run_state() const { return impl_->powered ? impl_->ram.state : RunState::off; }
std::optional<image::Header> VirtualBoard::running() const {
  if (run_state() != RunState::running) return std::nullopt;
  return impl_->ram.header;
}
NorFlash& VirtualBoard::flash() { return impl_->flash; }
const NorFlash& VirtualBoard::flash() const { return impl_->flash; }
VirtualBoard::Stats VirtualBoard::stats() const { return impl_->stats; }

}  // namespace otarig::drivers::vboard
