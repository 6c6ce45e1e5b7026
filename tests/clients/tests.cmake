# Real OTA clients (drivers/clients, tools/clientboard; docs/ota-clients.md):
# real swupdate, rauc, mender and libubootenv tools (label: clients). A test that
# needs a missing tool skips and says which.
if(TARGET otarig_drivers_clients)
  otarig_test(otarig_clients_bootrom_tests
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/bootrom_test.cpp
    LIBS otarig_drivers_clients
    LABELS clients)
  if(TARGET otarig_harness)
    otarig_test(otarig_clients_package_tests
      SOURCES ${CMAKE_CURRENT_LIST_DIR}/package_test.cpp
      LIBS otarig_harness otarig_drivers_clients
      LABELS clients)
  endif()
  if(TARGET otarig AND TARGET otarig-clientboard)
    find_program(OTARIG_CLIENTS_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
    # SWUpdate's delta handler against the rig's update server (multi-range
    # requests, multipart/byteranges): a clean delta, a corrupted chunk, another base.
    add_test(NAME clients.swupdate-delta
      COMMAND ${OTARIG_CLIENTS_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_swupdate_delta.py)
    set_tests_properties(clients.swupdate-delta PROPERTIES
      ENVIRONMENT "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
      LABELS "clients" TIMEOUT 300)
    add_test(NAME clients.e2e
      COMMAND ${OTARIG_CLIENTS_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_clients_e2e.py)
    set_tests_properties(clients.e2e PROPERTIES
      ENVIRONMENT "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR};OTARIG_TOOL_PATH=$<TARGET_FILE_DIR:otarig-clientboard>;OTARIG_CLIENTBOARD=$<TARGET_FILE:otarig-clientboard>"
      LABELS "clients" TIMEOUT 1200 COST 350)
    # SWUpdate's encrypted images (docs/ota-clients.md, "Encrypted images"):
    # tampered-ciphertext and encrypted-for-another-device refused, the release
    # installed; the flawed build that ships plaintext caught on the network.
    add_test(NAME clients.swupdate-encrypted
      COMMAND ${OTARIG_CLIENTS_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_swupdate_encrypted.py)
    set_tests_properties(clients.swupdate-encrypted PROPERTIES
      ENVIRONMENT "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR};OTARIG_TOOL_PATH=$<TARGET_FILE_DIR:otarig-clientboard>;OTARIG_CLIENTBOARD=$<TARGET_FILE:otarig-clientboard>"
      LABELS "clients" TIMEOUT 300 COST 60)
    # The Mender board (docs/ota-clients.md, "Mender"): a nightly sample, the
    # flawed twins, another device type's artifact.
    add_test(NAME clients.mender
      COMMAND ${OTARIG_CLIENTS_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_mender_e2e.py)
    set_tests_properties(clients.mender PROPERTIES
      ENVIRONMENT "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR};OTARIG_TOOL_PATH=$<TARGET_FILE_DIR:otarig-clientboard>;OTARIG_CLIENTBOARD=$<TARGET_FILE:otarig-clientboard>"
      LABELS "clients" TIMEOUT 900 COST 200)
    # Mender's managed mode against the rig's device API (docs/ota-clients.md,
    # "Managed mode"): a few scenarios, the device that lies about a rollback.
    add_test(NAME clients.mender-managed
      COMMAND ${OTARIG_CLIENTS_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_mender_managed.py)
    set_tests_properties(clients.mender-managed PROPERTIES
      ENVIRONMENT "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR};OTARIG_TOOL_PATH=$<TARGET_FILE_DIR:otarig-clientboard>;OTARIG_CLIENTBOARD=$<TARGET_FILE:otarig-clientboard>"
      LABELS "clients" TIMEOUT 600 COST 100)
    # SWUpdate's suricatta against the rig's hawkBit DDI server
    # (docs/ota-clients.md, "SWUpdate's suricatta"): reports, TLS faults, tokens.
    add_test(NAME clients.swupdate-suricatta
      COMMAND ${OTARIG_CLIENTS_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_swupdate_suricatta.py)
    set_tests_properties(clients.swupdate-suricatta PROPERTIES
      ENVIRONMENT "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR};OTARIG_TOOL_PATH=$<TARGET_FILE_DIR:otarig-clientboard>;OTARIG_CLIENTBOARD=$<TARGET_FILE:otarig-clientboard>"
      LABELS "clients" TIMEOUT 600 COST 100)
    # The support period on the SWUpdate and RAUC boards (docs/ota-clients.md,
    # "Over the support period"): signers outside their validity, the clock
    # at 1970 and weeks behind, a profile claiming more than SWUpdate does.
    add_test(NAME clients.lifecycle
      COMMAND ${OTARIG_CLIENTS_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_clients_lifecycle.py)
    set_tests_properties(clients.lifecycle PROPERTIES
      ENVIRONMENT "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR};OTARIG_TOOL_PATH=$<TARGET_FILE_DIR:otarig-clientboard>;OTARIG_CLIENTBOARD=$<TARGET_FILE:otarig-clientboard>"
      LABELS "clients" TIMEOUT 600 COST 60)
  endif()
endif()
# SWUpdate's delta handler in campaigns (boards/swupdate-ab-delta.yaml;
# docs/ota-clients.md, "Delta releases in campaigns"): the delta scenarios,
# delta-wrong-ranges among them, and a seeded sample of the delta sweep.
if(TARGET otarig AND TARGET otarig-clientboard)
  find_program(OTARIG_CLIENTS_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
  add_test(NAME clients.swupdate-delta-board
    COMMAND ${OTARIG_CLIENTS_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_swupdate_delta_board.py)
  set_tests_properties(clients.swupdate-delta-board PROPERTIES
    ENVIRONMENT "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR};OTARIG_TOOL_PATH=$<TARGET_FILE_DIR:otarig-clientboard>"
    LABELS "clients;crash" TIMEOUT 600 COST 60)
endif()
# The real clients under the crash model (docs/ota-clients.md, "Under the
# crash model"): sweeps at their storage operations, 64 KiB releases.
if(TARGET otarig AND TARGET otarig-clientboard)
  find_program(OTARIG_CLIENTS_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
  add_test(NAME clients.crash
    COMMAND ${OTARIG_CLIENTS_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_clients_crash.py)
  set_tests_properties(clients.crash PROPERTIES
    ENVIRONMENT "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR};OTARIG_TOOL_PATH=$<TARGET_FILE_DIR:otarig-clientboard>"
    LABELS "clients;crash" TIMEOUT 1200 COST 150)
endif()
