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
#include "tests/testing.h"

using namespace reca;
using namespace reca::model;
using namespace reca::test;

namespace {

std::string fixture_path(const std::string& name) {
  return std::string(RECA_SOURCE_DIR) + "/test/fixtures/" + name + ".safetensors";
}

// Reads a number field from the flat "reca.case" JSON (test-only helper).
double case_number(const std::string& json, const std::string& key) {
  const std::string k = "\"" + key + "\": ";
  const size_t at = json.find(k);
  if (at == std::string::npos) return NAN;
  return std::strtod(json.c_str() + at + k.size(), nullptr);
}

void load_params(const SafetensorsFile& f, RecaModel& m) {
  std::vector<float> host(static_cast<size_t>(m.layout().total()), 0.0f);
  for (const auto& p : m.layout().params()) f.read_f32("param." + p.name, p.shape, host.data() + p.offset);
  m.set_params(host.data());
}

// ‖a − b‖ / ‖b‖ over one tensor.
double rel_l2(const float* a, const float* b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

void check_case(const std::string& name, Mode mode, const std::string& task) {
  const SafetensorsFile f = SafetensorsFile::open(fixture_path(name));
  const std::string meta = f.metadata().at("reca.case");
  RecaModel model(ModelConfig::preset("tiny", mode), cpu_backend());
  load_params(f, model);
  const ModelConfig& c = model.config();
  const int64_t B = f.get("batch.images").shape[0];
  const int64_t S = c.image_size, N = c.num_image_tokens();
  std::vector<uint8_t> images(static_cast<size_t>(B * S * S * 3));
  f.read_raw("batch.images", StDtype::U8, {B, S, S, 3}, images.data());
  std::vector<int32_t> text;
  std::vector<uint8_t> masked;
  std::vector<float> t, noise;
  MicroBatch mb;
  mb.B = B;
  mb.images = images.data();
  if (f.find("batch.text")) {
    text.resize(static_cast<size_t>(B * c.max_text_len));
    f.read_raw("batch.text", StDtype::I32, {B, c.max_text_len}, text.data());
    mb.text = text.data();
  }
  if (f.find("batch.masked")) {
    masked.resize(static_cast<size_t>(B * N));
    f.read_raw("batch.masked", StDtype::U8, {B, N}, masked.data());
    mb.masked = masked.data();
  }
  if (f.find("batch.t")) {
    t.resize(static_cast<size_t>(B));
    noise.resize(static_cast<size_t>(B * N * c.patch_dim()));
    f.read_f32("batch.t", {B}, t.data());
    f.read_f32("batch.noise", {B, N, c.patch_dim()}, noise.data());
    mb.t = t.data();
    mb.noise = noise.data();
  }
  std::vector<float> grads(static_cast<size_t>(model.layout().total()), 0.0f);
  Arena arena(model.backend());
  PassResult r;
  if (task == "vq") {
    r = model.tokenizer_pass(images.data(), B, grads.data(), 1.0f, arena);
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
