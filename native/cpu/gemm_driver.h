// The blocked GEMM driver shared by the fp32 (cpu/matmul.cpp) and bf16
// (cpu/matmul_bf16.cpp) kernels, in the BLIS/GotoBLAS structure:
//   jc over N in NC columns   -> pack op(B)[KC, NC] into NR-wide micro-panels (L2/L3)
//   pc over K in KC steps     (each C element sums its K blocks in order)
//   ic over M in MC rows      -> pack op(A)[MC, KC] into MR-tall micro-panels (L2)
//   jr over NR, ir over MR    -> the kernel's MR x NR register tile of C
// A kernel brings its packed format, its tile and blocking, and its microkernel
// (the Kernel interface below); the loops, the thread split, prepacked B and the
// MLP's GELU epilogues live here once. Threads own disjoint rectangles of C and
// run the full K loop there, so every element is one task's fixed-order sum
// whatever the thread count.
//
// Kernel interface:
//   using Packed                         element of the packed panels
//   static constexpr int MR, NR          register tile (NR a multiple of Vec::W)
//   static constexpr int64_t MC, NC      rows of an A block, columns of a B panel
//   static int64_t k_block_depth(K)      depth of every K block (the last may be thinner)
//   static int64_t packed_depth(kc)      Packed rows of a kc-deep panel
//   static void pack_a(Packed* dst, A, lda, trans, i0, mc, p0, kc)
//       op(A) rows [i0, i0+mc), k [p0, p0+kc) as ceil(mc/MR) panels of
//       [packed_depth(kc)][MR], rows past mc zero
//   static void pack_b(Packed* dst, B, ldb, trans, p0, kc, j0, nc)
//       op(B) k [p0, p0+kc), columns [j0, j0+nc) as ceil(nc/NR) panels of
//       [packed_depth(kc)][NR], columns past nc zero
//   static void microkernel(kd, Ap, Bp, C, ldc, mr, nr, add, bias)
//       C[mr, nr] = (add ? C : 0) + Ap · Bp (+ bias[nr]), kd = packed_depth(kc)
//
// Include from a kernel's .cpp after cpu/simd.h (Vec is the ISA level's). It is
// all in an anonymous namespace on purpose: each includer compiles its own copy
// under its own target flags (the bf16 file adds avx512bf16), so a copy built
// for one target is never linked into another's callers.
#pragma once
#include <stdlib.h>

#include "core/threadpool.h"
#include "cpu/gelu_vec.h"
#include "cpu/simd.h"

namespace reca::cpu::RECA_ISA_NS {
namespace {

// What the product does to each finished block of C beyond C = sum (+ bias):
// Gelu writes gelu(C) to out; GeluGrad stores gelu'(f) ⊙ C to C.
enum class Epi { None, Gelu, GeluGrad };
struct Epilogue {
  Epi kind = Epi::None;
  float* out = nullptr;     // whole-matrix pointers, row stride N
  const float* f = nullptr;
};

// C[M,N] = (accumulate ? C : 0) + op(A)[M,K] · op(B)[K,N] + bias[N], then the epilogue.
template <class Kernel>
struct Problem {
  float* C;
  const float* A;
  const float* B;
  const float* bias;
  int64_t M, N, K;
  bool trans_a, trans_b, accumulate;
  Epilogue epi = {};
  // op(B) already packed by pack_whole_b (a prepacked weight), or null: pack per block.
  const typename Kernel::Packed* B_packed = nullptr;
};

// Per-thread packing scratch, 64-byte aligned, kept between calls.
template <class T>
class PackScratch {
 public:
  ~PackScratch() { free(p_); }
  T* get(int64_t n) {
    if (n > cap_) {
      free(p_);
      const int64_t bytes = (n * static_cast<int64_t>(sizeof(T)) + 63) / 64 * 64;
      p_ = static_cast<T*>(aligned_alloc(64, static_cast<size_t>(bytes)));
      cap_ = p_ ? n : 0;
    }
    return p_;
  }

