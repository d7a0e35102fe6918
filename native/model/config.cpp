#include "model/config.h"

#include "core/error.h"
#include "model/schema.h"

namespace reca::model {

const char* mode_name(Mode m) {
  switch (m) {
    case Mode::Ar: return "ar";
    case Mode::Mask: return "mask";
    default: return "flow";
  }
}

const char* task_name(Task t) {
  switch (t) {
    case Task::Reca: return "reca";
    case Task::T2i: return "t2i";
    default: return "i2t";
  }
}

bool parse_mode(const std::string& s, Mode* out) {
  if (s == "ar") *out = Mode::Ar;
  else if (s == "mask") *out = Mode::Mask;
  else if (s == "flow") *out = Mode::Flow;
  else return false;
  return true;
}

bool parse_task(const std::string& s, Task* out) {
  if (s == "reca") *out = Task::Reca;
  else if (s == "t2i") *out = Task::T2i;
  else if (s == "i2t") *out = Task::I2t;
  else return false;
  return true;
}

int64_t ModelConfig::cond_len(Task t) const {
  switch (t) {
    case Task::Reca: return 3 + num_und_tokens() + max_text_len;
    case Task::T2i: return 1 + max_text_len;
    default: return 3 + num_und_tokens();
  }
}

int64_t ModelConfig::target_len(Task t) const {
  if (t == Task::I2t) return 1 + max_text_len;            // CAP, y_1.., PAD…
  return mode == Mode::Ar ? num_image_tokens()            // GEN, x_1..x_{N-1}
                          : num_image_tokens() + 1;       // GEN, x̃_1..x̃_N / z_1..z_N
}

void ModelConfig::validate() const {
  check_fields(config_schema(), *this, ErrorCode::InvalidArgument);
  RECA_CHECK(image_size % gen_patch == 0, InvalidArgument,
             "config.image_size (%lld) must be a multiple of gen_patch (%lld)",
             (long long)image_size, (long long)gen_patch);
  RECA_CHECK(image_size % und_image_size == 0, InvalidArgument,
             "config.image_size (%lld) must be a multiple of und_image_size (%lld)",
             (long long)image_size, (long long)und_image_size);
  RECA_CHECK(und_image_size % und_patch == 0, InvalidArgument,
             "config.und_image_size (%lld) must be a multiple of und_patch (%lld)",
             (long long)und_image_size, (long long)und_patch);
  RECA_CHECK(width % heads == 0, InvalidArgument,
             "config.width (%lld) must be divisible by heads (%lld)", (long long)width,
             (long long)heads);
  RECA_CHECK(und_width % und_heads == 0, InvalidArgument,
             "config.und_width (%lld) must be divisible by und_heads (%lld)",
             (long long)und_width, (long long)und_heads);
  RECA_CHECK(und_depth + 1 + und_select_layer >= 1, InvalidArgument,
             "config.und_select_layer must be -1 .. -%lld (got %lld)", (long long)und_depth,
             (long long)und_select_layer);
  RECA_CHECK(num_image_tokens() * width <= (int64_t(1) << 31), InvalidArgument,
             "config is too large (image tokens × width exceeds 2^31)");
}

std::string ModelConfig::to_json() const { return model::to_json(config_schema(), *this); }

ModelConfig ModelConfig::from_json(const std::string& json) {
  ModelConfig c = model::from_json(config_schema(), json, ErrorCode::Checkpoint, "config JSON");
  try {
    c.validate();
  } catch (const Error& e) {
    fail(ErrorCode::Checkpoint, "%s", e.what());
  }
  return c;
}

ModelConfig ModelConfig::preset(const std::string& name, Mode mode) {
  std::string names;
  for (const PresetEntry& p : presets()) {
    if (name == p.name) {
      ModelConfig c = p.config;
      c.mode = mode;
      return c;
    }
    names += names.empty() ? p.name : std::string(", ") + p.name;
  }
  fail(ErrorCode::InvalidArgument, "unknown preset '%s': use %s", name.substr(0, 40).c_str(),
       names.c_str());
}

}  // namespace reca::model
