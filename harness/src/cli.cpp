#include "otarig/harness/cli.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <iterator>

#include "otarig/harness/composition.hpp"
#include "otarig/core/image.hpp"
#include "otarig/drivers/clients/package.hpp"
#include "otarig/harness/bench.hpp"
#include "otarig/harness/campaign.hpp"
#include "otarig/harness/detection.hpp"
#include "otarig/harness/journal.hpp"
#include "otarig/harness/releases.hpp"
#include "otarig/drivers/net/fault_proxy.hpp"
#include "otarig/drivers/net/http_server.hpp"
#include "otarig/core/read_file.hpp"
#include "otarig/reports/merge.hpp"
#include "otarig/reports/verify.hpp"

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

// A whole decimal number in min..max: no sign, no spaces, nothing that wraps.
std::uint64_t parse_number(const std::string& text, std::uint64_t min, std::uint64_t max,
                           const std::string& option) {
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || v < min || v > max)
    throw InputError(fmt::format("{} {}: expected a whole number from {} to {}", option, text, min, max));
  return v;
}

void write_file(const std::string& path, std::span<const std::uint8_t> bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw BenchError(fmt::format("{}: cannot write file", path));
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

int cmd_run(const CampaignOptions& base, bool progress_flag, bool quiet) {
  CampaignOptions opts = base;
  ProgressBar bar(progress_flag && ::isatty(2));
  opts.on_progress = [&](const Progress& p) { bar.update(p); };
  std::vector<std::string> lines;
  opts.on_finding = [&](const std::string& line) { lines.push_back(line); };
  auto result = run_campaign(opts, builtin_registries());
  bar.finish();
  // Trials finish in any order across jobs; findings print in trial order.
  std::sort(lines.begin(), lines.end());
  const std::size_t shown = 20;
  for (std::size_t i = 0; i < lines.size() && i < shown; ++i) std::cout << lines[i] << "\n";
  if (lines.size() > shown) std::cout << fmt::format("... and {} more findings in run.json\n", lines.size() - shown);
  if (!quiet && result.run.contains("skipped"))
    for (const auto& k : result.run["skipped"])
      std::cout << fmt::format("skipped {}: {}\n", k.value("scenario", ""), k.value("reason", ""));
  if (!quiet) {
    std::cout << summary_line(result.run, result.aborted) << "\n";
    std::cout << fmt::format("evidence: {}\n", result.out.string());
  }
  if (!result.aborted.empty()) std::cerr << "otarig: bench failure: " << result.aborted << "\n";
  return result.exit_code();
}

int cmd_list(const std::string& what) {
  if (what == "boards") {
    // Each profile is checked as `otarig run` binds it (its driver sections
    // too, opening nothing); a bad one is named with its file and line on
    // stderr, the good ones are listed, and the exit status is 2.
    bool invalid = false;
    std::set<std::string> seen;
    for (const auto& d : data_dirs()) {
      auto dir = d / "boards";
      if (!std::filesystem::is_directory(dir)) continue;
      std::vector<std::filesystem::path> files;
      for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
        if (e.path().extension() == ".yaml") files.push_back(e.path());
      std::sort(files.begin(), files.end());
      for (const auto& f : files) {
        auto rel = std::filesystem::relative(f, d).string();
        if (!seen.insert(rel).second) continue;
        try {
          auto p = load_profile(f);
          validate_drivers(p, builtin_registries().drivers);
          std::cout << fmt::format("{:<44} {:<10} {}\n", rel, p.device_kind, p.description);
        } catch (const InputError& e) {
          std::cerr << "otarig: " << e.what() << "\n";
          invalid = true;
        }
      }
    }
    return invalid ? 2 : 0;
  }
  if (what == "scenarios") {
    for (const auto& f : catalog_scenarios()) {
      try {
        auto s = load_scenario(f.string());
        std::string kind = s.is_suite() ? fmt::format("suite of {}", s.parts.size()) : s.fault.kind;
        std::cout << fmt::format("{:<24} {:<14} [{}] {}\n", s.name, kind, fmt::join(s.classes, ","), s.title);
      } catch (const InputError& e) {
        std::cout << fmt::format("{:<24} INVALID: {}\n", f.stem().string(), e.what());
      }
    }
    return 0;
  }
  if (what == "faults") {
    for (const auto* k : builtin_registries().faults.all())
      std::cout << fmt::format("{:<16} {:<8} {}\n", k->name(), k->where(), k->summary());
    return 0;
  }
  throw InputError(fmt::format("otarig list {}: expected boards, scenarios or faults", what));
}

}  // namespace

