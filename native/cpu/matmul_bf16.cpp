// bf16 GEMM in the blocking of cpu/matmul.cpp (jc over N, pc over K, ic over M,
// MR x NR register tiles; threads own disjoint rectangles of C and run the full K
// loop, so every element is one task's fixed-order sum whatever the thread count).
// What differs is the packed format: vdpbf16ps multiplies bf16 *pairs* and adds
// both products into one fp32 lane, so the packs hold k in pairs:
//   A panel [kc/2][MR] dwords, each (a[r][k], a[r][k+1])  -> one broadcast per row
//   B panel [kc/2][NR] dwords, each (b[k][j], b[k+1][j])  -> NR/16 vectors per pair
// and the packing rounds to bf16 (vcvtne2ps2bf16, round to nearest even) on the
// way. An odd K is padded with a zero pair half. The same 14 x 32 tile as the fp32
// AVX-512 kernel (28 accumulators, 2 B vectors, 1 broadcast of 32 zmm) does two
// k steps per vdpbf16ps: twice the multiply-adds per instruction.
#include "cpu/matmul_bf16.h"

#if RECA_ISA_LEVEL == 2
#include <stdlib.h>

#include "core/threadpool.h"
#include "cpu/gelu_vec.h"
#include "cpu/matmul.h"
#include "cpu/simd.h"

// Everything below may use AVX512_BF16; it only runs once bf16_matmul_available()
// said the CPU has it.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512bf16"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512bf16")
#endif

namespace reca::cpu::isa_avx512 {
namespace {

constexpr int kW = 16;                // fp32 lanes (= bf16 pairs) per zmm
constexpr int kMR = 14, kNV = 2;      // tile: 14 rows x 2 vectors
constexpr int kNR = kNV * kW;
// A KC x NR B micro-panel of bf16 is half the bytes of fp32's: KC 512 keeps the
// fp32 kernel's 32 KB L1 share.
constexpr int64_t kKC = 512;
constexpr int64_t kMC = kMR * 24;
constexpr int64_t kNC = kNR * 32;

struct Scratch {
  uint32_t* p = nullptr;
  int64_t cap = 0;
  ~Scratch() { free(p); }
  uint32_t* get(int64_t n) {
    if (n > cap) {
      free(p);
      const int64_t bytes = (n * 4 + 63) / 64 * 64;
      p = static_cast<uint32_t*>(aligned_alloc(64, static_cast<size_t>(bytes)));
      cap = p ? n : 0;
    }
    return p;
  }
};
thread_local Scratch t_pack_a, t_pack_b;

inline __m512 load_tail(const float* p, int n) {
  return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1u), p);
}
inline void store_tail(uint32_t* p, __m512i v, int n) {
  _mm512_mask_storeu_epi32(p, static_cast<__mmask16>((1u << n) - 1u), v);
}
// 32 floats (lo then hi) rounded to bf16, in order: dword j = (lo-or-hi element
// 2j, 2j + 1) once read as pairs.
inline __m512i to_bf16(__m512 lo, __m512 hi) { return (__m512i)_mm512_cvtne2ps_pbh(hi, lo); }
// Dword j = (row0[j], row1[j]): two rows interleaved into pairs.
inline __m512i to_bf16_interleaved(__m512 row0, __m512 row1) {
  // Word 2j takes word j (row0), word 2j + 1 takes word 16 + j (row1).
  const __m512i j = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  const __m512i idx = _mm512_or_si512(j, _mm512_slli_epi32(_mm512_add_epi32(j, _mm512_set1_epi32(16)), 16));
  return _mm512_permutexvar_epi16(idx, to_bf16(row0, row1));
}

// In-register transpose of 16 x 16 dwords: r[i] lane j  ->  r[j] lane i.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
inline void transpose16(__m512i* r) {
  __m512i t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int h = 0; h < 16; h += 8)
    for (int i = 0; i < 4; ++i) {
      t[h + i] = _mm512_shuffle_i32x4(u[h + i], u[h + i + 4], 0x88);
      t[h + i + 4] = _mm512_shuffle_i32x4(u[h + i], u[h + i + 4], 0xDD);
    }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xDD);
  }
}
#pragma GCC diagnostic pop

