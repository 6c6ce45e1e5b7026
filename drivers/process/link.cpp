// Link kind `console-command`: serve the image, type the update command on
// the console, watch the console (and the download) for the outcome, and cut
// power where an armed ProcessCut says.
#include <fmt/format.h>
#include <re2/re2.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <map>
#include <thread>
#include <nlohmann/json.hpp>

#include "otarig/core/crypto.hpp"
#include "otarig/core/errors.hpp"
#include "otarig/core/image.hpp"
#include "otarig/drivers/net/fault_proxy.hpp"
#include "otarig/drivers/net/fault_spec.hpp"
#include "otarig/drivers/net/http_server.hpp"
#include "otarig/drivers/net/manifest.hpp"
#include "otarig/drivers/net/device_api.hpp"
#include "otarig/drivers/process/board.hpp"
#include "otarig/drivers/process/http_probe.hpp"

namespace otarig::drivers::process {
namespace {

using Steady = std::chrono::steady_clock;

std::unique_ptr<re2::RE2> compile(const Config& section, const char* key, bool required) {
  auto c = section.find(key);
  if (!c) {
    if (required) section.at(key);  // InputError naming the missing key
    return nullptr;
  }
  auto re = std::make_unique<re2::RE2>(c->as_string(), re2::RE2::Quiet);
  if (!re->ok()) c->fail(fmt::format("invalid RE2 pattern: {}", re->error()));
  return re;
}

std::unique_ptr<re2::RE2> compile(const std::string& pattern, const char* what) {
  if (pattern.empty()) return nullptr;
  auto re = std::make_unique<re2::RE2>(pattern, re2::RE2::Quiet);
  if (!re->ok())
    throw InputError(fmt::format("{}: invalid RE2 pattern '{}': {}", what, pattern, re->error()));
  return re;
}

/// Matches `line` against `re`; on a match, fills `group` with the named
/// group `name` when the pattern has it (else the whole line).
bool match(const re2::RE2& re, const std::string& line, const char* name = nullptr,
           std::string* group = nullptr) {
  const int n = re.NumberOfCapturingGroups();
  std::vector<std::string> values(static_cast<std::size_t>(n));
  std::vector<re2::RE2::Arg> args(static_cast<std::size_t>(n));
  std::vector<const re2::RE2::Arg*> argp(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    args[static_cast<std::size_t>(i)] = &values[static_cast<std::size_t>(i)];
    argp[static_cast<std::size_t>(i)] = &args[static_cast<std::size_t>(i)];
  }
  if (!re2::RE2::PartialMatchN(line, re, argp.data(), n)) return false;
  if (group) {
    const auto& groups = re.NamedCapturingGroups();
    auto it = name ? groups.find(name) : groups.end();
    *group = it != groups.end() ? values[static_cast<std::size_t>(it->second - 1)] : line;
  }
  return true;
}

std::chrono::milliseconds since(Steady::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Steady::now() - t);
}

std::string shorten(const std::string& line) {
  return line.size() > 120 ? line.substr(0, 117) + "..." : line;
}

}  // namespace

// What the fault proxy's thread and the delivering thread share.
struct ConsoleCommandLink::Shared {
  std::mutex mu;
  std::optional<CutReport> report;
  std::atomic<bool> fired{false};
  Steady::time_point started{};

  /// The first cut of a delivery: records where it fell, before the power
  /// goes (so whoever sees the power lost finds it), then cuts. Later calls
  /// do nothing. Safe from any thread.
  void cut(const std::weak_ptr<CuttablePower>& power, std::string detail, std::uint64_t bytes) {
    if (fired.exchange(true)) return;
    CutReport r;
    r.detail = detail;
    r.at = since(started);
    r.bytes = bytes;
    {
      std::lock_guard lock(mu);
      report = std::move(r);
    }
    if (auto p = power.lock()) p->cut(std::move(detail));
  }
};

bool ConsoleCommandLink::is_update_check(const std::string& method, const std::string& target) {
  std::string path = target.substr(0, target.find('?'));
  if (path == "/manifest.json") return method == "GET" || method == "HEAD";
  if (path.ends_with("/deployments/device/deployments/next")) return true;  // Mender's device API
  // hawkBit's DDI: GET /TENANT/controller/v1/ID, the controller base.
  std::vector<std::string> parts;
  for (std::size_t at = 1; at <= path.size();) {
    const auto end = std::min(path.find('/', at), path.size());
    parts.push_back(path.substr(at, end - at));
    at = end + 1;
  }
  return method == "GET" && path.size() > 1 && path[0] == '/' && parts.size() == 4 && parts[1] == "controller" &&
         parts[2] == "v1" && !parts[0].empty() && !parts[3].empty();
}

