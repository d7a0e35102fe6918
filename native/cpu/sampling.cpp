#include "cpu/sampling.h"

#include "core/threadpool.h"
#include "cpu/simd.h"

namespace reca::cpu::RECA_ISA_NS {
namespace {

// Order-preserving map float → uint32 (larger float, larger key); −0 counts as +0.
inline uint32_t float_key(float f) {
  f = f + 0.0f;  // −0 + 0 = +0 (not folded without -ffast-math)
  uint32_t b;
  memcpy(&b, &f, sizeof b);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
inline float key_float(uint32_t k) {
  const uint32_t b = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
  float f;
  memcpy(&f, &b, sizeof f);
  return f;
}

// The k-th largest of keys[0..n) (1 <= k <= n, repeats counted), by radix
// selection on the top `bytes` bytes (lower bytes of the keys must be zero when
// bytes < 8). O(bytes·n), no data movement, no recursion.
uint64_t kth_largest(const uint64_t* keys, int64_t n, int64_t k, int bytes) {
  uint64_t prefix = 0, pmask = 0;
  int64_t cnt[256];
  for (int p = 0; p < bytes; ++p) {
    const int shift = 56 - 8 * p;
    for (int b = 0; b < 256; ++b) cnt[b] = 0;
    for (int64_t i = 0; i < n; ++i)
      if ((keys[i] & pmask) == prefix) ++cnt[(keys[i] >> shift) & 255u];
    int b = 255;
    for (; b > 0; --b) {
      if (cnt[b] >= k) break;
      k -= cnt[b];
    }
    prefix |= static_cast<uint64_t>(b) << shift;
    pmask |= static_cast<uint64_t>(255u) << shift;
  }
  return prefix;
}

inline float row_max(const float* x, int64_t V) {
  Vec mx = Vec::set1(-INFINITY);
  int64_t j = 0;
  for (; j + Vec::W <= V; j += Vec::W) mx = vmax(mx, Vec::load(x + j));
  float m = hmax(mx);
  for (; j < V; ++j) m = x[j] > m ? x[j] : m;
  return m;
}

// Top-k threshold (−inf when nothing is filtered). keys: scratch [V].
inline float topk_threshold(const float* x, int64_t V, int64_t top_k, uint64_t* keys) {
  if (top_k <= 0 || top_k >= V) return -INFINITY;
  for (int64_t j = 0; j < V; ++j) keys[j] = static_cast<uint64_t>(float_key(x[j])) << 32;
  return key_float(static_cast<uint32_t>(kth_largest(keys, V, top_k, 4) >> 32));
}

// w[j] = exp((x_j − m)/tau) for x_j >= thr, else 0; returns S = Σ w. The
// lanes are folded into a double every kChunksPerFold vectors, so a 4096-wide
// row sums as accurately at W = 1 as at W = 16.
constexpr int64_t kChunksPerFold = 64;
inline double row_weights(float* w, const float* x, int64_t V, float m, float tau, float thr) {
  const Vec vm = Vec::set1(m), vt = Vec::set1(tau), vthr = Vec::set1(thr), zero = Vec::zero();
  double total = 0.0;
  for (int64_t j0 = 0; j0 < V; j0 += kChunksPerFold * Vec::W) {
    const int64_t j1 = imin(V, j0 + kChunksPerFold * Vec::W);
    Vec acc = zero;
    for (int64_t j = j0; j < j1; j += Vec::W) {
      const int r = static_cast<int>(imin(Vec::W, j1 - j));
      const Vec xv = Vec::load_tail(x + j, r);
      // Tail lanes load 0 and are dropped by store_tail; zero them for the sum.
      Vec e = select_lt(xv, vthr, zero, vexp((xv - vm) / vt));
      if (r < Vec::W) {
        e.store_tail(w + j, r);
        e = Vec::load_tail(w + j, r);
      } else {
        e.store(w + j);
      }
      acc = acc + e;
    }
    total += static_cast<double>(hsum(acc));
  }
  return total;
}

// Inverse CDF: smallest j with w_j > 0 and w_0 + … + w_j > t (sums in double).
inline int64_t inverse_cdf(const float* w, int64_t V, double t) {
  double c = 0.0;
  int64_t j = 0;
  // Skip whole vectors by their sums; scan inside the one that crosses t.
  for (; j + Vec::W <= V; j += Vec::W) {
    const double cs = static_cast<double>(hsum(Vec::load(w + j)));
    if (c + cs > t) break;
    c += cs;
  }
  for (; j < V; ++j) {
    c += static_cast<double>(w[j]);
    if (c > t && w[j] > 0.0f) return j;
  }
  for (j = V - 1; j > 0; --j)
    if (w[j] > 0.0f) break;
  return j;
}

inline int64_t first_index_of(const float* x, int64_t V, float m) {
  int64_t j = 0;
  while (j < V - 1 && !(x[j] == m)) ++j;
  return j;
}

}  // namespace

void sampling_probs(float* probs, const float* logits, float temperature, int64_t top_k,
                    int64_t rows, int64_t V) {
  parallel_for(rows, imax(1, 8192 / V), [&](int64_t r0, int64_t r1) {
    uint64_t* keys = (top_k > 0 && top_k < V) ? new uint64_t[V] : nullptr;
    const float tau = temperature > 0.0f ? temperature : 1.0f;
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = logits + r * V;
      float* p = probs + r * V;
      const float thr = topk_threshold(x, V, top_k, keys);
      const double s = row_weights(p, x, V, row_max(x, V), tau, thr);
      const Vec vs = Vec::set1(static_cast<float>(s));
      for (int64_t j = 0; j < V; j += Vec::W) {
        const int n = static_cast<int>(imin(Vec::W, V - j));
        (Vec::load_tail(p + j, n) / vs).store_tail(p + j, n);
      }
    }
    delete[] keys;
  });
}

void sample_categorical(int32_t* ids, float* probs, const float* logits, const float* u,
                        float temperature, int64_t top_k, int64_t rows, int64_t V) {
  parallel_for(rows, imax(1, 8192 / V), [&](int64_t r0, int64_t r1) {
    uint64_t* keys = (top_k > 0 && top_k < V) ? new uint64_t[V] : nullptr;
    float* w = new float[V];
    const bool greedy = !(temperature > 0.0f);
    const float tau = greedy ? 1.0f : temperature;
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = logits + r * V;
      const float m = row_max(x, V);
      const float thr = topk_threshold(x, V, top_k, keys);
      const double s = row_weights(w, x, V, m, tau, thr);
      const int64_t id = greedy ? first_index_of(x, V, m) : inverse_cdf(w, V, static_cast<double>(u[r]) * s);
      ids[r] = static_cast<int32_t>(id);
      if (probs) probs[r] = static_cast<float>(static_cast<double>(w[id]) / s);
    }
    delete[] w;
    delete[] keys;
  });
}