 private:
  T* p_ = nullptr;
  int64_t cap_ = 0;
};
enum class Operand { A, B };
template <class Kernel, Operand which>
typename Kernel::Packed* pack_scratch(int64_t n) {
  static thread_local PackScratch<typename Kernel::Packed> scratch;
  return scratch.get(n);
}

// Columns of op(B) rounded up to whole NR-wide micro-panels.
template <class Kernel>
int64_t padded_cols(int64_t N) {
  return (N + Kernel::NR - 1) / Kernel::NR * Kernel::NR;
}

// All of op(B) [K,N] packed as gemm_region packs it, block by block: K block pc
// starts at packed_depth(pc) * padded_cols(N) and holds the NR-wide panels of
// every column, column group jc's panel at jc * packed_depth(kc). gemm_region's
// column ranges start on NR boundaries, so each reads exactly the panels it
// would have packed.
template <class Kernel>
void pack_whole_b(typename Kernel::Packed* dst, const float* B, int64_t ldb, bool trans, int64_t K,
                  int64_t N) {
  if (K <= 0 || N <= 0) return;
  const int64_t kc_max = Kernel::k_block_depth(K);
  for (int64_t pc = 0; pc < K; pc += kc_max)
    Kernel::pack_b(dst + Kernel::packed_depth(pc) * padded_cols<Kernel>(N), B, ldb, trans, pc,
                   imin(kc_max, K - pc), 0, N);
}

// The epilogue over rows [i0, i0+mc) x columns [j0, j0+nc) of C, just finished
// and still in L2. Run per block rather than in the microkernel's store: that
// kept the tile loop lean and measured the same or better (fwd 0.93-1.00 vs
// 0.89-0.99, bwd 1.21-1.38 vs 1.10-1.22 of the separate passes, Zen 4 under load).
template <class Kernel>
void epilogue_block(const Problem<Kernel>& p, int64_t i0, int64_t mc, int64_t j0, int64_t nc) {
  constexpr int kW = Vec::W;
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

// The blocked product over the rectangle rows [m0, m1) x columns [n0, n1) of C.
template <class Kernel>
void gemm_region(const Problem<Kernel>& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  using Packed = typename Kernel::Packed;
  constexpr int MR = Kernel::MR, NR = Kernel::NR;
  if (m0 >= m1 || n0 >= n1) return;
  const int64_t lda = p.trans_a ? p.M : p.K, ldb = p.trans_b ? p.K : p.N, ldc = p.N;
  const int64_t kc_max = Kernel::k_block_depth(p.K);
  const int64_t nc_max = (imin(Kernel::NC, n1 - n0) + NR - 1) / NR * NR;
  const int64_t mc_max = (imin(Kernel::MC, m1 - m0) + MR - 1) / MR * MR;
  Packed* Bp_own = p.B_packed ? nullptr : pack_scratch<Kernel, Operand::B>(Kernel::packed_depth(kc_max) * nc_max);
  Packed* Ap = pack_scratch<Kernel, Operand::A>(Kernel::packed_depth(kc_max) * mc_max);
  for (int64_t jc = n0; jc < n1; jc += Kernel::NC) {
    const int64_t nc = imin(Kernel::NC, n1 - jc);
    for (int64_t pc = 0; pc < p.K; pc += kc_max) {
      const int64_t kc = imin(kc_max, p.K - pc), kd = Kernel::packed_depth(kc);
      const bool add = p.accumulate || pc > 0;
      const bool last = pc + kc == p.K;
      const Packed* Bp =
          p.B_packed ? p.B_packed + Kernel::packed_depth(pc) * padded_cols<Kernel>(p.N) + jc * kd : Bp_own;
      if (!p.B_packed) Kernel::pack_b(Bp_own, p.B, ldb, p.trans_b, pc, kc, jc, nc);
      for (int64_t ic = m0; ic < m1; ic += Kernel::MC) {
        const int64_t mc = imin(Kernel::MC, m1 - ic);
        Kernel::pack_a(Ap, p.A, lda, p.trans_a, ic, mc, pc, kc);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int nr = static_cast<int>(imin(NR, nc - jr));
          const float* bias = last && p.bias ? p.bias + jc + jr : nullptr;
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const int mr = static_cast<int>(imin(MR, mc - ir));
            Kernel::microkernel(kd, Ap + ir * kd, Bp + jr * kd, p.C + (ic + ir) * ldc + jc + jr, ldc, mr,
                                nr, add, bias);
          }
        }
        if (last && p.epi.kind != Epi::None) epilogue_block(p, ic, mc, jc, nc);
      }
    }
  }
}

// The whole product (M, N, K >= 1) split over the pool.
template <class Kernel>
void gemm_blocked(const Problem<Kernel>& p) {
  constexpr int MR = Kernel::MR, NR = Kernel::NR;
  const int64_t M = p.M, N = p.N, K = p.K;
  // Split C into a tm x tn grid of rectangles, one per thread. Every thread packs
  // the A rows and B columns of its own rectangle, so the grid packs A tn times
  // and B tm times: take the grid with the least packing (columns first on a tie).
  const int threads = num_threads();
  const int64_t col_tiles = (N + NR - 1) / NR, row_tiles = (M + MR - 1) / MR;
  int64_t tn = 1, tm = 1, best = -1;
  for (int64_t n_split = threads; n_split >= 1; --n_split) {
    if (threads % n_split) continue;
    const int64_t m_split = threads / n_split;
    // At least two tiles per rectangle in the split direction (a thinner split idles lanes).
    if ((n_split > 1 && col_tiles / n_split < 2) || (m_split > 1 && row_tiles / m_split < 2)) continue;
    const int64_t packed = n_split * M * K + m_split * K * N;
    if (best < 0 || packed < best) {
      best = packed;
      tn = n_split;
      tm = m_split;
    }
  }
  if (M * N * K < (int64_t(1) << 21)) tn = tm = 1;  // not worth waking the pool
  parallel_for(tn * tm, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t ti = t / tn, tj = t % tn;
      const int64_t m0 = row_tiles * ti / tm * MR, m1 = imin(M, row_tiles * (ti + 1) / tm * MR);
      const int64_t n0 = col_tiles * tj / tn * NR, n1 = imin(N, col_tiles * (tj + 1) / tn * NR);
      gemm_region(p, m0, m1, n0, n1);
    }
  });
}

}  // namespace
}  // namespace reca::cpu::RECA_ISA_NS
