// Sampling from a RecA-Mini model (SPEC §7): text-to-image generation (the t2i
// condition block), RecA reconstruction (the reca condition block: the image's
// own understanding embeddings + a template) and greedy captioning (i2t).
//
// The condition block is run once per call: every block's fused q/k/v rows go
// into a cache, and each later pass runs only the rows it needs against it
// (ar and captions: one new position per step; mask and flow: the target block
// per step). With CFG (scale s != 1) the conditional and unconditional
// sequences run together as one batch of 2B (conditional first); the
// unconditional one has its text (template or caption) all PAD and keeps the
// understanding embeddings; out = out_u + s·(out_c − out_u). At s == 1 the
// unconditional pass is skipped (out = out_c exactly).
//
// Random draws come from Philox, as a pure function of (seed, sample index b,
// step, position), so they depend neither on the batch size nor on the thread
// count:
//   uniforms  philox_uniform(seed, sample_stream(kSampleUniform, b), i):
//             ar step j: i = j; mask step s, position n: i = s·N + n
//   noise     philox_normal(seed, sample_stream(kSampleNoise, b), i): flow ε[b] element i
//   choice    philox_uniform(seed, sample_stream(kSampleChoice, b), s·N + n): mask step s's
//             Gumbel noise at position n (choice_temperature > 0)
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/reca_model.h"

namespace reca::model {

struct SampleOptions {
  int64_t steps = 32;        // mask: MaskGIT steps T; flow: Euler steps T; ar: unused (N steps)
  double cfg = 1.0;          // guidance scale s (any finite value); 1: conditional pass only
  double temperature = 1.0;  // discrete modes; 0 = greedy (argmax)
  int64_t top_k = 0;         // discrete modes; 0 = every code
  // mask: MaskGIT's randomized choice. Positions are ranked by log(confidence)
  // + choice_temperature·(1 − (s+1)/T)·g, g ~ Gumbel(0, 1); 0 = by confidence alone.
  double choice_temperature = 0.0;
  uint64_t seed = 0;
  // Throws E_INVALID_ARGUMENT naming the offending option.
  void validate() const;
};

constexpr uint64_t kSampleUniform = 1, kSampleNoise = 2, kSampleChoice = 3;
inline uint64_t sample_stream(uint64_t purpose, int64_t b) {
  return purpose << 32 | static_cast<uint64_t>(b);
}
// The flow starting noise ε [B, n] (host) of a seed, as the sampler draws it.
void sample_noise(uint64_t seed, int64_t B, int64_t n, float* out);

class Sampler {
 public:
  explicit Sampler(RecaModel& model);
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  // Text-to-image. captions [B, T] PAD-filled byte ids (host) → images_out
  // [B, S, S, 3] in [-1, 1] (host). codes_out [B, N] (host, optional, discrete
  // modes only) receives the sampled codes.
  void generate(const int32_t* captions, int64_t B, const SampleOptions& o, float* images_out,
                int32_t* codes_out = nullptr);
  // RecA reconstruction of byte images [B, S, S, 3] (host): condition = their
  // understanding embeddings + template_text (bytes, cut to T at a UTF-8
  // boundary). Output as generate.
  void reconstruct(const uint8_t* images, int64_t B, const std::string& template_text,
                   const SampleOptions& o, float* images_out, int32_t* codes_out = nullptr);
  // Greedy captioning of byte images [B, S, S, 3] (host) → out [B, T] (host):
  // the caption bytes, PAD-filled after them (EOS is not written). A caption
  // ends at EOS or after max_len bytes (1 <= max_len <= T). Candidates at each
  // step are the bytes 0..255 and EOS (lowest id among equal logits).
  void caption(const uint8_t* images, int64_t B, int64_t max_len, int32_t* out);

  // Teacher-forced logits (host out), with the KV cache as the sampler runs or
  // by one full forward (the training graph):
  //  image_logits: discrete modes; task t2i (text = captions [B, T]) or reca
  //   (images + text = template ids [B, T]); codes [B, N] (mask mode: K = MASK)
  //   → logits [B, N, K] of the rows that predict (ar: row j predicts x_{j+1}).
  //  caption_logits: captions [B, T] → logits [B, 1+T, 263] (row j predicts y_{j+1}).
  void image_logits(Task task, const int32_t* text, const uint8_t* images, const int32_t* codes,
                    int64_t B, bool kv_cache, float* logits_out);
  void caption_logits(const uint8_t* images, const int32_t* captions, int64_t B, bool kv_cache,
                      float* logits_out);

  int64_t activation_bytes() const { return keep_.peak() + step_.peak(); }

 private:
  struct Run;
  Run start(Task task, int64_t Bq, const int32_t* text, const float* cond, bool guided);
  const float* embed(Run& r, const int32_t* img_ids, const float* zt, const float* t);
  const float* run_rows(Run& r, const float* x, int64_t row0, int64_t Lq);
  const float* full_forward(Run& r, const float* x);
  // RecaModel::head_forward over r.B sequences, with the head's weight prepared once per run.
  float* head(Run& r, const float* h, int64_t Ls, int64_t row0, int64_t n, bool text_head);
  void combine(const Run& r, float* out, int64_t per_sample, double scale);
  void sample_image(Task task, const int32_t* text, const float* cond, int64_t Bq,
                    const SampleOptions& o, float* images_out, int32_t* codes_out);

  RecaModel& m_;
  Backend& be_;
  Arena keep_;   // one call's persistent buffers (KV cache, condition, sampler state)
  Arena step_;   // one step's scratch
};

}  // namespace reca::model
