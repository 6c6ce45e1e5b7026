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

}  // namespace otarig::scenarios::power
