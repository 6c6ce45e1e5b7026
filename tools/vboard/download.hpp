#pragma once
// otarig-vboard's download client: a small blocking HTTP/1.1 GET (Boost.Beast,
// TLS and mutual TLS through OpenSSL) with a deadline on every step, and
// file: URLs. The body arrives in chunks, so the caller can report progress.
#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace otarig::vboard_tool {

struct DownloadOptions {
  std::string ca_file;           ///< PEM CA the server must chain to (https); empty: system CAs
  std::string client_cert_file;  ///< PEM client certificate (mutual TLS)
  std::string client_key_file;
  /// Deadline of each step (connect, handshake, write, every read).
  std::chrono::milliseconds step_timeout{10000};
  /// Deadline of the whole download.
  std::chrono::milliseconds total_timeout{60000};
  /// More body bytes than this is an error (the slot cannot hold them).
  std::uint64_t max_bytes = 1u << 30;
  /// Called for every chunk of the body as it arrives.
  std::function<void(std::span<const std::uint8_t>)> on_chunk;
};

/// Why a download failed, in words a console line can carry.
class DownloadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// GETs `url` (http://, https://, or file:PATH) and returns the body. The
/// request carries `Connection: close`. Anything but a complete 200 response
/// whose body matches its Content-Length is a DownloadError.
std::vector<std::uint8_t> download(const std::string& url, const DownloadOptions& options);

}  // namespace otarig::vboard_tool
