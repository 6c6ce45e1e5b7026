# otarig::core: strict YAML access with file:line errors, SHA-256/Ed25519,
# base64/PEM, spawning programs.
otarig_test(otarig_core_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/config_test.cpp ${CMAKE_CURRENT_LIST_DIR}/crypto_test.cpp
          ${CMAKE_CURRENT_LIST_DIR}/spawn_test.cpp ${CMAKE_CURRENT_LIST_DIR}/encryption_test.cpp
  LIBS otarig_core)
