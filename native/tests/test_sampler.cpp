// The sampler (SPEC §7) on the tiny preset: option checks, shapes and range,
// determinism (seeds, thread counts), the KV cache against a full recompute,
// CFG wiring, MaskGIT completion, a one-step flow sample computed by hand,
// and greedy captions that stop at EOS.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/philox.h"
#include "core/threadpool.h"
#include "model/sampler.h"
#include "model/trainer.h"
#include "tests/testing.h"

using namespace reca;
using namespace reca::model;
using namespace reca::test;

namespace {

// A tiny model whose weights are scaled up, so attention is far from uniform
// and the logits spread (a wrong visibility or cache row then shows clearly).
struct TinyModel {
  RecaModel m;
  explicit TinyModel(Mode mode, uint64_t seed = 11, float gain = 4.0f)
      : m(ModelConfig::preset("tiny", mode), cpu_backend()) {
    m.init(seed);
    std::vector<float> p(static_cast<size_t>(m.param_floats()));
    m.get_params(p.data());
    for (const auto& pi : m.layout().params()) {
      if (pi.name.find("ln") != std::string::npos) continue;  // keep LayerNorm at 1 / 0
      for (int64_t i = 0; i < pi.numel; ++i) p[pi.offset + i] *= gain;
    }
    m.set_params(p.data());
  }
  const ModelConfig& c() const { return m.config(); }
};

std::vector<int32_t> captions_for(const ModelConfig& c, int64_t B) {
  static const char* kTexts[] = {"a red square", "two blue circles on grey", "", "x"};
  std::vector<int32_t> out(static_cast<size_t>(B * c.max_text_len));
  for (int64_t b = 0; b < B; ++b) encode_text(kTexts[b % 4], c.max_text_len, &out[b * c.max_text_len]);
  return out;
}

std::vector<uint8_t> images_for(const ModelConfig& c, int64_t B, uint64_t seed = 3) {
  const int64_t n = B * c.image_size * c.image_size * 3;
  std::vector<uint8_t> img(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) img[i] = static_cast<uint8_t>(philox_u32(seed, 0, i) & 255);
  return img;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

void expect_invalid(const std::function<void()>& fn, const std::string& what) {
  try {
    fn();
  } catch (const Error& e) {
    expect_true(e.code() == ErrorCode::InvalidArgument, what + ": wrong code " + e.what());
    return;
  }
  report_failure(what + ": no E_INVALID_ARGUMENT");
}

// Restores the thread count on scope exit.
struct ThreadCount {
  int saved = num_threads();
  ~ThreadCount() { set_num_threads(saved); }
};

const Mode kModes[] = {Mode::Ar, Mode::Mask, Mode::Flow};

// images [B, S, S, 3] host of generate / reconstruct with the given options.
std::vector<float> gen(RecaModel& m, const std::vector<int32_t>& captions, int64_t B,
                       const SampleOptions& o, std::vector<int32_t>* codes = nullptr) {
  Sampler s(m);
  const ModelConfig& c = m.config();
  std::vector<float> out(static_cast<size_t>(B * c.image_size * c.image_size * 3));
  if (codes) codes->assign(static_cast<size_t>(B * c.num_image_tokens()), -1);
  s.generate(captions.data(), B, o, out.data(), codes ? codes->data() : nullptr);
  return out;
}
std::vector<float> rec(RecaModel& m, const std::vector<uint8_t>& images, int64_t B,
                       const std::string& tmpl, const SampleOptions& o,
                       std::vector<int32_t>* codes = nullptr) {
  Sampler s(m);
  const ModelConfig& c = m.config();
  std::vector<float> out(static_cast<size_t>(B * c.image_size * c.image_size * 3));
  if (codes) codes->assign(static_cast<size_t>(B * c.num_image_tokens()), -1);
  s.reconstruct(images.data(), B, tmpl, o, out.data(), codes ? codes->data() : nullptr);
  return out;
}

}  // namespace

RECA_TEST(sampler_rejects_bad_options) {
  TinyModel t(Mode::Mask);
  Sampler s(t.m);
  const ModelConfig& c = t.c();
  const auto caps = captions_for(c, 2);
  const auto imgs = images_for(c, 2);
  std::vector<float> out(2 * c.image_size * c.image_size * 3);
  std::vector<int32_t> text(2 * c.max_text_len);
  auto with = [&](const std::function<void(SampleOptions&)>& edit) {
    SampleOptions o;
    o.steps = 2;
    edit(o);
    return o;
  };
  const SampleOptions bad[] = {
      with([](SampleOptions& o) { o.steps = 0; }),
      with([](SampleOptions& o) { o.steps = -3; }),
      with([](SampleOptions& o) { o.temperature = -0.5; }),
      with([](SampleOptions& o) { o.temperature = NAN; }),
      with([](SampleOptions& o) { o.temperature = INFINITY; }),
      with([](SampleOptions& o) { o.top_k = -1; }),
      with([](SampleOptions& o) { o.cfg = NAN; }),
      with([](SampleOptions& o) { o.cfg = INFINITY; }),
      with([](SampleOptions& o) { o.cfg = -INFINITY; }),
  };
  int i = 0;
  for (const SampleOptions& o : bad) {
    const std::string n = "bad option #" + std::to_string(i++);
    expect_invalid([&] { s.generate(caps.data(), 2, o, out.data()); }, n + " generate");
    expect_invalid([&] { s.reconstruct(imgs.data(), 2, "describe", o, out.data()); },
                   n + " reconstruct");
  }
  SampleOptions ok;
  ok.steps = 2;
  expect_invalid([&] { s.generate(caps.data(), 0, ok, out.data()); }, "B = 0");
  expect_invalid([&] { s.generate(nullptr, 2, ok, out.data()); }, "no captions");
  expect_invalid([&] { s.reconstruct(nullptr, 2, "t", ok, out.data()); }, "no images");
  expect_invalid([&] { s.caption(imgs.data(), 2, 0, text.data()); }, "caption max_len 0");
  expect_invalid([&] { s.caption(imgs.data(), 2, c.max_text_len + 1, text.data()); },
                 "caption max_len > T");
  TinyModel f(Mode::Flow);
  Sampler sf(f.m);
  std::vector<int32_t> codes(2 * c.num_image_tokens());
  expect_invalid([&] { sf.generate(caps.data(), 2, ok, out.data(), codes.data()); },
                 "codes in flow mode");
  // A valid call still works after the rejected ones.
  s.generate(caps.data(), 2, ok, out.data());
}

RECA_TEST(sampler_outputs_in_range_with_right_shapes) {
  for (Mode mode : kModes) {
    TinyModel t(mode);
    const ModelConfig& c = t.c();
    const int64_t B = 3, n = B * c.image_size * c.image_size * 3, N = c.num_image_tokens();
    const auto caps = captions_for(c, B);
    const auto imgs = images_for(c, B);
    SampleOptions o;
    o.steps = 3, o.cfg = 3.0, o.seed = 4;
    for (int task = 0; task < 2; ++task) {
      const std::string what = std::string(mode_name(mode)) + (task ? " reconstruct" : " generate");
      Guarded out(n, NAN);
      std::vector<int32_t> codes(static_cast<size_t>(B * N + 1), -7);  // one past the end
      Sampler s(t.m);
      int32_t* cp = c.discrete() ? codes.data() : nullptr;
      if (task == 0) s.generate(caps.data(), B, o, out.data(), cp);
      else s.reconstruct(imgs.data(), B, "describe the image", o, out.data(), cp);
      expect_guards(out, what);
      float lo = 2, hi = -2;
      bool finite = true;
      for (int64_t i = 0; i < n; ++i) {
        finite = finite && std::isfinite(out[i]);
        lo = std::min(lo, out[i]), hi = std::max(hi, out[i]);
      }
      expect_true(finite && lo >= -1.0f && hi <= 1.0f, what + ": values in [-1, 1]");
      expect_true(hi > lo, what + ": image is not constant");
      if (c.discrete()) {
        bool in_range = true;
        for (int64_t i = 0; i < B * N; ++i) in_range = in_range && codes[i] >= 0 && codes[i] < c.codebook_size;
        expect_true(in_range, what + ": codes in [0, K)");
        expect_true(codes[B * N] == -7, what + ": codes written past [B, N]");
        // The images are the decoded codes, clamped.
        Arena arena(cpu_backend());
        std::vector<float> dec(static_cast<size_t>(n));
        t.m.decode(codes.data(), B, dec.data(), arena);
        for (auto& v : dec) v = std::min(1.0f, std::max(-1.0f, v));
        expect_true(std::memcmp(dec.data(), out.data(), n * 4) == 0, what + ": images = decode(codes)");
      }
    }
    // Captions: [B, T] of bytes then PAD.
    Sampler s(t.m);
    std::vector<int32_t> cap(static_cast<size_t>(B * c.max_text_len + 1), -7);
    s.caption(imgs.data(), B, 5, cap.data());
    bool ok = cap[B * c.max_text_len] == -7;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < c.max_text_len; ++i) {
        const int32_t v = cap[b * c.max_text_len + i];
        ok = ok && (i < 5 ? (v >= 0 && v < 256) || v == tok::kPad : v == tok::kPad);
      }
    expect_true(ok, std::string(mode_name(mode)) + " caption: bytes then PAD, at most max_len");
  }
}

