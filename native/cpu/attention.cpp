#include "cpu/attention.h"

#include "core/threadpool.h"
#include "cpu/simd.h"

namespace reca::cpu::RECA_ISA_NS {
namespace {

// Keys query i may see lie in [0, key_end); PAD keys inside are dropped separately.
inline int64_t key_end(int64_t i, int64_t L, int64_t cond_len, bool causal) {
  return i < cond_len ? cond_len : (causal ? i + 1 : L);
}

inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// The non-PAD keys of one sample in order: idx[t] is the t-th of them and cnt[e]
// counts those below position e, so query i sees exactly idx[0 .. cnt[key_end(i)]).
// Working on this compact list skips every PAD key instead of masking it.
void visible_keys(int32_t* idx, int32_t* cnt, const uint8_t* pad, int64_t L) {
  int32_t n = 0;
  for (int64_t j = 0; j < L; ++j) {
    cnt[j] = n;
    if (!pad || !pad[j]) idx[n++] = static_cast<int32_t>(j);
  }
  cnt[L] = n;
}

// Copies the listed rows' head slice into a transposed [hd, ld] block (columns
// past n zeroed), so score rows can be computed along keys.
void gather_transposed(float* dst, const float* src, const int32_t* idx, int64_t n, int64_t stride,
                       int64_t hd, int64_t ld) {
  for (int64_t t = 0; t < n; ++t) {
    const float* r = src + idx[t] * stride;
    for (int64_t d = 0; d < hd; ++d) dst[d * ld + t] = r[d];
  }
  for (int64_t d = 0; d < hd; ++d)
    for (int64_t t = n; t < ld; ++t) dst[d * ld + t] = 0.0f;
}

// s[t] = Σ_d a[d]·bt[d·ld + t] for t in [0, n); n is a multiple of Vec::W and every
// bt row is readable up to n. Vectorised over keys, so head sizes below the vector
// width still fill the lanes.
void dot_keys(float* s, const float* a, const float* bt, int64_t ld, int64_t hd, int64_t n) {
  constexpr int W = Vec::W;
  int64_t t = 0;
  for (; t + 4 * W <= n; t += 4 * W) {
    Vec a0 = Vec::zero(), a1 = Vec::zero(), a2 = Vec::zero(), a3 = Vec::zero();
    for (int64_t d = 0; d < hd; ++d) {
      const Vec x = Vec::set1(a[d]);
      const float* r = bt + d * ld + t;
      a0 = fmadd(x, Vec::load(r), a0);
      a1 = fmadd(x, Vec::load(r + W), a1);
      a2 = fmadd(x, Vec::load(r + 2 * W), a2);
      a3 = fmadd(x, Vec::load(r + 3 * W), a3);
    }
    a0.store(s + t);
    a1.store(s + t + W);
    a2.store(s + t + 2 * W);
    a3.store(s + t + 3 * W);
  }
  for (; t < n; t += W) {
    Vec a0 = Vec::zero();
    for (int64_t d = 0; d < hd; ++d) a0 = fmadd(Vec::set1(a[d]), Vec::load(bt + d * ld + t), a0);
    a0.store(s + t);
  }
}

// y[0:hd] = Σ_{t<n} w[t]·base[idx[t]·stride + 0:hd]  (+ y when accumulate).
// Four accumulators over t hide the FMA latency.
void weighted_rows(float* y, const float* w, const float* base, const int32_t* idx, int64_t stride,
                   int64_t n, int64_t hd, bool accumulate) {
  for (int64_t d = 0; d < hd; d += Vec::W) {
    const int m = static_cast<int>(imin(Vec::W, hd - d));
    const float* col = base + d;
    Vec a0 = Vec::zero(), a1 = Vec::zero(), a2 = Vec::zero(), a3 = Vec::zero();
    int64_t t = 0;
    for (; t + 4 <= n; t += 4) {
      a0 = fmadd(Vec::set1(w[t]), Vec::load_tail(col + idx[t] * stride, m), a0);
      a1 = fmadd(Vec::set1(w[t + 1]), Vec::load_tail(col + idx[t + 1] * stride, m), a1);
      a2 = fmadd(Vec::set1(w[t + 2]), Vec::load_tail(col + idx[t + 2] * stride, m), a2);
      a3 = fmadd(Vec::set1(w[t + 3]), Vec::load_tail(col + idx[t + 3] * stride, m), a3);
    }
    for (; t < n; ++t) a0 = fmadd(Vec::set1(w[t]), Vec::load_tail(col + idx[t] * stride, m), a0);
    Vec r = (a0 + a1) + (a2 + a3);
    if (accumulate) r = r + Vec::load_tail(y + d, m);
    r.store_tail(y + d, m);
  }
}

}  // namespace

// Per (b, head): keys transposed once, then per query a compact score row over its
// visible keys (vectorised along keys), softmax, and P·V along the head dims.
void attention_forward(float* out, float* att, const float* qkv, const uint8_t* key_pad, int64_t B,
                       int64_t L, int64_t heads, int64_t width, int64_t cond_len,
                       bool target_causal) {
  const int64_t hd = width / heads, C3 = 3 * width, ld = round_up(L, 4 * Vec::W);
  const float scale = 1.0f / sqrtf(static_cast<float>(hd));
  parallel_for(B * heads, 1, [&](int64_t p0, int64_t p1) {
    float* kt = new float[hd * ld + ld];  // keys [hd, ld], then one score row [ld]
    float* s = kt + hd * ld;
    int32_t* idx = new int32_t[2 * L + 1];
    int32_t* cnt = idx + L;
    const Vec vscale = Vec::set1(scale);
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t b = p / heads, h = p % heads;
      const float* x = qkv + b * L * C3 + h * hd;  // q_i at x + i·C3, k_i at +width, v_i at +2·width
      visible_keys(idx, cnt, key_pad ? key_pad + b * L : nullptr, L);
      gather_transposed(kt, x + width, idx, cnt[L], C3, hd, ld);
      for (int64_t i = 0; i < L; ++i) {
        const int64_t n = cnt[key_end(i, L, cond_len, target_causal)];
        float* o = out + (b * L + i) * width + h * hd;
        float* a = att ? att + (p * L + i) * L : nullptr;
        if (a) memset(a, 0, static_cast<size_t>(L) * sizeof(float));
        if (n == 0) {  // every candidate key is PAD: defined as a zero output
          memset(o, 0, static_cast<size_t>(hd) * sizeof(float));
          continue;
        }
        const int64_t nr = round_up(n, Vec::W);
        dot_keys(s, x + i * C3, kt, ld, hd, nr);
        for (int64_t t = n; t < nr; ++t) s[t] = -INFINITY;  // lanes past the last visible key
        Vec mx = Vec::set1(-INFINITY);
        for (int64_t t = 0; t < nr; t += Vec::W) {
          const Vec v = Vec::load(s + t) * vscale;
          v.store(s + t);
          mx = vmax(mx, v);
        }
        const Vec m = Vec::set1(hmax(mx));
        Vec sum = Vec::zero();
        for (int64_t t = 0; t < nr; t += Vec::W) {
          const Vec e = vexp(Vec::load(s + t) - m);
          e.store(s + t);
          sum = sum + e;
        }
        const Vec inv = Vec::set1(1.0f / hsum(sum));
        for (int64_t t = 0; t < nr; t += Vec::W) (Vec::load(s + t) * inv).store(s + t);
        weighted_rows(o, s, x + 2 * width, idx, C3, n, hd, false);
        if (a)
          for (int64_t t = 0; t < n; ++t) a[idx[t]] = s[t];
      }
    }
    delete[] idx;
    delete[] kt;
  });
}