std::string ConsoleCommandLink::command_for(const std::string& text, const Publication& pub, std::size_t size) const {
  return device_->expand(text, {{"url", pub.url},
                                {"manifest_url", pub.manifest_url},
                                {"feed_url", device_->expand(cfg_.base_url) + "/manifest.json"},
                                {"path", pub.path},
                                {"size", std::to_string(size)},
                                {"sha256", pub.sha256}});
}

void ConsoleCommandLink::start_checks(std::span<const std::uint8_t> running) {
  if (!power_->is_on()) throw BenchError(fmt::format("{}: start the device's checks: it is off", device_->board_name()));
  if (auto exit = power_->device_exit())
    throw BenchError(fmt::format("{}: start the device's checks: its program has exited ({})", device_->board_name(),
                                 *exit));
  if (cfg_.check_command.empty())
    throw BenchError(fmt::format("{}: the link has no check command", device_->board_name()));
  // Nothing new: the feed names the image the device runs, and no
  // deployment is offered.
  ++deliveries_;
  if (auto* api = device_->device_api()) api->withdraw();
  const auto pub = publish_files(running);
  next_description_.reset();
  console_->write(command_for(cfg_.check_command, pub, running.size()));
}

void ConsoleCommandLink::found_by_check_next(std::chrono::milliseconds check_within, std::chrono::milliseconds timeout) {
  next_found_ = FoundByCheck{check_within, timeout};
}

std::vector<std::string> ConsoleCommandLink::take_requests() {
  std::vector<std::string> out;
  auto* server = device_->server();
  if (!server) return out;
  for (const auto& r : server->request_log()) {
    if (r.seq <= requests_taken_) continue;
    requests_taken_ = r.seq;
    auto j = net::to_json(r);
    j["check"] = r.status != 0 && is_update_check(r.method, r.target);
    out.push_back(j.dump());
  }
  return out;
}

bool LinkConfig::names_a_manifest() const {
  return command.find("${feed_url}") != std::string::npos || command.find("${manifest_url}") != std::string::npos;
}

LinkConfig LinkConfig::from_config(const Config& link) {
  link.only_keys({"driver", "command", "accepted", "refused", "settled", "progress", "base_url", "timeout",
                  "settle_timeout", "serve", "feed_connections", "check_command"});
  LinkConfig cfg;
  cfg.command = link.string_or("command", cfg.command);
  if (cfg.command.empty()) link.at("command").fail("the update command is empty");
  // Checked here so a bad pattern names its line; compiled again by the link.
  compile(link, "accepted", true);
  compile(link, "refused", true);
  compile(link, "settled", false);
  if (auto p = compile(link, "progress", false); p && !p->NamedCapturingGroups().count("bytes"))
    link.at("progress").fail("the progress pattern needs a named group (?P<bytes>\\d+)");
  cfg.accepted = link.at("accepted").as_string();
  cfg.refused = link.at("refused").as_string();
  cfg.settled = link.string_or("settled", "");
  cfg.progress = link.string_or("progress", "");
  cfg.base_url = link.string_or("base_url", cfg.base_url);
  cfg.timeout = link.duration_or("timeout", cfg.timeout);
  cfg.settle_timeout = link.duration_or("settle_timeout", cfg.settle_timeout);
  cfg.check_command = link.string_or("check_command", "");
  if (link.has("check_command") && cfg.check_command.empty())
    link.at("check_command").fail("the check command is empty (leave the key out when the device has none)");
  if (link.has("feed_connections")) {
    const auto n = link.at("feed_connections").as_int();
    if (n < 0 || n > 16) link.at("feed_connections").fail("must be 0..16");
    cfg.feed_connections = static_cast<unsigned>(n);
  }
  if (cfg.timeout.count() <= 0) link.at("timeout").fail("must be positive");
  const auto serve = link.string_or("serve", "http");
  if (serve == "http")
    cfg.serve = Serve::http;
  else if (serve == "file")
    cfg.serve = Serve::file;
  else
    link.at("serve").fail(fmt::format("serve must be http or file, not '{}'", serve));
  if (cfg.serve == Serve::file && cfg.names_a_manifest())
    link.at("command").fail("${feed_url} and ${manifest_url} name the update server's manifests; they need `serve: http`");
  if (cfg.serve == Serve::file && !cfg.check_command.empty())
    link.at("check_command").fail("a device checks the rig's update server by itself only with `serve: http`");
  return cfg;
}

