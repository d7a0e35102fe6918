#include "cpu/vq.h"

#include "core/threadpool.h"
#include "cpu/simd.h"

namespace reca::cpu::RECA_ISA_NS {
namespace {
// Rows of the loss reduction per block: partial sums combined in block order.
constexpr int64_t kLossBlock = 256;
// Rows scanned together in vq_nearest, sharing every codebook load.
constexpr int kRowBlock = 8;
constexpr float kLane[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

// Keeps `v` a rounded double, so the compiler cannot fuse the square into the
// following add (the canonical distance has no fused multiply-add, at any ISA
// level and under any -ffp-contract setting).
inline void materialize(double& v) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __asm__("" : "+x"(v));
#else
  volatile double t = v;
  v = t;
#endif
}

// The canonical distance that decides ties (see vq.h).
inline double canonical_dist(const float* z, const float* e, int64_t C) {
  double acc = 0.0;
  for (int64_t c = 0; c < C; ++c) {
    const double d = static_cast<double>(z[c]) - static_cast<double>(e[c]);
    double sq = d * d;
    materialize(sq);
    acc += sq;
  }
  return acc;
}
}  // namespace

void vq_nearest(int32_t* codes, const float* z, const float* codebook, int64_t n, int64_t K,
                int64_t C) {
  // Transposed codebook [C, K]: lanes run over codes, so each distance is
  // summed in registers with no horizontal reduction.
  float* et = new float[C * K];
  for (int64_t k = 0; k < K; ++k)
    for (int64_t c = 0; c < C; ++c) et[c * K + k] = codebook[k * C + c];
  // fp32 scan vs canonical double: |fp32 − canonical| <= rel·d + abs_slack,
  // with rel covering (C+3) fp32 roundings and the double ones, abs_slack
  // the underflow of squares below 2^-126.
  const double rel = static_cast<double>(C + 8) * 0x1p-24;
  const double abs_slack = static_cast<double>(2 * C + 4) * 0x1p-149;
  parallel_for(n, imax(kRowBlock, 32768 / imax(1, K * C)), [&](int64_t r0, int64_t r1) {
    float* dist = new float[kRowBlock * K];
    const Vec lane = Vec::load(kLane), inf = Vec::set1(INFINITY), kf = Vec::set1(static_cast<float>(K));
    float bv[16], bi[16];
    for (int64_t rb = r0; rb < r1; rb += kRowBlock) {
      // kRowBlock rows share each codebook load; a short last block repeats
      // its last row (each row's arithmetic is the same in any block).
      const int nr = static_cast<int>(imin(kRowBlock, r1 - rb));
      const float* zr[kRowBlock];
      for (int i = 0; i < kRowBlock; ++i) zr[i] = z + (rb + imin(i, nr - 1)) * C;
      Vec best[kRowBlock], besti[kRowBlock];
      for (int i = 0; i < kRowBlock; ++i) best[i] = inf, besti[i] = Vec::zero();
      for (int64_t k0 = 0; k0 < K; k0 += Vec::W) {
        const int m = static_cast<int>(imin(Vec::W, K - k0));
        Vec acc[kRowBlock];
        for (int i = 0; i < kRowBlock; ++i) acc[i] = Vec::zero();
        for (int64_t c = 0; c < C; ++c) {
          const Vec e = Vec::load_tail(et + c * K + k0, m);
          for (int i = 0; i < kRowBlock; ++i) {
            const Vec d = Vec::set1(zr[i][c]) - e;
            acc[i] = fmadd(d, d, acc[i]);
          }
        }
        const Vec idx = Vec::set1(static_cast<float>(k0)) + lane;
        for (int i = 0; i < nr; ++i) {
          acc[i].store_tail(dist + i * K + k0, m);
          if (m < Vec::W) acc[i] = select_lt(idx, kf, acc[i], inf);
          besti[i] = select_lt(acc[i], best[i], idx, besti[i]);  // strict: each lane keeps its first minimum
          best[i] = select_lt(acc[i], best[i], acc[i], best[i]);
        }
      }
      for (int i = 0; i < nr; ++i) {
        const float* di = dist + i * K;
        best[i].store(bv);
        besti[i].store(bi);
        float minv = bv[0], mini = bi[0];
        for (int j = 1; j < Vec::W; ++j)
          if (bv[j] < minv || (bv[j] == minv && bi[j] < mini)) minv = bv[j], mini = bi[j];
        // Every code whose fp32 distance could hide a canonical distance <= the
        // canonical minimum; thresh rounded up to fp32.
        const double thresh = (static_cast<double>(minv) + abs_slack) * (1.0 + 3.0 * rel) + abs_slack;
        float tf = static_cast<float>(thresh);
        if (static_cast<double>(tf) < thresh) tf = nextafterf(tf, INFINITY);
        const Vec tv = Vec::set1(tf), one = Vec::set1(1.0f);
        Vec cnt = Vec::zero();
        int64_t k = 0;
        for (; k + Vec::W <= K; k += Vec::W) cnt = cnt + select_lt(tv, Vec::load(di + k), Vec::zero(), one);
        float count = hsum(cnt);
        for (; k < K; ++k) count += di[k] <= tf ? 1.0f : 0.0f;
        int64_t bk = static_cast<int64_t>(mini);
        if (count > 1.0f) {
          // Near tie (or duplicate rows): decide in canonical double, lowest k first.
          double bd = INFINITY;
          for (k = 0; k < K; ++k) {
            if (!(di[k] <= tf)) continue;
            const double d = canonical_dist(zr[i], codebook + k * C, C);
            if (d < bd) bd = d, bk = k;
          }
        }
        codes[rb + i] = static_cast<int32_t>(bk);
      }
    }
    delete[] dist;
  });
  delete[] et;
}

void vq_gather(float* out, const int32_t* codes, const float* codebook, int64_t n, int64_t C) {
  parallel_for(n, imax(1, 16384 / imax(1, C)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      memcpy(out + r * C, codebook + static_cast<int64_t>(codes[r]) * C, sizeof(float) * C);
  });
}

void vq_loss_forward(float* loss_codebook, float* loss_commit, const float* z, const float* codebook,
                     const int32_t* codes, int64_t n, int64_t C) {
  const double total = parallel_sum_blocks(n, kLossBlock, [&](int64_t r0, int64_t r1) {
    Vec acc = Vec::zero();
    for (int64_t r = r0; r < r1; ++r) {
      const float* zr = z + r * C;
      const float* er = codebook + static_cast<int64_t>(codes[r]) * C;
      for (int64_t c = 0; c < C; c += Vec::W) {
        const int m = static_cast<int>(imin(Vec::W, C - c));
        const Vec d = Vec::load_tail(zr + c, m) - Vec::load_tail(er + c, m);
        acc = fmadd(d, d, acc);
      }
    }
    return static_cast<double>(hsum(acc));
  });
  const double mean = total / static_cast<double>(n * C);
  *loss_codebook = static_cast<float>(mean);
  *loss_commit = static_cast<float>(0.25 * mean);
}

void vq_loss_backward(float* dz, float* dcodebook, const float* dz_q, const float* z,
                      const float* codebook, const int32_t* codes, float scale_codebook,
                      float scale_commit, int64_t n, int64_t K, int64_t C) {
  const double nc = static_cast<double>(n * C);
  if (dz) {
    const Vec coef = Vec::set1(static_cast<float>(static_cast<double>(scale_commit) * 0.5 / nc));
    parallel_for(n, imax(1, 16384 / imax(1, C)), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* er = codebook + static_cast<int64_t>(codes[r]) * C;
        for (int64_t c = 0; c < C; c += Vec::W) {
          const int m = static_cast<int>(imin(Vec::W, C - c));
          const int64_t o = r * C + c;
          const Vec g0 = dz_q ? Vec::load_tail(dz_q + o, m) : Vec::zero();
          const Vec g = fmadd(coef, Vec::load_tail(z + o, m) - Vec::load_tail(er + c, m), g0);
          (Vec::load_tail(dz + o, m) + g).store_tail(dz + o, m);
        }
      }
    });
  }
  if (dcodebook) {
    // Each task owns whole codebook rows and adds their rows' terms in row
    // order, so the sum is the same for any split (no atomics).
    const Vec coef = Vec::set1(static_cast<float>(static_cast<double>(scale_codebook) * 2.0 / nc));
    parallel_for(K, 64, [&](int64_t k0, int64_t k1) {
      for (int64_t r = 0; r < n; ++r) {
        const int64_t k = codes[r];
        if (k < k0 || k >= k1) continue;
        const float* zr = z + r * C;
        float* gr = dcodebook + k * C;
        const float* er = codebook + k * C;
        for (int64_t c = 0; c < C; c += Vec::W) {
          const int m = static_cast<int>(imin(Vec::W, C - c));
          const Vec d = Vec::load_tail(er + c, m) - Vec::load_tail(zr + c, m);
          fmadd(coef, d, Vec::load_tail(gr + c, m)).store_tail(gr + c, m);
        }
      }
    });
  }
}

}  // namespace reca::cpu::RECA_ISA_NS