void cfg_combine(float* out, const float* cond, const float* uncond, float scale, int64_t n) {
  parallel_for(n, 16384, [&](int64_t i0, int64_t i1) {
    const Vec s = Vec::set1(scale);
    for (int64_t i = i0; i < i1; i += Vec::W) {
      const int m = static_cast<int>(imin(Vec::W, i1 - i));
      const Vec un = Vec::load_tail(uncond + i, m);
      fmadd(s, Vec::load_tail(cond + i, m) - un, un).store_tail(out + i, m);
    }
  });
}

void maskgit_select(int32_t* tokens_out, uint8_t* mask_out, const int32_t* tokens,
                    const uint8_t* mask, const int32_t* sampled, const float* conf,
                    int32_t mask_id, int64_t step, int64_t total_steps, int64_t B, int64_t N) {
  const int64_t remask = maskgit_remask_count(N, step, total_steps);
  parallel_for(B, 1, [&](int64_t b0, int64_t b1) {
    // Keys: confidence in the high half, (2^32 − 1 − index) in the low half,
    // so larger key = kept first and equal confidences favour the lower index.
    uint64_t* keys = new uint64_t[N];
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t o = b * N;
      int64_t M = 0;
      for (int64_t i = 0; i < N; ++i)
        if (mask[o + i])
          keys[M++] = (static_cast<uint64_t>(float_key(conf[o + i])) << 32) |
                      static_cast<uint64_t>(0xffffffffu - static_cast<uint32_t>(i));
      const int64_t keep = M - imin(remask, M);
      // Keys are distinct, so exactly `keep` of them are >= the keep-th largest.
      const uint64_t cut = keep > 0 ? kth_largest(keys, M, keep, 8) : ~static_cast<uint64_t>(0);
      for (int64_t i = 0; i < N; ++i) {
        if (!mask[o + i]) {
          tokens_out[o + i] = tokens[o + i];
          mask_out[o + i] = 0;
          continue;
        }
        const uint64_t key = (static_cast<uint64_t>(float_key(conf[o + i])) << 32) |
                             static_cast<uint64_t>(0xffffffffu - static_cast<uint32_t>(i));
        const bool kept = keep > 0 && key >= cut;
        tokens_out[o + i] = kept ? sampled[o + i] : mask_id;
        mask_out[o + i] = kept ? 0 : 1;
      }
    }
    delete[] keys;
  });
}

