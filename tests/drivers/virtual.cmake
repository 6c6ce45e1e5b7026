# The image format and the in-process virtual board (label: virtual).
otarig_test(otarig_image_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/image_test.cpp ${CMAKE_CURRENT_LIST_DIR}/delta_test.cpp
  LIBS otarig_core
  LABELS virtual)
otarig_test(otarig_flash_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/flash_test.cpp
  LIBS otarig_drivers_virtual
  LABELS virtual)
otarig_test(otarig_bootloader_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/bootloader_test.cpp
  LIBS otarig_drivers_virtual
  LABELS virtual)
otarig_test(otarig_virtual_board_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/virtual_board_test.cpp
  LIBS otarig_drivers_virtual
  LABELS virtual)
otarig_test(otarig_boot_modes_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/boot_modes_test.cpp
  LIBS otarig_drivers_virtual
  LABELS virtual)
otarig_test(otarig_defects_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/defects_test.cpp
  LIBS otarig_drivers_virtual
  LABELS virtual)
otarig_test(otarig_trust_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/trust_test.cpp
  LIBS otarig_drivers_virtual otarig_drivers_net
  LABELS virtual)
otarig_test(otarig_second_image_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/second_image_test.cpp
  LIBS otarig_drivers_virtual
  LABELS virtual)
