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
// run[0 .. runs] are the compact positions where a run of consecutive keys
// starts (run[runs] = cnt[L]), so rows move between compact and key order as a
// few contiguous copies. Returns the number of runs.
int64_t visible_keys(int32_t* idx, int32_t* cnt, int32_t* run, const uint8_t* pad, int64_t L) {
  int32_t n = 0;
  int64_t runs = 0;
  for (int64_t j = 0; j < L; ++j) {
    cnt[j] = n;
    if (pad && pad[j]) continue;
    if (n == 0 || idx[n - 1] != j - 1) run[runs++] = n;
    idx[n++] = static_cast<int32_t>(j);
  }
  cnt[L] = n;
  run[runs] = n;
  return runs;
}

inline void copy_floats(float* dst, const float* src, int64_t n) {
  int64_t i = 0;
  for (; i + Vec::W <= n; i += Vec::W) Vec::load(src + i).store(dst + i);
  if (i < n) Vec::load_tail(src + i, static_cast<int>(n - i)).store_tail(dst + i, static_cast<int>(n - i));
}

// Compact row -> key order: dst[idx[t]] = src[t] for t < n.
void scatter_runs(float* dst, const float* src, const int32_t* idx, const int32_t* run,
                  int64_t runs, int64_t n) {
  for (int64_t r = 0; r < runs && run[r] < n; ++r)
    copy_floats(dst + idx[run[r]], src + run[r], imin(run[r + 1], n) - run[r]);
}

// Key order -> compact row: dst[t] = src[idx[t]] for t < n.
void gather_runs(float* dst, const float* src, const int32_t* idx, const int32_t* run,
                 int64_t runs, int64_t n) {
  for (int64_t r = 0; r < runs && run[r] < n; ++r)
    copy_floats(dst + run[r], src + idx[run[r]], imin(run[r + 1], n) - run[r]);
}

// Copies the listed rows' head slice into a transposed [hd, ld] block (columns
// past n zeroed; ld a multiple of Vec::W), so score rows can be computed along
// keys. W rows at a time, transposed in registers.
void gather_transposed(float* dst, const float* src, const int32_t* idx, int64_t n, int64_t stride,
                       int64_t hd, int64_t ld) {
  constexpr int W = Vec::W;
  for (int64_t t0 = 0; t0 < ld; t0 += W) {
    const int64_t rows = imax(0, imin(W, n - t0));
    for (int64_t d0 = 0; d0 < hd; d0 += W) {
      const int dn = static_cast<int>(imin(W, hd - d0));
      Vec r[W];
#pragma GCC unroll 16
      for (int i = 0; i < W; ++i)
        r[i] = i < rows ? Vec::load_tail(src + idx[t0 + i] * stride + d0, dn) : Vec::zero();
      transpose(r);
      for (int k = 0; k < dn; ++k) r[k].store(dst + (d0 + k) * ld + t0);
    }
  }
}

// Queries handled together: each key vector loaded from L1 serves kQ queries,
// where one query at a time paid about one load per multiply-add. AVX-512 takes
// 8: its 32 registers hold 8 queries' accumulators, and a head of one vector
// (16 dims) then still has 8 independent FMA chains. Results do not depend on
// kQ: every sum runs in the same order whatever the grouping.
#if RECA_ISA_LEVEL == 2
constexpr int kQ = 8;
#else
constexpr int kQ = 4;
#endif

template <int N>
struct QueryCount {
  static constexpr int value = N;
};

// Calls f(QueryCount<nq>) for 1 <= nq <= kQ, so the kernels' accumulators stay in registers.
template <class F>
inline void with_query_count(int nq, F&& f) {
  static_assert(kQ == 4 || kQ == 8, "one case per query count");
  switch (nq) {
    case 1: return f(QueryCount<1>{});
    case 2: return f(QueryCount<2>{});
    case 3: return f(QueryCount<3>{});
    default: break;
  }
  if constexpr (kQ == 4) {
    return f(QueryCount<4>{});
  } else {
    switch (nq) {
      case 4: return f(QueryCount<4>{});
      case 5: return f(QueryCount<5>{});
      case 6: return f(QueryCount<6>{});
      case 7: return f(QueryCount<7>{});
      default: return f(QueryCount<kQ>{});
    }
  }
}

