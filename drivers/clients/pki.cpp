// The signing PKI of packaged boards and CMS signatures, through OpenSSL 3.
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <memory>

#include "otarig/drivers/clients/tools.hpp"

#include "otarig/drivers/clients/package.hpp"
#include "otarig/core/errors.hpp"
#include "otarig/core/openssl_ptr.hpp"

namespace otarig::drivers::clients {
namespace {

using ossl::BioPtr;
using ossl::Deleter;
using ossl::ExtPtr;
using ossl::PkeyPtr;
using ossl::X509Ptr;
using CmsPtr = std::unique_ptr<CMS_ContentInfo, Deleter<CMS_ContentInfo, CMS_ContentInfo_free>>;

[[noreturn]] void fail(const std::string& step) {
  throw BenchError("package signing: " + step + ": " + ossl::last_error());
}

struct Issued {
  X509Ptr cert;
  PkeyPtr key;
};

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  ExtPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) fail(std::string("add extension ") + OBJ_nid2sn(nid));
}

// When a certificate is valid: seconds from now, or (absolute) UNIX seconds.
struct Validity {
  std::int64_t not_before = 0, not_after = 0;
  bool absolute = false;
};

// `issuer` null: a self-signed CA. Valid from a year ago for ten years unless
// `validity` says otherwise.
Issued issue(const std::string& common_name, const Issued* issuer,
             Validity validity = {-365LL * 86400, 10LL * 365 * 86400, false}) {
  Issued out{X509Ptr(X509_new()), PkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", const_cast<char*>("P-256")))};
  X509* x = out.cert.get();
  if (!x || !out.key) fail("generate a key for " + common_name);
  if (X509_set_version(x, 2) != 1) fail("set version");
  std::uint64_t serial = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&serial), sizeof serial) != 1) fail("random serial");
  serial = (serial >> 1) | 1;
  if (ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial) != 1) fail("set serial");
  X509_NAME* name = X509_get_subject_name(x);
  for (auto [field, value] : {std::pair<const char*, std::string>{"O", "otarig"}, {"CN", common_name}})
    if (X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1, 0) != 1)
      fail("set subject name");
  X509* issuer_cert = issuer ? issuer->cert.get() : x;
  if (X509_set_issuer_name(x, X509_get_subject_name(issuer_cert)) != 1) fail("set issuer name");
  // By default valid from a year ago for ten years: packages outlive a run,
  // and a device clock off by up to 30 days either way (device-clock's
  // clock-skew) still finds the signer valid, whichever way the seed moves it.
  if (validity.absolute) {
    if (!X509_time_adj_ex(X509_getm_notBefore(x), 0, 0, &validity.not_before) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), 0, 0, &validity.not_after))
      fail("set validity");
  } else if (!X509_gmtime_adj(X509_getm_notBefore(x), static_cast<long>(validity.not_before)) ||
             !X509_gmtime_adj(X509_getm_notAfter(x), static_cast<long>(validity.not_after))) {
    fail("set validity");
  }
  if (X509_set_pubkey(x, out.key.get()) != 1) fail("set public key");
  add_ext(x, issuer_cert, NID_subject_key_identifier, "hash");
  add_ext(x, issuer_cert, NID_authority_key_identifier, "keyid:always");
  if (!issuer) {
    add_ext(x, issuer_cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
    add_ext(x, issuer_cert, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(x, issuer_cert, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(x, issuer_cert, NID_key_usage, "critical,digitalSignature");
    add_ext(x, issuer_cert, NID_ext_key_usage, "emailProtection,codeSigning");
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

PemPair to_pem(const Issued& in) {
  BioPtr cert(BIO_new(BIO_s_mem()));
  BioPtr key(BIO_new(BIO_s_mem()));
  if (!cert || !key || PEM_write_bio_X509(cert.get(), in.cert.get()) != 1 ||
      PEM_write_bio_PrivateKey(key.get(), in.key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
    fail("write PEM");
  return {bio_text(cert.get()), bio_text(key.get())};
}

}  // namespace

SigningPki SigningPki::generate(const std::string& label) {
  auto ca = issue(label + " CA", nullptr);
  auto signer = issue(label + " signer", &ca);
  auto wrong_ca = issue(label + " unrelated CA", nullptr);
  auto wrong_signer = issue(label + " signer", &wrong_ca);  // same name, another CA
  return {to_pem(ca), to_pem(signer), to_pem(wrong_ca), to_pem(wrong_signer)};
}

PemPair issue_signer(const PemPair& ca, const std::string& common_name, std::int64_t not_before,
                     std::int64_t not_after) {
  BioPtr cert_bio(BIO_new_mem_buf(ca.cert_pem.data(), static_cast<int>(ca.cert_pem.size())));
  BioPtr key_bio(BIO_new_mem_buf(ca.key_pem.data(), static_cast<int>(ca.key_pem.size())));
  if (!cert_bio || !key_bio) fail("BIO_new_mem_buf");
  Issued issuer{X509Ptr(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr)),
                PkeyPtr(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr))};
  if (!issuer.cert || !issuer.key) fail("read the CA's certificate and key");
  return to_pem(issue(common_name, &issuer, {not_before, not_after, true}));
}

void SigningPki::write(const std::filesystem::path& dir) const {
  std::filesystem::create_directories(dir);
  for (const auto& [name, pair] : {std::pair<const char*, const PemPair*>{"ca", &ca},
                                   {"signer", &signer},
                                   {"wrong-ca", &wrong_ca},
                                   {"wrong-signer", &wrong_signer}}) {
    write_text(dir / (std::string(name) + ".pem"), pair->cert_pem);
    const auto key = dir / (std::string(name) + ".key");
    write_text(key, pair->key_pem);
    std::filesystem::permissions(key, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  }
}

SigningPki SigningPki::read(const std::filesystem::path& dir) {
  auto text = [&](const std::string& name) {
    auto bytes = read_bytes(dir / name);
    return std::string(bytes.begin(), bytes.end());
  };
  SigningPki p;
  for (auto [name, pair] : {std::pair<const char*, PemPair*>{"ca", &p.ca},
                            {"signer", &p.signer},
                            {"wrong-ca", &p.wrong_ca},
                            {"wrong-signer", &p.wrong_signer}}) {
    pair->cert_pem = text(std::string(name) + ".pem");
    pair->key_pem = text(std::string(name) + ".key");
  }
  return p;
}

Bytes cms_sign(std::span<const std::uint8_t> content, const PemPair& signer) {
  BioPtr cert_bio(BIO_new_mem_buf(signer.cert_pem.data(), static_cast<int>(signer.cert_pem.size())));
  BioPtr key_bio(BIO_new_mem_buf(signer.key_pem.data(), static_cast<int>(signer.key_pem.size())));
  if (!cert_bio || !key_bio) fail("BIO_new_mem_buf");
  X509Ptr cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
  PkeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (!cert || !key) fail("read the signer's certificate and key");
  BioPtr data(BIO_new_mem_buf(content.data(), static_cast<int>(content.size())));
  if (!data) fail("BIO_new_mem_buf");
  CmsPtr cms(CMS_sign(cert.get(), key.get(), nullptr, data.get(),
                      CMS_DETACHED | CMS_BINARY | CMS_NOSMIMECAP));
  if (!cms) fail("CMS_sign");
  BioPtr out(BIO_new(BIO_s_mem()));
  if (!out || i2d_CMS_bio(out.get(), cms.get()) != 1) fail("write the CMS signature");
  auto text = bio_text(out.get());
  return Bytes(text.begin(), text.end());
}

std::pair<std::size_t, std::size_t> cms_signature_value(std::span<const std::uint8_t> der) {
  BioPtr in(BIO_new_mem_buf(der.data(), static_cast<int>(der.size())));
  CmsPtr cms(in ? d2i_CMS_bio(in.get(), nullptr) : nullptr);
  ERR_clear_error();
  if (!cms) throw InputError("not a DER CMS signature");
  auto* infos = CMS_get0_SignerInfos(cms.get());
  if (!infos || sk_CMS_SignerInfo_num(infos) < 1) throw InputError("a CMS signature without a signer");
  auto* value = CMS_SignerInfo_get0_signature(sk_CMS_SignerInfo_value(infos, 0));
  if (!value || ASN1_STRING_length(value) <= 0) throw InputError("a CMS signer without a signature value");
  const auto* bytes = ASN1_STRING_get0_data(value);
  const auto n = static_cast<std::size_t>(ASN1_STRING_length(value));
  auto it = std::search(der.begin(), der.end(), bytes, bytes + n);
  if (it == der.end()) throw InputError("the CMS signature value is not found in its DER");
  return {static_cast<std::size_t>(it - der.begin()), n};
}

}  // namespace otarig::drivers::clients
