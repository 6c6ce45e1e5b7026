// cpio archives, SWUpdate .swu archives and RAUC plain bundles.
#include <fmt/format.h>

#include <cstring>

#include "otarig/drivers/clients/package.hpp"
#include "otarig/drivers/clients/tools.hpp"
#include "otarig/core/crypto.hpp"
#include "otarig/core/errors.hpp"
#include "otarig/core/image.hpp"

namespace otarig::drivers::clients {

bool have_tool(const std::string& tool) { return !find_tool(tool).empty(); }

namespace cpio {
namespace {

constexpr std::size_t kHeader = 110;

void pad4(Bytes& out) {
  while (out.size() % 4) out.push_back(0);
}

void header(Bytes& out, std::uint32_t ino, std::uint32_t mode, std::uint32_t nlink, const std::string& name,
            std::size_t size) {
  auto h = fmt::format("070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}", ino,
                       mode, 0, 0, nlink, 0, static_cast<std::uint32_t>(size), 0, 0, 0, 0,
                       static_cast<std::uint32_t>(name.size() + 1), 0);
  out.insert(out.end(), h.begin(), h.end());
  out.insert(out.end(), name.begin(), name.end());
  out.push_back(0);
  pad4(out);
}

std::size_t padded(std::size_t n) { return (n + 3) & ~std::size_t{3}; }

}  // namespace

Bytes write(const std::vector<Entry>& entries) {
  Bytes out;
  std::uint32_t ino = 1;
  for (const auto& e : entries) {
    header(out, ino++, 0100644, 1, e.name, e.data.size());
    out.insert(out.end(), e.data.begin(), e.data.end());
    pad4(out);
  }
  header(out, 0, 0, 1, "TRAILER!!!", 0);
  // Block-align the archive as cpio(1) does.
  while (out.size() % 512) out.push_back(0);
  return out;
}

std::vector<std::size_t> data_offsets(const std::vector<Entry>& entries) {
  std::vector<std::size_t> offsets;
  std::size_t at = 0;
  for (const auto& e : entries) {
    at += padded(kHeader + e.name.size() + 1);
    offsets.push_back(at);
    at += padded(e.data.size());
  }
  return offsets;
}

std::vector<Entry> read(std::span<const std::uint8_t> a, const std::string& origin) {
  std::vector<Entry> out;
  std::size_t at = 0;
  auto field = [&](std::size_t i) {
    std::string text(reinterpret_cast<const char*>(a.data()) + at + 6 + 8 * i, 8);
    try {
      std::size_t used = 0;
      auto v = std::stoul(text, &used, 16);
      if (used != 8) throw std::invalid_argument(text);
      return static_cast<std::size_t>(v);
    } catch (const std::exception&) {
      throw InputError(fmt::format("{}: byte {}: bad cpio header field '{}'", origin, at + 6 + 8 * i, text));
    }
  };
  while (true) {
    if (at + kHeader > a.size()) throw InputError(fmt::format("{}: byte {}: archive ends inside a header", origin, at));
    if (std::memcmp(a.data() + at, "070701", 6) != 0)
      throw InputError(fmt::format("{}: byte {}: not a cpio newc header", origin, at));
    const auto size = field(6), namesize = field(11);
    if (namesize == 0 || at + kHeader + namesize > a.size())
      throw InputError(fmt::format("{}: byte {}: bad name size", origin, at));
    std::string name(reinterpret_cast<const char*>(a.data()) + at + kHeader, namesize - 1);
    const auto data_at = at + padded(kHeader + namesize);
    if (data_at + size > a.size())
      throw InputError(fmt::format("{}: {}: the data runs past the archive's end", origin, name));
    if (name == "TRAILER!!!") break;
    out.push_back({name, Bytes(a.begin() + static_cast<std::ptrdiff_t>(data_at),
                               a.begin() + static_cast<std::ptrdiff_t>(data_at + size))});
    at = data_at + padded(size);
  }
  return out;
}

}  // namespace cpio

PackageContent package_content(std::span<const std::uint8_t> slot_image) {
  auto h = image::parse(slot_image, "slot image").header;
  PackageContent c;
  c.version = fmt::format("{}.{}.{}.{}", h.version.major, h.version.minor, h.version.patch, h.version.build);
  c.image.assign(slot_image.begin(), slot_image.end());
  return c;
}

std::string swu_description(const PackageContent& c, const std::string& hardware_revision,
                            const std::string& handler) {
  const auto& described = c.described_image ? *c.described_image : c.image;
  const auto sha = crypto::hex(crypto::sha256(described));
  std::string collections;
  for (int s = 0; s < 2; ++s) {
    const char slot = static_cast<char>('A' + s);
    collections += fmt::format(
        R"(    copy{0}: {{
      images: (
        {{
          filename = "{1}";
          {4} = "{2}";
          type = "{5}";
          sha256 = "{3}";
          installed-directly = true;
        }}
      );
      bootenv: (
        {{ name = "rootpart"; value = "{0}"; }},
        {{ name = "upgrade_available"; value = "1"; }},
        {{ name = "bootcount"; value = "0"; }}
      );
    }};
)",
        slot, kSwuImageName, kSwuSlotDevice[s], sha, handler == "rawfile" ? "path" : "device", handler);
  }
  return fmt::format(R"(software =
{{
  version = "{0}";
  description = "otarig release {0}";
  hardware-compatibility: [ "{1}" ];
  stable: {{
{2}  }};
}}
)",
                     c.version, hardware_revision, collections);
}

