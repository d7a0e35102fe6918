// Internal to native/cuda: every CUDA runtime call and every kernel launch is
// checked, and a failure becomes reca::Error(E_CUDA, "<op>: <cuda error string>")
// (E_OUT_OF_MEMORY for a failed allocation).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/error.h"

namespace reca::cuda::detail {
[[noreturn]] void raise(const char* op, cudaError_t err);
// *p = cudaMallocAsync(bytes) on stream; out of memory throws E_OUT_OF_MEMORY
// naming op and the size (the error is cleared), any other failure E_CUDA.
void malloc_async(void** p, size_t bytes, cudaStream_t stream, const char* op);

inline unsigned grid_1d(int64_t n, int threads, int64_t cap = 65535LL * 16) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks > cap) blocks = cap;
  return static_cast<unsigned>(blocks < 1 ? 1 : blocks);
}
}  // namespace reca::cuda::detail

#define RECA_CUDA_CALL(op, expr)                                   \
  do {                                                             \
    const cudaError_t reca_err_ = (expr);                          \
    if (reca_err_ != cudaSuccess) ::reca::cuda::detail::raise(op, reca_err_); \
  } while (0)

// After a <<<...>>> launch: configuration errors surface here, faults at the
// next synchronising call.
#define RECA_CUDA_LAUNCHED(op) RECA_CUDA_CALL(op, cudaGetLastError())
