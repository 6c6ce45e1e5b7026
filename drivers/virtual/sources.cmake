# otarig::otarig_drivers_virtual — the in-process virtual board (docs/virtual-board.md).
otarig_driver_library(otarig_drivers_virtual
  ${CMAKE_CURRENT_LIST_DIR}/flash.cpp
  ${CMAKE_CURRENT_LIST_DIR}/boot_state.cpp
  ${CMAKE_CURRENT_LIST_DIR}/board_config.cpp
  ${CMAKE_CURRENT_LIST_DIR}/board.cpp
  ${CMAKE_CURRENT_LIST_DIR}/firmware.cpp
  ${CMAKE_CURRENT_LIST_DIR}/bootloaders.cpp
  ${CMAKE_CURRENT_LIST_DIR}/image1.cpp
  ${CMAKE_CURRENT_LIST_DIR}/register.cpp)
target_link_libraries(otarig_drivers_virtual PUBLIC otarig_drivers_registry)
