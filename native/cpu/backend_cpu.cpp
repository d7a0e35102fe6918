// The CPU backend: host memory and the runtime-dispatched SIMD kernels.
// Like every file in native/cpu/ it is compiled once per ISA level; the backend
// itself is level-0 code (it calls the dispatching entry points), so the other
// levels compile nothing from it.
#if RECA_ISA_LEVEL == 0
#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "core/error.h"
#include "core/threadpool.h"
#include "cpu/adamw.h"
#include "cpu/attention.h"
#include "cpu/cross_entropy.h"
#include "cpu/embedding.h"
#include "cpu/gelu.h"
#include "cpu/grad_norm.h"
#include "cpu/image.h"
#include "cpu/layernorm.h"
#include "cpu/matmul.h"
#include "cpu/matmul_bf16.h"
#include "cpu/mse.h"
#include "cpu/residual.h"
#include "cpu/sampling.h"
#include "cpu/time_embed.h"
#include "cpu/vq.h"
#include "model/backend.h"

namespace reca::model {
namespace {

struct CpuPreparedLinear final : PreparedLinear {
  CpuPreparedLinear(const float* W, int64_t in, int64_t out, const Backend* owner)
      : PreparedLinear(W, in, out, owner), packed(W, in, out) {}
  cpu::PackedWeight packed;
};

class CpuBackend final : public Backend {
  static constexpr int64_t kChunk = 256 << 10;
  template <class F>
  static void by_chunks(int64_t bytes, F&& f) {
    if (bytes <= 0) return;
    if (bytes < 4 * kChunk) return f(0, bytes);
    parallel_for((bytes + kChunk - 1) / kChunk, 1, [&](int64_t c0, int64_t c1) {
      f(c0 * kChunk, std::min(bytes, c1 * kChunk));
    });
  }

  static constexpr size_t kHeader = 64;
  static constexpr size_t kMapAtLeast = size_t(256) << 10;

 public:
  const char* name() const override { return "cpu"; }

  // Large blocks (activation arenas, parameter buffers) are mapped directly so
  // that release() hands them back to the system at once: through malloc, a
  // freed block can stay in the process (glibc raises its mmap threshold after
  // the first large free), and the arena's fold after the first step then
  // held the activations twice in the peak RSS. A 64-byte header before each
  // block records how it was made.
  // Never returns null: a negative size is a caller's wrapped arithmetic, and
  // 0 bytes still gets a block of its own (a null "success" would let a model
  // run with no buffer).
  void* alloc(int64_t bytes) override {
    RECA_CHECK(bytes >= 0, Internal, "backend alloc of a negative size (%lld bytes)",
               static_cast<long long>(bytes));
    const size_t total = (static_cast<size_t>(bytes) + 63) / 64 * 64 + kHeader;
    char* base = nullptr;
    if (total >= kMapAtLeast) {
      void* m = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      base = m == MAP_FAILED ? nullptr : static_cast<char*>(m);
    } else {
      base = static_cast<char*>(std::aligned_alloc(64, total));
    }
    if (!base)
      fail(ErrorCode::OutOfMemory, "could not allocate %lld bytes of host memory; use a smaller "
           "batch or model", static_cast<long long>(bytes));
    *reinterpret_cast<size_t*>(base) = total;
    return base + kHeader;
  }
  void release(void* p) override {
    if (!p) return;
    char* base = static_cast<char*>(p) - kHeader;
    const size_t total = *reinterpret_cast<size_t*>(base);
    if (total >= kMapAtLeast) munmap(base, total);
    else std::free(base);
  }
  // Gradient buffers of several MiB are cleared and copied a few times per layer:
  // split the big ones across the pool (one thread does not reach the copy bandwidth).
  void zero(void* p, int64_t bytes) override {
    char* d = static_cast<char*>(p);
    by_chunks(bytes, [d](int64_t b, int64_t e) { std::memset(d + b, 0, static_cast<size_t>(e - b)); });
  }
  void copy(void* dst, const void* src, int64_t bytes) override {
    char* d = static_cast<char*>(dst);
    const char* s = static_cast<const char*>(src);
    by_chunks(bytes, [d, s](int64_t b, int64_t e) { std::memcpy(d + b, s + b, static_cast<size_t>(e - b)); });
  }
  void upload(void* dst, const void* host, int64_t bytes) override { copy(dst, host, bytes); }
  void download(void* host, const void* src, int64_t bytes) override { copy(host, src, bytes); }

