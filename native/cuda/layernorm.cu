// LayerNorm over the last dim (SPEC §0, eps 1e-5) on the device; the semantics
// of reca::cpu::layernorm_forward / layernorm_backward.
#include "cuda/cuda_check.cuh"
#include "cuda/cuda_ops.h"

namespace reca::cuda {
namespace {

constexpr float kEps = 1e-5f;
constexpr int kWarpsPerBlock = 8;
constexpr int kRowChunk = 32;  // rows per partial sum of dw/db (fixed: deterministic)
constexpr int kThreads = 256;

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

// pw[chunk, c] = Σ dy·xhat, pb[chunk, c] = Σ dy over the chunk's rows, in order.
// grid (ceil(C/256), chunks); one thread per column.
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

// out[c] += Σ_chunk partial[chunk, c], chunks in order.
__global__ void sum_chunks_into(float* out, const float* partial, int64_t chunks, int64_t cols) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= cols) return;
  float s = 0.0f;
  for (int64_t k = 0; k < chunks; ++k) s += partial[k * cols + c];
  out[c] += s;
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
  if (rows <= 0 || C <= 0) return;
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
  RECA_CUDA_CALL("layernorm_backward: cudaMallocAsync",
                 cudaMallocAsync(reinterpret_cast<void**>(&partial),
                                 2 * size_t(chunks) * size_t(C) * sizeof(float), stream));
  float* pw = dw ? partial : nullptr;
  float* pb = db ? partial + chunks * C : nullptr;
  const dim3 grid(static_cast<unsigned>((C + kThreads - 1) / kThreads), static_cast<unsigned>(chunks));
  layernorm_backward_dwdb_chunk<<<grid, kThreads, 0, stream>>>(pw, pb, dy, x, mean, rstd, rows, C);
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess && dw) {
    sum_chunks_into<<<detail::grid_1d(C, kThreads), kThreads, 0, stream>>>(dw, pw, chunks, C);
    err = cudaGetLastError();
  }
  if (err == cudaSuccess && db) {
    sum_chunks_into<<<detail::grid_1d(C, kThreads), kThreads, 0, stream>>>(db, pb, chunks, C);
    err = cudaGetLastError();
  }
  cudaFreeAsync(partial, stream);
  RECA_CUDA_CALL("layernorm_backward", err);
}

}  // namespace reca::cuda
