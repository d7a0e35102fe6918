// LayerNorm over the last dim (SPEC §0, eps 1e-5) on the device; the semantics
// of reca::cpu::layernorm_forward / layernorm_backward.
#include "cuda/cuda_check.cuh"
#include "cuda/column_sums.cuh"
#include "cuda/cuda_ops.h"

namespace reca::cuda {
namespace {

constexpr float kEps = 1e-5f;
constexpr int kWarpsPerBlock = 8;
constexpr int kRowChunk = 32;  // rows per partial sum of dw/db (fixed: deterministic)
constexpr int kThreads = 256;
// Fused backward: 4 warps a block, 16 rows a block (4 a warp), one dw/db
// partial row per block (fixed: deterministic; at 3104 rows 194 blocks, +6%
// bytes). A lane holds x, dy, w and the dw/db sums of its columns in registers
// (152 at C = 768): 128-thread blocks let 3 share an SM, so all 194 are
// resident at once on 132 SMs.
constexpr int kBwdRows = 16;
constexpr int kBwdWarps = 4;
constexpr int kBwdThreads = 32 * kBwdWarps;
// The fused backward keeps a row in registers: up to 8 vectors per lane.
constexpr int kMaxNJ = 8;

__device__ __forceinline__ float warp_sum(float v) {
  // Butterfly: every lane ends with the same value, in a fixed order.
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// One warp per row. y[r] = (x[r] − mean)·rstd·w + b; mean/rstd saved when non-null.
// x, y: [rows, C]; w, b: [C]. V = float4 when C % 4 == 0 (aligned), else float.
template <class V>
__global__ void layernorm_forward_kernel(float* y, float* mean, float* rstd, const float* x,
                                         const float* w, const float* b, int64_t rows, int64_t C) {
  const int64_t r = blockIdx.x * int64_t(kWarpsPerBlock) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;
  constexpr int L = sizeof(V) / sizeof(float);
  const int64_t n = C / L;
  const V* xr = reinterpret_cast<const V*>(x + r * C);
  V* yr = reinterpret_cast<V*>(y + r * C);
  const V* wv = reinterpret_cast<const V*>(w);
  const V* bv = reinterpret_cast<const V*>(b);
  float s = 0.0f;
  for (int64_t i = lane; i < n; i += 32) {
    const V v = xr[i];
    const float* e = reinterpret_cast<const float*>(&v);
#pragma unroll
    for (int j = 0; j < L; ++j) s += e[j];
  }
  const float mu = warp_sum(s) / float(C);
  float sq = 0.0f;
  for (int64_t i = lane; i < n; i += 32) {
    const V v = xr[i];
    const float* e = reinterpret_cast<const float*>(&v);
#pragma unroll
    for (int j = 0; j < L; ++j) sq += (e[j] - mu) * (e[j] - mu);
  }
  const float rs = 1.0f / sqrtf(warp_sum(sq) / float(C) + kEps);
  if (lane == 0) {
    if (mean) mean[r] = mu;
    if (rstd) rstd[r] = rs;
  }
  for (int64_t i = lane; i < n; i += 32) {
    const V v = xr[i], wi = wv[i], bi = bv[i];
    V o;
    const float* e = reinterpret_cast<const float*>(&v);
    const float* we = reinterpret_cast<const float*>(&wi);
    const float* be = reinterpret_cast<const float*>(&bi);
    float* oe = reinterpret_cast<float*>(&o);
#pragma unroll
    for (int j = 0; j < L; ++j) oe[j] = (e[j] - mu) * rs * we[j] + be[j];
    yr[i] = o;
  }
}

// One warp per row: dx[r] += rstd·(gh − mean(gh) − xhat·mean(gh·xhat)), gh = dy·w.
__global__ void layernorm_backward_dx(float* dx, const float* dy, const float* x, const float* w,
                                      const float* mean, const float* rstd, int64_t rows,
                                      int64_t C) {
  const int64_t r = blockIdx.x * int64_t(kWarpsPerBlock) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;
  const float* xr = x + r * C;
  const float* dyr = dy + r * C;
  const float mu = mean[r], rs = rstd[r];
  float sg = 0.0f, sgx = 0.0f;
  for (int64_t c = lane; c < C; c += 32) {
    const float xh = (xr[c] - mu) * rs, gh = dyr[c] * w[c];
    sg += gh;
    sgx += gh * xh;
  }
  sg = warp_sum(sg) / float(C);
  sgx = warp_sum(sgx) / float(C);
  float* dxr = dx + r * C;
  for (int64_t c = lane; c < C; c += 32) {
    const float xh = (xr[c] - mu) * rs, gh = dyr[c] * w[c];
    dxr[c] += rs * (gh - sg - xh * sgx);
  }
}

// Fused backward, one pass: a warp per row, the block owns kBwdRows rows.
// The row's x and dy stay in registers (NJ vectors of V per lane, read once),
// dx[r] += rstd·(gh − mean(gh) − xhat·mean(gh·xhat)) from two warp sums, and
// dw/db accumulate per lane over the warp's rows (in row order). The 4 warps
// are then added in warp order through shared memory into one partial row per
// block: pw[block, c] = Σ dy·xhat, pb[block, c] = Σ dy (fixed order, no
// atomics). dx, pw, pb may each be null. Needs C ≤ 32·NJ·L; dynamic shared
// memory kBwdWarps·C floats.
template <class V, int NJ>
__global__ void __launch_bounds__(kBwdThreads)
    layernorm_backward_fused(float* dx, float* pw, float* pb, const float* dy, const float* x,
                             const float* w, const float* mean, const float* rstd, int64_t rows,
                             int64_t C) {
  extern __shared__ float red[];  // [kBwdWarps][C]
  constexpr int L = sizeof(V) / sizeof(float);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int n = static_cast<int>(C / L);
  float wr[NJ][L], aw[NJ][L], ab[NJ][L];
#pragma unroll
  for (int j = 0; j < NJ; ++j) {
    const int i = lane + 32 * j;
    V wv;
    if (i < n) wv = reinterpret_cast<const V*>(w)[i];
    else memset(&wv, 0, sizeof wv);
#pragma unroll
    for (int l = 0; l < L; ++l) {
      wr[j][l] = reinterpret_cast<const float*>(&wv)[l];
      aw[j][l] = ab[j][l] = 0.0f;
    }
  }
  for (int rr = warp; rr < kBwdRows; rr += kBwdWarps) {
    const int64_t r = int64_t(blockIdx.x) * kBwdRows + rr;
    if (r >= rows) break;
    const V* xr = reinterpret_cast<const V*>(x + r * C);
    const V* dyr = reinterpret_cast<const V*>(dy + r * C);
    float xv[NJ][L], dv[NJ][L];
#pragma unroll
    for (int j = 0; j < NJ; ++j) {  // all of the row's loads in flight before any use
      const int i = lane + 32 * j;
      V a, b;
      if (i < n) a = xr[i], b = dyr[i];
      else memset(&a, 0, sizeof a), memset(&b, 0, sizeof b);
#pragma unroll
      for (int l = 0; l < L; ++l) {
        xv[j][l] = reinterpret_cast<const float*>(&a)[l];
        dv[j][l] = reinterpret_cast<const float*>(&b)[l];
      }
    }
    const float mu = mean[r], rs = rstd[r];
    float sg = 0.0f, sgx = 0.0f;  // lanes past C hold dy = 0: they add nothing
#pragma unroll
    for (int j = 0; j < NJ; ++j)
#pragma unroll
      for (int l = 0; l < L; ++l) {
        xv[j][l] = (xv[j][l] - mu) * rs;  // now xhat
        const float gh = dv[j][l] * wr[j][l];
        sg += gh;
        sgx += gh * xv[j][l];
        aw[j][l] += dv[j][l] * xv[j][l];
        ab[j][l] += dv[j][l];
      }
    sg = warp_sum(sg) / float(C);
    sgx = warp_sum(sgx) / float(C);
    if (dx) {
      V* dxr = reinterpret_cast<V*>(dx + r * C);
#pragma unroll
      for (int j = 0; j < NJ; ++j) {
        const int i = lane + 32 * j;
        if (i >= n) continue;
        V o = dxr[i];
        float* oe = reinterpret_cast<float*>(&o);
#pragma unroll
        for (int l = 0; l < L; ++l) oe[l] += rs * (dv[j][l] * wr[j][l] - sg - xv[j][l] * sgx);
        dxr[i] = o;
      }
    }
  }
  // Warps' partials added in warp order: dw first, then db through the same space.
#pragma unroll
  for (int pass = 0; pass < 2; ++pass) {
    float* out = pass == 0 ? pw : pb;
    if (!out) continue;  // uniform across the block
#pragma unroll
    for (int j = 0; j < NJ; ++j) {
      const int i = lane + 32 * j;
      if (i >= n) continue;
#pragma unroll
      for (int l = 0; l < L; ++l) red[warp * C + i * L + l] = pass == 0 ? aw[j][l] : ab[j][l];
    }
    __syncthreads();
    for (int c = threadIdx.x; c < C; c += kBwdThreads) {
      float s = 0.0f;
#pragma unroll
      for (int q = 0; q < kBwdWarps; ++q) s += red[q * C + c];
      out[int64_t(blockIdx.x) * C + c] = s;
    }
    __syncthreads();
  }
}

// pw[chunk, c] = Σ dy·xhat, pb[chunk, c] = Σ dy over the chunk's rows, in order.
// grid (ceil(C/256), chunks); one thread per column. (Path for C the fused
// kernel does not take.)
__global__ void layernorm_backward_dwdb_chunk(float* pw, float* pb, const float* dy,
                                              const float* x, const float* mean, const float* rstd,
                                              int64_t rows, int64_t C) {
  const int64_t c = blockIdx.x * int64_t(kThreads) + threadIdx.x;
  if (c >= C) return;
  const int64_t r0 = int64_t(blockIdx.y) * kRowChunk;
  const int64_t r1 = r0 + kRowChunk < rows ? r0 + kRowChunk : rows;
  float aw = 0.0f, ab = 0.0f;
#pragma unroll 4
  for (int64_t r = r0; r < r1; ++r) {
    const float d = dy[r * C + c];
    aw += d * ((x[r * C + c] - mean[r]) * rstd[r]);
    ab += d;
  }
  if (pw) pw[int64_t(blockIdx.y) * C + c] = aw;
  if (pb) pb[int64_t(blockIdx.y) * C + c] = ab;
}

// out_y[c] += Σ_k part_y[k, c] for y = blockIdx.y (out_0 = dw, out_1 = db; a
// null out is skipped), in a fixed order: see column_sums.cuh.
__global__ void __launch_bounds__(kThreads)
    sum_partials_into(float* out0, float* out1, const float* part0, const float* part1, int64_t nk,
                      int64_t cols) {
  float* out = blockIdx.y == 0 ? out0 : out1;
  const float* part = blockIdx.y == 0 ? part0 : part1;
  if (!out) return;  // uniform across the block
  detail::add_column_partials<kWarpsPerBlock>(out, part, nk, cols);
}

template <class V, int NJ>
cudaError_t launch_fused(float* dx, float* pw, float* pb, const float* dy, const float* x,
                         const float* w, const float* mean, const float* rstd, int64_t rows,
                         int64_t C, unsigned blocks, Stream stream) {
  layernorm_backward_fused<V, NJ><<<blocks, kBwdThreads, kBwdWarps * C * sizeof(float), stream>>>(
      dx, pw, pb, dy, x, w, mean, rstd, rows, C);
  return cudaGetLastError();
}

// The fused kernel for V and NJ = ceil(C / (32·L)) ≤ 8.
template <class V>
cudaError_t launch_fused_nj(int nj, float* dx, float* pw, float* pb, const float* dy,
                            const float* x, const float* w, const float* mean, const float* rstd,
                            int64_t rows, int64_t C, unsigned blocks, Stream stream) {
  switch (nj) {
#define RECA_LN_CASE(NJ) \
  case NJ: return launch_fused<V, NJ>(dx, pw, pb, dy, x, w, mean, rstd, rows, C, blocks, stream);
    RECA_LN_CASE(1) RECA_LN_CASE(2) RECA_LN_CASE(3) RECA_LN_CASE(4)
    RECA_LN_CASE(5) RECA_LN_CASE(6) RECA_LN_CASE(7) RECA_LN_CASE(8)
#undef RECA_LN_CASE
    default: return cudaErrorInvalidValue;
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* w,
                       const float* b, int64_t rows, int64_t C, Stream stream) {
  if (rows <= 0 || C <= 0) return;
  const unsigned blocks = static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  if (C % 4 == 0 && aligned16(y) && aligned16(x) && aligned16(w) && aligned16(b))
    layernorm_forward_kernel<float4><<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(y, mean, rstd, x, w, b, rows, C);
  else
    layernorm_forward_kernel<float><<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(y, mean, rstd, x, w, b, rows, C);
  RECA_CUDA_LAUNCHED("layernorm_forward");
}

void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                        const float* w, const float* mean, const float* rstd, int64_t rows,
                        int64_t C, Stream stream) {
  if (rows <= 0 || C <= 0 || (!dx && !dw && !db)) return;
  const bool vec = C % 4 == 0 && aligned16(dy) && aligned16(x) && aligned16(w) && aligned16(dx);
  const int nj = static_cast<int>(vec ? (C + 127) / 128 : (C + 31) / 32);
  if (nj <= kMaxNJ) {
    // Fused single pass + fixed-order sum of the per-block partials.
    const int64_t nblk = (rows + kBwdRows - 1) / kBwdRows;
    RECA_CHECK(nblk <= 0x7fffffffLL, InvalidArgument, "layernorm_backward: %lld rows is over the limit",
               static_cast<long long>(rows));
    float* partial = nullptr;  // [2, nblk, C]: dw partials, then db partials
    if (dw || db)
      detail::malloc_async(reinterpret_cast<void**>(&partial), 2 * size_t(nblk) * size_t(C) * sizeof(float), stream,
                           "layernorm_backward");
    float* pw = dw ? partial : nullptr;
    float* pb = db ? partial + nblk * C : nullptr;
    const unsigned blocks = static_cast<unsigned>(nblk);
    cudaError_t err = vec ? launch_fused_nj<float4>(nj, dx, pw, pb, dy, x, w, mean, rstd, rows, C, blocks, stream)
                          : launch_fused_nj<float>(nj, dx, pw, pb, dy, x, w, mean, rstd, rows, C, blocks, stream);
    if (err == cudaSuccess && (dw || db)) {
      const dim3 grid(static_cast<unsigned>((C + 31) / 32), 2);
      sum_partials_into<<<grid, kThreads, 0, stream>>>(dw, db, pw, pb, nblk, C);
      err = cudaGetLastError();
    }
    if (partial) {
      const cudaError_t ferr = cudaFreeAsync(partial, stream);
      if (err == cudaSuccess) err = ferr;
    }
    RECA_CUDA_CALL("layernorm_backward", err);
    return;
  }
  // Wide rows: a warp per row for dx, then column chunks for dw/db.
  if (dx) {
    const unsigned blocks = static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
    layernorm_backward_dx<<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(dx, dy, x, w, mean, rstd, rows, C);
    RECA_CUDA_LAUNCHED("layernorm_backward");
  }
  if (!dw && !db) return;
  const int64_t chunks = (rows + kRowChunk - 1) / kRowChunk;
  RECA_CHECK(chunks <= 65535, InvalidArgument, "layernorm_backward: %lld rows is over the limit %d",
             static_cast<long long>(rows), 65535 * kRowChunk);
  float* partial = nullptr;  // [2, chunks, C]: dw partials, then db partials
  detail::malloc_async(reinterpret_cast<void**>(&partial), 2 * size_t(chunks) * size_t(C) * sizeof(float), stream,
                       "layernorm_backward");
  float* pw = dw ? partial : nullptr;
  float* pb = db ? partial + chunks * C : nullptr;
  const dim3 grid(static_cast<unsigned>((C + kThreads - 1) / kThreads), static_cast<unsigned>(chunks));
  layernorm_backward_dwdb_chunk<<<grid, kThreads, 0, stream>>>(pw, pb, dy, x, mean, rstd, rows, C);
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) {
    const dim3 sgrid(static_cast<unsigned>((C + 31) / 32), 2);
    sum_partials_into<<<sgrid, kThreads, 0, stream>>>(dw, db, pw, pb, chunks, C);
    err = cudaGetLastError();
  }
  const cudaError_t ferr = cudaFreeAsync(partial, stream);
  if (err == cudaSuccess) err = ferr;
  RECA_CUDA_CALL("layernorm_backward", err);
}

}  // namespace reca::cuda
