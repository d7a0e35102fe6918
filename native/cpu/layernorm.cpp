#include "cpu/layernorm.h"

#include "core/threadpool.h"
#include "cpu/simd.h"

namespace reca::cpu::RECA_ISA_NS {
namespace {
// Rows per backward block: each block keeps its own dw/db partial row, and the
// partials are added in block order, so the reduction never depends on how
// the blocks were spread over threads.
constexpr int64_t kRowBlock = 32;
// Columns per task when the block partials are combined.
constexpr int64_t kColGrain = 256;

// 1.0 in every lane, loaded with load_tail to zero the lanes past a tail.
alignas(64) const float kOnes[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};

// Σ (x - k) over [0..C). With k = x[0] the terms are deviations, not raw
// values, so a row with |mean| >> spread keeps its digits in float.
inline float row_shifted_sum(const float* x, float k, int64_t C) {
  const Vec kv = Vec::set1(k);
  Vec acc = Vec::zero();
  int64_t c = 0;
  for (; c + Vec::W <= C; c += Vec::W) acc = acc + (Vec::load(x + c) - kv);
  if (c < C) {
    const int n = static_cast<int>(C - c);
    acc = acc + (Vec::load_tail(x + c, n) - kv) * Vec::load_tail(kOnes, n);
  }
  return hsum(acc);
}

// Σ (x - mu)² over [0..C).
inline float row_sqdev(const float* x, float mu, int64_t C) {
  const Vec m = Vec::set1(mu);
  Vec acc = Vec::zero();
  int64_t c = 0;
  for (; c + Vec::W <= C; c += Vec::W) {
    const Vec d = Vec::load(x + c) - m;
    acc = fmadd(d, d, acc);
  }
  if (c < C) {
    const int n = static_cast<int>(C - c);
    // Lanes past the tail would hold (0 - mu); the mask zeroes them.
    const Vec d = (Vec::load_tail(x + c, n) - m) * Vec::load_tail(kOnes, n);
    acc = fmadd(d, d, acc);
  }
  return hsum(acc);
}
}  // namespace

// x, y: [rows, C]; w, b: [C]; mean, rstd: [rows] or null.
void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* w,
                       const float* b, int64_t rows, int64_t C) {
  parallel_for(rows, imax(1, 8192 / C), [&](int64_t r0, int64_t r1) {
    const float invC = 1.0f / static_cast<float>(C);
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * C;
      float* yr = y + r * C;
      const float mu = xr[0] + row_shifted_sum(xr, xr[0], C) * invC;
      const float var = row_sqdev(xr, mu, C) * invC;
      const float rs = 1.0f / sqrtf(var + static_cast<float>(kLayerNormEps));
      if (mean) mean[r] = mu;
      if (rstd) rstd[r] = rs;
      const Vec m = Vec::set1(mu), s = Vec::set1(rs);
      int64_t c = 0;
      for (; c + Vec::W <= C; c += Vec::W) {
        const Vec xh = (Vec::load(xr + c) - m) * s;
        fmadd(xh, Vec::load(w + c), Vec::load(b + c)).store(yr + c);
      }
      if (c < C) {
        const int n = static_cast<int>(C - c);
        const Vec xh = (Vec::load_tail(xr + c, n) - m) * s;
        fmadd(xh, Vec::load_tail(w + c, n), Vec::load_tail(b + c, n)).store_tail(yr + c, n);
      }
    }
  });
}

