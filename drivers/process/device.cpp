// The shared state of a networked board (a process board, a lab board):
// storage folder, update server and fault proxy, the environment passed to a
// device program, provisioning.
#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <system_error>

#include "temp_names.hpp"
#include "otarig/core/crypto.hpp"
#include "otarig/core/errors.hpp"
#include "otarig/drivers/net/fault_proxy.hpp"
#include "otarig/drivers/net/fault_spec.hpp"
#include "otarig/drivers/net/http_server.hpp"
#include "otarig/drivers/net/hawkbit_ddi.hpp"
#include "otarig/drivers/net/mender_api.hpp"
#include "otarig/drivers/net/pki.hpp"
#include "otarig/drivers/process/board.hpp"
#include "otarig/drivers/process/flash_file.hpp"
#ifdef OTARIG_HAVE_BENCH_DRIVERS
#include "otarig/drivers/bench/io.hpp"
#include "otarig/drivers/bench/process.hpp"
#endif
#ifdef OTARIG_HAVE_CLIENTS_DRIVERS
#include "otarig/drivers/clients/device.hpp"
#endif

namespace otarig::drivers::process {
namespace {

DeviceConfig::Tls parse_tls(const Config& c) {
  const auto v = c.as_string();
  if (v == "off" || v == "none" || v == "false" || v == "no") return DeviceConfig::Tls::off;
  if (v == "tls" || v == "on" || v == "true" || v == "yes") return DeviceConfig::Tls::tls;
  if (v == "mutual" || v == "mtls") return DeviceConfig::Tls::mutual;
  c.fail(fmt::format("unknown tls mode '{}' (known: off, tls, mutual)", v));
}

bool is_ipv4_address(const std::string& text) {
  in_addr v4{};
  return ::inet_pton(AF_INET, text.c_str(), &v4) == 1;
}

void write_file_atomically(const std::filesystem::path& file, std::span<const std::uint8_t> bytes) {
  auto tmp = file;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw std::system_error(errno, std::generic_category(), fmt::format("write {}", tmp.string()));
  }
  std::filesystem::rename(tmp, file);
}

}  // namespace

bool inside_storage(std::string_view path, std::string_view storage) {
  const std::string p(path);
  auto under = [&](std::string_view root) {
    if (root.empty() || p.rfind(root, 0) != 0) return false;
    return p.size() == root.size() || p[root.size()] == '/' || root.back() == '/';
  };
  std::string rest;
  if (under("${storage}"))
    rest = p.substr(std::string_view("${storage}").size());
  else if (!storage.empty() && storage.front() == '/' && under(storage))
    rest = p.substr(storage.size());
  else if (!p.empty() && p.front() != '/' && p.front() != '$')
    rest = p;  // relative: under the storage folder
  else
    return false;
  // No way out through "..".
  std::size_t depth = 0, i = 0;
  while (i <= rest.size()) {
    auto slash = rest.find('/', i);
    if (slash == std::string::npos) slash = rest.size();
    const auto part = std::string_view(rest).substr(i, slash - i);
    if (part == "..") {
      if (depth == 0) return false;
      --depth;
    } else if (!part.empty() && part != ".") {
      ++depth;
    }
    i = slash + 1;
  }
  return true;
}

std::string DeviceConfig::power_loss_text() const {
  return power_loss == PowerLoss::crash ? std::string("crash") : "kill: " + power_loss_reason;
}