// Packs k [p0, p0 + kc) of `lanes`-wide slices of a matrix whose k runs along
// memory rows: rows i < rows (stride ld, from src, already offset to k = p0)
// become dst[kp * stride + i] = (src[i][2kp], src[i][2kp + 1]) for kp < ceil(kc/2);
// lanes i in [rows, lanes) are zero. (A not transposed; B transposed.)
void pack_k_along_rows(uint32_t* dst, int64_t stride, int lanes, const float* src, int64_t ld,
                       int rows, int64_t kc) {
  for (int64_t k = 0; k < kc; k += 2 * kW, dst += kW * stride) {
    const int n = static_cast<int>(imin(2 * kW, kc - k));
    const int n_lo = n < kW ? n : kW, n_hi = n - n_lo;
    __m512i r[kW];
#pragma GCC unroll 16
    for (int i = 0; i < kW; ++i)
      r[i] = i < rows ? to_bf16(load_tail(src + i * ld + k, n_lo), load_tail(src + i * ld + k + kW, n_hi))
                      : _mm512_setzero_si512();
    transpose16(r);
    for (int kp = 0; kp < (n + 1) / 2; ++kp) store_tail(dst + kp * stride, r[kp], lanes);
  }
}

// Packs k [p0, p0 + kc) of a matrix whose k runs down memory columns (row k at
// src + k * ld, already offset to k = p0): dst[kp * stride + j] =
// (src[2kp][j], src[2kp + 1][j]) for j < cols (<= 16), zero for j in [cols, lanes).
// (A transposed; B not transposed.)
void pack_k_down_columns(uint32_t* dst, int64_t stride, int lanes, const float* src, int64_t ld,
                         int cols, int64_t kc) {
  for (int64_t k = 0; k < kc; k += 2, dst += stride) {
    const __m512 row0 = load_tail(src + k * ld, cols);
    const __m512 row1 = k + 1 < kc ? load_tail(src + (k + 1) * ld, cols) : _mm512_setzero_ps();
    store_tail(dst, to_bf16_interleaved(row0, row1), lanes);
  }
}

// op(A) rows [i0, i0 + mc), k [p0, p0 + kc) as ceil(mc/MR) panels of
// [ceil(kc/2)][MR] pairs. A is [M,K] (lda = K) or, transposed, [K,M] (lda = M).
void pack_a(uint32_t* dst, const float* A, int64_t lda, bool trans, int64_t i0, int64_t mc,
            int64_t p0, int64_t kc) {
  const int64_t kp = (kc + 1) / 2;
  for (int64_t ip = 0; ip < mc; ip += kMR, dst += kp * kMR) {
    const int mr = static_cast<int>(imin(kMR, mc - ip));
    if (trans) pack_k_down_columns(dst, kMR, kMR, A + p0 * lda + i0 + ip, lda, mr, kc);
    else pack_k_along_rows(dst, kMR, kMR, A + (i0 + ip) * lda + p0, lda, mr, kc);
  }
}

// op(B) k [p0, p0 + kc), columns [j0, j0 + nc) as ceil(nc/NR) panels of
// [ceil(kc/2)][NR] pairs. B is [K,N] (ldb = N) or, transposed, [N,K] (ldb = K).
void pack_b(uint32_t* dst, const float* B, int64_t ldb, bool trans, int64_t p0, int64_t kc,
            int64_t j0, int64_t nc) {
  const int64_t kp = (kc + 1) / 2;
  for (int64_t jp = 0; jp < nc; jp += kNR, dst += kp * kNR) {
    for (int v = 0; v < kNV; ++v) {
      const int cols = static_cast<int>(imax(0, imin(kW, nc - jp - v * kW)));
      const int64_t j = j0 + jp + v * kW;
      if (trans) pack_k_along_rows(dst + v * kW, kNR, kW, B + j * ldb + p0, ldb, cols, kc);
      else pack_k_down_columns(dst + v * kW, kNR, kW, B + p0 * ldb + j, ldb, cols, kc);
    }
  }
}

enum class Epi { None, Gelu, GeluGrad };
struct Epilogue {
  Epi kind = Epi::None;
  float* out = nullptr;
  const float* f = nullptr;
};