// dy, x, dx: [rows, C]; w, dw, db: [C]; mean, rstd: [rows]. Accumulates.
void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                        const float* w, const float* mean, const float* rstd, int64_t rows,
                        int64_t C) {
  const bool want_params = dw || db;
  if (rows <= 0 || (!dx && !want_params)) return;
  const int64_t blocks = (rows + kRowBlock - 1) / kRowBlock;
  // partial[blk] = [dw partial (C) | db partial (C)]
  float* partial = want_params ? new float[blocks * 2 * C] : nullptr;

  parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    const float invC = 1.0f / static_cast<float>(C);
    for (int64_t blk = b0; blk < b1; ++blk) {
      float* pdw = want_params ? partial + blk * 2 * C : nullptr;
      float* pdb = want_params ? pdw + C : nullptr;
      if (want_params)
        for (int64_t c = 0; c < 2 * C; ++c) pdw[c] = 0.0f;
      for (int64_t r = blk * kRowBlock; r < imin((blk + 1) * kRowBlock, rows); ++r) {
        const float* xr = x + r * C;
        const float* dyr = dy + r * C;
        const Vec m = Vec::set1(mean[r]), s = Vec::set1(rstd[r]);
        if (dx) {
          // Σ gh and Σ gh * xhat over the row (zero tail lanes add nothing).
          Vec a1 = Vec::zero(), a2 = Vec::zero();
          for (int64_t c = 0; c < C; c += Vec::W) {
            const int n = static_cast<int>(imin(Vec::W, C - c));
            const Vec xh = (Vec::load_tail(xr + c, n) - m) * s;
            const Vec gh = Vec::load_tail(dyr + c, n) * Vec::load_tail(w + c, n);
            a1 = a1 + gh;
            a2 = fmadd(gh, xh, a2);
          }
          const Vec mg = Vec::set1(hsum(a1) * invC), mgx = Vec::set1(hsum(a2) * invC);
          float* dxr = dx + r * C;
          int64_t c = 0;
          for (; c + Vec::W <= C; c += Vec::W) {
            const Vec xh = (Vec::load(xr + c) - m) * s;
            const Vec gh = Vec::load(dyr + c) * Vec::load(w + c);
            const Vec g = s * fnmadd(xh, mgx, gh - mg);
            (Vec::load(dxr + c) + g).store(dxr + c);
          }
          if (c < C) {
            const int n = static_cast<int>(C - c);
            const Vec xh = (Vec::load_tail(xr + c, n) - m) * s;
            const Vec gh = Vec::load_tail(dyr + c, n) * Vec::load_tail(w + c, n);
            const Vec g = s * fnmadd(xh, mgx, gh - mg);
            (Vec::load_tail(dxr + c, n) + g).store_tail(dxr + c, n);
          }
        }
        if (want_params) {
          for (int64_t c = 0; c < C; c += Vec::W) {
            const int n = static_cast<int>(imin(Vec::W, C - c));
            const Vec xh = (Vec::load_tail(xr + c, n) - m) * s;
            const Vec d = Vec::load_tail(dyr + c, n);
            fmadd(d, xh, Vec::load_tail(pdw + c, n)).store_tail(pdw + c, n);
            (Vec::load_tail(pdb + c, n) + d).store_tail(pdb + c, n);
          }
        }
      }
    }
  });

  if (want_params) {
    // Each task owns whole columns and adds the block partials in block order.
    parallel_for(C, kColGrain, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; c += Vec::W) {
        const int n = static_cast<int>(imin(Vec::W, c1 - c));
        Vec sw = Vec::zero(), sb = Vec::zero();
        for (int64_t blk = 0; blk < blocks; ++blk) {
          sw = sw + Vec::load_tail(partial + blk * 2 * C + c, n);
          sb = sb + Vec::load_tail(partial + blk * 2 * C + C + c, n);
        }
        if (dw) (Vec::load_tail(dw + c, n) + sw).store_tail(dw + c, n);
        if (db) (Vec::load_tail(db + c, n) + sb).store_tail(db + c, n);
      }
    });
    delete[] partial;
  }
}

}  // namespace reca::cpu::RECA_ISA_NS

#if RECA_ISA_LEVEL == 0
#include <cmath>

namespace reca::cpu::ref {

template <class T>
void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* w, const T* b, int64_t rows,
                       int64_t C) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * C;
    // Double accumulators: the reference stays accurate for any T.
    double sum = 0;
    for (int64_t c = 0; c < C; ++c) sum += static_cast<double>(xr[c]);
    const T mu = static_cast<T>(sum / static_cast<double>(C));
    double sq = 0;
    for (int64_t c = 0; c < C; ++c) {
      const double d = static_cast<double>(xr[c]) - static_cast<double>(mu);
      sq += d * d;
    }
    const T rs = static_cast<T>(1.0 / std::sqrt(sq / static_cast<double>(C) + kLayerNormEps));
    if (mean) mean[r] = mu;
    if (rstd) rstd[r] = rs;
    for (int64_t c = 0; c < C; ++c) y[r * C + c] = (xr[c] - mu) * rs * w[c] + b[c];
  }
}

template <class T>
void layernorm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* mean,
                        const T* rstd, int64_t rows, int64_t C) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * C;
    const T* dyr = dy + r * C;
    const T mu = mean[r], rs = rstd[r];
    T sg = 0, sgx = 0;
    for (int64_t c = 0; c < C; ++c) {
      const T xh = (xr[c] - mu) * rs, gh = dyr[c] * w[c];
      sg += gh;
      sgx += gh * xh;
    }
    sg /= T(C);
    sgx /= T(C);
    for (int64_t c = 0; c < C; ++c) {
      const T xh = (xr[c] - mu) * rs, gh = dyr[c] * w[c];
      if (dx) dx[r * C + c] += rs * (gh - sg - xh * sgx);
      if (dw) dw[c] += dyr[c] * xh;
      if (db) db[c] += dyr[c];
    }
  }
}

}  // namespace reca::cpu::ref

RECA_INSTANTIATE_REF(RECA_LAYERNORM_FNS)

namespace reca::cpu {
void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* w,
                       const float* b, int64_t rows, int64_t C) {
  RECA_DISPATCH(layernorm_forward, y, mean, rstd, x, w, b, rows, C);
}
void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                        const float* w, const float* mean, const float* rstd, int64_t rows,
                        int64_t C) {
  RECA_DISPATCH(layernorm_backward, dx, dw, db, dy, x, w, mean, rstd, rows, C);
}
}  // namespace reca::cpu
#endif
