// host_buffer_alloc: 64-byte aligned, zero-filled, writable to the last byte,
// on both paths (malloc below the map threshold, mmap at or above it), also
// when a freed block is handed out again. (The growth this allocator prevents
// needs Node's allocation pattern: test/leaks.test.ts.)
#include <cstdint>
#include <cstring>
#include <string>

#include "core/host_buffer.h"
#include "tests/testing.h"

using namespace reca;
using namespace reca::test;

RECA_TEST(host_buffer_aligned_zeroed_on_both_paths) {
  for (const size_t n : {size_t(0), size_t(1), size_t(63), size_t(4096 + 7),
                         kHostBufferMapAtLeast - 1, kHostBufferMapAtLeast, size_t(3) << 20}) {
    const std::string what = std::to_string(n) + " bytes";
    for (int rep = 0; rep < 3; ++rep) {
      unsigned char* p = static_cast<unsigned char*>(host_buffer_alloc(n));
      expect_true(p != nullptr, what + ": allocated");
      if (!p) continue;
      expect_true(reinterpret_cast<uintptr_t>(p) % kHostBufferAlignment == 0, what + ": aligned");
      bool zero = true;
      for (size_t i = 0; i < n; ++i) zero = zero && p[i] == 0;
      expect_true(zero, what + ": zero filled (also when reused)");
      if (n) std::memset(p, 0xab, n);  // dirty it, so a reused block must be cleared again
      host_buffer_free(p, n);
    }
  }
}
