// Matrix multiply on the device, the contract of reca::cpu::matmul:
//   C[M,N] = (accumulate ? C : 0) + op(A)[M,K] · op(B)[K,N] + bias[N]
// Two kernels, both hand-written (no cuBLAS in this build):
//   sgemm_fp32  FFMA, 128×128 block tile, BK 8, 256 threads each holding an
//               8×8 accumulator block; 128-bit global loads when the layout
//               allows; shared-memory tiles double-buffered through registers.
//   sgemm_tf32  tensor cores through WMMA (mma.sync m16n8k8 TF32 in SASS),
//               128×128×32 tiles, 8 warps of 64×32: inputs rounded to TF32
//               (10-bit mantissa), fp32 accumulation. Reduced precision.
// Both keep a fixed summation order: the same inputs give the same bits.
#include <mma.h>

#include <type_traits>

#include "cuda/cuda_check.cuh"
#include "cuda/cuda_ops.h"

namespace reca::cuda {
namespace {

// ---------------------------------------------------------------- fp32 FFMA
constexpr int BM = 128, BN = 128, BK = 8;
constexpr int kPad = 4;  // shared rows of 132 floats: transposing stores hit distinct banks
constexpr int kThreads = 256;

// Loads of one BK-slice of A (and of B) into registers: 4 floats per thread.
// TA/TB say how A/B are stored; VEC: 16-byte loads are legal (contiguous dim
// % 4 == 0, aligned base).
template <bool VEC>
__device__ __forceinline__ void load4(float (&r)[4], const float* p, bool row_ok, int64_t col,
                                      int64_t cols) {
  if (VEC) {
    if (row_ok && col < cols) {
      const float4 v = *reinterpret_cast<const float4*>(p);
      r[0] = v.x, r[1] = v.y, r[2] = v.z, r[3] = v.w;
    } else {
      r[0] = r[1] = r[2] = r[3] = 0.0f;
    }
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) r[i] = row_ok && col + i < cols ? p[i] : 0.0f;
  }
}

// C tile [BM, BN] at (blockIdx.y·BM, blockIdx.x·BN). Thread (ty, tx) = (t/16,
// t%16) owns rows {ty·4 + i, 64 + ty·4 + i} and cols {tx·4 + j, 64 + tx·4 + j},
// i, j < 4: shared reads are float4 broadcasts (A) and 16 distinct float4 (B).
template <bool TA, bool TB, bool VEC>
__global__ void __launch_bounds__(kThreads, 2)
    sgemm_fp32(float* __restrict__ C, const float* __restrict__ A, const float* __restrict__ B,
               const float* __restrict__ bias, int M, int N, int K, bool accumulate) {
  __shared__ __align__(16) float As[2][BK][BM + kPad];  // As[k][m]
  __shared__ __align__(16) float Bs[2][BK][BN + kPad];  // Bs[k][n]
  const int t = threadIdx.x;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;

  // Global load coordinates for this thread (one float4-worth of A and of B).
  // A not transposed ([M,K], contiguous k): row m0 + t/2, k 4·(t%2).
  // A transposed ([K,M], contiguous m): k t/32, m 4·(t%32). B mirrors that.
  const int a_r = TA ? t / 32 : t / 2, a_c = TA ? (t % 32) * 4 : (t % 2) * 4;
  const int b_r = TB ? t / 2 : t / 32, b_c = TB ? (t % 2) * 4 : (t % 32) * 4;
  const float* pa = TA ? A + int64_t(a_r) * M + m0 + a_c : A + int64_t(m0 + a_r) * K + a_c;
  const float* pb = TB ? B + int64_t(n0 + b_r) * K + b_c : B + int64_t(b_r) * N + n0 + b_c;
  const int64_t a_step = TA ? int64_t(BK) * M : BK;
  const int64_t b_step = TB ? BK : int64_t(BK) * N;

  float ra[4], rb[4];
  auto load_tiles = [&](int k0) {
    if (TA) load4<VEC>(ra, pa, k0 + a_r < K, m0 + a_c, M);
    else load4<VEC>(ra, pa, m0 + a_r < M, k0 + a_c, K);
    if (TB) load4<VEC>(rb, pb, n0 + b_r < N, k0 + b_c, K);
    else load4<VEC>(rb, pb, k0 + b_r < K, n0 + b_c, N);
  };
  auto store_tiles = [&](int buf) {
    if (TA) {
      *reinterpret_cast<float4*>(&As[buf][a_r][a_c]) = make_float4(ra[0], ra[1], ra[2], ra[3]);
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) As[buf][a_c + i][a_r] = ra[i];
    }
    if (TB) {
#pragma unroll
      for (int i = 0; i < 4; ++i) Bs[buf][b_c + i][b_r] = rb[i];
    } else {
      *reinterpret_cast<float4*>(&Bs[buf][b_r][b_c]) = make_float4(rb[0], rb[1], rb[2], rb[3]);
    }
  };

  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

