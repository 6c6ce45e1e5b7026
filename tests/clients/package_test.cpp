// Packages the rig builds for the real clients, checked by the real clients:
// cpio round trip; every .swu variant of boards/swupdate-ab.yaml through
// `swupdate -c` (check only: signature, hardware, hashes) — the release is
// accepted, every inauthentic variant refused; every .raucb variant of
// boards/rauc-ab.yaml through `rauc info` (signature check).
#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <functional>
#include <future>
#include <memory>
#include <tuple>
#include <vector>

#include "otarig/core/crypto.hpp"
#include "otarig/core/encryption.hpp"
#include "otarig/core/errors.hpp"
#include "otarig/drivers/clients/package.hpp"
#include "otarig/drivers/clients/tools.hpp"
#include "otarig/harness/profile.hpp"
#include "otarig/harness/releases.hpp"

namespace otarig::drivers::clients {
namespace {

const std::vector<std::string> kTamper = {"header-bit-flip", "payload-bit-flip", "digest-bit-flip",
                                          "signature-bit-flip", "truncated", "appended", "version-edited"};

struct Case {
  std::string name;
  harness::BuiltImage image;
  bool expect_ok;
};

std::vector<Case> cases(const harness::ReleaseSet& rs) {
  const auto& base = rs.get("update");
  std::vector<Case> out;
  out.push_back({"release", base, true});
  harness::Rng rng(7);
  out.push_back({"self-test-fail", rs.make_variant(base, "self-test-fail", "", rng, nullptr), true});
  out.push_back({"unsigned", rs.make_variant(base, "unsigned", "", rng, nullptr), false});
  out.push_back({"wrong-key", rs.make_variant(base, "wrong-key", "", rng, nullptr), false});
  for (const auto& v : kTamper) {
    harness::Rng r(11);
    out.push_back({v, rs.make_variant(base, "tamper", v, r, nullptr), false});
  }
  return out;
}

TEST(CpioTest, RoundTrip) {
  std::vector<cpio::Entry> entries{{"sw-description", {'a', 'b', 'c'}}, {"x.img", Bytes(1001, 7)}};
  auto archive = cpio::write(entries);
  EXPECT_EQ(archive.size() % 512, 0u);
  auto back = cpio::read(archive);
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[0].name, "sw-description");
  EXPECT_EQ(back[1].data, entries[1].data);
  auto offsets = cpio::data_offsets(entries);
  EXPECT_EQ(archive[offsets[1]], 7);
  EXPECT_THROW(cpio::read(std::span<const std::uint8_t>(archive).first(offsets[1] + 10)), InputError);
}

TEST(CpioTest, NewcLayoutAsCpioWritesIt) {
  std::vector<cpio::Entry> entries{{"sw-description", {'a', 'b', 'c'}}, {"x.img", Bytes(1001, 7)}};
  auto archive = cpio::write(entries);
  std::string first(archive.begin(), archive.begin() + 126);
  // magic, ino 1, mode 0100644, uid, gid, nlink 1, mtime, size 3, devs, namesize 15, check; then the name.
  EXPECT_EQ(first, std::string("070701000000010000") + "81a4" + std::string(16, '0') + "00000001" + std::string(8, '0') +
                       "00000003" + std::string(32, '0') + "0000000f" + std::string(8, '0') + "sw-description" +
                       std::string(2, '\0'));
  const auto offsets = cpio::data_offsets(entries);
  EXPECT_EQ(std::string(archive.begin() + static_cast<std::ptrdiff_t>(offsets[0]),
                        archive.begin() + static_cast<std::ptrdiff_t>(offsets[0]) + 3),
            "abc");
  const auto trailer = offsets[1] + 1004;
  EXPECT_EQ(std::string(archive.begin() + static_cast<std::ptrdiff_t>(trailer),
                        archive.begin() + static_cast<std::ptrdiff_t>(trailer) + 6),
            "070701");
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(archive.data()) + trailer + 110), "TRAILER!!!");
  if (have_tool("cpio")) {
    TempDir tmp("otarig-cpio-test");
    write_bytes(tmp.path() / "a.cpio", archive.data(), archive.size());
    auto listed = run_tool({"sh", "-c", "cpio -it --quiet < a.cpio"}, std::chrono::seconds(10), tmp.path());
    EXPECT_EQ(listed.output, "sw-description\nx.img\n");
    EXPECT_TRUE(listed.ok());
  }
}

