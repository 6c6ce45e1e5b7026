otarig_test(otarig_harness_tests
  SOURCES harness/rng_test.cpp harness/journal_test.cpp harness/oracles_test.cpp harness/loader_test.cpp
          harness/plan_test.cpp harness/trial_test.cpp harness/validate_test.cpp
  LIBS otarig_harness)
