// cpio archives, SWUpdate .swu archives and RAUC plain bundles.
#include <archive.h>
#include <archive_entry.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <sstream>
#include <memory>
#include <new>

#include "otarig/drivers/clients/package.hpp"
#include "otarig/drivers/clients/tools.hpp"
#include "otarig/core/crypto.hpp"
#include "otarig/core/errors.hpp"
#include "otarig/core/image.hpp"

namespace otarig::drivers::clients {

bool have_tool(const std::string& tool) { return !find_tool(tool).empty(); }

namespace cpio {
namespace {

// The newc header: "070701" and 13 eight-digit hex fields.
constexpr std::size_t kHeader = 110;
constexpr char kTrailer[] = "TRAILER!!!";

std::size_t padded(std::size_t n) { return (n + 3) & ~std::size_t{3}; }

struct FreeRead {
  void operator()(archive* a) const noexcept { archive_read_free(a); }
};
struct FreeWrite {
  void operator()(archive* a) const noexcept { archive_write_free(a); }
};
struct FreeEntry {
  void operator()(archive_entry* e) const noexcept { archive_entry_free(e); }
};

la_ssize_t append(archive*, void* out, const void* data, size_t n) {
  auto& bytes = *static_cast<Bytes*>(out);
  const auto* from = static_cast<const std::uint8_t*>(data);
  bytes.insert(bytes.end(), from, from + n);
  return static_cast<la_ssize_t>(n);
}

std::string error_of(archive* a) {
  const char* text = archive_error_string(a);
  return text ? text : "libarchive gave no reason";
}

}  // namespace

Bytes write(const std::vector<Entry>& entries) {
  Bytes out;
  std::unique_ptr<archive, FreeWrite> a(archive_write_new());
  if (!a) throw std::bad_alloc();
  auto check = [&](int rc, const std::string& what) {
    if (rc != ARCHIVE_OK) throw BenchError(fmt::format("cpio: {}: {}", what, error_of(a.get())));
  };
  check(archive_write_set_format_cpio_newc(a.get()), "newc format");
  // Block-align the archive to 512 bytes as cpio(1) does.
  check(archive_write_set_bytes_per_block(a.get(), 512), "block size");
  check(archive_write_open2(a.get(), &out, nullptr, append, nullptr, nullptr), "open");
  std::int64_t ino = 1;
  for (const auto& e : entries) {
    std::unique_ptr<archive_entry, FreeEntry> entry(archive_entry_new());
    if (!entry) throw std::bad_alloc();
    archive_entry_set_pathname(entry.get(), e.name.c_str());
    archive_entry_set_filetype(entry.get(), AE_IFREG);
    archive_entry_set_perm(entry.get(), 0644);
    archive_entry_set_ino64(entry.get(), ino++);
    archive_entry_set_nlink(entry.get(), 1);
    archive_entry_set_size(entry.get(), static_cast<la_int64_t>(e.data.size()));
    check(archive_write_header(a.get(), entry.get()), e.name);
    if (!e.data.empty() &&
        archive_write_data(a.get(), e.data.data(), e.data.size()) != static_cast<la_ssize_t>(e.data.size()))
      check(ARCHIVE_FATAL, e.name);
  }
  check(archive_write_close(a.get()), "trailer");
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

std::vector<Entry> read(std::span<const std::uint8_t> bytes, const std::string& origin) {
  std::unique_ptr<archive, FreeRead> a(archive_read_new());
  if (!a) throw std::bad_alloc();
  if (archive_read_support_format_cpio(a.get()) != ARCHIVE_OK)
    throw BenchError(fmt::format("{}: cpio: {}", origin, error_of(a.get())));
  std::vector<Entry> out;
  std::size_t next = 0;  // where the next header is due
  auto bad_header = [&] {
    if (next + kHeader > bytes.size())
      return InputError(fmt::format("{}: byte {}: archive ends inside a header", origin, next));
    return InputError(fmt::format("{}: byte {}: not a cpio newc header", origin, next));
  };
  // Opening reads the first header: it fails on anything but cpio.
  if (archive_read_open_memory(a.get(), bytes.data(), bytes.size()) != ARCHIVE_OK) throw bad_header();
  while (true) {
    archive_entry* entry = nullptr;
    const int rc = archive_read_next_header(a.get(), &entry);
    if (rc == ARCHIVE_EOF) break;
    // libarchive skips bytes to find a header and reads the other cpio
    // formats too; a .swu is newc with each header where the last one ends.
    if (rc != ARCHIVE_OK || archive_format(a.get()) != ARCHIVE_FORMAT_CPIO_SVR4_NOCRC ||
        archive_read_header_position(a.get()) != static_cast<la_int64_t>(next))
      throw bad_header();
    const char* path = archive_entry_pathname(entry);
    Entry e{path ? path : "", {}};
    const auto size = archive_entry_size(entry);
    const auto data_at = next + padded(kHeader + e.name.size() + 1);
    // Bounded by what is there: no allocation for a size the archive cannot hold.
    if (size < 0 || data_at + static_cast<std::size_t>(size) > bytes.size())
      throw InputError(fmt::format("{}: {}: the data runs past the archive's end", origin, e.name));
    e.data.resize(static_cast<std::size_t>(size));
    if (archive_read_data(a.get(), e.data.data(), e.data.size()) != static_cast<la_ssize_t>(size))
      throw InputError(fmt::format("{}: {}: the data runs past the archive's end", origin, e.name));
    next = data_at + padded(e.data.size());
    out.push_back(std::move(e));
  }
  // libarchive ends at the trailer, and also, quietly, at a header it cannot
  // parse: the trailer must stand where the next header is due.
  if (next + kHeader + sizeof kTrailer > bytes.size() || std::memcmp(bytes.data() + next, "070701", 6) != 0 ||
      std::memcmp(bytes.data() + next + kHeader, kTrailer, sizeof kTrailer) != 0)
    throw bad_header();
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
          sha256 = "{3}";{6}
          installed-directly = {7};
        }}
      );
      bootenv: (
        {{ name = "rootpart"; value = "{0}"; }},
        {{ name = "upgrade_available"; value = "1"; }},
        {{ name = "bootcount"; value = "0"; }}
      );
    }};
)",
        slot, kSwuImageName, kSwuSlotDevice[s], sha, handler == "rawfile" ? "path" : "device", handler,
        c.ivt.empty() ? std::string() : fmt::format("\n          encrypted = true;\n          ivt = \"{}\";", c.ivt),
        c.installed_directly ? "true" : "false");
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