namespace {

using PowerLoss = DeviceConfig::PowerLoss;
using ProvisionFormat = DeviceConfig::ProvisionFormat;
using Tls = DeviceConfig::Tls;

// `power_loss: crash` | {model: crash} | {model: kill, reason: "why the crash model does not apply"}
void parse_power_loss(const Config& loss, DeviceConfig& cfg) {
  std::string model;
  if (loss.is_map()) {
    loss.only_keys({"model", "reason"});
    model = loss.at("model").as_string();
    if (auto reason = loss.find("reason")) cfg.power_loss_reason = reason->as_string();
  } else {
    model = loss.as_string();
  }
  if (model == "crash") {
    if (loss.is_map() && loss.has("reason"))
      loss.at("reason").fail("`reason` applies to `model: kill` (why the crash model is turned off)");
    cfg.power_loss = PowerLoss::crash;
  } else if (model == "kill") {
    cfg.power_loss = PowerLoss::kill;
    auto blank = cfg.power_loss_reason.find_first_not_of(" \t\n") == std::string::npos;
    if (blank)
      (loss.is_map() && loss.has("reason") ? loss.at("reason") : loss)
          .fail("`power_loss: kill` turns the crash model off and needs a written reason: "
                "power_loss: {model: kill, reason: \"...\"} (the report shows it)");
  } else {
    (loss.is_map() ? loss.at("model") : loss)
        .fail(fmt::format("unknown power_loss model '{}' (known: crash, kill)", model));
  }
}

void parse_network(const Config& net, DeviceConfig& cfg) {
  net.only_keys({"server", "tls", "proxy", "listen", "port", "pki", "names", "legacy_ciphers", "length_required",
                 "tls_reason", "device_api"});
  cfg.server = net.bool_or("server", true);
  // length_required: read by the harness (BoardAbilities), checked here.
  if (net.has("length_required")) (void)net.at("length_required").as_bool();
  if (auto tls = net.find("tls")) cfg.tls = parse_tls(*tls);
  cfg.proxy = net.bool_or("proxy", true);
  if (!cfg.server && cfg.tls != Tls::off) net.at("tls").fail("TLS needs the update server (server: true)");
  // tls_reason: why the device's client does no more TLS than `tls` says
  // (off: none; tls: no client certificate); read by the harness
  // (BoardAbilities), which skips the TLS scenarios the client cannot run
  // with it.
  if (auto why = net.find("tls_reason")) {
    if (cfg.tls == Tls::mutual)
      why->fail("`tls_reason` says why a device does without TLS or without a client certificate "
                "(tls: off or tls), not with tls: mutual");
    if (why->as_string().empty())
      why->fail("say why the device's client downloads without TLS or without a client certificate");
  }
  if (auto listen = net.find("listen")) {
    cfg.listen = listen->as_string();
    if (!is_ipv4_address(cfg.listen))
      listen->fail(fmt::format(
          "listen is an IPv4 address of the rig (127.0.0.1, 0.0.0.0 for every address, 192.168.7.1), not '{}'",
          cfg.listen));
  }
  if (auto port = net.find("port")) {
    const auto v = port->as_int();
    if (v < 0 || v > 65535) port->fail("a port is 0..65535 (0: an ephemeral one)");
    cfg.port = static_cast<std::uint16_t>(v);
  }
  if (auto pki = net.find("pki")) {
    if (cfg.tls == Tls::off) pki->fail("`pki` needs TLS (tls: tls or mutual)");
    cfg.pki = pki->as_string();
    if (cfg.pki.empty()) pki->fail("name the folder with ca.pem, server.pem and server.key");
  }
  if (auto legacy = net.find("legacy_ciphers")) {
    cfg.legacy_ciphers = legacy->as_bool();
    if (cfg.tls == Tls::off && cfg.legacy_ciphers)
      legacy->fail("`legacy_ciphers` needs TLS (tls: tls or mutual)");
  }
  if (auto names = net.find("names")) {
    if (cfg.tls == Tls::off) names->fail("`names` needs TLS (tls: tls or mutual)");
    if (net.has("pki")) names->fail("`names` applies to the fresh test certificates, not to `pki`");
    cfg.names = names->as_string_list();
  }
  if (auto api = net.find("device_api")) {
    // device_api: {protocol: mender, device_type: NAME}
    //           | {protocol: hawkbit, tenant: T, controller_id: ID, artifact: NAME.swu}
    cfg.device_api = api->at("protocol").as_string();
    if (cfg.device_api == "mender") {
      api->only_keys({"protocol", "device_type"});
      cfg.device_type = api->string_or("device_type", cfg.device_type);
    } else if (cfg.device_api == "hawkbit") {
      api->only_keys({"protocol", "tenant", "controller_id", "artifact"});
      cfg.ddi_tenant = api->string_or("tenant", cfg.ddi_tenant);
      cfg.ddi_controller_id = api->string_or("controller_id", cfg.ddi_controller_id);
      cfg.ddi_artifact = api->string_or("artifact", cfg.ddi_artifact);
      // The names go into URL paths: checked here, at their lines.
      try {
        net::HawkbitDdiApi check({cfg.ddi_tenant, cfg.ddi_controller_id, "", "", cfg.ddi_artifact});
      } catch (const InputError& e) {
        api->fail(e.what());
      }
    } else {
      api->at("protocol").fail(fmt::format("unknown device API '{}' (known: mender, hawkbit)", cfg.device_api));
    }
    if (!cfg.server) api->fail("`device_api` needs the update server (server: true)");
  }
  for (const char* k : {"listen", "port"})
    if (!cfg.server && net.has(k)) net.at(k).fail(fmt::format("`{}` needs the update server (server: true)", k));
}

// An MCU's factory programming through its debug probe (`probe:
// {driver: openocd}`): the regions to erase, then the image at `address`,
// the board powered meanwhile and off afterwards.
void parse_probe_provision(const Config& prov, DeviceConfig& cfg) {
  for (const char* k : {"file", "mode", "slot_size", "sector_size", "program_align", "metadata_sectors"})
    if (prov.has(k)) prov.at(k).fail(fmt::format("`{}` does not apply to format probe", k));
  cfg.provision_address = prov.at("address").as_uint();
  if (auto erase = prov.find("erase")) {
    for (const auto& region : erase->items()) {
      region.only_keys({"address", "size"});
      const auto size = region.at("size").as_size();
      if (size == 0) region.at("size").fail("an erased region is at least one byte");
      cfg.provision_erase.emplace_back(region.at("address").as_uint(), size);
    }
  }
  cfg.provision_verify = prov.bool_or("verify", true);
  cfg.provision_timeout = prov.duration_or("timeout", cfg.provision_timeout);
  if (cfg.provision_timeout.count() <= 0) prov.at("timeout").fail("must be positive");
}

// A lab board's factory programming: a debug probe's command line
// (openocd -c "program ${image} ..."), an SD-card mux and dd, a script.
void parse_command_provision(const Config& prov, DeviceConfig& cfg) {
  for (const char* k : {"file", "mode", "slot_size", "sector_size", "program_align", "metadata_sectors"})
    if (prov.has(k)) prov.at(k).fail(fmt::format("`{}` does not apply to format command", k));
#ifndef OTARIG_HAVE_BENCH_DRIVERS
  prov.at("format").fail("this otarig was built without the bench driver family (which runs commands)");
#endif
  auto cmd = prov.at("command");
  if (cmd.is_sequence()) {
    cfg.provision_command = cmd.as_string_list();
  } else {
    cfg.provision_command = {cmd.as_string()};
    cfg.provision_shell = true;
  }
  if (cfg.provision_command.empty() || cfg.provision_command.front().empty()) cmd.fail("the command is empty");
  cfg.provision_timeout = prov.duration_or("timeout", cfg.provision_timeout);
  cfg.provision_powered = prov.bool_or("powered", false);
  if (cfg.provision_timeout.count() <= 0) prov.at("timeout").fail("must be positive");
}

// A real-client board (docs/ota-clients.md): slot files and boot state in one folder.
void parse_client_slots(const Config& prov, DeviceConfig& cfg) {
  for (const char* k : {"file", "mode", "sector_size", "program_align", "metadata_sectors"})
    if (prov.has(k)) prov.at(k).fail(fmt::format("`{}` does not apply to format client-slots", k));
  cfg.client_dir = prov.string_or("dir", "${storage}");
  if (cfg.kind == "process" && cfg.power_loss == PowerLoss::crash && !inside_storage(cfg.client_dir, cfg.storage))
    prov.at("dir").fail(fmt::format(
        "'{}' is outside the device's storage folder: the crash model sees only the storage folder "
        "(${{storage}}); keep the slots under ${{storage}}, or turn the model off with "
        "power_loss: {{model: kill, reason: \"...\"}}",
        cfg.client_dir));
  cfg.client_bootloader = prov.string_or("bootloader", cfg.client_bootloader);
#ifdef OTARIG_HAVE_CLIENTS_DRIVERS
  if (!clients::parse_bootloader(cfg.client_bootloader))
    prov.at("bootloader").fail(fmt::format("unknown bootloader '{}' (known: uboot-env, rauc-custom, mender-uboot)",
                                            cfg.client_bootloader));
#else
  prov.at("format").fail("this otarig was built without the clients driver family");
#endif
  cfg.client_slot_size = prov.size_or("slot_size", cfg.client_slot_size);
  if (cfg.client_slot_size < 4096 || cfg.client_slot_size > (std::uint64_t{1} << 32))
    prov.at("slot_size").fail("must be 4KiB..4GiB");
  const auto limit = prov.size_or("bootlimit", cfg.client_bootlimit);
  if (limit < 1 || limit > 100) prov.at("bootlimit").fail("must be 1..100");
  cfg.client_bootlimit = static_cast<std::uint32_t>(limit);
}

// An image written into a file the device reads (otarig-vboard's flash, a raw image).
void parse_file_provision(const Config& prov, DeviceConfig& cfg) {
  cfg.provision_file = prov.at("file").as_string();
  if (cfg.kind == "process" && cfg.power_loss == PowerLoss::crash &&
      !inside_storage(cfg.provision_file, cfg.storage))
    prov.at("file").fail(fmt::format(
        "'{}' is outside the device's storage folder: the crash model sees only the storage folder "
        "(${{storage}}), so writes to this file would survive every power cut; keep it under ${{storage}}, "
        "or turn the model off with power_loss: {{model: kill, reason: \"...\"}}",
        cfg.provision_file));
  if (cfg.provision != ProvisionFormat::vboard_flash) {
    for (const char* k : {"mode", "slot_size", "sector_size", "program_align", "metadata_sectors"})
      if (prov.has(k)) prov.at(k).fail(fmt::format("`{}` applies to format otarig-vboard only", k));
  } else {
    vboard::FlashGeometry g;
    g.slot_size = prov.size_or("slot_size", g.slot_size);
    g.sector_size = prov.size_or("sector_size", g.sector_size);
    g.program_align = prov.size_or("program_align", g.program_align);
    g.metadata_sectors =
        static_cast<std::uint32_t>(std::min<std::uint64_t>(prov.size_or("metadata_sectors", 2), 1024));
    try {
      cfg.vboard = vboard_config(prov.string_or("mode", "ab"), {}, g.sector_size, g, "provision");
    } catch (const InputError& e) {
      // "provision:LINE: PATH: message": the message, on the line it is about.
      std::string what = e.what();
      for (int i = 0; i < 2; ++i)
        if (auto colon = what.find(": "); colon != std::string::npos) what.erase(0, colon + 2);
      (prov.has("mode") && what.find("mode") != std::string::npos ? prov.at("mode") : prov).fail(what);
    }
  }
}

void parse_provision(const Config& prov, DeviceConfig& cfg) {
  prov.only_keys({"format", "file", "mode", "slot_size", "sector_size", "program_align", "metadata_sectors",
                   "dir", "bootloader", "bootlimit", "command", "timeout", "powered", "address", "erase",
                   "verify"});
  const auto format = prov.at("format").as_string();
  if (format == "otarig-vboard")
    cfg.provision = ProvisionFormat::vboard_flash;
  else if (format == "image-file")
    cfg.provision = ProvisionFormat::image_file;
  else if (format == "client-slots")
    cfg.provision = ProvisionFormat::client_slots;
  else if (format == "command")
    cfg.provision = ProvisionFormat::command;
  else if (format == "probe")
    cfg.provision = ProvisionFormat::probe;
  else
    prov.at("format").fail(fmt::format(
        "unknown provision format '{}' (known: otarig-vboard, image-file, client-slots, command, probe)", format));
  for (const char* k : {"dir", "bootloader", "bootlimit"})
    if (cfg.provision != ProvisionFormat::client_slots && prov.has(k))
      prov.at(k).fail(fmt::format("`{}` applies to format client-slots only", k));
  for (const char* k : {"command", "powered"})
    if (cfg.provision != ProvisionFormat::command && prov.has(k))
      prov.at(k).fail(fmt::format("`{}` applies to format command only", k));
  if (prov.has("timeout") && cfg.provision != ProvisionFormat::command &&
      cfg.provision != ProvisionFormat::probe)
    prov.at("timeout").fail("`timeout` applies to formats command and probe only");
  for (const char* k : {"address", "erase", "verify"})
    if (cfg.provision != ProvisionFormat::probe && prov.has(k))
      prov.at(k).fail(fmt::format("`{}` applies to format probe only", k));
  switch (cfg.provision) {
    case ProvisionFormat::probe: return parse_probe_provision(prov, cfg);
    case ProvisionFormat::command: return parse_command_provision(prov, cfg);
    case ProvisionFormat::client_slots: return parse_client_slots(prov, cfg);
    default: return parse_file_provision(prov, cfg);
  }
}

}  // namespace

