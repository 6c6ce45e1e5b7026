# Tests of the bench drivers against the real components: processes, ptys
# driven through the real libserialport (with an LD_PRELOAD shim that lets it
# open a pty), OpenOCD 0.12 with its dummy adapter and with a remote_bitbang
# JTAG TAP simulator, and libgpiod (a real chip only with the `hw` label).

# The shim that lets libserialport open ptys (tests/support/serialport_pty_shim.c).
add_library(otarig_serialport_pty_shim SHARED ${CMAKE_CURRENT_LIST_DIR}/../support/serialport_pty_shim.c)
target_link_libraries(otarig_serialport_pty_shim PRIVATE ${CMAKE_DL_LIBS})
set_target_properties(otarig_serialport_pty_shim PROPERTIES
  C_VISIBILITY_PRESET hidden
  LIBRARY_OUTPUT_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/support)
set(OTARIG_PTY_PRELOAD ${CMAKE_CURRENT_BINARY_DIR}/support/libotarig_serialport_pty_shim.so)
if(OTARIG_SANITIZE)
  # AddressSanitizer insists on coming first among the preloaded libraries.
  execute_process(COMMAND ${CMAKE_CXX_COMPILER} -print-file-name=libasan.so
    OUTPUT_VARIABLE asan_runtime OUTPUT_STRIP_TRAILING_WHITESPACE)
  set(OTARIG_PTY_PRELOAD "${asan_runtime}:${OTARIG_PTY_PRELOAD}")
endif()

add_library(otarig_bench_test_support STATIC ${CMAKE_CURRENT_LIST_DIR}/../support/jtag_tap_sim.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../support/jtag_tap_sim_riscv.cpp)
target_include_directories(otarig_bench_test_support PUBLIC ${CMAKE_CURRENT_LIST_DIR}/../support)
target_link_libraries(otarig_bench_test_support PUBLIC Threads::Threads)
otarig_set_warnings(otarig_bench_test_support)

add_executable(otarig-jtag-tap-sim ${CMAKE_CURRENT_LIST_DIR}/../support/jtag_tap_sim_main.cpp)
target_link_libraries(otarig-jtag-tap-sim PRIVATE otarig_bench_test_support)
otarig_set_warnings(otarig-jtag-tap-sim)

# otarig_bench_test(NAME SOURCES... [LIBS...] [LABELS label] [HW_FILTER pattern] [ENVIRONMENT VAR=VALUE])
# Like otarig_test; tests matching HW_FILTER get the `hw` label instead of LABELS.
function(otarig_bench_test name)
  cmake_parse_arguments(T "" "HW_FILTER" "SOURCES;LIBS;LABELS;ENVIRONMENT" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} otarig_bench_test_support GTest::gtest GTest::gmock GTest::gtest_main)
  otarig_set_warnings(${name})
  target_compile_definitions(${name} PRIVATE OTARIG_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    OTARIG_BINARY_DIR="${PROJECT_BINARY_DIR}")
  # One label: gtest_discover_tests splits a list of labels into separate properties.
  set(properties LABELS ${T_LABELS})
  if(T_ENVIRONMENT)  # one variable, for the same reason
    list(APPEND properties ENVIRONMENT ${T_ENVIRONMENT})
  endif()
  if(T_HW_FILTER)
    gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 TEST_FILTER "-${T_HW_FILTER}" PROPERTIES ${properties})
    gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 TEST_FILTER "${T_HW_FILTER}" PROPERTIES LABELS hw)
  else()
    gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES ${properties})
  endif()
endfunction()

set(bench_dir ${CMAKE_CURRENT_LIST_DIR})
otarig_bench_test(otarig_gpio_tests SOURCES ${bench_dir}/gpio_test.cpp
  LIBS otarig_drivers_bench LABELS bench HW_FILTER "*Hardware*")
otarig_bench_test(otarig_external_power_tests SOURCES ${bench_dir}/external_power_test.cpp
  LIBS otarig_drivers_bench LABELS bench)
otarig_bench_test(otarig_console_reader_tests SOURCES ${bench_dir}/console_reader_test.cpp
  LIBS otarig_drivers_bench PkgConfig::RE2 LABELS bench)
otarig_bench_test(otarig_serial_tests SOURCES ${bench_dir}/serial_test.cpp
  LIBS otarig_drivers_bench ${CMAKE_DL_LIBS} LABELS bench
  ENVIRONMENT "LD_PRELOAD=${OTARIG_PTY_PRELOAD}")
add_dependencies(otarig_serial_tests otarig_serialport_pty_shim)
otarig_bench_test(otarig_openocd_tests SOURCES ${bench_dir}/openocd_test.cpp
  LIBS otarig_drivers_bench LABELS bench)
