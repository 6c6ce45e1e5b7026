# The fault kinds, compiled into otarig::harness (they implement its
# FaultKind interface). A family lists its sources here.
set(OTARIG_FAULT_KIND_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/register.cpp
  ${CMAKE_CURRENT_LIST_DIR}/power/kinds.cpp
  ${CMAKE_CURRENT_LIST_DIR}/power/points.cpp
  ${CMAKE_CURRENT_LIST_DIR}/power/runs.cpp
  ${CMAKE_CURRENT_LIST_DIR}/power/storage_cut.cpp
  ${CMAKE_CURRENT_LIST_DIR}/image/image.cpp
  ${CMAKE_CURRENT_LIST_DIR}/delta/delta.cpp
  ${CMAKE_CURRENT_LIST_DIR}/network/network.cpp
  ${CMAKE_CURRENT_LIST_DIR}/network/lying_mirror.cpp
  ${CMAKE_CURRENT_LIST_DIR}/network/server_ca.cpp
  ${CMAKE_CURRENT_LIST_DIR}/storage/bit_rot.cpp
  ${CMAKE_CURRENT_LIST_DIR}/lifecycle/common.cpp
  ${CMAKE_CURRENT_LIST_DIR}/lifecycle/clock.cpp
  ${CMAKE_CURRENT_LIST_DIR}/lifecycle/keys.cpp
  ${CMAKE_CURRENT_LIST_DIR}/lifecycle/outage.cpp
  ${CMAKE_CURRENT_LIST_DIR}/lifecycle/update_checks.cpp)