// Malformed archives: each refused with where and what.
struct BadCpio {
  const char* name;
  std::function<void(Bytes&)> edit;
  const char* message;
};

class CpioBadInput : public ::testing::TestWithParam<BadCpio> {};

void PrintTo(const BadCpio& c, std::ostream* os) { *os << c.name; }

TEST_P(CpioBadInput, IsInputErrorNamingTheArchiveAndThePlace) {
  std::vector<cpio::Entry> entries{{"sw-description", {'a', 'b', 'c'}}, {"x.img", Bytes(1001, 7)}};
  auto archive = cpio::write(entries);
  GetParam().edit(archive);
  try {
    cpio::read(archive, "update.swu");
    FAIL() << "accepted";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()), std::string("update.swu: ") + GetParam().message);
  }
}

// The second header starts at 132 (110 + "sw-description\0", 4-aligned, then
// "abc" + 1), its data at 248, the trailer at 1252.
INSTANTIATE_TEST_SUITE_P(
    Cases, CpioBadInput,
    ::testing::Values(
        BadCpio{"Empty", [](Bytes& a) { a.clear(); }, "byte 0: archive ends inside a header"},
        BadCpio{"EndsInsideTheFirstHeader", [](Bytes& a) { a.resize(50); }, "byte 0: archive ends inside a header"},
        BadCpio{"NotCpio", [](Bytes& a) { a[0] = 'X'; }, "byte 0: not a cpio newc header"},
        BadCpio{"OldCharacterFormat", [](Bytes& a) { a[5] = '7'; }, "byte 0: not a cpio newc header"},
        BadCpio{"NewcWithChecksums", [](Bytes& a) { a[5] = '2'; }, "byte 0: not a cpio newc header"},
        BadCpio{"SecondHeaderBroken", [](Bytes& a) { a[132] = 'X'; }, "byte 132: not a cpio newc header"},
        BadCpio{"SizeFieldNotHex", [](Bytes& a) { a[132 + 6 + 8 * 6 + 2] = 'Z'; }, "byte 132: not a cpio newc header"},
        BadCpio{"SizePastTheEnd", [](Bytes& a) { std::memcpy(a.data() + 132 + 6 + 8 * 6, "0000ffff", 8); },
                "x.img: the data runs past the archive's end"},
        BadCpio{"DataCutShort", [](Bytes& a) { a.resize(248 + 500); },
                "x.img: the data runs past the archive's end"},
        BadCpio{"NoTrailer", [](Bytes& a) { a.resize(1252); },
                "byte 1252: archive ends inside a header"},
        // Then an entry "XRAILER!!!" and, at 1376, padding where a header is due.
        BadCpio{"TrailerRenamed", [](Bytes& a) { a[1252 + 110] = 'X'; }, "byte 1376: not a cpio newc header"}),
    [](const ::testing::TestParamInfo<BadCpio>& p) { return std::string(p.param.name); });

