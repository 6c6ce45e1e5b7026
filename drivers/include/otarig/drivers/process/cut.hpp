#pragma once
// Power cuts placed in a delivery, network faults and release feeds of the
// console-command link. The interfaces are the board protocols of
// otarig/drivers/protocols.hpp (BoardParts::cuts, network, feed); these names
// keep the process family's spelling.
#include "otarig/drivers/protocols.hpp"

namespace otarig::drivers::process {

using ProcessCut = drivers::PlacedCut;
using drivers::CutProtocol;
using drivers::CutReport;
using drivers::NetworkFaultProtocol;
using drivers::ProbeResult;
using drivers::ReleaseFeedProtocol;

}  // namespace otarig::drivers::process
