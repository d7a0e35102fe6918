#include "model/config.h"

#include <sstream>

#include "core/error.h"
#include "core/json.h"

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
  auto positive = [](int64_t v, const char* name) {
    RECA_CHECK(v >= 1 && v <= (1 << 20), InvalidArgument,
               "config.%s must be a positive integer (got %lld)", name, static_cast<long long>(v));
  };
  positive(image_size, "image_size");
  positive(gen_patch, "gen_patch");
  positive(und_image_size, "und_image_size");
  positive(und_patch, "und_patch");
  positive(und_width, "und_width");
  positive(und_depth, "und_depth");
  positive(und_heads, "und_heads");
  positive(width, "width");
  positive(depth, "depth");
  positive(heads, "heads");
  positive(mlp_ratio, "mlp_ratio");
  positive(max_text_len, "max_text_len");
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
  RECA_CHECK(und_select_layer < 0 && und_depth + 1 + und_select_layer >= 1, InvalidArgument,
             "config.und_select_layer must be -1 .. -%lld (got %lld)", (long long)und_depth,
             (long long)und_select_layer);
  if (discrete()) {
    positive(codebook_size, "codebook_size");
    positive(code_dim, "code_dim");
  }
  RECA_CHECK(num_image_tokens() * width <= (int64_t(1) << 31), InvalidArgument,
             "config is too large (image tokens × width exceeds 2^31)");
}

std::string ModelConfig::to_json() const {
  std::ostringstream os;
  os << "{\"mode\":\"" << mode_name(mode) << "\",\"image_size\":" << image_size
     << ",\"gen_patch\":" << gen_patch << ",\"und_image_size\":" << und_image_size
     << ",\"und_patch\":" << und_patch << ",\"und_width\":" << und_width
     << ",\"und_depth\":" << und_depth << ",\"und_heads\":" << und_heads
     << ",\"und_select_layer\":" << und_select_layer << ",\"width\":" << width
     << ",\"depth\":" << depth << ",\"heads\":" << heads << ",\"mlp_ratio\":" << mlp_ratio
     << ",\"codebook_size\":" << codebook_size << ",\"code_dim\":" << code_dim
     << ",\"max_text_len\":" << max_text_len << "}";
  return os.str();
}

ModelConfig ModelConfig::from_json(const std::string& json) {
  const JsonValue root = parse_json(json, ErrorCode::Checkpoint, "config JSON", 8, 1 << 20);
  RECA_CHECK(root.is_object(), Checkpoint, "config JSON must be an object, found %s",
             json_type_name(root.type()));
  ModelConfig c;
  struct IntField {
    const char* name;
    int64_t ModelConfig::*field;
  };
  static const IntField kInts[] = {
      {"image_size", &ModelConfig::image_size},
      {"gen_patch", &ModelConfig::gen_patch},
      {"und_image_size", &ModelConfig::und_image_size},
      {"und_patch", &ModelConfig::und_patch},
      {"und_width", &ModelConfig::und_width},
      {"und_depth", &ModelConfig::und_depth},
      {"und_heads", &ModelConfig::und_heads},
      {"und_select_layer", &ModelConfig::und_select_layer},
      {"width", &ModelConfig::width},
      {"depth", &ModelConfig::depth},
      {"heads", &ModelConfig::heads},
      {"mlp_ratio", &ModelConfig::mlp_ratio},
      {"codebook_size", &ModelConfig::codebook_size},
      {"code_dim", &ModelConfig::code_dim},
      {"max_text_len", &ModelConfig::max_text_len},
  };
  constexpr size_t kNumInts = sizeof kInts / sizeof kInts[0];
  bool seen[kNumInts + 1] = {};  // the last slot is "mode"
  for (const JsonValue::Member& m : root.members()) {
    const std::string& key = m.first;
    const JsonValue& v = m.second;
    if (key == "mode") {
      RECA_CHECK(v.is_string(), Checkpoint, "config.mode must be a string (ar, mask or flow), found %s",
                 json_type_name(v.type()));
      RECA_CHECK(parse_mode(v.as_string(), &c.mode), Checkpoint,
                 "config.mode '%s' is not ar, mask or flow", v.as_string().substr(0, 40).c_str());
      seen[kNumInts] = true;
      continue;
    }
    size_t i = 0;
    while (i < kNumInts && key != kInts[i].name) ++i;
    RECA_CHECK(i < kNumInts, Checkpoint, "config JSON has an unknown field '%s'",
               key.substr(0, 60).c_str());
    RECA_CHECK(v.is_integer(), Checkpoint, "config.%s must be an integer, found %s", kInts[i].name,
               v.is_number() ? ("the number " + json_number(v.as_double())).c_str()
                             : json_type_name(v.type()));
    c.*kInts[i].field = v.as_int();
    seen[i] = true;
  }
  RECA_CHECK(seen[kNumInts], Checkpoint, "config JSON has no field 'mode'");
  for (size_t i = 0; i < kNumInts; ++i)
    RECA_CHECK(seen[i], Checkpoint, "config JSON has no field '%s'", kInts[i].name);
  try {
    c.validate();
  } catch (const Error& e) {
    fail(ErrorCode::Checkpoint, "%s", e.what());
  }
  return c;
}

ModelConfig ModelConfig::preset(const std::string& name, Mode mode) {
  ModelConfig c;
  c.mode = mode;
  if (name == "tiny") {
    return c;  // the defaults above are the tiny preset
  }
  if (name == "small") {
    c.image_size = 32, c.gen_patch = 4, c.und_image_size = 16, c.und_patch = 4;
    c.und_width = 128, c.und_depth = 4, c.und_heads = 4;
    c.width = 256, c.depth = 6, c.heads = 8;
    c.codebook_size = 512, c.code_dim = 16, c.max_text_len = 48;
    return c;
  }
  if (name == "base") {
    c.image_size = 64, c.gen_patch = 4, c.und_image_size = 32, c.und_patch = 4;
    c.und_width = 384, c.und_depth = 6, c.und_heads = 6;
    c.width = 768, c.depth = 12, c.heads = 12;
    c.codebook_size = 4096, c.code_dim = 32, c.max_text_len = 64;
    return c;
  }
  fail(ErrorCode::InvalidArgument, "unknown preset '%s': use tiny, small or base", name.c_str());
}

}  // namespace reca::model
