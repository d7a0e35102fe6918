// Backend-neutral optimizer types: the AdamW hyperparameters of one update, a
// segment of the flat parameter buffers it updates, and the per-step scalars
// every backend derives from them (so all backends round alike). Plain data:
// no backend header is needed to name them (model/backend.h uses them).
#pragma once
#include <math.h>
#include <stdint.h>

namespace reca {

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

// [n] elements of the flat buffers with their own pointers (memory of the
// backend that runs the update) and decay flag.
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

// The names these had when they lived in cpu/adamw.h (code written as
// cpu::AdamWConfig keeps compiling; the types are the same).
namespace cpu {
using ::reca::AdamWConfig;
using ::reca::AdamWScalars;
using ::reca::AdamWSegment;
using ::reca::adamw_scalars;
}  // namespace cpu

}  // namespace reca
