// Test CA, server, client and impostor certificates through OpenSSL 3.
#include "otarig/drivers/net/pki.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <fstream>
#include <memory>
#include <sstream>

#include "otarig/core/errors.hpp"
#include "otarig/core/openssl_ptr.hpp"

namespace otarig::drivers::net {
namespace {

using ossl::BioPtr;
using ossl::ExtPtr;
using ossl::PkeyPtr;
using ossl::X509Ptr;

[[noreturn]] void fail(const std::string& step) {
  throw BenchError("test PKI: " + step + ": " + ossl::last_error());
}

PkeyPtr p256_key() {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", const_cast<char*>("P-256")));
  if (!key) fail("generate an EC P-256 key");
  return key;
}

void add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  ExtPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) fail("add extension " + std::string(OBJ_nid2sn(nid)));
}

enum class Role { ca, server, client };

struct Issued {
  X509Ptr cert;
  PkeyPtr key;
};

constexpr long kBackdate = 90L * 86400;

// When a certificate is valid, in seconds from now.
struct Validity {
  long not_before = 0;
  long not_after = 0;
};

// From 90 days ago for `valid_for` from now: a device clock off by up to
// 30 days either way (device-clock's clock-skew) still finds it valid, so the
// verdict of a skew does not depend on the seed's direction.
Validity usual(const TestPkiOptions& o) {
  return {-kBackdate, static_cast<long>(o.valid_for.count()) * 3600};
}

// `issuer` null: self-signed.
Issued issue(Role role, const std::string& common_name, const Issued* issuer, const TestPkiOptions& o,
             Validity validity) {
  Issued out{X509Ptr(X509_new()), p256_key()};
  X509* x = out.cert.get();
  if (!x) fail("X509_new");
  if (X509_set_version(x, 2) != 1) fail("set version");  // v3
  std::uint64_t serial = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&serial), sizeof serial) != 1) fail("random serial");
  serial = (serial >> 1) | 1;  // positive, nonzero
  if (ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial) != 1) fail("set serial");
  X509_NAME* name = X509_get_subject_name(x);
  auto add_name = [&](const char* field, const std::string& value) {
    if (X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(value.c_str()),
                                   -1, -1, 0) != 1)
      fail("set subject name");
  };
  add_name("O", "otarig");
  add_name("CN", common_name);
  X509* issuer_cert = issuer ? issuer->cert.get() : x;
  if (X509_set_issuer_name(x, X509_get_subject_name(issuer_cert)) != 1) fail("set issuer name");
  if (!X509_gmtime_adj(X509_getm_notBefore(x), validity.not_before) ||
      !X509_gmtime_adj(X509_getm_notAfter(x), validity.not_after))
    fail("set validity");
  if (X509_set_pubkey(x, out.key.get()) != 1) fail("set public key");

  add_ext(x, issuer_cert, NID_subject_key_identifier, "hash");
  add_ext(x, issuer_cert, NID_authority_key_identifier, "keyid:always");
  switch (role) {
    case Role::ca:
      add_ext(x, issuer_cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
      add_ext(x, issuer_cert, NID_key_usage, "critical,keyCertSign,cRLSign");
      break;
    case Role::server: {
      add_ext(x, issuer_cert, NID_basic_constraints, "critical,CA:FALSE");
      add_ext(x, issuer_cert, NID_key_usage, "critical,digitalSignature");
      add_ext(x, issuer_cert, NID_ext_key_usage, "serverAuth");
      std::string san;
      for (const auto& d : o.dns_names) san += (san.empty() ? "DNS:" : ",DNS:") + d;
      for (const auto& ip : o.ip_addresses) san += (san.empty() ? "IP:" : ",IP:") + ip;
      if (!san.empty()) add_ext(x, issuer_cert, NID_subject_alt_name, san);
      break;
    }
    case Role::client:
      add_ext(x, issuer_cert, NID_basic_constraints, "critical,CA:FALSE");
      add_ext(x, issuer_cert, NID_key_usage, "critical,digitalSignature");
      add_ext(x, issuer_cert, NID_ext_key_usage, "clientAuth");
      break;
  }
  EVP_PKEY* signer = issuer ? issuer->key.get() : out.key.get();
  if (X509_sign(x, signer, EVP_sha256()) <= 0) fail("sign certificate " + common_name);
  return out;
}

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<std::size_t>(len));
}

