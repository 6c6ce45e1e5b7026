# otarig::otarig_drivers_clients — real OTA clients as devices under test
# (docs/ota-clients.md): the signing PKI and CMS signatures, SWUpdate .swu
# archives (cpio newc through libarchive) and RAUC bundles the rig builds (registered as package formats), and the device side of the
# client boards (slot storage, U-Boot environment through libubootenv's
# tools, RAUC's custom-backend state, the boot ROM). Used by the harness
# (packages), the process family (provisioning format `client-slots`) and
# tools/clientboard. Included from drivers/CMakeLists.txt.
otarig_driver_library(otarig_drivers_clients
  ${CMAKE_CURRENT_LIST_DIR}/tools.cpp
  ${CMAKE_CURRENT_LIST_DIR}/pki.cpp
  ${CMAKE_CURRENT_LIST_DIR}/package.cpp
  ${CMAKE_CURRENT_LIST_DIR}/formats.cpp
  ${CMAKE_CURRENT_LIST_DIR}/mender_format.cpp
  ${CMAKE_CURRENT_LIST_DIR}/slots.cpp
  ${CMAKE_CURRENT_LIST_DIR}/mender.cpp)
target_link_libraries(otarig_drivers_clients
  PUBLIC otarig_drivers_registry
  PRIVATE OpenSSL::Crypto fmt::fmt PkgConfig::LIBARCHIVE)
