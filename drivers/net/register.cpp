#include "otarig/drivers/net/register.hpp"

namespace otarig::drivers {

void register_net_drivers(DriverRegistry&) {}

}  // namespace otarig::drivers
