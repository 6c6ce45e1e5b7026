#include "otarig/harness/bench.hpp"

#include "otarig/core/encryption.hpp"

#include <fmt/format.h>
#include <re2/re2.h>

#include <algorithm>
#include <chrono>

#include "otarig/core/image.hpp"

#include "otarig/reports/bundle.hpp"

namespace otarig::harness {
namespace {

// Binds the profile's device, then its part sections, with the registry's
// factories: for a run, or only checking them (ctx.validate_only), where
// each factory parses its section as it would bind it and records what it
// checked in parts.checked.
void bind_sections(const BoardProfile& profile, const drivers::DriverRegistry& registry,
                   const drivers::BindContext& ctx, drivers::BoardParts& parts) {
  const Config& root = profile.root;
  auto device = root.at("device");
  const auto* make_device = registry.device(profile.device_kind);
  if (!make_device) {
    std::string kinds;
    for (const auto& k : registry.device_kinds()) kinds += (kinds.empty() ? "" : ", ") + k;
    device.at("kind").fail(fmt::format("unknown device kind '{}' (known: {})", profile.device_kind, kinds));
  }
  (*make_device)(device, ctx, parts);
  if (ctx.validate_only) parts.checked["device"] = profile.device_kind;

  auto bind = [&](const char* section, auto lookup, const char* what) {
    auto sec = root.find(section);
    if (!sec) return;
    auto driver = sec->at("driver").as_string();
    const auto* f = (registry.*lookup)(driver);
    if (!f) sec->at("driver").fail(fmt::format("unknown {} driver '{}'", what, driver));
    (*f)(*sec, ctx, parts);
    if (ctx.validate_only) parts.checked[section] = driver;
  };
  // The link comes last: it drives the other parts (and may wrap them).
  bind("power", &drivers::DriverRegistry::power, "power");
  bind("console", &drivers::DriverRegistry::console, "console");
  bind("probe", &drivers::DriverRegistry::probe, "probe");
  bind("link", &drivers::DriverRegistry::link, "link");
  if (!parts.has("power")) root.fail("the board has no power driver (add a `power:` section)");
  if (!parts.has("console")) root.fail("the board has no console driver (add a `console:` section)");
  if (!parts.has("link")) root.fail("the board has no update link (add a `link:` section)");
}

// ${profile_dir} and every path beside the profile: the profile's folder as
// an absolute path, so `--board my.yaml` or a relative path means the same
// to a command the device runs from its storage folder.
std::filesystem::path profile_folder(const BoardProfile& profile) {
  std::error_code ec;
  auto abs = std::filesystem::absolute(profile.path, ec);
  return (ec ? profile.path : abs.lexically_normal()).parent_path();
}

// A lab board's clock, set by the profile's console command after each
// power-on (`clock: {console: ...}`): ${epoch} is UNIX seconds, ${date}
// "YYYY-MM-DD HH:MM:SS" in UTC, as `date -s` takes them.
class ConsoleClock final : public drivers::DeviceClockProtocol {
 public:
  ConsoleClock(std::string command, std::shared_ptr<drivers::ConsoleProtocol> console)
      : command_(std::move(command)), console_(std::move(console)) {}
  void set_device_time(const drivers::DeviceTime& time) override {
    time_ = time;
  }
  void powered_on() override {
    if (time_.kind == drivers::DeviceTime::Kind::host) return;
    const auto host = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
    const std::int64_t t = time_.kind == drivers::DeviceTime::Kind::at ? time_.seconds : host + time_.seconds;
    const auto epoch = static_cast<std::uint64_t>(std::max<std::int64_t>(0, t));
    auto date = image::utc_text(epoch);  // YYYY-MM-DDTHH:MM:SSZ
    date[10] = ' ';
    date.pop_back();
    std::string text = command_;
    for (const auto& [var, value] : {std::pair<std::string, std::string>{"${epoch}", std::to_string(epoch)},
                                     std::pair<std::string, std::string>{"${date}", date}})
      for (auto at = text.find(var); at != std::string::npos; at = text.find(var, at + value.size()))
        text.replace(at, var.size(), value);
    console_->write(text);
  }