// s[q·ld + t] = Σ_d a[q][d]·bt[d·ld + t] for q < nq, t in [0, n); n is a multiple
// of Vec::W and every bt row is readable up to n. Each score sums d in order,
// whatever nq is.
template <int NQ>
void dot_keys_fixed(float* s, const float* const* a, const float* bt, int64_t ld, int64_t hd,
                    int64_t n) {
  constexpr int W = Vec::W;
  constexpr int nq = NQ;
  int64_t t = 0;
  for (; t + 2 * W <= n; t += 2 * W) {
    Vec lo[NQ], hi[NQ];
    for (int q = 0; q < NQ; ++q) lo[q] = hi[q] = Vec::zero();
    for (int64_t d = 0; d < hd; ++d) {
      const Vec k0 = Vec::load(bt + d * ld + t), k1 = Vec::load(bt + d * ld + t + W);
#pragma GCC unroll 8
      for (int q = 0; q < NQ; ++q) {
        const Vec x = Vec::set1(a[q][d]);
        lo[q] = fmadd(x, k0, lo[q]);
        hi[q] = fmadd(x, k1, hi[q]);
      }
    }
    for (int q = 0; q < nq; ++q) {
      lo[q].store(s + q * ld + t);
      hi[q].store(s + q * ld + t + W);
    }
  }
  for (; t < n; t += W) {
    Vec acc[NQ];
    for (int q = 0; q < NQ; ++q) acc[q] = Vec::zero();
    for (int64_t d = 0; d < hd; ++d) {
      const Vec k0 = Vec::load(bt + d * ld + t);
#pragma GCC unroll 8
      for (int q = 0; q < NQ; ++q) {
        acc[q] = fmadd(Vec::set1(a[q][d]), k0, acc[q]);
      }
    }
    for (int q = 0; q < nq; ++q) acc[q].store(s + q * ld + t);
  }
}

// One pass of weighted_rows_fixed over head dims [d, d + NV·W) (m[v] lanes of
// vector v), col = base + d.
template <int NQ, int NV>
void weighted_rows_pass(float* const* y, const float* w, int64_t ld, const int64_t* n,
                        int64_t n_min, const float* col, const int32_t* idx, int64_t stride,
                        int64_t d, const int* m, bool accumulate) {
  constexpr int W = Vec::W;
  Vec acc[NV][NQ];
  for (int v = 0; v < NV; ++v)
    for (int q = 0; q < NQ; ++q) acc[v][q] = Vec::zero();
  for (int64_t t = 0; t < n_min; ++t) {
    const float* r = col + idx[t] * stride;
    Vec vals[NV];
    for (int v = 0; v < NV; ++v) vals[v] = Vec::load_tail(r + v * W, m[v]);
#pragma GCC unroll 8
    for (int q = 0; q < NQ; ++q) {
      const Vec x = Vec::set1(w[q * ld + t]);
      for (int v = 0; v < NV; ++v) acc[v][q] = fmadd(x, vals[v], acc[v][q]);
    }
  }
  for (int q = 0; q < NQ; ++q) {
    for (int64_t t = n_min; t < n[q]; ++t) {
      const float* r = col + idx[t] * stride;
      const Vec x = Vec::set1(w[q * ld + t]);
      for (int v = 0; v < NV; ++v) acc[v][q] = fmadd(x, Vec::load_tail(r + v * W, m[v]), acc[v][q]);
    }
    for (int v = 0; v < NV; ++v) {
      Vec out = acc[v][q];
      if (accumulate) out = out + Vec::load_tail(y[q] + d + v * W, m[v]);
      out.store_tail(y[q] + d + v * W, m[v]);
    }
  }
}

