// Global L2 norm over segments of gradients on the device, with the finite
// check in the same pass (reca::cpu::grad_norm_segments semantics). Fixed
// blocks of 4096 elements (a block never spans two segments): each element is
// squared in float (so a finite |x| above ~1e19 gives an Inf norm, as on the
// CPU), the squares added in double per thread in order and by a block tree;
// block partials added in block order. x − x rides along (0 for finite x, NaN
// otherwise), so any NaN/Inf input makes the sum NaN. Deterministic.
#include <cmath>
#include <vector>

#include "cuda/kernel_util.cuh"

namespace reca::cuda {
namespace {

using detail::kBlock;
constexpr int64_t kChunk = 4096;

struct NormSeg {
  const float* p;
  int64_t n;
  int64_t first_block;
};
static_assert(sizeof(NormSeg) % 8 == 0, "the partials follow the table, 8-byte aligned");

__global__ void __launch_bounds__(kBlock)
    norm_blocks_kernel(double* partial, const NormSeg* segs, int64_t count, int64_t blocks) {
  __shared__ double sh[kBlock];
  for (int64_t b = blockIdx.x; b < blocks; b += gridDim.x) {
    int64_t lo = 0, hi = count - 1;  // last segment with first_block <= b
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) / 2;
      if (segs[mid].first_block <= b) lo = mid; else hi = mid - 1;
    }
    const NormSeg sg = segs[lo];
    const int64_t off = (b - sg.first_block) * kChunk;
    const int64_t end = off + kChunk < sg.n ? off + kChunk : sg.n;
    double s = 0.0;
    float bad = 0.0f;
    for (int64_t i = off + threadIdx.x; i < end; i += kBlock) {
      const float v = sg.p[i];
      s += static_cast<double>(__fmul_rn(v, v));
      bad += __fsub_rn(v, v);
    }
    s = detail::block_sum(s + static_cast<double>(bad), sh);
    if (threadIdx.x == 0) partial[b] = s;
  }
}

}  // namespace

float grad_norm_segments(const float* const* ptrs, const int64_t* sizes, int64_t count,
                         bool* nonfinite, Stream stream) {
  std::vector<NormSeg> table;
  int64_t blocks = 0;
  for (int64_t i = 0; i < count; ++i) {
    if (sizes[i] <= 0) continue;
    table.push_back({ptrs[i], sizes[i], blocks});
    blocks += (sizes[i] + kChunk - 1) / kChunk;
  }
  if (blocks == 0) {
    if (nonfinite) *nonfinite = false;
    return 0.0f;
  }
  const size_t tbytes = table.size() * sizeof(NormSeg);
  detail::Scratch dev(tbytes + size_t(blocks) * sizeof(double), stream, "grad_norm_segments");
  NormSeg* dsegs = dev.as<NormSeg>();
  double* partial = reinterpret_cast<double*>(dev.as<char>() + tbytes);  // tbytes % 8 == 0
  detail::upload_async(dsegs, table.data(), tbytes, stream, "grad_norm_segments");
  norm_blocks_kernel<<<detail::grid_for(blocks, 1), kBlock, 0, stream>>>(partial, dsegs,
                                                                          static_cast<int64_t>(table.size()), blocks);
  RECA_CUDA_LAUNCHED("grad_norm_segments");
  const double sum = detail::sum_doubles(partial, blocks, stream, "grad_norm_segments");
  if (nonfinite) *nonfinite = sum != sum;
  return static_cast<float>(std::sqrt(sum));
}

}  // namespace reca::cuda
