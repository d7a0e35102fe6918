// The condition-alignment loss (SPEC §5): the host InfoNCE against finite
// differences of itself in double and against its closed form, and the whole
// align pass (two condition blocks through the generator, every layer pooled)
// against central differences of its own loss over the model's parameters.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/alignment.h"
#include "model/reca_model.h"
#include "model/trainer.h"
#include "core/safetensors.h"
#include "tests/fixture_batch.h"
#include "tests/testing.h"

using namespace reca;
using namespace reca::model;
using namespace reca::test;

RECA_TEST(align_info_nce_gradient_and_closed_form) {
  const int64_t B = 5, W = 7;
  Rand rng(11);
  std::vector<double> ab(static_cast<size_t>(2 * B * W));
  for (double& v : ab) v = rng.normal();
  std::vector<uint8_t> same(static_cast<size_t>(B * B), 0);
  same[1 * B + 3] = same[3 * B + 1] = 1;  // samples 1 and 3 share a caption
  auto loss = [&](const std::vector<double>& x) {
    std::vector<double> da(static_cast<size_t>(B * W)), db(static_cast<size_t>(B * W));
    return info_nce(x.data(), x.data() + B * W, same.data(), B, W, da.data(), db.data());
  };
  std::vector<double> da(static_cast<size_t>(B * W)), db(static_cast<size_t>(B * W));
  info_nce(ab.data(), ab.data() + B * W, same.data(), B, W, da.data(), db.data());
  std::vector<float> grad(static_cast<size_t>(2 * B * W));
  for (int64_t i = 0; i < B * W; ++i) grad[i] = static_cast<float>(da[i]), grad[B * W + i] = static_cast<float>(db[i]);
  fd_check("info_nce d(a, b)", ab, loss, grad.data(), 1000, rng, 1e-6, 1e-4, 1e-7);

  // Closed form: a_i = b_i = e_i (orthonormal), no shared captions: every
  // row and column has logit 1/τ on the pair and 0 elsewhere.
  std::vector<double> e(static_cast<size_t>(B * W), 0.0);
  for (int64_t i = 0; i < B; ++i) e[i * W + i] = 2.0 + i;  // norms must not matter
  std::vector<uint8_t> none(static_cast<size_t>(B * B), 0);
  const double got = info_nce(e.data(), e.data(), none.data(), B, W, da.data(), db.data());
  const double t = 1.0 / kAlignTemperature;
  const double want = std::log(std::exp(t) + static_cast<double>(B - 1)) - t;
  expect_true(std::fabs(got - want) <= 1e-12, "info_nce closed form: " + std::to_string(got) + " vs " + std::to_string(want));
  // A shared caption leaves the pair out of both softmaxes: rows 1 and 3 have B-2 negatives.
  same.assign(static_cast<size_t>(B * B), 0);
  same[1 * B + 3] = same[3 * B + 1] = 1;
  const double got2 = info_nce(e.data(), e.data(), same.data(), B, W, da.data(), db.data());
  const double want2 = (3 * want + 2 * (std::log(std::exp(t) + static_cast<double>(B - 2)) - t)) / B;
  expect_true(std::fabs(got2 - want2) <= 1e-12, "info_nce with a shared caption: " + std::to_string(got2) + " vs " + std::to_string(want2));
}

RECA_TEST(align_pass_gradient_matches_finite_differences) {
  RecaModel model(ModelConfig::preset("tiny", Mode::Ar), cpu_backend());
  model.init(5);
  const ModelConfig& c = model.config();
  const int64_t B = 4, S = c.image_size, T = c.max_text_len;
  Rand rng(3);
  std::vector<uint8_t> images(static_cast<size_t>(B * S * S * 3));
  for (uint8_t& v : images) v = static_cast<uint8_t>(rng.index(256));
  std::vector<int32_t> templates(static_cast<size_t>(B * T)), captions(static_cast<size_t>(B * T));
  const char* caps[] = {"a red circle", "two blue squares", "a red circle", "a green triangle"};
  for (int64_t b = 0; b < B; ++b) {
    encode_text(b % 2 ? "describe this picture" : "describe the image", T, &templates[b * T]);
    encode_text(caps[b], T, &captions[b * T]);
  }
  AlignBatch ab;
  ab.B = B, ab.images = images.data(), ab.templates = templates.data(), ab.captions = captions.data();
  Trainable all;
  all.und = all.conn = all.gen = true, all.vq = false;
  const int64_t n = model.layout().total();
  std::vector<float> grads(static_cast<size_t>(n), 0.0f);
  Arena arena(model.backend());
  const float weight = 0.5f;
  const double loss0 = model.align_pass(ab, grads.data(), all, weight, arena).loss;
  expect_true(std::isfinite(loss0) && loss0 > 0, "align loss is finite and positive");

  std::vector<float> params(static_cast<size_t>(n));
  model.get_params(params.data());
  auto loss_at = [&]() {
    Arena a(model.backend());
    return weight * model.align_pass(ab, nullptr, all, weight, a).loss;
  };
  // Central differences on coordinates of every group the loss reaches.
  const char* names[] = {"gen.tok_embed", "gen.pos_cond", "gen.blocks.0.attn.qkv.weight",
                         "gen.blocks.1.mlp.fc2.weight", "gen.blocks.0.ln1.weight", "conn.fc2.weight",
                         "conn.ln.weight", "und.blocks.1.mlp.fc1.weight", "und.patch_embed.weight"};
  std::vector<double> fd, an;
  const float h = 2e-3f;
  for (const char* name : names) {
    const ParamInfo& p = model.layout().at(name);
    for (int k = 0; k < 8; ++k) {
      int64_t at = p.offset + rng.index(p.numel);
      if (std::string(name) == "gen.tok_embed") at = p.offset + ('a' + k) * c.width + rng.index(c.width);
      const float keep = params[at];
      params[at] = keep + h;
      model.set_params(params.data());
      const double up = loss_at();
      params[at] = keep - h;
      model.set_params(params.data());
      const double down = loss_at();
      params[at] = keep;
      fd.push_back((up - down) / (2.0 * h));
      an.push_back(grads[at]);
    }
  }
  model.set_params(params.data());
  double num = 0, den = 0;
  for (size_t i = 0; i < fd.size(); ++i) num += (fd[i] - an[i]) * (fd[i] - an[i]), den += fd[i] * fd[i];
  const double err = std::sqrt(num / den);
  std::printf("    align pass: %zu coordinates, rel-L2 |fd - analytic| = %.2e (|fd| %.2e)\n", fd.size(), err, std::sqrt(den));
  expect_true(den > 0 && err < 2e-3, "align pass gradient vs central differences: rel-L2 " + std::to_string(err));
  // vq.* gets nothing; frozen groups get nothing.
  const ParamInfo& vq = model.layout().at("vq.codebook");
  bool vq_zero = true;
  for (int64_t i = 0; i < vq.numel; ++i) vq_zero = vq_zero && grads[vq.offset + i] == 0.0f;
  expect_true(vq_zero, "align pass leaves vq.* without gradient");
}

