#include "cpu/adamw.h"

#include "core/threadpool.h"
#include "cpu/simd.h"

namespace reca::cpu::RECA_ISA_NS {
namespace {
constexpr int64_t kGrain = 16384;

// One vector of lanes [0, k) at offset i (k == Vec::W: full vector).
template <bool Full>
inline void update_vec(float* p, float* m, float* v, float* ema, const float* g, int64_t i, int k,
                       bool decay, const AdamWScalars& c) {
  auto ld = [&](const float* q) { return Full ? Vec::load(q + i) : Vec::load_tail(q + i, k); };
  auto st = [&](Vec x, float* q) {
    if (Full) x.store(q + i); else x.store_tail(q + i, k);
  };
  const Vec gp = ld(g) * Vec::set1(c.gs);
  const Vec mn = Vec::set1(c.b1) * ld(m) + Vec::set1(c.omb1) * gp;
  const Vec vn = Vec::set1(c.b2) * ld(v) + Vec::set1(c.omb2) * (gp * gp);
  Vec pn = ld(p);
  if (decay) pn = pn * Vec::set1(c.decay_mul);
  const Vec denom = vsqrt(vn) / Vec::set1(c.bc2_sqrt) + Vec::set1(c.eps);
  pn = pn - Vec::set1(c.step_size) * (mn / denom);
  st(mn, m);
  st(vn, v);
  st(pn, p);
  if (ema) st(Vec::set1(c.d) * ld(ema) + Vec::set1(c.omd) * pn, ema);
}

inline void update_range(float* p, float* m, float* v, float* ema, const float* g, int64_t i0,
                         int64_t i1, bool decay, const AdamWScalars& c) {
  int64_t i = i0;
  for (; i + Vec::W <= i1; i += Vec::W) update_vec<true>(p, m, v, ema, g, i, Vec::W, decay, c);
  if (i < i1) update_vec<false>(p, m, v, ema, g, i, static_cast<int>(i1 - i), decay, c);
}
}  // namespace

// p, m, v, g, ema: [n]
void adamw_step(float* p, float* m, float* v, float* ema, const float* g, int64_t n, bool decay,
                const AdamWConfig& cfg) {
  const AdamWScalars c = adamw_scalars(cfg);
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    update_range(p, m, v, ema, g, i0, i1, decay, c);
  });
}

// segs[i]: [segs[i].n] each
void adamw_step_segments(const AdamWSegment<float>* segs, int64_t count, const AdamWConfig& cfg) {
  const AdamWScalars c = adamw_scalars(cfg);
  // start[i]: offset of segment i in the virtual concatenation of all segments.
  int64_t* start = new int64_t[count + 1];
  start[0] = 0;
  for (int64_t i = 0; i < count; ++i) start[i + 1] = start[i] + segs[i].n;
  parallel_for(start[count], kGrain, [&](int64_t j0, int64_t j1) {
    int64_t lo = 0, hi = count - 1;  // last segment with start <= j0
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) / 2;
      if (start[mid] <= j0) lo = mid; else hi = mid - 1;
    }
    for (int64_t s = lo; s < count && start[s] < j1; ++s) {
      const AdamWSegment<float>& sg = segs[s];
      const int64_t a = imax(j0, start[s]) - start[s], b = imin(j1, start[s + 1]) - start[s];
      if (a < b) update_range(sg.p, sg.m, sg.v, sg.ema, sg.g, a, b, sg.decay, c);
    }
  });
  delete[] start;
}

float adamw_clip_factor(float norm, float max_norm) {
  return norm > max_norm ? max_norm / (norm + 1e-6f) : 1.0f;
}

}  // namespace reca::cpu::RECA_ISA_NS

#if RECA_ISA_LEVEL == 0
#include <cmath>

namespace reca::cpu::ref {

template <class T>
void adamw_step(T* p, T* m, T* v, T* ema, const T* g, int64_t n, bool decay,
                const AdamWConfig& cfg) {
  const double t = static_cast<double>(cfg.step);
  const double bc1 = 1.0 - std::pow(cfg.beta1, t), bc2 = 1.0 - std::pow(cfg.beta2, t);
  const T gs = T(cfg.grad_scale), b1 = T(cfg.beta1), b2 = T(cfg.beta2);
  const T omb1 = T(1.0 - cfg.beta1), omb2 = T(1.0 - cfg.beta2);
  const T decay_mul = T(1.0 - cfg.lr * cfg.weight_decay), step_size = T(cfg.lr / bc1);
  const T bc2_sqrt = T(std::sqrt(bc2)), eps = T(cfg.eps);
  const T d = T(cfg.ema_decay), omd = T(1.0 - cfg.ema_decay);
  for (int64_t i = 0; i < n; ++i) {
    const T gp = g[i] * gs;
    m[i] = b1 * m[i] + omb1 * gp;
    v[i] = b2 * v[i] + omb2 * (gp * gp);
    if (decay) p[i] = p[i] * decay_mul;
    p[i] = p[i] - step_size * (m[i] / (std::sqrt(v[i]) / bc2_sqrt + eps));
    if (ema) ema[i] = d * ema[i] + omd * p[i];
  }
}

template <class T>
void adamw_step_segments(const AdamWSegment<T>* segs, int64_t count, const AdamWConfig& cfg) {
  for (int64_t i = 0; i < count; ++i)
    adamw_step(segs[i].p, segs[i].m, segs[i].v, segs[i].ema, segs[i].g, segs[i].n, segs[i].decay,
               cfg);
}

template <class T>
T adamw_clip_factor(T norm, T max_norm) {
  return norm > max_norm ? max_norm / (norm + T(1e-6)) : T(1);
}

}  // namespace reca::cpu::ref

RECA_INSTANTIATE_REF(RECA_ADAMW_FNS)

namespace reca::cpu {
void adamw_step(float* p, float* m, float* v, float* ema, const float* g, int64_t n, bool decay,
                const AdamWConfig& cfg) {
  RECA_DISPATCH(adamw_step, p, m, v, ema, g, n, decay, cfg);
}
void adamw_step_segments(const AdamWSegment<float>* segs, int64_t count, const AdamWConfig& cfg) {
  RECA_DISPATCH(adamw_step_segments, segs, count, cfg);
}
float adamw_clip_factor(float norm, float max_norm) {
  RECA_DISPATCH(adamw_clip_factor, norm, max_norm);
}
}  // namespace reca::cpu
#endif
