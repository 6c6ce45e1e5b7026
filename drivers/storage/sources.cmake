# otarig::otarig_drivers_storage — the storage of process and client boards
# under power loss (docs/crash-model.md): the operation log, the recording
# folder and its FUSE layer (libfuse3, in a mount namespace of its own), and
# the crash model that builds the storage a device finds after a cut.
# Included from drivers/CMakeLists.txt.
pkg_check_modules(FUSE3 REQUIRED IMPORTED_TARGET fuse3)
otarig_driver_library(otarig_drivers_storage
  ${CMAKE_CURRENT_LIST_DIR}/oplog.cpp
  ${CMAKE_CURRENT_LIST_DIR}/recording_folder.cpp
  ${CMAKE_CURRENT_LIST_DIR}/recorder.cpp
  ${CMAKE_CURRENT_LIST_DIR}/crash_model.cpp)
target_link_libraries(otarig_drivers_storage
  PUBLIC otarig_core nlohmann_json::nlohmann_json Threads::Threads
  PRIVATE PkgConfig::FUSE3)