TEST(SwuTest, SwupdateChecksEveryVariant) {
  if (!have_tool("swupdate")) GTEST_SKIP() << "swupdate is not installed: ci/setup with OTARIG_SETUP_EXTRA=clients";
  auto profile = harness::load_profile(std::filesystem::path(OTARIG_SOURCE_DIR) / "boards/swupdate-ab.yaml");
  harness::ReleaseSet rs(profile);
  TempDir tmp("otarig-swu-test");
  const auto ca = tmp.path() / "ca.pem";
  write_text(ca, rs.package_trust_pem());
  auto all = cases(rs);
  // The slot image inside an inauthentic package is not the release.
  for (const auto& c : all) {
    ASSERT_FALSE(c.image.package.empty()) << c.name;
    if (!c.expect_ok) {
      EXPECT_NE(c.image.digest, rs.get("update").digest) << c.name;
    }
  }
  auto entries = cpio::read(all[0].image.package);
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].name, "sw-description");
  EXPECT_EQ(entries[1].name, "sw-description.sig");
  EXPECT_EQ(entries[2].data, rs.get("update").bytes);
  EXPECT_NE(std::string(entries[0].data.begin(), entries[0].data.end()).find("version = \"1.1.0.2\""),
            std::string::npos);
  // The reference profile's slots are files: SWUpdate's rawfile handler (it
  // fsyncs the slot) names them by path; the raw handler by device.
  const std::string description(entries[0].data.begin(), entries[0].data.end());
  EXPECT_NE(description.find("type = \"rawfile\";"), std::string::npos) << description;
  EXPECT_NE(description.find("path = \"/run/otarig/slot-b\";"), std::string::npos) << description;
  const auto raw = clients::swu_description(clients::package_content(rs.get("update").bytes), "1.0", "raw");
  EXPECT_NE(raw.find("type = \"raw\";"), std::string::npos);
  EXPECT_NE(raw.find("device = \"/run/otarig/slot-b\";"), std::string::npos);
  // swupdate -c costs about a second, mostly waiting: run them side by side.
  std::vector<std::future<ToolResult>> runs;
  for (std::size_t i = 0; i < all.size(); ++i) {
    auto dir = tmp.path() / ("run" + std::to_string(i));
    std::filesystem::create_directories(dir);
    write_bytes(dir / "update.swu", all[i].image.package.data(), all[i].image.package.size());
    runs.push_back(std::async(std::launch::async, [dir, ca] {
      return run_tool({"env", "TMPDIR=" + dir.string(), "swupdate", "-v", "-H", "otarig:1.0", "-k", ca.string(), "-e",
                       "stable,copyB", "-c", "-i", (dir / "update.swu").string()},
                      std::chrono::seconds(60));
    }));
  }
  for (std::size_t i = 0; i < all.size(); ++i) {
    auto r = runs[i].get();
    const bool ok = r.ok() && r.output.find("SWUPDATE successful") != std::string::npos;
    EXPECT_EQ(ok, all[i].expect_ok) << all[i].name << ": swupdate -c said:\n" << r.output.substr(r.output.size() > 3000 ? r.output.size() - 3000 : 0);
  }
}