RECA_TEST(sampler_deterministic_for_seed_and_threads) {
  ThreadCount keep;
  for (Mode mode : kModes) {
    TinyModel t(mode);
    const ModelConfig& c = t.c();
    const int64_t B = 2;
    const auto caps = captions_for(c, B);
    const auto imgs = images_for(c, B);
    SampleOptions o;
    o.steps = 4, o.cfg = 2.5, o.seed = 77, o.top_k = 8;
    const std::string m = mode_name(mode);
    set_num_threads(1);
    const auto a1 = gen(t.m, caps, B, o), r1 = rec(t.m, imgs, B, "describe", o);
    set_num_threads(2);
    const auto a2 = gen(t.m, caps, B, o), r2 = rec(t.m, imgs, B, "describe", o);
    const auto a3 = gen(t.m, caps, B, o);
    expect_true(same_bits(a1, a2), m + " generate: 1 vs 2 threads bitwise");
    expect_true(same_bits(r1, r2), m + " reconstruct: 1 vs 2 threads bitwise");
    expect_true(same_bits(a2, a3), m + " generate: same seed bitwise");
    SampleOptions o2 = o;
    o2.seed = 78;
    expect_true(!same_bits(a2, gen(t.m, caps, B, o2)), m + " generate: another seed differs");
    // Captions too.
    std::vector<int32_t> c1(B * c.max_text_len), c2(B * c.max_text_len);
    set_num_threads(1);
    Sampler(t.m).caption(imgs.data(), B, c.max_text_len, c1.data());
    set_num_threads(2);
    Sampler(t.m).caption(imgs.data(), B, c.max_text_len, c2.data());
    expect_true(c1 == c2, m + " caption: 1 vs 2 threads");
  }
}