  const int ty = t / 16, tx = t % 16;
  const int tiles = (K + BK - 1) / BK;
  if (tiles > 0) {
    load_tiles(0);
    store_tiles(0);
    __syncthreads();
  }
  for (int kt = 0; kt < tiles; ++kt) {
    const int buf = kt & 1;
    const bool more = kt + 1 < tiles;
    if (more) {  // next slice's global loads in flight during this slice's math
      pa += a_step;
      pb += b_step;
      load_tiles((kt + 1) * BK);
    }
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      float a[8], b[8];
      const float4 a0 = *reinterpret_cast<const float4*>(&As[buf][k][ty * 4]);
      const float4 a1 = *reinterpret_cast<const float4*>(&As[buf][k][64 + ty * 4]);
      const float4 b0 = *reinterpret_cast<const float4*>(&Bs[buf][k][tx * 4]);
      const float4 b1 = *reinterpret_cast<const float4*>(&Bs[buf][k][64 + tx * 4]);
      a[0] = a0.x, a[1] = a0.y, a[2] = a0.z, a[3] = a0.w;
      a[4] = a1.x, a[5] = a1.y, a[6] = a1.z, a[7] = a1.w;
      b[0] = b0.x, b[1] = b0.y, b[2] = b0.z, b[3] = b0.w;
      b[4] = b1.x, b[5] = b1.y, b[6] = b1.z, b[7] = b1.w;
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    if (more) store_tiles(buf ^ 1);
    __syncthreads();
  }

  // Epilogue: C = (accumulate ? C : 0) + acc + bias.
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int row = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + i - 4);
    if (row >= M) continue;
    float* crow = C + int64_t(row) * N;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int col = n0 + h * 64 + tx * 4;
      float v[4] = {acc[i][h * 4], acc[i][h * 4 + 1], acc[i][h * 4 + 2], acc[i][h * 4 + 3]};
      if (VEC) {
        if (col >= N) continue;
        if (bias) {
          const float4 bb = *reinterpret_cast<const float4*>(bias + col);
          v[0] += bb.x, v[1] += bb.y, v[2] += bb.z, v[3] += bb.w;
        }
        if (accumulate) {
          const float4 cc = *reinterpret_cast<const float4*>(crow + col);
          v[0] += cc.x, v[1] += cc.y, v[2] += cc.z, v[3] += cc.w;
        }
        *reinterpret_cast<float4*>(crow + col) = make_float4(v[0], v[1], v[2], v[3]);
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          if (col + j >= N) continue;
          float o = v[j];
          if (bias) o += bias[col + j];
          if (accumulate) o += crow[col + j];
          crow[col + j] = o;
        }
      }
    }
  }
}

// ---------------------------------------------------------------- TF32 WMMA
namespace wmma = nvcuda::wmma;
constexpr int TBK = 32;
constexpr int kLdK = TBK + 4;  // rows of 36 floats (k contiguous)
constexpr int kLdMN = BM + 4;  // rows of 132 floats (m or n contiguous)
constexpr int kTileFloats = BM * kLdK > TBK * kLdMN ? BM * kLdK : TBK * kLdMN;

