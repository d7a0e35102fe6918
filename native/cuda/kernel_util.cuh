// Internal to native/cuda: helpers the op families share. Scratch memory from
// the stream-ordered pool, grid-stride bounds, and reductions whose order is
// fixed (a shared-memory tree with fixed pairs, or a butterfly over a warp), so
// the same inputs give the same bits on every run. No float atomics anywhere.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/cuda_check.cuh"
#include "cuda/cuda_ops.h"

namespace reca::cuda::detail {

// Device scratch from the stream-ordered pool (cudaMallocAsync), freed
// stream-ordered when it goes out of scope. A failed allocation throws
// E_OUT_OF_MEMORY naming `op` and the size (the pending error is cleared).
class Scratch {
 public:
  Scratch(size_t bytes, Stream stream, const char* op);
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <class T>
  T* as() const { return static_cast<T*>(p_); }

 private:
  void* p_ = nullptr;
  Stream stream_ = nullptr;
};

// Copies a host array into device scratch (stream-ordered; the host array may be
// reused at once: pageable copies are staged before the call returns).
void upload_async(void* dst, const void* host, size_t bytes, Stream stream, const char* op);

// Grid of a grid-stride loop over n items of `threads`-wide blocks (>= 1 block).
inline unsigned grid_for(int64_t n, int threads, int64_t cap = 1LL << 20) {
  return grid_1d(n, threads, cap);
}

constexpr int kBlock = 256;  // threads of the block-reduction kernels

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ int warp_sum_int(int v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// The block tree of `combine` over one value per thread of a kBlock-thread
// block, pairs fixed by position (so the same bits every run); every thread
// gets the result. sh: kBlock elements of shared memory.
template <class T, class Combine>
__device__ __forceinline__ T block_reduce(T v, T* sh, Combine combine) {
  sh[threadIdx.x] = v;
  __syncthreads();
#pragma unroll
  for (int s = kBlock / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh[threadIdx.x] = combine(sh[threadIdx.x], sh[threadIdx.x + s]);
    __syncthreads();
  }
  const T r = sh[0];
  __syncthreads();
  return r;
}
template <class T>
__device__ __forceinline__ T block_sum(T v, T* sh) {
  return block_reduce(v, sh, [](T a, T b) { return a + b; });
}
template <class T>
__device__ __forceinline__ T block_max(T v, T* sh) {
  return block_reduce(v, sh, [](T a, T b) { return a > b ? a : b; });
}
template <class T>
__device__ __forceinline__ T block_min(T v, T* sh) {
  return block_reduce(v, sh, [](T a, T b) { return a < b ? a : b; });
}

// Σ x[0..n) in double: thread t adds x[t], x[t + kBlock], … in order, then the
// block tree (one block).
// Returns the sum of the device doubles x[0..n) to the host; waits for the stream.
double sum_doubles(const double* x, int64_t n, Stream stream, const char* op);

}  // namespace reca::cuda::detail