// A delta .swu (boards/swupdate-ab-delta.yaml): the zchunk header, the two
// postinstall scripts and the padding SWUpdate skips; the .zck beside it at
// the URL its signed sw-description names, with a source per target slot.
TEST(SwuDeltaTest, PackageNamesTheZckAndASourcePerSlot) {
  for (const char* tool : {"zck", "zck_read_header"})
    if (!have_tool(tool)) GTEST_SKIP() << tool << " is not installed: ci/setup with OTARIG_SETUP_EXTRA=clients (zchunk)";
  auto profile = harness::load_profile(std::filesystem::path(OTARIG_SOURCE_DIR) / "boards/swupdate-ab-delta.yaml");
  harness::ReleaseSet rs(profile);
  ASSERT_TRUE(rs.makes_deltas());
  EXPECT_TRUE(rs.delta_fetches_ranges());
  EXPECT_THROW(rs.delta(rs.get("patch"), rs.get("factory")), BenchError);  // no URL to name
  const auto d = rs.delta(rs.get("patch"), rs.get("factory"), "http://127.0.0.1:8080");
  ASSERT_EQ(d.delta_files.size(), 1u);
  const auto& zck = d.delta_files[0];
  EXPECT_EQ(zck.path.rfind("/deltas/", 0), 0u) << zck.path;
  EXPECT_EQ(rs.files_beside(d).size(), 1u);
  auto entries = cpio::read(d.delta);
  ASSERT_EQ(entries.size(), 6u);
  EXPECT_EQ(entries[2].name, kSwuDeltaHeaderName);
  EXPECT_EQ(entries[5].name, kSwuPaddingName);
  EXPECT_GE(entries[5].data.size(), 256u * 1024);
  // The header is the .zck's first bytes.
  ASSERT_LT(entries[2].data.size(), zck.bytes.size());
  EXPECT_TRUE(std::equal(entries[2].data.begin(), entries[2].data.end(), zck.bytes.begin()));
  const std::string description(entries[0].data.begin(), entries[0].data.end());
  for (const char* want : {"type = \"delta\";", "url = \"http://127.0.0.1:8080/deltas/", "chain = \"rawfile\";",
                           "source = \"/run/otarig/slot-a\";", "source = \"/run/otarig/slot-b\";",
                           "type = \"postinstall\";", "filename = \"verify-B.sh\";"})
    EXPECT_NE(description.find(want), std::string::npos) << want << " in\n" << description;
  EXPECT_EQ(description.find("installed-directly"), std::string::npos);  // the delta handler refuses it
  EXPECT_EQ(description.find(kSwuPaddingName), std::string::npos);
  // copyB's image goes into slot B from slot A.
  const auto copy_b = description.substr(description.find("copyB"));
  EXPECT_LT(copy_b.find("path = \"/run/otarig/slot-b\";"), copy_b.find("source = \"/run/otarig/slot-a\";"));
  // Another URL, another package; the same target, the same .zck.
  const auto other = rs.delta(rs.get("patch"), rs.get("factory"), "http://127.0.0.1:9090");
  EXPECT_NE(other.delta, d.delta);
  EXPECT_EQ(other.delta_files[0].bytes, zck.bytes);
  // corrupt-chunk: a chunk the running image lacks, in the .zck's data, under another name.
  harness::Rng rng(5);
  std::string what;
  const auto bad = rs.corrupt_delta(rs.get("patch"), rs.get("factory"), rng, &what, "http://127.0.0.1:8080");
  ASSERT_EQ(bad.delta_files.size(), 1u);
  EXPECT_NE(bad.delta_files[0].path, zck.path);
  EXPECT_FALSE(bad.authentic);
  EXPECT_NE(bad.digest, rs.get("patch").digest);
  std::size_t differ = 0;
  for (std::size_t i = 0; i < zck.bytes.size(); ++i) differ += bad.delta_files[0].bytes[i] != zck.bytes[i];
  EXPECT_EQ(differ, 1u);
  EXPECT_NE(what.find("which the running image lacks"), std::string::npos) << what;
}

// The postinstall script checks the slot as a whole: right bytes pass, one
// flipped byte fails with what the slot holds.
TEST(SwuDeltaTest, VerifyScriptChecksTheWholeSlot) {
  if (!have_tool("sh") || !have_tool("sha256sum")) GTEST_SKIP() << "needs sh and sha256sum";
  TempDir tmp("otarig-verify");
  Bytes image(300000);
  for (std::size_t i = 0; i < image.size(); ++i) image[i] = static_cast<std::uint8_t>(i * 7 + 3);
  const auto sha = crypto::hex(crypto::sha256(image));
  auto script = swu_verify_script(1, image.size(), sha);
  const auto slot = tmp.path() / "slot-b";
  script.replace(script.find(kSwuSlotDevice[1]), std::strlen(kSwuSlotDevice[1]), slot.string());
  write_text(tmp.path() / "verify.sh", script);
  Bytes in_slot = image;
  in_slot.resize(image.size() + 4096, 0xff);  // the slot is larger than the image
  write_bytes(slot, in_slot.data(), in_slot.size());
  EXPECT_TRUE(run_tool({"sh", (tmp.path() / "verify.sh").string()}).ok());
  in_slot[123456] ^= 0x10;
  write_bytes(slot, in_slot.data(), in_slot.size());
  const auto r = run_tool({"sh", (tmp.path() / "verify.sh").string()});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("otarig: slot B holds sha256"), std::string::npos) << r.output;
}

