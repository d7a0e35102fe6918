// Matrix multiply on the device, the contract of reca::cpu::matmul:
//   C[M,N] = (accumulate ? C : 0) + op(A)[M,K] · op(B)[K,N] + bias[N]
// Two kernels, both hand-written (no cuBLAS in this build):
//   sgemm_fp32  FFMA, 128×128 block tile, BK 8, 256 threads each holding an
//               8×8 accumulator block; 128-bit global loads when the layout
//               allows; shared-memory tiles double-buffered through registers.
//   sgemm_tf32  tensor cores, mma.sync m16n8k8 TF32 with explicit fragments,
//               128×128×32 tiles, 8 warps of 64×32, cp.async 3-stage (2 on
//               parts with < 108 KB of shared memory a block): inputs rounded
//               to TF32 (10-bit mantissa), fp32 accumulation. Reduced precision.
// Both keep a fixed summation order: the same inputs give the same bits.
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
// Split K: block z sums k in [z·k_slice, min(K, (z+1)·k_slice)) and writes
// C + z·M·N. SPLIT = false compiles to the plain kernel (kb = 0, ke = K).
template <bool TA, bool TB, bool VEC, bool SPLIT>
__global__ void __launch_bounds__(kThreads, 2)
    sgemm_fp32(float* __restrict__ C, const float* __restrict__ A, const float* __restrict__ B,
               const float* __restrict__ bias, int M, int N, int K, bool accumulate, int k_slice) {
  __shared__ __align__(16) float As[2][BK][BM + kPad];  // As[k][m]
  __shared__ __align__(16) float Bs[2][BK][BN + kPad];  // Bs[k][n]
  const int t = threadIdx.x;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int kb = SPLIT ? blockIdx.z * k_slice : 0;
  // A slice that ends before K ends on a whole BK tile (k_slice % BK == 0), so
  // the loads need masking only against K itself.
  const int ke = !SPLIT || K - kb < k_slice ? K : kb + k_slice;

  // Global load coordinates for this thread (one float4-worth of A and of B).
  // A not transposed ([M,K], contiguous k): row m0 + t/2, k 4·(t%2).
  // A transposed ([K,M], contiguous m): k t/32, m 4·(t%32). B mirrors that.
  const int a_r = TA ? t / 32 : t / 2, a_c = TA ? (t % 32) * 4 : (t % 2) * 4;
  const int b_r = TB ? t / 2 : t / 32, b_c = TB ? (t % 2) * 4 : (t % 32) * 4;
  const float* pa = TA ? A + int64_t(kb + a_r) * M + m0 + a_c : A + int64_t(m0 + a_r) * K + kb + a_c;
  const float* pb = TB ? B + int64_t(n0 + b_r) * K + kb + b_c : B + int64_t(kb + b_r) * N + n0 + b_c;
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
  const int tiles = SPLIT ? (ke > kb ? (ke - kb + BK - 1) / BK : 0) : (K + BK - 1) / BK;
  if (tiles > 0) {
    load_tiles(kb);
    store_tiles(0);
    __syncthreads();
  }
  for (int kt = 0; kt < tiles; ++kt) {
    const int buf = kt & 1;
    const bool more = kt + 1 < tiles;
    if (more) {  // next slice's global loads in flight during this slice's math
      pa += a_step;
      pb += b_step;
      load_tiles(kb + (kt + 1) * BK);
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

  // Epilogue: C = (accumulate ? C : 0) + acc + bias. (The slice offset is
  // applied only here: one register less through the main loop.)
  if (SPLIT) C += int64_t(blockIdx.z) * M * N;
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

// C[i] = (accumulate ? C[i] : 0) + (Σ_z part[z, i], z in order) + bias[i % N]:
// the split-K slices combined in a fixed order. i over M·N/L vectors of L.
template <class V>
__global__ void __launch_bounds__(kThreads)
    sum_k_slices(float* __restrict__ C, const float* __restrict__ part, const float* __restrict__ bias,
                 int64_t mn, int N, int slices, bool accumulate) {
  constexpr int L = sizeof(V) / sizeof(float);
  const int64_t n = mn / L;
  for (int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x; i < n; i += int64_t(gridDim.x) * kThreads) {
    V v = reinterpret_cast<const V*>(part)[i];
    float* ve = reinterpret_cast<float*>(&v);
    for (int z = 1; z < slices; ++z) {
      const V p = reinterpret_cast<const V*>(part + int64_t(z) * mn)[i];
#pragma unroll
      for (int l = 0; l < L; ++l) ve[l] += reinterpret_cast<const float*>(&p)[l];
    }
    if (bias) {
      const V b = reinterpret_cast<const V*>(bias)[i % (N / L)];
#pragma unroll
      for (int l = 0; l < L; ++l) ve[l] += reinterpret_cast<const float*>(&b)[l];
    }
    if (accumulate) {
      const V c = reinterpret_cast<const V*>(C)[i];
#pragma unroll
      for (int l = 0; l < L; ++l) ve[l] += reinterpret_cast<const float*>(&c)[l];
    }
    reinterpret_cast<V*>(C)[i] = v;
  }
}

// ---------------------------------------------------------------- TF32 mma.sync
// Block tile 128×128×32, 8 warps in a 2×4 grid, each 64×32 = 4×4 MMAs of
// m16n8k8. Shared tiles keep the global layout: rows of kLdK = 36 floats when
// k is contiguous (fragment reads hit banks (4g + t) % 32: conflict-free),
// rows of kLdMN = 136 when m or n is (banks (8t + g) % 32: conflict-free).
// Global → shared by cp.async (16-byte copies when VEC, else 4-byte; zero
// fill past the edges), STAGES tiles deep so the copies of tile k+2 overlap
// the math of tile k.
constexpr int TBK = 32;
constexpr int kLdK = TBK + 4;
constexpr int kLdMN = BM + 8;
constexpr int kTileFloats = BM * kLdK > TBK * kLdMN ? BM * kLdK : TBK * kLdMN;
constexpr size_t tf32_smem_bytes(int stages) { return size_t(stages) * 2 * kTileFloats * sizeof(float); }

__device__ __forceinline__ void cp_async16(float* dst, const float* src, bool ok) {
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(ok ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async4(float* dst, const float* src, bool ok) {
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(d), "l"(src), "r"(ok ? 4 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// fp32 → TF32, round to nearest (ties away from zero), low 13 bits cleared.
__device__ __forceinline__ uint32_t to_tf32(float v) {
  return (__float_as_uint(v) + 0x1000u) & 0xffffe000u;
}

// One [128, 32] (KCONTIG: src [MN, K], element (mn, k) at src[mn·K + k] → dst[mn·kLdK + k])
// or [32, 128] (src [K, MN], element at src[k·MN + mn] → dst[k·kLdMN + mn]) tile
// of 4096 floats; consecutive threads copy consecutive global addresses.
template <bool KCONTIG, bool VEC>
__device__ __forceinline__ void tf32_load_tile(float* dst, const float* src, int MN, int K, int mn0,
                                               int k0, int t) {
  if (VEC) {
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int e = t + q * kThreads;
      const int mn = KCONTIG ? e / 8 : (e % 32) * 4;
      const int k = KCONTIG ? (e % 8) * 4 : e / 32;
      const bool ok = mn0 + mn < MN && k0 + k < K;
      const float* g = KCONTIG ? src + int64_t(mn0 + mn) * K + k0 + k : src + int64_t(k0 + k) * MN + mn0 + mn;
      cp_async16(dst + (KCONTIG ? mn * kLdK + k : k * kLdMN + mn), ok ? g : src, ok);
    }
  } else {
#pragma unroll 4
    for (int q = 0; q < 16; ++q) {
      const int e = t + q * kThreads;
      const int mn = KCONTIG ? e / TBK : e % BM;
      const int k = KCONTIG ? e % TBK : e / BM;
      const bool ok = mn0 + mn < MN && k0 + k < K;
      const float* g = KCONTIG ? src + int64_t(mn0 + mn) * K + k0 + k : src + int64_t(k0 + k) * MN + mn0 + mn;
      cp_async4(dst + (KCONTIG ? mn * kLdK + k : k * kLdMN + mn), ok ? g : src, ok);
    }
  }
}

__device__ __forceinline__ void mma_tf32(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// C tile [128, 128] at (blockIdx.y·128, blockIdx.x·128). Warp w owns rows
// (w/4)·64 .. +64 and cols (w%4)·32 .. +32. Lane (g, t) = (lane/4, lane%4)
// holds, per MMA, C rows g and g+8, cols 2t and 2t+1 (the m16n8 layout).
template <bool TA, bool TB, bool VEC, int STAGES>
__global__ void __launch_bounds__(kThreads, 2)
    sgemm_tf32(float* __restrict__ C, const float* __restrict__ A, const float* __restrict__ B,
               const float* __restrict__ bias, int M, int N, int K, bool accumulate) {
  extern __shared__ __align__(16) float smem[];  // STAGES × (A tile, B tile)
  const int t = threadIdx.x, warp = t / 32, lane = t % 32;
  const int g = lane / 4, tq = lane % 4;
  const int wm = (warp / 4) * 64, wn = (warp % 4) * 32;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;

  float acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

  auto load_stage = [&](int stage, int k0) {
    float* as = smem + stage * 2 * kTileFloats;
    float* bs = as + kTileFloats;
    tf32_load_tile<!TA, VEC>(as, A, M, K, m0, k0, t);  // A [M,K] is k-contiguous
    tf32_load_tile<TB, VEC>(bs, B, N, K, n0, k0, t);   // B [N,K] (trans_b) is k-contiguous
  };

  const int tiles = (K + TBK - 1) / TBK;
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < tiles) load_stage(s, s * TBK);
    cp_async_commit();  // empty groups keep the count uniform
  }
  for (int kt = 0; kt < tiles; ++kt) {
    cp_async_wait<STAGES - 2>();  // this thread's copies of tile kt are done...
    __syncthreads();              // ...and everyone's; tile kt−1's stage is free again
    {
      const int nk = kt + STAGES - 1;
      if (nk < tiles) load_stage(nk % STAGES, nk * TBK);
      cp_async_commit();
    }
    const float* as = smem + (kt % STAGES) * 2 * kTileFloats;
    const float* bs = as + kTileFloats;
#pragma unroll
    for (int kk = 0; kk < TBK; kk += 8) {
      uint32_t af[4][4], bf[4][2];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = wm + i * 16 + g;
        if (TA) {  // As[k][m]
          af[i][0] = to_tf32(as[(kk + tq) * kLdMN + r]);
          af[i][1] = to_tf32(as[(kk + tq) * kLdMN + r + 8]);
          af[i][2] = to_tf32(as[(kk + tq + 4) * kLdMN + r]);
          af[i][3] = to_tf32(as[(kk + tq + 4) * kLdMN + r + 8]);
        } else {   // As[m][k]
          af[i][0] = to_tf32(as[r * kLdK + kk + tq]);
          af[i][1] = to_tf32(as[(r + 8) * kLdK + kk + tq]);
          af[i][2] = to_tf32(as[r * kLdK + kk + tq + 4]);
          af[i][3] = to_tf32(as[(r + 8) * kLdK + kk + tq + 4]);
        }
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int c = wn + j * 8 + g;
        if (TB) {  // Bs[n][k]
          bf[j][0] = to_tf32(bs[c * kLdK + kk + tq]);
          bf[j][1] = to_tf32(bs[c * kLdK + kk + tq + 4]);
        } else {   // Bs[k][n]
          bf[j][0] = to_tf32(bs[(kk + tq) * kLdMN + c]);
          bf[j][1] = to_tf32(bs[(kk + tq + 4) * kLdMN + c]);
        }
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) mma_tf32(acc[i][j], af[i], bf[j]);
    }
  }
  cp_async_wait<0>();  // no copy outlives the block (only empty groups remain)

  // Epilogue: C = (accumulate ? C : 0) + acc + bias, straight from registers
  // (a lane writes 2 adjacent floats; 4 lanes a 32-byte row segment).
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = m0 + wm + i * 16 + g + 8 * h;
      if (row >= M) continue;
      float* crow = C + int64_t(row) * N;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int col = n0 + wn + j * 8 + 2 * tq;
        float v0 = acc[i][j][2 * h], v1 = acc[i][j][2 * h + 1];
        if (VEC) {  // N % 4 == 0: col < N means col + 1 < N; 8-byte aligned
          if (col >= N) continue;
          if (bias) v0 += bias[col], v1 += bias[col + 1];
          if (accumulate) {
            const float2 cc = *reinterpret_cast<const float2*>(crow + col);
            v0 += cc.x, v1 += cc.y;
          }
          *reinterpret_cast<float2*>(crow + col) = make_float2(v0, v1);
        } else {
          if (col < N) crow[col] = v0 + (bias ? bias[col] : 0.0f) + (accumulate ? crow[col] : 0.0f);
          if (col + 1 < N)
            crow[col + 1] = v1 + (bias ? bias[col + 1] : 0.0f) + (accumulate ? crow[col + 1] : 0.0f);
        }
      }
    }
}

template <bool TA, bool TB, bool VEC, int STAGES>
void launch_tf32(float* C, const float* A, const float* B, const float* bias, int M, int N, int K,
                 bool accumulate, Stream stream) {
  auto kernel = sgemm_tf32<TA, TB, VEC, STAGES>;
  constexpr size_t smem = tf32_smem_bytes(STAGES);
  RECA_CUDA_CALL("matmul: cudaFuncSetAttribute",
                 cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  const dim3 grid((N + BN - 1) / BN, (M + BM - 1) / BM);
  kernel<<<grid, kThreads, smem, stream>>>(C, A, B, bias, M, N, K, accumulate);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <bool TA, bool TB>
void launch(float* C, const float* A, const float* B, const float* bias, int M, int N, int K,
            bool accumulate, Stream stream, MatmulPrecision precision) {
  // 16-byte accesses need every contiguous dimension % 4 == 0 and aligned bases.
  const bool vec = (TA ? M : K) % 4 == 0 && (TB ? K : N) % 4 == 0 && N % 4 == 0 && aligned16(A) &&
                   aligned16(B) && aligned16(C) && (!bias || aligned16(bias));
  if (precision == MatmulPrecision::Tf32) {
    // Three stages need 108 KB of shared memory a block: Hopper and the A100
    // have it, other sm_8x parts (99 KB) take two.
    int dev = 0, optin = 0;
    RECA_CUDA_CALL("matmul: cudaGetDevice", cudaGetDevice(&dev));
    RECA_CUDA_CALL("matmul: cudaDeviceGetAttribute",
                   cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    if (vec && size_t(optin) >= tf32_smem_bytes(3))
      launch_tf32<TA, TB, true, 3>(C, A, B, bias, M, N, K, accumulate, stream);
    else if (vec)
      launch_tf32<TA, TB, true, 2>(C, A, B, bias, M, N, K, accumulate, stream);
    else
      launch_tf32<TA, TB, false, 2>(C, A, B, bias, M, N, K, accumulate, stream);
    return;
  }
  // Fewer 128×128 tiles than block slots (2 per SM) leaves SMs idle for the
  // whole run: then split K into S slices (each ≥ 256 deep, a multiple of BK)
  // picking the S in 2..4 with the fewest waves per slice, ceil(tiles·S /
  // slots) / S, if it beats one wave by 20%; slices summed in order after.
  const int gx = (N + BN - 1) / BN, gy = (M + BM - 1) / BM;
  const int64_t tiles = int64_t(gx) * gy;
  int dev = 0, sms = 0;
  RECA_CUDA_CALL("matmul: cudaGetDevice", cudaGetDevice(&dev));
  RECA_CUDA_CALL("matmul: cudaDeviceGetAttribute",
                 cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const int64_t slots = 2LL * sms;
  int split = 1;
  double best = 1.0;
  for (int s = 2; tiles < slots && s <= 4 && K >= 256 * s; ++s) {
    const double cost = double((tiles * s + slots - 1) / slots) / s;
    if (cost < 0.8 * best) best = cost, split = s;
  }
  if (split == 1) {
    const dim3 grid(gx, gy);
    if (vec) sgemm_fp32<TA, TB, true, false><<<grid, kThreads, 0, stream>>>(C, A, B, bias, M, N, K, accumulate, K);
    else sgemm_fp32<TA, TB, false, false><<<grid, kThreads, 0, stream>>>(C, A, B, bias, M, N, K, accumulate, K);
    return;
  }
  const int k_slice = (K / split + BK - 1) / BK * BK;
  const int64_t mn = int64_t(M) * N;
  float* part = nullptr;  // [split, M, N]
  detail::malloc_async(reinterpret_cast<void**>(&part), size_t(split) * mn * sizeof(float), stream, "matmul");
  const dim3 grid(gx, gy, split);
  if (vec) sgemm_fp32<TA, TB, true, true><<<grid, kThreads, 0, stream>>>(part, A, B, nullptr, M, N, K, false, k_slice);
  else sgemm_fp32<TA, TB, false, true><<<grid, kThreads, 0, stream>>>(part, A, B, nullptr, M, N, K, false, k_slice);
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) {
    if (vec)
      sum_k_slices<float4><<<detail::grid_1d(mn / 4, kThreads, 8LL * sms), kThreads, 0, stream>>>(
          C, part, bias, mn, N, split, accumulate);
    else
      sum_k_slices<float><<<detail::grid_1d(mn, kThreads, 8LL * sms), kThreads, 0, stream>>>(
          C, part, bias, mn, N, split, accumulate);
    err = cudaGetLastError();
  }
  const cudaError_t ferr = cudaFreeAsync(part, stream);
  if (err == cudaSuccess) err = ferr;
  RECA_CUDA_CALL("matmul", err);
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
