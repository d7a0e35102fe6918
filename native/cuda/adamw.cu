// Fused AdamW update on the device (SPEC §6); the semantics of
// reca::cpu::adamw_step: clip scale, decay flag and optional EMA in one pass.
#include <cmath>
#include <vector>

#include "cuda/cuda_check.cuh"
#include "cuda/cuda_ops.h"
#include "cuda/kernel_util.cuh"

namespace reca::cuda {
namespace {

__device__ __forceinline__ void update_one(float& p, float& m, float& v, float* ema, float g,
                                           bool decay, const cpu::AdamWScalars& k) {
  const float gp = g * k.gs;
  m = k.b1 * m + k.omb1 * gp;
  v = k.b2 * v + k.omb2 * (gp * gp);
  if (decay) p = p * k.decay_mul;
  p = p - k.step_size * (m / (sqrtf(v) / k.bc2_sqrt + k.eps));
  if (ema) *ema = k.d * *ema + k.omd * p;
}

// p, m, v, g, ema: [n]; one element per thread, grid-stride; 4 per thread
// when every pointer is 16-byte aligned (then n4 = n / 4 and the scalar tail
// [4·n4, n) is done by the same kernel).
__global__ void adamw_kernel(float* p, float* m, float* v, float* ema, const float* g, int64_t n,
                             bool decay, cpu::AdamWScalars k, bool vec) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t start = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  int64_t done = 0;
  if (vec) {
    const int64_t n4 = n / 4;
    for (int64_t i = start; i < n4; i += stride) {
      float4 pp = reinterpret_cast<float4*>(p)[i], mm = reinterpret_cast<float4*>(m)[i];
      float4 vv = reinterpret_cast<float4*>(v)[i];
      const float4 gg = reinterpret_cast<const float4*>(g)[i];
      float4 ee;
      if (ema) ee = reinterpret_cast<float4*>(ema)[i];
      update_one(pp.x, mm.x, vv.x, ema ? &ee.x : nullptr, gg.x, decay, k);
      update_one(pp.y, mm.y, vv.y, ema ? &ee.y : nullptr, gg.y, decay, k);
      update_one(pp.z, mm.z, vv.z, ema ? &ee.z : nullptr, gg.z, decay, k);
      update_one(pp.w, mm.w, vv.w, ema ? &ee.w : nullptr, gg.w, decay, k);
      reinterpret_cast<float4*>(p)[i] = pp;
      reinterpret_cast<float4*>(m)[i] = mm;
      reinterpret_cast<float4*>(v)[i] = vv;
      if (ema) reinterpret_cast<float4*>(ema)[i] = ee;
    }
    done = n4 * 4;
  }
  for (int64_t i = done + start; i < n; i += stride)
    update_one(p[i], m[i], v[i], ema ? ema + i : nullptr, g[i], decay, k);
}

bool aligned16(const void* q) { return reinterpret_cast<uintptr_t>(q) % 16 == 0; }

// One segment of adamw_step_segments on the device, with the index of its first
// work block (kSegBlock elements a block).
struct SegDesc {
  float *p, *m, *v, *ema;
  const float* g;
  int64_t n;
  int64_t first_block;
  int decay;
};
constexpr int64_t kSegBlock = 4096;
constexpr int kSegThreads = 256;

// Work block b (grid-stride) belongs to the last segment whose first_block <= b
// (binary search; empty segments own no block). Elementwise, so the split
// changes nothing in the result.
__global__ void __launch_bounds__(kSegThreads)
    adamw_segments_kernel(const SegDesc* segs, int64_t count, int64_t blocks, cpu::AdamWScalars k) {
  for (int64_t b = blockIdx.x; b < blocks; b += gridDim.x) {
    int64_t lo = 0, hi = count - 1;
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) / 2;
      if (segs[mid].first_block <= b) lo = mid; else hi = mid - 1;
    }
    const SegDesc sd = segs[lo];
    const int64_t off = (b - sd.first_block) * kSegBlock;
    const int64_t end = off + kSegBlock < sd.n ? off + kSegBlock : sd.n;
    for (int64_t i = off + threadIdx.x; i < end; i += kSegThreads)
      update_one(sd.p[i], sd.m[i], sd.v[i], sd.ema ? sd.ema + i : nullptr, sd.g[i], sd.decay != 0, k);
  }
}

}  // namespace

void adamw_step_segments(const AdamWSegment<float>* segs, int64_t count, const AdamWConfig& cfg,
                         Stream stream) {
  if (count <= 0) return;
  std::vector<SegDesc> table;
  table.reserve(static_cast<size_t>(count));
  int64_t blocks = 0;
  for (int64_t i = 0; i < count; ++i) {
    const AdamWSegment<float>& s = segs[i];
    if (s.n <= 0) continue;
    table.push_back({s.p, s.m, s.v, s.ema, s.g, s.n, blocks, s.decay ? 1 : 0});
    blocks += (s.n + kSegBlock - 1) / kSegBlock;
  }
  if (table.empty()) return;
  const cpu::AdamWScalars k = cpu::adamw_scalars(cfg);
  const size_t bytes = table.size() * sizeof(SegDesc);
  detail::Scratch dev(bytes, stream, "adamw_step_segments");
  detail::upload_async(dev.as<void>(), table.data(), bytes, stream, "adamw_step_segments");
  adamw_segments_kernel<<<detail::grid_for(blocks, 1), kSegThreads, 0, stream>>>(
      dev.as<SegDesc>(), static_cast<int64_t>(table.size()), blocks, k);
  RECA_CUDA_LAUNCHED("adamw_step_segments");
}

void adamw_step(float* p, float* m, float* v, float* ema, const float* g, int64_t n, bool decay,
                const AdamWConfig& cfg, Stream stream) {
  if (n <= 0) return;
  const cpu::AdamWScalars k = cpu::adamw_scalars(cfg);
  const bool vec = aligned16(p) && aligned16(m) && aligned16(v) && aligned16(g) && (!ema || aligned16(ema));
  adamw_kernel<<<detail::grid_1d(vec ? (n + 3) / 4 : n, 256), 256, 0, stream>>>(p, m, v, ema, g, n, decay, k, vec);
  RECA_CUDA_LAUNCHED("adamw_step");
}

}  // namespace reca::cuda