// C[mr, nr] tile (row stride ldc) = (add ? C : 0) + Ap[kp][MR] · Bp[kp][NR] (+ bias[nr]).
void microkernel(int64_t kp, const uint32_t* __restrict Ap, const uint32_t* __restrict Bp, float* C,
                 int64_t ldc, int mr, int nr, bool add, const float* bias) {
  __m512 acc[kMR][kNV];
#pragma GCC unroll 16
  for (int r = 0; r < kMR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < kNV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int r = 0; r < mr; ++r) __builtin_prefetch(C + r * ldc, 1, 3);
  for (int64_t k = 0; k < kp; ++k) {
    __m512bh b[kNV];
#pragma GCC unroll 8
    for (int v = 0; v < kNV; ++v) b[v] = (__m512bh)_mm512_load_si512(Bp + v * kW);
#pragma GCC unroll 16
    for (int r = 0; r < kMR; ++r) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32(static_cast<int>(Ap[r]));
#pragma GCC unroll 8
      for (int v = 0; v < kNV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], a, b[v]);
    }
    Ap += kMR;
    Bp += kNR;
  }
#pragma GCC unroll 16
  for (int r = 0; r < kMR; ++r) {
    if (r >= mr) break;
#pragma GCC unroll 8
    for (int v = 0; v < kNV; ++v) {
      const int n = static_cast<int>(imax(0, imin(kW, nr - v * kW)));
      if (n == 0) break;
      float* c = C + r * ldc + v * kW;
      Vec out{acc[r][v]};
      if (n == kW) {
        if (add) out = Vec::load(c) + out;
        if (bias) out = out + Vec::load(bias + v * kW);
        out.store(c);
      } else {
        if (add) out = Vec::load_tail(c, n) + out;
        if (bias) out = out + Vec::load_tail(bias + v * kW, n);
        out.store_tail(c, n);
      }
    }
  }
}

struct Problem {
  float* C;
  const float* A;
  const float* B;
  const float* bias;
  int64_t M, N, K;
  bool trans_a, trans_b, accumulate;
  Epilogue epi;  // whole-matrix pointers (row stride N)
};

// The GELU epilogue over a finished block of C (as in cpu/matmul.cpp).
void epilogue_block(const Problem& p, int64_t i0, int64_t mc, int64_t j0, int64_t nc) {
  for (int64_t i = i0; i < i0 + mc; ++i)
    for (int64_t j = j0; j < j0 + nc; j += kW) {
      const int n = static_cast<int>(imin(kW, j0 + nc - j));
      const int64_t at = i * p.N + j;
      const Vec sum = Vec::load_tail(p.C + at, n);
      if (p.epi.kind == Epi::Gelu) gelu_vec(sum).store_tail(p.epi.out + at, n);
      if (p.epi.kind == Epi::GeluGrad)
        (sum * gelu_grad_vec(Vec::load_tail(p.epi.f + at, n))).store_tail(p.C + at, n);
    }
}

// The blocked product over rows [m0, m1) x columns [n0, n1) of C.
void gemm_region(const Problem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  if (m0 >= m1 || n0 >= n1) return;
  const int64_t lda = p.trans_a ? p.M : p.K, ldb = p.trans_b ? p.K : p.N, ldc = p.N;
  // Equal K blocks of an even depth (pairs never straddle two blocks).
  const int64_t k_blocks = (p.K + kKC - 1) / kKC;
  const int64_t kc_max = ((p.K + k_blocks - 1) / k_blocks + 1) / 2 * 2;
  const int64_t nc_max = (imin(kNC, n1 - n0) + kNR - 1) / kNR * kNR;
  const int64_t mc_max = (imin(kMC, m1 - m0) + kMR - 1) / kMR * kMR;
  uint32_t* Bp = t_pack_b.get(kc_max / 2 * nc_max);
  uint32_t* Ap = t_pack_a.get(kc_max / 2 * mc_max);
  for (int64_t jc = n0; jc < n1; jc += kNC) {
    const int64_t nc = imin(kNC, n1 - jc);
    for (int64_t pc = 0; pc < p.K; pc += kc_max) {
      const int64_t kc = imin(kc_max, p.K - pc), kp = (kc + 1) / 2;
      const bool add = p.accumulate || pc > 0;
      const bool last = pc + kc == p.K;
      pack_b(Bp, p.B, ldb, p.trans_b, pc, kc, jc, nc);
      for (int64_t ic = m0; ic < m1; ic += kMC) {
        const int64_t mc = imin(kMC, m1 - ic);
        pack_a(Ap, p.A, lda, p.trans_a, ic, mc, pc, kc);
        for (int64_t jr = 0; jr < nc; jr += kNR) {
          const int nr = static_cast<int>(imin(kNR, nc - jr));
          const float* bias = last && p.bias ? p.bias + jc + jr : nullptr;
          for (int64_t ir = 0; ir < mc; ir += kMR) {
            const int mr = static_cast<int>(imin(kMR, mc - ir));
            microkernel(kp, Ap + ir * kp, Bp + jr * kp, p.C + (ic + ir) * ldc + jc + jr, ldc, mr, nr,
                        add, bias);
          }
        }
        if (last && p.epi.kind != Epi::None) epilogue_block(p, ic, mc, jc, nc);
      }
    }
  }
}