// SWUpdate's encrypted images (boards/swupdate-ab-encrypted.yaml): the image
// in the .swu is AES-256-CBC ciphertext under the device's key and the
// package's own IV, sw-description (signed) marks it encrypted with that
// ivt and gives the ciphertext's sha256 (SWUpdate hashes the archive's
// bytes), and the rig's plaintext marker is nowhere in the package.
TEST(SwuTest, EncryptedPackagesCarryCiphertextUnderTheDevicesKey) {
  auto profile = harness::load_profile(std::filesystem::path(OTARIG_SOURCE_DIR) / "boards/swupdate-ab-encrypted.yaml");
  harness::ReleaseSet rs(profile);
  ASSERT_TRUE(rs.encrypted());
  const auto key = encryption::AesKey::test_key("swupdate-ab-encrypted-0001");
  const auto& release = rs.get("update");
  ASSERT_EQ(release.marker.size(), 32u);
  EXPECT_TRUE(encryption::contains(release.bytes, release.marker));
  EXPECT_FALSE(encryption::contains(release.package, release.marker));
  auto entries = cpio::read(release.package);
  ASSERT_EQ(entries.size(), 3u);
  const std::string description(entries[0].data.begin(), entries[0].data.end());
  const auto& cipher = entries[2].data;
  EXPECT_NE(description.find("encrypted = true;"), std::string::npos) << description;
  EXPECT_NE(description.find("installed-directly = false;"), std::string::npos) << description;
  EXPECT_NE(description.find("sha256 = \"" + crypto::hex(crypto::sha256(cipher)) + "\";"), std::string::npos)
      << description;
  const auto ivt_at = description.find("ivt = \"");
  ASSERT_NE(ivt_at, std::string::npos) << description;
  const auto iv = crypto::from_hex(description.substr(ivt_at + 7, 32));
  const std::span<const std::uint8_t, 16> ivs(iv.data(), 16);
  EXPECT_NE(crypto::hex(iv), crypto::hex(key.iv)) << "each image has an IV of its own";
  auto plain = encryption::aes_cbc_decrypt_raw(cipher, key, ivs);
  ASSERT_EQ(plain.size(), (release.bytes.size() / 16 + 1) * 16);
  plain.resize(release.bytes.size());
  EXPECT_EQ(plain, release.bytes);
  // Another release, another IV.
  const auto next = cpio::read(rs.get("next").package);
  EXPECT_EQ(std::string(next[0].data.begin(), next[0].data.end()).find(description.substr(ivt_at, 40)),
            std::string::npos);

  harness::Rng rng(3);
  std::string what;
  // A ciphertext bit flipped after signing: the signed sha256 is the release's ciphertext's.
  const auto tampered = rs.make_variant(release, "tampered-ciphertext", "", rng, &what);
  EXPECT_FALSE(tampered.authentic);
  auto t = cpio::read(tampered.package);
  EXPECT_EQ(t[0].data, entries[0].data) << what;
  ASSERT_EQ(t[2].data.size(), cipher.size());
  int bits = 0;
  for (std::size_t i = 0; i < cipher.size(); ++i) bits += __builtin_popcount(t[2].data[i] ^ cipher[i]);
  EXPECT_EQ(bits, 1) << what;
  // What a device that decrypted it anyway would write still carries the marker.
  EXPECT_TRUE(encryption::contains(tampered.bytes, release.marker)) << what;
  EXPECT_NE(tampered.digest, release.digest);
  // Encrypted with another device's key, validly signed: the device's key decrypts it to garbage.
  const auto other = rs.make_variant(release, "other-device-key", "", rng, &what);
  auto o = cpio::read(other.package);
  const std::string other_description(o[0].data.begin(), o[0].data.end());
  EXPECT_NE(other_description.find("sha256 = \"" + crypto::hex(crypto::sha256(o[2].data)) + "\";"), std::string::npos);
  EXPECT_FALSE(encryption::contains(other.bytes, release.marker)) << what;
  EXPECT_NE(other.digest, release.digest);
  // The damage of the other variants is done to encrypted packages too.
  for (const auto& c : cases(rs)) {
    EXPECT_FALSE(encryption::contains(c.image.package, release.marker)) << c.name;
    if (c.name == "truncated") continue;  // no whole archive to read
    const auto d = cpio::read(c.image.package)[0].data;
    EXPECT_NE(std::string(d.begin(), d.end()).find("encrypted = true;"), std::string::npos) << c.name;
  }
}

