// Internal to native/cuda: ordered chains of equal indices, so a gradient that
// scatters rows into a table (embedding, VQ codebook) adds each table row's
// contributions in index order n = 0..N-1 — the CPU's order, with no atomics
// and no sort. head[n] = 1 when ids[n] >= 0 and no earlier m has ids[m] ==
// ids[n]; next[n] = the smallest m > n with ids[m] == ids[n], or -1. A thread
// per n compares with every id through shared-memory tiles: O(N²) integer
// compares (N = rows of one batch: 3·10^3 at the base preset, microseconds).
#pragma once
#include <cstdint>

#include "cuda/kernel_util.cuh"

namespace reca::cuda::detail {
namespace {

constexpr int kLinkThreads = 256;

__global__ void __launch_bounds__(kLinkThreads)
    index_links_kernel(uint8_t* head, int32_t* next, const int32_t* ids, int64_t N) {
  __shared__ int32_t tile[kLinkThreads];
  // Every thread of the block runs every tile (the barrier needs all of them).
  for (int64_t base = int64_t(blockIdx.x) * kLinkThreads; base < N; base += int64_t(gridDim.x) * kLinkThreads) {
    const int64_t n = base + threadIdx.x;
    const int32_t id = n < N ? ids[n] : -1;
    bool first = true;
    int64_t nx = -1;
    for (int64_t t0 = 0; t0 < N; t0 += kLinkThreads) {
      __syncthreads();
      tile[threadIdx.x] = t0 + threadIdx.x < N ? ids[t0 + threadIdx.x] : -1;
      __syncthreads();
      if (id < 0) continue;
      const int m1 = N - t0 < kLinkThreads ? static_cast<int>(N - t0) : kLinkThreads;
      for (int q = 0; q < m1; ++q) {
        if (tile[q] != id) continue;
        const int64_t m = t0 + q;
        if (m < n) first = false;
        else if (m > n && nx < 0) nx = m;
      }
    }
    if (n < N) {
      head[n] = id >= 0 && first ? 1 : 0;
      next[n] = static_cast<int32_t>(nx);
    }
  }
}

}  // namespace

// head [N] u8, next [N] int32 (device); N < 2^31.
inline void index_links(uint8_t* head, int32_t* next, const int32_t* ids, int64_t N, Stream stream,
                        const char* op) {
  if (N <= 0) return;
  index_links_kernel<<<grid_for(N, kLinkThreads, 65535), kLinkThreads, 0, stream>>>(head, next, ids, N);
  RECA_CUDA_LAUNCHED(op);
}

}  // namespace reca::cuda::detail
