#pragma once
// Update packages for real OTA clients (docs/ota-clients.md): the test
// signing PKI, CMS signatures, SWUpdate archives (.swu) and RAUC bundles
// (.raucb). The rig builds every package itself, from an otarig image that
// becomes the content of the slot the client writes.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace otarig::drivers::clients {

using Bytes = std::vector<std::uint8_t>;

/// A certificate and its private key, both PEM.
struct PemPair {
  std::string cert_pem;
  std::string key_pem;
};

/// The signing PKI of a packaged board: a CA the device trusts and a signer
/// it issued, plus an unrelated CA and its signer (the wrong key). EC P-256,
/// SHA-256; signers carry extendedKeyUsage emailProtection and codeSigning
/// (SWUpdate checks the former by default). Made with OpenSSL 3 in memory,
/// each valid from a year ago for ten years (a device clock off by up to 30
/// days either way still finds them valid).
struct SigningPki {
  PemPair ca;
  PemPair signer;
  PemPair wrong_ca;
  PemPair wrong_signer;
  /// Fresh keys and certificates; `label` prefixes the common names.
  /// BenchError when OpenSSL fails.
  static SigningPki generate(const std::string& label = "otarig package");
  /// Writes ca.pem, ca.key, signer.pem, signer.key, wrong-ca.pem, wrong-ca.key,
  /// wrong-signer.pem, wrong-signer.key into `dir` (keys mode 0600).
  void write(const std::filesystem::path& dir) const;
  /// Reads what write() wrote; BenchError naming a missing file.
  static SigningPki read(const std::filesystem::path& dir);
};

/// A signer certificate (as SigningPki's signer: codeSigning and
/// emailProtection) for a new key, issued by `ca` (its certificate and key)
/// and valid from `not_before` until `not_after` (UNIX seconds, UTC): a
/// signer whose validity has ended or not yet begun. BenchError when
/// OpenSSL fails.
PemPair issue_signer(const PemPair& ca, const std::string& common_name, std::int64_t not_before,
                     std::int64_t not_after);

/// A detached CMS (PKCS#7) signature over `content` in DER: binary content,
/// no S/MIME capabilities, the signer certificate included (as `openssl cms
/// -sign -binary -nosmimecap -outform DER`).
Bytes cms_sign(std::span<const std::uint8_t> content, const PemPair& signer);

/// Where the signature value itself (the signer's signature octets in the
/// SignerInfo) lies in a DER CMS signature: {offset, length}. A bit flipped
/// there always breaks the signature; elsewhere in the structure (an
/// unauthenticated field) it may not. InputError when `der` is no CMS.
std::pair<std::size_t, std::size_t> cms_signature_value(std::span<const std::uint8_t> der);

/// cpio "newc" archives (what a .swu is).
namespace cpio {
struct Entry {
  std::string name;
  Bytes data;
};
/// Entries in order, then the TRAILER!!! record; every header and data
/// padded to 4 bytes, the archive to 512. Mode 0100644, inode numbers from
/// 1. Written by libarchive.
Bytes write(const std::vector<Entry>& entries);
/// Where each entry's data starts in write()'s output (same order).
std::vector<std::size_t> data_offsets(const std::vector<Entry>& entries);
/// Parses an archive up to its trailer (libarchive, newc only, each header
/// where the one before ends); InputError naming `origin` and the byte or
/// entry when it is malformed.
std::vector<Entry> read(std::span<const std::uint8_t> archive, const std::string& origin = "archive");
}  // namespace cpio

/// What a package describes. Versions are written as SWUpdate and RAUC
/// compare them: MAJOR.MINOR.PATCH.BUILD.
struct PackageContent {
  std::string version;          ///< e.g. "1.1.0.2"
  Bytes image;                  ///< the slot content (an otarig image)
  /// When set, the description (sha256, size) is of these bytes instead of
  /// `image` (a package whose content does not match what it signs).
  std::optional<Bytes> described_image;
  /// SWUpdate's encrypted images (docs/ota-clients.md, "Encrypted images"):
  /// when set, `image` is the slot content AES-CBC encrypted with the
  /// device's key and this IV (32 hex digits), and sw-description marks it
  /// `encrypted = true; ivt = "...";`. Its sha256 is the ciphertext's, as
  /// SWUpdate hashes the bytes of the archive before it decrypts them.
  std::string ivt;
  /// sw-description's `installed-directly`: SWUpdate streams the image into
  /// the slot as it reads the archive, checking its sha256 at the end; false:
  /// it copies the image to its TMPDIR and checks the sha256 first, then
  /// installs (decrypts) it from there.
  bool installed_directly = true;
};

/// What a package says about an otarig slot image: its version as the
/// clients compare versions (MAJOR.MINOR.PATCH.BUILD), and the image.
/// InputError when the image does not parse.
PackageContent package_content(std::span<const std::uint8_t> slot_image);

