// bf16 GEMM: a kernel for the blocked driver of cpu/gemm_driver.h, which the fp32
// kernel (cpu/matmul.cpp) shares (same loops, thread split and epilogues; every
// element one task's fixed-order sum whatever the thread count). What differs
// is the packed format: vdpbf16ps multiplies bf16 *pairs* and adds
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

#include "cpu/gemm_driver.h"  // compiled here for this file's target (see there)

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

// The bf16 kernel for cpu/gemm_driver.h: panels of k pairs.
struct Bf16Kernel {
  using Packed = uint32_t;
  static constexpr int MR = kMR, NR = kNR;
  static constexpr int64_t MC = kMC, NC = kNC;
  // Equal K blocks of an even depth (pairs never straddle two blocks).
  static int64_t k_block_depth(int64_t K) {
    const int64_t k_blocks = (K + kKC - 1) / kKC;
    return ((K + k_blocks - 1) / k_blocks + 1) / 2 * 2;
  }
  static int64_t packed_depth(int64_t kc) { return (kc + 1) / 2; }
  static void pack_a(uint32_t* dst, const float* A, int64_t lda, bool trans, int64_t i0, int64_t mc,
                     int64_t p0, int64_t kc) {
    isa_avx512::pack_a(dst, A, lda, trans, i0, mc, p0, kc);
  }
  static void pack_b(uint32_t* dst, const float* B, int64_t ldb, bool trans, int64_t p0, int64_t kc,
                     int64_t j0, int64_t nc) {
    isa_avx512::pack_b(dst, B, ldb, trans, p0, kc, j0, nc);
  }
  static void microkernel(int64_t kp, const uint32_t* Ap, const uint32_t* Bp, float* C, int64_t ldc,
                          int mr, int nr, bool add, const float* bias) {
    isa_avx512::microkernel(kp, Ap, Bp, C, ldc, mr, nr, add, bias);
  }
};
using Bf16Problem = Problem<Bf16Kernel>;

// C = (accumulate ? C : 0) + bias, then the epilogue: the K = 0 case.
void gemm_empty_k(const Bf16Problem& p) {
  for (int64_t i = 0; i < p.M; ++i)
    for (int64_t j = 0; j < p.N; ++j) {
      float& c = p.C[i * p.N + j];
      c = (p.accumulate ? c : 0.0f) + (p.bias ? p.bias[j] : 0.0f);
    }
  if (p.epi.kind != Epi::None) epilogue_block(p, 0, p.M, 0, p.N);
}

void run(const Bf16Problem& p) {
  if (p.M <= 0 || p.N <= 0) return;
  if (p.K <= 0) return gemm_empty_k(p);
  gemm_blocked(p);
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
