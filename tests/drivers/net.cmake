# Network drivers (drivers/net): parsers, update server, fault proxy, TLS.
# Real loopback sockets; the whole suite runs in well under a minute.
add_library(otarig_test_support_net STATIC ${CMAKE_CURRENT_LIST_DIR}/../support/net/loopback.cpp)
target_include_directories(otarig_test_support_net PUBLIC ${CMAKE_CURRENT_LIST_DIR}/../support/net)
target_link_libraries(otarig_test_support_net PUBLIC OpenSSL::SSL OpenSSL::Crypto Threads::Threads)
otarig_set_warnings(otarig_test_support_net)

otarig_test(otarig_net_tests
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/fault_spec_test.cpp
    ${CMAKE_CURRENT_LIST_DIR}/manifest_test.cpp
    ${CMAKE_CURRENT_LIST_DIR}/http_server_test.cpp
    ${CMAKE_CURRENT_LIST_DIR}/mender_api_test.cpp
    ${CMAKE_CURRENT_LIST_DIR}/hawkbit_ddi_test.cpp
    ${CMAKE_CURRENT_LIST_DIR}/fault_proxy_test.cpp
    ${CMAKE_CURRENT_LIST_DIR}/tls_test.cpp
  LIBS otarig_drivers_net otarig_test_support_net
  LABELS net)
