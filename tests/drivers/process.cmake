# Process boards (drivers/process, tools/vboard): real processes, real ptys,
# real loopback TCP (label: process). The whole label runs in well under a
# minute.
if(TARGET otarig_drivers_process)
  otarig_test(otarig_process_power_tests
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/process_power_test.cpp
    LIBS otarig_drivers_process
    LABELS process)
  otarig_test(otarig_http_probe_tests
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/http_probe_test.cpp
    LIBS otarig_drivers_process
    LABELS process)
  otarig_test(otarig_pty_console_tests
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/pty_console_test.cpp
    LIBS otarig_drivers_process
    LABELS process)
  if(TARGET otarig-vboard)
    otarig_test(otarig_vboard_process_tests
      SOURCES ${CMAKE_CURRENT_LIST_DIR}/vboard_process_test.cpp
      LIBS otarig_drivers_process PkgConfig::RE2
      LABELS process)
    target_compile_definitions(otarig_vboard_process_tests PRIVATE
      OTARIG_VBOARD_EXE="$<TARGET_FILE:otarig-vboard>")
    add_dependencies(otarig_vboard_process_tests otarig-vboard)

    # The crash model on process boards (docs/process-boards.md, "Power
    # loss"): the layer, power-offs, recordings, the profile's power_loss,
    # and every crash state of a clean update of the vboard profiles
    # (label crash: ctest -L crash).
    otarig_test(otarig_crash_storage_tests
      SOURCES ${CMAKE_CURRENT_LIST_DIR}/crash_storage_test.cpp
      LIBS otarig_drivers_process PkgConfig::RE2 fmt::fmt
      LABELS process crash)
    target_compile_definitions(otarig_crash_storage_tests PRIVATE
      OTARIG_VBOARD_DIR="$<TARGET_FILE_DIR:otarig-vboard>")
    add_dependencies(otarig_crash_storage_tests otarig-vboard)

    # The harness judges the process board end to end: the reference board
    # finds nothing, the flawed one is caught by `authentic` (exit 1).
    if(TARGET otarig)
      set(process_runs ${CMAKE_CURRENT_BINARY_DIR}/process-runs)
      # sh -c 'rm -rf OUT; otarig run ... --out OUT; test $? -eq STATUS' otarig OUT STATUS BOARD
      set(run_and_expect [=[rm -rf "$1"; "$0" run --board "$3" --scenario tampered-image --seed 1 --out "$1"; test $? -eq "$2"]=])
      add_test(NAME process.run.vboard-ab.tampered-image
        COMMAND sh -c "${run_and_expect}" $<TARGET_FILE:otarig> ${process_runs}/vboard-ab-tampered 0
                ${PROJECT_SOURCE_DIR}/boards/vboard-ab.yaml)
      add_test(NAME process.run.vboard-noverify.tampered-image
        COMMAND sh -c "${run_and_expect}" $<TARGET_FILE:otarig> ${process_runs}/vboard-noverify-tampered 1
                ${PROJECT_SOURCE_DIR}/boards/flawed/vboard-noverify.yaml)
      set_tests_properties(process.run.vboard-ab.tampered-image process.run.vboard-noverify.tampered-image
        PROPERTIES LABELS process TIMEOUT 120
        ENVIRONMENT "OTARIG_TOOL_PATH=$<TARGET_FILE_DIR:otarig-vboard>")
    endif()
  endif()
endif()

# Lab boards: the console-command link on bench drivers (power `command`,
# console `tty` on a pty the test owns), the `lab` device section.
if(TARGET otarig_drivers_bench AND TARGET otarig_bench_test_support)
  otarig_test(otarig_lab_board_tests
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/lab_board_test.cpp
    LIBS otarig_drivers_process otarig_drivers_bench otarig_bench_test_support
    LABELS process)
endif()
