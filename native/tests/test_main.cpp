// Runs every registered kernel test (or those whose name contains argv[1]).
// Closing line: "N passed, N failed".
#include <cstdio>
#include <cstring>

#include "core/cpu_features.h"
#include "core/threadpool.h"
#include "tests/testing.h"

int main(int argc, char** argv) {
  const char* filter = argc > 1 ? argv[1] : "";
  std::printf("reca native tests: cpu isa %s (detected %s), %d threads\n",
              reca::isa_name(reca::active_isa()), reca::isa_name(reca::detected_isa()),
              reca::num_threads());
  int passed = 0, failed = 0;
  for (const auto& t : reca::test::registry()) {
    if (*filter && !std::strstr(t.name, filter)) continue;
    const int before = reca::test::failures_in_current_test();
    try {
      t.fn();
    } catch (const std::exception& e) {
      reca::test::report_failure(std::string("threw: ") + e.what());
    }
    const bool ok = reca::test::failures_in_current_test() == before;
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", t.name);
    (ok ? passed : failed)++;
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 && passed > 0 ? 0 : 1;
}
