// Fixed-order column sums of per-block partials, shared by the backward
// kernels whose parameter gradients (dbias, dw, db) reduce over rows: each row
// tile writes one row of partials, and this adds them up with no atomics, in
// an order that never changes, so the result is the same bits on every run.
#pragma once
#include <cstdint>

namespace reca::cuda::detail {

// out[c] += Σ_k partial[k, c] for this block's 32 columns c = blockIdx.x·32 + lane.
// Warp q adds the rows k ≡ q (mod kWarps) in order, then the kWarps warp sums
// are added in warp order (1/kWarps of the serial chain of one thread per
// column). Launch with kWarps·32 threads and ceil(cols/32) blocks in x.
template <int kWarps>
__device__ __forceinline__ void add_column_partials(float* out, const float* partial, int64_t nk,
                                                    int64_t cols) {
  __shared__ float s[kWarps][33];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t c = int64_t(blockIdx.x) * 32 + lane;
  float acc = 0.0f;
  if (c < cols) {
#pragma unroll 4
    for (int64_t k = warp; k < nk; k += kWarps) acc += partial[k * cols + c];
  }
  s[warp][lane] = acc;
  __syncthreads();
  if (warp == 0 && c < cols) {
    float t = 0.0f;
#pragma unroll
    for (int q = 0; q < kWarps; ++q) t += s[q][lane];
    out[c] += t;
  }
}

}  // namespace reca::cuda::detail
