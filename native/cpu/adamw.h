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
#include "cpu/kernel_family.h"

namespace reca::cpu {

// One update's hyperparameters (lr is the scheduled rate for this step). A plain
// aggregate (no default member initializers, so no constructor code in the
// per-ISA objects); SPEC defaults: lr 1e-4, betas (0.9, 0.95), eps 1e-8, wd 0.02.
struct AdamWConfig {
  double lr;
  double beta1, beta2;
  double eps;
  double weight_decay;
  int64_t step;        // t, 1-based, for the bias corrections
  double grad_scale;   // clip factor, applied to g before anything else (1: none)
  double ema_decay;    // d; used only where ema != null
};

template <class T>
struct AdamWSegment {
  T* p;          // [n] parameters
  const T* g;    // [n] gradients (read only)
  T* m;          // [n] first moments
  T* v;          // [n] second moments
  T* ema;        // [n] EMA of the parameters, or null
  int64_t n;
  bool decay;    // weight decay applies (2-D Linear weights only)
};

}  // namespace reca::cpu

#define RECA_ADAMW_FNS(PRE, T)                                                              \
  PRE void adamw_step(T* p, T* m, T* v, T* ema, const T* g, int64_t n, bool decay,          \
                      const AdamWConfig& cfg);                                              \
  PRE void adamw_step_segments(const AdamWSegment<T>* segs, int64_t count,                  \
                               const AdamWConfig& cfg);                                     \
  PRE T adamw_clip_factor(T norm, T max_norm);

RECA_DECLARE_KERNEL_FAMILY(RECA_ADAMW_FNS)
