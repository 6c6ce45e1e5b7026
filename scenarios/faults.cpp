#include "faults.hpp"

#include <algorithm>

namespace otarig::scenarios {

const std::vector<FaultKind>& fault_kinds() {
  static const std::vector<FaultKind> kinds = {
      {"none", "-", "a clean update, no fault (baseline)", {}},
      {"power-cut", "power",
       "cut power before flash operation k of the update (at: every-flash-op sweeps every k; at: "
       "random-flash-op draws k from the seed); torn: the probability that op k is left half-done",
       {"at", "torn"}},
      {"tamper", "image",
       "deliver a damaged copy of the release: header-bit-flip, payload-bit-flip, digest-bit-flip, "
       "signature-bit-flip, truncated, appended, version-edited",
       {"variants"}},
      {"unsigned", "image", "deliver the release with its signature and key id removed", {}},
      {"wrong-key", "image", "deliver the release validly signed by a key the device does not trust", {}},
      {"replay", "image", "deliver an older, validly signed release after a newer one was installed", {}},
      {"self-test-fail", "image",
       "deliver a validly signed release whose self-test fails when it runs; it must be reverted", {}},
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