ConsoleCommandLink::ConsoleCommandLink(std::shared_ptr<DeviceHost> device,
                                       std::shared_ptr<CuttablePower> power,
                                       std::shared_ptr<WatchedConsole> console, LinkConfig config)
    : device_(std::move(device)),
      power_(std::move(power)),
      console_(std::move(console)),
      cfg_(std::move(config)),
      accepted_(compile(cfg_.accepted, "link.accepted")),
      refused_(compile(cfg_.refused, "link.refused")),
      settled_(compile(cfg_.settled, "link.settled")),
      progress_(compile(cfg_.progress, "link.progress")),
      shared_(std::make_shared<Shared>()) {
  if (cfg_.serve == LinkConfig::Serve::http && !device_->server())
    throw InputError(
        fmt::format("{}: the console-command link serves over HTTP, but the device has no update "
                    "server (device.network.server: false); use `serve: file`",
                    device_->board_name()));
}

ConsoleCommandLink::~ConsoleCommandLink() {
  if (auto* proxy = device_->proxy()) proxy->clear_watches();
}

void ConsoleCommandLink::arm(const ProcessCut& cut) {
  cut_re_ = cut.trigger == ProcessCut::Trigger::console ? compile(cut.pattern, "console cut") : nullptr;
  if (cut.trigger == ProcessCut::Trigger::console && !cut_re_)
    throw InputError("console cut: the pattern is empty");
  cut_ = cut;
  std::lock_guard lock(shared_->mu);
  shared_->report.reset();
}

void ConsoleCommandLink::disarm() {
  cut_ = ProcessCut{};
  cut_re_.reset();
}

std::optional<CutReport> ConsoleCommandLink::fired() const {
  std::lock_guard lock(shared_->mu);
  return shared_->report;
}

void ConsoleCommandLink::set_network_faults(const std::string& spec, std::uint64_t seed) {
  auto* proxy = device_->proxy();
  if (!proxy)
    throw BenchError(fmt::format("{}: network faults need the fault proxy (device.network.proxy: true)",
                                 device_->board_name()));
  const auto parsed = net::parse_fault_spec(spec, "network faults");
  if (auto* server = device_->server()) {
    // `server:` rules are the update server's own: an endless body for the
    // images this link publishes (publish(): /deliveries/N/image.bin).
    server->clear_endless();
    server->clear_wrong_ranges();
    for (const auto& rule : parsed.server_rules().rules) {
      if (const auto* endless = std::get_if<net::Endless>(&rule.fault))
        server->set_endless("/deliveries/*/image.bin", {endless->limit, seed});
      // Every range of what a delivery publishes: the image, and the files
      // beside it (a delta package's chunks, /deltas/NAME).
      if (std::holds_alternative<net::WrongRanges>(rule.fault)) {
        server->set_wrong_ranges("/deliveries/*/image.bin");
        server->set_wrong_ranges("/deltas/*");
      }
    }
  }
  auto rules = parsed.proxy_rules();
  if (follows_feed() && cfg_.feed_connections > 0) {
    // conn=N counts the image download's connections; the manifest's come first.
    const auto n = cfg_.feed_connections;
    for (auto& rule : rules.rules) {
      if (rule.first_connection != 0) {
        rule.first_connection += n;
        rule.last_connection += n;
      }
      if (auto* replay = std::get_if<net::Replay>(&rule.fault)) replay->from += n;
    }
  }
  proxy->set_faults(rules, seed);
}

void ConsoleCommandLink::begin_network_trial() {
  set_network_faults("", 0);
  if (auto* proxy = device_->proxy()) proxy->new_schedule();
}

