#include "otarig/harness/cli.hpp"

#include <fmt/format.h>
#include <fcntl.h>
#include <poll.h>
#include <csignal>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <yaml-cpp/yaml.h>
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>

#include "otarig/harness/composition.hpp"
#include "otarig/core/delta.hpp"
#include "otarig/core/encryption.hpp"
#include "otarig/core/image.hpp"
#include "otarig/harness/bench.hpp"
#include "otarig/harness/campaign.hpp"
#include "otarig/harness/detection.hpp"
#include "otarig/harness/journal.hpp"
#include "otarig/harness/releases.hpp"
#include "otarig/core/unique_fd.hpp"
#include "otarig/core/numbers.hpp"
#include "otarig/core/read_file.hpp"
#include "otarig/reports/defects.hpp"
#include "otarig/reports/merge.hpp"
#include "otarig/reports/verify.hpp"
#include "otarig/reports/waivers.hpp"

namespace otarig::harness {
namespace {

// --jobs above this is surely a typo (each job is a bench with its own device).
constexpr std::uint64_t kMaxJobs = 256;
// The largest payload `image build` puts in an image: what the header's 32-bit
// payload_size can say and what the rig writes (kMaxImageBytes) both allow.
constexpr std::uint64_t kMaxPayload =
    std::min<std::uint64_t>(UINT32_MAX, kMaxImageBytes - image::kHeaderSize - image::kTrailerSize);

image::Bytes read_file(const std::string& path, std::string_view what) {
  const auto data = read_regular_file(path, kMaxImageBytes, what);
  return image::Bytes(data.begin(), data.end());
}

// Writes an output file (an image, a package): only a regular file, or a
// new one, is written; a path that cannot be is bad input naming why, and
// a write the file system refuses (full, I/O error) a bench failure.
void write_file(const std::string& path, std::span<const std::uint8_t> bytes) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    throw InputError(fmt::format("{}: exists and is not a regular file ({}); give a file to write", path,
                                 S_ISDIR(st.st_mode) ? "a folder" : S_ISFIFO(st.st_mode) ? "a FIFO"
                                 : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device" : "a special file"));
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644));
  if (!fd) throw InputError(fmt::format("{}: cannot write: {}", path, std::strerror(errno)));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw BenchError(fmt::format("{}: writing failed: {}", path, std::strerror(n < 0 ? errno : EIO)));
    done += static_cast<std::size_t>(n);
  }
  if (::close(fd.release()) != 0) throw BenchError(fmt::format("{}: writing failed: {}", path, std::strerror(errno)));
}

std::pair<unsigned, unsigned> parse_shard(const std::string& s) {
  auto slash = s.find('/');
  try {
    if (slash == std::string::npos) throw InputError(s);
    auto i = static_cast<unsigned>(parse_number(s.substr(0, slash), 0, UINT32_MAX - 1, "I"));
    auto n = static_cast<unsigned>(parse_number(s.substr(slash + 1), 1, UINT32_MAX, "N"));
    if (i >= n) throw InputError(s);
    return {i, n};
  } catch (const InputError&) {
    throw InputError(fmt::format("--shard {}: expected I/N with 0 <= I < N <= {}, e.g. 0/4", s, UINT32_MAX));
  }
}

class ProgressBar {
 public:
  explicit ProgressBar(bool enabled) : enabled_(enabled) {}
  void update(const Progress& p) {
    if (!enabled_) return;
    // Redraw at most ten times a second, and always for the last trial.
    auto now = std::chrono::steady_clock::now();
    if (p.done != p.total && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    const int width = 30;
    int filled = p.total ? static_cast<int>(width * p.done / p.total) : width;
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.resize(width, '.');
    std::cerr << fmt::format("\r[{}] {}/{} trials, {} finding{}, {:.0f}s left   ", bar, p.done, p.total, p.findings,
                             p.findings == 1 ? "" : "s", p.eta_s)
              << std::flush;
  }
  void finish() {
    if (enabled_) std::cerr << "\n";
  }

 private:
  bool enabled_;
  std::chrono::steady_clock::time_point last_{};
};

// Colour on a terminal, unless NO_COLOR is set (no-color.org): the verdict
// word of a summary line.
bool colour_stdout() {
  const char* no = std::getenv("NO_COLOR");
  return ::isatty(1) && !(no && *no);
}

std::string painted_summary(const std::string& line) {
  if (!colour_stdout()) return line;
  for (const auto& [word, code] : {std::pair<std::string, const char*>{"PASS", "32"},
                                   {"FINDINGS", "31"},
                                   {"WAIVED", "33"},
                                   {"BENCH FAILURE", "1;35"}})
    if (line.rfind(word + ":", 0) == 0) return fmt::format("\033[{}m{}\033[0m{}", code, word, line.substr(word.size()));
  return line;
}

// The run's defects, each with the trials behind it and the command that
// replays its representative trial; the findings themselves are in run.json.
void print_defects(const nlohmann::json& run, std::ostream& out) {
  const auto defects = run.value("defects", nlohmann::json::array());
  const auto waivers = run.value("waivers", nlohmann::json::object());
  for (const auto& w : run.value("waivers", nlohmann::json::object()).value("declared", nlohmann::json::array()))
    if (w.value("status", "") == "expired")
      out << fmt::format("waiver {} expired on {} ({}): renew it with a new date or fix the defect\n",
                         w.value("id", ""), w.value("expires", ""), w.value("reason", ""));
  const auto findings = run.value("summary", nlohmann::json::object()).value("findings", std::uint64_t{0});
  if (defects.empty()) return;
  constexpr std::size_t kShown = 20;
  out << reports::defects_headline(defects) << (defects.size() > 1 ? ":" : "") << "\n";
  for (std::size_t i = 0; i < defects.size() && i < kShown; ++i) {
    const auto& d = defects[i];
    const auto id = d.value("id", "");
    const auto count = d.value("count", std::uint64_t{0});
    if (defects.size() > 1) out << fmt::format("{} ({}): {}\n", id, d.value("scenario", ""), d.value("title", ""));
    out << fmt::format("  {}{} trial{}: {}\n", defects.size() > 1 ? "" : id + ", ", count, count == 1 ? "" : "s",
                       reports::trial_list_text(d, 10));
    out << fmt::format("  replay: {}\n", d.value("replay", ""));
    if (const auto* w = reports::waiver_of(waivers, id))
      out << fmt::format("  WAIVED by {} until {}: {}\n", w->value("id", ""), w->value("expires", ""),
                         w->value("reason", ""));
  }
  if (defects.size() > kShown) out << fmt::format("... and {} more defects in run.json\n", defects.size() - kShown);
  out << fmt::format("{} finding{} (one per failed trial) in run.json and report.html\n", findings,
                     findings == 1 ? "" : "s");
}

int cmd_run(const CampaignOptions& base, bool progress_flag, bool quiet) {
  CampaignOptions opts = base;
  ProgressBar bar(progress_flag && ::isatty(2));
  opts.on_progress = [&](const Progress& p) { bar.update(p); };
  use_registries(builtin_registries(), opts.hooks, opts.bundle);
  opts.whole_run_in_result = false;  // run.json is in --out; the summary needs its head only
  auto result = run_campaign(opts, builtin_registries());
  bar.finish();
  print_defects(result.run, std::cout);
  if (!quiet && result.run.contains("skipped"))
    for (const auto& k : result.run["skipped"])
      std::cout << fmt::format("skipped {}: {}\n", k.value("scenario", ""), k.value("reason", ""));
  if (!quiet) {
    std::cout << painted_summary(summary_line(result.run, result.aborted)) << "\n";
    std::cout << fmt::format("evidence: {}\n", result.out.string());
  }
  if (!result.aborted.empty()) std::cerr << "otarig: bench failure: " << result.aborted << "\n";
  return result.exit_code();
}

// Rows printed as aligned columns (each as wide as its longest cell, the
// last one free) or, with --json, as one JSON array of objects.
struct Listing {
  std::vector<std::string> keys;  ///< the JSON names of the columns
  std::vector<std::vector<std::string>> rows{};
  std::vector<nlohmann::json> objects{};