#if RECA_ISA_LEVEL == 0
namespace reca::cpu::ref {
namespace {
// A rounded double the compiler cannot fuse into the next add.
inline void materialize(double& v) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __asm__("" : "+x"(v));
#else
  volatile double t = v;
  v = t;
#endif
}
}  // namespace

template <class T>
void vq_nearest(int32_t* codes, const T* z, const T* codebook, int64_t n, int64_t K, int64_t C) {
  for (int64_t r = 0; r < n; ++r) {
    double best = INFINITY;
    int64_t bk = 0;
    for (int64_t k = 0; k < K; ++k) {
      // Canonical distance (vq.h): double, in order, no fused multiply-add.
      double acc = 0.0;
      for (int64_t c = 0; c < C; ++c) {
        const double d = static_cast<double>(z[r * C + c]) - static_cast<double>(codebook[k * C + c]);
        double sq = d * d;
        materialize(sq);
        acc += sq;
      }
      if (acc < best) best = acc, bk = k;
    }
    codes[r] = static_cast<int32_t>(bk);
  }
}

template <class T>
void vq_gather(T* out, const int32_t* codes, const T* codebook, int64_t n, int64_t C) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < C; ++c) out[r * C + c] = codebook[static_cast<int64_t>(codes[r]) * C + c];
}

