// The CUDA backend: device memory through a caching allocator, one stream, and
// the op families of native/cuda (one .cu each, the semantics of native/cpu).
// Nothing computes on the host: host round trips are the uploads/downloads the
// model asks for and the scalars the interface returns (losses, the gradient
// norm), which are reduced on the device in a fixed order and then copied back.
#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "cpu/sampling.h"  // maskgit_remask_count: the host formula every backend shares
#include "cuda/cuda_check.cuh"
#include "cuda/cuda_info.h"
#include "cuda/cuda_ops.h"
#include "model/backend.h"

namespace reca::model {
namespace {

namespace cu = ::reca::cuda;

// Device memory in size classes (512-byte steps up to 1 MiB, then 2 MiB steps),
// each class with a free list: a released block waits for the next request of
// its class, so the arena, grads and scratch of repeated steps never reach
// cudaMalloc again. Every op runs on the backend's one stream, in program
// order, so a block released after enqueuing its last use can be handed out at
// once (the next user is enqueued after it). On out-of-memory the cache is
// emptied (after a synchronize) and the allocation tried once more.
class CachingAllocator {
 public:
  explicit CachingAllocator(cudaStream_t stream) : stream_(stream) {}
  ~CachingAllocator() = default;  // the process-lifetime backend never frees its cache

  static size_t size_class(size_t bytes) {
    constexpr size_t kSmall = 512, kLarge = size_t(2) << 20, kSplit = size_t(1) << 20;
    if (bytes <= kSplit) return (bytes + kSmall - 1) / kSmall * kSmall;
    return (bytes + kLarge - 1) / kLarge * kLarge;
  }

