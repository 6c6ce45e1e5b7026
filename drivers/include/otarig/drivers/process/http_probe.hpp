#pragma once
// The rig's own HTTP requests to an update server (not the device's): a GET
// that tells whether the server answers a client without a certificate, and
// a HEAD that measures the response header. Boost.Beast, each on an
// io_context of its own, every step under one deadline.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>

#include "otarig/drivers/protocols.hpp"

namespace otarig::drivers::process {

/// GET `target` from `address`:`port` with `Connection: close`; over TLS
/// when `ca_file` is given (the server's certificate checked against it and
/// its IP address, no client certificate presented). `answered` when an HTTP
/// status line came back; `detail` is that line ("plain HTTP, no TLS: HTTP/1.1
/// 200 OK", "answered without a client certificate: ...") or why not ("TLS
/// handshake refused: ...", "refused after the handshake: ...", "the server
/// closed the connection without an answer", "no HTTP response header:
/// ..." for a truncated or foreign answer). std::runtime_error when it cannot connect ("connect: ...") or the
/// CA file does not load ("TLS setup: ...").
/// With `client_certificate` (certificate and key PEM files) it presents
/// that certificate ("answered with the client certificate: ...").
ProbeResult probe_http(const std::string& address, std::uint16_t port, const std::string& target,
                       const std::optional<std::filesystem::path>& ca_file, std::chrono::milliseconds deadline,
                       const std::optional<std::pair<std::filesystem::path, std::filesystem::path>>&
                           client_certificate = std::nullopt);

/// The length on the wire of the response header `address`:`port` sends
/// for HEAD `target` (with `Connection: close`): what a download's bytes
/// start after. std::runtime_error with the reason: "connect: ...", "send
/// failed", "the server did not answer" (deadline), "the server closed the
/// connection without an answer", "the connection closed early" (a
/// truncated header), or the parser's complaint.
std::uint64_t http_response_header_size(const std::string& address, std::uint16_t port, const std::string& target,
                                        std::chrono::milliseconds deadline);

}  // namespace otarig::drivers::process