// Tolerance: the cached attention sums in another order than the attention
// kernel (fp32 rounding only); logits here are O(1..10).
RECA_TEST(sampler_kv_cache_matches_full_recompute) {
  const double rtol = 1e-5, atol = 1e-5;
  for (Mode mode : {Mode::Ar, Mode::Mask}) {
    TinyModel t(mode);
    const ModelConfig& c = t.c();
    const int64_t B = 3, N = c.num_image_tokens(), K = c.codebook_size, T = c.max_text_len;
    const auto caps = captions_for(c, B);
    const auto imgs = images_for(c, B);
    std::vector<int32_t> codes(static_cast<size_t>(B * N));
    for (int64_t i = 0; i < B * N; ++i) codes[i] = static_cast<int32_t>(philox_u32(5, 5, i) % K);
    if (mode == Mode::Mask)
      for (int64_t i = 0; i < B * N; i += 3) codes[i] = static_cast<int32_t>(K);  // some MASK
    std::vector<int32_t> tmpl(static_cast<size_t>(B * T));
    for (int64_t b = 0; b < B; ++b) encode_text("describe the image", T, &tmpl[b * T]);
    Sampler s(t.m);
    for (Task task : {Task::T2i, Task::Reca}) {
      const std::string what = std::string(mode_name(mode)) + " " + task_name(task) + " image logits";
      std::vector<float> full(B * N * K), cached(B * N * K);
      const int32_t* text = task == Task::T2i ? caps.data() : tmpl.data();
      s.image_logits(task, text, imgs.data(), codes.data(), B, false, full.data());
      s.image_logits(task, text, imgs.data(), codes.data(), B, true, cached.data());
      expect_close(what + ": KV cache vs full", cached.data(), full.data(), B * N * K, rtol, atol);
      float spread = 0;
      for (float v : full) spread = std::max(spread, std::fabs(v));
      expect_true(spread > 0.5f, what + ": logits are not trivially small");
    }
    const int64_t Lt = 1 + T, V = tok::kVocab;
    std::vector<float> full(B * Lt * V), cached(B * Lt * V);
    s.caption_logits(imgs.data(), caps.data(), B, false, full.data());
    s.caption_logits(imgs.data(), caps.data(), B, true, cached.data());
    expect_close(std::string(mode_name(mode)) + " caption logits: KV cache vs full", cached.data(),
                 full.data(), B * Lt * V, rtol, atol);
  }
}

