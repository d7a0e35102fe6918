// LayerNorm over the last dim (SPEC §0), eps = 1e-5, with weight and bias:
//   forward   y = (x - mean) * rstd * w + b,  rstd = 1 / sqrt(var + eps)
//             x, y: [rows, C]; w, b: [C]; mean, rstd: [rows] (saved for the backward)
//   backward  xhat = (x - mean) * rstd, gh = dy * w
//             dx += rstd * (gh - mean_C(gh) - xhat * mean_C(gh * xhat))
//             dw += Σ_rows dy * xhat;  db += Σ_rows dy
// Mean and variance are two-pass: mean = x0 + Σ (x - x0)/C (shifted by the
// row's first element), then var = Σ (x - mean)²/C, both accumulated in float
// in a fixed order; rows with |mean| >> spread keep their precision. (The
// reference accumulates in double.) The row reductions for dw/db go through
// fixed blocks of rows combined in block order: bitwise identical for any
// thread count.
// Preconditions: rows >= 0, C >= 1; y may alias x; no other aliasing.
#pragma once
#include "cpu/kernel_family.h"

namespace reca::cpu {
constexpr double kLayerNormEps = 1e-5;
}

// layernorm_forward: mean and rstd may be null (inference needs no backward).
// layernorm_backward: dx, dw, db may each be null (that gradient is not wanted);
//   mean and rstd are the ones layernorm_forward wrote for this x.
#define RECA_LAYERNORM_FNS(PRE, T)                                                        \
  PRE void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* w, const T* b,  \
                             int64_t rows, int64_t C);                                    \
  PRE void layernorm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w,   \
                              const T* mean, const T* rstd, int64_t rows, int64_t C);

RECA_DECLARE_KERNEL_FAMILY(RECA_LAYERNORM_FNS)
