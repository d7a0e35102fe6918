// Embedding lookups and positional tables on the device (reca::cpu::embedding_*
// and pos_add_* semantics). The backwards add in the CPU's order (rows n in
// order for each table row; samples b in order for each position), one thread
// per output element, so their results are the CPU's bits; no atomics.
#include "core/error.h"
#include "cuda/index_links.cuh"
#include "cuda/kernel_util.cuh"

namespace reca::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void embedding_forward_kernel(float* out, const float* table, const int32_t* ids, int64_t N,
                                         int64_t D) {
  const int64_t total = N * D;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = e / D;
    const int32_t id = ids[n];
    if (id >= 0) out[e] = table[int64_t(id) * D + (e - n * D)];
  }
}

// Thread (n, c) for every head n: dtable[id, c] += dout[n, c], then along the
// chain of id's later rows, in order.
__global__ void embedding_backward_kernel(float* dtable, const float* dout, const int32_t* ids,
                                          const uint8_t* head, const int32_t* next, int64_t N, int64_t D) {
  const int64_t total = N * D;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = e / D, c = e - n * D;
    if (!head[n]) continue;
    float* dst = dtable + int64_t(ids[n]) * D + c;
    float acc = *dst;
    for (int64_t m = n; m >= 0; m = next[m]) acc = __fadd_rn(acc, dout[m * D + c]);
    *dst = acc;
  }
}

// x[b, i, :] += pos[i, :] over b < B, i < L (row stride seq_len between samples).
__global__ void pos_add_forward_kernel(float* x, const float* pos, int64_t B, int64_t seq_len, int64_t L,
                                       int64_t D) {
  const int64_t per = L * D, total = B * per;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = e / per, rem = e - b * per;
    float* xe = x + b * seq_len * D + rem;
    *xe = __fadd_rn(*xe, pos[rem]);
  }
}

// dpos[i, c] += Σ_b dout[b, i, c], b in order.
__global__ void pos_add_backward_kernel(float* dpos, const float* dout, int64_t B, int64_t seq_len,
                                        int64_t L, int64_t D) {
  const int64_t per = L * D;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < per; e += int64_t(gridDim.x) * blockDim.x) {
    float acc = dpos[e];
    for (int64_t b = 0; b < B; ++b) acc = __fadd_rn(acc, dout[b * seq_len * D + e]);
    dpos[e] = acc;
  }
}

}  // namespace

void embedding_forward(float* out, const float* table, const int32_t* ids, int64_t N, int64_t D,
                       Stream stream) {
  if (N <= 0 || D <= 0) return;
  embedding_forward_kernel<<<detail::grid_for(N * D, kThreads), kThreads, 0, stream>>>(out, table, ids, N, D);
  RECA_CUDA_LAUNCHED("embedding_forward");
}

void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t N,
                        int64_t D, Stream stream) {
  if (N <= 0 || D <= 0 || !dtable) return;
  RECA_CHECK(N < (1LL << 31), InvalidArgument, "embedding_backward: %lld rows is over the limit",
             static_cast<long long>(N));
  detail::Scratch links(size_t(N) * 5, stream, "embedding_backward");
  int32_t* next = links.as<int32_t>();
  uint8_t* head = reinterpret_cast<uint8_t*>(next + N);
  detail::index_links(head, next, ids, N, stream, "embedding_backward");
  embedding_backward_kernel<<<detail::grid_for(N * D, kThreads), kThreads, 0, stream>>>(dtable, dout, ids, head,
                                                                                         next, N, D);
  RECA_CUDA_LAUNCHED("embedding_backward");
}

void pos_add_forward(float* x, const float* pos, int64_t B, int64_t seq_len, int64_t L, int64_t D,
                     Stream stream) {
  if (B <= 0 || L <= 0 || D <= 0) return;
  pos_add_forward_kernel<<<detail::grid_for(B * L * D, kThreads), kThreads, 0, stream>>>(x, pos, B, seq_len, L, D);
  RECA_CUDA_LAUNCHED("pos_add_forward");
}

void pos_add_backward(float* dpos, const float* dout, int64_t B, int64_t seq_len, int64_t L,
                      int64_t D, Stream stream) {
  if (B <= 0 || L <= 0 || D <= 0 || !dpos) return;
  pos_add_backward_kernel<<<detail::grid_for(L * D, kThreads), kThreads, 0, stream>>>(dpos, dout, B, seq_len, L, D);
  RECA_CUDA_LAUNCHED("pos_add_backward");
}

}  // namespace reca::cuda
