otarig_test(otarig_harness_tests
  SOURCES harness/rng_test.cpp harness/journal_test.cpp harness/oracles_test.cpp harness/loader_test.cpp
          harness/plan_test.cpp harness/trial_test.cpp harness/validate_test.cpp harness/tamper_test.cpp
          harness/transcript_test.cpp harness/identity_test.cpp harness/compliance_test.cpp
          harness/policy_test.cpp
  LIBS otarig_harness)

# The harness on a lab board whose console is a pty the test owns (label: bench).
if(TARGET otarig_drivers_bench AND TARGET otarig_drivers_process)
  otarig_bench_test(otarig_bench_console_tests
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/bench_console_test.cpp
    LIBS otarig_harness otarig_drivers_bench
    LABELS bench)
endif()

# The device's own update checks measured from a request log (the outage
# fault kind's judgement; scenarios/lifecycle/).
otarig_test(otarig_update_checks_tests
  SOURCES harness/update_checks_test.cpp
  LIBS otarig_harness)
target_include_directories(otarig_update_checks_tests PRIVATE ${PROJECT_SOURCE_DIR}/scenarios)
