# Run after each link of reca_tests (cmake -P, POST_BUILD): asks the binary for
# its registered tests (`--list`) and writes one ctest entry per name to
# CTEST_FILE, each running `reca_tests --run NAME`. The list comes from the
# binary itself, so a registered test cannot be left out of ctest.
#   -D TEST_EXECUTABLE=<reca_tests>  -D CTEST_FILE=<file to write>
file(REMOVE "${CTEST_FILE}")  # a failed discovery must not leave an old list behind
execute_process(COMMAND "${TEST_EXECUTABLE}" --list
                OUTPUT_VARIABLE listed ERROR_VARIABLE errors RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${TEST_EXECUTABLE} --list failed (${rc}): ${errors}")
endif()
string(REPLACE "\n" ";" names "${listed}")
set(content "")
set(count 0)
foreach(name IN LISTS names)
  if(name STREQUAL "")
    continue()
  endif()
  if(NOT name MATCHES "^[A-Za-z0-9_]+$")
    message(FATAL_ERROR "${TEST_EXECUTABLE} --list printed '${name}', not a test name")
  endif()
  string(APPEND content "add_test(${name} \"${TEST_EXECUTABLE}\" --run ${name})\n")
  math(EXPR count "${count} + 1")
endforeach()
if(count EQUAL 0)
  message(FATAL_ERROR "${TEST_EXECUTABLE} --list printed no tests")
endif()
file(WRITE "${CTEST_FILE}" "${content}")