  void add(std::vector<std::string> cells, nlohmann::json object) {
    rows.push_back(std::move(cells));
    objects.push_back(std::move(object));
  }
  void print(bool json) const {
    if (json) {
      std::cout << nlohmann::json(objects).dump(2) << "\n";
      return;
    }
    std::vector<std::size_t> width(keys.size(), 0);
    for (const auto& r : rows)
      for (std::size_t i = 0; i + 1 < r.size() && i < width.size(); ++i) width[i] = std::max(width[i], r[i].size());
    for (const auto& r : rows) {
      std::string line;
      for (std::size_t i = 0; i < r.size(); ++i) {
        line += r[i];
        if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
      }
      while (!line.empty() && line.back() == ' ') line.pop_back();
      std::cout << line << "\n";
    }
  }
};

int cmd_list(const std::string& what, const std::vector<std::string>& paths, bool json) {
  if (!paths.empty() && what != "boards")
    throw InputError(fmt::format("otarig list {}: only `list boards` takes paths", what));
  if (what == "boards") {
    // Each profile is checked as `otarig run` binds it (its driver sections
    // too, opening nothing); a bad one is named with its file and line on
    // stderr, the good ones are listed, and the exit status is 2. Without
    // PATHs the data folders' boards/ are listed, each by a path that
    // --board takes from any folder; a PATH is a profile or a folder
    // searched for *.yaml, anywhere.
    Listing list{.keys = {"board", "kind", "description"}};
    bool invalid = false;
    std::set<std::string> seen;
    auto check = [&](const std::filesystem::path& f, const std::string& shown) {
      try {
        auto p = load_profile(f);
        validate_drivers(p, builtin_registries().drivers);
        list.add({shown, p.device_kind, p.description},
                 {{"board", shown}, {"name", p.name}, {"kind", p.device_kind}, {"description", p.description},
                  {"profile", f.string()}, {"sha256", p.sha256}});
      } catch (const InputError& e) {
        std::cerr << "otarig: " << e.what() << "\n";
        invalid = true;
      }
    };
    auto yaml_under = [](const std::filesystem::path& dir) {
      std::vector<std::filesystem::path> files;
      for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
        if (e.path().extension() == ".yaml") files.push_back(e.path());
      std::sort(files.begin(), files.end());
      return files;
    };
    if (!paths.empty()) {
      for (const auto& given : paths) {
        const std::filesystem::path path = find_data_path(given).value_or(given);
        if (std::filesystem::is_directory(path)) {
          for (const auto& f : yaml_under(path)) check(f, f.string());
        } else if (std::filesystem::exists(path)) {
          check(path, path.string());
        } else {
          std::cerr << fmt::format("otarig: {}: no such profile or folder\n", given);
          invalid = true;
        }
      }
    } else {
      for (const auto& d : data_dirs()) {
        auto dir = d / "boards";
        if (!std::filesystem::is_directory(dir)) continue;
        for (const auto& f : yaml_under(dir)) {
          auto rel = std::filesystem::relative(f, d).string();
          if (!seen.insert(rel).second) continue;
          check(f, rel);
        }
      }
    }
    list.print(json);
    return invalid ? 2 : 0;
  }
  if (what == "scenarios") {
    Listing list{.keys = {"scenario", "kind", "classes", "title", "requirements"}};
    for (const auto& f : catalog_scenarios()) {
      try {
        auto s = load_scenario(f.string());
        std::string kind = s.is_suite() ? fmt::format("suite of {}", s.parts.size()) : s.fault.kind;
        std::vector<std::string> parts;
        for (const auto& part : s.parts) parts.push_back(part.name);
        nlohmann::json o{{"scenario", s.name}, {"kind", s.is_suite() ? "suite" : s.fault.kind},
                         {"classes", s.classes}, {"requirements", s.requirements}, {"title", s.title},
                         {"path", f.string()}};
        if (s.is_suite()) o["parts"] = parts;
        list.add({s.name, kind, fmt::format("[{}]", fmt::join(s.classes, ",")), s.title,
                  s.is_suite() ? std::string() : fmt::format("{}", fmt::join(s.requirements, "; "))},
                 std::move(o));
      } catch (const InputError& e) {
        list.add({f.stem().string(), "INVALID", "", e.what(), ""},
                 {{"scenario", f.stem().string()}, {"path", f.string()}, {"invalid", e.what()}});
      }
    }
    list.print(json);
    return 0;
  }
  if (what == "faults") {
    Listing list{.keys = {"fault", "where", "summary"}};
    for (const auto* k : builtin_registries().faults.all())
      list.add({std::string(k->name()), std::string(k->where()), std::string(k->summary())},
               {{"fault", k->name()}, {"where", k->where()}, {"summary", k->summary()}});
    list.print(json);
    return 0;
  }
  throw InputError(fmt::format("otarig list {}: expected boards, scenarios or faults", what));
}

// Each command adds its options to the app, then runs once the arguments
// are parsed; `cmd` is its subcommand (set when it was given).

struct RunCommand {
  CampaignOptions run;
  std::string shard, trial, run_seed, run_trials, run_jobs, run_calibration, signing_key, bundle_url;
  bool no_progress = false, quiet = false;
  CLI::App* cmd = nullptr;

  void add(CLI::App& app) {
    cmd = app.add_subcommand("run", "run a campaign: board x scenario x seed");
    cmd->add_option("--board", run.board, "board profile: a path or a name from `otarig list boards`")->required();
    cmd->add_option("--scenario", run.scenario, "scenario: a path or a name from `otarig list scenarios`")
        ->required();
    cmd->add_option("--seed", run_seed, "campaign seed (every random choice derives from it)");
    cmd->add_option("--trials", run_trials, "run this many trials of the plan, chosen by the seed");
    cmd->add_option("--trial", trial, "run only this trial (as printed in a replay command)");
    cmd->add_option("--shard", shard, "run shard I of N (I/N): the trials whose index % N == I");
    cmd->add_option("--out", run.out, "evidence folder")->capture_default_str();
    cmd->add_flag("--resume", run.resume, "continue the campaign journaled in --out");
    cmd->add_flag("--force", run.force,
                  "replace the evidence of an earlier campaign in --out (a folder holding anything else is "
                  "refused)");
    cmd->add_option("--calibration", run_calibration,
                    "place time cuts by the clean-update timings of this earlier run (its evidence folder, "
                    "journal.jsonl or run.json) instead of timing an update afresh");
    cmd->add_option("--jobs", run_jobs,
                    "devices in parallel (virtual and process boards: default 2 where there are 2 cores; "
                    "any other board: 1)");
    cmd->add_flag("--no-progress", no_progress, "no progress bar");
    cmd->add_flag("-q,--quiet", quiet, "print the defects only");
    cmd->add_option("--signing-key", signing_key,
                    "Ed25519 PEM key that signs the attestation (default: a one-off test key)");
    cmd->add_option("--url", bundle_url, "link to the CI job or lab record, kept in the attestation");
  }

