// SGEMM: the fp32 kernel of the blocked driver in cpu/gemm_driver.h (packing,
// microkernel, blocking), plus plain loops for products too small to pack.
// Packing absorbs the transposes and zero-pads the edges, so the microkernel
// never branches; only the final store is masked. Bias and accumulate are fused
// into that store; the MLP's GELU (forward, or its derivative in the backward)
// runs on each finished block of C while it is still in L2.
#include "cpu/matmul.h"

#include <stdlib.h>

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/threadpool.h"
#include "cpu/gelu_vec.h"
#include "cpu/gemm_driver.h"

namespace reca::cpu::RECA_ISA_NS {
namespace {

// Microkernel shape: MR rows x NV vectors. Accumulators + NV B vectors + one
// broadcast must fit the register file (32 zmm / 16 ymm).
#if RECA_ISA_LEVEL == 2
constexpr int kMR = 14, kNV = 2;
#elif RECA_ISA_LEVEL == 1
constexpr int kMR = 6, kNV = 2;
#else
constexpr int kMR = 4, kNV = 4;
#endif
constexpr int kW = Vec::W;
constexpr int kNR = kNV * kW;
// Cache blocking: a KC x NR B micro-panel stays in L1 while the MC x KC A block
// streams from L2; the KC x NC B panel is reused across every A block.
// AVX-512, measured on Zen 5 (48 KB L1D, 1 MB L2) and Zen 4 (32 KB L1D): KC 256
// (a 32 KB B micro-panel), MC 336 (a 344 KB A block); a larger MC beat 168 by
// about 5%. AVX2 runs on CPUs with 32 to 48 KB of L1D: its KC is read from the
// cache size at run time, the B micro-panel taking 3/4 of L1D (384 on 32 KB, so
// K = 1024 or 1056 is 3 blocks, not 4 or 5: on Zen 4 the K = 1024/1056 shapes went
// from 0.84-1.03 to 0.91-1.05 of OpenBLAS at 1 thread, 0.75-1.25 to 1.00-1.41 at 2,
// same-minutes A/B; half of L1D, the textbook share, was the slower one).
#if RECA_ISA_LEVEL == 1
int64_t kc_target() {
  static const int64_t kc = imax(128, imin(512, cache_sizes().l1d * 3 / 4 / (kNR * 4) / 8 * 8));
  return kc;
}
#else
int64_t kc_target() { return 256; }
#endif
constexpr int64_t kMC = kMR * 24;
constexpr int64_t kNC = kNR * 32;
// Below this many multiply-adds the packing does not pay: plain loops.
constexpr int64_t kDirectFlops = 32768;

// Transposing copy of one block: rows i < rows of src (stride ld), kn <= W
// floats each, become dst[k * stride + i] for k < kn; lanes i in [rows, lanes)
// are written as zero.
inline void transpose_block(float* dst, int64_t stride, int lanes, const float* src, int64_t ld,
                            int rows, int kn) {
  Vec r[kW];
#pragma GCC unroll 16
  for (int i = 0; i < kW; ++i) r[i] = i < rows ? Vec::load_tail(src + i * ld, kn) : Vec::zero();
  transpose(r);
  for (int k = 0; k < kn; ++k) r[k].store_tail(dst + k * stride, lanes);
}

// Pack op(A) rows [i0, i0+mc), k [p0, p0+kc) as ceil(mc/MR) panels, each [kc][MR],
// rows past mc zero. A is [M,K] (lda = K) or, transposed, [K,M] (lda = M).
void pack_a(float* dst, const float* A, int64_t lda, bool trans, int64_t i0, int64_t mc,
            int64_t p0, int64_t kc) {
  for (int64_t ip = 0; ip < mc; ip += kMR, dst += kc * kMR) {
    const int mr = static_cast<int>(imin(kMR, mc - ip));
    if (trans) {
      const float* s = A + p0 * lda + i0 + ip;
      for (int64_t k = 0; k < kc; ++k, s += lda) {
        float* d = dst + k * kMR;
        if (kMR <= kW) {
          Vec::load_tail(s, mr).store_tail(d, kMR);  // load_tail zero-fills rows past mr
        } else {
          int r = 0;
          for (; r < mr; ++r) d[r] = s[r];
          for (; r < kMR; ++r) d[r] = 0.0f;
        }
      }
    } else {
      // MR <= W: one transposed block per W values of k.
      static_assert(kMR <= kW || kW == 1, "A panel taller than a vector");
      const float* s = A + (i0 + ip) * lda + p0;
      if (kW == 1) {
        for (int r = 0; r < kMR; ++r)
          for (int64_t k = 0; k < kc; ++k) dst[k * kMR + r] = r < mr ? s[r * lda + k] : 0.0f;
      } else {
        for (int64_t k = 0; k < kc; k += kW)
          transpose_block(dst + k * kMR, kMR, kMR, s + k, lda, mr, static_cast<int>(imin(kW, kc - k)));
      }
    }
  }
}

// Pack op(B) k [p0, p0+kc), columns [j0, j0+nc) as ceil(nc/NR) panels, each
// [kc][NR], columns past nc zero. B is [K,N] (ldb = N) or, transposed, [N,K] (ldb = K).
void pack_b(float* dst, const float* B, int64_t ldb, bool trans, int64_t p0, int64_t kc,
            int64_t j0, int64_t nc) {
  for (int64_t jp = 0; jp < nc; jp += kNR, dst += kc * kNR) {
    const int nr = static_cast<int>(imin(kNR, nc - jp));
    if (!trans) {
      const float* s = B + p0 * ldb + j0 + jp;
      for (int64_t k = 0; k < kc; ++k, s += ldb) {
        float* d = dst + k * kNR;
#pragma GCC unroll 8
        for (int v = 0; v < kNV; ++v) {
          const int n = static_cast<int>(imax(0, imin(kW, nr - v * kW)));
          Vec::load_tail(s + v * kW, n).store(d + v * kW);  // load_tail zero-fills
        }
      }
    } else {
      // Each group of W columns is W rows of B: transpose W x W blocks.
      for (int v = 0; v < kNV; ++v) {
        const int rows = static_cast<int>(imax(0, imin(kW, nr - v * kW)));
        const float* s = B + (j0 + jp + v * kW) * ldb + p0;
        for (int64_t k = 0; k < kc; k += kW)
          transpose_block(dst + k * kNR + v * kW, kNR, kW, s + k, ldb, rows,
                          static_cast<int>(imin(kW, kc - k)));
      }
    }
  }
}

// C[mr, nr] tile (row stride ldc) = (add ? C : 0) + Ap[kc][MR] · Bp[kc][NR] (+ bias[nr]).
// Ap, Bp are packed panels; mr <= MR, nr <= NR.
void microkernel(int64_t kc, const float* __restrict Ap, const float* __restrict Bp,
                 float* C, int64_t ldc, int mr, int nr, bool add, const float* bias) {
  Vec acc[kMR][kNV];
#pragma GCC unroll 16
  for (int r = 0; r < kMR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < kNV; ++v) acc[r][v] = Vec::zero();
  for (int r = 0; r < mr; ++r) __builtin_prefetch(C + r * ldc, 1, 3);
  for (int64_t k = 0; k < kc; ++k) {
    Vec b[kNV];
#pragma GCC unroll 8
    for (int v = 0; v < kNV; ++v) b[v] = Vec::load(Bp + v * kW);
#pragma GCC unroll 16
    for (int r = 0; r < kMR; ++r) {
      const Vec a = Vec::set1(Ap[r]);
#pragma GCC unroll 8
      for (int v = 0; v < kNV; ++v) acc[r][v] = fmadd(a, b[v], acc[r][v]);
    }
    Ap += kMR;
    Bp += kNR;
  }
  if (mr == kMR && nr == kNR) {
    Vec bv[kNV];
#pragma GCC unroll 8
    for (int v = 0; v < kNV; ++v) bv[v] = bias ? Vec::load(bias + v * kW) : Vec::zero();
#pragma GCC unroll 16
    for (int r = 0; r < kMR; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < kNV; ++v) {
        float* c = C + r * ldc + v * kW;
        Vec out = acc[r][v];
        if (add) out = Vec::load(c) + out;
        if (bias) out = out + bv[v];
        out.store(c);
      }
    return;
  }
#pragma GCC unroll 16
  for (int r = 0; r < kMR; ++r) {
    if (r >= mr) break;
#pragma GCC unroll 8
    for (int v = 0; v < kNV; ++v) {
      const int n = static_cast<int>(imax(0, imin(kW, nr - v * kW)));
      if (n == 0) break;
      float* c = C + r * ldc + v * kW;
      Vec out = acc[r][v];
      if (add) out = Vec::load_tail(c, n) + out;
      if (bias) out = out + Vec::load_tail(bias + v * kW, n);
      out.store_tail(c, n);
    }
  }
}

// Depth of each K block: blocks of equal depth (1056 = 5 x ~212, not 4 x 256 + 32),
// since a thin last block would pay the C tile load/store for little work.
int64_t k_block_depth(int64_t K) {
  const int64_t k_blocks = (K + kc_target() - 1) / kc_target();
  return (K + k_blocks - 1) / k_blocks;
}

// The fp32 kernel for cpu/gemm_driver.h.
struct Fp32Kernel {
  using Packed = float;
  static constexpr int MR = kMR, NR = kNR;
  static constexpr int64_t MC = kMC, NC = kNC;
  static int64_t k_block_depth(int64_t K) { return reca::cpu::RECA_ISA_NS::k_block_depth(K); }
  static int64_t packed_depth(int64_t kc) { return kc; }
  static void pack_a(float* dst, const float* A, int64_t lda, bool trans, int64_t i0, int64_t mc,
                     int64_t p0, int64_t kc) {
    reca::cpu::RECA_ISA_NS::pack_a(dst, A, lda, trans, i0, mc, p0, kc);
  }
  static void pack_b(float* dst, const float* B, int64_t ldb, bool trans, int64_t p0, int64_t kc,
                     int64_t j0, int64_t nc) {
    reca::cpu::RECA_ISA_NS::pack_b(dst, B, ldb, trans, p0, kc, j0, nc);
  }
  static void microkernel(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, int mr,
                          int nr, bool add, const float* bias) {
    reca::cpu::RECA_ISA_NS::microkernel(kc, Ap, Bp, C, ldc, mr, nr, add, bias);
  }
};
using Fp32Problem = Problem<Fp32Kernel>;

// Small problems: C[i][j] summed over k in order, no packing. Several columns at
// once (a vector of them where op(B)'s rows are contiguous, else four scalar
// sums): independent sums side by side, each the same multiply-then-add
// roundings in the same order as one at a time, so the bits do not change.
void gemm_direct(const Fp32Problem& p) {
  const int64_t M = p.M, N = p.N, K = p.K;
  auto a_at = [&](int64_t i, int64_t k) { return p.trans_a ? p.A[k * M + i] : p.A[i * K + k]; };
  auto b_at = [&](int64_t k, int64_t j) { return p.trans_b ? p.B[j * K + k] : p.B[k * N + j]; };
  auto finish = [&](int64_t i, int64_t j, float s) {
    float& c = p.C[i * N + j];
    c = (p.accumulate ? c + s : s) + (p.bias ? p.bias[j] : 0.0f);
  };
  for (int64_t i = 0; i < M; ++i) {
    int64_t j = 0;
    if (!p.trans_b && kW > 1)
      for (; j + kW <= N; j += kW) {
        Vec s = Vec::zero();
        for (int64_t k = 0; k < K; ++k) s = s + Vec::set1(a_at(i, k)) * Vec::load(p.B + k * N + j);
        float* c = p.C + i * N + j;
        const Vec sum = p.accumulate ? Vec::load(c) + s : s;
        (sum + (p.bias ? Vec::load(p.bias + j) : Vec::zero())).store(c);
      }
    for (; j + 4 <= N; j += 4) {
      float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
      for (int64_t k = 0; k < K; ++k) {
        const float a = a_at(i, k);
        s0 += a * b_at(k, j);
        s1 += a * b_at(k, j + 1);
        s2 += a * b_at(k, j + 2);
        s3 += a * b_at(k, j + 3);
      }
      finish(i, j, s0), finish(i, j + 1, s1), finish(i, j + 2, s2), finish(i, j + 3, s3);
    }
    for (; j < N; ++j) {
      float s = 0.0f;
      for (int64_t k = 0; k < K; ++k) s += a_at(i, k) * b_at(k, j);
      finish(i, j, s);
    }
  }
  if (p.epi.kind != Epi::None) epilogue_block(p, 0, p.M, 0, p.N);
}

void run(const Fp32Problem& p) {
  if (p.M <= 0 || p.N <= 0) return;
  if (p.K <= 0 || p.M * p.N * p.K < kDirectFlops) return gemm_direct(p);
  gemm_blocked(p);
}

}  // namespace

// C[M,N] = (accumulate ? C : 0) + op(A)[M,K] · op(B)[K,N] + bias[N]
void matmul(float* C, const float* A, const float* B, const float* bias, int64_t M, int64_t N,
            int64_t K, bool trans_a, bool trans_b, bool accumulate) {
  run({C, A, B, bias, M, N, K, trans_a, trans_b, accumulate, {}});
}

// y[M,out] = x[M,in] · W[out,in]ᵀ + b[out]
void linear_forward(float* y, const float* x, const float* W, const float* b, int64_t M,
                    int64_t in, int64_t out) {
  matmul(y, x, W, b, M, out, in, false, true, false);
}

namespace {
// db[out] += Σ_rows dy[M,out]. Each task owns whole columns, so the row sum has
// one fixed order.
void bias_grad(float* db, const float* dy, int64_t M, int64_t out) {
  constexpr int64_t kColBlock = 64;
  const int64_t blocks = (out + kColBlock - 1) / kColBlock;
  parallel_for(blocks, imax(1, 65536 / imax(1, M * kColBlock)), [&](int64_t b0, int64_t b1) {
    for (int64_t c0 = b0 * kColBlock; c0 < imin(b1 * kColBlock, out); c0 += kW) {
      const int n = static_cast<int>(imin(kW, out - c0));
      Vec acc = Vec::zero();
      for (int64_t r = 0; r < M; ++r) acc = acc + Vec::load_tail(dy + r * out + c0, n);
      (Vec::load_tail(db + c0, n) + acc).store_tail(db + c0, n);
    }
  });
}
}  // namespace

// dx[M,in] += dy[M,out]·W[out,in] ; dW[out,in] += dyᵀ·x[M,in] ; db[out] += Σ_rows dy
void linear_backward(float* dx, float* dW, float* db, const float* dy, const float* x,
                     const float* W, int64_t M, int64_t in, int64_t out) {
  if (dx) matmul(dx, dy, W, nullptr, M, in, out, false, false, true);
  if (dW) matmul(dW, dy, x, nullptr, out, in, M, true, false, true);
  if (db) bias_grad(db, dy, M, out);
}

// f[M,out] = x·Wᵀ + b ; g = gelu(f)
void linear_gelu_forward(float* f, float* g, const float* x, const float* W, const float* b,
                         int64_t M, int64_t in, int64_t out) {
  run({f, x, W, b, M, out, in, false, true, false, {Epi::Gelu, g, nullptr}});
}

// Prepacked weights: the panels of op(B) = Wᵀ that every linear_forward packs
// again, packed once. Same panels, same blocking, same microkernel: the same bits.
int64_t packed_weight_floats(int64_t in, int64_t out) { return in * padded_cols<Fp32Kernel>(out); }

void pack_weight(float* dst, const float* W, int64_t in, int64_t out) {
  pack_whole_b<Fp32Kernel>(dst, W, in, true, in, out);
}

void linear_forward_packed(float* y, const float* x, const float* W, const float* W_packed,
                           const float* b, int64_t M, int64_t in, int64_t out) {
  Fp32Problem p{y, x, W, b, M, out, in, false, true, false, {}};
  p.B_packed = W_packed;
  run(p);
}

void linear_gelu_forward_packed(float* f, float* g, const float* x, const float* W,
                                const float* W_packed, const float* b, int64_t M, int64_t in,
                                int64_t out) {
  Fp32Problem p{f, x, W, b, M, out, in, false, true, false, {Epi::Gelu, g, nullptr}};
  p.B_packed = W_packed;
  run(p);
}

// dxf[M,in] = gelu'(f) ⊙ (dy·W) ; dW += dyᵀ·x ; db += Σ_rows dy
void linear_backward_gelu(float* dxf, float* dW, float* db, const float* dy, const float* x,
                          const float* W, const float* f, int64_t M, int64_t in, int64_t out) {
  run({dxf, dy, W, nullptr, M, in, out, false, false, false, {Epi::GeluGrad, nullptr, f}});
  if (dW) matmul(dW, dy, x, nullptr, out, in, M, true, false, true);
  if (db) bias_grad(db, dy, M, out);
}

}  // namespace reca::cpu::RECA_ISA_NS

