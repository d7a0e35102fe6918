// GELU (tanh form, SPEC §0) with a fused bias, on the device; the semantics of
// reca::cpu::gelu_forward / gelu_backward.
#include "cuda/cuda_check.cuh"
#include "cuda/column_sums.cuh"
#include "cuda/cuda_ops.h"

namespace reca::cuda {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCubic = 0.044715f;
// Rows per tile of the backward: one dbias partial row per tile, the tiles
// then added in a fixed order (the same result on every run). 16 rows: at
// [3104, 3072] 582 blocks, all resident, and +3% bytes for the partials.
constexpr int kTileRows = 16;
constexpr int kBatch = 4;  // rows whose loads are in flight together
constexpr int kThreads = 256;

__device__ __forceinline__ float gelu_f(float v) {
  return 0.5f * v * (1.0f + tanhf(kSqrt2OverPi * (v + kCubic * v * v * v)));
}
__device__ __forceinline__ float gelu_grad(float v) {
  const float t = tanhf(kSqrt2OverPi * (v + kCubic * v * v * v));
  return 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * kSqrt2OverPi * (1.0f + 3.0f * kCubic * v * v);
}

// y[r, c] = gelu(x[r, c] + bias[c]); x, y: [rows, cols]; 4 columns per thread
// (cols % 4 == 0, 16-byte aligned rows). Grid-stride over rows·cols/4.
__global__ void gelu_forward_vec4(float4* y, const float4* x, const float4* bias, int64_t n4,
                                  int64_t cols4) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4;
       i += int64_t(gridDim.x) * blockDim.x) {
    float4 v = x[i];
    if (bias) {
      const float4 b = bias[i % cols4];
      v.x += b.x, v.y += b.y, v.z += b.z, v.w += b.w;
    }
    y[i] = make_float4(gelu_f(v.x), gelu_f(v.y), gelu_f(v.z), gelu_f(v.w));
  }
}

// Same, one element per thread (any cols).
__global__ void gelu_forward_scalar(float* y, const float* x, const float* bias, int64_t n,
                                    int64_t cols) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float v = x[i] + (bias ? bias[i % cols] : 0.0f);
    y[i] = gelu_f(v);
  }
}

// dx[r, c] += g = dy·gelu'(x + bias) for the block's kTileRows rows; with
// partial != null also partial[tile, c] = Σ_rows-in-tile g (rows in order).
// grid (ceil(cols/L/256), tiles); a thread owns L adjacent columns (V = float4
// when cols % 4 == 0 and the rows are 16-byte aligned). Rows go in batches of
// kBatch: all the batch's loads are issued before its first store. 3 blocks
// per SM (77 registers, no spills): 24 warps of loads in flight per SM.
template <class V>
__global__ void __launch_bounds__(kThreads, 3)
    gelu_backward_tile(float* dx, float* partial, const float* x, const float* bias,
                       const float* dy, int64_t rows, int64_t cols) {
  constexpr int L = sizeof(V) / sizeof(float);
  const int64_t n = cols / L;
  const int64_t c = blockIdx.x * int64_t(kThreads) + threadIdx.x;
  if (c >= n) return;
  const int64_t r0 = int64_t(blockIdx.y) * kTileRows;
  const int64_t r1 = r0 + kTileRows < rows ? r0 + kTileRows : rows;
  float b[L], acc[L];
  {
    V bv;
    if (bias) bv = reinterpret_cast<const V*>(bias)[c];
    else memset(&bv, 0, sizeof bv);
#pragma unroll
    for (int l = 0; l < L; ++l) b[l] = reinterpret_cast<const float*>(&bv)[l], acc[l] = 0.0f;
  }
  const V* xv = reinterpret_cast<const V*>(x);
  const V* dyv = reinterpret_cast<const V*>(dy);
  V* dxv = reinterpret_cast<V*>(dx);
  for (int64_t rb = r0; rb < r1; rb += kBatch) {
    V xs[kBatch], ds[kBatch], os[kBatch];
#pragma unroll
    for (int q = 0; q < kBatch; ++q) {
      if (rb + q < r1) {
        const int64_t i = (rb + q) * n + c;
        xs[q] = xv[i], ds[q] = dyv[i], os[q] = dxv[i];
      }
    }
#pragma unroll
    for (int q = 0; q < kBatch; ++q) {
      if (rb + q >= r1) continue;
      const float* xe = reinterpret_cast<const float*>(&xs[q]);
      const float* de = reinterpret_cast<const float*>(&ds[q]);
      float* oe = reinterpret_cast<float*>(&os[q]);
#pragma unroll
      for (int l = 0; l < L; ++l) {
        const float g = gelu_grad(xe[l] + b[l]) * de[l];
        oe[l] += g;
        acc[l] += g;
      }
      dxv[(rb + q) * n + c] = os[q];
    }
  }
  if (partial) {
#pragma unroll
    for (int l = 0; l < L; ++l) partial[int64_t(blockIdx.y) * cols + c * L + l] = acc[l];
  }
}

