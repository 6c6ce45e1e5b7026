#pragma once
// What the clients family's package formats share (formats.cpp,
// mender_format.cpp); not a public header.
#include <filesystem>
#include <memory>
#include <string>

#include "otarig/core/config.hpp"
#include "otarig/drivers/clients/package.hpp"
#include "otarig/drivers/package_format.hpp"

namespace otarig::drivers::clients {

/// The section's `signer` folder (ca.pem, signer.pem, signer.key and the
/// unrelated CA's pair for the wrong-key variant): read, or written fresh
/// when it holds no signer.key. Without `signer`, a fresh PKI in memory.
SigningPki signing_pki(const Config& section, const std::string& board_name, const std::filesystem::path& dir);

/// A name of 1-64 of [A-Za-z0-9._-] from the section, if given.
void read_word(const Config& section, const char* key, std::string& value);

/// A device name other than `own` (the wrong-device variant's package field).
std::string other_device(const std::string& own);

/// Mender's rootfs-image artifacts (`package: {format: mender}`).
std::unique_ptr<PackageFormat> make_mender_format(const Config& section, const std::string& board_name,
                                                  const std::filesystem::path& dir);

}  // namespace otarig::drivers::clients
