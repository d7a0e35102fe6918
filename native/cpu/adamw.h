// Fused AdamW update (SPEC §6, PyTorch AdamW semantics) with the clip scale,
// a per-segment weight-decay flag and an optional EMA, in one pass:
//   g' = g · grad_scale
//   m  = β1·m + (1−β1)·g'
//   v  = β2·v + (1−β2)·g'²
//   p  = p·(1 − lr·wd)                                  (decay segments only)
//   p  = p − (lr/(1−β1ᵗ)) · m / (√v/√(1−β2ᵗ) + eps)
//   ema = d·ema + (1−d)·p                               (when ema != null)
// Scalar factors (1 − lr·wd, lr/(1−β1ᵗ), √(1−β2ᵗ), 1−β, 1−d) are computed in
// double once and rounded to float, as PyTorch does with its Python-float
// hyperparameters. Elementwise: identical for any thread count.
//   adamw_step           p, m, v, g, ema: [n] (ema may be null); decay for the whole range
//   adamw_step_segments  segs[i] describes [segs[i].n] elements with its own pointers and
//                        decay flag: trainable tensors laid out anywhere in the flat
//                        buffers (frozen ones are simply not listed); one parallel pass
//   adamw_clip_factor    max_norm / (norm + 1e-6) if norm > max_norm, else 1 (the
//                        grad_scale to pass above; norm from grad_norm*)
// Preconditions: cfg.step >= 1; n, segs[i].n >= 0; g does not overlap p, m, v, ema;
// segments do not overlap each other.
#pragma once
#include <math.h>

#include "core/optim_types.h"
#include "cpu/kernel_family.h"

// AdamWConfig, AdamWScalars / adamw_scalars and AdamWSegment live in the
// backend-neutral core/optim_types.h (also reachable as reca::cpu::*).

#define RECA_ADAMW_FNS(PRE, T)                                                              \
  PRE void adamw_step(T* p, T* m, T* v, T* ema, const T* g, int64_t n, bool decay,          \
                      const AdamWConfig& cfg);                                              \
  PRE void adamw_step_segments(const AdamWSegment<T>* segs, int64_t count,                  \
                               const AdamWConfig& cfg);                                     \
  PRE T adamw_clip_factor(T norm, T max_norm);

RECA_DECLARE_KERNEL_FAMILY(RECA_ADAMW_FNS)
