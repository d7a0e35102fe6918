#include "model/sampler.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/philox.h"
#include "model/schema.h"
#include "model/trainer.h"

namespace reca::model {

void SampleOptions::validate() const {
  check_fields(sampler_schema(), *this, ErrorCode::InvalidArgument);
}

void sample_noise(uint64_t seed, int64_t B, int64_t n, float* out) {
  for (int64_t b = 0; b < B; ++b) philox_fill_normal(seed, sample_stream(kSampleNoise, b), out + b * n, n);
}

namespace {

void check_batch(int64_t B, const void* input, const char* what) {
  RECA_CHECK(B >= 1, InvalidArgument, "the batch must hold at least one sample (got %lld)",
             static_cast<long long>(B));
  RECA_CHECK(input != nullptr, InvalidArgument, "%s are missing", what);
}

}  // namespace

// A generator block's Linear weights prepared once per run: every decoding step
// multiplies them with a few new rows, where packing them again would cost as
// much as the product.
struct PreparedBlock {
  std::unique_ptr<PreparedLinear> qkv, proj, fc1, fc2;
};

namespace {

// The generator blocks over rows [row0, row0 + Lq) of each sequence, x [B, Lq, W]:
// every block appends its q/k/v rows to its cache kv[i] [B, L, 3W] and attends
// to the cached rows. Same ops as stack_forward but the attention; the Linears
// read the prepared weights pw[i].
const float* cached_stack_forward(Backend& be, Arena& arena, const std::vector<BlockTensors>& w,
                                  const std::vector<PreparedBlock>& pw, const StackShape& s,
                                  float* const* kv, const float* x, int64_t row0, int64_t Lq) {
  const int64_t B = s.B, R = B * Lq, W = s.width, H = s.hidden;
  float* h = arena.floats(R * W);
  float* mean = arena.floats(R);
  float* rstd = arena.floats(R);
  float* qkv = arena.floats(R * 3 * W);
  float* a = arena.floats(R * W);
  float* x2 = arena.floats(R * W);
  float* f = arena.floats(R * H);
  float* g = arena.floats(R * H);
  float* out = arena.floats(R * W);
  float* other = arena.floats(R * W);
  const float* cur = x;
  for (size_t i = 0; i < w.size(); ++i) {
    const BlockTensors& t = w[i];
    const PreparedBlock& p = pw[i];
    be.layernorm_forward(h, mean, rstd, cur, t.ln1_w, t.ln1_b, R, W);
    be.linear_forward_prepared(qkv, h, *p.qkv, t.qkv_b, R);
    be.rows_to_seq(kv[i], qkv, B, s.L, row0, Lq, 3 * W, false);
    be.attention_cached(a, kv[i], s.key_pad, B, s.L, row0, Lq, s.heads, W, s.cond_len,
                        s.target_causal);
    be.linear_forward_prepared(x2, a, *p.proj, t.proj_b, R);
    be.add(x2, x2, cur, R * W);
    be.layernorm_forward(h, mean, rstd, x2, t.ln2_w, t.ln2_b, R, W);
    be.linear_gelu_forward_prepared(f, g, h, *p.fc1, t.fc1_b, R);
    be.linear_forward_prepared(out, g, *p.fc2, t.fc2_b, R);
    be.add(out, out, x2, R * W);
    cur = out;
    float* tmp = out;
    out = other;
    other = tmp;
  }
  return cur;
}

}  // namespace

// One batch of generator sequences being sampled: B = 2·Bq with CFG
// (conditional rows first, then the unconditional ones).
struct Sampler::Run {
  Task task = Task::Reca;
  int64_t Bq = 0, B = 0, Lc = 0, Lt = 0, L = 0;
  bool guided = false;
  std::vector<int32_t> text;   // [B, T] host
  std::vector<int32_t> ids;    // [B, L] host scratch
  std::vector<uint8_t> pad;    // [B, L] host scratch
  int32_t* ids_dev = nullptr;  // [B, L]
  uint8_t* pad_dev = nullptr;  // [B, L]
  const float* cond = nullptr; // [B, N_u, W]
  std::vector<float*> kv;      // per block [B, L, 3W]
  std::vector<BlockTensors> w;
  std::vector<PreparedBlock> prepared;        // of w, made by the first run_rows
  std::unique_ptr<PreparedLinear> head_w[2];  // image head, text head: made by head()
  StackShape shape;
};

Sampler::Sampler(RecaModel& model) : m_(model), be_(model.backend()), keep_(be_), step_(be_) {}

Sampler::Run Sampler::start(Task task, int64_t Bq, const int32_t* text, const float* cond,
                            bool guided) {
  const ModelConfig& c = m_.config();
  const int64_t T = c.max_text_len, W = c.width, Nu = c.num_und_tokens();
  Run r;
  r.task = task, r.Bq = Bq, r.guided = guided, r.B = guided ? 2 * Bq : Bq;
  r.Lc = c.cond_len(task), r.Lt = c.target_len(task), r.L = r.Lc + r.Lt;
  r.text.assign(static_cast<size_t>(r.B * T), tok::kPad);  // unconditional half: all PAD
  if (text) std::memcpy(r.text.data(), text, sizeof(int32_t) * Bq * T);
  r.ids.resize(static_cast<size_t>(r.B * r.L));
  r.pad.resize(static_cast<size_t>(r.B * r.L));
  r.ids_dev = keep_.ints(r.B * r.L);
  r.pad_dev = keep_.bytes(r.B * r.L);
  if (cond && guided) {  // the understanding embeddings are never dropped
    float* both = keep_.floats(r.B * Nu * W);
    be_.copy(both, cond, Bq * Nu * W * 4);
    be_.copy(both + Bq * Nu * W, cond, Bq * Nu * W * 4);
    r.cond = both;
  } else {
    r.cond = cond;
  }
  r.w = block_views(m_.layout(), "gen.blocks", c.depth, m_.params());
  for (int64_t i = 0; i < c.depth; ++i) r.kv.push_back(keep_.floats(r.B * r.L * 3 * W));
  r.shape = m_.generator_shape(task, r.B, r.pad_dev);
  return r;
}

// Input embeddings of the whole sequences for the current state (r.text, image
// target ids / latents), built exactly as training builds them.
const float* Sampler::embed(Run& r, const int32_t* img_ids, const float* zt, const float* t) {
  m_.sequence_ids(r.task, r.B, r.text.data(), r.ids.data(), r.pad.data());
  be_.upload(r.ids_dev, r.ids.data(), r.B * r.L * 4);
  be_.upload(r.pad_dev, r.pad.data(), r.B * r.L);
  RecaModel::SeqInput in;
  in.task = r.task, in.B = r.B, in.ids = r.ids_dev, in.cond = r.cond;
  if (img_ids) {
    int32_t* dev = step_.ints(r.B * r.Lt);
    be_.upload(dev, img_ids, r.B * r.Lt * 4);
    in.img_ids = dev;
  }
  in.zt = zt, in.t = t;
  return m_.embed_sequence(in, nullptr, step_);
}

const float* Sampler::run_rows(Run& r, const float* x, int64_t row0, int64_t Lq) {
  const int64_t W = m_.config().width;
  if (r.prepared.empty()) {
    const int64_t H = r.shape.hidden;
    for (const BlockTensors& t : r.w)
      r.prepared.push_back({be_.prepare_linear(t.qkv_w, W, 3 * W), be_.prepare_linear(t.proj_w, W, W),
                            be_.prepare_linear(t.fc1_w, W, H), be_.prepare_linear(t.fc2_w, H, W)});
  }
  float* rows = step_.floats(r.B * Lq * W);
  be_.rows_from_seq(rows, x, r.B, r.L, row0, Lq, W, false);
  return cached_stack_forward(be_, step_, r.w, r.prepared, r.shape, r.kv.data(), rows, row0, Lq);
}

float* Sampler::head(Run& r, const float* h, int64_t Ls, int64_t row0, int64_t n, bool text_head) {
  std::unique_ptr<PreparedLinear>& w = r.head_w[text_head ? 1 : 0];
  if (!w) w = m_.prepare_head(text_head);
  return m_.head_forward(h, r.B, Ls, row0, n, text_head, nullptr, step_, w.get());
}

const float* Sampler::full_forward(Run& r, const float* x) {
  return stack_forward(be_, step_, r.w, m_.config().depth, r.shape, x, nullptr);
}

// out [B·per_sample] (conditional half first) → first half = CFG combination.
void Sampler::combine(const Run& r, float* out, int64_t per_sample, double scale) {
  if (!r.guided) return;
  const int64_t n = r.Bq * per_sample;
  be_.cfg_combine(out, out, out + n, static_cast<float>(scale), n);
}

void Sampler::sample_image(Task task, const int32_t* text, const float* cond, int64_t Bq,
                           const SampleOptions& o, float* images_out, int32_t* codes_out) {
  const ModelConfig& c = m_.config();
  const int64_t N = c.num_image_tokens(), D = c.patch_dim(), S = c.image_size;
  const int64_t K = c.codebook_size;
  RECA_CHECK(!codes_out || c.discrete(), InvalidArgument,
             "codes exist only in the discrete modes (ar, mask), not in '%s'", mode_name(c.mode));
  Run r = start(task, Bq, text, cond, o.cfg != 1.0);
  const int64_t B = r.B, Lc = r.Lc, Lt = r.Lt;
  const float temperature = static_cast<float>(o.temperature);
  std::vector<int32_t> codes(static_cast<size_t>(B * N), -1);  // both halves share the image
  std::vector<int32_t> img_ids(static_cast<size_t>(B * Lt));
  std::vector<float> u;
  int32_t* codes_dev = nullptr;
  float* image = nullptr;

  if (c.mode == Mode::Ar) {
    // N steps, one new position each: row Lc + j (GEN, then x_j) predicts x_{j+1}.
    int32_t* picked = keep_.ints(Bq);
    float* u_dev = keep_.floats(Bq);
    std::vector<int32_t> got(static_cast<size_t>(Bq));
    u.resize(static_cast<size_t>(Bq));
    for (int64_t j = 0; j < N; ++j) {
      step_.reset();
      m_.image_target_ids(codes.data(), nullptr, B, img_ids.data());
      const float* x = embed(r, img_ids.data(), nullptr, nullptr);
      if (j == 0) run_rows(r, x, 0, Lc);
      const float* h = run_rows(r, x, Lc + j, 1);
      float* logits = head(r, h, 1, 0, 1, false);
      combine(r, logits, K, o.cfg);
      for (int64_t b = 0; b < Bq; ++b)
        u[b] = philox_uniform(o.seed, sample_stream(kSampleUniform, b), static_cast<uint64_t>(j));
      be_.upload(u_dev, u.data(), Bq * 4);
      be_.sample_categorical(picked, nullptr, logits, u_dev, temperature, o.top_k, Bq, K);
      be_.download(got.data(), picked, Bq * 4);
      for (int64_t b = 0; b < B; ++b) codes[b * N + j] = got[b % Bq];
    }
    codes_dev = keep_.ints(Bq * N);
    be_.upload(codes_dev, codes.data(), Bq * N * 4);
  } else if (c.mode == Mode::Mask) {
    // MaskGIT from all-MASK: every step samples each masked position and keeps
    // all but the least confident (maskgit_select applies the schedule).
    codes.assign(codes.size(), static_cast<int32_t>(K));
    codes_dev = keep_.ints(Bq * N);
    be_.upload(codes_dev, codes.data(), Bq * N * 4);
    uint8_t* mask_dev = keep_.bytes(Bq * N);
    const std::vector<uint8_t> all(static_cast<size_t>(Bq * N), 1);
    be_.upload(mask_dev, all.data(), Bq * N);
    int32_t* sampled = keep_.ints(Bq * N);
    float* conf = keep_.floats(Bq * N);
    float* u_dev = keep_.floats(Bq * N);
    u.resize(static_cast<size_t>(Bq * N));
    for (int64_t s = 0; s < o.steps; ++s) {
      step_.reset();
      m_.image_target_ids(codes.data(), nullptr, B, img_ids.data());
      const float* x = embed(r, img_ids.data(), nullptr, nullptr);
      if (s == 0) run_rows(r, x, 0, Lc);
      const float* h = run_rows(r, x, Lc, Lt);
      float* logits = head(r, h, Lt, 1, N, false);
      combine(r, logits, N * K, o.cfg);
      for (int64_t b = 0; b < Bq; ++b)
        for (int64_t n = 0; n < N; ++n)
          u[b * N + n] = philox_uniform(o.seed, sample_stream(kSampleUniform, b),
                                        static_cast<uint64_t>(s * N + n));
      be_.upload(u_dev, u.data(), Bq * N * 4);
      be_.sample_categorical(sampled, conf, logits, u_dev, temperature, o.top_k, Bq * N, K);
      const double anneal = o.choice_temperature * (1.0 - static_cast<double>(s + 1) / o.steps);
      if (anneal > 0) {
        // Randomized choice (SPEC §7): without it the first steps keep only the likeliest
        // tokens everywhere (the background), and objects are never placed.
        be_.download(u.data(), conf, Bq * N * 4);
        for (int64_t b = 0; b < Bq; ++b)
          for (int64_t n = 0; n < N; ++n) {
            const double g = -std::log(-std::log(static_cast<double>(philox_uniform(
                o.seed, sample_stream(kSampleChoice, b), static_cast<uint64_t>(s * N + n)))));
            float& v = u[b * N + n];
            v = static_cast<float>(std::log(static_cast<double>(v)) + anneal * g);
          }
        be_.upload(conf, u.data(), Bq * N * 4);
      }
      be_.maskgit_select(codes_dev, mask_dev, codes_dev, mask_dev, sampled, conf,
                         static_cast<int32_t>(K), s, o.steps, Bq, N);
      be_.download(codes.data(), codes_dev, Bq * N * 4);
      if (r.guided) std::memcpy(codes.data() + Bq * N, codes.data(), sizeof(int32_t) * Bq * N);
    }
  } else {
    // Flow: Euler from t = 1 (z = ε) to 0 in T equal steps, z ← z − (1/T)·v̂(z, t).
    std::vector<float> eps(static_cast<size_t>(Bq * N * D));
    sample_noise(o.seed, Bq, N * D, eps.data());
    float* z = keep_.floats(Bq * N * D);
    be_.upload(z, eps.data(), Bq * N * D * 4);
    float* zt = r.guided ? keep_.floats(B * N * D) : z;
    float* t_dev = keep_.floats(B);
    std::vector<float> t(static_cast<size_t>(B));
    const float dt = static_cast<float>(1.0 / static_cast<double>(o.steps));
    for (int64_t s = 0; s < o.steps; ++s) {
      step_.reset();
      const float ts =
          static_cast<float>(1.0 - static_cast<double>(s) / static_cast<double>(o.steps));
      for (auto& v : t) v = ts;
      be_.upload(t_dev, t.data(), B * 4);
      if (r.guided) {
        be_.copy(zt, z, Bq * N * D * 4);
        be_.copy(zt + Bq * N * D, z, Bq * N * D * 4);
      }
      const float* x = embed(r, nullptr, zt, t_dev);
      if (s == 0) run_rows(r, x, 0, Lc);
      const float* h = run_rows(r, x, Lc, Lt);
      float* v = head(r, h, Lt, 1, N, false);
      combine(r, v, N * D, o.cfg);
      be_.euler_step(z, v, dt, Bq * N * D);
    }
    step_.reset();
    image = step_.floats(Bq * S * S * 3);
    be_.unpatchify_forward(image, z, Bq, S, c.gen_patch);
  }
  if (c.discrete()) {
    step_.reset();
    image = m_.decode_device(codes_dev, Bq, step_);
    if (codes_out) be_.download(codes_out, codes_dev, Bq * N * 4);
  }
  be_.clamp(image, -1.0f, 1.0f, Bq * S * S * 3);
  be_.download(images_out, image, Bq * S * S * 3 * 4);
}

void Sampler::generate(const int32_t* captions, int64_t B, const SampleOptions& o,
                       float* images_out, int32_t* codes_out) {
  check_batch(B, captions, "captions");
  o.validate();
  keep_.reset();
  step_.reset();
  sample_image(Task::T2i, captions, nullptr, B, o, images_out, codes_out);
}

void Sampler::reconstruct(const uint8_t* images, int64_t B, const std::string& template_text,
                          const SampleOptions& o, float* images_out, int32_t* codes_out) {
  check_batch(B, images, "images");
  o.validate();
  const int64_t T = m_.config().max_text_len;
  std::vector<int32_t> text(static_cast<size_t>(B * T));
  encode_text(template_text, T, text.data());
  for (int64_t b = 1; b < B; ++b) std::memcpy(&text[b * T], text.data(), sizeof(int32_t) * T);
  keep_.reset();
  step_.reset();
  const float* cond = m_.understanding(images, B, keep_);
  sample_image(Task::Reca, text.data(), cond, B, o, images_out, codes_out);
}

void Sampler::caption(const uint8_t* images, int64_t B, int64_t max_len, int32_t* out) {
  check_batch(B, images, "images");
  const int64_t T = m_.config().max_text_len;
  RECA_CHECK(max_len >= 1 && max_len <= T, InvalidArgument,
             "maxLength must be in [1, %lld] (the model's max_text_len; got %lld)",
             static_cast<long long>(T), static_cast<long long>(max_len));
  keep_.reset();
  step_.reset();
  const float* cond = m_.understanding(images, B, keep_);
  Run r = start(Task::I2t, B, nullptr, cond, false);
  std::vector<uint8_t> done(static_cast<size_t>(B), 0);
  std::vector<float> logits(static_cast<size_t>(B * tok::kVocab));
  // Row Lc + j (CAP, then y_j) predicts y_{j+1}; the text so far is part of the ids.
  for (int64_t j = 0; j < max_len; ++j) {
    step_.reset();
    const float* x = embed(r, nullptr, nullptr, nullptr);
    if (j == 0) run_rows(r, x, 0, r.Lc);
    const float* h = run_rows(r, x, r.Lc + j, 1);
    const float* lg = head(r, h, 1, 0, 1, true);
    be_.download(logits.data(), lg, B * tok::kVocab * 4);
    bool all_done = true;
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) continue;
      const float* l = logits.data() + b * tok::kVocab;
      int32_t best = 0;
      for (int32_t id = 1; id < 256; ++id)
        if (l[id] > l[best]) best = id;
      if (l[tok::kEos] > l[best]) best = tok::kEos;
      if (best == tok::kEos) done[b] = 1;
      else r.text[b * T + j] = best;
      all_done = all_done && done[b];
    }
    if (all_done) break;
  }
  std::memcpy(out, r.text.data(), sizeof(int32_t) * B * T);
}

