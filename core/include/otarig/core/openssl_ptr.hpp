#pragma once
// Owners of OpenSSL objects, and OpenSSL's last error as text: shared by the
// code that speaks OpenSSL (crypto, the test PKI, package signing).
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

namespace otarig::ossl {

/// unique_ptr deleter calling OpenSSL's free function F.
template <class T, void F(T*)>
struct Deleter {
  void operator()(T* p) const noexcept { F(p); }
};

using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, Deleter<EVP_PKEY_CTX, EVP_PKEY_CTX_free>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX, EVP_MD_CTX_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION, X509_EXTENSION_free>>;

/// The oldest error on OpenSSL's queue as text ("unknown OpenSSL error" when
/// it is empty); the queue is cleared.
std::string last_error();

}  // namespace otarig::ossl