  int operator()() {
    if (!run_seed.empty()) run.seed = parse_number(run_seed, 0, UINT64_MAX, "--seed");
    if (!shard.empty()) std::tie(run.shard, run.shards) = parse_shard(shard);
    if (!run_trials.empty()) run.trials = parse_number(run_trials, 1, UINT64_MAX, "--trials");
    if (!run_jobs.empty()) run.jobs = static_cast<unsigned>(parse_number(run_jobs, 0, kMaxJobs, "--jobs"));
    if (!signing_key.empty()) run.bundle.signing_key = signing_key;
    run.bundle.url = bundle_url;
    if (!run_calibration.empty()) run.calibration = run_calibration;
    if (!trial.empty()) {
      try {
        run.only = parse_number(trial, 0, UINT64_MAX, "--trial");
      } catch (const InputError&) {
        throw InputError(fmt::format("--trial {}: expected a trial id such as 00042", trial));
      }
    }
    return cmd_run(run, !no_progress, quiet);
  }
};

struct ListCommand {
  std::string what;
  std::vector<std::string> paths;
  bool json = false;
  CLI::App* cmd = nullptr;

  void add(CLI::App& app) {
    cmd = app.add_subcommand("list", "list boards, scenarios or faults");
    cmd->add_option("what", what, "boards | scenarios | faults")->required();
    cmd->add_option("paths", paths, "boards: profiles or folders to check instead of the data folders' boards/");
    cmd->add_flag("--json", json, "print one JSON array of objects (for scripts)");
  }
  int operator()() { return cmd_list(what, paths, json); }
};

struct ImageBuildCommand {
  std::string version, key, out, payload, genkey, counter, size, signing_time, device_type, image_index, needs,
      encrypt_for;
  std::vector<std::string> trust_add, trust_revoke, trust_add_ca;
  bool selftest_fail = false;
  // Packages for real OTA clients (docs/ota-clients.md): the otarig image as
  // the slot content of a signed .swu or .raucb.
  std::string format = "otarig", signer, hardware = "1.0", compatible = "otarig-board";
  std::string delta_from, aes_key;
  bool installed_directly = false;
  CLI::App* cmd = nullptr;

  void add(CLI::App& image_cmd) {
    cmd = image_cmd.add_subcommand("build", "build a signed image");
    cmd->add_option("--delta-from", delta_from,
                    "write a delta release from this image (the one the device runs) to the image built "
                    "(docs/image-format.md, \"Delta releases\")");
    cmd->add_option("--version", version, "major.minor.patch[+build]")->required();
    cmd->add_option("--counter", counter, "security counter")->required();
    cmd->add_option("--payload", payload, "payload file");
    cmd->add_option("--payload-size", size, "generate a deterministic payload of this many bytes");
    cmd->add_option("--key", key, "Ed25519 PEM private key, or test:LABEL")->required();
    cmd->add_option("--generate-key", genkey, "write a new Ed25519 key to this PEM file and sign with it");
    cmd->add_flag("--self-test-fail", selftest_fail, "mark the image as one whose self-test fails");
    cmd->add_option("--signing-time", signing_time,
                    "the signing time in the header: YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or @SECONDS (UTC)");
    cmd->add_option("--trust-add", trust_add,
                    "make a key-rotation message that adds this Ed25519 public key (64 hex digits), optionally "
                    "valid FROM..UNTIL (times as --signing-time): HEX[@FROM..UNTIL]; repeatable");
    cmd->add_option("--trust-revoke", trust_revoke,
                    "make a key-rotation message that revokes this public key (64 hex digits); repeatable");
    cmd->add_option("--trust-add-ca", trust_add_ca,
                    "make a key-rotation message that adds this CA certificate (a PEM or DER file) to the device's "
                    "TLS trust store for its update server; repeatable");
    cmd->add_option("--device-type", device_type,
                    "the device type the image is for (header.device_type; without it: any device)");
    cmd->add_option("--image-index", image_index,
                    "which of the device's images this is: 0 the application (default), 1 the second image");
    cmd->add_option("--needs", needs, "INDEX>=VERSION: the image runs only with image INDEX at VERSION or newer");
    cmd->add_option("--encrypt-for", encrypt_for,
                    "encrypt the image for this device: its X25519 public key (64 hex digits, or a PEM file of its "
                    "public or private key); docs/image-format.md, \"Encrypted payloads\"");
    cmd->add_option("--out", out, "output image")->required();
    cmd->add_option("--format", format, "otarig (the image), swu (SWUpdate) or raucb (RAUC bundle)")
        ->check(CLI::IsMember({"otarig", "swu", "raucb"}))
        ->capture_default_str();
    cmd->add_option("--signer", signer,
                    "swu/raucb: folder with ca.pem, signer.pem, signer.key (a fresh test PKI is written there "
                    "when it has none)");
    cmd->add_option("--hardware", hardware, "swu: hardware-compatibility revision")->capture_default_str();
    cmd->add_option("--compatible", compatible, "raucb: the system's compatible")->capture_default_str();
    cmd->add_option("--aes-key", aes_key,
                    "swu: encrypt the image with SWUpdate's AES key (its -K key file: the key and the IV in hex, "
                    "or test:LABEL); docs/ota-clients.md, \"Encrypted images\"");
    cmd->add_flag("--installed-directly", installed_directly,
                  "swu with --aes-key: mark the image installed-directly (SWUpdate then streams it into the slot "
                  "and checks its hash only after it decrypted it; without it, it checks the hash first)");
  }