void Sampler::image_logits(Task task, const int32_t* text, const uint8_t* images,
                           const int32_t* codes, int64_t B, bool kv_cache, float* logits_out) {
  const ModelConfig& c = m_.config();
  RECA_CHECK(c.discrete(), InvalidArgument,
             "image logits exist only in the discrete modes (ar, mask), not in '%s'",
             mode_name(c.mode));
  RECA_CHECK(task == Task::T2i || task == Task::Reca, InvalidArgument,
             "image logits need an image task (t2i or reca)");
  check_batch(B, codes, "codes");
  RECA_CHECK(task == Task::T2i || images, InvalidArgument, "images are missing");
  const int64_t N = c.num_image_tokens(), K = c.codebook_size;
  keep_.reset();
  step_.reset();
  const float* cond = task == Task::Reca ? m_.understanding(images, B, keep_) : nullptr;
  Run r = start(task, B, text, cond, false);
  std::vector<int32_t> img_ids(static_cast<size_t>(B * r.Lt));
  m_.image_target_ids(codes, nullptr, B, img_ids.data());
  const float* x = embed(r, img_ids.data(), nullptr, nullptr);
  const int64_t row0 = c.mode == Mode::Ar ? r.Lc : r.Lc + 1;  // first row that predicts
  if (!kv_cache) {
    const float* h = full_forward(r, x);
    const float* lg = head(r, h, r.L, row0, N, false);
    be_.download(logits_out, lg, B * N * K * 4);
    return;
  }
  run_rows(r, x, 0, r.Lc);
  if (c.mode == Mode::Mask) {
    const float* h = run_rows(r, x, r.Lc, r.Lt);
    const float* lg = head(r, h, r.Lt, 1, N, false);
    be_.download(logits_out, lg, B * N * K * 4);
    return;
  }
  std::vector<float> row(static_cast<size_t>(B * K));
  for (int64_t j = 0; j < N; ++j) {
    const float* h = run_rows(r, x, r.Lc + j, 1);
    const float* lg = head(r, h, 1, 0, 1, false);
    be_.download(row.data(), lg, B * K * 4);
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(logits_out + (b * N + j) * K, row.data() + b * K, sizeof(float) * K);
  }
}

void Sampler::caption_logits(const uint8_t* images, const int32_t* captions, int64_t B,
                             bool kv_cache, float* logits_out) {
  check_batch(B, images, "images");
  RECA_CHECK(captions != nullptr, InvalidArgument, "captions are missing");
  const int64_t V = tok::kVocab;
  keep_.reset();
  step_.reset();
  const float* cond = m_.understanding(images, B, keep_);
  Run r = start(Task::I2t, B, captions, cond, false);
  const float* x = embed(r, nullptr, nullptr, nullptr);
  if (!kv_cache) {
    const float* h = full_forward(r, x);
    const float* lg = head(r, h, r.L, r.Lc, r.Lt, true);
    be_.download(logits_out, lg, B * r.Lt * V * 4);
    return;
  }
  run_rows(r, x, 0, r.Lc);
  std::vector<float> row(static_cast<size_t>(B * V));
  for (int64_t j = 0; j < r.Lt; ++j) {
    const float* h = run_rows(r, x, r.Lc + j, 1);
    const float* lg = head(r, h, 1, 0, 1, true);
    be_.download(row.data(), lg, B * V * 4);
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(logits_out + (b * r.Lt + j) * V, row.data() + b * V, sizeof(float) * V);
  }
}

}  // namespace reca::model
