#pragma once
#include <memory>

#include "otarig/harness/fault_kind.hpp"
#include "power.hpp"

namespace otarig::scenarios::power {

/// A trial's counted cut (FlashFaultProtocol): before, tearing or failing op k.
std::unique_ptr<harness::FaultRun> make_counted_run(const CountedCut& point);
/// A trial's cut placed in the delivery (CutProtocol).
std::unique_ptr<harness::FaultRun> make_placed_run(const PlacedCut& point);
/// A trial's cut at a recorded storage operation (CrashStorageProtocol).
std::unique_ptr<harness::FaultRun> make_storage_run(const StorageCut& point);

/// Recovery cut `r` (0-based) of a brown-out on a profile that declares
/// observe.boot_attempt: power comes back and goes again right after that
/// line (at the boot timeout when it does not come). False, doing nothing,
/// on a profile without the line.
bool cut_after_boot_attempt(harness::TrialPort& port, std::uint32_t r);
/// ", then N more cuts while it recovers" ("" for none).
std::string recovery_text(std::uint32_t cuts);

}  // namespace otarig::scenarios::power