RECA_TEST(align_weight_needs_captions_and_pairs) {
  RecaModel model(ModelConfig::preset("tiny", Mode::Mask), cpu_backend());
  model.init(1);
  const ModelConfig& c = model.config();
  TrainerOptions o;
  o.weight_reca = 0, o.align_weight = 1;
  Trainer t(model, o);
  const int64_t S = c.image_size, T = c.max_text_len;
  std::vector<uint8_t> images(static_cast<size_t>(2 * S * S * 3), 128);
  std::vector<int32_t> captions(static_cast<size_t>(2 * T));
  encode_text("a red circle", T, captions.data());
  encode_text("a blue square", T, captions.data() + T);
  StepBatch b;
  b.B = 2, b.images = images.data();
  expect_true(throws(ErrorCode::InvalidArgument, [&] { t.step(b); }), "alignWeight without captions: E_INVALID_ARGUMENT");
  b.B = 1, b.captions = captions.data();
  expect_true(throws(ErrorCode::InvalidArgument, [&] { t.step(b); }), "alignWeight on one image: E_INVALID_ARGUMENT");
  b.B = 2;
  const StepStats st = t.step(b);
  expect_true(std::isfinite(st.loss_align) && st.loss == st.loss_align, "an align-only step reports its loss");
  TrainerOptions tok;
  tok.tokenizer = true, tok.align_weight = 1;
  expect_true(throws(ErrorCode::InvalidArgument, [&] { tok.validate(); }), "the tokenizer stage refuses alignWeight");
}

// The align pass against the PyTorch reference (tools/reference/make_align_fixtures.py):
// a two-block generator, two samples sharing a caption, everything trainable.
RECA_TEST(align_pass_matches_pytorch) {
  for (const char* mode : {"ar", "mask", "flow"}) {
    const std::string what = std::string("align_") + mode;
    const SafetensorsFile f =
        SafetensorsFile::open(std::string(RECA_SOURCE_DIR) + "/test/fixtures/" + what + ".safetensors");
    const std::string meta = f.metadata().at("reca.case");
    RecaModel model(ModelConfig::from_json(f.metadata().at("reca.config")), cpu_backend());
    const ModelConfig& c = model.config();
    load_fixture_params(f, model);
    const int64_t B = f.get("batch.images").shape[0], S = c.image_size, T = c.max_text_len;
    std::vector<uint8_t> images(static_cast<size_t>(B * S * S * 3));
    f.read_raw("batch.images", StDtype::U8, {B, S, S, 3}, images.data());
    std::vector<int32_t> templates(static_cast<size_t>(B * T)), captions(static_cast<size_t>(B * T));
    f.read_raw("batch.templates", StDtype::I32, {B, T}, templates.data());
    f.read_raw("batch.captions", StDtype::I32, {B, T}, captions.data());
    AlignBatch ab;
    ab.B = B, ab.images = images.data(), ab.templates = templates.data(), ab.captions = captions.data();
    Trainable all;
    all.und = all.conn = all.vq = all.gen = true;
    std::vector<float> grads(static_cast<size_t>(model.layout().total()), 0.0f);
    Arena arena(model.backend());
    const double loss = model.align_pass(ab, grads.data(), all, 1.0f, arena).loss;
    const double want = case_number(meta, "loss");
    expect_true(std::fabs(loss - want) <= 2e-6 * std::fabs(want),
                what + ": loss " + std::to_string(loss) + " vs reference " + std::to_string(want));
    double worst = 0;
    for (const auto& p : model.layout().params()) {
      std::vector<float> ref(static_cast<size_t>(p.numel), 0.0f);
      if (f.find("grad." + p.name)) f.read_f32("grad." + p.name, p.shape, ref.data());
      const double err = rel_l2(grads.data() + p.offset, ref.data(), p.numel);
      worst = std::max(worst, err);
      expect_true(err <= 1e-4, what + ": grad " + p.name + " rel-L2 error " + std::to_string(err));
    }
    std::printf("    %-12s loss %.9f (ref %.9f), worst grad rel-L2 %.2e\n", what.c_str(), loss, want, worst);
  }
}
