# otarig_drivers_bench: drivers for lab benches — GPIO power/reset/boot-mode
# lines (libgpiod), external-command power, serial consoles (libserialport +
# Boost.Asio), OpenOCD over TCL RPC. Included from drivers/CMakeLists.txt.

pkg_check_modules(LIBGPIOD REQUIRED IMPORTED_TARGET libgpiod)
pkg_check_modules(LIBGPIODCXX REQUIRED IMPORTED_TARGET libgpiodcxx)
pkg_check_modules(LIBSERIALPORT REQUIRED IMPORTED_TARGET libserialport)

# The GPIO adapter follows the libgpiod API generation found.
if(LIBGPIODCXX_VERSION VERSION_GREATER_EQUAL 2)
  message(FATAL_ERROR "otarig: libgpiod ${LIBGPIODCXX_VERSION} found; only the libgpiod 1.x adapter "
                      "(drivers/bench/gpio_libgpiod1.cpp) exists so far")
endif()

otarig_driver_library(otarig_drivers_bench
  ${CMAKE_CURRENT_LIST_DIR}/io.cpp
  ${CMAKE_CURRENT_LIST_DIR}/process.cpp
  ${CMAKE_CURRENT_LIST_DIR}/gpio.cpp
  ${CMAKE_CURRENT_LIST_DIR}/gpio_libgpiod1.cpp
  ${CMAKE_CURRENT_LIST_DIR}/external_power.cpp
  ${CMAKE_CURRENT_LIST_DIR}/console_reader.cpp
  ${CMAKE_CURRENT_LIST_DIR}/serial.cpp
  ${CMAKE_CURRENT_LIST_DIR}/openocd.cpp
  ${CMAKE_CURRENT_LIST_DIR}/register.cpp)
target_link_libraries(otarig_drivers_bench
  PUBLIC otarig_drivers_registry Boost::headers Threads::Threads
  PRIVATE PkgConfig::RE2 PkgConfig::LIBGPIODCXX PkgConfig::LIBGPIOD PkgConfig::LIBSERIALPORT fmt::fmt)
# Asio without the deprecated interfaces; one io_context thread per bench.
target_compile_definitions(otarig_drivers_bench PUBLIC BOOST_ASIO_NO_DEPRECATED)