  void* alloc(int64_t bytes) {
    if (bytes <= 0) return nullptr;
    const size_t cls = size_class(static_cast<size_t>(bytes));
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(cls);
    if (it != free_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      cached_bytes_ -= cls;
      live_[p] = cls;
      return p;
    }
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, cls);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // not sticky: clear it so no later check reports it
      trim_locked();
      err = cudaMalloc(&p, cls);
    }
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) cudaGetLastError();
      fail(ErrorCode::OutOfMemory,
           "cudaMalloc: could not allocate %lld bytes of device memory (%.1f MiB free of %.1f MiB, "
           "%.1f MiB in use by this backend); use a smaller batch or model",
           static_cast<long long>(bytes), free_b / 1048576.0, total_b / 1048576.0, live_bytes_ / 1048576.0);
    }
    if (err != cudaSuccess) cu::detail::raise("cudaMalloc", err);
    live_[p] = cls;
    live_bytes_ += cls;
    return p;
  }

  void release(void* p) {
    if (!p) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(p);
    if (it == live_.end()) return;  // not ours: ignored (release runs in destructors)
    free_[it->second].push_back(p);
    cached_bytes_ += it->second;
    live_.erase(it);
  }

 private:
  // Frees every cached block, after waiting for the stream (cudaFree must not
  // race enqueued work), and empties the ops' scratch pool.
  void trim_locked() {
    if (cudaStreamSynchronize(stream_) != cudaSuccess) cudaGetLastError();
    for (auto& [cls, list] : free_) {
      for (void* p : list) {
        cudaFree(p);
        live_bytes_ -= cls;
      }
      list.clear();
    }
    cached_bytes_ = 0;
    int dev = 0;
    cudaMemPool_t pool;
    if (cudaGetDevice(&dev) == cudaSuccess && cudaDeviceGetDefaultMemPool(&pool, dev) == cudaSuccess)
      cudaMemPoolTrimTo(pool, 0);  // scratch memory of the ops (stream-ordered pool)
    cudaGetLastError();
  }

  cudaStream_t stream_;
  std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  std::unordered_map<void*, size_t> live_;
  size_t live_bytes_ = 0;    // bytes held from cudaMalloc (in use + cached)
  size_t cached_bytes_ = 0;  // of which waiting in free lists
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(int device, cudaStream_t stream) : device_(device), stream_(stream), mem_(stream) {}

  const char* name() const override { return "cuda"; }
  void* native_stream() override { return stream_; }

  // ---- memory ----
  void* alloc(int64_t bytes) override { return mem_.alloc(bytes); }
  void release(void* p) override { mem_.release(p); }
  void zero(void* p, int64_t bytes) override {
    if (bytes > 0) RECA_CUDA_CALL("zero", cudaMemsetAsync(p, 0, static_cast<size_t>(bytes), stream_));
  }
  void copy(void* dst, const void* src, int64_t bytes) override {
    if (bytes > 0)
      RECA_CUDA_CALL("copy", cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), cudaMemcpyDeviceToDevice, stream_));
  }
  void upload(void* dst, const void* host, int64_t bytes) override {
    if (bytes > 0) cu::copy_to_device(dst, host, static_cast<size_t>(bytes), stream_);  // waits: host may go away
  }
  void download(void* host, const void* src, int64_t bytes) override {
    if (bytes > 0) cu::copy_to_host(host, src, static_cast<size_t>(bytes), stream_);
  }

  // ---- linear, layernorm, gelu, residual ----
  void linear_forward(float* y, const float* x, const float* W, const float* b, int64_t M,
                      int64_t in, int64_t out) override {
    cu::linear_forward(y, x, W, b, M, in, out, stream_);
  }
  void linear_backward(float* dx, float* dW, float* db, const float* dy, const float* x,
                       const float* W, int64_t M, int64_t in, int64_t out) override {
    cu::linear_backward(dx, dW, db, dy, x, W, M, in, out, stream_);
  }
  // The fused MLP ops as compositions of the separate kernels (same results; the
  // device does not fuse them yet).
  void linear_gelu_forward(float* f, float* g, const float* x, const float* W, const float* b,
                           int64_t M, int64_t in, int64_t out) override {
    cu::linear_forward(f, x, W, b, M, in, out, stream_);
    cu::gelu_forward(g, f, nullptr, M, out, stream_);
  }
  void linear_backward_gelu(float* dxf, float* dW, float* db, const float* dy, const float* x,
                            const float* W, const float* f, int64_t M, int64_t in,
                            int64_t out) override {
    const int64_t bytes = M * in * static_cast<int64_t>(sizeof(float));
    float* dg = static_cast<float*>(alloc(bytes));  // released after its last enqueued use
    zero(dg, bytes);
    cu::linear_backward(dg, dW, db, dy, x, W, M, in, out, stream_);
    zero(dxf, bytes);
    cu::gelu_backward(dxf, nullptr, f, nullptr, dg, M, in, stream_);
    release(dg);
  }
  void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* w,
                         const float* b, int64_t rows, int64_t C) override {
    cu::layernorm_forward(y, mean, rstd, x, w, b, rows, C, stream_);
  }
  void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                          const float* w, const float* mean, const float* rstd, int64_t rows,
                          int64_t C) override {
    cu::layernorm_backward(dx, dw, db, dy, x, w, mean, rstd, rows, C, stream_);
  }
  void gelu_forward(float* y, const float* x, int64_t rows, int64_t cols) override {
    cu::gelu_forward(y, x, nullptr, rows, cols, stream_);
  }
  void gelu_backward(float* dx, const float* x, const float* dy, int64_t rows, int64_t cols) override {
    cu::gelu_backward(dx, nullptr, x, nullptr, dy, rows, cols, stream_);
  }
  void add(float* out, const float* a, const float* b, int64_t n) override { cu::add(out, a, b, n, stream_); }
  void axpy(float* y, float alpha, const float* x, int64_t n) override { cu::axpy(y, alpha, x, n, stream_); }
  void scale(float* x, float s, int64_t n) override { cu::scale(x, s, n, stream_); }

  // ---- attention ----
  void attention_forward(float* out, float* att, const float* qkv, const uint8_t* key_pad, int64_t B,
                         int64_t L, int64_t heads, int64_t width, int64_t cond_len,
                         bool target_causal) override {
    cu::attention_forward(out, att, qkv, key_pad, B, L, heads, width, cond_len, target_causal, stream_);
  }
  void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                          const uint8_t* key_pad, int64_t B, int64_t L, int64_t heads, int64_t width,
                          int64_t cond_len, bool target_causal) override {
    cu::attention_backward(dqkv, dout, qkv, att, key_pad, B, L, heads, width, cond_len, target_causal, stream_);
  }
  void attention_cached(float* out, const float* qkv, const uint8_t* key_pad, int64_t B, int64_t Lmax,
                        int64_t row0, int64_t Lq, int64_t heads, int64_t width, int64_t cond_len,
                        bool target_causal) override {
    cu::attention_cached(out, qkv, key_pad, B, Lmax, row0, Lq, heads, width, cond_len, target_causal, stream_);
  }

  // ---- embeddings, positions, row copies ----
  void embedding_forward(float* out, const float* table, const int32_t* ids, int64_t N, int64_t D) override {
    cu::embedding_forward(out, table, ids, N, D, stream_);
  }
  void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t N, int64_t D) override {
    cu::embedding_backward(dtable, dout, ids, N, D, stream_);
  }
  void pos_add_forward(float* x, const float* pos, int64_t B, int64_t seq_len, int64_t L, int64_t D) override {
    cu::pos_add_forward(x, pos, B, seq_len, L, D, stream_);
  }
  void pos_add_backward(float* dpos, const float* dout, int64_t B, int64_t seq_len, int64_t L,
                        int64_t D) override {
    cu::pos_add_backward(dpos, dout, B, seq_len, L, D, stream_);
  }
  void rows_to_seq(float* seq, const float* block, int64_t B, int64_t Ls, int64_t row0, int64_t Lb,
                   int64_t D, bool accumulate) override {
    cu::rows_to_seq(seq, block, B, Ls, row0, Lb, D, accumulate, stream_);
  }
  void rows_from_seq(float* block, const float* seq, int64_t B, int64_t Ls, int64_t row0, int64_t Lb,
                     int64_t D, bool accumulate) override {
    cu::rows_from_seq(block, seq, B, Ls, row0, Lb, D, accumulate, stream_);
  }

  // ---- images ----
  void image_from_bytes(float* out, const uint8_t* in, int64_t n) override {
    cu::image_from_bytes(out, in, n, stream_);
  }
  void image_to_bytes(uint8_t* out, const float* in, int64_t n) override { cu::image_to_bytes(out, in, n, stream_); }
  void patchify_forward(float* tokens, const float* img, int64_t B, int64_t S, int64_t P) override {
    cu::patchify_forward(tokens, img, B, S, P, stream_);
  }
  void unpatchify_forward(float* img, const float* tokens, int64_t B, int64_t S, int64_t P) override {
    cu::unpatchify_forward(img, tokens, B, S, P, stream_);
  }
  void avgpool_forward(float* out, const float* img, int64_t B, int64_t S, int64_t f) override {
    cu::avgpool_forward(out, img, B, S, f, stream_);
  }

  // ---- losses ----
  double cross_entropy_forward_backward(float* losses, float* dlogits, const float* logits,
                                        const int32_t* targets, float s, int64_t rows, int64_t V) override {
    return cu::cross_entropy(losses, dlogits, logits, targets, s, rows, V, stream_);
  }
  double cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t rows,
                               int64_t V) override {
    return cu::cross_entropy(losses, nullptr, logits, targets, 0.0f, rows, V, stream_);
  }
  float mse_forward(const float* pred, const float* target, int64_t n) override {
    return cu::mse_forward(pred, target, n, stream_);
  }
  void mse_backward(float* dpred, const float* pred, const float* target, float s, int64_t n) override {
    cu::mse_backward(dpred, pred, target, s, n, stream_);
  }

  // ---- VQ ----
  void vq_nearest(int32_t* codes, const float* z, const float* codebook, int64_t n, int64_t K,
                  int64_t C) override {
    cu::vq_nearest(codes, z, codebook, n, K, C, stream_);
  }
  void vq_gather(float* out, const int32_t* codes, const float* codebook, int64_t n, int64_t C) override {
    cu::vq_gather(out, codes, codebook, n, C, stream_);
  }
  void vq_loss_forward(float* loss_codebook, float* loss_commit, const float* z, const float* codebook,
                       const int32_t* codes, int64_t n, int64_t C) override {
    cu::vq_loss_forward(loss_codebook, loss_commit, z, codebook, codes, n, C, stream_);
  }
  void vq_loss_backward(float* dz, float* dcodebook, const float* dz_q, const float* z, const float* codebook,
                        const int32_t* codes, float scale_codebook, float scale_commit, int64_t n, int64_t K,
                        int64_t C) override {
    cu::vq_loss_backward(dz, dcodebook, dz_q, z, codebook, codes, scale_codebook, scale_commit, n, K, C, stream_);
  }

  // ---- flow ----
  void time_embed_forward(float* out, const float* t, int64_t B) override {
    cu::time_embed_forward(out, t, B, stream_);
  }
  void flow_noise(float* zt, float* v, const float* x0, const float* eps, const float* t, int64_t B,
                  int64_t n) override {
    cu::flow_noise(zt, v, x0, eps, t, B, n, stream_);
  }

  // ---- optimizer ----
  float grad_norm_segments(const float* const* ptrs, const int64_t* sizes, int64_t count,
                           bool* nonfinite) override {
    return cu::grad_norm_segments(ptrs, sizes, count, nonfinite, stream_);
  }
  void adamw_step_segments(const AdamWSegment<float>* segs, int64_t count, const AdamWConfig& cfg) override {
    cu::adamw_step_segments(segs, count, cfg, stream_);
  }

  // ---- sampling ----
  void sample_categorical(int32_t* ids, float* probs, const float* logits, const float* u, float temperature,
                          int64_t top_k, int64_t rows, int64_t V) override {
    cu::sample_categorical(ids, probs, logits, u, temperature, top_k, rows, V, stream_);
  }
  void cfg_combine(float* out, const float* cond, const float* uncond, float s, int64_t n) override {
    cu::cfg_combine(out, cond, uncond, s, n, stream_);
  }
  void euler_step(float* z, const float* v, float dt, int64_t n) override { cu::euler_step(z, v, dt, n, stream_); }
  void maskgit_select(int32_t* tokens_out, uint8_t* mask_out, const int32_t* tokens, const uint8_t* mask,
                      const int32_t* sampled, const float* conf, int32_t mask_id, int64_t step,
                      int64_t total_steps, int64_t B, int64_t N) override {
    const int64_t remask = cpu::maskgit_remask_count(N, step, total_steps);
    cu::maskgit_select(tokens_out, mask_out, tokens, mask, sampled, conf, mask_id, remask, B, N, stream_);
  }
  void clamp(float* x, float lo, float hi, int64_t n) override { cu::clamp(x, lo, hi, n, stream_); }

 private:
  int device_;
  cudaStream_t stream_;
  CachingAllocator mem_;
};