// The flawed build (boards/flawed/swupdate-ab-plaintext-image.yaml): the
// device holds a key, the profile says encrypted, the package is plain.
TEST(SwuTest, ABuildThatEncryptsNothingShipsThePlaintext) {
  auto profile =
      harness::load_profile(std::filesystem::path(OTARIG_SOURCE_DIR) / "boards/flawed/swupdate-ab-plaintext-image.yaml");
  harness::ReleaseSet rs(profile);
  ASSERT_TRUE(rs.encrypted());
  const auto& release = rs.get("update");
  EXPECT_TRUE(encryption::contains(release.package, release.marker));
  const auto entries = cpio::read(release.package);
  EXPECT_EQ(entries[2].data, release.bytes);
  EXPECT_EQ(std::string(entries[0].data.begin(), entries[0].data.end()).find("encrypted"), std::string::npos);
}

TEST(RaucbTest, RaucChecksEveryVariant) {
  for (const char* tool : {"rauc", "mksquashfs", "unsquashfs"})
    if (!have_tool(tool))
      GTEST_SKIP() << tool << " is not installed: ci/setup with OTARIG_SETUP_EXTRA=clients";
  auto profile = harness::load_profile(std::filesystem::path(OTARIG_SOURCE_DIR) / "boards/rauc-ab.yaml");
  harness::ReleaseSet rs(profile);
  TempDir tmp("otarig-raucb-test");
  const auto ca = tmp.path() / "ca.pem";
  write_text(ca, rs.package_trust_pem());
  auto all = cases(rs);
  auto manifest = rauc_bundle_manifest(all[0].image.package);
  EXPECT_NE(manifest.find("version=1.1.0.2"), std::string::npos) << manifest;
  EXPECT_NE(manifest.find("compatible=otarig-board"), std::string::npos) << manifest;
  for (std::size_t i = 0; i < all.size(); ++i) {
    const auto file = tmp.path() / ("b" + std::to_string(i) + ".raucb");
    write_bytes(file, all[i].image.package.data(), all[i].image.package.size());
    auto r = run_tool({"rauc", "info", "--keyring=" + ca.string(), file.string()}, std::chrono::seconds(60));
    EXPECT_EQ(r.ok(), all[i].expect_ok) << all[i].name << ": rauc info said:\n" << r.output;
  }
}

// A package signed by a signer certificate the device's CA issued but whose
// validity has ended (2001..2002) or not begun (2200..2300), its CMS
// signature made now (scenarios signer-expired, signer-not-yet-valid): the
// slot image is the release itself, and the real client refuses it by its
// clock; the same release signed by the board's signer passes.
const std::int64_t kExpired[2] = {978307200, 1009843200}, kFuture[2] = {7258118400, 10413792000};