void euler_step(float* z, const float* v, float dt, int64_t n) {
  parallel_for(n, 16384, [&](int64_t i0, int64_t i1) {
    const Vec d = Vec::set1(dt);
    for (int64_t i = i0; i < i1; i += Vec::W) {
      const int m = static_cast<int>(imin(Vec::W, i1 - i));
      fnmadd(d, Vec::load_tail(v + i, m), Vec::load_tail(z + i, m)).store_tail(z + i, m);
    }
  });
}

}  // namespace reca::cpu::RECA_ISA_NS

#if RECA_ISA_LEVEL == 0
#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <vector>

namespace reca::cpu {
int64_t maskgit_remask_count(int64_t N, int64_t step, int64_t total_steps) {
  const double ratio = static_cast<double>(step + 1) / static_cast<double>(total_steps);
  const double r = std::floor(static_cast<double>(N) * std::cos((3.14159265358979323846 / 2.0) * ratio));
  return r > 0.0 ? static_cast<int64_t>(r) : 0;
}
}  // namespace reca::cpu

namespace reca::cpu::ref {
namespace {
// Unnormalised weights of one row (see sampling.h); returns S in double.
template <class T>
double row_weights(std::vector<T>& w, const T* x, int64_t V, T temperature, int64_t top_k) {
  const T tau = temperature > T(0) ? temperature : T(1);
  T thr = -INFINITY;
  if (top_k > 0 && top_k < V) {
    std::vector<T> tmp(x, x + V);
    std::nth_element(tmp.begin(), tmp.begin() + (top_k - 1), tmp.end(), std::greater<T>());
    thr = tmp[top_k - 1];
  }
  const T m = *std::max_element(x, x + V);
  double s = 0.0;
  w.assign(V, T(0));
  for (int64_t j = 0; j < V; ++j) {
    if (x[j] >= thr) w[j] = std::exp((x[j] - m) / tau);
    s += static_cast<double>(w[j]);
  }
  return s;
}
}  // namespace

template <class T>
void sampling_probs(T* probs, const T* logits, T temperature, int64_t top_k, int64_t rows,
                    int64_t V) {
  std::vector<T> w;
  for (int64_t r = 0; r < rows; ++r) {
    const double s = row_weights(w, logits + r * V, V, temperature, top_k);
    for (int64_t j = 0; j < V; ++j) probs[r * V + j] = static_cast<T>(w[j] / s);
  }
}

template <class T>
void sample_categorical(int32_t* ids, T* probs, const T* logits, const T* u, T temperature,
                        int64_t top_k, int64_t rows, int64_t V) {
  std::vector<T> w;
  for (int64_t r = 0; r < rows; ++r) {
    const T* x = logits + r * V;
    const double s = row_weights(w, x, V, temperature, top_k);
    int64_t id = -1;
    if (!(temperature > T(0))) {
      id = std::max_element(x, x + V) - x;  // first maximum
    } else {
      const double t = static_cast<double>(u[r]) * s;
      double c = 0.0;
      for (int64_t j = 0; j < V && id < 0; ++j) {
        c += static_cast<double>(w[j]);
        if (c > t && w[j] > T(0)) id = j;
      }
      if (id < 0)
        for (id = V - 1; id > 0 && !(w[id] > T(0)); --id) {
        }
    }
    ids[r] = static_cast<int32_t>(id);
    if (probs) probs[r] = static_cast<T>(w[id] / s);
  }
}

template <class T>
void cfg_combine(T* out, const T* cond, const T* uncond, T scale, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = uncond[i] + scale * (cond[i] - uncond[i]);
}

template <class T>
void maskgit_select(int32_t* tokens_out, uint8_t* mask_out, const int32_t* tokens,
                    const uint8_t* mask, const int32_t* sampled, const T* conf, int32_t mask_id,
                    int64_t step, int64_t total_steps, int64_t B, int64_t N) {
  const int64_t remask = maskgit_remask_count(N, step, total_steps);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t o = b * N;
    std::vector<int64_t> pos;
    for (int64_t i = 0; i < N; ++i)
      if (mask[o + i]) pos.push_back(i);
    // Most confident first; equal confidences keep index order.
    std::stable_sort(pos.begin(), pos.end(),
                     [&](int64_t a, int64_t c) { return conf[o + a] > conf[o + c]; });
    const int64_t M = static_cast<int64_t>(pos.size());
    const int64_t keep = M - std::min(remask, M);
    std::vector<uint8_t> kept(N, 0);
    for (int64_t r = 0; r < keep; ++r) kept[pos[r]] = 1;
    for (int64_t i = 0; i < N; ++i) {
      const bool was_masked = mask[o + i] != 0;
      const int32_t tok = !was_masked ? tokens[o + i] : (kept[i] ? sampled[o + i] : mask_id);
      tokens_out[o + i] = tok;
      mask_out[o + i] = (was_masked && !kept[i]) ? 1 : 0;
    }
  }
}

