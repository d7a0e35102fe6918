// Fused softmax cross-entropy on the device (reca::cpu::cross_entropy_*
// semantics): a block per row; row max, Σ exp and the per-row loss through
// fixed-order block reductions; the loss sum over rows in double, in a fixed
// order (kernel_util's sum_doubles): the same bits on every run.
#include <cmath>

#include "cuda/kernel_util.cuh"

namespace reca::cuda {
namespace {

using detail::kBlock;

// Row r (grid-stride): t = targets[r]; t < 0: loss 0, nothing else.
// CE = log Σ exp(x − m) + m − x[t] (double from the float sum, as the CPU);
// dlogits[r, c] += exp(x − m)·(scale/s), then dlogits[r, t] −= scale.
__global__ void __launch_bounds__(kBlock)
    ce_kernel(double* row_loss, float* losses, float* dlogits, const float* logits, const int32_t* targets,
              float scale, int64_t rows, int64_t V) {
  __shared__ float shf[kBlock];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int32_t t = targets[r];
    if (t < 0) {  // uniform across the block
      if (threadIdx.x == 0) {
        row_loss[r] = 0.0;
        if (losses) losses[r] = 0.0f;
      }
      continue;
    }
    const float* x = logits + r * V;
    float m = -INFINITY;
    for (int64_t c = threadIdx.x; c < V; c += kBlock) m = fmaxf(m, x[c]);
    m = detail::block_max(m, shf);
    float s = 0.0f;
    for (int64_t c = threadIdx.x; c < V; c += kBlock) s += expf(x[c] - m);
    s = detail::block_sum(s, shf);
    if (threadIdx.x == 0) {
      const double l = log(static_cast<double>(s)) + (static_cast<double>(m) - static_cast<double>(x[t]));
      row_loss[r] = l;
      if (losses) losses[r] = static_cast<float>(l);
    }
    if (dlogits) {
      const float k = scale / s;
      float* g = dlogits + r * V;
      for (int64_t c = threadIdx.x; c < V; c += kBlock) {
        float v = fmaf(expf(x[c] - m), k, g[c]);
        if (c == t) v -= scale;
        g[c] = v;
      }
    }
  }
}

}  // namespace

double cross_entropy(float* losses, float* dlogits, const float* logits, const int32_t* targets,
                     float scale, int64_t rows, int64_t V, Stream stream) {
  if (rows <= 0 || V <= 0) return 0.0;
  detail::Scratch row_loss(size_t(rows) * sizeof(double), stream, "cross_entropy");
  ce_kernel<<<detail::grid_for(rows, 1), kBlock, 0, stream>>>(row_loss.as<double>(), losses, dlogits, logits,
                                                                targets, scale, rows, V);
  RECA_CUDA_LAUNCHED("cross_entropy");
  return detail::sum_doubles(row_loss.as<double>(), rows, stream, "cross_entropy");
}

}  // namespace reca::cuda
