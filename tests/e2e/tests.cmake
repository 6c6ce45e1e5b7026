# End-to-end tests of the otarig command line, run by Debian's Python with pytest.
find_program(OTARIG_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT OTARIG_PYTHON)
  find_program(OTARIG_PYTHON NAMES python3)
endif()
add_test(NAME e2e.cli
  COMMAND ${OTARIG_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_cli.py)
set_tests_properties(e2e.cli PROPERTIES
  ENVIRONMENT "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
  LABELS "e2e" TIMEOUT 900 COST 100)
add_test(NAME e2e.catalog
  COMMAND ${OTARIG_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_catalog.py)
set_tests_properties(e2e.catalog PROPERTIES
  ENVIRONMENT "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
  LABELS "e2e" TIMEOUT 900 COST 100)
# The nightly catalog on the process board (otarig-vboard, real processes, ptys,
# mutual TLS through the fault proxy); about two minutes.
if(TARGET otarig-vboard)
  add_test(NAME e2e.process
    COMMAND ${OTARIG_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_process_nightly.py)
  set_tests_properties(e2e.process PROPERTIES
    ENVIRONMENT "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR};OTARIG_TOOL_PATH=$<TARGET_FILE_DIR:otarig-vboard>"
    LABELS "e2e;process" TIMEOUT 900 COST 200)
endif()
# A campaign on a lab board built from the lab drivers only: power `command`
# (scripts that start otarig-vboard on a pty cable the test owns and SIGKILL
# it), console `tty` on the cable's other end, device kind `lab`; the nightly
# catalog among them, about a minute.
if(TARGET otarig-vboard)
  add_test(NAME e2e.lab
    COMMAND ${OTARIG_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_lab_board.py)
  set_tests_properties(e2e.lab PROPERTIES
    ENVIRONMENT "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR};OTARIG_VBOARD=$<TARGET_FILE:otarig-vboard>"
    LABELS "e2e;lab" TIMEOUT 600 COST 110)
endif()
# Hostile and malformed input: names that are paths, special files, numbers out
# of range, a server that must not be escaped or hung, resumes after a kill.
add_test(NAME e2e.hardening
  COMMAND ${OTARIG_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_hardening.py)
set_tests_properties(e2e.hardening PROPERTIES
  ENVIRONMENT "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
  LABELS "e2e" TIMEOUT 600)
# Delta releases: the delta scenarios on the reference board of every mode
# (64 KiB slots), the board that patches in place, profile checks, the
# image commands; seconds.
add_test(NAME e2e.delta
  COMMAND ${OTARIG_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_delta.py)
set_tests_properties(e2e.delta PROPERTIES
  ENVIRONMENT "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
  LABELS "e2e" TIMEOUT 300)
# Every YAML block and `otarig` command line in README.md and docs/ matches the program.
add_test(NAME e2e.docs
  COMMAND ${OTARIG_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_docs.py)
set_tests_properties(e2e.docs PROPERTIES
  ENVIRONMENT "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
  LABELS "e2e" TIMEOUT 300)
# Power loss as storage sees it: a sweep at every recorded storage operation of
# the reference otarig-vboard and of three devices that skip the barriers their
# boot state needs, under the crash model and under the old kill-only model; a
# device whose only barriers are sync(2) calls passes (the seccomp filter).
if(TARGET otarig-vboard)
  add_test(NAME e2e.crash
    COMMAND ${OTARIG_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_crash_storage.py)
  set_tests_properties(e2e.crash PROPERTIES
    ENVIRONMENT "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR};OTARIG_TOOL_PATH=$<TARGET_FILE_DIR:otarig-vboard>"
    LABELS "e2e;process" TIMEOUT 1200 COST 300)
endif()
# Power cuts placed by time on a process board: the calibration is journaled,
# reused by a resume and by --calibration (a replay), and in run.json.
if(TARGET otarig-vboard)
  add_test(NAME e2e.calibration
    COMMAND ${OTARIG_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_calibration.py)
  set_tests_properties(e2e.calibration PROPERTIES
    ENVIRONMENT "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR};OTARIG_TOOL_PATH=$<TARGET_FILE_DIR:otarig-vboard>"
    LABELS "e2e;process" TIMEOUT 600)
endif()
# Memory bounded by the limits of docs/evidence.md, not by what a device
# prints: a process board whose device floods its console; under a minute.
if(TARGET otarig-vboard)
  add_test(NAME e2e.memory
    COMMAND ${OTARIG_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_bounded_memory.py)
  set_tests_properties(e2e.memory PROPERTIES
    ENVIRONMENT "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR};OTARIG_TOOL_PATH=$<TARGET_FILE_DIR:otarig-vboard>"
    LABELS "e2e;process" TIMEOUT 300)
endif()
# Memory does not grow with the number of trials: run, report verify and
# report merge of 60 and of 1,000 trials peak alike (under a minute).
add_test(NAME e2e.memory.campaign
  COMMAND ${OTARIG_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_campaign_memory.py)
set_tests_properties(e2e.memory.campaign PROPERTIES
  ENVIRONMENT "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
  LABELS "e2e" TIMEOUT 600)
# What a device may trust of its update server: the lying mirror (a manifest
# that disagrees with the image it names) and a server that asks for the
# client certificate without requiring it, on the reference process board
# and the flawed boards each must catch; under a minute.
if(TARGET otarig-vboard)
  add_test(NAME e2e.trust
    COMMAND ${OTARIG_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_feed_trust.py)
  set_tests_properties(e2e.trust PROPERTIES
    ENVIRONMENT "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR};OTARIG_TOOL_PATH=$<TARGET_FILE_DIR:otarig-vboard>"
    LABELS "e2e;process" TIMEOUT 600)
endif()
# A device's own language: status lines that name the running image by a
# payload digest or by version only, judged with what they carry; a device
# that does not come up after provisioning leaves its console and exit status
# in the evidence; well under a minute.
if(TARGET otarig-vboard)
  add_test(NAME e2e.identity
    COMMAND ${OTARIG_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_device_identity.py)
  set_tests_properties(e2e.identity PROPERTIES
    ENVIRONMENT "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR};OTARIG_TOOL_PATH=$<TARGET_FILE_DIR:otarig-vboard>"
    LABELS "e2e" TIMEOUT 600)
endif()
# The command line as a new user and a script meet it (from another folder,
# --force, replays of replays, --json); under a minute.
add_test(NAME e2e.usability
  COMMAND ${OTARIG_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_cli_usability.py)
set_tests_properties(e2e.usability PROPERTIES
  ENVIRONMENT "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
  LABELS "e2e" TIMEOUT 600 COST 20)
# Over the support period: device clock, key rotation, revocation, signer
# validity on the virtual board and otarig-vboard; the two flawed boards.
set(_otarig_lifecycle_env "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
if(TARGET otarig-vboard)
  list(APPEND _otarig_lifecycle_env "OTARIG_TOOL_PATH=$<TARGET_FILE_DIR:otarig-vboard>")
endif()
add_test(NAME e2e.lifecycle
  COMMAND ${OTARIG_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_lifecycle.py)
set_tests_properties(e2e.lifecycle PROPERTIES ENVIRONMENT "${_otarig_lifecycle_env}" LABELS "e2e" TIMEOUT 600)
# The update server unreachable while a release is published (kind `outage`):
# otarig-vboard keeps checking and takes it, a vboard that stops checking
# after a failed check is caught by timely-update; about half a minute.
if(TARGET otarig-vboard)
  add_test(NAME e2e.outage
    COMMAND ${OTARIG_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_outage.py)
  set_tests_properties(e2e.outage PROPERTIES
    ENVIRONMENT "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR};OTARIG_TOOL_PATH=$<TARGET_FILE_DIR:otarig-vboard>"
    LABELS "e2e;process" TIMEOUT 600 COST 60)
endif()
# Certificates over a support period (scenarios server-certificate-rotated-ca,
# client-certificate-expired): otarig-vboard learns a rotated server CA only
# from a signed update and updates once its expired client certificate is
# renewed; the vboard trusting an unverified message's CA is caught. Seconds.
if(TARGET otarig-vboard)
  add_test(NAME e2e.certificates
    COMMAND ${OTARIG_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_certificate_lifetime.py)
  set_tests_properties(e2e.certificates PROPERTIES
    ENVIRONMENT "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR};OTARIG_TOOL_PATH=$<TARGET_FILE_DIR:otarig-vboard>"
    LABELS "e2e;process" TIMEOUT 600 COST 30)
endif()
# Device compatibility (wrong-device, oracle compatible) and a second updatable
# image (bundles, dependencies, bootloader power cuts; oracle dependencies):
# the references pass, the flawed boards fail with their oracle. Seconds.
add_test(NAME e2e.multi
  COMMAND ${OTARIG_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_multi_image.py)
set_tests_properties(e2e.multi PROPERTIES
  ENVIRONMENT "OTARIG_BIN=$<TARGET_FILE:otarig>;OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR};$<$<TARGET_EXISTS:otarig-vboard>:OTARIG_TOOL_PATH=$<TARGET_FILE_DIR:otarig-vboard>>"
  LABELS "e2e" TIMEOUT 600)
