#include "otarig/drivers/registry.hpp"

namespace otarig::drivers {

#ifdef OTARIG_HAVE_NET_DRIVERS
void register_net_drivers(DriverRegistry& registry);
#endif
#ifdef OTARIG_HAVE_BENCH_DRIVERS
void register_bench_drivers(DriverRegistry& registry);
#endif
#ifdef OTARIG_HAVE_PROCESS_DRIVERS
void register_process_drivers(DriverRegistry& registry);
#endif
#ifdef OTARIG_HAVE_CLIENTS_DRIVERS
void register_clients_drivers(DriverRegistry& registry);
#endif

void register_all_drivers(DriverRegistry& registry) {
  register_virtual_drivers(registry);
#ifdef OTARIG_HAVE_NET_DRIVERS
  register_net_drivers(registry);
#endif
#ifdef OTARIG_HAVE_BENCH_DRIVERS
  register_bench_drivers(registry);
#endif
#ifdef OTARIG_HAVE_PROCESS_DRIVERS
  register_process_drivers(registry);
#endif
#ifdef OTARIG_HAVE_CLIENTS_DRIVERS
  register_clients_drivers(registry);
#endif
}

}  // namespace otarig::drivers
