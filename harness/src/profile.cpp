#include "otarig/harness/profile.hpp"

#include <dlfcn.h>
#include <fmt/format.h>
#include <re2/re2.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "otarig/core/crypto.hpp"
#include "otarig/core/encryption.hpp"
#include "otarig/core/read_file.hpp"

#ifndef OTARIG_SOURCE_DIR
#define OTARIG_SOURCE_DIR ""
#endif
#ifndef OTARIG_INSTALL_DATADIR
#define OTARIG_INSTALL_DATADIR ""
#endif

namespace otarig::harness {
namespace {

void check_pattern(const Config& c, const std::string& pattern, std::initializer_list<const char*> required_groups) {
  re2::RE2 re(pattern, re2::RE2::Quiet);
  if (!re.ok()) c.fail(fmt::format("invalid RE2 pattern: {}", re.error()));
  const auto& groups = re.NamedCapturingGroups();
  for (const char* g : required_groups)
    if (!groups.count(g)) c.fail(fmt::format("the pattern needs a named group (?P<{}>...)", g));
}

std::string file_sha256(const std::filesystem::path& p) {
  return crypto::hex(crypto::sha256(read_regular_file(p, kMaxDocumentBytes, "board profile")));
}

void check_key_ref(const Config& c, const std::string& ref) {
  if (ref.rfind("test:", 0) == 0) {
    if (ref.size() == 5) c.fail("a test key needs a label, e.g. test:my-board");
    return;
  }
  auto p = std::filesystem::path(ref);
  if (p.is_relative()) p = c.directory() / p;
  if (!std::filesystem::exists(p)) c.fail(fmt::format("key file '{}' does not exist", p.string()));
}

}  // namespace

bool is_plain_name(std::string_view name) {
  if (name.empty() || name.size() > 64 || name.front() == '.') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

void check_plain_name(const Config& c, std::string_view name, std::string_view what) {
  if (!is_plain_name(name))
    c.fail(fmt::format("{} '{}' becomes a file name: use 1-64 of [A-Za-z0-9._-], not starting with '.'", what,
                       name));
}

const ReleaseSpec* BoardProfile::release(const std::string& n) const {
  for (const auto& r : releases)
    if (r.name == n) return &r;
  return nullptr;
}

namespace {

// The data an installed copy carries beside its program: PREFIX/share/otarig
// for PREFIX/bin/otarig, and for the Python module
// PREFIX/lib/python3*/dist-packages/otarig/_otarig*.so. So a package
// installed under any prefix (or into another root) finds its own data.
std::optional<std::filesystem::path> installed_data_dir() {
  std::error_code ec;
  std::filesystem::path self;
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(&installed_data_dir), &info) != 0 && info.dli_fname &&
      std::filesystem::path(info.dli_fname).is_absolute())
    self = info.dli_fname;
  else
    self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (self.empty()) return std::nullopt;
  self = std::filesystem::weakly_canonical(self, ec);
  auto up = self.parent_path();
  for (int levels = 0; levels < 5 && !up.empty(); ++levels) {
    if (auto c = up / "share" / "otarig"; std::filesystem::is_directory(c / "boards", ec)) return c;
    if (up == up.root_path()) break;
    up = up.parent_path();
  }
  return std::nullopt;
}

}  // namespace

std::vector<std::filesystem::path> data_dirs() {
  std::vector<std::filesystem::path> dirs;
  if (const char* env = std::getenv("OTARIG_DATA_DIR"); env && *env) dirs.emplace_back(env);
  // An installed copy's own data first: a build-tree program has none beside it.
  if (auto own = installed_data_dir()) dirs.push_back(*own);
  // A build-tree binary reads its own source tree first; an installed one the share folder.
  if (std::string(OTARIG_SOURCE_DIR).size() && std::filesystem::is_directory(OTARIG_SOURCE_DIR "/boards"))
    dirs.emplace_back(OTARIG_SOURCE_DIR);
  if (std::string(OTARIG_INSTALL_DATADIR).size()) dirs.emplace_back(OTARIG_INSTALL_DATADIR);
  return dirs;
}

std::optional<std::filesystem::path> find_data_path(const std::filesystem::path& given) {
  std::error_code ec;
  if (given.empty()) return std::nullopt;
  if (std::filesystem::exists(given, ec)) return given;
  if (given.is_absolute()) return std::nullopt;
  for (const auto& d : data_dirs())
    if (auto c = d / given; std::filesystem::exists(c, ec)) return c;
  return std::nullopt;
}