std::vector<std::string> ConsoleCommandLink::take_network_events() {
  std::vector<std::string> out;
  if (auto* proxy = device_->proxy())
    for (const auto& e : proxy->take_events()) out.push_back(net::to_json(e).dump());
  auto* server = device_->server();
  if (!server || published_path_.empty()) return out;
  // The update server's ranges answered wrongly (a `server:wrong-ranges`
  // fault), each request with its ranges.
  for (const auto& r : server->request_log()) {
    if (r.seq <= wrong_ranges_seen_ || r.note.find("wrong ranges") == std::string::npos) continue;
    wrong_ranges_seen_ = r.seq;
    auto j = net::to_json(r);
    j["source"] = "server";
    j["kind"] = "wrong-ranges";
    out.push_back(j.dump());
  }
  // The update server's endless bodies for the last delivery, with the body
  // bytes it sent before the device let go. A device that stopped at the
  // declared size has closed by now; give the server a moment to see it.
  auto endless = [this](const net::RequestRecord& r) {
    return r.target == published_path_ && r.note.rfind("endless body:", 0) == 0;
  };
  auto in_progress = [&] {
    std::vector<net::RequestRecord> v;
    for (const auto& r : server->responses_in_progress())
      if (endless(r)) v.push_back(r);
    return v;
  };
  const auto deadline = Steady::now() + std::chrono::seconds(2);
  while (!in_progress().empty() && Steady::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  auto line = [](const net::RequestRecord& r, bool open) {
    auto j = net::to_json(r);
    j["source"] = "server";
    j["kind"] = "endless-body";
    j["in_progress"] = open;
    return j.dump();
  };
  for (const auto& r : server->request_log())
    if (endless(r)) out.push_back(line(r, false));
  for (const auto& r : in_progress()) out.push_back(line(r, true));
  return out;
}

void ConsoleCommandLink::watch_plaintext(
    const std::vector<std::pair<std::string, std::vector<std::uint8_t>>>& watched) {
  auto* proxy = device_->proxy();
  if (!proxy) return;
  std::vector<net::WatchedBytes> list;
  for (const auto& [name, bytes] : watched) list.push_back({name, bytes});
  proxy->watch_plaintext(std::move(list));
}

std::optional<PlaintextWatchReport> ConsoleCommandLink::take_plaintext_watch() {
  auto* proxy = device_->proxy();
  if (!proxy) return std::nullopt;
  const auto scan = proxy->take_plaintext_scan();
  PlaintextWatchReport r;
  for (const auto& s : scan.sightings)
    r.sightings.push_back(fmt::format("{} at byte {} of connection {}", s.name, s.offset, s.connection));
  r.scanned = scan.scanned;
  r.opaque = scan.opaque;
  r.bytes = scan.bytes;
  return r;
}

std::string ConsoleCommandLink::tls_mode() const {
  switch (device_->config().tls) {
    case DeviceConfig::Tls::off: return "off";
    case DeviceConfig::Tls::tls: return "tls";
    case DeviceConfig::Tls::mutual: return "mutual";
  }
  return "off";
}

ProbeResult ConsoleCommandLink::probe_without_client_certificate() {
  if (!device_->server()) throw BenchError(fmt::format("{}: the device has no update server", device_->board_name()));
  const std::string path = published_path_.empty() ? "/" : published_path_;
  const bool tls = device_->config().tls != DeviceConfig::Tls::off;
  try {
    return probe_http(device_->connect_address(), device_->update_port(), path,
                      tls ? std::optional(device_->ca_file()) : std::nullopt, std::chrono::seconds(5));
  } catch (const std::runtime_error& e) {
    throw BenchError(fmt::format("{}: probing the update server: {}", device_->board_name(), e.what()));
  }
}

ProbeResult ConsoleCommandLink::probe_with_client_certificate(const std::string& name) {
  if (!device_->server()) throw BenchError(fmt::format("{}: the device has no update server", device_->board_name()));
  const auto certificate = device_->test_client_certificate(name);
  if (!certificate || device_->config().tls != DeviceConfig::Tls::mutual)
    throw BenchError(fmt::format("{}: the rig has no '{}' client certificate for this board (mutual TLS with the "
                                 "rig's own certificates)",
                                 device_->board_name(), name));
  const std::string path = published_path_.empty() ? "/" : published_path_;
  try {
    return probe_http(device_->connect_address(), device_->update_port(), path, device_->ca_file(),
                      std::chrono::seconds(5), certificate);
  } catch (const std::runtime_error& e) {
    throw BenchError(fmt::format("{}: probing the update server: {}", device_->board_name(), e.what()));
  }
}

void ConsoleCommandLink::use_client_certificate(const std::string& name) { device_->use_client_certificate(name); }

std::string ConsoleCommandLink::certificate_issuer_pem(const std::string& name) const {
  return device_->certificate_issuer_pem(name);
}

// The deployment the device's management client finds at its next poll: the
// delivery's URL (through the fault proxy, so network faults apply), named
// as the release it stands for (Mender compares the name with the
// artifact's and with the running one's).
void ConsoleCommandLink::publish_deployment(const Publication& pub, std::span<const std::uint8_t> image) {
  auto* api = device_->device_api();
  if (!api) return;
  // The name the artifact's header-info states ("artifact_name":"..."; the
  // rig's artifacts are uncompressed), else the release it stands for.
  std::string name;
  const std::string_view bytes(reinterpret_cast<const char*>(image.data()), image.size());
  constexpr std::string_view key = "\"artifact_name\":\"";
  if (auto at = bytes.find(key); at != std::string_view::npos) {
    const auto end = bytes.find('"', at + key.size());
    if (end != std::string_view::npos && end - at - key.size() <= 256) name = bytes.substr(at + key.size(), end - at - key.size());
  }
  // A .swu's sw-description (uncompressed, first in the archive) names its
  // version as `version = "1.1.0.2";`.
  constexpr std::string_view swu_key = "version = \"";
  if (name.empty() && bytes.rfind("070701", 0) == 0) {
    if (auto at = bytes.substr(0, 65536).find(swu_key); at != std::string_view::npos) {
      const auto end = bytes.find('"', at + swu_key.size());
      if (end != std::string_view::npos && end - at - swu_key.size() <= 64)
        name = "otarig-" + std::string(bytes.substr(at + swu_key.size(), end - at - swu_key.size()));
    }
  }
  if (name.empty() && next_description_) {
    name = "otarig-" + next_description_->version;
    std::replace(name.begin(), name.end(), '+', '.');
  }
  std::string version;
  if (name.rfind("otarig-", 0) == 0) version = name.substr(7);
  deployment_ = api->offer(net::DeploymentOffer{deliveries_, name.empty() ? "otarig-unknown" : name, version,
                                                {device_->config().device_type}, pub.url, image});
}

std::string ConsoleCommandLink::final_status(const std::string& deployment) const {
  auto* api = device_->device_api();
  if (!api) return {};
  return api->final_status(deployment).value_or("");
}

std::vector<std::string> ConsoleCommandLink::statuses(const std::string& deployment) const {
  auto* api = device_->device_api();
  return api ? api->statuses(deployment) : std::vector<std::string>{};
}

std::vector<std::string> ConsoleCommandLink::take_device_records() {
  std::vector<std::string> out;
  if (auto* api = device_->device_api())
    for (const auto& r : api->take_records()) out.push_back(r.dump());
  return out;
}

ConsoleCommandLink::Publication ConsoleCommandLink::publish(std::span<const std::uint8_t> image) {
  auto pub = publish_files(image);
  if (cfg_.serve == LinkConfig::Serve::http) publish_deployment(pub, image);
  next_description_.reset();
  return pub;
}

ConsoleCommandLink::Publication ConsoleCommandLink::publish_files(std::span<const std::uint8_t> image) {
  Publication pub;
  pub.sha256 = crypto::hex(crypto::sha256(image));
  auto* server = device_->server();
  if (server) {
    if (!published_path_.empty()) server->remove(published_path_);
    if (!published_manifest_.empty()) server->remove(published_manifest_);
    for (const auto& path : published_files_) server->remove(path);
    published_path_.clear();
    published_manifest_.clear();
    published_files_.clear();
    // The files the device fetches besides the image (a delta package's
    // chunks), at the paths the package names.
    for (auto& f : std::exchange(next_files_, {})) {
      published_files_.push_back(f.path);
      server->put(f.path, std::move(f.bytes));
    }
  }
  if (cfg_.serve == LinkConfig::Serve::file) {
    auto dir = device_->storage() / "updates";
    std::filesystem::create_directories(dir);
    // One file at a time: the previous delivery's file goes.
    for (const auto& entry : std::filesystem::directory_iterator(dir)) std::filesystem::remove(entry.path());
    auto file = dir / fmt::format("image-{}.bin", deliveries_);
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(image.data()), static_cast<std::streamsize>(image.size()));
    out.close();
    if (!out) throw BenchError(fmt::format("{}: cannot write {}", device_->board_name(), file.string()));
    pub.path = file.string();
    pub.url = "file:" + file.string();
    return pub;
  }
  const auto base = device_->expand(cfg_.base_url);
  const auto description = next_description_;
  const auto claim = std::exchange(next_claim_, std::nullopt);
  if (auto release = std::exchange(next_as_release_, std::nullopt)) {
    // A frozen or replaying mirror: the image as a release of the
    // repository, and the feed answers with that release's manifest.
    auto parsed = image::parse(image, "delivered image");
    auto m = server->add_release(net::Release{*release, parsed.header.version.str(), parsed.header.security_counter,
                                              std::vector<std::uint8_t>(image.begin(), image.end())});
    server->set_latest(*release);
    pub.path = m.url;
    pub.url = base + pub.path;
    pub.manifest_url = base + "/manifests/" + *release + ".json";
    return pub;
  }
  const auto dir = fmt::format("/deliveries/{}", deliveries_);
  pub.path = dir + "/image.bin";
  server->put(pub.path, std::vector<std::uint8_t>(image.begin(), image.end()));
  published_path_ = pub.path;
  pub.url = base + pub.path;
  // The delivery's manifest, made the feed's latest. What the image's header
  // says, or else what the release it stands for says; an image nobody
  // describes has none, and the feed answers 404.
  std::optional<net::Manifest> m;
  const auto name = fmt::format("delivery-{}", deliveries_);
  try {
    auto parsed = image::parse(image, "delivered image");
    m = net::make_manifest(name, parsed.header.version.str(), parsed.header.security_counter, image, pub.path);
  } catch (const InputError&) {
    try {
      if (description)
        m = net::make_manifest(name, description->version, description->security_counter, image, pub.path);
    } catch (const InputError&) {
    }
  }
  if (m && claim) {
    // A lying mirror: the manifest states what the claim says in place of
    // what the image is.
    if (claim->version) m->version = *claim->version;
    if (claim->security_counter) m->security_counter = *claim->security_counter;
    if (claim->size) m->size = *claim->size;
    if (claim->sha256) m->sha256 = *claim->sha256;
  }
  if (m) {
    published_manifest_ = "/manifests/" + name + ".json";
    auto text = net::to_json_text(*m);
    server->put(published_manifest_, std::vector<std::uint8_t>(text.begin(), text.end()));
    server->set_latest(name);
    pub.manifest_url = base + published_manifest_;
  } else {
    published_manifest_.clear();
    server->clear_latest();
  }
  return pub;
}

