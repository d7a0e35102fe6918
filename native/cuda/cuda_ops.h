// The CUDA backend's operations: device memory, streams, timing, and the op
// families (one .cu file each, mirroring native/cpu/ semantics exactly).
//
// Every pointer an op takes is a device pointer; every op is enqueued on
// `stream` and returns without waiting. Every CUDA call is checked: a failure
// throws reca::Error(ErrorCode::Cuda, "<op>: <cuda error string>"), a failed
// allocation ErrorCode::OutOfMemory. Kernel faults surface at the next
// synchronising call (synchronize, copies to the host).
// This header needs no CUDA headers: Stream is the same type as cudaStream_t.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/optim_types.h"  // AdamWConfig

struct CUstream_st;

namespace reca::cuda {

using Stream = CUstream_st*;  // == cudaStream_t; nullptr is the default stream

// ---- device, memory, streams -------------------------------------------------
void set_device(int index);
void* device_alloc(size_t bytes);             // never returns null for bytes > 0
void device_free(void* p) noexcept;           // null is fine; errors ignored
void copy_to_device(void* dst, const void* src, size_t bytes, Stream stream);  // blocks until done
void copy_to_host(void* dst, const void* src, size_t bytes, Stream stream);    // blocks until done
void copy_on_device(void* dst, const void* src, size_t bytes, Stream stream);  // async
void fill_bytes(void* dst, int byte, size_t bytes, Stream stream);            // async memset
Stream stream_create();
void stream_destroy(Stream stream) noexcept;
void synchronize(Stream stream);
void device_synchronize();

// Elapsed device time between two points of a stream (CUDA events).
class EventTimer {
 public:
  EventTimer();
  ~EventTimer();
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  void start(Stream stream);
  void stop(Stream stream);
  float elapsed_ms();  // waits for the stop event

 private:
  void* start_ = nullptr;
  void* stop_ = nullptr;
};

// ---- matmul.cu ----------------------------------------------------------------
// C[M,N] = (accumulate ? C : 0) + op(A)[M,K] · op(B)[K,N] + bias[N]  (bias may be null)
// A is stored [M,K] (row-major) or, if trans_a, [K,M]; B is stored [K,N] or, if
// trans_b, [N,K]; densely packed; C does not alias A, B or bias. Same contract as
// reca::cpu::matmul.
//   Fp32: fp32 FFMA SGEMM (128×128 tiles, 8×8 per thread), fp32 accumulation in
//         a fixed order: deterministic, ~1e-6 relative error. Shapes with fewer
//         tiles than the GPU has block slots split K into 2..4 slices summed in
//         order (the split depends on the shape and the SM count only).
//   Tf32: tensor cores (mma.sync m16n8k8 TF32): inputs rounded to 10-bit
//         mantissas, fp32 accumulation: ~1e-4..1e-3 relative error. A documented
//         reduced-precision mode, off by default.
enum class MatmulPrecision { Fp32, Tf32 };
void matmul(float* C, const float* A, const float* B, const float* bias, int64_t M, int64_t N,
            int64_t K, bool trans_a, bool trans_b, bool accumulate, Stream stream,
            MatmulPrecision precision = MatmulPrecision::Fp32);

// ---- gelu.cu (reca::cpu::gelu_* semantics) -----------------------------------
//   forward   y = gelu(x + bias)                    x, y: [rows, cols], bias: [cols] or null
//   backward  g = dy * gelu'(x + bias); dx += g; dbias += Σ_rows g   (dbias may be null)
// dbias is reduced over fixed chunks of rows combined in chunk order: deterministic.
void gelu_forward(float* y, const float* x, const float* bias, int64_t rows, int64_t cols,
                  Stream stream);
void gelu_backward(float* dx, float* dbias, const float* x, const float* bias, const float* dy,
                   int64_t rows, int64_t cols, Stream stream);

// ---- layernorm.cu (reca::cpu::layernorm_* semantics, eps 1e-5) ------------------
//   forward   y = (x − mean)·rstd·w + b, two-pass statistics; mean, rstd: [rows] (may be null)
//   backward  dx += rstd·(gh − mean_C(gh) − xhat·mean_C(gh·xhat)), gh = dy·w
//             dw += Σ_rows dy·xhat; db += Σ_rows dy  (dx, dw, db may each be null)
// y may alias x. Reductions in a fixed order: deterministic.
void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* w,
                       const float* b, int64_t rows, int64_t C, Stream stream);
void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                        const float* w, const float* mean, const float* rstd, int64_t rows,
                        int64_t C, Stream stream);