// Every query row of a sequence computed chunk by chunk from the cache equals
// attention_forward's row (PAD keys, a condition block with no visible key,
// causal and bidirectional targets).
RECA_TEST(sampler_attention_cached_matches_attention_forward) {
  Backend& be = cpu_backend();
  Rand rng(91);
  const int64_t B = 3, heads = 4, width = 32, L = 23;
  for (int64_t Lc : {0, 1, 9, 23})
    for (bool causal : {false, true}) {
      std::vector<float> qkv(B * L * 3 * width);
      rng.fill_normal(qkv.data(), qkv.size(), 1.5f);
      std::vector<uint8_t> pad(B * L, 0);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t j = 0; j < L; ++j) pad[b * L + j] = (j * 7 + b) % 5 == 0;
      for (int64_t j = 0; j < std::min<int64_t>(Lc, L); ++j) pad[2 * L + j] = 1;  // sample 2: all-PAD condition
      std::vector<float> want(B * L * width);
      be.attention_forward(want.data(), nullptr, qkv.data(), pad.data(), B, L, heads, width, Lc, causal);
      // Cached: the condition block at once, then target chunks (of 1 and 3 rows
      // when causal; the whole target block when bidirectional).
      std::vector<float> cache(B * L * 3 * width, NAN);
      std::vector<float> got(B * L * width, NAN);
      std::vector<int64_t> starts = {0};
      if (Lc > 0) starts.push_back(Lc);
      for (int64_t r = Lc + 1; causal && r < L; r += (r % 2 ? 1 : 3)) starts.push_back(r);
      starts.push_back(L);
      for (size_t k = 0; k + 1 < starts.size(); ++k) {
        const int64_t r0 = starts[k], Lq = starts[k + 1] - r0;
        if (Lq <= 0) continue;
        for (int64_t b = 0; b < B; ++b)
          std::memcpy(&cache[(b * L + r0) * 3 * width], &qkv[(b * L + r0) * 3 * width], Lq * 3 * width * 4);
        std::vector<float> out(B * Lq * width);
        be.attention_cached(out.data(), cache.data(), pad.data(), B, L, r0, Lq, heads, width, Lc, causal);
        for (int64_t b = 0; b < B; ++b)
          std::memcpy(&got[(b * L + r0) * width], &out[b * Lq * width], Lq * width * 4);
      }
      expect_close("attention_cached Lc=" + std::to_string(Lc) + (causal ? " causal" : " bidir"),
                   got.data(), want.data(), B * L * width, 1e-5, 5e-6);
    }
}