  int operator()() {
    image::Header h;
    h.version = image::Version::parse(version);
    h.security_counter = static_cast<std::uint32_t>(parse_number(counter, 0, UINT32_MAX, "--counter"));
    if (selftest_fail) h.flags |= image::kFlagSelfTestFails;
    auto time_of = [](const std::string& text, const char* what) {
      const auto t = image::parse_utc(text);
      if (!t) throw InputError(fmt::format("otarig image build: {} '{}' is not a time (YYYY-MM-DD, "
                                           "YYYY-MM-DDTHH:MM:SSZ or @SECONDS)", what, text));
      return *t;
    };
    if (!signing_time.empty()) h.signing_time = time_of(signing_time, "--signing-time");
    auto key_of = [](const std::string& hex, const char* what) {
      crypto::Bytes raw;
      try {
        raw = crypto::from_hex(hex);
      } catch (const std::exception&) {
      }
      if (raw.size() != 32)
        throw InputError(fmt::format("otarig image build: {} '{}' is not an Ed25519 public key (64 hex digits)",
                                     what, hex));
      crypto::PublicKey k{};
      std::copy(raw.begin(), raw.end(), k.begin());
      return k;
    };
    std::vector<image::TrustChange> changes;
    for (const auto& a : trust_add) {
      image::TrustChange c;
      const auto at = a.find('@');
      c.entry.key = key_of(a.substr(0, at), "--trust-add");
      if (at != std::string::npos) {
        const auto range = a.substr(at + 1);
        const auto dots = range.find("..");
        if (dots == std::string::npos)
          throw InputError(fmt::format("otarig image build: --trust-add '{}': the validity is FROM..UNTIL", a));
        c.entry.not_before = time_of(range.substr(0, dots), "--trust-add FROM");
        c.entry.not_after = time_of(range.substr(dots + 2), "--trust-add UNTIL");
        if (c.entry.not_after < c.entry.not_before)
          throw InputError(fmt::format("otarig image build: --trust-add '{}': UNTIL is before FROM", a));
      }
      changes.push_back(c);
    }
    for (const auto& r : trust_revoke) changes.push_back({image::TrustAction::revoke, {key_of(r, "--trust-revoke"), 0, 0, true}});
    for (const auto& f : trust_add_ca)
      changes.push_back(image::server_ca_change(read_file(f, "--trust-add-ca"), "otarig image build: --trust-add-ca " + f));
    if (!device_type.empty()) {
      if (!harness::is_device_type_name(device_type))
        throw InputError(fmt::format("otarig image build: --device-type '{}': {}", device_type,
                                     harness::kDeviceTypeRule));
      h.device_type = image::device_type_id(device_type);
    }
    if (!image_index.empty())
      h.image_index = static_cast<std::uint8_t>(parse_number(image_index, 0, image::kMaxImages - 1, "--image-index"));
    if (!needs.empty()) {
      const auto at = needs.find(">=");
      if (at == std::string::npos)
        throw InputError(fmt::format("otarig image build: --needs '{}': expected INDEX>=VERSION", needs));
      const auto index = parse_number(needs.substr(0, at), 0, image::kMaxImages - 1, "--needs INDEX");
      if (index == h.image_index)
        throw InputError(fmt::format("otarig image build: --needs '{}': image {} cannot need itself", needs, index));
      h.needs_image = static_cast<std::uint8_t>(index + 1);
      h.needs_version = image::Version::parse(needs.substr(at + 2));
    }
    image::Bytes bytes;
    if (!payload.empty())
      bytes = read_file(payload, "payload");
    else if (!size.empty())
      bytes = image::synthetic_payload(parse_number(size, 1, kMaxPayload, "--payload-size"), version);
    else throw InputError("otarig image build: give --payload FILE or --payload-size N");
    if (bytes.size() > kMaxPayload)
      throw InputError(fmt::format("{}: a payload of {} bytes is more than the {} an image carries", payload,
                                   bytes.size(), kMaxPayload));
    if (!changes.empty()) {
      // A key-rotation message: the trust block leads the payload (docs/image-format.md).
      const auto block = image::encode_trust_block(changes);
      if (bytes.size() < block.size())
        throw InputError(fmt::format("otarig image build: the payload ({} bytes) is shorter than its {}-byte trust block",
                                     bytes.size(), block.size()));
      std::copy(block.begin(), block.end(), bytes.begin());
      h.flags |= image::kFlagTrustUpdate;
    }
    h.payload_size = static_cast<std::uint32_t>(bytes.size());
    std::optional<crypto::Ed25519Key> k;
    if (!genkey.empty()) {
      k = crypto::Ed25519Key::generate();
      k->save_pem(genkey);
    } else {
      k = load_key_ref(key, ".");
    }
    auto img = image::build(h, bytes, *k);
    if (!aes_key.empty() && format != "swu")
      throw InputError(fmt::format("otarig image build: --aes-key encrypts the image of a swu package (SWUpdate's "
                                   "AES), not {}; an otarig image is encrypted for a device with --encrypt-for",
                                   format == "otarig" ? "an otarig image" : "a " + format + " package"));
    if (installed_directly && aes_key.empty())
      throw InputError("otarig image build: --installed-directly goes with --aes-key");
    if (!delta_from.empty() && !encrypt_for.empty())
      throw InputError("otarig image build: --delta-from and --encrypt-for do not go together (a delta is not encrypted)");
    if (!delta_from.empty()) {
      if (format != "otarig") throw InputError("otarig image build: --delta-from makes otarig delta releases only");
      const auto base = read_file(delta_from, "base image");
      const auto delta = image::delta::make(base, img);
      const auto d = image::delta::parse(delta, out, delta.size() + img.size());
      const auto st = image::delta::stats(d.patch);
      write_file(out, delta);
      std::cout << fmt::format("{}: delta of {} bytes from {} (base {}) to version {}, counter {}, key {}: {} ops, {} "
                               "bytes copied, {} inserted; the assembled image is {} bytes, digest {}\n",
                               out, delta.size(), delta_from, crypto::hex(d.patch.base_sha256), h.version.str(),
                               h.security_counter, crypto::hex(k->id()), d.patch.ops.size(), st.copied, st.inserted,
                               img.size(), device_digest(img));
      return 0;
    }
    if (!encrypt_for.empty()) {
      if (format != "otarig") throw InputError("otarig image build: --encrypt-for makes otarig images only");
      const auto plain_digest = device_digest(img);
      img = encryption::encrypt(img, encryption::load_public(encrypt_for, "--encrypt-for"), *k);
      write_file(out, img);
      std::cout << fmt::format("{}: {} bytes, encrypted for {}, version {}, counter {}, key {}, digest {} (the "
                               "plaintext image: {})\n",
                               out, img.size(), crypto::hex(encryption::load_public(encrypt_for, "--encrypt-for")),
                               h.version.str(), h.security_counter, crypto::hex(k->id()), device_digest(img),
                               plain_digest);
      return 0;
    }
    if (format != "otarig") return write_package(img);
    write_file(out, img);
    std::cout << fmt::format("{}: {} bytes, version {}, counter {}, key {}, digest {}\n", out, img.size(),
                             h.version.str(), h.security_counter, crypto::hex(k->id()), device_digest(img));
    return 0;
  }

  int write_package(const image::Bytes& img) {
    if (signer.empty()) throw InputError("otarig image build: --format " + format + " needs --signer DIR");
    // The format of the driver registry, as a profile's `package:` section names it.
    YAML::Emitter section;
    section << YAML::BeginMap << YAML::Key << "format" << YAML::Value << format << YAML::Key << "signer"
            << YAML::Value << signer;
    if (format == "swu") section << YAML::Key << "hardware" << YAML::Value << hardware;
    if (!aes_key.empty()) section << YAML::Key << "installed_directly" << YAML::Value << installed_directly;
    if (format == "raucb") section << YAML::Key << "compatible" << YAML::Value << compatible;
    section << YAML::EndMap;
    const auto* factory = builtin_registries().drivers.package_format(format);
    if (!factory) throw InputError("otarig image build: this otarig has no package format " + format);
    auto made = (*factory)(Config::load_string(section.c_str(), "otarig image build"), "otarig", ".");
    if (!aes_key.empty()) made->encrypt_for(encryption::AesKey::load_ref(aes_key));
    const auto pkg = made->package(img);
    write_file(out, pkg);
    std::cout << fmt::format("{}: {} {} bytes, version {}, signer {}/signer.pem, slot image digest {}{}\n", out,
                             format, pkg.size(), image::parse(img, out).header.version.str(), signer,
                             device_digest(img),
                             aes_key.empty() ? std::string()
                                             : fmt::format(", the image AES-encrypted with {}{}", aes_key,
                                                           installed_directly ? " (installed directly)" : ""));
    return 0;
  }
};

struct ImageTamperCommand {
  std::string in_file, out_file, flip, resign, version, truncate, append;
  bool strip = false;
  CLI::App* cmd = nullptr;

