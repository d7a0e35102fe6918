// RecA-Mini configuration (SPEC §1) and the sequence geometry derived from it (SPEC §4).
#pragma once
#include <cstdint>
#include <string>

namespace reca::model {

enum class Mode { Ar, Mask, Flow };
enum class Task { Reca, T2i, I2t };

const char* mode_name(Mode m);
const char* task_name(Task t);
bool parse_mode(const std::string& s, Mode* out);
bool parse_task(const std::string& s, Task* out);

// Byte-level text ids (SPEC §2).
namespace tok {
constexpr int32_t kPad = 256, kBos = 257, kEos = 258, kImgBegin = 259, kImgEnd = 260, kGen = 261,
                  kCap = 262;
constexpr int32_t kVocab = 263;
}  // namespace tok

struct ModelConfig {
  Mode mode = Mode::Mask;
  int64_t image_size = 16, gen_patch = 4;
  int64_t und_image_size = 8, und_patch = 2;
  int64_t und_width = 32, und_depth = 2, und_heads = 2, und_select_layer = -1;
  int64_t width = 64, depth = 2, heads = 4, mlp_ratio = 4;
  int64_t codebook_size = 64, code_dim = 8;
  int64_t max_text_len = 32;
  bool cond_norm = false;  // conn.norm after conn.fc2 (SPEC §3)

  // Derived geometry.
  int64_t grid() const { return image_size / gen_patch; }
  int64_t num_image_tokens() const { return grid() * grid(); }            // N
  int64_t und_grid() const { return und_image_size / und_patch; }
  int64_t num_und_tokens() const { return und_grid() * und_grid(); }      // N_u
  int64_t patch_dim() const { return 3 * gen_patch * gen_patch; }         // 3P²
  int64_t und_patch_dim() const { return 3 * und_patch * und_patch; }
  int64_t pool_factor() const { return image_size / und_image_size; }
  int64_t und_feature_layer() const { return und_depth + 1 + und_select_layer; }  // k
  bool discrete() const { return mode != Mode::Flow; }
  int64_t cond_len(Task t) const;          // condition block length
  int64_t target_len(Task t) const;        // target block length
  int64_t seq_len(Task t) const { return cond_len(t) + target_len(t); }
  int64_t pos_cond_rows() const { return 3 + num_und_tokens() + max_text_len; }
  int64_t img_out_dim() const { return discrete() ? codebook_size : patch_dim(); }

  // Throws E_INVALID_ARGUMENT naming the offending field.
  void validate() const;
  std::string to_json() const;
  // Throws E_CHECKPOINT (bad JSON / fields) — used for checkpoint metadata.
  static ModelConfig from_json(const std::string& json);
  // "tiny" | "small" | "base"; throws E_INVALID_ARGUMENT for an unknown name.
  static ModelConfig preset(const std::string& name, Mode mode);
};

}  // namespace reca::model