struct Created {
  Backend* backend = nullptr;
  std::string why;
};

// One backend per process on device 0, made on first use (thread-safe), never
// destroyed: its memory goes with the process, and no CUDA call runs during
// static destruction (the runtime may already be gone then).
Created create() {
  Created c;
  const cu::CudaInfo info = cu::query_cuda();
  if (info.devices.empty()) {
    c.why = "no usable CUDA device: " + info.reason;
    return c;
  }
  try {
    cu::set_device(0);
    // The ops' scratch comes from the stream-ordered pool: keep what it frees
    // for reuse instead of handing it back at every synchronize.
    cudaMemPool_t pool;
    RECA_CUDA_CALL("cudaDeviceGetDefaultMemPool", cudaDeviceGetDefaultMemPool(&pool, 0));
    uint64_t threshold = UINT64_MAX;
    RECA_CUDA_CALL("cudaMemPoolSetAttribute",
                   cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
    cudaStream_t stream = cu::stream_create();
    c.backend = new CudaBackend(0, stream);
  } catch (const std::exception& e) {
    c.why = std::string("the CUDA device could not be set up: ") + e.what();
    c.backend = nullptr;
  }
  return c;
}

const Created& instance() {
  static const Created c = create();
  return c;
}

}  // namespace

Backend* cuda_backend_or_null(std::string* why) {
  const Created& c = instance();
  if (why) *why = c.why;
  return c.backend;
}

Backend& cuda_backend() {
  const Created& c = instance();
  if (!c.backend) fail(ErrorCode::Device, "%s", c.why.c_str());
  return *c.backend;
}

}  // namespace reca::model