// ---- adamw.cu (reca::cpu::adamw_step semantics) -----------------------------------
//   g' = g·grad_scale; m = β1·m + (1−β1)·g'; v = β2·v + (1−β2)·g'²;
//   p = p·(1 − lr·wd) if decay; p −= (lr/(1−β1ᵗ))·m/(√v/√(1−β2ᵗ) + eps);
//   ema = d·ema + (1−d)·p when ema != null.  p, m, v, g, ema: [n]; g overlaps nothing.
// The scalars are computed in double and rounded once, as on the CPU.
void adamw_step(float* p, float* m, float* v, float* ema, const float* g, int64_t n, bool decay,
                const AdamWConfig& cfg, Stream stream);

// ---- rng.cu (core/philox.h, bit-identical to the host) ---------------------------
// out[k] = reca::philox_uniform / philox_normal(seed, stream_id, offset + k)
void philox_fill_uniform(uint64_t seed, uint64_t stream_id, float* out, int64_t n,
                         uint64_t offset, Stream stream);
void philox_fill_normal(uint64_t seed, uint64_t stream_id, float* out, int64_t n,
                        uint64_t offset, Stream stream);
// out[r·n .. r·n+n) = reca::philox_permutation(seed, stream_id + r, n), r < count
void philox_permutations(uint64_t seed, uint64_t stream_id, int64_t n, int64_t count,
                         int32_t* out, Stream stream);

// ---- adamw.cu: the whole trainable set in one launch -------------------------------
// segs: HOST array of count segments whose pointers are device memory (the
// backend's AdamWSegment list); each element updated as adamw_step above.
void adamw_step_segments(const AdamWSegment<float>* segs, int64_t count, const AdamWConfig& cfg,
                         Stream stream);

// ---- linear.cu (reca::cpu::linear_* semantics) -----------------------------------
//   forward   y[M,out] = x[M,in]·W[out,in]ᵀ + b[out]            (b may be null)
//   backward  dx += dy·W; dW += dyᵀ·x; db += Σ_rows dy          (each may be null)
// db is a two-pass column sum (row chunks, then chunks in order): deterministic.
void linear_forward(float* y, const float* x, const float* W, const float* b, int64_t M,
                    int64_t in, int64_t out, Stream stream);
void linear_backward(float* dx, float* dW, float* db, const float* dy, const float* x,
                     const float* W, int64_t M, int64_t in, int64_t out, Stream stream);
// out[c] += Σ_r x[r, c] over x [rows, cols], in a fixed order.
void column_sums_add(float* out, const float* x, int64_t rows, int64_t cols, Stream stream);

// ---- residual.cu (elementwise; same rounding as the CPU kernels) ---------------------
void add(float* out, const float* a, const float* b, int64_t n, Stream stream);   // out = a + b
void axpy(float* y, float alpha, const float* x, int64_t n, Stream stream);       // y = fma(α, x, y)
void scale(float* x, float s, int64_t n, Stream stream);                          // x *= s
void clamp(float* x, float lo, float hi, int64_t n, Stream stream);               // NaN stays NaN
// seq[b, row0 + i, :] (+)= block[b, i, :] (to_seq) or block[b, i, :] (+)= seq[b, row0 + i, :]
// for b < B, i < Lb; seq [B, Ls, D], block [B, Lb, D].
void rows_to_seq(float* seq, const float* block, int64_t B, int64_t Ls, int64_t row0, int64_t Lb,
                 int64_t D, bool accumulate, Stream stream);
void rows_from_seq(float* block, const float* seq, int64_t B, int64_t Ls, int64_t row0,
                   int64_t Lb, int64_t D, bool accumulate, Stream stream);

// ---- attention.cu (reca::cpu::attention_* semantics, SPEC §4 visibility) ---------------
// Forward: a warp per query row; scores, softmax and P·V in a fixed order; att
// [B, heads, L, L] gets every entry (zeros where masked); att may be null.
// Backward: dQ per query row; dK, dV per key row summing the queries in order
// (no atomics). Cached: model/backend.h's attention_cached.
void attention_forward(float* out, float* att, const float* qkv, const uint8_t* key_pad, int64_t B,
                       int64_t L, int64_t heads, int64_t width, int64_t cond_len,
                       bool target_causal, Stream stream);
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                        const uint8_t* key_pad, int64_t B, int64_t L, int64_t heads,
                        int64_t width, int64_t cond_len, bool target_causal, Stream stream);
void attention_cached(float* out, const float* qkv, const uint8_t* key_pad, int64_t B,
                      int64_t Lmax, int64_t row0, int64_t Lq, int64_t heads, int64_t width,
                      int64_t cond_len, bool target_causal, Stream stream);