template <class T>
void vq_loss_forward(T* loss_codebook, T* loss_commit, const T* z, const T* codebook,
                     const int32_t* codes, int64_t n, int64_t C) {
  double s = 0.0;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const double d = static_cast<double>(z[r * C + c]) -
                       static_cast<double>(codebook[static_cast<int64_t>(codes[r]) * C + c]);
      s += d * d;
    }
  const double mean = s / static_cast<double>(n * C);
  *loss_codebook = static_cast<T>(mean);
  *loss_commit = static_cast<T>(0.25 * mean);
}

template <class T>
void vq_loss_backward(T* dz, T* dcodebook, const T* dz_q, const T* z, const T* codebook,
                      const int32_t* codes, T scale_codebook, T scale_commit, int64_t n, int64_t K,
                      int64_t C) {
  (void)K;
  const double nc = static_cast<double>(n * C);
  const T cz = static_cast<T>(static_cast<double>(scale_commit) * 0.5 / nc);
  const T cb = static_cast<T>(static_cast<double>(scale_codebook) * 2.0 / nc);
  for (int64_t r = 0; r < n; ++r) {
    const int64_t k = codes[r];
    for (int64_t c = 0; c < C; ++c) {
      const T diff = z[r * C + c] - codebook[k * C + c];
      if (dz) dz[r * C + c] += cz * diff + (dz_q ? dz_q[r * C + c] : T(0));
      if (dcodebook) dcodebook[k * C + c] += cb * (-diff);
    }
  }
}

}  // namespace reca::cpu::ref

RECA_INSTANTIATE_REF(RECA_VQ_FNS)

namespace reca::cpu {
void vq_nearest(int32_t* codes, const float* z, const float* codebook, int64_t n, int64_t K,
                int64_t C) {
  RECA_DISPATCH(vq_nearest, codes, z, codebook, n, K, C);
}
void vq_gather(float* out, const int32_t* codes, const float* codebook, int64_t n, int64_t C) {
  RECA_DISPATCH(vq_gather, out, codes, codebook, n, C);
}
void vq_loss_forward(float* loss_codebook, float* loss_commit, const float* z, const float* codebook,
                     const int32_t* codes, int64_t n, int64_t C) {
  RECA_DISPATCH(vq_loss_forward, loss_codebook, loss_commit, z, codebook, codes, n, C);
}
void vq_loss_backward(float* dz, float* dcodebook, const float* dz_q, const float* z,
                      const float* codebook, const int32_t* codes, float scale_codebook,
                      float scale_commit, int64_t n, int64_t K, int64_t C) {
  RECA_DISPATCH(vq_loss_backward, dz, dcodebook, dz_q, z, codebook, codes, scale_codebook,
                scale_commit, n, K, C);
}
void vq_count_codes(int64_t* counts, const int32_t* codes, int64_t n) {
  for (int64_t i = 0; i < n; ++i) ++counts[codes[i]];
}
}  // namespace reca::cpu
#endif