// CFG: scale 1 runs the conditional pass only (out = out_c, bitwise by
// construction); a scale just above 1 runs the 2B batch and the combination and
// must agree with it to rounding (flow) or give the same greedy codes. Scale 0
// gives out_u, which must be bitwise the conditional-only result of the same
// sequences with the text dropped: the unconditional pass drops the text
// (caption / template → PAD) and keeps the understanding embeddings.
RECA_TEST(sampler_cfg_combines_conditional_and_unconditional) {
  for (Mode mode : kModes) {
    TinyModel t(mode);
    const ModelConfig& c = t.c();
    const int64_t B = 2, T = c.max_text_len;
    const std::string m = mode_name(mode);
    const auto caps = captions_for(c, B);
    const auto imgs = images_for(c, B);
    const std::vector<int32_t> no_caps(B * T, tok::kPad);
    SampleOptions o;
    o.steps = 3, o.seed = 21, o.temperature = 0.0;
    SampleOptions near1 = o, zero = o;
    near1.cfg = std::nextafter(1.0, 2.0);
    zero.cfg = 0.0;
    std::vector<int32_t> k1, k2;
    const auto cond = gen(t.m, caps, B, o, c.discrete() ? &k1 : nullptr);
    const auto guided = gen(t.m, caps, B, near1, c.discrete() ? &k2 : nullptr);
    if (c.discrete()) {
      expect_true(k1 == k2, m + ": cfg 1+ulp gives the conditional codes");
    } else {
      expect_close(m + ": cfg 1+ulp vs conditional only", guided.data(), cond.data(),
                   static_cast<int64_t>(cond.size()), 1e-5, 1e-5);
    }
    expect_true(same_bits(gen(t.m, caps, B, zero), gen(t.m, no_caps, B, o)),
                m + " t2i: cfg 0 = conditional pass with PAD captions (bitwise)");
    expect_true(same_bits(rec(t.m, imgs, B, "describe the image", zero), rec(t.m, imgs, B, "", o)),
                m + " reca: cfg 0 = conditional pass with a PAD template, same embeddings (bitwise)");
    expect_true(!same_bits(rec(t.m, imgs, B, "describe the image", o), rec(t.m, imgs, B, "", o)),
                m + " reca: the template matters");
    // Sampling (temperature 1) at cfg 0 as well.
    SampleOptions z1 = zero, o1 = o;
    z1.temperature = o1.temperature = 1.0;
    expect_true(same_bits(gen(t.m, caps, B, z1), gen(t.m, no_caps, B, o1)),
                m + " t2i sampled: cfg 0 = PAD captions (bitwise)");
  }
}

RECA_TEST(sampler_mask_unmasks_every_position) {
  TinyModel t(Mode::Mask);
  const ModelConfig& c = t.c();
  const int64_t B = 3, N = c.num_image_tokens();
  const auto caps = captions_for(c, B);
  for (int64_t steps : {1, 2, 5, 16, 23})
    for (double temp : {0.0, 1.0}) {
      SampleOptions o;
      o.steps = steps, o.temperature = temp, o.seed = 5, o.cfg = steps % 2 ? 1.0 : 2.0;
      std::vector<int32_t> codes;
      gen(t.m, caps, B, o, &codes);
      bool all = true;
      for (int64_t i = 0; i < B * N; ++i) all = all && codes[i] >= 0 && codes[i] < c.codebook_size;
      expect_true(all, "mask T=" + std::to_string(steps) + " temp " + std::to_string(temp) +
                           ": no MASK left");
    }
}

