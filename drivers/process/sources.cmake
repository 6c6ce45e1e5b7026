# otarig::otarig_drivers_process — process boards (docs/process-boards.md):
# device programs run as their own processes on a pty the rig owns, powered
# by starting them and SIGKILLing their process group, updated over real TCP
# from the update server through the fault proxy, their storage folders
# under the crash model's recording layer (drivers/storage); and the same network host
# and update link for lab boards (device kind `lab`). Included from
# drivers/CMakeLists.txt.
otarig_driver_library(otarig_drivers_process
  ${CMAKE_CURRENT_LIST_DIR}/pty_process.cpp
  ${CMAKE_CURRENT_LIST_DIR}/flash_file.cpp
  ${CMAKE_CURRENT_LIST_DIR}/device.cpp
  ${CMAKE_CURRENT_LIST_DIR}/power.cpp
  ${CMAKE_CURRENT_LIST_DIR}/console.cpp
  ${CMAKE_CURRENT_LIST_DIR}/link_sides.cpp
  ${CMAKE_CURRENT_LIST_DIR}/link.cpp
  ${CMAKE_CURRENT_LIST_DIR}/http_probe.cpp
  ${CMAKE_CURRENT_LIST_DIR}/crash_storage.cpp
  ${CMAKE_CURRENT_LIST_DIR}/register.cpp)
target_link_libraries(otarig_drivers_process
  PUBLIC otarig_drivers_registry otarig_drivers_virtual otarig_drivers_net otarig_drivers_storage
  PRIVATE PkgConfig::RE2 fmt::fmt nlohmann_json::nlohmann_json OpenSSL::SSL Boost::headers)
# Where a bare program name in a profile's command is looked for before
# $PATH: otarig's own tools in the build tree, then the installed bindir.
target_compile_definitions(otarig_drivers_process PRIVATE
  OTARIG_PROCESS_TOOL_DIRS="${PROJECT_BINARY_DIR}/tools/vboard:${PROJECT_BINARY_DIR}/tools/clientboard:${CMAKE_INSTALL_FULL_BINDIR}")
# Provisioning format `command` (lab boards: a probe's or an SD-card mux's
# command line) runs on the bench family's event loop.
if(TARGET otarig_drivers_bench)
  target_link_libraries(otarig_drivers_process PUBLIC otarig_drivers_bench)
  target_compile_definitions(otarig_drivers_process PRIVATE OTARIG_HAVE_BENCH_DRIVERS=1)
endif()
# Provisioning format `client-slots` (the real-client boards, docs/ota-clients.md).
if(TARGET otarig_drivers_clients)
  target_link_libraries(otarig_drivers_process PUBLIC otarig_drivers_clients)
  target_compile_definitions(otarig_drivers_process PRIVATE OTARIG_HAVE_CLIENTS_DRIVERS=1)
endif()
