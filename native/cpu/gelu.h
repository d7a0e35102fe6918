// GELU (tanh form, SPEC §0) with an optional fused bias:
//   forward   y = gelu(x + bias)                    x, y: [rows, cols], bias: [cols] or null
//   backward  g = dy * gelu'(x + bias); dx += g; dbias += Σ_rows g   (dbias may be null)
#pragma once
#include "cpu/kernel_family.h"

#define RECA_GELU_FNS(PRE, T)                                                           \
  PRE void gelu_forward(T* y, const T* x, const T* bias, int64_t rows, int64_t cols);    \
  PRE void gelu_backward(T* dx, T* dbias, const T* x, const T* bias, const T* dy,       \
                         int64_t rows, int64_t cols);

RECA_DECLARE_KERNEL_FAMILY(RECA_GELU_FNS)