 private:
  std::string command_;
  std::shared_ptr<drivers::ConsoleProtocol> console_;
  drivers::DeviceTime time_;
};

}  // namespace

void validate_drivers(const BoardProfile& profile, const drivers::DriverRegistry& registry) {
  drivers::BindContext ctx;
  ctx.board_name = profile.name;
  ctx.profile_dir = profile_folder(profile);
  ctx.device_type = profile.device_type;
  if (!profile.encryption_key.empty())
    ctx.encryption_secret = encryption::DeviceKey::load_ref(profile.encryption_key).secret;
  if (!profile.encryption_aes_key.empty())
    ctx.aes_key_file = encryption::AesKey::load_ref(profile.encryption_aes_key).file_text();
  ctx.validate_only = true;
  drivers::BoardParts parts;
  bind_sections(profile, registry, ctx, parts);
}

Bench::Bench(const BoardProfile& profile, const drivers::DriverRegistry& registry, const ReleaseSet& releases,
             std::uint64_t seed)
    : profile_(profile) {
  // Every section is checked before any is bound: a bad one is the input
  // error `otarig list boards` reports, raised before a server listens or a
  // device opens for the sections above it.
  validate_drivers(profile, registry);

  // An in-process device runs on modelled time; anything else on real time.
  if (profile.device_kind == "virtual")
    clock_ = std::make_unique<ManualClock>();
  else
    clock_ = std::make_unique<SteadyClock>();

  drivers::BindContext ctx;
  ctx.clock = clock_.get();
  ctx.board_name = profile.name;
  ctx.profile_dir = profile_folder(profile);
  ctx.trusted_keys = releases.trusted();
  ctx.trust = releases.trust();
  ctx.device_type = profile.device_type;
  if (!profile.encryption_key.empty())
    ctx.encryption_secret = encryption::DeviceKey::load_ref(profile.encryption_key).secret;
  if (!profile.encryption_aes_key.empty())
    ctx.aes_key_file = encryption::AesKey::load_ref(profile.encryption_aes_key).file_text();
  ctx.package_trust_pem = releases.package_trust_pem();
  ctx.seed = seed;

  bind_sections(profile, registry, ctx, parts_);
  if (!profile.clock_console.empty() && !parts_.device_clock && parts_.console)
    parts_.device_clock = std::make_shared<ConsoleClock>(profile.clock_console, parts_.console);

  status_re_ = std::make_unique<re2::RE2>(profile.observe.status);
  if (!profile.observe.banner.empty()) banner_re_ = std::make_unique<re2::RE2>(profile.observe.banner);
}

Bench::~Bench() = default;

std::string capped_status_field(std::string value) {
  if (value.size() <= kStatusFieldMaxBytes) return value;
  const auto dropped = value.size() - kStatusFieldMaxBytes;
  value.resize(kStatusFieldMaxBytes);
  return value + fmt::format("[otarig: {} bytes dropped]", dropped);
}

void BoundedTranscript::let_go(const TranscriptLine& line) {
  if (!gap_lines_) gap_t_ms_ = line.t_ms;
  if (line.dropped_lines) {
    gap_lines_ += line.dropped_lines;
    gap_bytes_ += line.cut;
  } else {
    ++gap_lines_;
    gap_bytes_ += line.text.size() + line.cut;
  }
}

void BoundedTranscript::add(TranscriptLine line) {
  constexpr std::size_t kHalf = kTranscriptMaxBytes / 2;
  if (line.dropped_lines) {
    let_go(line);
    return;
  }
  const auto cost = line.text.size() + drivers::kConsoleLineOverheadBytes;
  if (!gap_lines_ && tail_.empty() && head_cost_ + cost <= kHalf) {
    head_cost_ += cost;
    head_.push_back(std::move(line));
    if (head_sink_) head_sink_(head_.back());
    return;
  }
  tail_cost_ += cost;
  tail_.push_back(std::move(line));
  while (tail_cost_ > kHalf && !tail_.empty()) {
    tail_cost_ -= tail_.front().text.size() + drivers::kConsoleLineOverheadBytes;
    let_go(tail_.front());
    tail_.pop_front();
  }
}

std::vector<TranscriptLine> BoundedTranscript::take() {
  std::vector<TranscriptLine> out = std::exchange(head_, {});
  if (gap_lines_) out.push_back({gap_t_ms_, {}, gap_bytes_, gap_lines_});
  for (auto& l : tail_) out.push_back(std::move(l));
  tail_.clear();
  head_cost_ = tail_cost_ = 0;
  gap_lines_ = gap_bytes_ = 0;
  return out;
}

std::vector<TranscriptLine> BoundedTranscript::last(std::size_t n) const {
  std::vector<TranscriptLine> out;
  for (auto it = tail_.rbegin(); it != tail_.rend() && out.size() < n; ++it) out.push_back(*it);
  for (auto it = head_.rbegin(); it != head_.rend() && out.size() < n; ++it) out.push_back(*it);
  std::reverse(out.begin(), out.end());
  return out;
}

TranscriptLoss transcript_loss(const std::vector<TranscriptLine>& lines) {
  TranscriptLoss loss;
  for (const auto& l : lines) {
    loss.dropped_bytes += l.cut;
    if (l.dropped_lines)
      loss.dropped_lines += l.dropped_lines;
    else if (l.cut)
      ++loss.cut_lines;
  }
  return loss;
}

std::string console_log_line(const TranscriptLine& line, std::string* raw, bool* escaped) {
  const auto stamp = fmt::format("[{:10.3f} ms] ", line.t_ms);
  if (line.dropped_lines) {
    auto marker = fmt::format("{}[otarig: {} bytes dropped]\n", stamp, line.cut);
    if (raw) *raw += marker;
    return marker;
  }
  const auto marker = line.cut ? fmt::format(" [otarig: {} bytes dropped]", line.cut) : std::string();
  if (raw) *raw += stamp + line.text + marker + "\n";
  return stamp + reports::printable_console_text(line.text, escaped) + marker + "\n";
}

void Bench::begin_transcript() {
  (void)transcript_.take();
  transcript_start_ = clock_->now();
}

double Bench::since_start_ms(Clock::duration at) const {
  return std::chrono::duration<double, std::milli>(at - transcript_start_).count();
}

std::optional<std::string> Bench::untaken(std::string text, Clock::duration at) const {
  if (shown_ && shown_->at == at && text.compare(0, shown_->text.size(), shown_->text) == 0) {
    text.erase(0, shown_->text.size());
    if (text.empty()) return std::nullopt;
  }
  return text;
}

void Bench::keep_line(TranscriptLine line) {
  if (line_sink_)
    line_sink_(std::move(line));
  else
    transcript_.add(std::move(line));
}

// Lines the status and console-event patterns have yet to look at: the newest
// kTranscriptMaxBytes of them at most (a device that floods between two looks
// cannot fill memory; the lines that matter come after the question).
void Bench::unmatched(std::string line, bool cut) {
  unmatched_bytes_ += line.size() + drivers::kConsoleLineOverheadBytes;
  unmatched_lines_.push_back({std::move(line), cut});
  while (unmatched_bytes_ > kTranscriptMaxBytes && !unmatched_lines_.empty()) {
    unmatched_bytes_ -= unmatched_lines_.front().text.size() + drivers::kConsoleLineOverheadBytes;
    unmatched_lines_.pop_front();
  }
}

void Bench::clear_unmatched() {
  unmatched_lines_.clear();
  unmatched_bytes_ = 0;
}

void Bench::collect_stamps() {
  auto* stamps = parts_.console_stamps.get();
  if (!stamps) return;
  auto record = stamps->take_record();
  if (record.dropped_lines)
    keep_line({record.entries.empty() ? since_start_ms(clock_->now()) : since_start_ms(record.entries.front().at),
               {},
               record.dropped_bytes,
               record.dropped_lines});
  for (auto& e : record.entries) {
    if (e.kind == drivers::ConsoleEntry::Kind::event) {
      console_events_.push_back({e.event, e.text, e.at, since_start_ms(e.at)});
      continue;
    }
    const auto shown_cut = shown_ && shown_->at == e.at ? shown_->cut : 0;
    if (auto text = untaken(std::move(e.text), e.at))
      keep_line({since_start_ms(e.at), std::move(*text), e.cut > shown_cut ? e.cut - shown_cut : 0});
    shown_.reset();
  }
  arriving_ = std::move(record.arriving);
}

std::vector<ConsoleEvent> Bench::take_console_events() {
  collect_stamps();
  return std::exchange(console_events_, {});
}

std::vector<TranscriptLine> Bench::take_transcript() {
  if (parts_.console_stamps) {
    // The console's own arrival stamps; the line still arriving goes in as
    // far as it came, and its rest into the next transcript.
    collect_stamps();
    if (arriving_) {
      if (auto text = untaken(arriving_->text, arriving_->at); text && !text->empty())
        keep_line({since_start_ms(arriving_->at), std::move(*text), arriving_->cut});
      shown_ = std::exchange(arriving_, std::nullopt);
    }
    return transcript_.take();
  }
  if (!partial_.empty() || partial_cut_) {
    keep_line({std::chrono::duration<double, std::milli>(clock_->now() - transcript_start_).count(), partial_,
               partial_cut_});
    partial_.clear();
    partial_cut_ = 0;
  }
  return transcript_.take();
}

void Bench::absorb(const std::string& bytes) {
  std::string_view rest(bytes);
  while (!rest.empty()) {
    const auto nl = rest.find('\n');
    const auto part = rest.substr(0, nl);
    // A line keeps its first kConsoleLineMaxBytes; the rest is counted.
    const auto room = drivers::kConsoleLineMaxBytes - std::min(drivers::kConsoleLineMaxBytes, partial_.size());
    partial_.append(part.substr(0, room));
    if (part.size() > room) partial_cut_ += part.size() - room;
    if (nl == std::string_view::npos) break;
    rest.remove_prefix(nl + 1);
    if (!partial_.empty() && partial_.back() == '\r') partial_.pop_back();
    if (banner_re_ && identity_.empty() && re2::RE2::PartialMatch(partial_, *banner_re_)) identity_ = partial_;
    // A console that stamps its lines as they arrive fills the transcript
    // itself (collect_stamps); any other is stamped now, as it is read.
    if (!parts_.console_stamps) keep_line({since_start_ms(clock_->now()), partial_, partial_cut_});
    unmatched(std::move(partial_), partial_cut_ != 0);
    partial_.clear();
    partial_cut_ = 0;
  }
  // A stamping console's lines join the transcript as they are read, not at
  // the next drain: a trial's console.log follows the device.
  if (!bytes.empty()) collect_stamps();
}

void Bench::drain_console() {
  for (;;) {
    auto bytes = parts_.console->read(std::chrono::milliseconds(0));
    if (bytes.empty()) break;
    absorb(bytes);
  }
  collect_stamps();
}

void Bench::forget_console() {
  drain_console();
  clear_unmatched();
}

void Bench::power_on(const std::string& step) {
  try {
    parts_.power->on();
    if (parts_.device_clock) parts_.device_clock->powered_on();
  } catch (const BenchError&) {
    throw;
  } catch (const std::exception& e) {
    throw BenchError(fmt::format("{}: power on failed during {}: {}", profile_.name, step, e.what()));
  }
}

void Bench::power_off(const std::string& step) {
  try {
    parts_.power->off();
  } catch (const BenchError&) {
    throw;
  } catch (const std::exception& e) {
    throw BenchError(fmt::format("{}: power off failed during {}: {}", profile_.name, step, e.what()));
  }
}

std::optional<std::string> Bench::wait_for_line(const std::string& pattern, std::chrono::milliseconds timeout) {
  re2::RE2 re(pattern, re2::RE2::Quiet);
  if (!re.ok()) throw InputError(fmt::format("invalid console pattern '{}': {}", pattern, re.error()));
  drain_console();
  const auto deadline = clock_->now() + timeout;
  while (true) {
    for (const auto& pending : unmatched_lines_)
      if (re2::RE2::PartialMatch(pending.text, re)) {
        std::string found = pending.text;
        clear_unmatched();
        return found;
      }
    clear_unmatched();
    const auto now = clock_->now();
    if (now >= deadline) return std::nullopt;
    absorb(parts_.console->read(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now) +
                                std::chrono::milliseconds(1)));
  }
}

