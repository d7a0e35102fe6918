// The reca task's tokenizer condition (SPEC §5) against the PyTorch reference:
// fixtures from tools/reference/make_condition_fixtures.py (a config whose token
// grid pools 2×2 onto the understanding grid), one reca pass with everything
// trainable. The loss and every gradient must match; und.* and conn.* get none.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/safetensors.h"
#include "model/reca_model.h"
#include "model/trainer.h"
#include "tests/fixture_batch.h"
#include "tests/testing.h"

using namespace reca;
using namespace reca::model;
using namespace reca::test;

namespace {

// One generator pass of `mb` with every group trainable, checked against the
// fixture's loss and its `<grad_prefix><name>` gradients (absent: zero). Returns the
// engine's gradients (flat, layout order) and the worst relative-L2 error in `worst`.
std::vector<float> expect_pass_matches(RecaModel& model, const SafetensorsFile& f, const MicroBatch& mb,
                                       double cond_grad_scale, double want_loss, const std::string& grad_prefix,
                                       const std::string& what, double* worst) {
  std::vector<float> grads(static_cast<size_t>(model.layout().total()), 0.0f);
  Arena arena(model.backend());
  Trainable all;
  all.und = all.conn = all.vq = all.gen = true;
  const PassResult r = model.generator_pass(mb, grads.data(), all, 1.0f, static_cast<float>(cond_grad_scale), arena);
  expect_true(std::fabs(r.loss - want_loss) <= 2e-6 * std::fabs(want_loss),
              what + ": loss " + std::to_string(r.loss) + " vs reference " + std::to_string(want_loss));
  *worst = 0;
  for (const auto& p : model.layout().params()) {
    std::vector<float> ref(static_cast<size_t>(p.numel), 0.0f);
    if (f.find(grad_prefix + p.name)) f.read_f32(grad_prefix + p.name, p.shape, ref.data());
    const double err = rel_l2(grads.data() + p.offset, ref.data(), p.numel);
    *worst = std::max(*worst, err);
    expect_true(err <= 1e-4, what + ": grad " + p.name + " rel-L2 error " + std::to_string(err));
  }
  std::printf("    %-16s loss %.9f (ref %.9f), worst grad rel-L2 %.2e\n", what.c_str(), r.loss, want_loss, *worst);
  return grads;
}

void check_condition_case(const std::string& mode) {
  const std::string file = std::string(RECA_SOURCE_DIR) + "/test/fixtures/condition_" + mode + ".safetensors";
  const SafetensorsFile f = SafetensorsFile::open(file);
  const std::string meta = f.metadata().at("reca.case");
  RecaModel model(ModelConfig::from_json(f.metadata().at("reca.config")), cpu_backend());
  const ModelConfig& c = model.config();
  expect_true(c.grid() == 2 * c.und_grid(), mode + ": the fixture pools 2x2 token blocks");
  load_fixture_params(f, model);
  FixtureBatch fb;
  read_fixture_batch(f, c, fb);
  fb.mb.task = Task::Reca;
  fb.mb.condition = Condition::Tokenizer;
  double worst = 0;
  const std::vector<float> grads = expect_pass_matches(model, f, fb.mb, case_number(meta, "cond_grad_scale"),
                                                       case_number(meta, "loss"), "grad.", "condition_" + mode, &worst);
  for (const auto& p : model.layout().params()) {
    if (p.group() != "und" && p.group() != "conn") continue;
    bool zero = true;
    for (int64_t i = 0; i < p.numel; ++i) zero = zero && grads[static_cast<size_t>(p.offset + i)] == 0.0f;
    expect_true(zero, mode + ": " + p.name + " must get no gradient from a tokenizer condition");
  }
}

}  // namespace

RECA_TEST(tokenizer_condition_matches_pytorch) {
  for (const char* m : {"ar", "mask", "flow"}) check_condition_case(m);
}

// A model whose token grid is not a multiple of its understanding grid cannot
// pool: the trainer refuses the option up front.
RECA_TEST(tokenizer_condition_needs_dividing_grids) {
  ModelConfig c = ModelConfig::preset("tiny", Mode::Mask);
  c.und_image_size = 16, c.und_patch = 4;  // und grid 4, token grid 4: divides
  RecaModel ok(c, cpu_backend());
  TrainerOptions o;
  o.condition = Condition::Tokenizer;
  Trainer accepted(ok, o);
  c.image_size = 24, c.und_image_size = 12, c.und_patch = 3;  // token grid 6, und grid 4
  RecaModel bad(c, cpu_backend());
  bool refused = false;
  try {
    Trainer t(bad, o);
  } catch (const Error& e) {
    refused = e.code() == ErrorCode::InvalidArgument &&
              std::string(e.what()).find("condition 'tokenizer'") != std::string::npos;
  }
  expect_true(refused, "condition 'tokenizer' on 6x6 tokens over a 4x4 understanding grid is refused");
}

