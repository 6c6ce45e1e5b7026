# libFuzzer targets for the network parsers. The parser source is compiled
# into each target so the fuzzer sees its coverage; a seed corpus is written
# to BUILD/corpus/TARGET, where ci/fuzz runs each target on it
# (by hand: build/fuzz/tests/fuzz/fuzz_manifest build/fuzz/corpus/fuzz_manifest -max_total_time=30).
otarig_fuzzer(fuzz_manifest ${CMAKE_CURRENT_LIST_DIR}/manifest_fuzz.cpp otarig_core nlohmann_json::nlohmann_json)
target_sources(fuzz_manifest PRIVATE ${PROJECT_SOURCE_DIR}/drivers/net/manifest.cpp)
target_include_directories(fuzz_manifest PRIVATE ${PROJECT_SOURCE_DIR}/drivers/include)
otarig_fuzzer(fuzz_fault_spec ${CMAKE_CURRENT_LIST_DIR}/fault_spec_fuzz.cpp otarig_core)
target_sources(fuzz_fault_spec PRIVATE ${PROJECT_SOURCE_DIR}/drivers/net/fault_spec.cpp)
target_include_directories(fuzz_fault_spec PRIVATE ${PROJECT_SOURCE_DIR}/drivers/include)

set(_corpus ${CMAKE_BINARY_DIR}/corpus)
file(WRITE ${_corpus}/fuzz_manifest/valid [=[{"name":"v2","version":"1.2.0+7","security_counter":3,"size":70000,"sha256":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","url":"/images/v2.bin"}]=])
file(WRITE ${_corpus}/fuzz_manifest/https [=[{"name":"r","version":"0.0.1","security_counter":0,"size":0,"sha256":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","url":"https://u.example/r.bin?x=1"}]=])
file(WRITE ${_corpus}/fuzz_fault_spec/example [=[down:corrupt@offset=1000,count=4;up:latency=5ms,jitter=2ms;conn=2:down:truncate@b=4096]=])
file(WRITE ${_corpus}/fuzz_fault_spec/all [=[down:corrupt@rate=1e-6,mask=0x80;both:reset@b=1KiB;up:stall=0;down:throttle=64KiB/s;down:slice=16,delay=3ms;down:endless@after=100,limit=1GB;conn=3-9:down:replay@from=2;conn=1:impostor]=])
file(WRITE ${_corpus}/fuzz_fault_spec/server [=[down:stall@b=5;server:endless@limit=64MiB]=])