TEST(SwuTest, SwupdateRefusesASignerOutsideItsValidity) {
  if (!have_tool("swupdate")) GTEST_SKIP() << "swupdate is not installed: ci/setup with OTARIG_SETUP_EXTRA=clients";
  auto profile = harness::load_profile(std::filesystem::path(OTARIG_SOURCE_DIR) / "boards/swupdate-ab.yaml");
  harness::ReleaseSet rs(profile);
  EXPECT_EQ(rs.no_signer_validity(), "");
  TempDir tmp("otarig-swu-validity");
  const auto ca = tmp.path() / "ca.pem";
  write_text(ca, rs.package_trust_pem());
  const auto& base = rs.get("update");
  std::string what;
  const std::vector<std::pair<std::string, harness::BuiltImage>> all = {
      {"release", base},
      {"expired", rs.signer_outside_validity(base, kExpired[0], kExpired[1], "signer-expired", false, &what)},
      {"not-yet-valid", rs.signer_outside_validity(base, kFuture[0], kFuture[1], "signer-not-yet-valid", false, nullptr)}};
  EXPECT_NE(what.find("valid 2001-01-01T00:00:00Z .. 2002-01-01T00:00:00Z"), std::string::npos) << what;
  for (std::size_t i = 0; i < all.size(); ++i) {
    const auto& [name, img] = all[i];
    EXPECT_EQ(img.digest, base.digest) << name;
    const auto pkg = rs.artifact(img);
    if (i > 0) {
      EXPECT_NE(pkg, rs.artifact(base)) << name;
    }
    EXPECT_EQ(cpio::read(pkg)[2].data, base.bytes) << name;
    auto dir = tmp.path() / name;
    std::filesystem::create_directories(dir);
    write_bytes(dir / "update.swu", pkg.data(), pkg.size());
    auto r = run_tool({"env", "TMPDIR=" + dir.string(), "swupdate", "-v", "-H", "otarig:1.0", "-k", ca.string(), "-e",
                       "stable,copyB", "-c", "-i", (dir / "update.swu").string()},
                      std::chrono::seconds(60));
    const bool ok = r.ok() && r.output.find("SWUPDATE successful") != std::string::npos;
    EXPECT_EQ(ok, i == 0) << name << ": swupdate -c said:\n" << r.output.substr(r.output.size() > 3000 ? r.output.size() - 3000 : 0);
    if (i > 0) {
      EXPECT_NE(r.output.find("Authentication of all signatures failed"), std::string::npos) << name << ": " << r.output;
    }
  }
}

TEST(RaucbTest, RaucRefusesASignerOutsideItsValidity) {
  for (const char* tool : {"rauc", "mksquashfs", "unsquashfs"})
    if (!have_tool(tool))
      GTEST_SKIP() << tool << " is not installed: ci/setup with OTARIG_SETUP_EXTRA=clients";
  auto profile = harness::load_profile(std::filesystem::path(OTARIG_SOURCE_DIR) / "boards/rauc-ab.yaml");
  harness::ReleaseSet rs(profile);
  TempDir tmp("otarig-raucb-validity");
  const auto ca = tmp.path() / "ca.pem";
  write_text(ca, rs.package_trust_pem());
  const auto& base = rs.get("update");
  const std::vector<std::tuple<std::string, harness::BuiltImage, std::string>> all = {
      {"release", base, ""},
      {"expired", rs.signer_outside_validity(base, kExpired[0], kExpired[1], "signer-expired", false, nullptr),
       "certificate has expired"},
      {"not-yet-valid", rs.signer_outside_validity(base, kFuture[0], kFuture[1], "signer-not-yet-valid", false, nullptr),
       "certificate is not yet valid"}};
  for (const auto& [name, img, error] : all) {
    const auto file = tmp.path() / (name + ".raucb");
    const auto pkg = rs.artifact(img);
    write_bytes(file, pkg.data(), pkg.size());
    auto r = run_tool({"rauc", "info", "--keyring=" + ca.string(), file.string()}, std::chrono::seconds(60));
    EXPECT_EQ(r.ok(), error.empty()) << name << ": rauc info said:\n" << r.output;
    if (!error.empty()) {
      EXPECT_NE(r.output.find(error), std::string::npos) << name << ": " << r.output;
    }
  }
}