int cli_main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);
  CLI::App app{"otarig: a hardware-in-the-loop test rig for secure over-the-air updates"};
  app.require_subcommand(1);
  app.set_version_flag("--version", fmt::format("otarig {} ({})", version_string(), git_revision()));

  CampaignOptions run;
  std::string shard, trial, run_seed, run_trials, run_jobs, run_calibration;
  bool no_progress = false, quiet = false;
  auto* run_cmd = app.add_subcommand("run", "run a campaign: board x scenario x seed");
  run_cmd->add_option("--board", run.board, "board profile: a path or a name from `otarig list boards`")->required();
  run_cmd->add_option("--scenario", run.scenario, "scenario: a path or a name from `otarig list scenarios`")
      ->required();
  run_cmd->add_option("--seed", run_seed, "campaign seed (every random choice derives from it)");
  run_cmd->add_option("--trials", run_trials, "run this many trials of the plan, chosen by the seed");
  run_cmd->add_option("--trial", trial, "run only this trial (as printed in a replay command)");
  run_cmd->add_option("--shard", shard, "run shard I of N (I/N): the trials whose index % N == I");
  run_cmd->add_option("--out", run.out, "evidence folder");
  run_cmd->add_flag("--resume", run.resume, "continue the campaign journaled in --out");
  run_cmd->add_option("--calibration", run_calibration,
                      "place time cuts by the clean-update timings of this earlier run (its evidence folder, "
                      "journal.jsonl or run.json) instead of timing an update afresh");
  run_cmd->add_option("--jobs", run_jobs,
                      "devices in parallel (virtual and process boards: default 2 where there are 2 cores; "
                      "any other board: 1)");
  run_cmd->add_flag("--no-progress", no_progress, "no progress bar");
  run_cmd->add_flag("-q,--quiet", quiet, "print findings only");
  std::string signing_key, bundle_url;
  run_cmd->add_option("--signing-key", signing_key,
                      "Ed25519 PEM key that signs the attestation (default: a one-off test key)");
  run_cmd->add_option("--url", bundle_url, "link to the CI job or lab record, kept in the attestation");

  std::string list_what;
  auto* list_cmd = app.add_subcommand("list", "list boards, scenarios or faults");
  list_cmd->add_option("what", list_what, "boards | scenarios | faults")->required();

  auto* image_cmd = app.add_subcommand("image", "build, tamper with or inspect images");
  image_cmd->require_subcommand(1);
  std::string b_version, b_key, b_out, b_payload, b_genkey, b_counter, b_size;
  bool b_selftest_fail = false;
  auto* build = image_cmd->add_subcommand("build", "build a signed image");
  build->add_option("--version", b_version, "major.minor.patch[+build]")->required();
  build->add_option("--counter", b_counter, "security counter")->required();
  build->add_option("--payload", b_payload, "payload file");
  build->add_option("--payload-size", b_size, "generate a deterministic payload of this many bytes");
  build->add_option("--key", b_key, "Ed25519 PEM private key, or test:LABEL")->required();
  build->add_option("--generate-key", b_genkey, "write a new Ed25519 key to this PEM file and sign with it");
  build->add_flag("--self-test-fail", b_selftest_fail, "mark the image as one whose self-test fails");
  build->add_option("--out", b_out, "output image")->required();
  // Packages for real OTA clients (docs/ota-clients.md): the otarig image as
  // the slot content of a signed .swu or .raucb.
  std::string b_format = "otarig", b_signer, b_hardware = "1.0", b_compatible = "otarig-board";
  build->add_option("--format", b_format, "otarig (the image), swu (SWUpdate) or raucb (RAUC bundle)")
      ->check(CLI::IsMember({"otarig", "swu", "raucb"}))
      ->capture_default_str();
  build->add_option("--signer", b_signer,
                    "swu/raucb: folder with ca.pem, signer.pem, signer.key (a fresh test PKI is written there "
                    "when it has none)");
  build->add_option("--hardware", b_hardware, "swu: hardware-compatibility revision")->capture_default_str();
  build->add_option("--compatible", b_compatible, "raucb: the system's compatible")->capture_default_str();

  std::string t_in, t_out, t_flip, t_resign, t_version;
  std::string t_truncate, t_append;
  bool t_strip = false;
  auto* tamper = image_cmd->add_subcommand("tamper", "damage an image");
  tamper->add_option("--in", t_in, "input image")->required();
  tamper->add_option("--out", t_out, "output image")->required();
  auto* g = tamper->add_option_group("damage", "exactly one damage");
  g->add_option("--flip-bit", t_flip, "OFFSET[:BIT] flip one bit");
  g->add_option("--truncate", t_truncate, "keep only the first N bytes");
  g->add_option("--append", t_append, "append N bytes (0x5a)");
  g->add_option("--resign", t_resign, "re-sign with this key (PEM or test:LABEL)");
  g->add_flag("--strip-signature", t_strip, "zero the signature and key id");
  g->add_option("--set-version", t_version, "edit the header version without re-signing");
  g->require_option(1);

  std::string i_file, i_key;
  auto* inspect = image_cmd->add_subcommand("inspect", "parse and check an image");
  inspect->add_option("file", i_file, "image")->required();
  inspect->add_option("--key", i_key, "trusted key (PEM or test:LABEL) to check the signature against");

  harness::DetectionOptions detect;
  std::vector<std::string> detect_boards;
  std::string detect_seed = std::to_string(detect.seed), detect_jobs;
  auto* detect_cmd = app.add_subcommand(
      "detect", "run a scenario on every board of a catalog and print the detection table (docs/detection.md)");
  detect_cmd->add_option("boards", detect_boards, "board profiles, or folders searched for *.yaml profiles")
      ->required();
  detect_cmd->add_option("--scenario", detect.scenario, "scenario run on every board")->capture_default_str();
  detect_cmd->add_option("--seed", detect_seed, "campaign seed")->capture_default_str();
  detect_cmd->add_option("--jobs", detect_jobs, "benches in parallel per campaign");
  detect_cmd->add_option("--out", detect.out, "keep each campaign's evidence in OUT/<board>/");
  detect_cmd->add_option("--kind", detect.kinds, "only boards of this device kind (repeatable)");

  auto* report_cmd = app.add_subcommand("report", "check evidence bundles");
  report_cmd->require_subcommand(1);
  std::string v_dir, v_key;
  auto* verify = report_cmd->add_subcommand("verify", "check an evidence bundle: manifest, journal chain, signature");
  verify->add_option("dir", v_dir, "evidence folder")->required();
  verify->add_option("--key", v_key, "the public key (PEM) the attestation must be signed with");
  std::vector<std::string> m_dirs;
  std::string m_out, m_key, m_trusted;
  bool m_allow_missing = false;
  auto* merge = report_cmd->add_subcommand("merge", "join the shard bundles of one campaign into one bundle");
  merge->add_option("dirs", m_dirs, "shard evidence folders")->required();
  merge->add_option("--out", m_out, "merged evidence folder")->required();
  merge->add_option("--signing-key", m_key, "Ed25519 PEM key that signs the merged attestation");
  merge->add_option("--key", m_trusted, "public key (PEM) every shard's attestation must verify with");
  merge->add_flag("--allow-missing-shards", m_allow_missing, "merge even when some shards are absent");

  drivers::net::ServeOptions serve_opts;
  std::string serve_tls_cert, serve_tls_key, serve_client_ca;
  auto* serve_cmd = app.add_subcommand("serve", "serve a release repository over HTTP(S) (loopback by default)");
  serve_cmd->add_option("--root", serve_opts.root, "directory to serve")->required();
  serve_cmd->add_option("--address", serve_opts.address, "address to listen on");
  serve_cmd->add_option("--port", serve_opts.port, "port (0: any free port, printed)");
  serve_cmd->add_option("--latest", serve_opts.latest, "release that /manifest.json names");
  serve_cmd->add_option("--tls-cert", serve_tls_cert, "server certificate (PEM): serve HTTPS");
  serve_cmd->add_option("--tls-key", serve_tls_key, "server key (PEM)");
  serve_cmd->add_option("--client-ca", serve_client_ca, "require client certificates signed by this CA (mTLS)");
  std::string serve_timeout;
  serve_cmd->add_option("--timeout", serve_timeout,
                        "milliseconds a read, a write or a TLS handshake may take before the client is dropped "
                        "(default 30000)");

  drivers::net::ProxyMainOptions proxy_opts;
  std::string proxy_impostor_cert, proxy_impostor_key;
  bool proxy_no_upstream_tls = false;
  auto* proxy_cmd = app.add_subcommand("proxy", "a TCP proxy that injects seeded faults (docs/network.md)");
  proxy_cmd->add_option("--listen", proxy_opts.listen, "PORT or ADDRESS:PORT");
  proxy_cmd->add_option("--upstream", proxy_opts.upstream, "HOST:PORT")->required();
  proxy_cmd->add_option("--fault", proxy_opts.fault, "fault spec, e.g. 'down:corrupt@offset=1000,count=4'");
  std::string proxy_seed;
  proxy_cmd->add_option("--seed", proxy_seed, "seed of every random choice");
  proxy_cmd->add_option("--threads", proxy_opts.threads, "io threads");
  auto proxy_spin_us = static_cast<long>(proxy_opts.spin.count());
  proxy_cmd->add_option("--spin", proxy_spin_us,
                        "microseconds a proxy thread keeps polling after a handler before it sleeps (0 to 10000)");
  proxy_cmd->add_option("--impostor-cert", proxy_impostor_cert, "certificate the impostor endpoint presents");
  proxy_cmd->add_option("--impostor-key", proxy_impostor_key, "its key");
  proxy_cmd->add_flag("--no-upstream-tls", proxy_no_upstream_tls, "the impostor relays to a plain upstream");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  try {
    if (*run_cmd) {
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
    if (*list_cmd) return cmd_list(list_what);
    if (*detect_cmd) {
      detect.seed = parse_number(detect_seed, 0, UINT64_MAX, "--seed");
      if (!detect_jobs.empty())
        detect.jobs = static_cast<unsigned>(parse_number(detect_jobs, 0, kMaxJobs, "--jobs"));
      detect.boards.assign(detect_boards.begin(), detect_boards.end());
      detect.on_board = [](const std::string& line) { std::cerr << line << "\n"; };
      return detection_main(detect, std::cout);
    }
    if (*serve_cmd) {
      if (!serve_timeout.empty())
        serve_opts.timeout = std::chrono::milliseconds(parse_number(serve_timeout, 1, 3600000, "--timeout"));
      serve_opts.tls_cert = serve_tls_cert;
      serve_opts.tls_key = serve_tls_key;
      serve_opts.client_ca = serve_client_ca;
      return drivers::net::serve_main(serve_opts, std::cout);
    }
    if (*proxy_cmd) {
      if (!proxy_seed.empty()) proxy_opts.seed = parse_number(proxy_seed, 0, UINT64_MAX, "--seed");
      proxy_opts.impostor_cert = proxy_impostor_cert;
      proxy_opts.impostor_key = proxy_impostor_key;
      proxy_opts.upstream_tls = !proxy_no_upstream_tls;
      proxy_opts.spin = std::chrono::microseconds(proxy_spin_us);
      return drivers::net::proxy_main(proxy_opts, std::cout);
    }
    if (*build) {
      image::Header h;
      h.version = image::Version::parse(b_version);
      h.security_counter = static_cast<std::uint32_t>(parse_number(b_counter, 0, UINT32_MAX, "--counter"));
      if (b_selftest_fail) h.flags |= image::kFlagSelfTestFails;
      image::Bytes payload;
      if (!b_payload.empty())
        payload = read_file(b_payload, "payload");
      else if (!b_size.empty())
        payload = image::synthetic_payload(parse_number(b_size, 1, kMaxPayload, "--payload-size"), b_version);
      else throw InputError("otarig image build: give --payload FILE or --payload-size N");
      if (payload.size() > kMaxPayload)
        throw InputError(fmt::format("{}: a payload of {} bytes is more than the {} an image carries",
                                     b_payload, payload.size(), kMaxPayload));
      h.payload_size = static_cast<std::uint32_t>(payload.size());
      std::optional<crypto::Ed25519Key> key;
      if (!b_genkey.empty()) {
        key = crypto::Ed25519Key::generate();
        key->save_pem(b_genkey);
      } else {
        key = load_key_ref(b_key, ".");
      }
      auto img = image::build(h, payload, *key);
      if (b_format != "otarig") {
        if (b_signer.empty()) throw InputError("otarig image build: --format " + b_format + " needs --signer DIR");
        namespace cl = drivers::clients;
        if (!std::filesystem::exists(std::filesystem::path(b_signer) / "signer.key"))
          cl::SigningPki::generate("otarig package").write(b_signer);
        const auto pki = cl::SigningPki::read(b_signer);
        const auto content = cl::package_content(img);
        const auto pkg = b_format == "swu"
                             ? cl::swu_archive(cl::swu_parts(content, &pki.signer, b_hardware))
                             : cl::rauc_bundle(cl::rauc_manifest(content, b_compatible), img, pki.signer,
                                               pki.ca.cert_pem);
        write_file(b_out, pkg);
        std::cout << fmt::format("{}: {} {} bytes, version {}, signer {}/signer.pem, slot image digest {}\n", b_out,
                                 b_format, pkg.size(), content.version, b_signer, device_digest(img));
        return 0;
      }
      write_file(b_out, img);
      std::cout << fmt::format("{}: {} bytes, version {}, counter {}, key {}, digest {}\n", b_out, img.size(),
                               h.version.str(), h.security_counter, crypto::hex(key->id()), device_digest(img));
      return 0;
    }
    if (*tamper) {
      auto in = read_file(t_in, "image");
      image::Bytes out;
      if (!t_flip.empty()) {
        if (in.empty()) throw InputError(fmt::format("{}: --flip-bit: the image is empty", t_in));
        auto colon = t_flip.find(':');
        const auto off =
            parse_number(t_flip.substr(0, colon), 0, in.size() - 1, t_in + ": --flip-bit offset");
        const auto bit = colon == std::string::npos
                             ? 0
                             : parse_number(t_flip.substr(colon + 1), 0, 7, t_in + ": --flip-bit bit");
        out = image::tamper::flip_bit(in, static_cast<std::size_t>(off), static_cast<unsigned>(bit));
      } else if (!t_truncate.empty()) {
        const auto n = parse_number(t_truncate, 0, in.size(), "--truncate");
        out = image::tamper::truncate(in, static_cast<std::size_t>(n));
      } else if (!t_append.empty()) {
        const auto n = parse_number(t_append, 0, kMaxImageBytes - in.size(), "--append");
        out = image::tamper::append(in, image::Bytes(static_cast<std::size_t>(n), 0x5a));
      } else if (!t_resign.empty()) {
        out = image::tamper::resign(in, load_key_ref(t_resign, "."));
      } else if (t_strip) {
        out = image::tamper::strip_signature(in);
      } else {
        out = image::tamper::set_version(in, image::Version::parse(t_version));
      }
      write_file(t_out, out);
      std::cout << fmt::format("{}: {} bytes\n", t_out, out.size());
      return 0;
    }
    if (*inspect) {
      auto bytes = read_file(i_file, "image");
      auto p = image::parse(bytes, i_file);
      std::cout << fmt::format("version {}\nsecurity_counter {}\npayload_size {}\nflags 0x{:x}\nkey_id {}\ndigest {}\n",
                               p.header.version.str(), p.header.security_counter, p.header.payload_size,
                               p.header.flags, crypto::hex(p.trailer.key_id), device_digest(bytes));
      if (!i_key.empty()) {
        std::vector<crypto::PublicKey> trusted{load_key_ref(i_key, ".").public_key()};
        auto c = image::check(bytes, trusted);
        std::cout << (c.ok() ? "check ok\n" : "check FAILED: " + c.reason + "\n");
        return c.ok() ? 0 : 1;
      }
      return 0;
    }
    if (*verify) {
      std::optional<std::filesystem::path> key;
      if (!v_key.empty()) key = v_key;
      auto r = reports::verify_bundle(v_dir, key);
      std::cout << reports::format_verify(r, v_dir);
      return r.exit_code();
    }
    if (*merge) {
      reports::MergeOptions mo;
      if (!m_key.empty()) mo.bundle.signing_key = m_key;
      if (!m_trusted.empty()) mo.trusted_key = m_trusted;
      mo.allow_missing_shards = m_allow_missing;
      std::vector<std::filesystem::path> dirs(m_dirs.begin(), m_dirs.end());
      auto merged = reports::merge_bundles(dirs, m_out, mo);
      const auto& sum = merged["summary"];
      std::cout << fmt::format("merged {} shards into {}: {} trials, {} passed, {} failed, {} findings\n",
                               dirs.size(), m_out, sum.value("trials", 0), sum.value("passed", 0),
                               sum.value("failed", 0), sum.value("findings", 0));
      return sum.value("findings", 0) ? 1 : 0;
    }
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
  return 0;
}

}  // namespace otarig::harness