// y[q][0:hd] = Σ_{t<n[q]} w[q·ld + t]·base[idx[t]·stride + 0:hd]  (+ y[q] when
// accumulate), for q < nq. Keys every query sees are loaded once for all of them;
// each query then finishes its own few extra keys. Sums run over t in order.
template <int NQ>
void weighted_rows_fixed(float* const* y, const float* w, int64_t ld, const int64_t* n,
                         const float* base, const int32_t* idx, int64_t stride, int64_t hd,
                         bool accumulate) {
  constexpr int nq = NQ;
  constexpr int W = Vec::W;
  int64_t n_min = n[0];
  for (int q = 1; q < nq; ++q) n_min = imin(n_min, n[q]);
  // Two vectors of head dims per pass: 2·kQ independent chains keep both FMA
  // pipes busy; a last pass of one vector (all of a 16-dim head on AVX-512)
  // skips the empty second one.
  for (int64_t d = 0; d < hd; d += 2 * W) {
    const int m[2] = {static_cast<int>(imin(W, hd - d)), static_cast<int>(imax(0, imin(W, hd - d - W)))};
    if (m[1] > 0)
      weighted_rows_pass<NQ, 2>(y, w, ld, n, n_min, base + d, idx, stride, d, m, accumulate);
    else
      weighted_rows_pass<NQ, 1>(y, w, ld, n, n_min, base + d, idx, stride, d, m, accumulate);
  }
}

void dot_keys_block(float* s, const float* const* a, int nq, const float* bt, int64_t ld,
                    int64_t hd, int64_t n) {
  with_query_count(nq, [&](auto c) { dot_keys_fixed<decltype(c)::value>(s, a, bt, ld, hd, n); });
}

void weighted_rows_block(float* const* y, const float* w, int64_t ld, const int64_t* n, int nq,
                         const float* base, const int32_t* idx, int64_t stride, int64_t hd,
                         bool accumulate) {
  with_query_count(nq, [&](auto c) {
    weighted_rows_fixed<decltype(c)::value>(y, w, ld, n, base, idx, stride, hd, accumulate);
  });
}

// dK[t] += Σ_q dS[q][t]·Q_q and dV[t] += Σ_q P[q][t]·dO_q over t < n[q]: each key
// row is loaded and stored once per block, and the queries are added in order, as
// one query at a time would add them.
template <int NQ>
void key_grads_fixed(float* dk, float* dv, const float* ds, const float* pr, int64_t ld,
                     const float* const* qs, const float* const* gos, const int64_t* n, int64_t hd) {
  int64_t n_min = n[0], n_max = n[0];
  for (int q = 1; q < NQ; ++q) {
    n_min = imin(n_min, n[q]);
    n_max = imax(n_max, n[q]);
  }
  for (int64_t d = 0; d < hd; d += Vec::W) {
    const int m = static_cast<int>(imin(Vec::W, hd - d));
    Vec qv[NQ], gv[NQ];
    for (int q = 0; q < NQ; ++q) {
      qv[q] = Vec::load_tail(qs[q] + d, m);
      gv[q] = Vec::load_tail(gos[q] + d, m);
    }
    for (int64_t t = 0; t < n_max; ++t) {
      float* kr = dk + t * hd + d;
      float* vr = dv + t * hd + d;
      Vec kacc = Vec::load_tail(kr, m), vacc = Vec::load_tail(vr, m);
      if (t < n_min) {
#pragma GCC unroll 8
        for (int q = 0; q < NQ; ++q) {
          kacc = fmadd(Vec::set1(ds[q * ld + t]), qv[q], kacc);
          vacc = fmadd(Vec::set1(pr[q * ld + t]), gv[q], vacc);
        }
      } else {
        for (int q = 0; q < NQ; ++q) {
          if (t >= n[q]) continue;
          kacc = fmadd(Vec::set1(ds[q * ld + t]), qv[q], kacc);
          vacc = fmadd(Vec::set1(pr[q * ld + t]), gv[q], vacc);
        }
      }
      kacc.store_tail(kr, m);
      vacc.store_tail(vr, m);
    }
  }
}