// conn.norm (cond_norm, SPEC §3) against the PyTorch reference: fixtures from
// make_condition_fixtures.py, one reca and one i2t pass with everything trainable
// (the reca pass scales the gradient into c by cond_grad_scale, the i2t pass does
// not), so the gradient crosses the LayerNorm into the connector and encoder.
RECA_TEST(condition_norm_matches_pytorch) {
  for (const char* mode : {"ar", "mask", "flow"}) {
    const std::string file = std::string(RECA_SOURCE_DIR) + "/test/fixtures/condnorm_" + mode + ".safetensors";
    const SafetensorsFile f = SafetensorsFile::open(file);
    const std::string meta = f.metadata().at("reca.case");
    RecaModel model(ModelConfig::from_json(f.metadata().at("reca.config")), cpu_backend());
    const ModelConfig& c = model.config();
    expect_true(c.cond_norm && model.layout().find("conn.norm.weight") != nullptr,
                std::string(mode) + ": the fixture's model has conn.norm");
    load_fixture_params(f, model);
    for (const char* task : {"reca", "i2t"}) {
      const std::string what = std::string("condnorm_") + mode + " " + task;
      FixtureBatch fb;
      read_fixture_batch(f, c, fb, std::string(task) + ".batch.");
      fb.mb.task = std::string(task) == "reca" ? Task::Reca : Task::I2t;
      Arena arena(model.backend());
      std::vector<float> cond(static_cast<size_t>(fb.B * c.num_und_tokens() * c.width));
      model.embed(fb.images.data(), fb.B, cond.data(), arena);
      std::vector<float> want_c(cond.size());
      f.read_f32(std::string(task) + ".aux.c", {fb.B, c.num_und_tokens(), c.width}, want_c.data());
      const double c_err = rel_l2(cond.data(), want_c.data(), static_cast<int64_t>(cond.size()));
      expect_true(c_err <= 1e-5, what + ": c rel-L2 error " + std::to_string(c_err));
      double worst = 0;
      const std::vector<float> grads =
          expect_pass_matches(model, f, fb.mb, case_number(meta, "cond_grad_scale"),
                              case_number(meta, std::string(task) + "_loss"), std::string(task) + ".grad.", what, &worst);
      double gain_grad = 0;  // the gain must get a real gradient, not a vacuous match of zeros
      const ParamInfo& gw = model.layout().at("conn.norm.weight");
      for (int64_t i = 0; i < gw.numel; ++i) gain_grad += std::fabs(grads[static_cast<size_t>(gw.offset + i)]);
      expect_true(gain_grad > 0, what + ": conn.norm.weight gets a gradient");
      std::printf("    %-16s c rel-L2 %.1e\n", what.c_str(), c_err);
    }
  }
}

// A config without the field (checkpoints written before it existed) has no conn.norm.
RECA_TEST(condition_norm_absent_means_off) {
  ModelConfig c = ModelConfig::preset("tiny", Mode::Mask);
  std::string json = c.to_json();
  const size_t at = json.find(",\"cond_norm\":false}");
  expect_true(at != std::string::npos, "to_json writes cond_norm as the last field: " + json);
  json.erase(at, std::string(",\"cond_norm\":false").size());
  const ModelConfig old = ModelConfig::from_json(json);
  expect_true(!old.cond_norm, "an absent cond_norm reads as false");
  RecaModel m(old, cpu_backend());
  expect_true(m.layout().find("conn.norm.weight") == nullptr, "no conn.norm without cond_norm");
  c.cond_norm = true;
  RecaModel with(c, cpu_backend());
  with.init(7);
  const ParamInfo& gain = with.layout().at("conn.norm.weight");
  std::vector<float> host(static_cast<size_t>(with.layout().total()));
  with.get_params(host.data());
  bool all_start = true;
  for (int64_t i = 0; i < gain.numel; ++i) all_start = all_start && host[static_cast<size_t>(gain.offset + i)] == 0.02f;
  expect_true(all_start, "conn.norm.weight starts at 0.02 (SPEC §8)");
}