// One Euler step from t = 1: z = ε − v̂(ε, 1), computed here by one full forward
// of the training graph (attention kernel, no cache). Tolerance: rounding of
// the cached attention only.
RECA_TEST(sampler_flow_one_step_matches_hand_forward) {
  TinyModel t(Mode::Flow);
  RecaModel& m = t.m;
  const ModelConfig& c = m.config();
  Backend& be = cpu_backend();
  const int64_t B = 2, N = c.num_image_tokens(), D = c.patch_dim(), S = c.image_size, T = c.max_text_len;
  const auto caps = captions_for(c, B);
  const auto imgs = images_for(c, B);
  std::vector<float> eps(B * N * D);
  sample_noise(33, B, N * D, eps.data());
  // v̂ of sequences of `task` with text [B, T] at t = 1 and z = ε.
  auto velocity = [&](Task task, const int32_t* text) {
    Arena arena(be);
    const int64_t L = c.seq_len(task);
    std::vector<int32_t> ids(B * L);
    std::vector<uint8_t> pad(B * L);
    m.sequence_ids(task, B, text, ids.data(), pad.data());
    RecaModel::SeqInput in;
    in.task = task, in.B = B;
    int32_t* ids_dev = arena.ints(B * L);
    be.upload(ids_dev, ids.data(), B * L * 4);
    uint8_t* pad_dev = arena.bytes(B * L);
    be.upload(pad_dev, pad.data(), B * L);
    in.ids = ids_dev;
    if (task == Task::Reca) in.cond = m.understanding(imgs.data(), B, arena);
    float* z = arena.floats(B * N * D);
    be.upload(z, eps.data(), B * N * D * 4);
    float* tt = arena.floats(B);
    const float ones[2] = {1.0f, 1.0f};
    be.upload(tt, ones, B * 4);
    in.zt = z, in.t = tt;
    const float* x = m.embed_sequence(in, nullptr, arena);
    const auto w = block_views(m.layout(), "gen.blocks", c.depth, m.params());
    const float* h = stack_forward(be, arena, w, c.depth, m.generator_shape(task, B, pad_dev), x, nullptr);
    const float* v = m.head_forward(h, B, L, c.cond_len(task) + 1, N, false, nullptr, arena);
    std::vector<float> out(B * N * D);
    be.download(out.data(), v, B * N * D * 4);
    return out;
  };
  auto to_image = [&](const std::vector<float>& z) {
    std::vector<float> img(B * S * S * 3);
    be.unpatchify_forward(img.data(), z.data(), B, S, c.gen_patch);
    for (auto& v : img) v = std::min(1.0f, std::max(-1.0f, v));
    return img;
  };
  SampleOptions o;
  o.steps = 1, o.seed = 33;
  // t2i, no guidance: z = ε − v̂_c.
  {
    const auto v = velocity(Task::T2i, caps.data());
    std::vector<float> z(B * N * D);
    for (size_t i = 0; i < z.size(); ++i) z[i] = eps[i] - v[i];
    const auto want = to_image(z);
    const auto got = gen(m, caps, B, o);
    expect_close("flow t2i T=1", got.data(), want.data(), B * S * S * 3, 1e-5, 2e-6);
    float lo = 1;
    for (float x : want) lo = std::min(lo, std::fabs(x));
    expect_true(lo < 0.99f, "flow t2i T=1: not everything clamped");
  }
  // reca with guidance 2.5: z = ε − (v̂_u + 2.5·(v̂_c − v̂_u)).
  {
    std::vector<int32_t> tmpl(B * T), none(B * T, tok::kPad);
    for (int64_t b = 0; b < B; ++b) encode_text("describe the image", T, &tmpl[b * T]);
    const auto vc = velocity(Task::Reca, tmpl.data());
    const auto vu = velocity(Task::Reca, none.data());
    std::vector<float> z(B * N * D);
    for (size_t i = 0; i < z.size(); ++i) z[i] = eps[i] - (vu[i] + 2.5f * (vc[i] - vu[i]));
    const auto want = to_image(z);
    SampleOptions g = o;
    g.cfg = 2.5;
    const auto got = rec(m, imgs, B, "describe the image", g);
    expect_close("flow reca T=1 cfg 2.5", got.data(), want.data(), B * S * S * 3, 1e-5, 1e-5);
  }
}

