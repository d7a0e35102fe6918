// The RecA-Mini graph against the PyTorch reference (tools/reference/): for every
// committed fixture (tiny preset, every mode × task, and the tokenizer loss),
// load the reference's parameters and batch, run one pass with every group
// trainable, and compare the loss and every gradient.
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "model/reca_model.h"
#include "model/trainer.h"
#include "tests/fixture_batch.h"
#include "tests/testing.h"

using namespace reca;
using namespace reca::model;
using namespace reca::test;

namespace {

std::string fixture_path(const std::string& name) {
  return std::string(RECA_SOURCE_DIR) + "/test/fixtures/" + name + ".safetensors";
}

void check_case(const std::string& name, Mode mode, const std::string& task) {
  const SafetensorsFile f = SafetensorsFile::open(fixture_path(name));
  const std::string meta = f.metadata().at("reca.case");
  RecaModel model(ModelConfig::preset("tiny", mode), cpu_backend());
  load_fixture_params(f, model);
  FixtureBatch fb;
  read_fixture_batch(f, model.config(), fb);
  MicroBatch& mb = fb.mb;
  const int64_t B = fb.B;
  std::vector<float> grads(static_cast<size_t>(model.layout().total()), 0.0f);
  Arena arena(model.backend());
  PassResult r;
  if (task == "vq") {
    r = model.tokenizer_pass(fb.images.data(), B, grads.data(), 1.0f, arena);
  } else {
    parse_task(task, &mb.task);
    Trainable all;
    all.und = all.conn = all.vq = all.gen = true;
    const float cgs = static_cast<float>(case_number(meta, "cond_grad_scale"));
    r = model.generator_pass(mb, grads.data(), all, 1.0f, std::isnan(cgs) ? 1.0f : cgs, arena);
  }
  const double want = case_number(meta, "loss");
  // fp32 against fp32: the reference's own f32/f64 spread is ~1e-8 relative.
  expect_true(std::fabs(r.loss - want) <= 2e-6 * std::fabs(want),
              name + ": loss " + std::to_string(r.loss) + " vs reference " + std::to_string(want));
  int checked = 0;
  double worst = 0;
  std::string worst_name;
  for (const auto& p : model.layout().params()) {
    const SafetensorsEntry* e = f.find("grad." + p.name);
    std::vector<float> ref(static_cast<size_t>(p.numel), 0.0f);
    if (e) f.read_f32("grad." + p.name, p.shape, ref.data());
    const double err = rel_l2(grads.data() + p.offset, ref.data(), p.numel);
    if (err > worst) worst = err, worst_name = p.name;
    // Relative L2 per tensor; tensors the reference leaves without a gradient must be 0.
    expect_true(err <= 1e-4, name + ": grad " + p.name + " rel-L2 error " + std::to_string(err));
    ++checked;
  }
  std::printf("    %-10s loss %.9f (ref %.9f)  %d grads, worst rel-L2 %.2e (%s)\n", name.c_str(),
              r.loss, want, checked, worst, worst_name.c_str());
}

}  // namespace

