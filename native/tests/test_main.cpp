// Runs the registered kernel tests.
//   reca_tests             every test; closing line "N passed, N failed"
//   reca_tests SUBSTRING   the tests whose name contains SUBSTRING
//   reca_tests --list      every test name, one a line (what CMake registers with ctest)
//   reca_tests --run NAME  exactly the test NAME (how ctest runs each one)
#include <cstdio>
#include <cstring>
#include <set>
#include <string>

#include "core/cpu_features.h"
#include "core/threadpool.h"
#include "tests/testing.h"

namespace {

using reca::test::registry;
using reca::test::TestCase;

// Test names become ctest names: a repeated one would hide a test.
bool names_unique() {
  std::set<std::string> seen;
  bool ok = true;
  for (const TestCase& t : registry())
    if (!seen.insert(t.name).second) {
      std::fprintf(stderr, "reca_tests: test name '%s' is registered twice\n", t.name);
      ok = false;
    }
  return ok;
}

bool run_one(const TestCase& t) {
  const int before = reca::test::failures_in_current_test();
  try {
    t.fn();
  } catch (const std::exception& e) {
    reca::test::report_failure(std::string("threw: ") + e.what());
  }
  const bool ok = reca::test::failures_in_current_test() == before;
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", t.name);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (!names_unique()) return 1;
  if (argc == 2 && std::strcmp(argv[1], "--list") == 0) {
    for (const TestCase& t : registry()) std::printf("%s\n", t.name);
    return 0;
  }
  const bool exact = argc == 3 && std::strcmp(argv[1], "--run") == 0;
  if (argc > 2 && !exact) {
    std::fprintf(stderr, "usage: reca_tests [SUBSTRING | --list | --run NAME]\n");
    return 2;
  }
  const char* filter = argc > 1 ? argv[argc - 1] : "";
  std::printf("reca native tests: cpu isa %s (detected %s), %d threads\n",
              reca::isa_name(reca::active_isa()), reca::isa_name(reca::detected_isa()),
              reca::num_threads());
  int passed = 0, failed = 0;
  for (const TestCase& t : registry()) {
    if (exact ? std::strcmp(t.name, filter) != 0 : *filter && !std::strstr(t.name, filter)) continue;
    (run_one(t) ? passed : failed)++;
  }
  if (passed + failed == 0)
    std::fprintf(stderr, "reca_tests: no test %s '%s'\n", exact ? "named" : "matches", filter);
  std::printf("%d passed, %d failed\n", passed, failed);
  // No test run is a failure: a misspelt filter or a test that is gone must not pass.
  return failed == 0 && passed > 0 ? 0 : 1;
}