Zchunk zchunk(std::span<const std::uint8_t> image) {
  for (const char* tool : {"zck", "zck_read_header"})
    if (!have_tool(tool))
      throw BenchError(fmt::format("making a SWUpdate delta package needs `{}` (zchunk; ci/setup with "
                                   "OTARIG_SETUP_EXTRA=clients)",
                                   tool));
  TempDir tmp("otarig-zck");
  const auto raw = tmp.path() / "image.raw";
  const auto out = tmp.path() / "image.zck";
  write_bytes(raw, image.data(), image.size());
  auto made = run_tool({"zck", "-u", "-h", "sha256", "-o", out.string(), raw.string()}, std::chrono::seconds(120));
  if (!made.ok()) throw BenchError("zck: " + tool_failure(made));
  Zchunk z;
  z.file = read_bytes(out);
  auto read = run_tool({"zck_read_header", "-c", out.string()}, std::chrono::seconds(60));
  if (!read.ok()) throw BenchError("zck_read_header -c: " + tool_failure(read));
  // "Header size: N", then a table: index, checksum, uncompressed checksum,
  // start, compressed size, size.
  std::istringstream lines(read.output);
  std::string line;
  std::size_t image_at = 0;
  while (std::getline(lines, line)) {
    if (line.rfind("Header size:", 0) == 0) {
      std::istringstream value(line.substr(12));
      if (!(value >> z.header_size)) throw BenchError("zck_read_header -c: no size in '" + line + "'");
      continue;
    }
    std::istringstream row(line);
    std::string index, digest, plain;
    std::size_t start = 0, comp = 0, size = 0;
    if (!(row >> index >> digest >> plain >> start >> comp >> size) || index.empty() ||
        !std::all_of(index.begin(), index.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    if (size == 0) continue;  // the dictionary chunk (none here)
    if (plain.size() != 64 || start + comp > z.file.size())
      throw BenchError(fmt::format("zck_read_header -c: chunk {} does not fit the file: {}", index, line));
    z.chunks.push_back({plain, start, comp, image_at, size});
    image_at += size;
  }
  if (z.header_size == 0 || z.header_size > z.file.size() || image_at != image.size())
    throw BenchError(fmt::format("zck_read_header -c: header size {} and {} chunks of {} bytes do not describe the "
                                 "{}-byte image in the {}-byte file",
                                 z.header_size, z.chunks.size(), image_at, image.size(), z.file.size()));
  return z;
}

std::string swu_verify_script_name(int slot) { return fmt::format("verify-{}.sh", static_cast<char>('A' + slot)); }

std::string swu_verify_script(int slot, std::size_t size, const std::string& sha256) {
  return fmt::format(R"sh(#!/bin/sh
# otarig: slot {0} as a whole, after SWUpdate's delta handler assembled it and
# before SWUpdate writes the environment that selects it.
sum=$(head -c {2} {1} | sha256sum | cut -d' ' -f1)
if [ "$sum" != "{3}" ]; then
  echo "otarig: slot {0} holds sha256 $sum over its first {2} bytes, not the release's {3}" >&2
  exit 1
fi
# SWUpdate's INFO channel for scripts.
if [ "${{SWUPDATE_INFO_FD:-}}" = 3 ]; then
  echo "otarig: slot {0} verified as a whole: sha256 {3} over {2} bytes" >&3
fi
)sh",
                     static_cast<char>('A' + slot), kSwuSlotDevice[slot], size, sha256);
}

std::string swu_delta_description(const PackageContent& c, const std::string& hardware_revision,
                                  const std::string& handler, const std::string& header_name,
                                  const std::string& header_sha256, const std::string& zck_url,
                                  const std::string script_sha256[2]) {
  std::string collections;
  for (int s = 0; s < 2; ++s) {
    const char slot = static_cast<char>('A' + s);
    collections += fmt::format(
        R"swu(    copy{0}: {{
      images: (
        {{
          filename = "{1}";
          type = "delta";
          {2} = "{3}";
          sha256 = "{4}";
          properties: {{
            url = "{5}";
            source = "{6}";
            chain = "{7}";
          }};
        }}
      );
      scripts: (
        {{
          filename = "{8}";
          type = "postinstall";
          sha256 = "{9}";
        }}
      );
      bootenv: (
        {{ name = "rootpart"; value = "{0}"; }},
        {{ name = "upgrade_available"; value = "1"; }},
        {{ name = "bootcount"; value = "0"; }}
      );
    }};
)swu",
        slot, header_name, handler == "rawfile" ? "path" : "device", kSwuSlotDevice[s], header_sha256, zck_url,
        kSwuSlotDevice[1 - s], handler, swu_verify_script_name(s), script_sha256[s]);
  }
  return fmt::format(R"swu(software =
{{
  version = "{0}";
  description = "otarig release {0} (delta)";
  hardware-compatibility: [ "{1}" ];
  stable: {{
{2}  }};
}}
)swu",
                     c.version, hardware_revision, collections);
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
