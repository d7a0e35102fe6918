// Sinusoidal timestep features (reca::cpu::time_embed_forward: double math,
// rounded once) and the flow noising z_t = (1 − t)·x0 + t·ε, v = ε − x0.
#include <cmath>

#include "cpu/time_embed.h"
#include "cuda/kernel_util.cuh"

namespace reca::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kHalf = 128;  // reca::cpu::kTimeEmbedHalf

// out[b, k] = cos(s·f_k), out[b, 128 + k] = sin(s·f_k); s = 1000·t_b,
// f_k = exp(−ln(1e4)·k/128), all in double (the CPU's expression order).
__global__ void time_embed_kernel(float* out, const float* t, int64_t B, double ln1e4) {
  const int64_t n = B * kHalf;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = e / kHalf, k = e - b * kHalf;
    const double s = __dmul_rn(1000.0, static_cast<double>(t[b]));
    const double f = exp(__ddiv_rn(__dmul_rn(-ln1e4, static_cast<double>(k)), static_cast<double>(kHalf)));
    const double a = __dmul_rn(s, f);
    out[b * 2 * kHalf + k] = static_cast<float>(cos(a));
    out[b * 2 * kHalf + kHalf + k] = static_cast<float>(sin(a));
  }
}

// Over [B, n]: two products and a sum, unfused, as the CPU (-ffp-contract=off).
__global__ void flow_noise_kernel(float* zt, float* v, const float* x0, const float* eps, const float* t,
                                  int64_t B, int64_t n) {
  const int64_t total = B * n;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const float tb = t[i / n], keep = __fsub_rn(1.0f, tb);
    zt[i] = __fadd_rn(__fmul_rn(keep, x0[i]), __fmul_rn(tb, eps[i]));
    v[i] = __fsub_rn(eps[i], x0[i]);
  }
}

}  // namespace

void time_embed_forward(float* out, const float* t, int64_t B, Stream stream) {
  static_assert(kHalf == cpu::kTimeEmbedHalf, "time embedding width");
  if (B <= 0) return;
  time_embed_kernel<<<detail::grid_for(B * kHalf, kThreads), kThreads, 0, stream>>>(out, t, B, std::log(10000.0));
  RECA_CUDA_LAUNCHED("time_embed_forward");
}

void flow_noise(float* zt, float* v, const float* x0, const float* eps, const float* t, int64_t B,
                int64_t n, Stream stream) {
  if (B <= 0 || n <= 0) return;
  flow_noise_kernel<<<detail::grid_for(B * n, kThreads), kThreads, 0, stream>>>(zt, v, x0, eps, t, B, n);
  RECA_CUDA_LAUNCHED("flow_noise");
}

}  // namespace reca::cuda
