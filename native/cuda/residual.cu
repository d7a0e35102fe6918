// Elementwise ops on the device with the CPU kernels' rounding (reca::cpu
// residual_*, the backend's clamp and strided row copies): each element is
// computed by one thread with the same operations, so the bits match the CPU.
#include "cuda/kernel_util.cuh"

namespace reca::cuda {
namespace {

constexpr int kThreads = 256;

#define RECA_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

__global__ void add_kernel(float* out, const float* a, const float* b, int64_t n) {
  RECA_GRID_STRIDE(i, n) out[i] = __fadd_rn(a[i], b[i]);
}
__global__ void axpy_kernel(float* y, float alpha, const float* x, int64_t n) {
  RECA_GRID_STRIDE(i, n) y[i] = fmaf(alpha, x[i], y[i]);  // the CPU's fmadd
}
__global__ void scale_kernel(float* x, float s, int64_t n) {
  RECA_GRID_STRIDE(i, n) x[i] = __fmul_rn(x[i], s);
}
__global__ void clamp_kernel(float* x, float lo, float hi, int64_t n) {
  RECA_GRID_STRIDE(i, n) {
    const float v = x[i];
    x[i] = v < lo ? lo : (v > hi ? hi : v);
  }
}
// Element e of the block [B, Lb, D] and its place in the sequence [B, Ls, D].
__global__ void rows_kernel(float* seq, const float* block_in, float* block_out, const float* seq_in,
                            int64_t B, int64_t Ls, int64_t row0, int64_t Lb, int64_t D, bool accumulate,
                            bool to_seq) {
  const int64_t per = Lb * D, n = B * per;
  RECA_GRID_STRIDE(e, n) {
    const int64_t b = e / per, rem = e - b * per;
    const int64_t si = (b * Ls + row0) * D + rem;
    if (to_seq) seq[si] = accumulate ? __fadd_rn(seq[si], block_in[e]) : block_in[e];
    else block_out[e] = accumulate ? __fadd_rn(block_out[e], seq_in[si]) : seq_in[si];
  }
}

}  // namespace

void add(float* out, const float* a, const float* b, int64_t n, Stream stream) {
  if (n <= 0) return;
  add_kernel<<<detail::grid_for(n, kThreads), kThreads, 0, stream>>>(out, a, b, n);
  RECA_CUDA_LAUNCHED("add");
}
void axpy(float* y, float alpha, const float* x, int64_t n, Stream stream) {
  if (n <= 0) return;
  axpy_kernel<<<detail::grid_for(n, kThreads), kThreads, 0, stream>>>(y, alpha, x, n);
  RECA_CUDA_LAUNCHED("axpy");
}
void scale(float* x, float s, int64_t n, Stream stream) {
  if (n <= 0) return;
  scale_kernel<<<detail::grid_for(n, kThreads), kThreads, 0, stream>>>(x, s, n);
  RECA_CUDA_LAUNCHED("scale");
}
void clamp(float* x, float lo, float hi, int64_t n, Stream stream) {
  if (n <= 0) return;
  clamp_kernel<<<detail::grid_for(n, kThreads), kThreads, 0, stream>>>(x, lo, hi, n);
  RECA_CUDA_LAUNCHED("clamp");
}
void rows_to_seq(float* seq, const float* block, int64_t B, int64_t Ls, int64_t row0, int64_t Lb,
                 int64_t D, bool accumulate, Stream stream) {
  const int64_t n = B * Lb * D;
  if (n <= 0) return;
  rows_kernel<<<detail::grid_for(n, kThreads), kThreads, 0, stream>>>(seq, block, nullptr, nullptr, B, Ls,
                                                                       row0, Lb, D, accumulate, true);
  RECA_CUDA_LAUNCHED("rows_to_seq");
}
void rows_from_seq(float* block, const float* seq, int64_t B, int64_t Ls, int64_t row0,
                   int64_t Lb, int64_t D, bool accumulate, Stream stream) {
  const int64_t n = B * Lb * D;
  if (n <= 0) return;
  rows_kernel<<<detail::grid_for(n, kThreads), kThreads, 0, stream>>>(nullptr, nullptr, block, seq, B, Ls,
                                                                       row0, Lb, D, accumulate, false);
  RECA_CUDA_LAUNCHED("rows_from_seq");
}

}  // namespace reca::cuda