// Per (b, head): dQ rows go straight into dqkv; dK and dV are summed over queries
// in order in compact scratch rows and added to dqkv once at the end.
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                        const uint8_t* key_pad, int64_t B, int64_t L, int64_t heads, int64_t width,
                        int64_t cond_len, bool target_causal) {
  const int64_t hd = width / heads, C3 = 3 * width, ld = round_up(L, 4 * Vec::W);
  const float scale = 1.0f / sqrtf(static_cast<float>(hd));
  parallel_for(B * heads, 1, [&](int64_t p0, int64_t p1) {
    // values [hd, ld] | P row [ld] | dP/dS row [ld] | dK [L, hd] | dV [L, hd]
    float* vt = new float[hd * ld + 2 * ld + 2 * L * hd];
    float* pr = vt + hd * ld;
    float* ds = pr + ld;
    float* dk = ds + ld;
    float* dv = dk + L * hd;
    int32_t* idx = new int32_t[2 * L + 1];
    int32_t* cnt = idx + L;
    const Vec vscale = Vec::set1(scale);
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t b = p / heads, h = p % heads;
      const float* x = qkv + b * L * C3 + h * hd;
      float* g = dqkv + b * L * C3 + h * hd;
      visible_keys(idx, cnt, key_pad ? key_pad + b * L : nullptr, L);
      const int64_t nv = cnt[L];
      gather_transposed(vt, x + 2 * width, idx, nv, C3, hd, ld);
      memset(dk, 0, static_cast<size_t>(2 * L * hd) * sizeof(float));
      for (int64_t i = 0; i < L; ++i) {
        const int64_t n = cnt[key_end(i, L, cond_len, target_causal)];
        if (n == 0) continue;  // zero output, zero gradient
        const int64_t nr = round_up(n, Vec::W);
        const float* a = att + (p * L + i) * L;
        for (int64_t t = 0; t < n; ++t) pr[t] = a[idx[t]];
        for (int64_t t = n; t < nr; ++t) pr[t] = 0.0f;
        const float* go = dout + (b * L + i) * width + h * hd;
        dot_keys(ds, go, vt, ld, hd, nr);  // dP = dO·Vᵀ
        Vec acc = Vec::zero();
        for (int64_t t = 0; t < nr; t += Vec::W) acc = fmadd(Vec::load(pr + t), Vec::load(ds + t), acc);
        const Vec r = Vec::set1(hsum(acc));
        // dS/√hd, folded once so dQ and dK need no further scaling
        for (int64_t t = 0; t < nr; t += Vec::W)
          (Vec::load(pr + t) * (Vec::load(ds + t) - r) * vscale).store(ds + t);
        weighted_rows(g + i * C3, ds, x + width, idx, C3, n, hd, true);  // dQ += dS·K/√hd
        const float* q = x + i * C3;
        for (int64_t d = 0; d < hd; d += Vec::W) {
          const int m = static_cast<int>(imin(Vec::W, hd - d));
          const Vec qv = Vec::load_tail(q + d, m), gv = Vec::load_tail(go + d, m);
          for (int64_t t = 0; t < n; ++t) {
            float* kr = dk + t * hd + d;
            float* vr = dv + t * hd + d;
            fmadd(Vec::set1(ds[t]), qv, Vec::load_tail(kr, m)).store_tail(kr, m);  // dK += dSᵀ·Q/√hd
            fmadd(Vec::set1(pr[t]), gv, Vec::load_tail(vr, m)).store_tail(vr, m);  // dV += Pᵀ·dO
          }
        }
      }
      for (int64_t t = 0; t < nv; ++t) {
        float* gk = g + idx[t] * C3 + width;
        float* gv = gk + width;
        for (int64_t d = 0; d < hd; d += Vec::W) {
          const int m = static_cast<int>(imin(Vec::W, hd - d));
          (Vec::load_tail(gk + d, m) + Vec::load_tail(dk + t * hd + d, m)).store_tail(gk + d, m);
          (Vec::load_tail(gv + d, m) + Vec::load_tail(dv + t * hd + d, m)).store_tail(gv + d, m);
        }
      }
    }
    delete[] idx;
    delete[] vt;
  });
}

}  // namespace reca::cpu::RECA_ISA_NS

