// Reading a PyTorch fixture (tools/reference/) into a model and a micro-batch:
// shared by the parity tests of the model graph.
#pragma once
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "model/reca_model.h"

namespace reca::test {

// A number field of the flat "reca.case" JSON.
inline double case_number(const std::string& json, const std::string& key) {
  const std::string k = "\"" + key + "\": ";
  const size_t at = json.find(k);
  if (at == std::string::npos) return NAN;
  return std::strtod(json.c_str() + at + k.size(), nullptr);
}

// Every `param.<name>` of the fixture into the model.
inline void load_fixture_params(const SafetensorsFile& f, model::RecaModel& m) {
  std::vector<float> host(static_cast<size_t>(m.layout().total()), 0.0f);
  for (const auto& p : m.layout().params()) f.read_f32("param." + p.name, p.shape, host.data() + p.offset);
  m.set_params(host.data());
}

// The fixture's batch (images, text, and the mask / flow draws it has) and a
// micro-batch pointing into it; `mb.task` is left for the caller. A fixture with
// several batches names them `<task>.batch.*`: pass `prefix` "<task>.batch.".
struct FixtureBatch {
  int64_t B = 0;
  std::vector<uint8_t> images, masked;
  std::vector<int32_t> text;
  std::vector<float> t, noise;
  model::MicroBatch mb;
};

inline void read_fixture_batch(const SafetensorsFile& f, const model::ModelConfig& c, FixtureBatch& out,
                               const std::string& prefix = "batch.") {
  const int64_t B = f.get(prefix + "images").shape[0], S = c.image_size, N = c.num_image_tokens();
  out.B = B;
  out.images.resize(static_cast<size_t>(B * S * S * 3));
  f.read_raw(prefix + "images", StDtype::U8, {B, S, S, 3}, out.images.data());
  out.mb.B = B;
  out.mb.images = out.images.data();
  if (f.find(prefix + "text")) {
    out.text.resize(static_cast<size_t>(B * c.max_text_len));
    f.read_raw(prefix + "text", StDtype::I32, {B, c.max_text_len}, out.text.data());
    out.mb.text = out.text.data();
  }
  if (f.find(prefix + "masked")) {
    out.masked.resize(static_cast<size_t>(B * N));
    f.read_raw(prefix + "masked", StDtype::U8, {B, N}, out.masked.data());
    out.mb.masked = out.masked.data();
  }
  if (f.find(prefix + "t")) {
    out.t.resize(static_cast<size_t>(B));
    out.noise.resize(static_cast<size_t>(B * N * c.patch_dim()));
    f.read_f32(prefix + "t", {B}, out.t.data());
    f.read_f32(prefix + "noise", {B, N, c.patch_dim()}, out.noise.data());
    out.mb.t = out.t.data();
    out.mb.noise = out.noise.data();
  }
}

// ‖a − b‖ / ‖b‖ over one tensor (‖a − b‖ when b is zero).
inline double rel_l2(const float* a, const float* b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

}  // namespace reca::test
