// Counts the bytes requested from the global operator new (the test binary
// replaces it), so a test can assert that an operation allocated little:
//   const int64_t before = allocated_bytes(); op(); allocated_bytes() - before
#pragma once
#include <cstdint>

namespace reca::test {
int64_t allocated_bytes();
}
