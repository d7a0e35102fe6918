// The one interface every compute backend implements (CPU: cpu/backend_cpu.cpp;
// CUDA: cuda/backend_cuda.cu; the addon runs models on the CPU one). The model calls only these ops, on pointers the
// backend allocated, so it never branches on the device. A backend that lacks an
// op throws E_DEVICE naming it; nothing silently round-trips through the CPU.
//
// Memory: every tensor pointer an op takes is memory of this backend (device
// memory for a GPU backend), except where an op says "host": the pointer
// arrays of grad_norm_segments / adamw_step_segments (host arrays whose entries
// point at backend memory) and the two scalars vq_loss_forward writes. Values an
// op returns (cross_entropy_forward*, mse_forward, grad_norm_segments) are host
// values: a GPU backend waits for them.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "core/optim_types.h"

namespace reca::model {

// Precision of the products inside the linear_* ops: fp32, or bf16 operands
// (rounded to nearest even) with fp32 accumulation (cpu/matmul_bf16.h). Inputs,
// outputs and everything else stay fp32 either way.
enum class MatmulPrecision { Fp32, Bf16 };

// The precision the linear_* ops use on the calling thread: Fp32 unless a
// LinearPrecisionScope says otherwise. A trainer sets it around its step, so
// sampling and evaluation on other threads (or after the step) stay fp32.
inline thread_local MatmulPrecision t_linear_precision = MatmulPrecision::Fp32;
inline MatmulPrecision linear_precision() { return t_linear_precision; }
class LinearPrecisionScope {
 public:
  explicit LinearPrecisionScope(MatmulPrecision p) : saved_(t_linear_precision) { t_linear_precision = p; }
  ~LinearPrecisionScope() { t_linear_precision = saved_; }
  LinearPrecisionScope(const LinearPrecisionScope&) = delete;
  LinearPrecisionScope& operator=(const LinearPrecisionScope&) = delete;

 private:
  MatmulPrecision saved_;
};

class Backend;

// A Linear weight W[out,in] made ready for many forward products while it stays
// unchanged (a sampling run): a backend may keep it in a faster layout (a subclass
// of this, made with owner = that backend). The base keeps only the pointer and
// runs the plain ops. W must outlive the handle.
class PreparedLinear {
 public:
  PreparedLinear(const float* W, int64_t in, int64_t out, const Backend* owner = nullptr)
      : W(W), in(in), out(out), owner(owner) {}
  virtual ~PreparedLinear() = default;
  PreparedLinear(const PreparedLinear&) = delete;
  PreparedLinear& operator=(const PreparedLinear&) = delete;
  const float* const W;
  const int64_t in, out;
  const Backend* const owner;  // the backend whose subclass this is, or null
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  // The queue the backend's work runs on (a cudaStream_t), for collectives that
  // must run in order with it; null for the CPU.
  virtual void* native_stream() { return nullptr; }

  // Memory (device memory for a GPU backend).
  // Never null: E_OUT_OF_MEMORY naming the size when it cannot be had,
  // E_INTERNAL for a negative size.
  virtual void* alloc(int64_t bytes) = 0;
  virtual void release(void* p) = 0;
  virtual void zero(void* p, int64_t bytes) = 0;
  virtual void copy(void* dst, const void* src, int64_t bytes) = 0;       // device → device
  virtual void upload(void* dst, const void* host, int64_t bytes) = 0;    // host → device
  virtual void download(void* host, const void* src, int64_t bytes) = 0; // device → host