// dbias[c] += Σ_k partial[k, c] (fixed order: see column_sums.cuh).
__global__ void __launch_bounds__(kThreads)
    sum_partials_into(float* out, const float* partial, int64_t nk, int64_t cols) {
  detail::add_column_partials<kThreads / 32>(out, partial, nk, cols);
}

}  // namespace

void gelu_forward(float* y, const float* x, const float* bias, int64_t rows, int64_t cols,
                  Stream stream) {
  const int64_t n = rows * cols;
  if (n <= 0) return;
  const bool vec = cols % 4 == 0 && (reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(y) |
                                     reinterpret_cast<uintptr_t>(bias)) % 16 == 0;
  if (vec) {
    gelu_forward_vec4<<<detail::grid_1d(n / 4, kThreads), kThreads, 0, stream>>>(
        reinterpret_cast<float4*>(y), reinterpret_cast<const float4*>(x),
        reinterpret_cast<const float4*>(bias), n / 4, cols / 4);
  } else {
    gelu_forward_scalar<<<detail::grid_1d(n, kThreads), kThreads, 0, stream>>>(y, x, bias, n, cols);
  }
  RECA_CUDA_LAUNCHED("gelu_forward");
}

void gelu_backward(float* dx, float* dbias, const float* x, const float* bias, const float* dy,
                   int64_t rows, int64_t cols, Stream stream) {
  if (rows <= 0 || cols <= 0) return;
  const int64_t tiles = (rows + kTileRows - 1) / kTileRows;
  RECA_CHECK(tiles <= 65535, InvalidArgument, "gelu_backward: %lld rows is over the limit %d",
             static_cast<long long>(rows), 65535 * kTileRows);
  const bool vec = cols % 4 == 0 && (reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(dy) |
                                     reinterpret_cast<uintptr_t>(dx) | reinterpret_cast<uintptr_t>(bias)) %
                                            16 == 0;
  float* partial = nullptr;
  if (dbias)
    detail::malloc_async(reinterpret_cast<void**>(&partial), size_t(tiles) * size_t(cols) * sizeof(float), stream,
                         "gelu_backward");
  const int64_t groups = vec ? cols / 4 : cols;
  const dim3 grid(static_cast<unsigned>((groups + kThreads - 1) / kThreads), static_cast<unsigned>(tiles));
  if (vec) gelu_backward_tile<float4><<<grid, kThreads, 0, stream>>>(dx, partial, x, bias, dy, rows, cols);
  else gelu_backward_tile<float><<<grid, kThreads, 0, stream>>>(dx, partial, x, bias, dy, rows, cols);
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess && dbias) {
    sum_partials_into<<<static_cast<unsigned>((cols + 31) / 32), kThreads, 0, stream>>>(dbias, partial, tiles, cols);
    err = cudaGetLastError();
  }
  if (partial) {
    const cudaError_t ferr = cudaFreeAsync(partial, stream);
    if (err == cudaSuccess) err = ferr;
  }
  RECA_CUDA_CALL("gelu_backward", err);
}

}  // namespace reca::cuda