std::filesystem::path resolve_board(const std::string& name_or_path) {
  std::filesystem::path p(name_or_path);
  if (auto found = find_data_path(p)) return *found;
  if (p.extension() != ".yaml" && p.parent_path().empty()) {
    for (const auto& d : data_dirs())
      if (auto c = d / "boards" / (name_or_path + ".yaml"); std::filesystem::exists(c)) return c;
  }
  throw InputError(fmt::format("{}: no such board profile (give a path, or a name from `otarig list boards`)",
                               name_or_path));
}

bool is_device_type_name(std::string_view name) {
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.';
  });
}

BoardProfile load_profile(const std::filesystem::path& file) {
  auto root = Config::load_file(file);
  if (!root.is_map()) root.fail("a board profile must be a map");
  root.only_keys({"name", "description", "device", "power", "console", "link", "probe", "observe", "signing",
                  "releases", "image_format", "tags", "package", "waivers", "clock", "delta",
                  "device_type", "encryption"});
  BoardProfile p{.path = file, .sha256 = file_sha256(file), .root = root};
  p.name = root.at("name").as_string();
  check_plain_name(root.at("name"), p.name, "the board name");
  p.description = root.string_or("description", "");
  auto device = root.at("device");
  p.device_kind = device.at("kind").as_string();
  if (auto pol = device.find("policy")) p.policy = parse_policy(*pol);
  if (auto clock = root.find("clock")) {
    if (!clock->is_map()) clock->fail("clock: a map with `console`, the command that sets the device's clock");
    clock->only_keys({"console"});
    p.clock_console = clock->at("console").as_string();
    p.clock_where = clock->at("console").where();
    if (p.clock_console.find("${epoch}") == std::string::npos && p.clock_console.find("${date}") == std::string::npos)
      clock->at("console").fail("the clock command needs ${epoch} (UNIX seconds) or ${date} (YYYY-MM-DD HH:MM:SS, UTC)");
  }
  p.image_format = root.string_or("image_format", "otarig");
  if (auto t = root.find("device_type")) {
    p.device_type = t->as_string();
    if (!is_device_type_name(p.device_type)) t->fail(fmt::format("device_type '{}': {}", p.device_type, kDeviceTypeRule));
  }
  if (p.image_format != "otarig")
    root.at("image_format").fail(fmt::format("unknown image format '{}' (known: otarig)", p.image_format));

  if (auto e = root.find("encryption")) {
    e->only_keys({"device_key", "aes_key", "plaintext_before_verify"});
    if (e->has("aes_key")) {
      // SWUpdate's symmetric key (-K): for a board whose updates are .swu packages.
      if (e->has("device_key")) e->at("device_key").fail("device_key and aes_key: name one key");
      auto pkg = root.find("package");
      if (!pkg || !pkg->has("format") || pkg->at("format").as_string() != "swu")
        e->at("aes_key").fail("aes_key: SWUpdate's key, for a board whose updates are .swu packages (package: "
                              "{format: swu})");
      p.encryption_aes_key = e->at("aes_key").as_string();
      if (p.encryption_aes_key.rfind("test:", 0) != 0) {
        std::filesystem::path kp(p.encryption_aes_key);
        if (kp.is_relative()) kp = e->directory() / kp;
        p.encryption_aes_key = kp.string();
      }
      try {
        (void)encryption::AesKey::load_ref(p.encryption_aes_key);
      } catch (const InputError& err) {
        e->at("aes_key").fail(fmt::format("aes_key: {}", err.what()));
      }
    }
  }
  if (auto pkg = root.find("package"); pkg && pkg->has("encrypt_images") && p.encryption_aes_key.empty())
    pkg->at("encrypt_images").fail("encrypt_images: the board holds no AES key (encryption.aes_key)");
  if (auto e = root.find("encryption"); e && !e->has("aes_key")) {
    p.encryption_key = e->at("device_key").as_string();
    if (p.encryption_key.rfind("test:", 0) != 0) {
      std::filesystem::path kp(p.encryption_key);
      if (kp.is_relative()) kp = e->directory() / kp;
      if (!std::filesystem::is_regular_file(kp))
        e->at("device_key").fail(fmt::format("device_key '{}': neither test:LABEL nor a PEM file", p.encryption_key));
      p.encryption_key = kp.string();
    }
    const auto mode = e->string_or("plaintext_before_verify", "forbidden");
    if (mode != "forbidden" && mode != "allowed")
      e->at("plaintext_before_verify").fail(fmt::format("'{}': expected forbidden or allowed", mode));
    p.plaintext_before_verify = mode == "allowed";
    if (root.has("package"))
      e->fail("encryption: a board that takes packages names SWUpdate's AES key (aes_key), not device_key");
  }
  if (auto e = root.find("encryption"); e && e->has("aes_key")) {
    const auto mode = e->string_or("plaintext_before_verify", "forbidden");
    if (mode != "forbidden" && mode != "allowed")
      e->at("plaintext_before_verify").fail(fmt::format("'{}': expected forbidden or allowed", mode));
    p.plaintext_before_verify = mode == "allowed";
  }

  auto obs = root.at("observe");
  obs.only_keys({"banner", "status_command", "status", "boot_timeout", "status_interval", "boot_attempt", "identity",
                 "slot_size", "slot_fill", "update_check_interval", "update_check_margin"});
  p.observe.banner = obs.string_or("banner", "");
  if (!p.observe.banner.empty()) check_pattern(obs.at("banner"), p.observe.banner, {});
  p.observe.boot_attempt = obs.string_or("boot_attempt", "");
  if (obs.has("boot_attempt")) {
    if (p.observe.boot_attempt.empty()) obs.at("boot_attempt").fail("the boot_attempt pattern is empty");
    check_pattern(obs.at("boot_attempt"), p.observe.boot_attempt, {});
  }
  p.observe.status_command = obs.string_or("status_command", "");
  p.observe.status = obs.at("status").as_string();
  if (auto id = obs.find("identity")) {
    const auto text = id->as_string();
    if (!parse_identity_kind(text, p.observe.identity.kind))
      id->fail(fmt::format("unknown identity '{}' (known: digest, payload-digest, slot-digest, version)", text));
  }
  const bool slot_digest = p.observe.identity.kind == IdentityKind::slot_digest;
  if (slot_digest) {
    p.observe.identity.slot_size = obs.at("slot_size").as_size();
    if (p.observe.identity.slot_size == 0 || p.observe.identity.slot_size > (std::uint64_t{1} << 30))
      obs.at("slot_size").fail("must be 1 byte .. 1 GiB");
    if (auto fill = obs.find("slot_fill")) {
      const auto v = fill->as_int();
      if (v < 0 || v > 255) fill->fail("must be a byte value, 0..255");
      p.observe.identity.slot_fill = static_cast<std::uint8_t>(v);
    }
  } else {
    for (const char* key : {"slot_size", "slot_fill"})
      if (auto k = obs.find(key)) k->fail(fmt::format("{} goes with `identity: slot-digest`", key));
  }
  // A status whose identity is the version needs no digest group.
  if (p.observe.identity.kind == IdentityKind::version)
    check_pattern(obs.at("status"), p.observe.status, {"slot", "version"});
  else
    check_pattern(obs.at("status"), p.observe.status, {"slot", "version", "digest"});
  p.observe.boot_timeout = obs.duration_or("boot_timeout", std::chrono::milliseconds(5000));
  p.observe.status_interval = obs.duration_or("status_interval", std::chrono::milliseconds(500));
  if (p.observe.boot_timeout.count() <= 0) obs.at("boot_timeout").fail("must be positive");
  // How often the device checks for a new release by itself (EN 303 645
  // 5.3-4/5.3-5), and the slack the host and network may add to it.
  constexpr std::chrono::milliseconds kDay{86400000};
  if (auto c = obs.find("update_check_interval")) {
    p.observe.update_check_interval = c->as_duration();
    if (p.observe.update_check_interval->count() <= 0 || *p.observe.update_check_interval > kDay)
      c->fail("update_check_interval: a duration from 1ms to one day (how often the device checks for a new "
              "release by itself)");
  }
  if (auto c = obs.find("update_check_margin")) {
    if (!p.observe.update_check_interval)
      c->fail("update_check_margin goes with update_check_interval (the interval it widens)");
    p.observe.update_check_margin = c->as_duration();
    if (p.observe.update_check_margin.count() < 0 || p.observe.update_check_margin > kDay)
      c->fail("update_check_margin: a duration from 0 to one day");
  }

  auto signing = root.at("signing");
  signing.only_keys({"key", "trusted", "not_before", "not_after", "time"});
  auto read_time = [&](const char* key) -> std::uint64_t {
    auto v = signing.find(key);
    if (!v) return 0;
    const auto text = v->as_string();
    const auto t = image::parse_utc(text);
    if (!t || *t == 0) v->fail(fmt::format("{}: '{}' is not a time (YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or @SECONDS, after 1970-01-01)", key, text));
    return *t;
  };
  p.key_not_before = read_time("not_before");
  p.key_not_after = read_time("not_after");
  p.signing_time = read_time("time");
  if (p.key_not_before && p.key_not_after && p.key_not_after <= p.key_not_before)
    signing.at("not_after").fail("not_after must be later than not_before");
  if (p.signing_time && !image::validity_failure({{}, p.key_not_before, p.key_not_after, false}, p.signing_time).empty())
    signing.at("time").fail(fmt::format("the signing time is outside the key's validity: the key is {}",
                                        image::validity_failure({{}, p.key_not_before, p.key_not_after, false}, p.signing_time)));
  p.signing_key = signing.at("key").as_string();
  check_key_ref(signing.at("key"), p.signing_key);
  if (auto t = signing.find("trusted")) {
    for (const auto& item : t->items()) {
      auto ref = item.as_string();
      check_key_ref(item, ref);
      p.trusted_keys.push_back(ref);
    }
  } else {
    p.trusted_keys.push_back(p.signing_key);
  }

  std::set<std::string> seen;
  for (auto& [name, rel] : root.at("releases").entries()) {
    check_plain_name(rel, name, "the release name");
    ReleaseSpec r;
    r.name = name;
    r.where = rel.where();
    if (rel.has("bundle")) {
      rel.only_keys({"bundle"});
      r.bundle = rel.at("bundle").as_string_list();
      if (r.bundle.size() < 1 || r.bundle.size() > image::kMaxImages)
        rel.at("bundle").fail(fmt::format("a bundle names 1..{} releases", image::kMaxImages));
      seen.insert(name);
      p.releases.push_back(std::move(r));
      continue;
    }
    rel.only_keys({"version", "security_counter", "payload_size", "file", "image", "needs", "derived_from"});
    if (auto i = rel.find("image")) {
      const auto v = i->as_uint();
      if (v >= image::kMaxImages) i->fail(fmt::format("image index {} is not 0..{}", v, image::kMaxImages - 1));
      r.image_index = static_cast<std::uint8_t>(v);
    }
    if (auto n = rel.find("needs")) {
      const auto text = n->as_string();
      const auto at = text.find(">=");
      std::uint64_t index = image::kMaxImages;
      if (at != std::string::npos && at > 0 && at <= 1 && text[0] >= '0' && text[0] <= '9') index = static_cast<std::uint64_t>(text[0] - '0');
      if (index >= image::kMaxImages)
        n->fail(fmt::format("needs '{}': expected INDEX>=VERSION, INDEX 0..{}", text, image::kMaxImages - 1));
      if (index == r.image_index) n->fail(fmt::format("needs '{}': an image cannot need itself", text));
      try {
        r.needs_version = image::Version::parse(text.substr(at + 2));
      } catch (const InputError& e) {
        n->fail(e.what());
      }
      r.needs_image = static_cast<std::uint8_t>(index + 1);
    }
    try {
      r.version = image::Version::parse(rel.at("version").as_string());
    } catch (const InputError& e) {
      rel.at("version").fail(e.what());
    }
    auto ctr = rel.at("security_counter").as_uint();
    if (ctr > UINT32_MAX) rel.at("security_counter").fail("must fit in 32 bits");
    r.security_counter = static_cast<std::uint32_t>(ctr);
    r.payload_size = rel.size_or("payload_size", 1048400);
    if (r.payload_size == 0 || r.payload_size > UINT32_MAX) rel.at("payload_size").fail("must be 1..4294967295");
    if (auto f = rel.find("file")) {
      auto fp = std::filesystem::path(f->as_string());
      if (fp.is_relative()) fp = f->directory() / fp;
      if (!std::filesystem::exists(fp)) f->fail(fmt::format("image file '{}' does not exist", fp.string()));
      if (!std::filesystem::is_regular_file(fp))
        f->fail(fmt::format("image file '{}' is not a regular file", fp.string()));
      r.file = fp;
    }
    if (auto from = rel.find("derived_from")) {
      r.derived_from = from->as_string();
      if (r.file) from->fail("derived_from goes with a generated release, not with `file:`");
      const auto* base = p.release(r.derived_from);
      if (!base)
        from->fail(fmt::format("'{}' is not a release defined above this one", r.derived_from));
      if (base->file)
        from->fail(fmt::format("'{}' is a prebuilt image; derive from a generated release",
                               r.derived_from));
    }
    seen.insert(name);
    p.releases.push_back(std::move(r));
  }
  if (p.releases.empty()) root.at("releases").fail("a profile needs at least one release");
  if (auto d = root.find("delta")) {
    if (!d->is_map()) d->fail("delta: a map (wrong_base: refuse | full-image)");
    d->only_keys({"wrong_base"});
    DeltaSettings ds;
    ds.where = d->where();
    const auto wb = d->at("wrong_base").as_string();
    if (wb == "refuse")
      ds.wrong_base = WrongBase::refuse;
    else if (wb == "full-image")
      ds.wrong_base = WrongBase::full_image;
    else
      d->at("wrong_base").fail(fmt::format("'{}' is neither refuse nor full-image", wb));
    p.delta = ds;
  }
  for (const auto& r : p.releases) {
    std::set<unsigned> indexes;
    for (const auto& part : r.bundle) {
      const auto* c = p.release(part);
      auto at = root.at("releases").at(r.name).at("bundle");
      if (!c) at.fail(fmt::format("bundle {}: no release named '{}'", r.name, part));
      if (!c->bundle.empty()) at.fail(fmt::format("bundle {}: '{}' is a bundle itself", r.name, part));
      if (!c->file && !indexes.insert(c->image_index).second)
        at.fail(fmt::format("bundle {}: two images of index {}", r.name, c->image_index));
      if (!c->file && c->image_index == 0 && &part != &r.bundle.front())
        at.fail(fmt::format("bundle {}: the application ('{}', image 0) comes first", r.name, part));
    }
  }
  if (auto ws = root.find("waivers")) {
    if (!ws->is_sequence()) ws->fail("waivers: a list of waivers (scenario, oracles, reason, expires)");
    std::set<std::string> ids;
    for (const auto& w : ws->items()) {
      if (!w.is_map()) w.fail("a waiver is a map (id, scenario, oracles, reason, expires)");
      w.only_keys({"id", "scenario", "oracles", "reason", "expires"});
      WaiverSpec spec;
      spec.id = w.string_or("id", fmt::format("W{}", p.waivers.size() + 1));
      check_plain_name(w.has("id") ? w.at("id") : w, spec.id, "the waiver id");
      if (!ids.insert(spec.id).second) w.fail(fmt::format("waiver '{}' is declared twice", spec.id));
      spec.scenario = w.string_or("scenario", "");
      spec.oracles = w.at("oracles").as_string_list();
      if (spec.oracles.empty()) w.at("oracles").fail("oracles: name the broken oracles the waiver accepts");
      for (const auto& o : spec.oracles)
        if (!is_plain_name(o)) w.at("oracles").fail(fmt::format("'{}' is not an oracle name", o));
      spec.reason = w.at("reason").as_string();
      if (spec.reason.empty()) w.at("reason").fail("reason: say why the defect is accepted (a ticket, a fix date)");
      spec.expires = w.at("expires").as_string();
      int y = 0, m = 0, d = 0;
      char tail = 0;
      static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
      if (spec.expires.size() != 10 || std::sscanf(spec.expires.c_str(), "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 ||
          spec.expires[4] != '-' || spec.expires[7] != '-' || y < 2000 || y > 9999 || m < 1 || m > 12 || d < 1 ||
          d > kDays[m - 1] || (m == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))))
        w.at("expires").fail(fmt::format("expires: '{}' is not a date (YYYY-MM-DD)", spec.expires));
      p.waivers.push_back(std::move(spec));
    }
  }
  return p;
}

}  // namespace otarig::harness