// ---- embedding.cu (reca::cpu::embedding_* / pos_add_* semantics) ----------------------
// The backward adds the rows of each id in order n = 0..N-1 (the CPU's order, so
// the same bits): the first row of every id walks the chain of its repeats.
void embedding_forward(float* out, const float* table, const int32_t* ids, int64_t N, int64_t D,
                       Stream stream);
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t N,
                        int64_t D, Stream stream);
void pos_add_forward(float* x, const float* pos, int64_t B, int64_t seq_len, int64_t L, int64_t D,
                     Stream stream);
void pos_add_backward(float* dpos, const float* dout, int64_t B, int64_t seq_len, int64_t L,
                      int64_t D, Stream stream);

// ---- image.cu (reca::cpu image semantics; the same bits) ------------------------------
void image_from_bytes(float* out, const uint8_t* in, int64_t n, Stream stream);
void image_to_bytes(uint8_t* out, const float* in, int64_t n, Stream stream);
void patchify_forward(float* tokens, const float* img, int64_t B, int64_t S, int64_t P,
                      Stream stream);
void unpatchify_forward(float* img, const float* tokens, int64_t B, int64_t S, int64_t P,
                        Stream stream);
void avgpool_forward(float* out, const float* img, int64_t B, int64_t S, int64_t f, Stream stream);

// ---- cross_entropy.cu (reca::cpu::cross_entropy_* semantics) --------------------------
// Returns Σ CE over non-ignored rows (host double; waits for the stream): per-row
// losses in double, added in a fixed order. dlogits null: forward only.
double cross_entropy(float* losses, float* dlogits, const float* logits, const int32_t* targets,
                     float scale, int64_t rows, int64_t V, Stream stream);

// ---- mse.cu (reca::cpu::mse_* semantics) -----------------------------------------------
float mse_forward(const float* pred, const float* target, int64_t n, Stream stream);  // host value
void mse_backward(float* dpred, const float* pred, const float* target, float scale, int64_t n,
                  Stream stream);

// ---- vq.cu (reca::cpu::vq_* semantics) -------------------------------------------------
// vq_nearest evaluates the canonical double distance (vq.h) of every code: the
// reference's code exactly, ties to the lowest k. vq_loss_forward writes HOST
// scalars. The codebook gradient adds each code's rows in order r (the CPU's bits).
void vq_nearest(int32_t* codes, const float* z, const float* codebook, int64_t n, int64_t K,
                int64_t C, Stream stream);
void vq_gather(float* out, const int32_t* codes, const float* codebook, int64_t n, int64_t C,
               Stream stream);
void vq_loss_forward(float* loss_codebook_host, float* loss_commit_host, const float* z,
                     const float* codebook, const int32_t* codes, int64_t n, int64_t C,
                     Stream stream);
void vq_loss_backward(float* dz, float* dcodebook, const float* dz_q, const float* z,
                      const float* codebook, const int32_t* codes, float scale_codebook,
                      float scale_commit, int64_t n, int64_t K, int64_t C, Stream stream);

// ---- time_embed.cu (reca::cpu::time_embed_forward; flow noising) ------------------------
void time_embed_forward(float* out, const float* t, int64_t B, Stream stream);
// zt = (1 − t_b)·x0 + t_b·ε, v = ε − x0 over [B, n] per sample (no fused multiply-add).
void flow_noise(float* zt, float* v, const float* x0, const float* eps, const float* t, int64_t B,
                int64_t n, Stream stream);

// ---- grad_norm.cu (reca::cpu::grad_norm_segments semantics) ------------------------------
// ptrs, sizes: HOST arrays (ptrs[i] device memory). Fixed 4096-element blocks,
// block partials in double added in block order. Waits for the stream.
float grad_norm_segments(const float* const* ptrs, const int64_t* sizes, int64_t count,
                         bool* nonfinite, Stream stream);

// ---- sampling.cu (reca::cpu sampling semantics) ------------------------------------------
void sample_categorical(int32_t* ids, float* probs, const float* logits, const float* u,
                        float temperature, int64_t top_k, int64_t rows, int64_t V, Stream stream);
void cfg_combine(float* out, const float* cond, const float* uncond, float scale, int64_t n,
                 Stream stream);
void euler_step(float* z, const float* v, float dt, int64_t n, Stream stream);
// remask: reca::cpu::maskgit_remask_count(N, step, total_steps), computed by the caller.
void maskgit_select(int32_t* tokens_out, uint8_t* mask_out, const int32_t* tokens,
                    const uint8_t* mask, const int32_t* sampled, const float* conf, int32_t mask_id,
                    int64_t remask, int64_t B, int64_t N, Stream stream);

}  // namespace reca::cuda