  void add(CLI::App& image_cmd) {
    cmd = image_cmd.add_subcommand("tamper", "damage an image");
    cmd->add_option("--in", in_file, "input image")->required();
    cmd->add_option("--out", out_file, "output image")->required();
    auto* g = cmd->add_option_group("damage", "exactly one damage");
    g->add_option("--flip-bit", flip, "OFFSET[:BIT] flip one bit");
    g->add_option("--truncate", truncate, "keep only the first N bytes");
    g->add_option("--append", append, "append N bytes (0x5a)");
    g->add_option("--resign", resign, "re-sign with this key (PEM or test:LABEL)");
    g->add_flag("--strip-signature", strip, "zero the signature and key id");
    g->add_option("--set-version", version, "edit the header version without re-signing");
    g->require_option(1);
  }

  int operator()() {
    auto in = read_file(in_file, "image");
    image::Bytes out;
    if (!flip.empty()) {
      if (in.empty()) throw InputError(fmt::format("{}: --flip-bit: the image is empty", in_file));
      auto colon = flip.find(':');
      const auto off = parse_number(flip.substr(0, colon), 0, in.size() - 1, in_file + ": --flip-bit offset");
      const auto bit = colon == std::string::npos
                           ? 0
                           : parse_number(flip.substr(colon + 1), 0, 7, in_file + ": --flip-bit bit");
      out = image::tamper::flip_bit(in, static_cast<std::size_t>(off), static_cast<unsigned>(bit));
    } else if (!truncate.empty()) {
      const auto n = parse_number(truncate, 0, in.size(), "--truncate");
      out = image::tamper::truncate(in, static_cast<std::size_t>(n));
    } else if (!append.empty()) {
      const auto n = parse_number(append, 0, kMaxImageBytes - in.size(), "--append");
      out = image::tamper::append(in, image::Bytes(static_cast<std::size_t>(n), 0x5a));
    } else if (!resign.empty()) {
      out = image::tamper::resign(in, load_key_ref(resign, "."));
    } else if (strip) {
      out = image::tamper::strip_signature(in);
    } else {
      out = image::tamper::set_version(in, image::Version::parse(version));
    }
    write_file(out_file, out);
    std::cout << fmt::format("{}: {} bytes\n", out_file, out.size());
    return 0;
  }
};

struct ImageInspectCommand {
  std::string file, key;
  bool require_signature = false, json = false;
  CLI::App* cmd = nullptr;

  void add(CLI::App& image_cmd) {
    cmd = image_cmd.add_subcommand("inspect", "parse and check an image");
    cmd->add_option("file", file, "image")->required();
    cmd->add_option("--key", key, "trusted key (PEM or test:LABEL) to check the signature against");
    cmd->add_flag("--require-signature", require_signature,
                  "exit 1 unless the signature was checked against --key and holds");
    cmd->add_flag("--json", json, "print one JSON object (for scripts)");
  }

  int operator()() {
    if (require_signature && key.empty())
      throw InputError("image inspect --require-signature: give the trusted key with --key");
    auto bytes = read_file(file, "image");
    auto p = image::parse(bytes, file);
    std::optional<image::Check> c;
    if (!key.empty()) {
      std::vector<crypto::PublicKey> trusted{load_key_ref(key, ".").public_key()};
      c = image::check(bytes, trusted);
    }
    const std::string signature = !c ? "unchecked" : c->ok() ? "ok" : "failed";
    if (json) {
      nlohmann::json j{{"file", file},
                       {"version", p.header.version.str()},
                       {"security_counter", p.header.security_counter},
                       {"payload_size", p.header.payload_size},
                       {"flags", p.header.flags},
                       {"device_type", crypto::hex(p.header.device_type)},
                       {"image_index", p.header.image_index},
                       {"encrypted", (p.header.flags & image::kFlagEncrypted) != 0},
                       {"key_id", crypto::hex(p.trailer.key_id)},
                       {"digest", device_digest(bytes)},
                       {"signature", signature}};
      if (p.header.flags & image::kFlagDelta) {
        const auto d = image::delta::parse(bytes, file, kMaxImageBytes);
        const auto st = image::delta::stats(d.patch);
        j["delta"] = {{"base_sha256", crypto::hex(d.patch.base_sha256)}, {"base_size", d.patch.base_size},
                      {"target_size", d.patch.target_size}, {"copies", st.copies}, {"copied", st.copied},
                      {"inserts", st.inserts}, {"inserted", st.inserted},
                      {"assembled_digest", crypto::hex(p.trailer.sha256)}};
      }
      if (p.header.needs_image)
        j["needs"] = {{"image", p.header.needs_image - 1}, {"version", p.header.needs_version.str()}};
      if (c && !c->ok()) j["reason"] = c->reason;
      if (p.header.signing_time) j["signing_time"] = image::utc_text(p.header.signing_time);
      if (p.header.flags & image::kFlagTrustUpdate) {
        nlohmann::json t = nlohmann::json::array();
        for (const auto& ch : image::decode_trust_block(p.payload, file)) {
          if (ch.action == image::TrustAction::add_server_ca) {
            t.push_back({{"action", "add-server-ca"},
                         {"sha256", crypto::hex(ch.entry.key)},
                         {"subject", image::certificate_subject(ch.certificate)},
                         {"size", ch.certificate.size()}});
            continue;
          }
          t.push_back({{"action", ch.action == image::TrustAction::add ? "add" : "revoke"},
                       {"key", crypto::hex(ch.entry.key)},
                       {"key_id", crypto::hex(crypto::key_id(ch.entry.key))},
                       {"not_before", ch.entry.not_before ? image::utc_text(ch.entry.not_before) : ""},
                       {"not_after", ch.entry.not_after ? image::utc_text(ch.entry.not_after) : ""}});
        }
        j["trust"] = std::move(t);
      }
      std::cout << j.dump(2) << "\n";
    } else {
      std::cout << fmt::format("version {}\nsecurity_counter {}\npayload_size {}\nflags 0x{:x}\nkey_id {}\ndigest {}\n",
                               p.header.version.str(), p.header.security_counter, p.header.payload_size,
                               p.header.flags, crypto::hex(p.trailer.key_id), device_digest(bytes));
      if (p.header.signing_time) std::cout << "signing_time " << image::utc_text(p.header.signing_time) << "\n";
      if (p.header.flags & image::kFlagTrustUpdate) {
        for (const auto& ch : image::decode_trust_block(p.payload, file)) {
          if (ch.action == image::TrustAction::add_server_ca) {
            std::cout << fmt::format("trust add-server-ca sha256 {} ({} bytes) {}\n", crypto::hex(ch.entry.key),
                                     ch.certificate.size(), image::certificate_subject(ch.certificate));
            continue;
          }
          std::cout << fmt::format("trust {} {}{}\n", ch.action == image::TrustAction::add ? "add" : "revoke",
                                   crypto::hex(ch.entry.key),
                                   ch.entry.not_before || ch.entry.not_after
                                       ? fmt::format(" valid {} .. {}",
                                                     ch.entry.not_before ? image::utc_text(ch.entry.not_before) : "-",
                                                     ch.entry.not_after ? image::utc_text(ch.entry.not_after) : "-")
                                       : std::string());
        }
      }
      if (p.header.flags & image::kFlagDelta) {
        const auto d = image::delta::parse(bytes, file, kMaxImageBytes);
        const auto st = image::delta::stats(d.patch);
        std::cout << fmt::format("delta base {} ({} bytes): {} COPY ops ({} bytes), {} INSERT ops ({} bytes); "
                                 "assembles {} bytes whose digest the trailer states: {}\n",
                                 crypto::hex(d.patch.base_sha256), d.patch.base_size, st.copies, st.copied,
                                 st.inserts, st.inserted, d.patch.target_size + image::kTrailerSize,
                                 crypto::hex(p.trailer.sha256));
      }
      std::cout << fmt::format("device_type {}\nimage_index {}\n",
                               image::any_device(p.header.device_type) ? std::string("any")
                                                                       : crypto::hex(p.header.device_type),
                               p.header.image_index);
      if (p.header.needs_image)
        std::cout << fmt::format("needs image {} >= {}\n", p.header.needs_image - 1, p.header.needs_version.str());
      if (!c)
        std::cout << "signature NOT CHECKED (no --key): the fields above are what the image claims\n";
      else
        std::cout << (c->ok() ? "check ok\n" : "check FAILED: " + c->reason + "\n");
    }
    if (c && !c->ok()) return 1;
    return 0;
  }
};

struct ImageApplyCommand {
  std::string base, delta, out;
  CLI::App* cmd = nullptr;

