// GELU (tanh form, SPEC §0) with a fused bias, on the device; the semantics of
// reca::cpu::gelu_forward / gelu_backward.
#include "cuda/cuda_check.cuh"
#include "cuda/cuda_ops.h"

namespace reca::cuda {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCubic = 0.044715f;
// Rows per chunk of the dbias reduction: partial sums per chunk, then the
// chunks added in order (fixed, so the result is the same on every run).
constexpr int kRowChunk = 32;
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

// dx[r, c] += g = dy·gelu'(x + bias) for rows [chunk·R, chunk·R + R); with
// partial != null also partial[chunk, c] = Σ_rows-in-chunk g (rows in order).
// grid (ceil(cols/256), chunks); one thread per column.
__global__ void gelu_backward_chunk(float* dx, float* partial, const float* x, const float* bias,
                                    const float* dy, int64_t rows, int64_t cols) {
  const int64_t c = blockIdx.x * int64_t(kThreads) + threadIdx.x;
  if (c >= cols) return;
  const int64_t r0 = int64_t(blockIdx.y) * kRowChunk;
  const int64_t r1 = r0 + kRowChunk < rows ? r0 + kRowChunk : rows;
  const float b = bias ? bias[c] : 0.0f;
  float acc = 0.0f;
#pragma unroll 4
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t i = r * cols + c;
    const float g = gelu_grad(x[i] + b) * dy[i];
    dx[i] += g;
    acc += g;
  }
  if (partial) partial[int64_t(blockIdx.y) * cols + c] = acc;
}

// out[c] += Σ_chunk partial[chunk, c], chunks in order. One thread per column.
__global__ void sum_chunks_into(float* out, const float* partial, int64_t chunks, int64_t cols) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= cols) return;
  float s = 0.0f;
  for (int64_t k = 0; k < chunks; ++k) s += partial[k * cols + c];
  out[c] += s;
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
  const int64_t chunks = (rows + kRowChunk - 1) / kRowChunk;
  RECA_CHECK(chunks <= 65535, InvalidArgument, "gelu_backward: %lld rows is over the limit %d",
             static_cast<long long>(rows), 65535 * kRowChunk);
  float* partial = nullptr;
  if (dbias)
    RECA_CUDA_CALL("gelu_backward: cudaMallocAsync",
                   cudaMallocAsync(reinterpret_cast<void**>(&partial),
                                   size_t(chunks) * size_t(cols) * sizeof(float), stream));
  const dim3 grid(static_cast<unsigned>((cols + kThreads - 1) / kThreads), static_cast<unsigned>(chunks));
  gelu_backward_chunk<<<grid, kThreads, 0, stream>>>(dx, partial, x, bias, dy, rows, cols);
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess && dbias) {
    sum_chunks_into<<<detail::grid_1d(cols, kThreads), kThreads, 0, stream>>>(dbias, partial, chunks, cols);
    err = cudaGetLastError();
  }
  if (partial) cudaFreeAsync(partial, stream);
  RECA_CUDA_CALL("gelu_backward", err);
}

}  // namespace reca::cuda