std::string ConsoleCommandLink::files_url() const {
  if (cfg_.serve != LinkConfig::Serve::http || !device_->server()) return {};
  return device_->expand(cfg_.base_url);
}

bool ConsoleCommandLink::publish_beside(std::vector<PublishedFile> files) {
  if (files.empty()) return true;
  if (files_url().empty()) return false;
  for (const auto& f : files)
    if (f.path.empty() || f.path[0] != '/' || f.path.find("..") != std::string::npos)
      throw BenchError(fmt::format("{}: cannot publish a file at '{}'", device_->board_name(), f.path));
  next_files_ = std::move(files);
  return true;
}

bool ConsoleCommandLink::follows_feed() const {
  return cfg_.serve == LinkConfig::Serve::http && cfg_.names_a_manifest();
}

void ConsoleCommandLink::describe_next(const std::string& version, std::uint32_t security_counter) {
  next_description_ = Description{version, security_counter};
}

void ConsoleCommandLink::claim_next(const ManifestClaim& claim) {
  if (!follows_feed())
    throw InputError(fmt::format("{}: the update command does not read the feed (${{feed_url}} or ${{manifest_url}})",
                                 device_->board_name()));
  next_claim_ = claim;
}

void ConsoleCommandLink::serve_as_release(const std::string& name) {
  if (!net::valid_release_name(name))
    throw InputError(fmt::format("{}: release name '{}': use [A-Za-z0-9._-]", device_->board_name(), name));
  if (!follows_feed())
    throw InputError(fmt::format("{}: the update command does not read the feed (${{feed_url}} or ${{manifest_url}})",
                                 device_->board_name()));
  next_as_release_ = name;
}