// The package CA and signer cover a device clock 30 days off either way
// (clock-skew), whichever way the seed moves it.
TEST(SigningPkiTest, TheSignerAndItsCaCoverAClockThirtyDaysOffEitherWay) {
  const auto pki = SigningPki::generate("validity test");
  for (const auto* pem : {&pki.ca.cert_pem, &pki.signer.cert_pem}) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())), BIO_free);
    std::unique_ptr<X509, decltype(&X509_free)> x(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), X509_free);
    ASSERT_TRUE(x);
    for (long days : {-31L, 31L}) {
      time_t at = time(nullptr) + days * 86400;
      EXPECT_LE(X509_cmp_time(X509_get0_notBefore(x.get()), &at), 0) << days;
      EXPECT_GE(X509_cmp_time(X509_get0_notAfter(x.get()), &at), 0) << days;
    }
  }
}

TEST(MenderArtifactTest, AMenderSignerHasNoValidityPeriod) {
  if (!have_tool("mender-artifact"))
    GTEST_SKIP() << "mender-artifact is not installed: ci/setup with OTARIG_SETUP_EXTRA=clients";
  auto profile = harness::load_profile(std::filesystem::path(OTARIG_SOURCE_DIR) / "boards/mender-ab.yaml");
  harness::ReleaseSet rs(profile);
  EXPECT_NE(rs.no_signer_validity().find("no signer certificate"), std::string::npos) << rs.no_signer_validity();
  EXPECT_THROW(rs.signer_outside_validity(rs.get("update"), kExpired[0], kExpired[1], "signer-expired", false, nullptr),
               InputError);
}

// Mender artifacts (boards/mender-ab.yaml) through `mender-artifact validate
// -k` (signature, manifest checksums): the release and its self-test twin
// validate; every other variant fails.
TEST(MenderArtifactTest, MenderArtifactValidatesEveryVariant) {
  if (!have_tool("mender-artifact"))
    GTEST_SKIP() << "mender-artifact is not installed: ci/setup with OTARIG_SETUP_EXTRA=clients";
  auto profile = harness::load_profile(std::filesystem::path(OTARIG_SOURCE_DIR) / "boards/mender-ab.yaml");
  harness::ReleaseSet rs(profile);
  TempDir tmp("otarig-mender-test");
  const auto key = tmp.path() / "verify.pem";
  write_text(key, rs.package_trust_pem());
  EXPECT_NE(rs.package_trust_pem().find("BEGIN PUBLIC KEY"), std::string::npos);
  auto all = cases(rs);
  const auto& release = all[0].image.package;
  auto has = [](const Bytes& b, const std::string& text) {
    return std::search(b.begin(), b.end(), text.begin(), text.end()) != b.end();
  };
  EXPECT_TRUE(has(release, "\"rootfs-image.version\":\"1.1.0.2\""));
  EXPECT_TRUE(has(release, "\"device_type\":[\"otarig-board\"]"));
  EXPECT_TRUE(has(release, "ArtifactInstall_Enter_10_otarig-no-downgrade"));
  EXPECT_TRUE(has(release, "ArtifactCommit_Leave_00_otarig-console"));
  // The slot image is stored as it is (no compression).
  EXPECT_TRUE(std::search(release.begin(), release.end(), rs.get("update").bytes.begin(),
                          rs.get("update").bytes.end()) != release.end());
  for (std::size_t i = 0; i < all.size(); ++i) {
    const auto file = tmp.path() / ("a" + std::to_string(i) + ".mender");
    write_bytes(file, all[i].image.package.data(), all[i].image.package.size());
    auto r = run_tool({"mender-artifact", "validate", "-k", key.string(), file.string()}, std::chrono::seconds(60));
    EXPECT_EQ(r.ok(), all[i].expect_ok) << all[i].name << ": mender-artifact validate said:\n" << r.output;
  }
  // The flawed twin's artifacts carry no downgrade check.
  auto flawed = harness::load_profile(std::filesystem::path(OTARIG_SOURCE_DIR) /
                                      "boards/flawed/mender-ab-no-downgrade-check.yaml");
  harness::ReleaseSet frs(flawed);
  EXPECT_FALSE(has(frs.artifact(frs.get("update")), "otarig-no-downgrade"));
}

}  // namespace
}  // namespace otarig::drivers::clients
