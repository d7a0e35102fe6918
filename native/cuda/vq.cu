// Vector quantisation on the device (reca::cpu::vq_* semantics).
//   vq_nearest       a warp per row; every code's canonical distance (double,
//                    in order c = 0..C−1, no fused multiply-add: __dsub_rn /
//                    __dmul_rn / __dadd_rn), strict minimum per lane over
//                    increasing k, then a butterfly keeping (lower distance,
//                    then lower k): exactly the reference's code.
//   vq_loss_forward  Σ (z − e)² in double over fixed 256-row blocks, blocks
//                    added in order (the same bits every run); host scalars.
//   vq_loss_backward dz elementwise (the CPU's fma then add); dcodebook: each
//                    code's rows added in order r along an index chain (the
//                    CPU's order and rounding), no atomics.
#include <cmath>

#include "core/error.h"
#include "cuda/index_links.cuh"
#include "cuda/kernel_util.cuh"

namespace reca::cuda {
namespace {

using detail::kBlock;
constexpr int kWarps = 8;
constexpr int64_t kLossRows = 256;

__global__ void __launch_bounds__(32 * kWarps)
    vq_nearest_kernel(int32_t* codes, const float* z, const float* codebook, int64_t n, int64_t K, int64_t C) {
  const int lane = threadIdx.x % 32;
  for (int64_t r = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32; r < n; r += int64_t(gridDim.x) * kWarps) {
    const float* zr = z + r * C;
    double best = INFINITY;
    int64_t bk = INT64_MAX;
    for (int64_t k = lane; k < K; k += 32) {
      const float* e = codebook + k * C;
      double acc = 0.0;
      for (int64_t c = 0; c < C; ++c) {
        const double d = __dsub_rn(static_cast<double>(zr[c]), static_cast<double>(e[c]));
        acc = __dadd_rn(acc, __dmul_rn(d, d));
      }
      if (bk == INT64_MAX || acc < best) best = acc, bk = k;  // a lane's first code always counts
    }
    // Lanes hold (best, bk) over disjoint k; keep the lower distance, ties → lower k.
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const double ob = __shfl_xor_sync(0xffffffffu, best, o);
      const long long ok = __shfl_xor_sync(0xffffffffu, static_cast<long long>(bk), o);
      if (ob < best || (ob == best && ok < bk)) best = ob, bk = ok;
    }
    if (lane == 0) codes[r] = static_cast<int32_t>(bk == INT64_MAX ? 0 : bk);
  }
}

__global__ void vq_gather_kernel(float* out, const int32_t* codes, const float* codebook, int64_t n, int64_t C) {
  const int64_t total = n * C;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / C;
    out[e] = codebook[int64_t(codes[r]) * C + (e - r * C)];
  }
}

// partial[b] = Σ over rows [b·256, …) of Σ_c (z − e)², double, block tree.
__global__ void __launch_bounds__(kBlock)
    vq_sumsq_kernel(double* partial, const float* z, const float* codebook, const int32_t* codes, int64_t n,
                    int64_t C, int64_t blocks) {
  __shared__ double sh[kBlock];
  for (int64_t b = blockIdx.x; b < blocks; b += gridDim.x) {
    const int64_t e0 = b * kLossRows * C, e1 = (b * kLossRows + kLossRows < n ? b * kLossRows + kLossRows : n) * C;
    double s = 0.0;
    for (int64_t e = e0 + threadIdx.x; e < e1; e += kBlock) {
      const int64_t r = e / C;
      const double d = static_cast<double>(z[e]) - static_cast<double>(codebook[int64_t(codes[r]) * C + (e - r * C)]);
      s += d * d;
    }
    s = detail::block_sum(s, sh);
    if (threadIdx.x == 0) partial[b] = s;
  }
}

// dz[r, c] += fma(cz, z − e, dz_q) (dz_q null: 0).
__global__ void vq_dz_kernel(float* dz, const float* dz_q, const float* z, const float* codebook,
                             const int32_t* codes, float cz, int64_t n, int64_t C) {
  const int64_t total = n * C;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / C;
    const float er = codebook[int64_t(codes[r]) * C + (e - r * C)];
    const float g = fmaf(cz, __fsub_rn(z[e], er), dz_q ? dz_q[e] : 0.0f);
    dz[e] = __fadd_rn(dz[e], g);
  }
}