// C = (accumulate ? C : 0) + bias, then the epilogue: the K = 0 case.
void gemm_empty_k(const Problem& p) {
  for (int64_t i = 0; i < p.M; ++i)
    for (int64_t j = 0; j < p.N; ++j) {
      float& c = p.C[i * p.N + j];
      c = (p.accumulate ? c : 0.0f) + (p.bias ? p.bias[j] : 0.0f);
    }
  if (p.epi.kind != Epi::None) epilogue_block(p, 0, p.M, 0, p.N);
}

void run(const Problem& p) {
  const int64_t M = p.M, N = p.N, K = p.K;
  if (M <= 0 || N <= 0) return;
  if (K <= 0) return gemm_empty_k(p);
  // The thread grid of cpu/matmul.cpp: the tm x tn split with the least packing.
  const int threads = num_threads();
  const int64_t col_tiles = (N + kNR - 1) / kNR, row_tiles = (M + kMR - 1) / kMR;
  int64_t tn = 1, tm = 1, best = -1;
  for (int64_t n_split = threads; n_split >= 1; --n_split) {
    if (threads % n_split) continue;
    const int64_t m_split = threads / n_split;
    if ((n_split > 1 && col_tiles / n_split < 2) || (m_split > 1 && row_tiles / m_split < 2)) continue;
    const int64_t packed = n_split * M * K + m_split * K * N;
    if (best < 0 || packed < best) {
      best = packed;
      tn = n_split;
      tm = m_split;
    }
  }
  if (M * N * K < (int64_t(1) << 21)) tn = tm = 1;
  parallel_for(tn * tm, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t ti = t / tn, tj = t % tn;
      const int64_t m0 = row_tiles * ti / tm * kMR, m1 = imin(M, row_tiles * (ti + 1) / tm * kMR);
      const int64_t n0 = col_tiles * tj / tn * kNR, n1 = imin(N, col_tiles * (tj + 1) / tn * kNR);
      gemm_region(p, m0, m1, n0, n1);
    }
  });
}

}  // namespace

void matmul_bf16(float* C, const float* A, const float* B, const float* bias, int64_t M, int64_t N,
                 int64_t K, bool trans_a, bool trans_b, bool accumulate) {
  run({C, A, B, bias, M, N, K, trans_a, trans_b, accumulate, {}});
}

void linear_forward_bf16(float* y, const float* x, const float* W, const float* b, int64_t M,
                         int64_t in, int64_t out) {
  run({y, x, W, b, M, out, in, false, true, false, {}});
}

// The bias gradient is a plain fp32 column sum: the fp32 kernel's, alone.
void linear_backward_bf16(float* dx, float* dW, float* db, const float* dy, const float* x,
                          const float* W, int64_t M, int64_t in, int64_t out) {
  if (dx) run({dx, dy, W, nullptr, M, in, out, false, false, true, {}});
  if (dW) run({dW, dy, x, nullptr, out, in, M, true, false, true, {}});
  if (db) linear_backward(nullptr, nullptr, db, dy, x, W, M, in, out);
}

void linear_gelu_forward_bf16(float* f, float* g, const float* x, const float* W, const float* b,
                              int64_t M, int64_t in, int64_t out) {
  run({f, x, W, b, M, out, in, false, true, false, {Epi::Gelu, g, nullptr}});
}

