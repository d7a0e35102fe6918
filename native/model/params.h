// The parameter table of a RecA-Mini model (SPEC §8, §9): every tensor's name,
// shape, place in one flat buffer, init rule and weight-decay flag. Parameters,
// grads, Adam moments and EMA are each one flat buffer with this layout, so
// zero-grad, clipping, AdamW, EMA and checkpointing are one pass each.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/config.h"

namespace reca::model {

enum class ParamKind { LinearWeight, Bias, NormWeight, NormBias, Embedding, PosTable, Codebook };

struct ParamInfo {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;  // floats from the start of the flat buffer
  int64_t numel = 0;
  ParamKind kind = ParamKind::Bias;
  float init_std = 0;  // N(0, init_std) for weights / embeddings / pos tables
  // Weight decay applies to 2-D Linear weights only (SPEC §6).
  bool decays() const { return kind == ParamKind::LinearWeight; }
  // "und", "conn", "vq" or "gen": the freeze groups.
  std::string group() const { return name.substr(0, name.find('.')); }
};

class ParamLayout {
 public:
  explicit ParamLayout(const ModelConfig& cfg);
  const std::vector<ParamInfo>& params() const { return params_; }
  int64_t total() const { return total_; }
  // nullptr when the name is not part of this configuration.
  const ParamInfo* find(const std::string& name) const;
  // Throws E_INTERNAL when missing (the model asks only for what its mode has).
  const ParamInfo& at(const std::string& name) const;

 private:
  void add(const std::string& name, std::vector<int64_t> shape, ParamKind kind, float std = 0);
  void add_linear(const std::string& prefix, int64_t in, int64_t out, float std);
  void add_norm(const std::string& prefix, int64_t dim);
  void add_blocks(const std::string& prefix, int64_t depth, int64_t width, int64_t mlp_ratio);

  std::vector<ParamInfo> params_;
  std::unordered_map<std::string, size_t> index_;
  int64_t total_ = 0;
};

// Fills params (layout.total() floats) per SPEC §8 from Philox(seed): tensor i
// uses stream i + 1, so each tensor's values are independent of the others.
void init_params(const ParamLayout& layout, uint64_t seed, float* params);

}  // namespace reca::model