Observation Bench::observe(const std::string& step) {
  Observation obs;
  obs.step = step;
  drain_console();
  clear_unmatched();
  const auto start = clock_->now();
  const auto deadline = start + profile_.observe.boot_timeout;
  const auto interval = profile_.observe.status_interval;
  auto next_ask = start;
  while (true) {
    auto now = clock_->now();
    if (!profile_.observe.status_command.empty() && now >= next_ask) {
      parts_.console->write(profile_.observe.status_command);
      next_ask = now + interval;
    }
    // Look at every complete line that arrived since we asked.
    for (const auto& pending : unmatched_lines_) {
      // A line cut at the line limit is not a status line: what it reported is not all there.
      if (pending.cut) continue;
      const auto& line = pending.text;
      std::string slot, version, digest, counter, state, health, key;
      const auto& groups = status_re_->NamedCapturingGroups();
      int n = status_re_->NumberOfCapturingGroups();
      std::vector<std::string> values(static_cast<std::size_t>(n));
      std::vector<re2::RE2::Arg> args(static_cast<std::size_t>(n));
      std::vector<const re2::RE2::Arg*> argp(static_cast<std::size_t>(n));
      for (int i = 0; i < n; ++i) {
        args[static_cast<std::size_t>(i)] = &values[static_cast<std::size_t>(i)];
        argp[static_cast<std::size_t>(i)] = &args[static_cast<std::size_t>(i)];
      }
      if (!re2::RE2::PartialMatchN(line, *status_re_, argp.data(), n)) continue;
      auto group = [&](const char* name) -> std::string {
        auto it = groups.find(name);
        return it == groups.end() ? std::string() : capped_status_field(values[static_cast<std::size_t>(it->second - 1)]);
      };
      obs.booted = true;
      obs.slot = group("slot");
      obs.version = group("version");
      obs.digest = group("digest");
      obs.state = group("state");
      obs.health = group("health");
      obs.key = group("key");
      obs.image1_version = group("image1_version");
      obs.image1_digest = group("image1_digest");
      if (auto c = group("counter"); !c.empty()) {
        try {
          obs.counter = std::stoull(c);
        } catch (const std::exception&) {
          obs.counter.reset();
        }
      }
      obs.line = line;
    }
    if (obs.booted) break;
    clear_unmatched();
    now = clock_->now();
    if (now >= deadline) break;
    auto wait = std::min(deadline - now, next_ask > now ? next_ask - now : Clock::duration(interval));
    auto bytes = parts_.console->read(std::chrono::duration_cast<std::chrono::milliseconds>(wait) +
                                      std::chrono::milliseconds(1));
    absorb(bytes);
  }
  clear_unmatched();
  obs.waited_ms = std::chrono::duration<double, std::milli>(clock_->now() - start).count();
  return obs;
}

}  // namespace otarig::harness