void linear_backward_gelu_bf16(float* dxf, float* dW, float* db, const float* dy, const float* x,
                               const float* W, const float* f, int64_t M, int64_t in, int64_t out) {
  run({dxf, dy, W, nullptr, M, in, out, false, false, false, {Epi::GeluGrad, nullptr, f}});
  linear_backward_bf16(nullptr, dW, db, dy, x, W, M, in, out);
}

}  // namespace reca::cpu::isa_avx512

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif  // RECA_ISA_LEVEL == 2

#if RECA_ISA_LEVEL == 0
#include "core/cpu_features.h"
#include "core/error.h"

namespace reca::cpu {

const char* bf16_matmul_unavailable_reason() {
  if (!cpu_has_avx512_bf16())
    return "this CPU has no AVX512_BF16 (bf16 matmuls need Zen 4 or later, Cooper Lake or "
           "Sapphire Rapids or later); use matmulPrecision 'fp32'";
  if (active_isa() != Isa::Avx512)
    return active_isa() == Isa::Avx2
               ? "the CPU kernels run at ISA 'avx2' (RECA_CPU_ISA or setIsa): bf16 matmuls need "
                 "'avx512'; raise the ISA or use matmulPrecision 'fp32'"
               : "the CPU kernels run at ISA 'scalar' (RECA_CPU_ISA or setIsa): bf16 matmuls need "
                 "'avx512'; raise the ISA or use matmulPrecision 'fp32'";
  return nullptr;
}

bool bf16_matmul_available() { return bf16_matmul_unavailable_reason() == nullptr; }

namespace {
void require_bf16() {
  if (const char* why = bf16_matmul_unavailable_reason()) fail(ErrorCode::Device, "%s", why);
}
}  // namespace

void matmul_bf16(float* C, const float* A, const float* B, const float* bias, int64_t M, int64_t N,
                 int64_t K, bool trans_a, bool trans_b, bool accumulate) {
  require_bf16();
  isa_avx512::matmul_bf16(C, A, B, bias, M, N, K, trans_a, trans_b, accumulate);
}
void linear_forward_bf16(float* y, const float* x, const float* W, const float* b, int64_t M,
                         int64_t in, int64_t out) {
  require_bf16();
  isa_avx512::linear_forward_bf16(y, x, W, b, M, in, out);
}
void linear_backward_bf16(float* dx, float* dW, float* db, const float* dy, const float* x,
                          const float* W, int64_t M, int64_t in, int64_t out) {
  require_bf16();
  isa_avx512::linear_backward_bf16(dx, dW, db, dy, x, W, M, in, out);
}
void linear_gelu_forward_bf16(float* f, float* g, const float* x, const float* W, const float* b,
                              int64_t M, int64_t in, int64_t out) {
  require_bf16();
  isa_avx512::linear_gelu_forward_bf16(f, g, x, W, b, M, in, out);
}
void linear_backward_gelu_bf16(float* dxf, float* dW, float* db, const float* dy, const float* x,
                               const float* W, const float* f, int64_t M, int64_t in, int64_t out) {
  require_bf16();
  isa_avx512::linear_backward_gelu_bf16(dxf, dW, db, dy, x, W, f, M, in, out);
}

namespace ref {
template <class T>
void matmul_bf16(T* C, const float* A, const float* B, const float* bias, int64_t M, int64_t N, int64_t K,
                 bool trans_a, bool trans_b, bool accumulate) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      T s = T(0);
      for (int64_t k = 0; k < K; ++k)
        s += T(round_to_bf16(trans_a ? A[k * M + i] : A[i * K + k])) *
             T(round_to_bf16(trans_b ? B[j * K + k] : B[k * N + j]));
      T& c = C[i * N + j];
      c = (accumulate ? c : T(0)) + s + (bias ? T(bias[j]) : T(0));
    }
}
template void matmul_bf16<float>(float*, const float*, const float*, const float*, int64_t, int64_t, int64_t,
                                 bool, bool, bool);
template void matmul_bf16<double>(double*, const float*, const float*, const float*, int64_t, int64_t,
                                  int64_t, bool, bool, bool);
}  // namespace ref

}  // namespace reca::cpu
#endif  // RECA_ISA_LEVEL == 0
