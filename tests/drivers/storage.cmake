# Storage under power loss (drivers/storage, docs/crash-model.md): the
# operation log, the crash model on a recording folder (label: storage), and
# the FUSE layer end to end (needs root and /dev/fuse; skipped with the
# reason otherwise).
if(TARGET otarig_drivers_storage)
  otarig_test(otarig_storage_tests
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/storage/oplog_test.cpp
            ${CMAKE_CURRENT_LIST_DIR}/storage/crash_model_test.cpp
            ${CMAKE_CURRENT_LIST_DIR}/storage/recorder_test.cpp
    LIBS otarig_drivers_storage
    LABELS storage)
endif()