// C tile [128, 128]; warp w computes rows (w/4)·64 .. +64, cols (w%4)·32 .. +32
// as 4×2 fragments of 16×16. Shared tiles keep the global layout (k- or
// m/n-contiguous) and the fragment layout follows: coalesced, conflict-free
// stores either way.
template <bool TA, bool TB>
__global__ void __launch_bounds__(kThreads)
    sgemm_tf32(float* __restrict__ C, const float* __restrict__ A, const float* __restrict__ B,
               const float* __restrict__ bias, int M, int N, int K, bool accumulate) {
  __shared__ __align__(128) float As[kTileFloats];
  __shared__ __align__(128) float Bs[kTileFloats];
  using LayoutA = typename std::conditional<TA, wmma::col_major, wmma::row_major>::type;
  using LayoutB = typename std::conditional<TB, wmma::col_major, wmma::row_major>::type;
  const int t = threadIdx.x, warp = t / 32, lane = t % 32;
  const int wm = warp / 4, wn = warp % 4;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;

  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[4][2];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  for (int k0 = 0; k0 < K; k0 += TBK) {
    // 4096 elements of each tile, 16 per thread, consecutive threads on
    // consecutive global addresses.
#pragma unroll 4
    for (int q = 0; q < 16; ++q) {
      const int e = t + q * kThreads;
      if (TA) {  // A [K,M]: (k, m) = (e/128, e%128) → As[k][m]
        const int k = e / BM, m = e % BM;
        const bool ok = k0 + k < K && m0 + m < M;
        As[k * kLdMN + m] = wmma::__float_to_tf32(ok ? A[int64_t(k0 + k) * M + m0 + m] : 0.0f);
      } else {   // A [M,K]: (m, k) = (e/32, e%32) → As[m][k]
        const int m = e / TBK, k = e % TBK;
        const bool ok = k0 + k < K && m0 + m < M;
        As[m * kLdK + k] = wmma::__float_to_tf32(ok ? A[int64_t(m0 + m) * K + k0 + k] : 0.0f);
      }
      if (TB) {  // B [N,K]: (n, k) = (e/32, e%32) → Bs[n][k]
        const int n = e / TBK, k = e % TBK;
        const bool ok = k0 + k < K && n0 + n < N;
        Bs[n * kLdK + k] = wmma::__float_to_tf32(ok ? B[int64_t(n0 + n) * K + k0 + k] : 0.0f);
      } else {   // B [K,N]: (k, n) = (e/128, e%128) → Bs[k][n]
        const int k = e / BN, n = e % BN;
        const bool ok = k0 + k < K && n0 + n < N;
        Bs[k * kLdMN + n] = wmma::__float_to_tf32(ok ? B[int64_t(k0 + k) * N + n0 + n] : 0.0f);
      }
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < TBK; kk += 8) {
      wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, LayoutA> fa[4];
      wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, LayoutB> fb[2];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int m = wm * 64 + i * 16;
        if (TA) wmma::load_matrix_sync(fa[i], As + kk * kLdMN + m, kLdMN);
        else wmma::load_matrix_sync(fa[i], As + m * kLdK + kk, kLdK);
      }
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int n = wn * 32 + j * 16;
        if (TB) wmma::load_matrix_sync(fb[j], Bs + n * kLdK + kk, kLdK);
        else wmma::load_matrix_sync(fb[j], Bs + kk * kLdMN + n, kLdMN);
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    __syncthreads();
  }

  // Epilogue through a 16×16 shared scratch per warp (the A tile's space).
  float* scratch = As + warp * 256;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      wmma::store_matrix_sync(scratch, acc[i][j], 16, wmma::mem_row_major);
      __syncwarp();
#pragma unroll
      for (int q = 0; q < 8; ++q) {
        const int e = lane + q * 32, r = e / 16, c = e % 16;
        const int row = m0 + wm * 64 + i * 16 + r, col = n0 + wn * 32 + j * 16 + c;
        if (row < M && col < N) {
          float o = scratch[e];
          if (bias) o += bias[col];
          float* cp = C + int64_t(row) * N + col;
          if (accumulate) o += *cp;
          *cp = o;
        }
      }
      __syncwarp();
    }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <bool TA, bool TB>
void launch(float* C, const float* A, const float* B, const float* bias, int M, int N, int K,
            bool accumulate, Stream stream, MatmulPrecision precision) {
  const dim3 grid((N + BN - 1) / BN, (M + BM - 1) / BM);
  if (precision == MatmulPrecision::Tf32) {
    sgemm_tf32<TA, TB><<<grid, kThreads, 0, stream>>>(C, A, B, bias, M, N, K, accumulate);
    return;
  }
  // 16-byte accesses need every contiguous dimension % 4 == 0 and aligned bases.
  const bool vec = (TA ? M : K) % 4 == 0 && (TB ? K : N) % 4 == 0 && N % 4 == 0 && aligned16(A) &&
                   aligned16(B) && aligned16(C) && (!bias || aligned16(bias));
  if (vec) sgemm_fp32<TA, TB, true><<<grid, kThreads, 0, stream>>>(C, A, B, bias, M, N, K, accumulate);
  else sgemm_fp32<TA, TB, false><<<grid, kThreads, 0, stream>>>(C, A, B, bias, M, N, K, accumulate);
}

}  // namespace

void matmul(float* C, const float* A, const float* B, const float* bias, int64_t M, int64_t N,
            int64_t K, bool trans_a, bool trans_b, bool accumulate, Stream stream,
            MatmulPrecision precision) {
  if (M <= 0 || N <= 0) return;
  RECA_CHECK(M < (1LL << 31) / 2 && N < (1LL << 31) / 2 && K < (1LL << 31) / 2 &&
                 (M + BM - 1) / BM <= 65535,
             InvalidArgument, "matmul: sizes M=%lld N=%lld K=%lld are over the kernel's limits",
             static_cast<long long>(M), static_cast<long long>(N), static_cast<long long>(K));
  const int m = static_cast<int>(M), n = static_cast<int>(N), k = static_cast<int>(K);
  if (trans_a) {
    if (trans_b) launch<true, true>(C, A, B, bias, m, n, k, accumulate, stream, precision);
    else launch<true, false>(C, A, B, bias, m, n, k, accumulate, stream, precision);
  } else {
    if (trans_b) launch<false, true>(C, A, B, bias, m, n, k, accumulate, stream, precision);
    else launch<false, false>(C, A, B, bias, m, n, k, accumulate, stream, precision);
  }
  RECA_CUDA_LAUNCHED("matmul");
}

}  // namespace reca::cuda
