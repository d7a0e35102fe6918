// Sampling on the device (reca::cpu sampling semantics, SPEC §7).
//   sample_categorical  a block per row: row max; the top-k threshold by radix
//                       selection on order-preserving float keys (the CPU's
//                       algorithm: integer histograms, exact); weights
//                       w = exp((x − m)/τ) for x >= thr; S = Σ w in double
//                       (fixed order); the inverse CDF in index order; greedy =
//                       lowest index of the maximum. Weights use the device
//                       expf: within a few ulp of the CPU's, so a u within ~1e-6
//                       of a CDF boundary may pick the neighbouring id (as
//                       between the CPU's fast and reference kernels).
//   maskgit_select      a block per sample: 64-bit keys (confidence, then lower
//                       index first) and the keep-th largest by radix selection:
//                       exactly the CPU's choice.
//   cfg_combine, euler_step  elementwise, the CPU's fused multiply-adds (same bits).
#include <cmath>

#include "cuda/kernel_util.cuh"

namespace reca::cuda {
namespace {

using detail::kBlock;

// Order-preserving map float → uint32 (larger float, larger key); −0 counts as +0.
__device__ __forceinline__ uint32_t float_key(float f) {
  const uint32_t b = __float_as_uint(__fadd_rn(f, 0.0f));
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float key_float(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

struct SelectShared {
  unsigned int hist[256];
  unsigned long long prefix;
  long long k;
};

// The k-th largest (1 <= k <= count of valid keys, repeats counted) of the
// valid keys key_of(i, &key) over i < n, by radix selection on the top `bytes`
// bytes (lower bytes of the keys must be zero when bytes < 8). Every thread of
// the block calls it and gets the result. Shared-memory integer counts: exact.
template <class KeyOf>
__device__ unsigned long long block_kth_largest(const KeyOf& key_of, int64_t n, long long k, int bytes,
                                                SelectShared& sh) {
  unsigned long long prefix = 0, pmask = 0;
  for (int p = 0; p < bytes; ++p) {
    const int shift = 56 - 8 * p;
    for (int b = threadIdx.x; b < 256; b += blockDim.x) sh.hist[b] = 0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      unsigned long long key;
      if (!key_of(i, &key)) continue;
      if ((key & pmask) == prefix) atomicAdd(&sh.hist[(key >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int b = 255;
      for (; b > 0; --b) {
        if (static_cast<long long>(sh.hist[b]) >= k) break;
        k -= sh.hist[b];
      }
      sh.prefix = prefix | (static_cast<unsigned long long>(b) << shift);
      sh.k = k;
    }
    __syncthreads();
    prefix = sh.prefix;
    k = sh.k;
    pmask |= 255ull << shift;
    __syncthreads();  // sh is rewritten by the next pass
  }
  return prefix;
}

__global__ void __launch_bounds__(kBlock)
    sample_kernel(int32_t* ids, float* probs, const float* logits, const float* u, float temperature,
                  int64_t top_k, int64_t rows, int64_t V) {
  __shared__ float shf[kBlock];
  __shared__ double shd[kBlock];
  __shared__ long long shi[kBlock];
  __shared__ SelectShared sel;
  __shared__ int64_t chosen;
  const bool greedy = !(temperature > 0.0f);
  const float tau = greedy ? 1.0f : temperature;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* x = logits + r * V;
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < V; j += kBlock) m = fmaxf(m, x[j]);
    m = detail::block_max(m, shf);
    float thr = -INFINITY;
    if (top_k > 0 && top_k < V) {
      auto key_of = [x](int64_t j, unsigned long long* key) {
        *key = static_cast<unsigned long long>(float_key(x[j])) << 32;
        return true;
      };
      thr = key_float(static_cast<uint32_t>(block_kth_largest(key_of, V, top_k, 4, sel) >> 32));
    }
    auto w = [x, m, tau, thr](int64_t j) { return x[j] < thr ? 0.0f : expf(__fdiv_rn(x[j] - m, tau)); };
    // Contiguous chunks per thread (the inverse CDF walks them in order).
    const int64_t per = (V + kBlock - 1) / kBlock;
    const int64_t j0 = threadIdx.x * per, j1 = j0 + per < V ? j0 + per : V;
    double cs = 0.0;
    long long last = -1;
    for (int64_t j = j0; j < j1; ++j) {
      const float wj = w(j);
      cs += static_cast<double>(wj);
      if (wj > 0.0f) last = j;
    }
    shd[threadIdx.x] = cs;  // chunk sums, read by thread 0 below
    __syncthreads();
    double S = 0.0;
    {  // S: the fixed tree over a copy of the chunk sums
      __shared__ double tree[kBlock];
      S = detail::block_sum(cs, tree);
    }
    last = detail::block_max(last, shi);
    if (greedy) {
      long long first = V;
      for (int64_t j = threadIdx.x; j < V; j += kBlock)
        if (x[j] == m && j < first) first = j;
      first = detail::block_min(first, shi);
      if (threadIdx.x == 0) chosen = first < V ? first : 0;
    } else if (threadIdx.x == 0) {
      const double t = static_cast<double>(u[r]) * S;
      double c = 0.0;
      int q = 0;
      for (; q < kBlock; ++q) {
        if (c + shd[q] > t) break;
        c += shd[q];
      }
      int64_t id = -1;
      for (int64_t j = static_cast<int64_t>(q) * per; j < V; ++j) {
        const float wj = w(j);
        c += static_cast<double>(wj);
        if (c > t && wj > 0.0f) {
          id = j;
          break;
        }
      }
      chosen = id >= 0 ? id : (last > 0 ? last : 0);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      const int64_t id = chosen;
      ids[r] = static_cast<int32_t>(id);
      if (probs) probs[r] = static_cast<float>(static_cast<double>(w(id)) / S);
    }
    __syncthreads();  // shd / chosen are rewritten for the next row
  }
}

__global__ void __launch_bounds__(kBlock)
    maskgit_kernel(int32_t* tokens_out, uint8_t* mask_out, const int32_t* tokens, const uint8_t* mask,
                   const int32_t* sampled, const float* conf, int32_t mask_id, int64_t remask, int64_t B,
                   int64_t N) {
  __shared__ long long shi[kBlock];
  __shared__ SelectShared sel;
  for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
    const int64_t o = b * N;
    long long cnt = 0;
    for (int64_t i = threadIdx.x; i < N; i += kBlock) cnt += mask[o + i] ? 1 : 0;
    const long long M = detail::block_sum(cnt, shi);
    const long long keep = M - (remask < M ? remask : M);
    auto key_at = [conf, o](int64_t i) {
      return (static_cast<unsigned long long>(float_key(conf[o + i])) << 32) |
             static_cast<unsigned long long>(0xffffffffu - static_cast<uint32_t>(i));
    };
    unsigned long long cut = ~0ull;
    if (keep > 0) {
      auto key_of = [mask, o, &key_at](int64_t i, unsigned long long* key) {
        if (!mask[o + i]) return false;
        *key = key_at(i);
        return true;
      };
      cut = block_kth_largest(key_of, N, keep, 8, sel);
    }
    for (int64_t i = threadIdx.x; i < N; i += kBlock) {
      if (!mask[o + i]) {
        tokens_out[o + i] = tokens[o + i];
        mask_out[o + i] = 0;
        continue;
      }
      const bool kept = keep > 0 && key_at(i) >= cut;
      tokens_out[o + i] = kept ? sampled[o + i] : mask_id;
      mask_out[o + i] = kept ? 0 : 1;
    }
    __syncthreads();
  }
}

__global__ void cfg_kernel(float* out, const float* cond, const float* uncond, float scale, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float un = uncond[i];
    out[i] = fmaf(scale, __fsub_rn(cond[i], un), un);
  }
}

__global__ void euler_kernel(float* z, const float* v, float dt, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    z[i] = fmaf(-dt, v[i], z[i]);
}

}  // namespace

void sample_categorical(int32_t* ids, float* probs, const float* logits, const float* u,
                        float temperature, int64_t top_k, int64_t rows, int64_t V, Stream stream) {
  if (rows <= 0 || V <= 0) return;
  sample_kernel<<<detail::grid_for(rows, 1), kBlock, 0, stream>>>(ids, probs, logits, u, temperature, top_k,
                                                                    rows, V);
  RECA_CUDA_LAUNCHED("sample_categorical");
}

void cfg_combine(float* out, const float* cond, const float* uncond, float scale, int64_t n,
                 Stream stream) {
  if (n <= 0) return;
  cfg_kernel<<<detail::grid_for(n, kBlock), kBlock, 0, stream>>>(out, cond, uncond, scale, n);
  RECA_CUDA_LAUNCHED("cfg_combine");
}

void euler_step(float* z, const float* v, float dt, int64_t n, Stream stream) {
  if (n <= 0) return;
  euler_kernel<<<detail::grid_for(n, kBlock), kBlock, 0, stream>>>(z, v, dt, n);
  RECA_CUDA_LAUNCHED("euler_step");
}

void maskgit_select(int32_t* tokens_out, uint8_t* mask_out, const int32_t* tokens,
                    const uint8_t* mask, const int32_t* sampled, const float* conf, int32_t mask_id,
                    int64_t remask, int64_t B, int64_t N, Stream stream) {
  if (B <= 0 || N <= 0) return;
  maskgit_kernel<<<detail::grid_for(B, 1), kBlock, 0, stream>>>(tokens_out, mask_out, tokens, mask, sampled,
                                                                  conf, mask_id, remask, B, N);
  RECA_CUDA_LAUNCHED("maskgit_select");
}

}  // namespace reca::cuda
