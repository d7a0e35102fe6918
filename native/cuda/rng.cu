// Philox fills on the device: the same functions as the host (core/philox.h),
// so every element is bit-identical to reca::philox_fill_* and philox_permutation.
#include "core/philox.h"
#include "cuda/cuda_check.cuh"
#include "cuda/cuda_ops.h"

namespace reca::cuda {
namespace {

// out[k] = philox_uniform(seed, sid, offset + k), k < n. Grid-stride.
__global__ void fill_uniform_kernel(uint64_t seed, uint64_t sid, float* out, int64_t n,
                                    uint64_t offset) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x)
    out[k] = philox_uniform(seed, sid, offset + k);
}

// out[k] = philox_normal(seed, sid, offset + k), k < n. Grid-stride.
__global__ void fill_normal_kernel(uint64_t seed, uint64_t sid, float* out, int64_t n,
                                   uint64_t offset) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x)
    out[k] = philox_normal(seed, sid, offset + k);
}

// out[r, 0..n) = philox_permutation(seed, sid + r, n): one thread per row,
// Fisher–Yates is sequential (rows are short: a permutation per sample).
__global__ void permutations_kernel(uint64_t seed, uint64_t sid, int64_t n, int64_t count,
                                    int32_t* out) {
  const int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (r < count) philox_permutation(seed, sid + r, n, out + r * n);
}

}  // namespace

void philox_fill_uniform(uint64_t seed, uint64_t stream_id, float* out, int64_t n,
                         uint64_t offset, Stream stream) {
  if (n <= 0) return;
  fill_uniform_kernel<<<detail::grid_1d(n, 256), 256, 0, stream>>>(seed, stream_id, out, n, offset);
  RECA_CUDA_LAUNCHED("philox_fill_uniform");
}

void philox_fill_normal(uint64_t seed, uint64_t stream_id, float* out, int64_t n,
                        uint64_t offset, Stream stream) {
  if (n <= 0) return;
  fill_normal_kernel<<<detail::grid_1d(n, 256), 256, 0, stream>>>(seed, stream_id, out, n, offset);
  RECA_CUDA_LAUNCHED("philox_fill_normal");
}

void philox_permutations(uint64_t seed, uint64_t stream_id, int64_t n, int64_t count,
                         int32_t* out, Stream stream) {
  if (n <= 0 || count <= 0) return;
  permutations_kernel<<<detail::grid_1d(count, 64), 64, 0, stream>>>(seed, stream_id, n, count, out);
  RECA_CUDA_LAUNCHED("philox_permutations");
}

}  // namespace reca::cuda
