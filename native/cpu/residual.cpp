#include "cpu/residual.h"

#include "core/threadpool.h"
#include "cpu/simd.h"

namespace reca::cpu::RECA_ISA_NS {
namespace {
// Elements per task: below this a parallel region costs more than the work.
constexpr int64_t kGrain = 32768;
}  // namespace

// out, a, b: [n]
void residual_add(float* out, const float* a, const float* b, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    int64_t i = i0;
    for (; i + Vec::W <= i1; i += Vec::W) (Vec::load(a + i) + Vec::load(b + i)).store(out + i);
    if (i < i1) {
      const int k = static_cast<int>(i1 - i);
      (Vec::load_tail(a + i, k) + Vec::load_tail(b + i, k)).store_tail(out + i, k);
    }
  });
}

// y, x: [n]
void residual_axpy(float* y, float alpha, const float* x, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    const Vec al = Vec::set1(alpha);
    int64_t i = i0;
    for (; i + Vec::W <= i1; i += Vec::W) fmadd(al, Vec::load(x + i), Vec::load(y + i)).store(y + i);
    if (i < i1) {
      const int k = static_cast<int>(i1 - i);
      fmadd(al, Vec::load_tail(x + i, k), Vec::load_tail(y + i, k)).store_tail(y + i, k);
    }
  });
}

// x: [n]
void residual_scale(float* x, float s, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    const Vec sv = Vec::set1(s);
    int64_t i = i0;
    for (; i + Vec::W <= i1; i += Vec::W) (Vec::load(x + i) * sv).store(x + i);
    if (i < i1) {
      const int k = static_cast<int>(i1 - i);
      (Vec::load_tail(x + i, k) * sv).store_tail(x + i, k);
    }
  });
}

}  // namespace reca::cpu::RECA_ISA_NS

#if RECA_ISA_LEVEL == 0

namespace reca::cpu::ref {

template <class T>
void residual_add(T* out, const T* a, const T* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

template <class T>
void residual_axpy(T* y, T alpha, const T* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

template <class T>
void residual_scale(T* x, T s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

}  // namespace reca::cpu::ref

RECA_INSTANTIATE_REF(RECA_RESIDUAL_FNS)

namespace reca::cpu {
void residual_add(float* out, const float* a, const float* b, int64_t n) {
  RECA_DISPATCH(residual_add, out, a, b, n);
}
void residual_axpy(float* y, float alpha, const float* x, int64_t n) {
  RECA_DISPATCH(residual_axpy, y, alpha, x, n);
}
void residual_scale(float* x, float s, int64_t n) { RECA_DISPATCH(residual_scale, x, s, n); }
}  // namespace reca::cpu
#endif