  void add(CLI::App& image_cmd) {
    cmd = image_cmd.add_subcommand("apply", "assemble the image a delta release makes from its base");
    cmd->add_option("--base", base, "the image the delta was made against")->required();
    cmd->add_option("--delta", delta, "the delta release")->required();
    cmd->add_option("--out", out, "the assembled image")->required();
  }

  int operator()() {
    const auto b = read_file(base, "base image");
    const auto d_bytes = read_file(delta, "delta");
    const auto d = image::delta::parse(d_bytes, delta, kMaxImageBytes);
    image::delta::check_base(d.patch, b, delta);
    const auto img = image::delta::assemble(d, b, delta);
    write_file(out, img);
    std::cout << fmt::format("{}: {} bytes assembled from {} and {}, digest {}\n", out, img.size(), base, delta,
                             device_digest(img));
    return 0;
  }
};

struct DetectCommand {
  harness::DetectionOptions detect;
  std::vector<std::string> boards;
  std::string seed = std::to_string(detect.seed), jobs;
  bool json = false;
  CLI::App* cmd = nullptr;

  void add(CLI::App& app) {
    cmd = app.add_subcommand(
        "detect", "run a scenario on every board of a catalog and print the detection table (docs/detection.md)");
    cmd->add_option("boards", boards, "board profiles, or folders searched for *.yaml profiles")->required();
    cmd->add_option("--scenario", detect.scenario, "scenario run on every board")->capture_default_str();
    cmd->add_option("--seed", seed, "campaign seed")->capture_default_str();
    cmd->add_option("--jobs", jobs, "benches in parallel per campaign");
    cmd->add_option("--out", detect.out, "keep each campaign's evidence in OUT/<board>/");
    cmd->add_option("--kind", detect.kinds, "only boards of this device kind (repeatable)");
    cmd->add_flag("--json", json, "print the table as one JSON object (for scripts)");
  }

  int operator()() {
    detect.seed = parse_number(seed, 0, UINT64_MAX, "--seed");
    if (!jobs.empty()) detect.jobs = static_cast<unsigned>(parse_number(jobs, 0, kMaxJobs, "--jobs"));
    detect.boards.assign(boards.begin(), boards.end());
    detect.on_board = [](const std::string& line) { std::cerr << line << "\n"; };
    return detection_main(detect, std::cout, json);
  }
};

// `otarig bench`: the board's own drivers from the command line, as a lab
// engineer uses labgrid-client: power, the status the rig would read, and
// the console. A virtual or process board's device lives as long as the
// command does.
volatile std::sig_atomic_t g_bench_stop = 0;

struct BenchCommand {
  std::string board, off_time = "1000", run_for, provision;
  std::vector<std::string> words;
  bool json = false, power_on = false;
  CLI::App* cmd = nullptr;

  void add(CLI::App& app) {
    cmd = app.add_subcommand("bench", "drive a board by hand: power on|off|cycle, status, console");
    cmd->add_option("--board", board, "board profile: a path or a name from `otarig list boards`")->required();
    cmd->add_option("action", words, "power on|off|cycle, status or console")->required();
    cmd->add_option("--off-time", off_time, "power cycle: milliseconds off")->capture_default_str();
    cmd->add_option("--for", run_for, "console: stop after this many seconds (default: at end of input or Ctrl-C)");
    cmd->add_flag("--power-on", power_on, "console on a lab board: switch the power on first");
    cmd->add_option("--provision", provision,
                    "write this release of the profile to the device first (a virtual or process board: "
                    "default its first release)");
    cmd->add_flag("--json", json, "status: print the observation as JSON");
  }

  static bool in_process(const BoardProfile& p) { return p.device_kind == "virtual" || p.device_kind == "process"; }

