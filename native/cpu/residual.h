// Elementwise add / scale primitives: the residual connection and gradient
// accumulation.
//   residual_add    out = a + b                  out, a, b: [n]; out may alias a or b
//   residual_axpy   y += alpha * x               y, x: [n]  (the grad-accumulation step)
//   residual_scale  x *= s                       x: [n]
// Backward of out = a + b is the identity: da += dout and db += dout, i.e.
// residual_axpy(da, 1, dout, n) (and the same for db); there is no separate
// backward kernel. Elementwise, so trivially identical for any thread count.
// Preconditions: n >= 0; in residual_axpy, y and x do not overlap unless equal.
#pragma once
#include "cpu/kernel_family.h"

#define RECA_RESIDUAL_FNS(PRE, T)                                         \
  PRE void residual_add(T* out, const T* a, const T* b, int64_t n);       \
  PRE void residual_axpy(T* y, T alpha, const T* x, int64_t n);           \
  PRE void residual_scale(T* x, T s, int64_t n);

RECA_DECLARE_KERNEL_FAMILY(RECA_RESIDUAL_FNS)
