# otarig::reports: bundle, manifest, attestation, verify, merge, HTML, JUnit.
add_library(otarig_reports_sample STATIC reports/sample_bundle.cpp)
target_link_libraries(otarig_reports_sample PUBLIC otarig_reports)
otarig_set_warnings(otarig_reports_sample)

otarig_test(otarig_reports_tests
  SOURCES reports/bundle_test.cpp reports/verify_test.cpp reports/merge_test.cpp reports/html_test.cpp
          reports/junit_test.cpp reports/run_view_test.cpp reports/requirements_test.cpp reports/defects_test.cpp reports/waivers_test.cpp
  LIBS otarig_reports_sample OpenSSL::Crypto
  LABELS reports)

# The browser test: headless Chromium renders report.html of the sample bundle.
add_executable(otarig_sample_bundle reports/sample_bundle_main.cpp)
target_link_libraries(otarig_sample_bundle PRIVATE otarig_reports_sample)
otarig_set_warnings(otarig_sample_bundle)
find_program(OTARIG_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT OTARIG_PYTHON)
  find_program(OTARIG_PYTHON NAMES python3)
endif()
add_test(NAME reports.browser
  COMMAND ${OTARIG_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_report_browser.py)
set_tests_properties(reports.browser PROPERTIES
  ENVIRONMENT "OTARIG_SAMPLE_BUNDLE=$<TARGET_FILE:otarig_sample_bundle>;OTARIG_REPORT_SCREENSHOT=${CMAKE_CURRENT_BINARY_DIR}/reports/report-screenshot.png"
  LABELS "reports;browser" TIMEOUT 180)