DeviceConfig DeviceConfig::from_config(const Config& device, const std::string& kind) {
  if (kind == "lab")
    device.only_keys(
        {"kind", "model", "serial_number", "notes", "storage", "keep_storage", "network", "provision", "policy"});
  else
    device.only_keys({"kind", "storage", "keep_storage", "power_loss", "network", "provision", "policy"});
  DeviceConfig cfg;
  cfg.kind = kind;
  if (auto k = device.find("kind"); k && k->as_string() != kind)
    k->fail(fmt::format("expected kind '{}', found '{}'", kind, k->as_string()));
  for (const char* k : {"model", "serial_number", "notes"})
    if (auto c = device.find(k)) (void)c->as_string();
  cfg.storage = device.string_or("storage", "");
  cfg.keep_storage = device.bool_or("keep_storage", false);
  if (auto loss = device.find("power_loss")) parse_power_loss(*loss, cfg);
  if (auto net = device.find("network")) parse_network(*net, cfg);
  if (auto prov = device.find("provision")) parse_provision(*prov, cfg);
  return cfg;
}

DeviceHost::DeviceHost(DeviceConfig config, const BindContext& context)
    : cfg_(std::move(config)),
      board_(context.board_name),
      profile_dir_(context.profile_dir),
      trusted_(context.trusted_keys),
      trust_(context.trust),

      device_type_(context.device_type),
      encryption_secret_(context.encryption_secret ? crypto::hex(*context.encryption_secret) : std::string()) {
  clock_ = context.clock && !context.clock->is_manual() ? context.clock : &steady_;

  // Storage.
  try {
    if (cfg_.storage.empty()) {
      auto pattern =
          (std::filesystem::temp_directory_path() / ("otarig-" + safe_board_name(board_) + "-XXXXXX")).string();
      if (::mkdtemp(pattern.data()) == nullptr)
        throw std::system_error(errno, std::generic_category(), "mkdtemp " + pattern);
      storage_ = pattern;
      remove_storage_ = !cfg_.keep_storage;
    } else {
      std::filesystem::path p = expand(cfg_.storage);
      if (p.is_relative()) p = profile_dir_ / p;
      std::filesystem::create_directories(p);
      storage_ = std::filesystem::absolute(p);
    }
  } catch (const std::exception& e) {
    throw BenchError(fmt::format("{}: cannot create the device's storage folder: {}", board_, e.what()));
  }

  // The CA the device's OTA client trusts for signed packages.
  if (!context.package_trust_pem.empty()) {
    try {
      std::filesystem::create_directories(storage_ / "trust");
      package_ca_ = storage_ / "trust" / "package-ca.pem";
      const auto& pem = context.package_trust_pem;
      write_file_atomically(package_ca_, {reinterpret_cast<const std::uint8_t*>(pem.data()), pem.size()});
    } catch (const std::exception& e) {
      throw BenchError(fmt::format("{}: cannot write the package CA into the storage: {}", board_, e.what()));
    }
  }

  // The AES key the device's OTA client decrypts images with (SWUpdate's -K).
  if (!context.aes_key_file.empty()) {
    try {
      std::filesystem::create_directories(storage_ / "trust");
      aes_key_ = storage_ / "trust" / "aes-key";
      const auto& text = context.aes_key_file;
      write_file_atomically(aes_key_, {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()});
      std::filesystem::permissions(aes_key_, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    } catch (const std::exception& e) {
      throw BenchError(fmt::format("{}: cannot write the AES key into the storage: {}", board_, e.what()));
    }
  }

  // Network: the update server, and the fault proxy in front of it. What the
  // device connects to listens on `listen` (loopback unless the profile says
  // otherwise); the server behind the proxy stays on loopback.
  if (cfg_.server) {
    try {
      const std::string listen = cfg_.listen.empty() ? std::string("127.0.0.1") : cfg_.listen;
      connect_address_ = listen == "0.0.0.0" ? std::string("127.0.0.1") : listen;
      net::ServerOptions so;
      std::optional<net::TlsConfig> impostor;
      net::TlsConfig relay_client;  // what the impostor presents upstream: a relay the server lets through
      std::map<std::string, net::TlsConfig> lifecycle;  // certificate=NAME: the server's other certificates
      if (cfg_.tls != DeviceConfig::Tls::off) {
        net::TestPkiOptions names;
        if (connect_address_ != "127.0.0.1") names.ip_addresses.push_back(connect_address_);
        for (const auto& n : cfg_.names)
          (is_ipv4_address(n) || n.find(':') != std::string::npos ? names.ip_addresses : names.dns_names)
              .push_back(n);
        auto pki = net::TestPki::generate(names);
        impostor = net::TlsConfig{pki.impostor.cert_pem, pki.impostor.key_pem, {}, cfg_.legacy_ciphers};
        net::TlsConfig tls;
        if (cfg_.pki.empty()) {
          pki.write(storage_ / "tls");
          ca_ = storage_ / "tls" / "ca.pem";
          for (const auto& [name, ck] : pki.server_certificates())
            lifecycle[name] = net::TlsConfig{ck.cert_pem, ck.key_pem, {}, cfg_.legacy_ciphers};
          tls = {pki.server.cert_pem, pki.server.key_pem, {}};
          if (cfg_.tls == DeviceConfig::Tls::mutual) {
            tls.peer_ca_pem = pki.ca.cert_pem;
            client_cert_ = storage_ / "tls" / "client.pem";
            client_key_ = storage_ / "tls" / "client.key";
            relay_client = {pki.client.cert_pem, pki.client.key_pem, {}};
          }
        } else {
          // The certificates the device was provisioned with, out of band.
          std::filesystem::path dir = expand(cfg_.pki);
          if (dir.is_relative()) dir = profile_dir_ / dir;
          ca_ = dir / "ca.pem";
          tls = net::TlsConfig::from_files(dir / "server.pem", dir / "server.key",
                                           cfg_.tls == DeviceConfig::Tls::mutual ? ca_ : std::filesystem::path());
          (void)net::read_text_file(ca_);
          if (cfg_.tls == DeviceConfig::Tls::mutual) {
            client_cert_ = dir / "client.pem";
            client_key_ = dir / "client.key";
            relay_client = net::TlsConfig::from_files(client_cert_, client_key_);
          }
        }
        tls.legacy_ciphers = cfg_.legacy_ciphers;
        so.tls = tls;
      }
      so.address = cfg_.proxy ? std::string("127.0.0.1") : listen;
      so.port = cfg_.proxy ? 0 : cfg_.port;
      server_ = std::make_unique<net::UpdateServer>(so);
      // The device's identity is a secret the rig provisions into its
      // storage, the only one the server's device API accepts: a key
      // (Mender) or a target token (hawkBit).
      auto provision_secret = [&](const char* name, const std::string& text) {
        std::filesystem::create_directories(storage_ / "trust");
        auto file = storage_ / "trust" / name;
        write_file_atomically(file, {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()});
        std::filesystem::permissions(file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
        return file;
      };
      if (cfg_.device_api == "mender") {
        const auto key = net::generate_device_key_pem();
        device_key_ = provision_secret("device-key.pem", key);
        auto api = std::make_shared<net::MenderDeviceApi>();
        api->accept_device_key(key);
        device_api_ = std::move(api);
      } else if (cfg_.device_api == "hawkbit") {
        const auto token = net::generate_target_token();
        target_token_ = provision_secret("target-token", token);
        ddi_ = std::make_shared<net::HawkbitDdiApi>(
            net::HawkbitOptions{cfg_.ddi_tenant, cfg_.ddi_controller_id, token, "", cfg_.ddi_artifact});
        device_api_ = ddi_;
      }
      if (device_api_)
        server_->set_api([api = device_api_](const net::ApiRequest& r) { return api->handle(r); },
                         device_api_->path_prefix());
      server_->start();
      const char* scheme = cfg_.tls == DeviceConfig::Tls::off ? "http" : "https";
      if (cfg_.proxy) {
        net::ProxyOptions po;
        po.listen_address = listen;
        po.listen_port = cfg_.port;
        po.upstream_host = "127.0.0.1";
        po.upstream_port = server_->port();
        po.impostor = impostor;
        // A device that takes the impostor gets the real server's answers
        // through it (the impostor relays as a man in the middle would), so
        // the evidence shows what it sent and took, not a dropped connection.
        po.upstream_client = relay_client;
        po.upstream_client.legacy_ciphers = cfg_.legacy_ciphers;
        // ask-client-cert: the proxy speaks as the server, asking the device
        // for its client certificate without requiring it.
        if (cfg_.tls == DeviceConfig::Tls::mutual) po.server_identity = so.tls;
        po.server_certificates = lifecycle;
        po.upstream_is_tls = cfg_.tls != DeviceConfig::Tls::off;
        proxy_ = std::make_unique<net::FaultProxy>(po);
        proxy_->start();
        update_port_ = proxy_->port();
      } else {
        update_port_ = server_->port();
      }
      update_url_ = fmt::format("{}://{}:{}", scheme, connect_address_, update_port_);
      // The DDI's links point the device where it reaches the server.
      if (ddi_) ddi_->set_base_url(update_url_);
    } catch (const InputError& e) {
      throw InputError(fmt::format("{}: the update server's certificates: {}", board_, e.what()));
    } catch (const BenchError& e) {
      throw BenchError(fmt::format("{}: the update server for the device: {}", board_, e.what()));
    } catch (const std::exception& e) {
      throw BenchError(
          fmt::format("{}: cannot start the update server for the device: {}", board_, e.what()));
    }
  }
}

DeviceHost::~DeviceHost() {
  if (proxy_) proxy_->stop();
  if (server_) server_->stop();
  if (remove_storage_ && !storage_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(storage_, ignored);
  }
}

std::string DeviceHost::server_url() const { return server_ ? server_->base_url() : std::string(); }

std::string DeviceHost::expand(std::string_view text,
                                  const std::vector<std::pair<std::string, std::string>>& extra) const {
  std::string out;
  std::size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '$' && i + 1 < text.size() && text[i + 1] == '{') {
      auto close = text.find('}', i + 2);
      if (close != std::string_view::npos) {
        const auto name = text.substr(i + 2, close - i - 2);
        std::optional<std::string> value;
        if (name == "storage")
          value = storage_.string();
        else if (name == "board")
          value = board_;
        else if (name == "update_url")
          value = update_url_;
        else if (name == "update_port")
          value = std::to_string(update_port_);
        else if (name == "profile_dir")
          value = profile_dir_.string();
        else if (name == "package_ca")
          value = package_ca_.string();
        else if (name == "aes_key")
          value = aes_key_.string();
        else if (name == "device_type")
          value = device_type_;
        else if (name == "device_key")
          value = device_key_.string();
        else if (name == "target_token")
          value = target_token_.string();
        for (const auto& [k, v] : extra)
          if (name == k) value = v;
        if (value) {
          out += *value;
          i = close + 1;
          continue;
        }
      }
    }
    out += text[i++];
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> DeviceHost::environment() const {
  std::vector<std::pair<std::string, std::string>> env{
      {"OTARIG_BOARD", board_},
      {"OTARIG_STORAGE", storage_.string()},
  };
  if (!update_url_.empty()) env.emplace_back("OTARIG_UPDATE_URL", update_url_);
  std::string keys;
  for (const auto& k : trusted_) keys += (keys.empty() ? "" : ",") + crypto::hex(k);
  env.emplace_back("OTARIG_TRUSTED_KEYS", keys);
  // OTARIG_KEY_VALIDITY: KEYHEX=NOT_BEFORE:NOT_AFTER (UNIX seconds, 0 unbounded) for keys with a validity period.
  std::string validity;
  for (const auto& e : trust_)
    if (e.not_before || e.not_after)
      validity += fmt::format("{}{}={}:{}", validity.empty() ? "" : ",", crypto::hex(e.key), e.not_before, e.not_after);
  if (!validity.empty()) env.emplace_back("OTARIG_KEY_VALIDITY", validity);
  if (!device_type_.empty()) env.emplace_back("OTARIG_DEVICE_TYPE", device_type_);
  if (!encryption_secret_.empty()) env.emplace_back("OTARIG_ENCRYPTION_KEY", encryption_secret_);
  if (!ca_.empty()) env.emplace_back("OTARIG_CA", ca_.string());
  if (!package_ca_.empty()) env.emplace_back("OTARIG_PACKAGE_CA", package_ca_.string());
  if (!device_key_.empty()) env.emplace_back("OTARIG_DEVICE_KEY", device_key_.string());
  if (!target_token_.empty()) {
    env.emplace_back("OTARIG_TARGET_TOKEN", target_token_.string());
    env.emplace_back("OTARIG_DDI_TENANT", cfg_.ddi_tenant);
    env.emplace_back("OTARIG_DDI_CONTROLLER_ID", cfg_.ddi_controller_id);
  }
  if (!client_cert_.empty()) {
    env.emplace_back("OTARIG_CLIENT_CERT", client_cert_.string());
    env.emplace_back("OTARIG_CLIENT_KEY", client_key_.string());
  }
  return env;
}

void DeviceHost::provision(std::span<const std::uint8_t> image) {
  if (cfg_.provision == DeviceConfig::ProvisionFormat::none)
    throw BenchError(
        fmt::format("{}: the board has no provisioning (add `provision:` to its device section)", board_));
  std::shared_ptr<PowerProtocol> power;
  {
    std::lock_guard lock(power_mu_);
    power = power_.lock();
  }
  if (cfg_.provision == DeviceConfig::ProvisionFormat::probe) {
    program_with_probe(image, power.get());
    return;
  }
  if (cfg_.provision == DeviceConfig::ProvisionFormat::command) {
    if (power) {
      if (cfg_.provision_powered)
        power->on();
      else
        power->off();
    }
    run_provision_command(image);
    if (power) power->off();
    return;
  }
  if (power) power->off();
#ifdef OTARIG_HAVE_CLIENTS_DRIVERS
  if (cfg_.provision == DeviceConfig::ProvisionFormat::client_slots) {
    std::filesystem::path dir = expand(cfg_.client_dir);
    if (dir.is_relative()) dir = storage_ / dir;
    clients::ProvisionSpec spec;
    spec.bootloader = *clients::parse_bootloader(cfg_.client_bootloader);
    spec.slot_size = cfg_.client_slot_size;
    spec.bootlimit = cfg_.client_bootlimit;
    try {
      clients::provision_slots(clients::SlotLayout{dir}, spec, image);
    } catch (const InputError& e) {
      throw InputError(fmt::format("{}: provisioning {}: {}", board_, dir.string(), e.what()));
    } catch (const std::exception& e) {
      throw BenchError(fmt::format("{}: provisioning {}: {}", board_, dir.string(), e.what()));
    }
    return;
  }
#endif
  std::filesystem::path file = expand(cfg_.provision_file);
  if (file.is_relative()) file = storage_ / file;
  try {
    std::filesystem::create_directories(file.parent_path());
    if (cfg_.provision == DeviceConfig::ProvisionFormat::vboard_flash) {
      // One board makes every provisioned flash: it caches them per image.
      if (!provisioner_)
        provisioner_ = std::make_unique<vboard::VirtualBoard>(cfg_.vboard, std::vector<crypto::PublicKey>{});
      provisioner_->provision(image);
      write_flash_file(file, cfg_.vboard.layout(), provisioner_->flash().bytes());
      // The device's key store (keys rotated in or revoked since) is reset with it.
      std::filesystem::remove(file.string() + ".keys");
    } else {
      write_file_atomically(file, image);
    }
  } catch (const InputError&) {
    throw;
  } catch (const std::exception& e) {
    throw BenchError(fmt::format("{}: provisioning {}: {}", board_, file.string(), e.what()));
  }
}

void ProcessDevice::attach_power(const std::shared_ptr<ProcessPower>& power) {
  process_power_ = power;
  set_power(power);
}

void DeviceHost::set_power(std::weak_ptr<PowerProtocol> power) {
  std::lock_guard lock(power_mu_);
  power_ = std::move(power);
}

void DeviceHost::set_probe(std::weak_ptr<ProbeProtocol> probe) {
  std::lock_guard lock(power_mu_);
  probe_ = std::move(probe);
}

std::filesystem::path DeviceHost::provision_image_file(std::span<const std::uint8_t> image) const {
  const auto sha = crypto::hex(crypto::sha256(image));
  const auto file = storage_ / "provision" / fmt::format("image-{}.bin", sha.substr(0, 16));
  try {
    std::filesystem::create_directories(file.parent_path());
    write_file_atomically(file, image);
  } catch (const std::exception& e) {
    throw BenchError(fmt::format("{}: provisioning: cannot write {}: {}", board_, file.string(), e.what()));
  }
  return file;
}

void DeviceHost::program_with_probe(std::span<const std::uint8_t> image, PowerProtocol* power) {
  std::shared_ptr<ProbeProtocol> probe;
  {
    std::lock_guard lock(power_mu_);
    probe = probe_.lock();
  }
  if (!probe)
    throw BenchError(fmt::format("{}: provisioning by probe needs a `probe:` section (driver openocd)", board_));
  const auto file = provision_image_file(image);
  if (file.string().find_first_of("{}") != std::string::npos)
    throw BenchError(fmt::format("{}: provisioning: OpenOCD cannot take the path {}", board_, file.string()));
  const auto timeout = cfg_.provision_timeout;
  if (power) power->on();
  // OpenOCD commands (Tcl). The regions first (a slot's trailer left from an
  // earlier update would start a swap), then the image: `program` halts the
  // target (reset init), writes and verifies, and without `reset` leaves it
  // halted; the power goes off after.
  if (!cfg_.provision_erase.empty()) probe->command("reset halt", timeout);
  for (const auto& [address, size] : cfg_.provision_erase)
    probe->command(fmt::format("flash erase_address 0x{:x} 0x{:x}", address, size), timeout);
  probe->command(fmt::format("program {{{}}}{} 0x{:x}", file.string(), cfg_.provision_verify ? " verify" : "",
                             cfg_.provision_address),
                 timeout);
  if (power) power->off();
}

void DeviceHost::run_provision_command(std::span<const std::uint8_t> image) {
#ifdef OTARIG_HAVE_BENCH_DRIVERS
  const auto sha = crypto::hex(crypto::sha256(image));
  const auto file = provision_image_file(image);
  const std::vector<std::pair<std::string, std::string>> vars{
      {"image", file.string()}, {"size", std::to_string(image.size())}, {"sha256", sha}};
  bench::CommandSpec spec;
  if (cfg_.provision_shell) {
    spec = bench::CommandSpec::shell(expand(cfg_.provision_command.front(), vars));
  } else {
    for (const auto& a : cfg_.provision_command) spec.argv.push_back(expand(a, vars));
  }
  const auto timeout = cfg_.provision_timeout;
  auto io = bench::BenchIo::for_bench(board_);
  bench::CommandResult result;
  try {
    result = io->call_value<bench::CommandResult>(
        "provision", timeout,
        [&io, spec, timeout](std::function<void(std::exception_ptr, bench::CommandResult)> done) {
          bench::async_run_command(io->context(), spec, timeout, std::move(done));
        });
  } catch (const BenchError&) {
    throw;
  } catch (const std::exception& e) {
    throw BenchError(
        fmt::format("{}: provisioning: command '{}' could not be started: {}", board_, spec.text(), e.what()));
  }
  auto tail = [&] {
    auto out = result.output;
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r' || out.back() == ' ')) out.pop_back();
    if (out.size() > 400) out.erase(0, out.size() - 400);
    return out.empty() ? std::string() : ": " + out;
  };
  if (result.timed_out)
    throw TimeoutError(fmt::format("{}: provisioning: command '{}' did not finish within {} ms; its process "
                                   "group was killed{}",
                                   board_, spec.text(), timeout.count(), tail()));
  if (!result.status.success())
    throw BenchError(fmt::format("{}: provisioning: command '{}' failed with {}{}", board_, spec.text(),
                                 result.status.describe(), tail()));
#else
  (void)image;
  throw BenchError(fmt::format("{}: provisioning by command needs the bench driver family", board_));
#endif
}

}  // namespace otarig::drivers::process
