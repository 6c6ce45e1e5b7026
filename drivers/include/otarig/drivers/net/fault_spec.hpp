#pragma once
// The fault proxy's fault spec: which faults apply to which connection and
// direction. Text format (docs/network.md):
//
//   down:corrupt@offset=1000,count=4;up:latency=5ms,jitter=2ms;conn=2:down:truncate@b=4096
//
// A `server:` rule is not the proxy's: the update server applies it itself
// (server:endless@limit=64MiB, an endless body at the HTTP level inside TLS;
// UpdateServer::set_endless). The proxy ignores such rules.
//
// Plain data: no Asio here, so the harness and the fuzzer include it freely.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace otarig::drivers::net {

/// A direction of a proxied connection: client -> upstream ("up") or
/// upstream -> client ("down").
enum class Direction : std::uint8_t { up = 0, down = 1 };
const char* to_string(Direction);

/// XOR bytes with a seeded nonzero mask (or `mask` when nonzero): either
/// `count` bytes from stream offset `offset`, or each byte with probability `rate`.
struct Corrupt {
  std::optional<std::uint64_t> offset;
  std::uint64_t count = 1;
  double rate = 0.0;
  std::uint8_t mask = 0;
  bool operator==(const Corrupt&) const = default;
};
/// Forward exactly `at` bytes, then close both sides (FIN).
struct Truncate {
  std::uint64_t at = 0;
  bool operator==(const Truncate&) const = default;
};
/// Forward exactly `at` bytes, then reset both sides (RST, SO_LINGER 0).
struct Reset {
  std::uint64_t at = 0;
  bool operator==(const Reset&) const = default;
};
/// Forward exactly `at` bytes, then forward nothing more in this direction
/// while the connection stays open.
struct Stall {
  std::uint64_t at = 0;
  bool operator==(const Stall&) const = default;
};
/// At most `bytes_per_second` on average (burst: 1/20 s worth of bytes).
struct Throttle {
  std::uint64_t bytes_per_second = 0;
  bool operator==(const Throttle&) const = default;
};
/// Each chunk read from the source is held `delay` +/- a seeded `jitter`.
struct Latency {
  std::chrono::microseconds delay{0};
  std::chrono::microseconds jitter{0};
  bool operator==(const Latency&) const = default;
};
/// Writes of at most `size` bytes, `delay` apart.
struct Slice {
  std::uint64_t size = 0;
  std::chrono::microseconds delay{0};
  bool operator==(const Slice&) const = default;
};
/// After the source ends (or from stream offset `after`), keep sending seeded
/// bytes; `limit` extra bytes at most (0: until the receiver goes away).
struct Endless {
  std::optional<std::uint64_t> after;
  std::uint64_t limit = 0;
  bool operator==(const Endless&) const = default;
};
/// Send what connection `from` received in this direction (recorded from the
/// upstream, unaltered) in place of this connection's own stream.
struct Replay {
  std::uint64_t from = 0;
  bool operator==(const Replay&) const = default;
};
/// Terminate TLS at the proxy with a certificate of an unrelated CA instead of
/// forwarding the client's TLS to the upstream. Applies to the whole connection.
struct Impostor {
  bool operator==(const Impostor&) const = default;
};

/// Terminate TLS at the proxy with the update server's own certificate,
/// asking the client for a certificate without requiring one, and relay to
/// the upstream; the proxy logs whether the client presented a certificate
/// that chains to the server's client CA. Applies to the whole connection.
struct AskClientCert {
  bool operator==(const AskClientCert&) const = default;
};

/// Terminate TLS at the proxy with another certificate for the update
/// server's names, made by the rig's test PKI (pki.hpp), and relay to the
/// upstream as the impostor does: `expired`, `not-yet-valid` (from the
/// server's own CA, outside their validity period), `renewed` (the same CA,
/// a new key and serial), `rotated-ca` (from the rotated CA a device learns
/// of through a signed update). Applies to the whole connection.
struct ServerCertificate {
  std::string name;
  bool operator==(const ServerCertificate&) const = default;
};
/// The names ServerCertificate takes.
inline constexpr const char* kServerCertificateNames[] = {"expired", "not-yet-valid", "renewed", "rotated-ca"};

/// The update server is unreachable for `length` from the moment the spec is
/// set: every connection accepted meanwhile is reset at once (`refuse`: TCP
/// RST; the device's connect succeeds and its first read or write fails) or
/// held without a byte either way until the outage ends, then relayed as
/// usual (`drop`: a route that silently drops packets, then comes back).
/// Applies to every connection; takes no direction.
struct Outage {
  enum class Mode : std::uint8_t { refuse, drop };
  Mode mode = Mode::refuse;
  std::chrono::microseconds length{0};
  bool operator==(const Outage&) const = default;
};
const char* to_string(Outage::Mode);

/// The update server answers every byte range of the delivery's files
/// wrongly (`server:wrong-ranges`, UpdateServer::set_wrong_ranges): each
/// range's bytes one off the range its Content-Range names. A server rule only.
struct WrongRanges {
  bool operator==(const WrongRanges&) const = default;
};

using Fault = std::variant<Corrupt, Truncate, Reset, Stall, Throttle, Latency, Slice, Endless, Replay, Impostor,
                           AskClientCert, ServerCertificate, Outage, WrongRanges>;
/// "corrupt", "truncate", ...: the name a fault has in the spec text.
const char* fault_name(const Fault&);

/// One `[conn=A[-B]:][up|down|both:]fault` element of a spec.
struct FaultRule {
  /// Connections (1-based, in accept order since the spec was set) the rule
  /// applies to, inclusive; 0..0 = every connection.
  std::uint64_t first_connection = 0;
  std::uint64_t last_connection = 0;
  bool up = false;
  bool down = false;
  /// `server:`: the update server applies the fault (only `endless`), not
  /// the proxy; up and down are false.
  bool server = false;
  Fault fault;
  /// 1-based column of the rule in the text it came from (0 when built in code).
  std::size_t column = 0;

  bool applies_to(std::uint64_t connection) const {
    return first_connection == 0 || (connection >= first_connection && connection <= last_connection);
  }
  bool applies_to(Direction d) const { return d == Direction::up ? up : down; }
  bool operator==(const FaultRule& o) const {
    return first_connection == o.first_connection && last_connection == o.last_connection && up == o.up &&
           down == o.down && server == o.server && fault == o.fault;
  }
};

struct FaultSpec {
  std::vector<FaultRule> rules;
  bool empty() const { return rules.empty(); }
  /// The rules the proxy applies (without `server:` rules), and the others.
  FaultSpec proxy_rules() const;
  FaultSpec server_rules() const;
  /// The outage rule, if the spec has one (at most one is allowed).
  std::optional<Outage> outage() const;
  /// Canonical text: parse_fault_spec(spec.text()) == spec.
  std::string text() const;
  bool operator==(const FaultSpec&) const = default;
};

/// Parses the text format. Errors throw otarig::InputError
/// "<origin>:<column>: <message>" with the 1-based column of the offending
/// character. Unknown faults, unknown or repeated parameters, missing
/// required parameters and out-of-range values are errors.
FaultSpec parse_fault_spec(std::string_view text, std::string_view origin = "fault spec");

/// "5ms", "250us", "2s", "1m" (a bare number is milliseconds); throws InputError.
std::chrono::microseconds parse_duration(std::string_view text, std::string_view what);
/// "4096", "4KiB", "1MiB", "1GiB", "10kB", "1MB", "1GB"; throws InputError.
std::uint64_t parse_size(std::string_view text, std::string_view what);

}  // namespace otarig::drivers::net