#if RECA_ISA_LEVEL == 0
#include <vector>

#include "cpu/gelu.h"

namespace reca::cpu::ref {

template <class T>
void matmul(T* C, const T* A, const T* B, const T* bias, int64_t M, int64_t N, int64_t K,
            bool trans_a, bool trans_b, bool accumulate) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      T s = T(0);
      for (int64_t k = 0; k < K; ++k)
        s += (trans_a ? A[k * M + i] : A[i * K + k]) * (trans_b ? B[j * K + k] : B[k * N + j]);
      T& c = C[i * N + j];
      c = (accumulate ? c : T(0)) + s + (bias ? bias[j] : T(0));
    }
}

template <class T>
void linear_forward(T* y, const T* x, const T* W, const T* b, int64_t M, int64_t in, int64_t out) {
  matmul(y, x, W, b, M, out, in, false, true, false);
}

template <class T>
void linear_backward(T* dx, T* dW, T* db, const T* dy, const T* x, const T* W, int64_t M,
                     int64_t in, int64_t out) {
  if (dx) matmul(dx, dy, W, static_cast<const T*>(nullptr), M, in, out, false, false, true);
  if (dW) matmul(dW, dy, x, static_cast<const T*>(nullptr), out, in, M, true, false, true);
  if (db)
    for (int64_t r = 0; r < M; ++r)
      for (int64_t c = 0; c < out; ++c) db[c] += dy[r * out + c];
}

