// Mean squared error on the device (reca::cpu::mse_* semantics). The forward
// sums squares in fixed 4096-element blocks (in double, a block tree), block
// partials added in block order: the same bits on every run. The backward is
// elementwise with the CPU's fused multiply-add (the same bits as the CPU).
#include "cuda/kernel_util.cuh"

namespace reca::cuda {
namespace {

using detail::kBlock;
constexpr int64_t kChunk = 4096;

// partial[b] = Σ (pred − target)² over block b's elements (grid-stride over blocks).
__global__ void __launch_bounds__(kBlock)
    sumsq_diff_kernel(double* partial, const float* pred, const float* target, int64_t n, int64_t blocks) {
  __shared__ double sh[kBlock];
  for (int64_t b = blockIdx.x; b < blocks; b += gridDim.x) {
    const int64_t i0 = b * kChunk, i1 = i0 + kChunk < n ? i0 + kChunk : n;
    double s = 0.0;
    for (int64_t i = i0 + threadIdx.x; i < i1; i += kBlock) {
      const double d = static_cast<double>(__fsub_rn(pred[i], target[i]));
      s += d * d;
    }
    s = detail::block_sum(s, sh);
    if (threadIdx.x == 0) partial[b] = s;
  }
}

__global__ void mse_backward_kernel(float* dpred, const float* pred, const float* target, float coef, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dpred[i] = fmaf(coef, __fsub_rn(pred[i], target[i]), dpred[i]);
}

}  // namespace

float mse_forward(const float* pred, const float* target, int64_t n, Stream stream) {
  if (n <= 0) return 0.0f;
  const int64_t blocks = (n + kChunk - 1) / kChunk;
  detail::Scratch partial(size_t(blocks) * sizeof(double), stream, "mse_forward");
  sumsq_diff_kernel<<<detail::grid_for(blocks, 1), kBlock, 0, stream>>>(partial.as<double>(), pred, target, n, blocks);
  RECA_CUDA_LAUNCHED("mse_forward");
  const double sum = detail::sum_doubles(partial.as<double>(), blocks, stream, "mse_forward");
  return static_cast<float>(sum / static_cast<double>(n));
}

void mse_backward(float* dpred, const float* pred, const float* target, float scale, int64_t n,
                  Stream stream) {
  if (n <= 0) return;
  const float coef = static_cast<float>(2.0 * static_cast<double>(scale) / static_cast<double>(n));
  mse_backward_kernel<<<detail::grid_for(n, kBlock), kBlock, 0, stream>>>(dpred, pred, target, coef, n);
  RECA_CUDA_LAUNCHED("mse_backward");
}

}  // namespace reca::cuda
