// Overflow-checked int64 arithmetic for sizes that come from user input (configs,
// file headers): a wrapped product would otherwise reach an allocator as a
// small or negative size. Each says whether the result fits; the caller
// reports the failure in its own terms (which quantity, which error code).
#pragma once
#include <cstdint>

namespace reca {

inline bool checked_mul(int64_t a, int64_t b, int64_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}
inline bool checked_add(int64_t a, int64_t b, int64_t* out) {
  return !__builtin_add_overflow(a, b, out);
}

}  // namespace reca