std::uint64_t ConsoleCommandLink::served_bytes(const std::string& path) const {
  std::uint64_t bytes = 0;
  if (auto* server = device_->server())
    for (const auto& r : server->request_log())
      if (r.target == path && r.method == "GET") bytes += r.bytes - r.endless;  // the image's own bytes
  return bytes;
}

// The length of the response header the server sends for `path`, measured
// with a HEAD request (same header fields as GET, no body) straight to the
// server, so a cut at image byte b can watch stream offset header + b.
std::uint64_t ConsoleCommandLink::response_header_size(const std::string& path) const {
  try {
    return http_response_header_size("127.0.0.1", device_->server()->port(), path, std::chrono::seconds(5));
  } catch (const std::runtime_error& e) {
    throw BenchError(fmt::format("{}: measuring the response header: {}", device_->board_name(), e.what()));
  }
}

// Clears the server's and the proxy's hooks when the delivery ends.
struct ConsoleCommandLink::CutWatch {
  net::FaultProxy* proxy = nullptr;
  net::UpdateServer* server = nullptr;
  CutWatch() = default;
  CutWatch(const CutWatch&) = delete;
  CutWatch& operator=(const CutWatch&) = delete;
  ~CutWatch() {
    if (proxy) proxy->clear_watches();
    if (server) server->clear_body_hooks();
  }
};