template <class T>
void linear_gelu_forward(T* f, T* g, const T* x, const T* W, const T* b, int64_t M, int64_t in, int64_t out) {
  linear_forward(f, x, W, b, M, in, out);
  gelu_forward(g, f, static_cast<const T*>(nullptr), M, out);
}

template <class T>
void linear_backward_gelu(T* dxf, T* dW, T* db, const T* dy, const T* x, const T* W, const T* f, int64_t M,
                          int64_t in, int64_t out) {
  std::vector<T> dg(static_cast<size_t>(M * in), T(0));
  linear_backward(dg.data(), dW, db, dy, x, W, M, in, out);
  for (int64_t i = 0; i < M * in; ++i) dxf[i] = T(0);
  gelu_backward(dxf, static_cast<T*>(nullptr), f, static_cast<const T*>(nullptr), dg.data(), M, in);
}

}  // namespace reca::cpu::ref

RECA_INSTANTIATE_REF(RECA_MATMUL_FNS)

namespace reca::cpu {
void matmul(float* C, const float* A, const float* B, const float* bias, int64_t M, int64_t N,
            int64_t K, bool trans_a, bool trans_b, bool accumulate) {
  RECA_DISPATCH(matmul, C, A, B, bias, M, N, K, trans_a, trans_b, accumulate);
}
void linear_forward(float* y, const float* x, const float* W, const float* b, int64_t M,
                    int64_t in, int64_t out) {
  RECA_DISPATCH(linear_forward, y, x, W, b, M, in, out);
}
void linear_backward(float* dx, float* dW, float* db, const float* dy, const float* x,
                     const float* W, int64_t M, int64_t in, int64_t out) {
  RECA_DISPATCH(linear_backward, dx, dW, db, dy, x, W, M, in, out);
}
void linear_gelu_forward(float* f, float* g, const float* x, const float* W, const float* b,
                         int64_t M, int64_t in, int64_t out) {
  RECA_DISPATCH(linear_gelu_forward, f, g, x, W, b, M, in, out);
}
void linear_backward_gelu(float* dxf, float* dW, float* db, const float* dy, const float* x,
                          const float* W, const float* f, int64_t M, int64_t in, int64_t out) {
  RECA_DISPATCH(linear_backward_gelu, dxf, dW, db, dy, x, W, f, M, in, out);
}

namespace {
// The packing routines of one ISA level.
struct PackingLevel {
  int64_t (*floats)(int64_t, int64_t);
  void (*pack)(float*, const float*, int64_t, int64_t);
};
PackingLevel packing_level(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return {isa_avx512::packed_weight_floats, isa_avx512::pack_weight};
    case Isa::Avx2: return {isa_avx2::packed_weight_floats, isa_avx2::pack_weight};
    default: return {isa_scalar::packed_weight_floats, isa_scalar::pack_weight};
  }
}
}  // namespace