SwuParts swu_parts(const PackageContent& content, const PemPair* signer, const std::string& hardware_revision,
                   const std::string& handler) {
  SwuParts p;
  p.description = swu_description(content, hardware_revision, handler);
  if (signer)
    p.signature = cms_sign({reinterpret_cast<const std::uint8_t*>(p.description.data()), p.description.size()},
                           *signer);
  p.image = content.image;
  return p;
}

Bytes swu_archive(const SwuParts& p) {
  std::vector<cpio::Entry> entries;
  entries.push_back({"sw-description", Bytes(p.description.begin(), p.description.end())});
  if (p.signature) entries.push_back({"sw-description.sig", *p.signature});
  entries.push_back({kSwuImageName, p.image});
  return cpio::write(entries);
}

std::string rauc_manifest(const PackageContent& c, const std::string& compatible) {
  return fmt::format(R"([update]
compatible={}
version={}
description=otarig release {}

[bundle]
format=plain

[image.{}]
filename={}
)",
                     compatible, c.version, c.version, kRaucSlotClass, kRaucImageName);
}

namespace {

std::string pem_file(const std::filesystem::path& dir, const std::string& name, const std::string& text) {
  auto p = dir / name;
  write_text(p, text);
  return p.string();
}

std::string tool_failure(const ToolResult& r) {
  auto text = r.output;
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (text.size() > 600) text = "..." + text.substr(text.size() - 600);
  return fmt::format("exit status {}: {}", r.status, text);
}

}  // namespace

Bytes rauc_bundle(const std::string& manifest, std::span<const std::uint8_t> image, const PemPair& signer,
                  const std::string& keyring_pem) {
  for (const char* tool : {"rauc", "mksquashfs"})
    if (!have_tool(tool))
      throw BenchError(fmt::format("building a RAUC bundle needs `{}` (ci/setup with OTARIG_SETUP_EXTRA=clients)", tool));
  TempDir tmp("otarig-raucb");
  auto content = tmp.path() / "content";
  std::filesystem::create_directories(content);
  write_text(content / "manifest.raucm", manifest);
  write_bytes(content / kRaucImageName, image.data(), image.size());
  std::vector<std::string> argv{"rauc", "bundle", "--cert=" + pem_file(tmp.path(), "signer.pem", signer.cert_pem),
                                "--key=" + pem_file(tmp.path(), "signer.key", signer.key_pem)};
  if (!keyring_pem.empty()) argv.push_back("--keyring=" + pem_file(tmp.path(), "keyring.pem", keyring_pem));
  const auto out = tmp.path() / "bundle.raucb";
  argv.push_back(content.string());
  argv.push_back(out.string());
  auto r = run_tool(argv, std::chrono::seconds(120));
  if (!r.ok()) throw BenchError("rauc bundle: " + tool_failure(r));
  return read_bytes(out);
}

RaucParts rauc_split(std::span<const std::uint8_t> b) {
  if (b.size() < 8) throw InputError("RAUC bundle: shorter than its signature size field");
  std::uint64_t size = 0;
  for (std::size_t i = b.size() - 8; i < b.size(); ++i) size = (size << 8) | b[i];
  if (size > b.size() - 8) throw InputError(fmt::format("RAUC bundle: signature size {} does not fit", size));
  const auto sig_at = b.size() - 8 - size;
  return {Bytes(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(sig_at)),
          Bytes(b.begin() + static_cast<std::ptrdiff_t>(sig_at), b.end() - 8)};
}

Bytes rauc_join(const RaucParts& p) {
  Bytes out = p.squashfs;
  out.insert(out.end(), p.signature.begin(), p.signature.end());
  const std::uint64_t size = p.signature.size();
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(size >> (8 * i)));
  return out;
}

std::string rauc_bundle_manifest(std::span<const std::uint8_t> bundle) {
  if (!have_tool("unsquashfs")) throw BenchError("reading a RAUC bundle needs `unsquashfs` (squashfs-tools)");
  TempDir tmp("otarig-raucb");
  auto file = tmp.path() / "bundle.raucb";
  write_bytes(file, bundle.data(), bundle.size());
  auto r = run_tool({"unsquashfs", "-cat", file.string(), "manifest.raucm"}, std::chrono::seconds(60));
  if (!r.ok()) throw BenchError("unsquashfs -cat manifest.raucm: " + tool_failure(r));
  return r.output;
}

Bytes squashfs(const std::vector<cpio::Entry>& files) {
  if (!have_tool("mksquashfs")) throw BenchError("building a squashfs image needs `mksquashfs` (squashfs-tools)");
  TempDir tmp("otarig-sqfs");
  auto content = tmp.path() / "content";
  std::filesystem::create_directories(content);
  for (const auto& f : files) write_bytes(content / f.name, f.data.data(), f.data.size());
  auto out = tmp.path() / "image.sqfs";
  auto r = run_tool({"mksquashfs", content.string(), out.string(), "-all-root", "-noappend", "-no-progress",
                     "-no-xattrs", "-quiet"},
                    std::chrono::seconds(120));
  if (!r.ok()) throw BenchError("mksquashfs: " + tool_failure(r));
  return read_bytes(out);
}

}  // namespace otarig::drivers::clients
