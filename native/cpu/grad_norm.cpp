#include "cpu/grad_norm.h"

#include "core/threadpool.h"
#include "cpu/simd.h"

namespace reca::cpu::RECA_ISA_NS {
namespace {
constexpr int64_t kBlock = 4096;  // reduction block: fixed, independent of threads
constexpr int64_t kChunk = 256;   // float-accumulated run inside a block

// Σ x² over [0, n) (n <= kBlock) in double. A NaN or Inf element makes the
// result NaN: x - x is 0 for finite x and NaN otherwise, and rides along in
// the same accumulator, so the finite check costs no second pass.
inline double block_sumsq(const float* x, int64_t n) {
  double s = 0.0;
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t c1 = imin(c0 + kChunk, n);
    Vec acc = Vec::zero(), bad = Vec::zero();
    int64_t i = c0;
    for (; i + Vec::W <= c1; i += Vec::W) {
      const Vec v = Vec::load(x + i);
      acc = fmadd(v, v, acc);
      bad = bad + (v - v);
    }
    if (i < c1) {
      const Vec v = Vec::load_tail(x + i, static_cast<int>(c1 - i));
      acc = fmadd(v, v, acc);
      bad = bad + (v - v);
    }
    s += static_cast<double>(hsum(acc)) + static_cast<double>(hsum(bad));
  }
  return s;
}

inline float finish(double sumsq, bool* nonfinite) {
  // Squares are >= 0, so only a non-finite input can make the sum NaN.
  if (nonfinite) *nonfinite = sumsq != sumsq;
  return static_cast<float>(sqrt(sumsq));
}
}  // namespace

// x: [n] -> ‖x‖₂
float grad_norm(const float* x, int64_t n, bool* nonfinite) {
  const double s = parallel_sum_blocks(n, kBlock, [&](int64_t i0, int64_t i1) {
    return block_sumsq(x + i0, i1 - i0);
  });
  return finish(s, nonfinite);
}

// ptrs[i]: [sizes[i]] -> ‖concat(ptrs[i])‖₂
float grad_norm_segments(const float* const* ptrs, const int64_t* sizes, int64_t count,
                         bool* nonfinite) {
  // first_block[i]: index of segment i's first block in the global block list.
  int64_t* first_block = new int64_t[count + 1];
  first_block[0] = 0;
  for (int64_t i = 0; i < count; ++i)
    first_block[i + 1] = first_block[i] + (sizes[i] + kBlock - 1) / kBlock;
  const int64_t blocks = first_block[count];
  double* partial = new double[blocks > 0 ? blocks : 1];
  parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    // Segment holding block b0: last i with first_block[i] <= b0 (binary search).
    int64_t lo = 0, hi = count - 1;
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) / 2;
      if (first_block[mid] <= b0) lo = mid; else hi = mid - 1;
    }
    int64_t seg = lo;
    for (int64_t b = b0; b < b1; ++b) {
      while (first_block[seg + 1] <= b) ++seg;  // skips empty segments too
      const int64_t off = (b - first_block[seg]) * kBlock;
      partial[b] = block_sumsq(ptrs[seg] + off, imin(kBlock, sizes[seg] - off));
    }
  });
  double s = 0.0;
  for (int64_t b = 0; b < blocks; ++b) s += partial[b];
  delete[] partial;
  delete[] first_block;
  return finish(s, nonfinite);
}

}  // namespace reca::cpu::RECA_ISA_NS

#if RECA_ISA_LEVEL == 0
#include <cmath>

namespace reca::cpu::ref {

template <class T>
T grad_norm(const T* x, int64_t n, bool* nonfinite) {
  return grad_norm_segments<T>(&x, &n, 1, nonfinite);
}

template <class T>
T grad_norm_segments(const T* const* ptrs, const int64_t* sizes, int64_t count, bool* nonfinite) {
  double s = 0.0;
  bool bad = false;
  for (int64_t i = 0; i < count; ++i)
    for (int64_t j = 0; j < sizes[i]; ++j) {
      const double v = static_cast<double>(ptrs[i][j]);
      if (!std::isfinite(v)) bad = true;
      s += v * v;
    }
  if (nonfinite) *nonfinite = bad;
  return static_cast<T>(bad ? NAN : std::sqrt(s));
}

}  // namespace reca::cpu::ref

RECA_INSTANTIATE_REF(RECA_GRAD_NORM_FNS)

namespace reca::cpu {
float grad_norm(const float* x, int64_t n, bool* nonfinite) {
  RECA_DISPATCH(grad_norm, x, n, nonfinite);
}
float grad_norm_segments(const float* const* ptrs, const int64_t* sizes, int64_t count,
                         bool* nonfinite) {
  RECA_DISPATCH(grad_norm_segments, ptrs, sizes, count, nonfinite);
}
}  // namespace reca::cpu
#endif