/// SWUpdate: the file names and devices inside a .swu.
inline constexpr const char* kSwuImageName = "otarig.img";
/// The zchunk header's name inside a delta .swu.
inline constexpr const char* kSwuDeltaHeaderName = "otarig.zckheader";
/// A file a delta .swu carries and its sw-description does not name (256 KiB
/// of zeros, skipped by SWUpdate): docs/ota-clients.md.
inline constexpr const char* kSwuPaddingName = "otarig.padding";
/// The slots as the raw handler sees them inside the device's mount
/// namespace (the clientboard links them to its slot files there).
inline constexpr const char* kSwuSlotDevice[2] = {"/run/otarig/slot-a", "/run/otarig/slot-b"};
/// SWUpdate's hardware-compatibility revision of the rig's boards.
inline constexpr const char* kSwuHardwareRevision = "1.0";

/// The sw-description (libconfig syntax) of a .swu: collections
/// stable,copyA and stable,copyB, each a raw handler streaming the image
/// into its slot (installed-directly) and a bootenv that selects the slot
/// for a trial boot (rootpart, upgrade_available=1, bootcount=0).
/// `handler`: SWUpdate's handler for the slot, "raw" (a block device: open,
/// write, close) or "rawfile" (a file: written, then fsync'd).
std::string swu_description(const PackageContent& content, const std::string& hardware_revision,
                            const std::string& handler = "raw");

/// A .swu: sw-description, sw-description.sig (when `signer` is given), the image.
struct SwuParts {
  std::string description;     ///< as it goes into the archive
  std::optional<Bytes> signature;
  Bytes image;                 ///< as it goes into the archive
};
SwuParts swu_parts(const PackageContent& content, const PemPair* signer, const std::string& hardware_revision,
                   const std::string& handler = "raw");
Bytes swu_archive(const SwuParts& parts);

/// A zchunk file of an image as SWUpdate's delta handler wants it (`zck -u
/// -h sha256`: SHA-256 chunk digests, of the compressed and of the
/// uncompressed chunks; zstd), made by zchunk's `zck` and read back with
/// `zck_read_header -c`.
struct Zchunk {
  Bytes file;
  /// The file's lead and header: what a delta .swu carries (its sha256 in
  /// the signed sw-description), the chunks' digests among them.
  std::size_t header_size = 0;
  struct Chunk {
    std::string uncompressed_sha256;  ///< hex: how a device finds it in its running slot
    std::size_t start = 0;            ///< in the file
    std::size_t comp_size = 0;        ///< bytes in the file
    std::size_t image_at = 0;         ///< where its bytes start in the image
    std::size_t size = 0;             ///< uncompressed bytes
  };
  std::vector<Chunk> chunks;  ///< the data chunks in order (the empty dictionary chunk left out)
};
/// BenchError when zck or zck_read_header is missing or fails, or what it
/// wrote does not read back.
Zchunk zchunk(std::span<const std::uint8_t> image);

/// The sw-description of a delta .swu (SWUpdate's `delta` handler,
/// docs/ota-clients.md): collections stable,copyA and stable,copyB, each an
/// image of type `delta` (the zchunk header `header_name`, with its sha256)
/// whose `source` is the other slot (the one the device runs when it
/// installs this one) and `url` the .zck, chained to `handler` into the
/// slot; a postinstall script `verify-A.sh` / `verify-B.sh` (sha256 given)
/// that checks the assembled slot as a whole before SWUpdate writes the
/// bootenv that selects it.
std::string swu_delta_description(const PackageContent& content, const std::string& hardware_revision,
                                  const std::string& handler, const std::string& header_name,
                                  const std::string& header_sha256, const std::string& zck_url,
                                  const std::string script_sha256[2]);
/// The postinstall script of slot `slot` (0 = A): the first `size` bytes of
/// the slot hash to `sha256` (hex), else it exits 1 saying what the slot holds.
std::string swu_verify_script(int slot, std::size_t size, const std::string& sha256);
/// The script's name in the .swu.
std::string swu_verify_script_name(int slot);

/// RAUC plain bundles: a squashfs image (manifest.raucm + the image) followed
/// by a detached CMS signature over it and the signature's size (8 bytes,
/// big-endian). Built with `rauc bundle` (which runs mksquashfs).
inline constexpr const char* kRaucImageName = "otarig.img";
inline constexpr const char* kRaucSlotClass = "rootfs";
std::string rauc_manifest(const PackageContent& content, const std::string& compatible);
/// Runs `rauc bundle --cert --key --keyring` in a temporary folder and
/// returns the bundle. `keyring` empty: no check by rauc. BenchError when
/// rauc or mksquashfs fails or is missing.
Bytes rauc_bundle(const std::string& manifest, std::span<const std::uint8_t> image, const PemPair& signer,
                  const std::string& keyring_pem);
/// A plain bundle split into its squashfs and its signature.
struct RaucParts {
  Bytes squashfs;
  Bytes signature;
};
/// InputError when the bundle's size field does not fit.
RaucParts rauc_split(std::span<const std::uint8_t> bundle);
Bytes rauc_join(const RaucParts& parts);
/// The manifest inside a bundle (`unsquashfs -cat`); BenchError when it cannot be read.
std::string rauc_bundle_manifest(std::span<const std::uint8_t> bundle);
/// A squashfs image holding `files` (mksquashfs with the options `rauc
/// bundle` uses); for bundles whose content the rig edits after signing.
Bytes squashfs(const std::vector<cpio::Entry>& files);

/// True when `tool` is an executable file on $PATH (or a path to one).
bool have_tool(const std::string& tool);

}  // namespace otarig::drivers::clients
