// Global L2 norm of gradients, for clipping (SPEC §6), with a finite check in
// the same pass:
//   grad_norm           x: [n]                          -> sqrt(Σ x²)
//   grad_norm_segments  segments ptrs[i]: [sizes[i]], i < count  -> sqrt(Σ_i Σ ptrs[i][j]²)
//                       (the trainable grads may be a subset of the flat buffer)
// *nonfinite (may be null) is set to whether any element is NaN or ±Inf; the
// returned norm is then NaN.
// Sums of squares go in fixed blocks of 4096 elements (a block never spans two
// segments); inside a block, float lanes over 256-element chunks are added into
// a double; block partials are added in block order (segment by segment), so
// the result is bitwise identical for any thread count. The norm is rounded to
// float once at the end. A finite |x| above ~1e19 squares to Inf in float and
// gives an Inf norm (nonfinite stays false).
// Preconditions: n, sizes[i] >= 0; count >= 0.
#pragma once
#include "cpu/kernel_family.h"

#define RECA_GRAD_NORM_FNS(PRE, T)                                                          \
  PRE T grad_norm(const T* x, int64_t n, bool* nonfinite);                                  \
  PRE T grad_norm_segments(const T* const* ptrs, const int64_t* sizes, int64_t count,       \
                           bool* nonfinite);

RECA_DECLARE_KERNEL_FAMILY(RECA_GRAD_NORM_FNS)