  // Why the linear_* ops cannot run at precision p on this backend, with what
  // can (empty when they can). Fp32 always runs; bf16 runs where a backend says so.
  virtual std::string matmul_precision_unavailable(MatmulPrecision p) const {
    if (p == MatmulPrecision::Fp32) return "";
    return std::string("the ") + name() + " backend has no bf16 matmuls; use matmulPrecision 'fp32'";
  }
  // Linear / matmul (SPEC §0 layout), at linear_precision() on the calling thread.
  virtual void linear_forward(float* y, const float* x, const float* W, const float* b, int64_t M,
                              int64_t in, int64_t out) = 0;
  virtual void linear_backward(float* dx, float* dW, float* db, const float* dy, const float* x,
                               const float* W, int64_t M, int64_t in, int64_t out) = 0;
  // The MLP's first Linear with its GELU fused (the semantics of cpu/matmul.h):
  //   forward   f = x·Wᵀ + b ; g = gelu(f)                  (f kept for the backward)
  //   backward  dxf = gelu'(f) ⊙ (dy·W) ; dW += dyᵀ·x ; db += Σ_rows dy
  //             for the Linear that consumes x = gelu(f); dxf is overwritten.
  virtual void linear_gelu_forward(float* f, float* g, const float* x, const float* W,
                                   const float* b, int64_t M, int64_t in, int64_t out) = 0;
  virtual void linear_backward_gelu(float* dxf, float* dW, float* db, const float* dy,
                                    const float* x, const float* W, const float* f, int64_t M,
                                    int64_t in, int64_t out) = 0;
  // The forward ops above with a prepared weight: the same results, bit for bit.
  virtual std::unique_ptr<PreparedLinear> prepare_linear(const float* W, int64_t in, int64_t out) {
    return std::make_unique<PreparedLinear>(W, in, out);
  }
  virtual void linear_forward_prepared(float* y, const float* x, const PreparedLinear& W,
                                       const float* b, int64_t M) {
    linear_forward(y, x, W.W, b, M, W.in, W.out);
  }
  virtual void linear_gelu_forward_prepared(float* f, float* g, const float* x,
                                            const PreparedLinear& W, const float* b, int64_t M) {
    linear_gelu_forward(f, g, x, W.W, b, M, W.in, W.out);
  }
  // LayerNorm, GELU, residual.
  virtual void layernorm_forward(float* y, float* mean, float* rstd, const float* x,
                                 const float* w, const float* b, int64_t rows, int64_t C) = 0;
  virtual void layernorm_backward(float* dx, float* dw, float* db, const float* dy,
                                  const float* x, const float* w, const float* mean,
                                  const float* rstd, int64_t rows, int64_t C) = 0;
  virtual void gelu_forward(float* y, const float* x, int64_t rows, int64_t cols) = 0;
  virtual void gelu_backward(float* dx, const float* x, const float* dy, int64_t rows,
                             int64_t cols) = 0;
  virtual void add(float* out, const float* a, const float* b, int64_t n) = 0;
  virtual void axpy(float* y, float alpha, const float* x, int64_t n) = 0;
  virtual void scale(float* x, float s, int64_t n) = 0;
  // Attention (SPEC §4 visibility).
  virtual void attention_forward(float* out, float* att, const float* qkv,
                                 const uint8_t* key_pad, int64_t B, int64_t L, int64_t heads,
                                 int64_t width, int64_t cond_len, bool target_causal) = 0;
  virtual void attention_backward(float* dqkv, const float* dout, const float* qkv,
                                  const float* att, const uint8_t* key_pad, int64_t B, int64_t L,
                                  int64_t heads, int64_t width, int64_t cond_len,
                                  bool target_causal) = 0;
  // Attention of the rows [row0, row0 + Lq) of B sequences whose fused q/k/v rows
  // sit in a cache qkv [B, Lmax, 3·width] (rows < row0 + Lq filled): out [B, Lq, width].
  // Visibility as attention_forward on absolute positions (cond_len, target_causal,
  // key_pad [B, Lmax] or null), over the keys j < row0 + Lq only. A decoder computes
  // each new position once: the condition block first (row0 = 0, Lq = cond_len), then
  // target rows. Equals attention_forward's rows to fp32 rounding.
  virtual void attention_cached(float* out, const float* qkv, const uint8_t* key_pad, int64_t B,
                                int64_t Lmax, int64_t row0, int64_t Lq, int64_t heads,
                                int64_t width, int64_t cond_len, bool target_causal) = 0;
  // Embeddings and positions.
  virtual void embedding_forward(float* out, const float* table, const int32_t* ids, int64_t N,
                                 int64_t D) = 0;
  virtual void embedding_backward(float* dtable, const float* dout, const int32_t* ids,
                                  int64_t N, int64_t D) = 0;
  virtual void pos_add_forward(float* x, const float* pos, int64_t B, int64_t seq_len,
                               int64_t L, int64_t D) = 0;
  virtual void pos_add_backward(float* dpos, const float* dout, int64_t B, int64_t seq_len,
                                int64_t L, int64_t D) = 0;
  // Strided row copies between a [B, Ls, D] sequence and a [B, Lb, D] block:
  // seq[b, row0 + i, :] (+)= block[b, i, :] for i < Lb.
  virtual void rows_to_seq(float* seq, const float* block, int64_t B, int64_t Ls, int64_t row0,
                           int64_t Lb, int64_t D, bool accumulate) = 0;
  virtual void rows_from_seq(float* block, const float* seq, int64_t B, int64_t Ls, int64_t row0,
                             int64_t Lb, int64_t D, bool accumulate) = 0;
  // Images.
  virtual void image_from_bytes(float* out, const uint8_t* in, int64_t n) = 0;
  virtual void image_to_bytes(uint8_t* out, const float* in, int64_t n) = 0;
  virtual void patchify_forward(float* tokens, const float* img, int64_t B, int64_t S,
                                int64_t P) = 0;
  virtual void unpatchify_forward(float* img, const float* tokens, int64_t B, int64_t S,
                                  int64_t P) = 0;
  virtual void avgpool_forward(float* out, const float* img, int64_t B, int64_t S,
                               int64_t f) = 0;
  // Losses.
  virtual double cross_entropy_forward_backward(float* losses, float* dlogits,
                                                const float* logits, const int32_t* targets,
                                                float scale, int64_t rows, int64_t V) = 0;
  virtual double cross_entropy_forward(float* losses, const float* logits,
                                       const int32_t* targets, int64_t rows, int64_t V) = 0;
  virtual float mse_forward(const float* pred, const float* target, int64_t n) = 0;
  virtual void mse_backward(float* dpred, const float* pred, const float* target, float scale,
                            int64_t n) = 0;
  // VQ.
  virtual void vq_nearest(int32_t* codes, const float* z, const float* codebook, int64_t n,
                          int64_t K, int64_t C) = 0;
  virtual void vq_gather(float* out, const int32_t* codes, const float* codebook, int64_t n,
                         int64_t C) = 0;
  // loss_codebook, loss_commit: host scalars.
  virtual void vq_loss_forward(float* loss_codebook, float* loss_commit, const float* z,
                               const float* codebook, const int32_t* codes, int64_t n,
                               int64_t C) = 0;
  virtual void vq_loss_backward(float* dz, float* dcodebook, const float* dz_q, const float* z,
                                const float* codebook, const int32_t* codes,
                                float scale_codebook, float scale_commit, int64_t n, int64_t K,
                                int64_t C) = 0;
  // Flow.
  virtual void time_embed_forward(float* out, const float* t, int64_t B) = 0;
  // z_t = (1 − t_b)·x0 + t_b·ε and v = ε − x0 over [B, n] per sample.
  virtual void flow_noise(float* zt, float* v, const float* x0, const float* eps,
                          const float* t, int64_t B, int64_t n) = 0;
  // Optimizer. ptrs / sizes / segs are host arrays (their pointers: backend memory).
  virtual float grad_norm_segments(const float* const* ptrs, const int64_t* sizes,
                                   int64_t count, bool* nonfinite) = 0;
  virtual void adamw_step_segments(const AdamWSegment<float>* segs, int64_t count,
                                   const AdamWConfig& cfg) = 0;
  // Sampling.
  virtual void sample_categorical(int32_t* ids, float* probs, const float* logits,
                                  const float* u, float temperature, int64_t top_k, int64_t rows,
                                  int64_t V) = 0;
  virtual void cfg_combine(float* out, const float* cond, const float* uncond, float scale,
                           int64_t n) = 0;
  virtual void euler_step(float* z, const float* v, float dt, int64_t n) = 0;
  // One MaskGIT unmasking step over [B, N] (SPEC §7; semantics in cpu/sampling.h).
  virtual void maskgit_select(int32_t* tokens_out, uint8_t* mask_out, const int32_t* tokens,
                              const uint8_t* mask, const int32_t* sampled, const float* conf,
                              int32_t mask_id, int64_t step, int64_t total_steps, int64_t B,
                              int64_t N) = 0;
  // x = min(max(x, lo), hi) elementwise over [n] (NaN stays NaN).
  virtual void clamp(float* x, float lo, float hi, int64_t n) = 0;
};

// The CPU backend (host memory, SIMD kernels, the engine's thread pool).
Backend& cpu_backend();

// The CUDA backend on device 0 (one per process, created on first use), or null
// with *why (may be null) saying why not: this build has no CUDA
// (cuda/cuda_absent.cpp), no usable device, or the device could not be set up.
// Never throws. Needs no CUDA header to call.
Backend* cuda_backend_or_null(std::string* why);
// The same, throwing reca::Error(E_DEVICE, <why>) when there is none.
Backend& cuda_backend();

}  // namespace reca::model