// A cut at image byte b: the rig's update server holds the response before
// byte b (on_body_byte) whatever the connection carries (keep-alive, TLS);
// without it, the proxy watches the download stream. Either callback runs
// before any later byte reaches the device, and switches power off.
bool ConsoleCommandLink::arm_download_cut(const Publication& pub, CutWatch& watch) {
  auto* proxy = device_->proxy();
  auto* server = device_->server();
  if (cfg_.serve == LinkConfig::Serve::http && server) {
    std::weak_ptr weak_power = power_;
    auto shared = shared_;
    const std::uint64_t b = cut_.byte;
    server->clear_body_hooks();
    server->on_body_byte(pub.path, b, [weak_power, shared, b](const net::BodyByte& at) {
      shared->cut(weak_power,
                  fmt::format("power cut at byte {} of the image: the update server had sent every byte before "
                              "it and none from it ({} {}{}, connection {}{})",
                              b, at.method, at.target, at.range.empty() ? "" : ", Range " + at.range,
                              at.connection, at.tls ? ", over TLS" : ""),
                  b);
    });
    watch.server = server;
  } else if (cfg_.serve == LinkConfig::Serve::http && proxy) {
    const bool tls = device_->config().tls != DeviceConfig::Tls::off;
    const std::uint64_t header = tls ? 0 : response_header_size(pub.path);
    const std::uint64_t offset = header + cut_.byte;
    const std::uint64_t b = cut_.byte;
    std::weak_ptr<CuttablePower> weak_power = power_;
    auto shared = shared_;
    proxy->clear_watches();
    proxy->on_bytes(0, net::Direction::down, offset,
                    [weak_power, shared, b, header, tls](const net::BytesPassed& passed) {
                      shared->cut(weak_power,
                                  tls ? fmt::format("power cut at byte {} of the TLS stream (connection {})", b,
                                                    passed.connection)
                                      : fmt::format("power cut at byte {} of the download (connection {}, "
                                                    "after the {}-byte response header)",
                                                    b, passed.connection, header),
                                  b);
                    });
    watch.proxy = proxy;
  } else if (progress_) {
    return true;
  } else {
    throw BenchError(
        fmt::format("{}: cannot cut at a download byte: it needs the update server behind the "
                    "fault proxy, or a `progress` pattern on the link",
                    device_->board_name()));
  }
  return false;
}

