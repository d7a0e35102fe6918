#include "cpu/mse.h"

#include "core/threadpool.h"
#include "cpu/simd.h"

namespace reca::cpu::RECA_ISA_NS {
namespace {
// Fixed reduction block (the unit of work split across threads) and the
// float-accumulated chunk inside it; both independent of the thread count.
constexpr int64_t kBlock = 4096;
constexpr int64_t kChunk = 256;
constexpr int64_t kGrain = 32768;
}  // namespace

// pred, target: [n] -> mean((pred - target)²)
float mse_forward(const float* pred, const float* target, int64_t n) {
  if (n <= 0) return 0.0f;
  const double sum = parallel_sum_blocks(n, kBlock, [&](int64_t i0, int64_t i1) {
    double s = 0.0;
    for (int64_t c0 = i0; c0 < i1; c0 += kChunk) {
      const int64_t c1 = imin(c0 + kChunk, i1);
      Vec acc = Vec::zero();
      int64_t i = c0;
      for (; i + Vec::W <= c1; i += Vec::W) {
        const Vec d = Vec::load(pred + i) - Vec::load(target + i);
        acc = fmadd(d, d, acc);
      }
      if (i < c1) {
        const int k = static_cast<int>(c1 - i);
        const Vec d = Vec::load_tail(pred + i, k) - Vec::load_tail(target + i, k);
        acc = fmadd(d, d, acc);
      }
      s += hsum(acc);
    }
    return s;
  });
  return static_cast<float>(sum / static_cast<double>(n));
}

// dpred, pred, target: [n]. Accumulates.
void mse_backward(float* dpred, const float* pred, const float* target, float scale, int64_t n) {
  if (n <= 0) return;
  const float coef = static_cast<float>(2.0 * static_cast<double>(scale) / static_cast<double>(n));
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    const Vec k2 = Vec::set1(coef);
    int64_t i = i0;
    for (; i + Vec::W <= i1; i += Vec::W) {
      const Vec d = Vec::load(pred + i) - Vec::load(target + i);
      fmadd(k2, d, Vec::load(dpred + i)).store(dpred + i);
    }
    if (i < i1) {
      const int k = static_cast<int>(i1 - i);
      const Vec d = Vec::load_tail(pred + i, k) - Vec::load_tail(target + i, k);
      fmadd(k2, d, Vec::load_tail(dpred + i, k)).store_tail(dpred + i, k);
    }
  });
}

}  // namespace reca::cpu::RECA_ISA_NS

#if RECA_ISA_LEVEL == 0

namespace reca::cpu::ref {

template <class T>
T mse_forward(const T* pred, const T* target, int64_t n) {
  if (n <= 0) return T(0);
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(pred[i]) - static_cast<double>(target[i]);
    s += d * d;
  }
  return static_cast<T>(s / static_cast<double>(n));
}

template <class T>
void mse_backward(T* dpred, const T* pred, const T* target, T scale, int64_t n) {
  if (n <= 0) return;
  const T coef = static_cast<T>(2.0 * static_cast<double>(scale) / static_cast<double>(n));
  for (int64_t i = 0; i < n; ++i) dpred[i] += coef * (pred[i] - target[i]);
}

}  // namespace reca::cpu::ref

RECA_INSTANTIATE_REF(RECA_MSE_FNS)

namespace reca::cpu {
float mse_forward(const float* pred, const float* target, int64_t n) {
  RECA_DISPATCH(mse_forward, pred, target, n);
}
void mse_backward(float* dpred, const float* pred, const float* target, float scale, int64_t n) {
  RECA_DISPATCH(mse_backward, dpred, pred, target, scale, n);
}
}  // namespace reca::cpu
#endif