CertifiedKey to_pem(const Issued& in) {
  BioPtr cert(BIO_new(BIO_s_mem()));
  BioPtr key(BIO_new(BIO_s_mem()));
  if (!cert || !key || PEM_write_bio_X509(cert.get(), in.cert.get()) != 1 ||
      PEM_write_bio_PrivateKey(key.get(), in.key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
    fail("write PEM");
  return {bio_text(cert.get()), bio_text(key.get())};
}

void write_file(const std::filesystem::path& file, const std::string& text, bool secret) {
  {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) throw BenchError("cannot write " + file.string());
  }
  if (secret) std::filesystem::permissions(file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

}  // namespace

TestPki TestPki::generate(const TestPkiOptions& options) {
  const Validity valid = usual(options);
  constexpr long kDay = 86400;
  // Lapsed: valid for 30 days, ended a day ago; early: begins in a day. A
  // day either way holds against the skew a device's clock may have.
  const Validity lapsed{-31 * kDay, -kDay};
  const Validity early{kDay, 31 * kDay};
  Issued ca = issue(Role::ca, options.label + " CA", nullptr, options, valid);
  Issued server = issue(Role::server, options.label + " server", &ca, options, valid);
  Issued client = issue(Role::client, options.label + " client", &ca, options, valid);
  Issued wrong_ca = issue(Role::ca, options.label + " CA", nullptr, options, valid);  // same name, other key
  Issued impostor = issue(Role::server, options.label + " server", &wrong_ca, options, valid);
  Issued expired = issue(Role::server, options.label + " server", &ca, options, lapsed);
  Issued not_yet_valid = issue(Role::server, options.label + " server", &ca, options, early);
  Issued renewed = issue(Role::server, options.label + " server", &ca, options, valid);  // new key and serial
  Issued rotated_ca = issue(Role::ca, options.label + " CA 2", nullptr, options, valid);
  Issued rotated = issue(Role::server, options.label + " server", &rotated_ca, options, valid);
  Issued expired_client = issue(Role::client, options.label + " client", &ca, options, lapsed);
  Issued renewed_client = issue(Role::client, options.label + " client", &ca, options, valid);  // new key and serial
  return TestPki{to_pem(ca),      to_pem(server),        to_pem(client),  to_pem(wrong_ca),
                 to_pem(impostor), to_pem(expired),       to_pem(not_yet_valid), to_pem(renewed),
                 to_pem(rotated_ca), to_pem(rotated),     to_pem(expired_client), to_pem(renewed_client)};
}

std::map<std::string, CertifiedKey> TestPki::server_certificates() const {
  return {{"expired", expired}, {"not-yet-valid", not_yet_valid}, {"renewed", renewed}, {"rotated-ca", rotated}};
}

void TestPki::write(const std::filesystem::path& dir) const {
  std::filesystem::create_directories(dir);
  const std::pair<const char*, const CertifiedKey*> items[] = {
      {"ca", &ca},           {"server", &server},       {"client", &client},
      {"wrong-ca", &wrong_ca}, {"impostor", &impostor}, {"expired", &expired},
      {"not-yet-valid", &not_yet_valid}, {"renewed", &renewed}, {"rotated-ca", &rotated_ca},
      {"rotated", &rotated}, {"expired-client", &expired_client}, {"renewed-client", &renewed_client}};
  for (const auto& [stem, ck] : items) {
    write_file(dir / (std::string(stem) + ".pem"), ck->cert_pem, false);
    write_file(dir / (std::string(stem) + ".key"), ck->key_pem, true);
  }
}

std::string read_text_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw InputError(file.string() + ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw InputError(file.string() + ": read error");
  return text.str();
}

}  // namespace otarig::drivers::net
