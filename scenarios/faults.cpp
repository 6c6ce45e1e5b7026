#include "faults.hpp"

#include <algorithm>

namespace otarig::scenarios {

const std::vector<FaultKind>& fault_kinds() {
  static const std::vector<FaultKind> kinds = {
      {"none", "-", "a clean update, no fault (baseline)", {}},
      {"power-cut", "power",
       "cut power before flash operation k of the update (at: every-flash-op sweeps every k; at: "
       "random-flash-op draws k from the seed); torn: the probability that op k is left half-done; "
       "recovery_cuts: K cuts again at seeded ops of the recovery boots, 1..K per trial (brown-out); image: "
       "self-test-fail cuts an update that is reverted. Boards that cut a delivery instead (process and lab "
       "boards): at: download-byte (points cut points spread over the image), random-time (a seeded time "
       "within a measured clean update), console (0..delay after a console line matching pattern); counted "
       "cuts map to these there",
       {"at", "torn", "recovery_cuts", "image", "points", "pattern", "delay"}},
      {"network", "network",
       "faults: a fault proxy spec applied to the delivery's connections (docs/network.md; ${b} is a seeded "
       "byte offset within the image's size; `server:` rules are the update server's own, e.g. "
       "server:endless@limit=64MiB answers the image without Content-Length and keeps sending); probe: "
       "no-client-certificate also asks the update server for the image without a client certificate, "
       "which it must refuse; expect (one or a list): installed means the device must still finish the "
       "update, stays-up that it must answer the update command within the link's timeout and its status "
       "right after, before any power cycle",
       {"faults", "probe", "expect"}},
      {"stale", "network",
       "the update server answers the request for the new release with an older release's manifest and "
       "image (serve: RELEASE): a frozen or replaying mirror; the device must not go back",
       {"serve"}},
      {"tamper", "image",
       "deliver a damaged copy of the release: header-bit-flip, payload-bit-flip, digest-bit-flip, "
       "signature-bit-flip, truncated, appended, version-edited",
       {"variants"}},
      {"unsigned", "image", "deliver the release with its signature and key id removed", {}},
      {"wrong-key", "image", "deliver the release validly signed by a key the device does not trust", {}},
      {"replay", "image", "deliver an older, validly signed release after a newer one was installed", {}},
      {"self-test-fail", "image",
       "deliver a validly signed release whose self-test fails when it runs; it must be reverted", {}},
      {"major-downgrade", "image",
       "deliver a validly signed image older than the installed one only by its major number (major - 1, "
       "minor 255, the same security counter)",
       {}},
      {"bit-rot", "storage",
       "flip seeded bits of the image in a slot while the device is off, then power on (slot: running, "
       "other or any; bits: at most this many per trial); a corrupt image must not boot",
       {"slot", "bits"}},
      {"flash-error", "storage",
       "flash op k of the update fails with an error the flash reports (at: every-flash-op or "
       "random-flash-op; torn: the probability that part of it landed); the device must report it and stay "
       "healthy",
       {"at", "torn"}},
  };
  return kinds;
}

const FaultKind* find_fault_kind(std::string_view name) {
  for (const auto& k : fault_kinds())
    if (k.name == name) return &k;
  return nullptr;
}

const std::vector<std::string_view>& tamper_variants() {
  static const std::vector<std::string_view> v = {"header-bit-flip",    "payload-bit-flip", "digest-bit-flip",
                                                  "signature-bit-flip", "truncated",        "appended",
                                                  "version-edited"};
  return v;
}

}  // namespace otarig::scenarios