  int operator()() {
    const auto action = words.front();
    if (action == "power") {
      if (words.size() != 2 || (words[1] != "on" && words[1] != "off" && words[1] != "cycle"))
        throw InputError("otarig bench power: expected on, off or cycle");
    } else if ((action == "status" || action == "console") && words.size() == 1) {
    } else {
      throw InputError(fmt::format("otarig bench {}: expected power on|off|cycle, status or console",
                                   fmt::join(words, " ")));
    }
    const auto off_ms = parse_number(off_time, 0, 3600000, "--off-time");
    std::optional<std::uint64_t> seconds;
    if (!run_for.empty()) seconds = parse_number(run_for, 0, 86400 * 365, "--for");
    auto profile = load_profile(resolve_board(board));
    const auto& registries = builtin_registries();
    ReleaseSet releases(profile, registries.drivers);
    Bench bench(profile, registries.drivers, releases, 1);
    auto& power = *bench.parts().power;
    auto& console = *bench.parts().console;
    // An in-process device starts blank: it runs the profile's first release
    // unless told otherwise; a lab board is written only when asked.
    if (provision.empty() && in_process(profile) && !releases.all().empty()) provision = releases.all().front().name;
    if (!provision.empty()) {
      if (!profile.release(provision))
        throw InputError(fmt::format("--provision {}: board {} ({}) defines no such release", provision,
                                     profile.name, profile.path.string()));
      if (!bench.parts().provision)
        throw InputError(fmt::format("--provision: board {} cannot be provisioned (no provision section)",
                                     profile.name));
      if (power.is_on()) bench.power_off("bench");
      bench.parts().provision->provision(releases.get(provision).bytes);
      std::cerr << fmt::format("otarig: {}: provisioned with release {}\n", profile.name, provision);
    }
    if (action == "power") {
      if (words[1] == "on") bench.power_on("bench");
      if (words[1] == "off") bench.power_off("bench");
      if (words[1] == "cycle") {
        try {
          power.cycle(std::chrono::milliseconds(off_ms));
        } catch (const std::exception& e) {
          throw BenchError(fmt::format("{}: power cycle failed: {}", profile.name, e.what()));
        }
      }
      std::cout << fmt::format("{}: power {}\n", profile.name, power.is_on() ? "on" : "off");
      if (in_process(profile))
        std::cerr << fmt::format("otarig: note: {} is a {} board: its device ends with this command\n", profile.name,
                                 profile.device_kind);
      return 0;
    }
    if (action == "status") {
      if (!power.is_on()) bench.power_on("bench");
      const auto obs = bench.observe("bench");
      if (json) {
        nlohmann::json j{{"board", profile.name}, {"booted", obs.booted}, {"waited_ms", obs.waited_ms}};
        if (obs.booted) {
          j["slot"] = obs.slot;
          j["version"] = obs.version;
          j["digest"] = obs.digest;
          j["state"] = obs.state;
          j["health"] = obs.health;
          if (obs.counter) j["counter"] = *obs.counter;
          j["line"] = obs.line;
        }
        std::cout << j.dump(2) << "\n";
      } else if (obs.booted) {
        std::cout << fmt::format("{}: slot {} version {} counter {} state {} health {}\n  {}\n", profile.name,
                                 obs.slot.empty() ? "-" : obs.slot, obs.version.empty() ? "-" : obs.version,
                                 obs.counter ? std::to_string(*obs.counter) : "-", obs.state.empty() ? "-" : obs.state,
                                 obs.health.empty() ? "-" : obs.health, obs.line);
      } else {
        std::cout << fmt::format("{}: no status line within the boot timeout ({} ms)\n", profile.name,
                                 profile.observe.boot_timeout.count());
      }
      return obs.booted ? 0 : 1;
    }
    // console: what the device prints goes to stdout, what stdin reads to the device.
    if ((power_on || in_process(profile)) && !power.is_on()) bench.power_on("bench");
    struct sigaction sa {};
    sa.sa_handler = [](int) { g_bench_stop = 1; };
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
    const auto deadline = seconds ? std::optional(std::chrono::steady_clock::now() + std::chrono::seconds(*seconds))
                                  : std::nullopt;
    bool input_open = true;
    std::optional<std::chrono::steady_clock::time_point> drain_until;
    while (!g_bench_stop) {
      const auto now = std::chrono::steady_clock::now();
      if (deadline && now >= *deadline) break;
      if (drain_until && now >= *drain_until) break;
      if (input_open) {
        pollfd pfd{.fd = 0, .events = POLLIN, .revents = 0};
        if (::poll(&pfd, 1, 0) > 0) {
          char buf[4096];
          const ssize_t n = ::read(0, buf, sizeof buf);
          if (n > 0) {
            console.write(std::string_view(buf, static_cast<std::size_t>(n)));
          } else if (n == 0 || errno != EINTR) {
            // End of input: show what the device answers for a moment more.
            input_open = false;
            if (!deadline) drain_until = now + std::chrono::milliseconds(500);
          }
        }
      }
      const auto bytes = console.read(std::chrono::milliseconds(50));
      if (!bytes.empty()) std::cout << bytes << std::flush;
      if (auto ended = power.device_exit()) {
        std::cerr << fmt::format("otarig: {}: the device program {}\n", profile.name, *ended);
        return 3;
      }
    }
    return 0;
  }
};

struct VerifyCommand {
  std::string dir, key;
  bool json = false;
  CLI::App* cmd = nullptr;

  void add(CLI::App& report_cmd) {
    cmd = report_cmd.add_subcommand("verify", "check an evidence bundle: manifest, journal chain, signature");
    cmd->add_option("dir", dir, "evidence folder")->required();
    cmd->add_option("--key", key, "the public key (PEM) the attestation must be signed with");
    cmd->add_flag("--json", json, "print the result as one JSON object (for scripts)");
  }

  int operator()() {
    std::optional<std::filesystem::path> k;
    if (!key.empty()) k = key;
    auto r = reports::verify_bundle(dir, k);
    if (json)
      std::cout << reports::verify_json(r, dir).dump(2) << "\n";
    else
      std::cout << reports::format_verify(r, dir);
    return r.exit_code();
  }
};

struct MergeCommand {
  std::vector<std::string> dirs;
  std::string out, key, trusted;
  bool allow_missing = false;
  CLI::App* cmd = nullptr;

  void add(CLI::App& report_cmd) {
    cmd = report_cmd.add_subcommand("merge", "join the shard bundles of one campaign into one bundle");
    cmd->add_option("dirs", dirs, "shard evidence folders")->required();
    cmd->add_option("--out", out, "merged evidence folder")->required();
    cmd->add_option("--signing-key", key, "Ed25519 PEM key that signs the merged attestation");
    cmd->add_option("--key", trusted, "public key (PEM) every shard's attestation must verify with");
    cmd->add_flag("--allow-missing-shards", allow_missing, "merge even when some shards are absent");
  }

