// Mean squared error (the flow target, SPEC §5; also the tokenizer's
// reconstruction term):
//   mse_forward   returns mean((pred - target)²) over all n elements
//                 pred, target: [n]
//   mse_backward  dpred += scale * 2 * (pred - target) / n
//                 scale is the upstream gradient of the loss (λ_task)
// The forward sums in fixed blocks of 4096 elements, each block accumulated in
// double (float lanes over 256-element chunks, then into double), blocks added
// in block order: identical for any thread count.
// Preconditions: n >= 1 (n = 0 returns 0 and the backward does nothing);
// pred and target do not overlap dpred.
#pragma once
#include "cpu/kernel_family.h"

#define RECA_MSE_FNS(PRE, T)                                                              \
  PRE T mse_forward(const T* pred, const T* target, int64_t n);                           \
  PRE void mse_backward(T* dpred, const T* pred, const T* target, T scale, int64_t n);

RECA_DECLARE_KERNEL_FAMILY(RECA_MSE_FNS)
