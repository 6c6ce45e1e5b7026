otarig_test(otarig_core_tests
  SOURCES drivers/config_test.cpp drivers/crypto_test.cpp
  LIBS otarig_drivers_core)