  int operator()() {
    reports::MergeOptions mo;
    if (!key.empty()) mo.bundle.signing_key = key;
    if (!trusted.empty()) mo.trusted_key = trusted;
    mo.allow_missing_shards = allow_missing;
    mo.whole_run_in_result = false;  // the summary is all this prints
    std::vector<std::filesystem::path> folders(dirs.begin(), dirs.end());
    auto merged = reports::merge_bundles(folders, out, mo);
    const auto& sum = merged["summary"];
    std::cout << fmt::format("merged {} shards into {}: {} trials, {} passed, {} failed, {} findings\n",
                             folders.size(), out, sum.value("trials", 0), sum.value("passed", 0),
                             sum.value("failed", 0), sum.value("findings", 0));
    print_defects(merged, std::cout);
    // Findings every one of which an active waiver accepts do not fail the
    // merged campaign; an expired waiver does.
    return sum.value("findings", std::uint64_t{0}) > sum.value("waived", std::uint64_t{0}) ||
                   sum.value("expired_waivers", std::uint64_t{0})
               ? 1
               : 0;
  }
};

// The command tree as CLI11 knows it: the man page and the bash completion
// are made from it, so they say what --help says.
struct CommandDoc {
  std::string path;  ///< "run", "image build"
  std::string description;
  std::vector<const CLI::Option*> options;
};

void collect_commands(const CLI::App& app, const std::string& prefix, std::vector<CommandDoc>& out) {
  CommandDoc doc{prefix, app.get_description(), {}};
  auto add_options = [&](const CLI::App& a) {
    for (const auto* o : a.get_options())
      if (o->get_name() != "--help" && o->get_name() != "-h,--help") doc.options.push_back(o);
  };
  add_options(app);
  for (const auto* g : app.get_subcommands([](const CLI::App* a) { return a->get_name().empty(); }))
    add_options(*g);
  out.push_back(doc);
  for (const auto* sub : app.get_subcommands([](const CLI::App* a) { return !a->get_name().empty(); }))
    collect_commands(*sub, prefix.empty() ? sub->get_name() : prefix + " " + sub->get_name(), out);
}

std::string option_label(const CLI::Option* o) {
  if (o->get_positional()) return fmt::format("{}", o->get_name());
  std::vector<std::string> names;
  for (const auto& n : o->get_snames()) names.push_back("-" + n);
  for (const auto& n : o->get_lnames()) names.push_back("--" + n);
  std::string label = fmt::format("{}", fmt::join(names, ", "));
  if (o->get_type_size() != 0) label += " " + (o->get_type_name().empty() ? std::string("VALUE") : o->get_type_name());
  return label;
}

std::string roff(std::string s) {
  std::string out;
  for (char c : s) {
    if (c == '\\') out += "\\e";
    else if (c == '-') out += "\\-";
    else out += c;
  }
  if (!out.empty() && (out[0] == '.' || out[0] == '\'')) out = "\\&" + out;
  return out;
}

std::string man_page(const CLI::App& app) {
  std::vector<CommandDoc> docs;
  collect_commands(app, "", docs);
  std::string m = fmt::format(".TH OTARIG 1 \"\" \"otarig {}\" \"User Commands\"\n", version_string());
  std::string what = app.get_description();
  if (what.rfind("otarig: ", 0) == 0) what = what.substr(8);
  m += ".SH NAME\notarig \\- " + roff(what) + "\n";
  m += ".SH SYNOPSIS\n.B otarig\n.I COMMAND\n[\\fIOPTIONS\\fR]\n";
  m += ".SH DESCRIPTION\nEach command below, with its options as \\fBotarig COMMAND \\-\\-help\\fR lists them. "
       "Exit status: 0 no finding, 1 findings (or a failed check), 2 bad input, 3 bench failure.\n";
  m += ".SH COMMANDS\n";
  for (const auto& d : docs) {
    if (d.path.empty()) continue;
    m += ".SS \"otarig " + roff(d.path) + "\"\n" + roff(d.description) + "\n";
    for (const auto* o : d.options) {
      m += ".TP\n.B " + roff(option_label(o)) + "\n" + roff(o->get_description());
      if (!o->get_default_str().empty()) m += " (default: " + roff(o->get_default_str()) + ")";
      m += "\n";
    }
  }
  m += ".SH ENVIRONMENT\n.TP\n.B OTARIG_DATA_DIR\nAnother folder searched for boards/, scenarios/ and compliance/ "
       "before the installed data.\n.TP\n.B NO_COLOR\nWhen set, nothing is coloured on a terminal.\n";
  m += ".SH SEE ALSO\nThe documentation in share/doc/otarig and docs/ of the source tree.\n";
  return m;
}

std::string bash_completion(const CLI::App& app) {
  std::vector<CommandDoc> docs;
  collect_commands(app, "", docs);
  std::string cases;
  std::vector<std::string> top;
  for (const auto& d : docs) {
    if (d.path.empty()) continue;
    if (d.path.find(' ') == std::string::npos) top.push_back(d.path);
    std::vector<std::string> words;
    for (const auto* o : d.options)
      if (!o->get_positional())
        for (const auto& n : o->get_lnames()) words.push_back("--" + n);
    // Subcommands of this one.
    for (const auto& e : docs)
      if (e.path.size() > d.path.size() && e.path.rfind(d.path + " ", 0) == 0 &&
          e.path.find(' ', d.path.size() + 1) == std::string::npos)
        words.push_back(e.path.substr(d.path.size() + 1));
    cases += fmt::format("    \"{}\") words=\"{}\" ;;\n", d.path, fmt::join(words, " "));
  }
  return fmt::format(R"BASH(# bash completion for otarig, made by `otarig completion bash` from its command tree
_otarig() {{
  local cur prev path="" i w words
  cur="${{COMP_WORDS[COMP_CWORD]}}"
  prev="${{COMP_WORDS[COMP_CWORD-1]}}"
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="${{COMP_WORDS[i]}}"
    [[ "$w" == -* ]] && break
    case "${{path:+$path }}$w" in
{}      *) break ;;
    esac
    path="${{path:+$path }}$w"
  done
  case "$prev" in
    --board) COMPREPLY=($(compgen -W "$(otarig list boards --json 2>/dev/null | sed -n 's/^ *"board": "\(.*\)",$/\1/p')" -- "$cur")); compopt -o filenames 2>/dev/null; COMPREPLY+=($(compgen -f -X '!*.yaml' -- "$cur")); return ;;
    --scenario) COMPREPLY=($(compgen -W "$(otarig list scenarios --json 2>/dev/null | sed -n 's/^ *"scenario": "\(.*\)",$/\1/p')" -- "$cur")); return ;;
    --out|--calibration|--root|--payload|--key|--signing-key|--in|--tls-cert|--tls-key|--client-ca) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")); return ;;
  esac
  case "$path" in
    "") words="{}" ;;
{}    *) words="" ;;
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -F _otarig otarig
)BASH",
                     [&] {
                       std::string known;
                       for (const auto& d : docs)
                         if (!d.path.empty()) known += fmt::format("      \"{}\") ;;\n", d.path);
                       return known;
                     }(),
                     fmt::join(top, " "), cases);
}

// The exit status of an error that stopped a command, with its message on stderr.
int report_error() {
  try {
    throw;
  } catch (const InputError& e) {
    std::cerr << "otarig: " << e.what() << "\n";
    return 2;
  } catch (const BenchError& e) {
    std::cerr << "otarig: bench failure: " << e.what() << "\n";
    return 3;
  } catch (const std::invalid_argument& e) {
    std::cerr << "otarig: bad argument: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    // Whatever else stops a command is the bench's failure, never an abort.
    std::cerr << "otarig: bench failure: " << e.what() << "\n";
    return 3;
  }
}

}  // namespace

int cli_main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);
  CLI::App app{"otarig: a hardware-in-the-loop test rig for secure over-the-air updates"};
  app.require_subcommand(1);
  app.set_version_flag("--version", fmt::format("otarig {} ({})", version_string(), git_revision()));

  RunCommand run;
  run.add(app);
  ListCommand list;
  list.add(app);
  auto* image_cmd = app.add_subcommand("image", "build, tamper with or inspect images");
  image_cmd->require_subcommand(1);
  ImageBuildCommand build;
  build.add(*image_cmd);
  ImageTamperCommand tamper;
  tamper.add(*image_cmd);
  ImageInspectCommand inspect;
  inspect.add(*image_cmd);
  ImageApplyCommand apply;
  apply.add(*image_cmd);
  DetectCommand detect;
  detect.add(app);
  auto* report_cmd = app.add_subcommand("report", "check evidence bundles");
  report_cmd->require_subcommand(1);
  VerifyCommand verify;
  verify.add(*report_cmd);
  MergeCommand merge;
  merge.add(*report_cmd);
  BenchCommand bench;
  bench.add(app);
  auto* man_cmd = app.add_subcommand("man", "print the man page (troff), made from this help text");
  std::string shell;
  auto* completion_cmd = app.add_subcommand("completion", "print the shell completion script");
  completion_cmd->add_option("shell", shell, "bash")->required();
  // The driver families' own commands (`serve`, `proxy`).
  std::vector<std::pair<CLI::App*, std::function<int()>>> family_commands;
  for (const auto& [name, add] : builtin_registries().drivers.commands()) {
    auto start = add(app);
    family_commands.emplace_back(app.get_subcommand(name), std::move(start));
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e) == 0 ? 0 : 2;  // --help, --version
    // A usage error speaks as every other error of the rig does.
    std::cerr << "otarig: " << e.what() << "\nRun with --help for more information.\n";
    return 2;
  }

  try {
    if (*run.cmd) return run();
    if (*list.cmd) return list();
    if (*detect.cmd) return detect();
    for (const auto& [subcommand, start] : family_commands)
      if (*subcommand) return start();
    if (*build.cmd) return build();
    if (*tamper.cmd) return tamper();
    if (*inspect.cmd) return inspect();
    if (*apply.cmd) return apply();
    if (*verify.cmd) return verify();
    if (*merge.cmd) return merge();
    if (*bench.cmd) return bench();
    if (*man_cmd) {
      std::cout << man_page(app);
      return 0;
    }
    if (*completion_cmd) {
      if (shell != "bash") throw InputError(fmt::format("otarig completion {}: only bash is supported", shell));
      std::cout << bash_completion(app);
      return 0;
    }
  } catch (...) {
    return report_error();
  }
  return 0;
}

}  // namespace otarig::harness