#if RECA_ISA_LEVEL == 0
#include <cmath>
#include <limits>
#include <vector>

namespace reca::cpu::ref {
namespace {
bool visible(int64_t i, int64_t j, const uint8_t* pad_row, int64_t cond_len, bool causal) {
  if (pad_row && pad_row[j]) return false;
  if (i < cond_len) return j < cond_len;
  return j < cond_len || !causal || j <= i;
}
}  // namespace

template <class T>
void attention_forward(T* out, T* att, const T* qkv, const uint8_t* key_pad, int64_t B, int64_t L,
                       int64_t heads, int64_t width, int64_t cond_len, bool target_causal) {
  const int64_t hd = width / heads, C3 = 3 * width;
  const T scale = T(1) / std::sqrt(T(hd));
  std::vector<T> s(L);
  std::vector<char> vis(L);
  for (int64_t b = 0; b < B; ++b) {
    const uint8_t* pad = key_pad ? key_pad + b * L : nullptr;
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < L; ++i) {
        const T* q = qkv + (b * L + i) * C3 + h * hd;
        T m = -std::numeric_limits<T>::infinity();
        for (int64_t j = 0; j < L; ++j) {
          vis[j] = visible(i, j, pad, cond_len, target_causal);
          if (!vis[j]) continue;
          const T* k = qkv + (b * L + j) * C3 + width + h * hd;
          T dot = 0;
          for (int64_t d = 0; d < hd; ++d) dot += q[d] * k[d];
          s[j] = dot * scale;
          if (s[j] > m) m = s[j];
        }
        T sum = 0;
        for (int64_t j = 0; j < L; ++j)
          if (vis[j]) sum += (s[j] = std::exp(s[j] - m));
        T* o = out + (b * L + i) * width + h * hd;
        for (int64_t d = 0; d < hd; ++d) o[d] = 0;
        T* a = att ? att + ((b * heads + h) * L + i) * L : nullptr;
        for (int64_t j = 0; j < L; ++j) {
          const T pj = vis[j] ? s[j] / sum : T(0);
          if (a) a[j] = pj;
          if (!vis[j]) continue;
          const T* v = qkv + (b * L + j) * C3 + 2 * width + h * hd;
          for (int64_t d = 0; d < hd; ++d) o[d] += pj * v[d];
        }
      }
  }
}