void key_grads_block(float* dk, float* dv, const float* ds, const float* pr, int64_t ld,
                     const float* const* qs, const float* const* gos, const int64_t* n, int nq,
                     int64_t hd) {
  with_query_count(nq, [&](auto c) {
    key_grads_fixed<decltype(c)::value>(dk, dv, ds, pr, ld, qs, gos, n, hd);
  });
}

// In place over s[0, nr): s = softmax(s·scale) over the first n entries, zero past them.
void softmax_row(float* s, int64_t n, int64_t nr, float scale) {
  for (int64_t t = n; t < nr; ++t) s[t] = -INFINITY;  // lanes past the last visible key
  const Vec vscale = Vec::set1(scale);
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
}

}  // namespace

// Per (b, head): keys transposed once, then kQ queries at a time: score rows over
// their visible keys (vectorised along keys), softmax per row, and P·V.
void attention_forward(float* out, float* att, const float* qkv, const uint8_t* key_pad, int64_t B,
                       int64_t L, int64_t heads, int64_t width, int64_t cond_len,
                       bool target_causal) {
  const int64_t hd = width / heads, C3 = 3 * width, ld = round_up(L, 4 * Vec::W);
  const float scale = 1.0f / sqrtf(static_cast<float>(hd));
  parallel_for(B * heads, 1, [&](int64_t p0, int64_t p1) {
    float* kt = new float[hd * ld + kQ * ld];  // keys [hd, ld], then kQ score rows [ld]
    float* s = kt + hd * ld;
    int32_t* idx = new int32_t[3 * L + 2];
    int32_t* cnt = idx + L;
    int32_t* run = cnt + L + 1;
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t b = p / heads, h = p % heads;
      const float* x = qkv + b * L * C3 + h * hd;  // q_i at x + i·C3, k_i at +width, v_i at +2·width
      const int64_t runs = visible_keys(idx, cnt, run, key_pad ? key_pad + b * L : nullptr, L);
      gather_transposed(kt, x + width, idx, cnt[L], C3, hd, ld);
      for (int64_t i0 = 0; i0 < L; i0 += kQ) {
        const float* qs[kQ];
        float* os[kQ];
        int64_t n[kQ];
        int nq = 0;
        int64_t nr_max = 0;
        // Queries that see no key (all candidates PAD) get a zero output and are
        // left out of the block.
        for (int64_t i = i0; i < imin(i0 + kQ, L); ++i) {
          const int64_t ni = cnt[key_end(i, L, cond_len, target_causal)];
          float* o = out + (b * L + i) * width + h * hd;
          if (att) memset(att + (p * L + i) * L, 0, static_cast<size_t>(L) * sizeof(float));
          if (ni == 0) {
            memset(o, 0, static_cast<size_t>(hd) * sizeof(float));
            continue;
          }
          qs[nq] = x + i * C3;
          os[nq] = o;
          n[nq] = ni;
          nr_max = imax(nr_max, round_up(ni, Vec::W));
          ++nq;
        }
        if (nq == 0) continue;
        dot_keys_block(s, qs, nq, kt, ld, hd, nr_max);
        for (int q = 0; q < nq; ++q) softmax_row(s + q * ld, n[q], round_up(n[q], Vec::W), scale);
        weighted_rows_block(os, s, ld, n, nq, x + 2 * width, idx, C3, hd, false);
        if (att)
          for (int q = 0; q < nq; ++q) {
            const int64_t i = (qs[q] - x) / C3;
            scatter_runs(att + (p * L + i) * L, s + q * ld, idx, run, runs, n[q]);
          }
      }
    }
    delete[] idx;
    delete[] kt;
  });
}

