#pragma once
// otarig-vboard's download client: a small blocking HTTP/1.1 GET (Boost.Beast,
// TLS and mutual TLS through OpenSSL) with a deadline on every step, and
// file: URLs. The body arrives in chunks, so the caller can report progress.
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace otarig::vboard_tool {

struct DownloadOptions {
  std::string ca_file;           ///< PEM CA the server must chain to (https); empty: system CAs
  /// More CA certificates (DER) the server may chain to: those trust updates added.
  std::vector<std::vector<std::uint8_t>> extra_ca_der;
  std::string client_cert_file;  ///< PEM client certificate (mutual TLS)
  std::string client_key_file;
  /// Flawed when false: the server's certificate is not checked at all (no
  /// chain to `ca_file`, no name), so any TLS server that answers is taken
  /// for the update server.
  bool verify_server = true;
  /// Deadline of each step (connect, handshake, write, every read).
  std::chrono::milliseconds step_timeout{10000};
  /// Deadline of the whole download.
  std::chrono::milliseconds total_timeout{60000};
  /// Flawed when false: no deadline on any step or on the whole download, so
  /// a server that stops sending holds the updater for as long as it likes.
  bool deadlines = true;
  /// More body bytes than this is an error (the slot cannot hold them).
  std::uint64_t max_bytes = 1u << 30;
  /// A 200 without Content-Length (a body that ends when the connection
  /// does) is read up to `expected_size`, or else the total size its otarig
  /// image header declares, and no further (a body that is no otarig image
  /// ends when the server closes, at most `max_bytes`). Flawed when false:
  /// such a body is read until the server closes, with no size bound at all.
  bool stop_at_declared_size = true;
  /// The size the update's metadata names (the update command), for a body
  /// whose length the server does not say.
  std::optional<std::uint64_t> expected_size;
  /// Called for every chunk of the body as it arrives.
  std::function<void(std::span<const std::uint8_t>)> on_chunk;
  /// When the connection fails after part of the body arrived, connect again
  /// and ask for the rest (`Range: bytes=N-`) up to this many times.
  unsigned resume_attempts = 2;
  /// Called before each resume with the reason and the bytes kept.
  std::function<void(const std::string& reason, std::uint64_t kept)> on_resume;
};

/// Why a download failed, in words a console line can carry.
class DownloadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// GETs `url` (http://, https://, or file:PATH) and returns the body. The
/// request carries `Connection: close`. Anything but a complete 200 response
/// whose body matches its Content-Length is a DownloadError. Without
/// Content-Length, reading stops at `expected_size` or at the total size
/// (header, payload, trailer) the otarig image header in the first bytes
/// declares, and the connection is closed; fewer bytes than that before the
/// server closes is a short body. A connection
/// lost in the body is resumed with a Range request (206 whose Content-Range
/// continues at the bytes kept and names the same total; a 200 starts over);
/// every attempt shares the total deadline.
std::vector<std::uint8_t> download(const std::string& url, const DownloadOptions& options);

}  // namespace otarig::vboard_tool