  std::string matmul_precision_unavailable(MatmulPrecision p) const override {
    if (p == MatmulPrecision::Fp32) return "";
    const char* why = cpu::bf16_matmul_unavailable_reason();
    return why ? why : "";
  }
  // bf16: cpu/matmul_bf16.h (E_DEVICE where the CPU or the active ISA lacks it).
  void linear_forward(float* y, const float* x, const float* W, const float* b, int64_t M,
                      int64_t in, int64_t out) override {
    if (linear_precision() == MatmulPrecision::Bf16) return cpu::linear_forward_bf16(y, x, W, b, M, in, out);
    cpu::linear_forward(y, x, W, b, M, in, out);
  }
  // fp32 products read W's panels packed once (cpu::PackedWeight); bf16 ones run the plain path.
  std::unique_ptr<PreparedLinear> prepare_linear(const float* W, int64_t in,
                                                 int64_t out) override {
    return std::make_unique<CpuPreparedLinear>(W, in, out, this);
  }
  void linear_forward_prepared(float* y, const float* x, const PreparedLinear& W, const float* b,
                               int64_t M) override {
    if (W.owner != this || linear_precision() == MatmulPrecision::Bf16)
      return linear_forward(y, x, W.W, b, M, W.in, W.out);
    cpu::linear_forward(y, x, static_cast<const CpuPreparedLinear&>(W).packed, b, M);
  }
  void linear_gelu_forward_prepared(float* f, float* g, const float* x, const PreparedLinear& W,
                                    const float* b, int64_t M) override {
    if (W.owner != this || linear_precision() == MatmulPrecision::Bf16)
      return linear_gelu_forward(f, g, x, W.W, b, M, W.in, W.out);
    cpu::linear_gelu_forward(f, g, x, static_cast<const CpuPreparedLinear&>(W).packed, b, M);
  }
  void linear_backward(float* dx, float* dW, float* db, const float* dy, const float* x,
                       const float* W, int64_t M, int64_t in, int64_t out) override {
    if (linear_precision() == MatmulPrecision::Bf16)
      return cpu::linear_backward_bf16(dx, dW, db, dy, x, W, M, in, out);
    cpu::linear_backward(dx, dW, db, dy, x, W, M, in, out);
  }
  void linear_gelu_forward(float* f, float* g, const float* x, const float* W, const float* b,
                           int64_t M, int64_t in, int64_t out) override {
    if (linear_precision() == MatmulPrecision::Bf16)
      return cpu::linear_gelu_forward_bf16(f, g, x, W, b, M, in, out);
    cpu::linear_gelu_forward(f, g, x, W, b, M, in, out);
  }
  void linear_backward_gelu(float* dxf, float* dW, float* db, const float* dy, const float* x,
                            const float* W, const float* f, int64_t M, int64_t in,
                            int64_t out) override {
    if (linear_precision() == MatmulPrecision::Bf16)
      return cpu::linear_backward_gelu_bf16(dxf, dW, db, dy, x, W, f, M, in, out);
    cpu::linear_backward_gelu(dxf, dW, db, dy, x, W, f, M, in, out);
  }
  void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* w,
                         const float* b, int64_t rows, int64_t C) override {
    cpu::layernorm_forward(y, mean, rstd, x, w, b, rows, C);
  }
  void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                          const float* w, const float* mean, const float* rstd, int64_t rows,
                          int64_t C) override {
    cpu::layernorm_backward(dx, dw, db, dy, x, w, mean, rstd, rows, C);
  }
  void gelu_forward(float* y, const float* x, int64_t rows, int64_t cols) override {
    cpu::gelu_forward(y, x, nullptr, rows, cols);
  }
  void gelu_backward(float* dx, const float* x, const float* dy, int64_t rows,
                     int64_t cols) override {
    cpu::gelu_backward(dx, nullptr, x, nullptr, dy, rows, cols);
  }
  void add(float* out, const float* a, const float* b, int64_t n) override {
    cpu::residual_add(out, a, b, n);
  }
  void axpy(float* y, float alpha, const float* x, int64_t n) override {
    cpu::residual_axpy(y, alpha, x, n);
  }
  void scale(float* x, float s, int64_t n) override { cpu::residual_scale(x, s, n); }
  void attention_forward(float* out, float* att, const float* qkv, const uint8_t* key_pad,
                         int64_t B, int64_t L, int64_t heads, int64_t width, int64_t cond_len,
                         bool target_causal) override {
    cpu::attention_forward(out, att, qkv, key_pad, B, L, heads, width, cond_len, target_causal);
  }
  void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                          const uint8_t* key_pad, int64_t B, int64_t L, int64_t heads,
                          int64_t width, int64_t cond_len, bool target_causal) override {
    cpu::attention_backward(dqkv, dout, qkv, att, key_pad, B, L, heads, width, cond_len,
                            target_causal);
  }
  // Per (b, head): the new queries and the non-PAD cached keys/values are gathered
  // into dense blocks, then S = Q·Kᵀ (matmul), scaled, keys past each query's
  // visible prefix set to −∞, row softmax, O = P·V (matmul). Work is split over
  // (b, head) pairs and the kernels do not depend on the thread count.
  void attention_cached(float* out, const float* qkv, const uint8_t* key_pad, int64_t B,
                        int64_t Lmax, int64_t row0, int64_t Lq, int64_t heads, int64_t width,
                        int64_t cond_len, bool target_causal) override {
    const int64_t hd = width / heads, C3 = 3 * width, filled = row0 + Lq;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    parallel_for(B * heads, 1, [&](int64_t p0, int64_t p1) {
      std::vector<int32_t> idx(static_cast<size_t>(filled)), cnt(static_cast<size_t>(filled + 1));
      std::vector<float> q(static_cast<size_t>(Lq * hd)), o(static_cast<size_t>(Lq * hd));
      std::vector<float> k(static_cast<size_t>(filled * hd)), v(static_cast<size_t>(filled * hd));
      std::vector<float> sc(static_cast<size_t>(Lq * filled));
      std::vector<int64_t> seen(static_cast<size_t>(Lq));
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t b = p / heads, h = p % heads;
        const float* x = qkv + b * Lmax * C3 + h * hd;  // q_i at x + i·C3, k at +width, v at +2·width
        const uint8_t* pad = key_pad ? key_pad + b * Lmax : nullptr;
        int32_t n = 0;  // cnt[e] = non-PAD keys below position e
        for (int64_t j = 0; j < filled; ++j) {
          cnt[j] = n;
          if (!pad || !pad[j]) idx[n++] = static_cast<int32_t>(j);
        }
        cnt[filled] = n;
        for (int64_t t = 0; t < n; ++t) {
          std::memcpy(&k[t * hd], x + idx[t] * C3 + width, sizeof(float) * hd);
          std::memcpy(&v[t * hd], x + idx[t] * C3 + 2 * width, sizeof(float) * hd);
        }
        for (int64_t r = 0; r < Lq; ++r) {
          std::memcpy(&q[r * hd], x + (row0 + r) * C3, sizeof(float) * hd);
          const int64_t i = row0 + r;
          const int64_t end = i < cond_len ? cond_len : (target_causal ? i + 1 : Lmax);
          seen[r] = cnt[end < filled ? end : filled];
        }
        if (n == 0) {  // every key is PAD: zero outputs, as attention_forward
          for (int64_t r = 0; r < Lq; ++r)
            std::memset(out + (b * Lq + r) * width + h * hd, 0, sizeof(float) * hd);
          continue;
        }
        cpu::matmul(sc.data(), q.data(), k.data(), nullptr, Lq, n, hd, false, true, false);
        for (int64_t r = 0; r < Lq; ++r) {
          float* row = &sc[r * n];
          for (int64_t t = 0; t < n; ++t) row[t] = t < seen[r] ? row[t] * scale : -INFINITY;
          if (seen[r] == 0) row[0] = 0.0f;  // keeps the softmax defined; zeroed below
        }
        cpu::softmax_forward(sc.data(), sc.data(), Lq, n);
        for (int64_t r = 0; r < Lq; ++r)
          if (seen[r] == 0) std::memset(&sc[r * n], 0, sizeof(float) * n);
        cpu::matmul(o.data(), sc.data(), v.data(), nullptr, Lq, hd, n, false, false, false);
        for (int64_t r = 0; r < Lq; ++r)
          std::memcpy(out + (b * Lq + r) * width + h * hd, &o[r * hd], sizeof(float) * hd);
      }
    });
  }
  void embedding_forward(float* out, const float* table, const int32_t* ids, int64_t N,
                         int64_t D) override {
    cpu::embedding_forward(out, table, ids, N, D);
  }
  void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t N,
                          int64_t D) override {
    cpu::embedding_backward(dtable, dout, ids, N, D);
  }
  void pos_add_forward(float* x, const float* pos, int64_t B, int64_t seq_len, int64_t L,
                       int64_t D) override {
    cpu::pos_add_forward(x, pos, B, seq_len, L, D);
  }
  void pos_add_backward(float* dpos, const float* dout, int64_t B, int64_t seq_len, int64_t L,
                        int64_t D) override {
    cpu::pos_add_backward(dpos, dout, B, seq_len, L, D);
  }
  void rows_to_seq(float* seq, const float* block, int64_t B, int64_t Ls, int64_t row0,
                   int64_t Lb, int64_t D, bool accumulate) override {
    for (int64_t b = 0; b < B; ++b) {
      float* dst = seq + (b * Ls + row0) * D;
      const float* src = block + b * Lb * D;
      if (accumulate) cpu::residual_axpy(dst, 1.0f, src, Lb * D);
      else std::memcpy(dst, src, sizeof(float) * Lb * D);
    }
  }
  void rows_from_seq(float* block, const float* seq, int64_t B, int64_t Ls, int64_t row0,
                     int64_t Lb, int64_t D, bool accumulate) override {
    for (int64_t b = 0; b < B; ++b) {
      float* dst = block + b * Lb * D;
      const float* src = seq + (b * Ls + row0) * D;
      if (accumulate) cpu::residual_axpy(dst, 1.0f, src, Lb * D);
      else std::memcpy(dst, src, sizeof(float) * Lb * D);
    }
  }
  void image_from_bytes(float* out, const uint8_t* in, int64_t n) override {
    cpu::image_from_bytes(out, in, n);
  }
  void image_to_bytes(uint8_t* out, const float* in, int64_t n) override {
    cpu::image_to_bytes(out, in, n);
  }
  void patchify_forward(float* tokens, const float* img, int64_t B, int64_t S,
                        int64_t P) override {
    cpu::patchify_forward(tokens, img, B, S, P);
  }
  void unpatchify_forward(float* img, const float* tokens, int64_t B, int64_t S,
                          int64_t P) override {
    cpu::unpatchify_forward(img, tokens, B, S, P);
  }
  void avgpool_forward(float* out, const float* img, int64_t B, int64_t S, int64_t f) override {
    cpu::avgpool_forward(out, img, B, S, f);
  }
  double cross_entropy_forward_backward(float* losses, float* dlogits, const float* logits,
                                        const int32_t* targets, float scale, int64_t rows,
                                        int64_t V) override {
    return cpu::cross_entropy_forward_backward(losses, dlogits, logits, targets, scale, rows, V);
  }
  double cross_entropy_forward(float* losses, const float* logits, const int32_t* targets,
                               int64_t rows, int64_t V) override {
    return cpu::cross_entropy_forward(losses, logits, targets, rows, V);
  }
  float mse_forward(const float* pred, const float* target, int64_t n) override {
    return cpu::mse_forward(pred, target, n);
  }
  void mse_backward(float* dpred, const float* pred, const float* target, float scale,
                    int64_t n) override {
    cpu::mse_backward(dpred, pred, target, scale, n);
  }
  void vq_nearest(int32_t* codes, const float* z, const float* codebook, int64_t n, int64_t K,
                  int64_t C) override {
    cpu::vq_nearest(codes, z, codebook, n, K, C);
  }
  void vq_gather(float* out, const int32_t* codes, const float* codebook, int64_t n,
                 int64_t C) override {
    cpu::vq_gather(out, codes, codebook, n, C);
  }
  void vq_loss_forward(float* loss_codebook, float* loss_commit, const float* z,
                       const float* codebook, const int32_t* codes, int64_t n,
                       int64_t C) override {
    cpu::vq_loss_forward(loss_codebook, loss_commit, z, codebook, codes, n, C);
  }
  void vq_loss_backward(float* dz, float* dcodebook, const float* dz_q, const float* z,
                        const float* codebook, const int32_t* codes, float scale_codebook,
                        float scale_commit, int64_t n, int64_t K, int64_t C) override {
    cpu::vq_loss_backward(dz, dcodebook, dz_q, z, codebook, codes, scale_codebook, scale_commit,
                          n, K, C);
  }
  void time_embed_forward(float* out, const float* t, int64_t B) override {
    cpu::time_embed_forward(out, t, B);
  }
  void flow_noise(float* zt, float* v, const float* x0, const float* eps, const float* t,
                  int64_t B, int64_t n) override {
    parallel_for(B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const float tb = t[b], keep = 1.0f - tb;
        for (int64_t i = b * n; i < (b + 1) * n; ++i) {
          zt[i] = keep * x0[i] + tb * eps[i];
          v[i] = eps[i] - x0[i];
        }
      }
    });
  }
  float grad_norm_segments(const float* const* ptrs, const int64_t* sizes, int64_t count,
                           bool* nonfinite) override {
    return cpu::grad_norm_segments(ptrs, sizes, count, nonfinite);
  }
  void adamw_step_segments(const AdamWSegment<float>* segs, int64_t count,
                           const AdamWConfig& cfg) override {
    cpu::adamw_step_segments(segs, count, cfg);
  }
  void sample_categorical(int32_t* ids, float* probs, const float* logits, const float* u,
                          float temperature, int64_t top_k, int64_t rows, int64_t V) override {
    cpu::sample_categorical(ids, probs, logits, u, temperature, top_k, rows, V);
  }
  void cfg_combine(float* out, const float* cond, const float* uncond, float s,
                   int64_t n) override {
    cpu::cfg_combine(out, cond, uncond, s, n);
  }
  void euler_step(float* z, const float* v, float dt, int64_t n) override {
    cpu::euler_step(z, v, dt, n);
  }
  void maskgit_select(int32_t* tokens_out, uint8_t* mask_out, const int32_t* tokens,
                      const uint8_t* mask, const int32_t* sampled, const float* conf,
                      int32_t mask_id, int64_t step, int64_t total_steps, int64_t B,
                      int64_t N) override {
    cpu::maskgit_select(tokens_out, mask_out, tokens, mask, sampled, conf, mask_id, step,
                        total_steps, B, N);
  }
  void clamp(float* x, float lo, float hi, int64_t n) override {
    parallel_for(n, 1 << 14, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) x[i] = x[i] < lo ? lo : (x[i] > hi ? hi : x[i]);
    });
  }
};

}  // namespace

Backend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

}  // namespace reca::model
#endif  // RECA_ISA_LEVEL == 0