// Five AdamW steps on the fixture's batch with its draws replayed: the first
// update against `after.*`, and the five losses against the reference's.
void check_training(const std::string& name, Mode mode, const std::string& task) {
  const SafetensorsFile f = SafetensorsFile::open(fixture_path(name));
  const std::string meta = f.metadata().at("reca.case");
  RecaModel model(ModelConfig::preset("tiny", mode), cpu_backend());
  load_fixture_params(f, model);
  const ModelConfig& c = model.config();
  const int64_t B = f.get("batch.images").shape[0], S = c.image_size, N = c.num_image_tokens();
  const int64_t T = c.max_text_len;
  std::vector<uint8_t> images(static_cast<size_t>(B * S * S * 3));
  f.read_raw("batch.images", StDtype::U8, {B, S, S, 3}, images.data());
  TrainerOptions o;
  o.lr = case_number(meta, "lr");
  o.weight_decay = 0.02;
  o.max_grad_norm = 1.0;
  o.trainable = Trainable{true, true, true, true};
  std::vector<TaskDraws> replay(1);
  std::vector<int32_t> captions;
  if (task == "vq") {
    o.tokenizer = true;
  } else {
    Task t;
    parse_task(task, &t);
    o.weight_reca = t == Task::Reca, o.weight_t2i = t == Task::T2i, o.weight_i2t = t == Task::I2t;
    o.cond_grad_scale = case_number(meta, "cond_grad_scale");
    TaskDraws& d = replay[0];
    d.task = t;
    d.text.resize(static_cast<size_t>(B * T));
    f.read_raw("batch.text", StDtype::I32, {B, T}, d.text.data());
    captions = d.text;
    if (f.find("batch.masked")) {
      d.masked.resize(static_cast<size_t>(B * N));
      f.read_raw("batch.masked", StDtype::U8, {B, N}, d.masked.data());
    }
    if (f.find("batch.t")) {
      d.t.resize(static_cast<size_t>(B));
      d.noise.resize(static_cast<size_t>(B * N * c.patch_dim()));
      f.read_f32("batch.t", {B}, d.t.data());
      f.read_f32("batch.noise", {B, N, c.patch_dim()}, d.noise.data());
    }
  }
  Trainer trainer(model, o);
  StepBatch batch;
  batch.B = B;
  batch.images = images.data();
  batch.captions = captions.empty() ? nullptr : captions.data();
  // Reference losses of 5 steps, parsed from the case JSON.
  std::vector<double> want;
  {
    const std::string key = "\"losses_5_steps\": [";
    const char* q = meta.c_str() + meta.find(key) + key.size();
    for (int i = 0; i < 5; ++i) {
      char* end;
      want.push_back(std::strtod(q, &end));
      q = end + 1;
    }
  }
  for (int i = 0; i < 5; ++i) {
    const StepStats st = trainer.step(batch, task == "vq" ? nullptr : &replay);
    expect_true(std::fabs(st.loss - want[i]) <= 2e-5 * std::fabs(want[i]),
                name + ": step " + std::to_string(i + 1) + " loss " + std::to_string(st.loss) +
                    " vs reference " + std::to_string(want[i]));
    if (i > 0) continue;
    // After the first update. AdamW's first step moves each element by about
    // lr·g/(|g| + eps), so where |g| is near eps the direction is rounding
    // noise: there the bound is lr (the largest possible move), elsewhere 1e-6.
    std::vector<float> after(static_cast<size_t>(model.layout().total()));
    model.get_params(after.data());
    int bad = 0;
    for (const auto& p : model.layout().params()) {
      std::vector<float> ref(static_cast<size_t>(p.numel)), g(static_cast<size_t>(p.numel), 0.f);
      // A tensor the fixture does not list under after.* must not have moved.
      f.read_f32((f.find("after." + p.name) ? "after." : "param.") + p.name, p.shape, ref.data());
      if (f.find("grad." + p.name)) f.read_f32("grad." + p.name, p.shape, g.data());
      for (int64_t j = 0; j < p.numel; ++j) {
        const double tol = std::fabs(g[j]) > 1e-6 ? 1e-6 + 1e-6 * std::fabs(ref[j]) : 1.01 * o.lr;
        if (!(std::fabs(after[p.offset + j] - ref[j]) <= tol) && bad++ < 3)
          report_failure(name + ": after." + p.name + "[" + std::to_string(j) + "] " +
                         std::to_string(after[p.offset + j]) + " vs " + std::to_string(ref[j]));
      }
    }
  }
}

RECA_TEST(trainer_matches_pytorch_adamw_steps) {
  const char* modes[] = {"ar", "mask", "flow"};
  const char* tasks[] = {"reca", "t2i", "i2t"};
  for (const char* m : modes) {
    Mode mode;
    parse_mode(m, &mode);
    for (const char* t : tasks) check_training(std::string(m) + "_" + t, mode, t);
  }
  check_training("ar_vq", Mode::Ar, "vq");
  check_training("mask_vq", Mode::Mask, "vq");
}

RECA_TEST(model_parity_with_pytorch_fixtures) {
  const char* modes[] = {"ar", "mask", "flow"};
  const char* tasks[] = {"reca", "t2i", "i2t"};
  for (const char* m : modes) {
    Mode mode;
    parse_mode(m, &mode);
    for (const char* t : tasks) check_case(std::string(m) + "_" + t, mode, t);
  }
  check_case("ar_vq", Mode::Ar, "vq");
  check_case("mask_vq", Mode::Mask, "vq");
}