template <class T>
void euler_step(T* z, const T* v, T dt, int64_t n) {
  for (int64_t i = 0; i < n; ++i) z[i] = z[i] - dt * v[i];
}

}  // namespace reca::cpu::ref

RECA_INSTANTIATE_REF(RECA_SAMPLING_FNS)

namespace reca::cpu {
void sampling_probs(float* probs, const float* logits, float temperature, int64_t top_k,
                    int64_t rows, int64_t V) {
  RECA_DISPATCH(sampling_probs, probs, logits, temperature, top_k, rows, V);
}
void sample_categorical(int32_t* ids, float* probs, const float* logits, const float* u,
                        float temperature, int64_t top_k, int64_t rows, int64_t V) {
  RECA_DISPATCH(sample_categorical, ids, probs, logits, u, temperature, top_k, rows, V);
}
void cfg_combine(float* out, const float* cond, const float* uncond, float scale, int64_t n) {
  RECA_DISPATCH(cfg_combine, out, cond, uncond, scale, n);
}
void maskgit_select(int32_t* tokens_out, uint8_t* mask_out, const int32_t* tokens,
                    const uint8_t* mask, const int32_t* sampled, const float* conf,
                    int32_t mask_id, int64_t step, int64_t total_steps, int64_t B, int64_t N) {
  RECA_DISPATCH(maskgit_select, tokens_out, mask_out, tokens, mask, sampled, conf, mask_id, step,
                total_steps, B, N);
}
void euler_step(float* z, const float* v, float dt, int64_t n) {
  RECA_DISPATCH(euler_step, z, v, dt, n);
}
}  // namespace reca::cpu
#endif