PackedWeight::PackedWeight(const float* W, int64_t in, int64_t out)
    : W_(W), in_(in), out_(out), isa_(active_isa()) {
  const PackingLevel level = packing_level(isa_);
  const int64_t n = level.floats(in, out);
  if (n > 0) {
    const int64_t bytes = (n * 4 + 63) / 64 * 64;
    panels_ = static_cast<float*>(aligned_alloc(64, static_cast<size_t>(bytes)));
    RECA_CHECK(panels_ != nullptr, OutOfMemory, "could not allocate %lld bytes of packed weights",
               static_cast<long long>(bytes));
    level.pack(panels_, W, in, out);
  }
}

PackedWeight::~PackedWeight() { free(panels_); }

// At another ISA level than the panels were packed for (their layout differs),
// the plain path, which packs W as usual: the same bits either way.
void linear_forward(float* y, const float* x, const PackedWeight& W, const float* b, int64_t M) {
  if (active_isa() != W.isa() || !W.panels())
    return linear_forward(y, x, W.weight(), b, M, W.in(), W.out());
  RECA_DISPATCH(linear_forward_packed, y, x, W.weight(), W.panels(), b, M, W.in(), W.out());
}

void linear_gelu_forward(float* f, float* g, const float* x, const PackedWeight& W,
                         const float* b, int64_t M) {
  if (active_isa() != W.isa() || !W.panels())
    return linear_gelu_forward(f, g, x, W.weight(), b, M, W.in(), W.out());
  RECA_DISPATCH(linear_gelu_forward_packed, f, g, x, W.weight(), W.panels(), b, M, W.in(), W.out());
}
}  // namespace reca::cpu
#endif