// Greedy captions agree with the full-recompute logits at every step and stop
// at the first EOS. EOS is steered by its head row: weight 0 and bias c make
// its logit exactly c, so it wins at the first step whose best byte logit is
// below c; the bytes before it are unchanged.
RECA_TEST(sampler_caption_stops_at_eos) {
  TinyModel t(Mode::Mask);
  RecaModel& m = t.m;
  const ModelConfig& c = m.config();
  const int64_t B = 3, T = c.max_text_len, V = tok::kVocab, Lt = 1 + T;
  const auto imgs = images_for(c, B, 8);
  std::vector<float> p(m.param_floats());
  m.get_params(p.data());
  const int64_t w_eos = m.layout().at("gen.head_txt.weight").offset + tok::kEos * c.width;
  const int64_t b_eos = m.layout().at("gen.head_txt.bias").offset + tok::kEos;
  for (int64_t i = 0; i < c.width; ++i) p[w_eos + i] = 0.0f;
  p[b_eos] = -1e4f;  // never EOS
  m.set_params(p.data());
  Sampler s(m);
  std::vector<int32_t> cap0(B * T);
  s.caption(imgs.data(), B, T, cap0.data());
  std::vector<float> lg(B * Lt * V);
  s.caption_logits(imgs.data(), cap0.data(), B, false, lg.data());
  // Best byte logit per step, and the greedy choice from the full recompute.
  std::vector<float> best(B * T);
  bool greedy = true;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < T; ++j) {
      const float* l = &lg[(b * Lt + j) * V];
      int32_t id = 0;
      for (int32_t k = 1; k < 256; ++k)
        if (l[k] > l[id]) id = k;
      best[b * T + j] = l[id];
      greedy = greedy && cap0[b * T + j] == id;
    }
  expect_true(greedy, "caption = greedy bytes of the full-recompute logits");
  // Threshold between sample 0's first-step logit and its smallest later one.
  float lowest = best[1];
  for (int64_t j = 1; j < T; ++j) lowest = std::min(lowest, best[j]);
  expect_true(best[0] > lowest, "sample 0 has a step below its first");
  const float thr = 0.5f * (best[0] + lowest);
  p[b_eos] = thr;
  m.set_params(p.data());
  std::vector<int32_t> cap(B * T, -1);
  s.caption(imgs.data(), B, T, cap.data());
  int64_t ended_inside = 0;
  for (int64_t b = 0; b < B; ++b) {
    int64_t stop = T;
    for (int64_t j = 0; j < T && stop == T; ++j)
      if (best[b * T + j] < thr) stop = j;
    ended_inside += stop > 0 && stop < T;
    bool ok = true;
    for (int64_t j = 0; j < T; ++j) ok = ok && cap[b * T + j] == (j < stop ? cap0[b * T + j] : tok::kPad);
    expect_true(ok, "sample " + std::to_string(b) + ": caption = bytes before EOS at " +
                        std::to_string(stop) + ", then PAD");
  }
  expect_true(ended_inside >= 1, "some caption ends at EOS mid-way");
  // max_len cuts without EOS.
  p[b_eos] = -1e4f;
  m.set_params(p.data());
  std::vector<int32_t> cut(B * T);
  s.caption(imgs.data(), B, 3, cut.data());
  bool ok = true;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < T; ++j) ok = ok && cut[b * T + j] == (j < 3 ? cap0[b * T + j] : tok::kPad);
  expect_true(ok, "max_len 3: the first 3 bytes, then PAD");
}

// MaskGIT's randomized choice: off at the last step (so one step equals plain
// confidence), a pure function of the seed and the sample's index, and a change
// of which positions are kept when on.
RECA_TEST(sampler_mask_choice_temperature) {
  ThreadCount keep;
  TinyModel t(Mode::Mask);
  const ModelConfig& c = t.c();
  const int64_t B = 2;
  const auto caps = captions_for(c, B);
  SampleOptions plain;
  plain.steps = 1, plain.cfg = 2.0, plain.seed = 5;
  SampleOptions noisy = plain;
  noisy.choice_temperature = 9.0;
  expect_true(same_bits(gen(t.m, caps, B, plain), gen(t.m, caps, B, noisy)),
              "one step: the annealed noise is 0, the same bits as without it");
  plain.steps = noisy.steps = 8;
  set_num_threads(1);
  const auto n1 = gen(t.m, caps, B, noisy);
  set_num_threads(2);
  const auto n2 = gen(t.m, caps, B, noisy);
  expect_true(same_bits(n1, n2), "choice noise: 1 vs 2 threads bitwise");
  expect_true(!same_bits(n1, gen(t.m, caps, B, plain)), "choice noise changes the sample");
  // Sample 0 alone equals sample 0 of the batch: draws are keyed by the sample's index.
  const std::vector<int32_t> first(caps.begin(), caps.begin() + c.max_text_len);
  const auto alone = gen(t.m, first, 1, noisy);
  expect_true(std::equal(alone.begin(), alone.end(), n1.begin()), "sample 0 alone = sample 0 of 2");
}
