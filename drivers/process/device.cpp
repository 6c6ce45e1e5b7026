// The shared state of a process board: storage folder, update server and
// fault proxy, the environment passed to the device, provisioning.
#include <fcntl.h>
#include <fmt/format.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <system_error>

#include "otarig/drivers/crypto.hpp"
#include "otarig/drivers/errors.hpp"
#include "otarig/drivers/net/fault_proxy.hpp"
#include "otarig/drivers/net/fault_spec.hpp"
#include "otarig/drivers/net/http_server.hpp"
#include "otarig/drivers/net/pki.hpp"
#include "otarig/drivers/process/board.hpp"
#include "otarig/drivers/process/flash_file.hpp"
#ifdef OTARIG_HAVE_CLIENTS_DRIVERS
#include "otarig/drivers/clients/device.hpp"
#endif

namespace otarig::drivers::process {
namespace {

std::string safe_name(std::string_view name) {
  std::string out;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '_' || c == '.';
    out += ok ? c : '_';
  }
  if (out.empty()) out = "board";
  return out.substr(0, 40);
}

DeviceConfig::Tls parse_tls(const Config& c) {
  const auto v = c.as_string();
  if (v == "off" || v == "none" || v == "false" || v == "no") return DeviceConfig::Tls::off;
  if (v == "tls" || v == "on" || v == "true" || v == "yes") return DeviceConfig::Tls::tls;
  if (v == "mutual" || v == "mtls") return DeviceConfig::Tls::mutual;
  c.fail(fmt::format("unknown tls mode '{}' (known: off, tls, mutual)", v));
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

DeviceConfig DeviceConfig::from_config(const Config& device) {
  device.only_keys({"kind", "storage", "keep_storage", "network", "provision"});
  DeviceConfig cfg;
  if (auto kind = device.find("kind"); kind && kind->as_string() != "process")
    kind->fail(fmt::format("expected kind 'process', found '{}'", kind->as_string()));
  cfg.storage = device.string_or("storage", "");
  cfg.keep_storage = device.bool_or("keep_storage", false);
  if (auto net = device.find("network")) {
    net->only_keys({"server", "tls", "proxy"});
    cfg.server = net->bool_or("server", true);
    if (auto tls = net->find("tls")) cfg.tls = parse_tls(*tls);
    cfg.proxy = net->bool_or("proxy", true);
    if (!cfg.server && cfg.tls != Tls::off) net->at("tls").fail("TLS needs the update server (server: true)");
  }
  if (auto prov = device.find("provision")) {
    prov->only_keys({"format", "file", "mode", "slot_size", "sector_size", "program_align", "metadata_sectors",
                     "dir", "bootloader", "bootlimit"});
    const auto format = prov->at("format").as_string();
    if (format == "otarig-vboard")
      cfg.provision = ProvisionFormat::vboard_flash;
    else if (format == "image-file")
      cfg.provision = ProvisionFormat::image_file;
    else if (format == "client-slots")
      cfg.provision = ProvisionFormat::client_slots;
    else
      prov->at("format").fail(
          fmt::format("unknown provision format '{}' (known: otarig-vboard, image-file, client-slots)", format));
    for (const char* k : {"dir", "bootloader", "bootlimit"})
      if (cfg.provision != ProvisionFormat::client_slots && prov->has(k))
        prov->at(k).fail(fmt::format("`{}` applies to format client-slots only", k));
    if (cfg.provision == ProvisionFormat::client_slots) {
      // A real-client board (docs/ota-clients.md): slot files and boot state in one folder.
      for (const char* k : {"file", "mode", "sector_size", "program_align", "metadata_sectors"})
        if (prov->has(k)) prov->at(k).fail(fmt::format("`{}` does not apply to format client-slots", k));
      cfg.client_dir = prov->string_or("dir", "${storage}");
      cfg.client_bootloader = prov->string_or("bootloader", cfg.client_bootloader);
#ifdef OTARIG_HAVE_CLIENTS_DRIVERS
      if (!clients::parse_bootloader(cfg.client_bootloader))
        prov->at("bootloader").fail(fmt::format("unknown bootloader '{}' (known: uboot-env, rauc-custom)",
                                                cfg.client_bootloader));
#else
      prov->at("format").fail("this otarig was built without the clients driver family");
#endif
      cfg.client_slot_size = prov->size_or("slot_size", cfg.client_slot_size);
      if (cfg.client_slot_size < 4096 || cfg.client_slot_size > (std::uint64_t{1} << 32))
        prov->at("slot_size").fail("must be 4KiB..4GiB");
      const auto limit = prov->size_or("bootlimit", cfg.client_bootlimit);
      if (limit < 1 || limit > 100) prov->at("bootlimit").fail("must be 1..100");
      cfg.client_bootlimit = static_cast<std::uint32_t>(limit);
      return cfg;
    }
    cfg.provision_file = prov->at("file").as_string();
    if (cfg.provision != ProvisionFormat::vboard_flash) {
      for (const char* k : {"mode", "slot_size", "sector_size", "program_align", "metadata_sectors"})
        if (prov->has(k)) prov->at(k).fail(fmt::format("`{}` applies to format otarig-vboard only", k));
    } else {
      vboard::FlashGeometry g;
      g.slot_size = prov->size_or("slot_size", g.slot_size);
      g.sector_size = prov->size_or("sector_size", g.sector_size);
      g.program_align = prov->size_or("program_align", g.program_align);
      g.metadata_sectors =
          static_cast<std::uint32_t>(std::min<std::uint64_t>(prov->size_or("metadata_sectors", 2), 1024));
      try {
        cfg.vboard = vboard_config(prov->string_or("mode", "ab"), {}, g.sector_size, g, "provision");
      } catch (const InputError& e) {
        // "provision:LINE: PATH: message": the message, on the line it is about.
        std::string what = e.what();
        for (int i = 0; i < 2; ++i)
          if (auto colon = what.find(": "); colon != std::string::npos) what.erase(0, colon + 2);
        (prov->has("mode") && what.find("mode") != std::string::npos ? prov->at("mode") : *prov).fail(what);
      }
    }
  }
  return cfg;
}

ProcessDevice::ProcessDevice(DeviceConfig config, const BindContext& context)
    : cfg_(std::move(config)),
      board_(context.board_name),
      profile_dir_(context.profile_dir),
      trusted_(context.trusted_keys) {
  clock_ = context.clock && !context.clock->is_manual() ? context.clock : &steady_;

  // Storage.
  try {
    if (cfg_.storage.empty()) {
      auto pattern =
          (std::filesystem::temp_directory_path() / ("otarig-" + safe_name(board_) + "-XXXXXX")).string();
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

  // Network: the update server, and the fault proxy in front of it.
  if (cfg_.server) {
    try {
      net::ServerOptions so;
      if (cfg_.tls != DeviceConfig::Tls::off) {
        auto pki = net::TestPki::generate();
        pki.write(storage_ / "tls");
        ca_ = storage_ / "tls" / "ca.pem";
        net::TlsConfig tls{pki.server.cert_pem, pki.server.key_pem, {}};
        if (cfg_.tls == DeviceConfig::Tls::mutual) {
          tls.peer_ca_pem = pki.ca.cert_pem;
          client_cert_ = storage_ / "tls" / "client.pem";
          client_key_ = storage_ / "tls" / "client.key";
        }
        so.tls = tls;
      }
      server_ = std::make_unique<net::UpdateServer>(so);
      server_->start();
      const char* scheme = cfg_.tls == DeviceConfig::Tls::off ? "http" : "https";
      if (cfg_.proxy) {
        net::ProxyOptions po;
        po.upstream_host = "127.0.0.1";
        po.upstream_port = server_->port();
        proxy_ = std::make_unique<net::FaultProxy>(po);
        proxy_->start();
        update_port_ = proxy_->port();
      } else {
        update_port_ = server_->port();
      }
      update_url_ = fmt::format("{}://127.0.0.1:{}", scheme, update_port_);
    } catch (const BenchError& e) {
      throw BenchError(fmt::format("{}: the update server for the device: {}", board_, e.what()));
    } catch (const std::exception& e) {
      throw BenchError(
          fmt::format("{}: cannot start the update server for the device: {}", board_, e.what()));
    }
  }
}

ProcessDevice::~ProcessDevice() {
  if (proxy_) proxy_->stop();
  if (server_) server_->stop();
  if (remove_storage_ && !storage_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(storage_, ignored);
  }
}

std::string ProcessDevice::server_url() const { return server_ ? server_->base_url() : std::string(); }

std::string ProcessDevice::expand(std::string_view text,
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

std::vector<std::pair<std::string, std::string>> ProcessDevice::environment() const {
  std::vector<std::pair<std::string, std::string>> env{
      {"OTARIG_BOARD", board_},
      {"OTARIG_STORAGE", storage_.string()},
  };
  if (!update_url_.empty()) env.emplace_back("OTARIG_UPDATE_URL", update_url_);
  std::string keys;
  for (const auto& k : trusted_) keys += (keys.empty() ? "" : ",") + crypto::hex(k);
  env.emplace_back("OTARIG_TRUSTED_KEYS", keys);
  if (!ca_.empty()) env.emplace_back("OTARIG_CA", ca_.string());
  if (!package_ca_.empty()) env.emplace_back("OTARIG_PACKAGE_CA", package_ca_.string());
  if (!client_cert_.empty()) {
    env.emplace_back("OTARIG_CLIENT_CERT", client_cert_.string());
    env.emplace_back("OTARIG_CLIENT_KEY", client_key_.string());
  }
  return env;
}

void ProcessDevice::provision(std::span<const std::uint8_t> image) {
  if (cfg_.provision == DeviceConfig::ProvisionFormat::none)
    throw BenchError(
        fmt::format("{}: the board has no provisioning (add `provision:` to its device section)", board_));
  if (auto p = power()) p->off();
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
    } else

      write_file_atomically(file, image);
  } catch (const InputError&) {
    throw;
  } catch (const std::exception& e) {
    throw BenchError(fmt::format("{}: provisioning {}: {}", board_, file.string(), e.what()));
  }
}

}  // namespace otarig::drivers::process