// Per (b, head), kQ queries at a time: dQ rows go straight into dqkv; dK and dV
// are summed over queries in order in compact scratch rows and added to dqkv once
// at the end.
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                        const uint8_t* key_pad, int64_t B, int64_t L, int64_t heads, int64_t width,
                        int64_t cond_len, bool target_causal) {
  const int64_t hd = width / heads, C3 = 3 * width, ld = round_up(L, 4 * Vec::W);
  const float scale = 1.0f / sqrtf(static_cast<float>(hd));
  parallel_for(B * heads, 1, [&](int64_t p0, int64_t p1) {
    // values [hd, ld] | kQ P rows [ld] | kQ dP/dS rows [ld] | dK [L, hd] | dV [L, hd]
    float* vt = new float[hd * ld + 2 * kQ * ld + 2 * L * hd];
    float* pr = vt + hd * ld;
    float* ds = pr + kQ * ld;
    float* dk = ds + kQ * ld;
    float* dv = dk + L * hd;
    int32_t* idx = new int32_t[3 * L + 2];
    int32_t* cnt = idx + L;
    int32_t* run = cnt + L + 1;
    const Vec vscale = Vec::set1(scale);
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t b = p / heads, h = p % heads;
      const float* x = qkv + b * L * C3 + h * hd;
      float* g = dqkv + b * L * C3 + h * hd;
      const int64_t runs = visible_keys(idx, cnt, run, key_pad ? key_pad + b * L : nullptr, L);
      const int64_t nv = cnt[L];
      gather_transposed(vt, x + 2 * width, idx, nv, C3, hd, ld);
      memset(dk, 0, static_cast<size_t>(2 * L * hd) * sizeof(float));
      for (int64_t i0 = 0; i0 < L; i0 += kQ) {
        const float* gos[kQ];
        const float* qs[kQ];
        float* gqs[kQ];
        int64_t n[kQ];
        int nq = 0;
        int64_t nr_max = 0;
        for (int64_t i = i0; i < imin(i0 + kQ, L); ++i) {
          const int64_t ni = cnt[key_end(i, L, cond_len, target_causal)];
          if (ni == 0) continue;  // zero output, zero gradient
          gos[nq] = dout + (b * L + i) * width + h * hd;
          qs[nq] = x + i * C3;
          gqs[nq] = g + i * C3;
          const float* a = att + (p * L + i) * L;
          float* prq = pr + nq * ld;
          const int64_t nr = round_up(ni, Vec::W);
          gather_runs(prq, a, idx, run, runs, ni);
          for (int64_t t = ni; t < nr; ++t) prq[t] = 0.0f;
          n[nq] = ni;
          nr_max = imax(nr_max, nr);
          ++nq;
        }
        if (nq == 0) continue;
        dot_keys_block(ds, gos, nq, vt, ld, hd, nr_max);  // dP = dO·Vᵀ
        for (int q = 0; q < nq; ++q) {
          float* prq = pr + q * ld;
          float* dsq = ds + q * ld;
          const int64_t nr = round_up(n[q], Vec::W);
          Vec acc = Vec::zero();
          for (int64_t t = 0; t < nr; t += Vec::W) acc = fmadd(Vec::load(prq + t), Vec::load(dsq + t), acc);
          const Vec r = Vec::set1(hsum(acc));
          // dS/√hd, folded once so dQ and dK need no further scaling
          for (int64_t t = 0; t < nr; t += Vec::W)
            (Vec::load(prq + t) * (Vec::load(dsq + t) - r) * vscale).store(dsq + t);
        }
        weighted_rows_block(gqs, ds, ld, n, nq, x + width, idx, C3, hd, true);  // dQ += dS·K/√hd
        key_grads_block(dk, dv, ds, pr, ld, qs, gos, n, nq, hd);
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