DeliveryResult ConsoleCommandLink::deliver(std::span<const std::uint8_t> image) {
  // found_by_check_next() applies to this delivery, whatever becomes of it.
  const auto found = std::exchange(next_found_, std::nullopt);
  if (!power_->is_on()) return {DeliveryStatus::unreachable, "device is off", 0};
  if (auto exit = power_->device_exit())
    return {DeliveryStatus::unreachable, fmt::format("the device process has exited ({})", *exit), 0};
  ++deliveries_;
  const auto pub = publish(image);
  // A deployment lasts as long as its delivery: the device that resumes
  // after a power cut finishes (or reports) what it had started, and is not
  // handed the deployment again; the next delivery is a deployment of its own.
  struct Withdraw {
    net::DeviceManagementApi* api;
    ~Withdraw() {
      if (api) api->withdraw();
    }
  } withdraw{device_->device_api()};
  const auto cuts_before = power_->cuts();
  const auto ons_before = power_->power_ons();
  {
    std::lock_guard lock(shared_->mu);
    shared_->report.reset();
    shared_->fired = false;
  }

  // Only lines printed after the command count; what came before stays
  // readable for the harness.
  console_->peek(std::chrono::milliseconds(0));
  std::string partial;

  const auto started = Steady::now();
  shared_->started = started;
  std::optional<Steady::time_point> cut_at;
  std::string cut_cause;
  std::uint64_t progress_bytes = 0;

  CutWatch watch;
  const bool cut_by_progress =
      cut_.trigger == ProcessCut::Trigger::download_byte && arm_download_cut(pub, watch);
  if (cut_.trigger == ProcessCut::Trigger::time) {
    cut_at = started + cut_.delay;
    cut_cause = fmt::format("power cut {} ms after the update command", cut_.delay.count());
  }

  // A delivery the device is to find by its own check: nothing is typed, and
  // it must have checked the server within `check_within`.
  auto* server = device_->server();
  std::uint64_t seq_before = 0;
  if (found && server)
    for (const auto& r : server->request_log()) seq_before = std::max(seq_before, r.seq);
  auto checked = [&] {
    if (!server) return true;
    for (const auto& r : server->request_log())
      if (r.seq > seq_before && r.status != 0 && is_update_check(r.method, r.target)) return true;
    return false;
  };
  if (!found) console_->write(command_for(cfg_.command, pub, image.size()));

  enum class Phase { waiting, settling } phase = Phase::waiting;
  auto deadline = started + (found ? found->timeout : cfg_.timeout);
  // found: when the device's first check must have reached the server.
  bool check_pending = found.has_value();
  const Steady::time_point check_deadline = started + (found ? found->check_within : std::chrono::milliseconds(0));
  DeliveryResult result;

  auto bytes_now = [&] {
    std::uint64_t b = std::max(progress_bytes, served_bytes(pub.path));
    if (auto r = fired(); r && cut_.trigger == ProcessCut::Trigger::download_byte) b = r->bytes;
    return b;
  };
  auto power_lost = [&] {
    return power_->cuts() != cuts_before || power_->power_ons() != ons_before || !power_->is_on();
  };
  auto cut_now = [&](std::string detail) {
    if (shared_->fired) return;
    shared_->cut(power_, std::move(detail), cut_by_progress ? progress_bytes : served_bytes(pub.path));
  };
  // A cut whose moment is known and has not come yet (time, or a console line seen).
  auto cut_pending = [&] { return cut_at.has_value() && !shared_->fired; };
  auto lost_result = [&] {
    DeliveryResult r{DeliveryStatus::power_lost, {}, bytes_now()};
    if (auto rep = fired())
      r.detail = rep->detail;
    else
      r.detail = fmt::format("power went off during the delivery ({})",
                             power_->last_cut().empty() ? "switched off" : power_->last_cut());
    if (phase == Phase::settling) r.detail += " (after the updater accepted the image)";
    return r;
  };

  while (true) {
    if (power_lost()) return lost_result();
    const auto now = Steady::now();
    if (cut_at && now >= *cut_at) {
      cut_now(cut_cause);
      return lost_result();
    }
    if (now >= deadline) {
      if (phase == Phase::settling) return result;
      if (found)
        return {DeliveryStatus::unreachable,
                fmt::format("the device did not take the published release by its own checks within {} ms",
                            found->timeout.count()),
                bytes_now()};
      return {DeliveryStatus::unreachable,
              fmt::format("no answer to the update command within {} ms", cfg_.timeout.count()), bytes_now()};
    }
    if (check_pending && phase == Phase::waiting && now >= check_deadline) {
      if (!checked())
        return {DeliveryStatus::unreachable,
                fmt::format("none of the device's checks for a new release reached the update server within {} ms "
                            "of the release's publication",
                            found->check_within.count()),
                bytes_now()};
      check_pending = false;
    }
    auto wake = cut_at ? std::min(deadline, *cut_at) : deadline;
    if (check_pending) wake = std::min(wake, check_deadline);
    auto wait =
        std::chrono::duration_cast<std::chrono::milliseconds>(wake - now) + std::chrono::milliseconds(1);
    auto bytes = console_->peek(std::min(wait, std::chrono::milliseconds(100)));
    partial += bytes;
    std::size_t nl;
    while ((nl = partial.find('\n')) != std::string::npos) {
      std::string line = partial.substr(0, nl);
      partial.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (cut_re_ && !cut_at && !shared_->fired && match(*cut_re_, line)) {
        cut_at = Steady::now() + cut_.delay;
        cut_cause = fmt::format("power cut {} ms after console line '{}'", cut_.delay.count(), shorten(line));
      }
      if (cut_at && Steady::now() >= *cut_at) {
        // Due now: the lines after this one do not count (the device printed
        // them before the rig could react, and the cut falls on what follows).
        cut_now(cut_cause);
        return lost_result();
      }
      std::string value;
      if (progress_ && match(*progress_, line, "bytes", &value)) {
        try {
          progress_bytes = std::max<std::uint64_t>(progress_bytes, std::stoull(value));
        } catch (const std::exception&) {
        }
        if (cut_by_progress && progress_bytes >= cut_.byte && !shared_->fired) {
          cut_now(fmt::format("power cut when the device reported {} bytes received (armed at byte {})",
                              progress_bytes, cut_.byte));
          return lost_result();
        }
      }
      if (phase == Phase::waiting) {
        if (match(*accepted_, line)) {
          result = {DeliveryStatus::accepted, line, std::max<std::uint64_t>(bytes_now(), image.size())};
          if (!settled_) break;
          phase = Phase::settling;
          deadline = Steady::now() + cfg_.settle_timeout;
        } else if (match(*refused_, line, "reason", &value)) {
          return {DeliveryStatus::refused, value, bytes_now()};
        }
      } else if (settled_ && match(*settled_, line) && !cut_pending()) {
        return result;
      }
    }
    if (phase == Phase::waiting && result.status == DeliveryStatus::accepted) {
      // Accepted, and no `settled` pattern to wait for: the delivery ends
      // here, unless a cut is due (a time, or a console line already seen):
      // that one still falls, on whatever the device is doing by then.
      if (!cut_pending()) return result;
      phase = Phase::settling;
      deadline = Steady::now() + cfg_.settle_timeout;
    }
    if (power_lost()) return lost_result();
    if (bytes.empty() && console_->at_eof()) {
      const auto why = power_->device_exit().value_or("console closed");
      if (phase == Phase::settling) {
        result.detail += fmt::format(" (then the device process exited: {})", why);
        return result;
      }
      return {DeliveryStatus::unreachable,
              fmt::format("the device process exited during the update ({})", why), bytes_now()};
    }
  }
}

}  // namespace otarig::drivers::process
