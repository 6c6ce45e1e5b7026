#pragma once
// Power cuts for boards whose flash the rig cannot count (process boards, lab
// boards with a download): the cut is placed in time, in the download, or
// after a console line. Header-only interfaces: the harness finds them on a
// board's update link with dynamic_cast, without linking the driver family.
//
//   if (auto* cuts = dynamic_cast<drivers::process::CutProtocol*>(parts.link.get())) {
//     cuts->arm(ProcessCut::at_byte(b));
//     auto r = parts.link->deliver(image);  // power_lost when the cut fell
//     auto where = cuts->fired();           // what the cut hit, for the evidence
//     cuts->disarm();
//   }
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace otarig::drivers::process {

/// Where the next delivery's power cut falls.
struct ProcessCut {
  enum class Trigger {
    none,           ///< no cut
    time,           ///< `delay` after the update command was written
    download_byte,  ///< when byte `byte` of the image (from 0) is about to reach the device
    console,        ///< `delay` after the first console line matching `pattern`
  };
  Trigger trigger = Trigger::none;
  std::chrono::milliseconds delay{0};
  std::uint64_t byte = 0;
  std::string pattern;  ///< RE2, matched anywhere in each console line

  static ProcessCut after(std::chrono::milliseconds d) { return {Trigger::time, d, 0, {}}; }
  static ProcessCut at_byte(std::uint64_t b) { return {Trigger::download_byte, {}, b, {}}; }
  static ProcessCut on_console(std::string re, std::chrono::milliseconds d = {}) {
    return {Trigger::console, d, 0, std::move(re)};
  }
};

/// What an armed cut did.
struct CutReport {
  /// "power cut at byte 524288 of the download (connection 1)",
  /// "power cut 250 ms after the update command",
  /// "power cut 5 ms after console line 'ota: receiving ...'".
  std::string detail;
  /// From writing the update command to the cut.
  std::chrono::milliseconds at{0};
  /// Image bytes delivered to the device before the cut (download_byte: the
  /// armed byte; otherwise what the update server had sent, as known).
  std::uint64_t bytes = 0;
};

/// Arms power cuts during the next deliveries (until disarm()). The cut
/// switches the board's power off exactly as PowerProtocol::off() does; the
/// delivery then returns DeliveryStatus::power_lost.
class CutProtocol {
 public:
  virtual ~CutProtocol() = default;
  virtual void arm(const ProcessCut& cut) = 0;
  virtual void disarm() = 0;
  /// Where the cut fell, once it has (reset by arm()).
  virtual std::optional<CutReport> fired() const = 0;
};

/// What the update server did with a client that presented no certificate.
struct ProbeResult {
  bool answered = false;  ///< the server sent an HTTP response
  std::string detail;     ///< the status line, or why the connection failed
};

/// Network faults between the device and the rig's update server (the fault
/// proxy of drivers/net). `spec` is the fault spec text of docs/network.md.
class NetworkFaultProtocol {
 public:
  virtual ~NetworkFaultProtocol() = default;
  /// "off", "tls" or "mutual": how the device reaches the update server.
  virtual std::string tls_mode() const = 0;
  /// Connects to the update server the way the device does (through the
  /// proxy), trusting its CA but presenting no client certificate, and asks
  /// for the image last published. A server that requires mutual TLS refuses.
  virtual ProbeResult probe_without_client_certificate() = 0;
  /// Faults for connections from now on (connection numbers restart at 1);
  /// an empty spec removes them. InputError for a bad spec.
  virtual void set_network_faults(const std::string& spec, std::uint64_t seed) = 0;
  /// What the proxy did since the last call, one JSON object per line
  /// (drivers::net::to_json(FaultEvent)).
  virtual std::vector<std::string> take_network_events() = 0;
};

/// A device that follows the update server's release feed: its update
/// command names ${feed_url} (the server's /manifest.json, the release the
/// controller calls latest) or ${manifest_url}, and it reads the manifest
/// (docs/network.md) before it fetches the image the manifest names.
class ReleaseFeedProtocol {
 public:
  virtual ~ReleaseFeedProtocol() = default;
  /// Whether the device's update command reads a manifest first.
  virtual bool follows_feed() const = 0;
  /// The release the next delivery stands for: its manifest carries this
  /// version and counter when the image's own header cannot say them (a
  /// damaged header). Once; the delivery after it goes without.
  virtual void describe_next(const std::string& version, std::uint32_t security_counter) = 0;
  /// The next delivery only: its image is published as release `name` of
  /// the server's repository (/manifests/NAME.json, /images/NAME.bin), and
  /// the feed (/manifest.json) answers with that release's manifest: a frozen
  /// or replaying mirror. Later deliveries make their own manifest latest
  /// again. InputError for a name that is not [A-Za-z0-9._-].
  virtual void serve_as_release(const std::string& name) = 0;
};

}  // namespace otarig::drivers::process
