# pytest suites of the Python module, run by Debian's /usr/bin/python3 (the
# interpreter the module is built for). Included from bindings/CMakeLists.txt,
# where the _otarig target and Python3_EXECUTABLE are defined.
set(_otarig_pytest ${Python3_EXECUTABLE} -m pytest -q -p no:cacheprovider)
set(_otarig_pyenv
  "PYTHONPATH=${CMAKE_CURRENT_BINARY_DIR}"
  "OTARIG_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
  "OTARIG_BUILD_DIR=${PROJECT_BINARY_DIR}"
  "OTARIG_CMAKE=${CMAKE_COMMAND}"
  "OTARIG_BIN=$<TARGET_FILE:otarig>"
  "OTARIG_PYTHON_INSTALL_DIR=${OTARIG_PYTHON_INSTALL_DIR}"
  "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1")
if(OTARIG_SANITIZE)
  # An instrumented module needs the sanitizer runtimes loaded before the
  # interpreter; the interpreter's own allocations are not ours to report.
  foreach(rt asan ubsan)
    execute_process(COMMAND ${CMAKE_CXX_COMPILER} -print-file-name=lib${rt}.so
      OUTPUT_VARIABLE _otarig_${rt} OUTPUT_STRIP_TRAILING_WHITESPACE)
  endforeach()
  list(APPEND _otarig_pyenv "LD_PRELOAD=${_otarig_asan}:${_otarig_ubsan}" "ASAN_OPTIONS=detect_leaks=0")
endif()

set(_otarig_pytimeout 300)
if(OTARIG_SANITIZE)
  set(_otarig_pytimeout 900)
endif()
foreach(suite module plugin examples install)
  add_test(NAME python.${suite}
    COMMAND ${_otarig_pytest} -p pytester ${CMAKE_CURRENT_LIST_DIR}/test_${suite}.py
    WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
  set_tests_properties(python.${suite} PROPERTIES ENVIRONMENT "${_otarig_pyenv}" LABELS "python" TIMEOUT ${_otarig_pytimeout})
endforeach()