template <class T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* att, const uint8_t* key_pad,
                        int64_t B, int64_t L, int64_t heads, int64_t width, int64_t cond_len,
                        bool target_causal) {
  const int64_t hd = width / heads, C3 = 3 * width;
  const T scale = T(1) / std::sqrt(T(hd));
  std::vector<T> dp(L);
  for (int64_t b = 0; b < B; ++b) {
    const uint8_t* pad = key_pad ? key_pad + b * L : nullptr;
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < L; ++i) {
        const T* a = att + ((b * heads + h) * L + i) * L;
        const T* go = dout + (b * L + i) * width + h * hd;
        const T* q = qkv + (b * L + i) * C3 + h * hd;
        T* gq = dqkv + (b * L + i) * C3 + h * hd;
        T r = 0;
        for (int64_t j = 0; j < L; ++j) {
          if (!visible(i, j, pad, cond_len, target_causal)) continue;
          const T* v = qkv + (b * L + j) * C3 + 2 * width + h * hd;
          T dot = 0;
          for (int64_t d = 0; d < hd; ++d) dot += go[d] * v[d];
          dp[j] = dot;
          r += dot * a[j];
        }
        for (int64_t j = 0; j < L; ++j) {
          if (!visible(i, j, pad, cond_len, target_causal)) continue;
          const T dsj = a[j] * (dp[j] - r) * scale;
          const T* k = qkv + (b * L + j) * C3 + width + h * hd;
          T* gk = dqkv + (b * L + j) * C3 + width + h * hd;
          T* gv = gk + width;
          for (int64_t d = 0; d < hd; ++d) {
            gq[d] += dsj * k[d];
            gk[d] += dsj * q[d];
            gv[d] += a[j] * go[d];
          }
        }
      }
  }
}

}  // namespace reca::cpu::ref

RECA_INSTANTIATE_REF(RECA_ATTENTION_FNS)

namespace reca::cpu {
void attention_forward(float* out, float* att, const float* qkv, const uint8_t* key_pad, int64_t B,
                       int64_t L, int64_t heads, int64_t width, int64_t cond_len,
                       bool target_causal) {
  RECA_DISPATCH(attention_forward, out, att, qkv, key_pad, B, L, heads, width, cond_len,
                target_causal);
}
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                        const uint8_t* key_pad, int64_t B, int64_t L, int64_t heads, int64_t width,
                        int64_t cond_len, bool target_causal) {
  RECA_DISPATCH(attention_backward, dqkv, dout, qkv, att, key_pad, B, L, heads, width, cond_len,
                target_causal);
}
}  // namespace reca::cpu
#endif
