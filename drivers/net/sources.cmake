# otarig::otarig_drivers_net — update server, fault proxy, test PKI, manifest
# and fault spec parsers (docs/network.md). Beast/Asio stay inside the .cpp
# files: the public headers are plain C++.
otarig_driver_library(otarig_drivers_net
  ${CMAKE_CURRENT_LIST_DIR}/fault_spec.cpp
  ${CMAKE_CURRENT_LIST_DIR}/manifest.cpp
  ${CMAKE_CURRENT_LIST_DIR}/pki.cpp
  ${CMAKE_CURRENT_LIST_DIR}/tls.cpp
  ${CMAKE_CURRENT_LIST_DIR}/http_server.cpp
  ${CMAKE_CURRENT_LIST_DIR}/mender_api.cpp
  ${CMAKE_CURRENT_LIST_DIR}/hawkbit_ddi.cpp
  ${CMAKE_CURRENT_LIST_DIR}/fault_proxy.cpp
  ${CMAKE_CURRENT_LIST_DIR}/commands.cpp)
target_link_libraries(otarig_drivers_net
  PUBLIC otarig_drivers_registry nlohmann_json::nlohmann_json OpenSSL::SSL OpenSSL::Crypto Threads::Threads
  PRIVATE Boost::headers CLI11::CLI11)
target_compile_definitions(otarig_drivers_net PRIVATE BOOST_ASIO_NO_DEPRECATED)
