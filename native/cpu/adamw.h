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

// The per-step scalars of the update, computed in double and rounded to float
// once (as PyTorch does with its Python-float hyperparameters). Every backend
// takes them from here, so all of them round alike. `static` so each object
// file keeps its own copy (per-ISA objects must not share inline code).
struct AdamWScalars {
  float gs, b1, omb1, b2, omb2, decay_mul, step_size, bc2_sqrt, eps, d, omd;
};
static inline AdamWScalars adamw_scalars(const AdamWConfig& cfg) {
  const double t = static_cast<double>(cfg.step);
  const double bc1 = 1.0 - pow(cfg.beta1, t), bc2 = 1.0 - pow(cfg.beta2, t);
  AdamWScalars k;
  k.gs = static_cast<float>(cfg.grad_scale);
  k.b1 = static_cast<float>(cfg.beta1);
  k.omb1 = static_cast<float>(1.0 - cfg.beta1);
  k.b2 = static_cast<float>(cfg.beta2);
  k.omb2 = static_cast<float>(1.0 - cfg.beta2);
  k.decay_mul = static_cast<float>(1.0 - cfg.lr * cfg.weight_decay);
  k.step_size = static_cast<float>(cfg.lr / bc1);
  k.bc2_sqrt = static_cast<float>(sqrt(bc2));
  k.eps = static_cast<float>(cfg.eps);
  k.d = static_cast<float>(cfg.ema_decay);
  k.omd = static_cast<float>(1.0 - cfg.ema_decay);
  return k;
}
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