// Thread (r, c) for every head row r of its code k: dcodebook[k, c] =
// fma(cb, e − z_r, ·) along k's rows in order.
__global__ void vq_dcodebook_kernel(float* dcodebook, const float* z, const float* codebook,
                                    const int32_t* codes, const uint8_t* head, const int32_t* next, float cb,
                                    int64_t n, int64_t C) {
  const int64_t total = n * C;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / C, c = e - r * C;
    if (!head[r]) continue;
    const int64_t k = codes[r];
    const float ek = codebook[k * C + c];
    float acc = dcodebook[k * C + c];
    for (int64_t m = r; m >= 0; m = next[m]) acc = fmaf(cb, __fsub_rn(ek, z[m * C + c]), acc);
    dcodebook[k * C + c] = acc;
  }
}

constexpr int kThreads = 256;

}  // namespace

void vq_nearest(int32_t* codes, const float* z, const float* codebook, int64_t n, int64_t K,
                int64_t C, Stream stream) {
  if (n <= 0) return;
  vq_nearest_kernel<<<detail::grid_for(n, kWarps), 32 * kWarps, 0, stream>>>(codes, z, codebook, n, K, C);
  RECA_CUDA_LAUNCHED("vq_nearest");
}

void vq_gather(float* out, const int32_t* codes, const float* codebook, int64_t n, int64_t C,
               Stream stream) {
  if (n <= 0 || C <= 0) return;
  vq_gather_kernel<<<detail::grid_for(n * C, kThreads), kThreads, 0, stream>>>(out, codes, codebook, n, C);
  RECA_CUDA_LAUNCHED("vq_gather");
}

void vq_loss_forward(float* loss_codebook_host, float* loss_commit_host, const float* z,
                     const float* codebook, const int32_t* codes, int64_t n, int64_t C,
                     Stream stream) {
  double mean = 0.0;
  if (n > 0 && C > 0) {
    const int64_t blocks = (n + kLossRows - 1) / kLossRows;
    detail::Scratch partial(size_t(blocks) * sizeof(double), stream, "vq_loss_forward");
    vq_sumsq_kernel<<<detail::grid_for(blocks, 1), kBlock, 0, stream>>>(partial.as<double>(), z, codebook, codes,
                                                                         n, C, blocks);
    RECA_CUDA_LAUNCHED("vq_loss_forward");
    mean = detail::sum_doubles(partial.as<double>(), blocks, stream, "vq_loss_forward") / static_cast<double>(n * C);
  }
  if (loss_codebook_host) *loss_codebook_host = static_cast<float>(mean);
  if (loss_commit_host) *loss_commit_host = static_cast<float>(0.25 * mean);
}

void vq_loss_backward(float* dz, float* dcodebook, const float* dz_q, const float* z,
                      const float* codebook, const int32_t* codes, float scale_codebook,
                      float scale_commit, int64_t n, int64_t K, int64_t C, Stream stream) {
  (void)K;
  if (n <= 0 || C <= 0) return;
  const double nc = static_cast<double>(n * C);
  if (dz) {
    const float cz = static_cast<float>(static_cast<double>(scale_commit) * 0.5 / nc);
    vq_dz_kernel<<<detail::grid_for(n * C, kThreads), kThreads, 0, stream>>>(dz, dz_q, z, codebook, codes, cz, n, C);
    RECA_CUDA_LAUNCHED("vq_loss_backward");
  }
  if (dcodebook) {
    RECA_CHECK(n < (1LL << 31), InvalidArgument, "vq_loss_backward: %lld rows is over the limit",
               static_cast<long long>(n));
    const float cb = static_cast<float>(static_cast<double>(scale_codebook) * 2.0 / nc);
    detail::Scratch links(size_t(n) * 5, stream, "vq_loss_backward");
    int32_t* next = links.as<int32_t>();
    uint8_t* head = reinterpret_cast<uint8_t*>(next + n);
    detail::index_links(head, next, codes, n, stream, "vq_loss_backward");
    vq_dcodebook_kernel<<<detail::grid_for(n * C, kThreads), kThreads, 0, stream>>>(dcodebook, z, codebook, codes,
                                                                                    head, next, cb, n, C);
    RECA_CUDA_LAUNCHED("vq_loss_backward");
  }
}

}  // namespace reca::cuda
