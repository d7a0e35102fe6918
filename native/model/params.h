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

// conn.norm's starting gain: the N(0, 0.02²) embeddings' and position rows' scale (SPEC §8).
constexpr float kCondNormInitGain = 0.02f;

enum class ParamKind { LinearWeight, Bias, NormWeight, NormBias, Embedding, PosTable, Codebook };

struct ParamInfo {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;  // floats from the start of the flat buffer
  int64_t numel = 0;
  ParamKind kind = ParamKind::Bias;
  float init_std = 0;  // N(0, init_std) for weights / embeddings / pos tables; a norm's starting gain
  // Weight decay applies to 2-D Linear weights only (SPEC §6).
  bool decays() const { return kind == ParamKind::LinearWeight; }
  // "und", "conn", "vq" or "gen": the freeze groups.
  std::string group() const { return name.substr(0, name.find('.')); }
};

// Tensor count and sizes of a layout, or of one freeze group of it.
struct ParamCounts {
  int64_t tensors = 0;
  int64_t numel = 0;   // elements
  int64_t floats = 0;  // flat-buffer floats, with the per-tensor padding
};

// What a config's layout would hold, measured in time independent of depth
// (one block is measured and scaled), with checked arithmetic.
struct LayoutSize {
  ParamCounts all;
  ParamCounts und, conn, vq, gen;  // the freeze groups
  bool overflow = false;           // some count does not fit int64
  double approx_floats = 0;        // the true flat size, also on overflow
  const ParamCounts& group(const std::string& g) const;
  ParamCounts& group(const std::string& g) {
    return const_cast<ParamCounts&>(static_cast<const LayoutSize*>(this)->group(g));
  }
};

class ParamLayout {
 public:
  // The largest flat buffer accepted, in floats (2^57): every byte count the
  // model and trainer derive from it (floats · 4 · buffers) then fits int64.
  static constexpr int64_t kMaxFloats = int64_t(1) << 57;

  // E_INVALID_ARGUMENT, stating the size, when the layout exceeds kMaxFloats;
  // checked before the table is built.
  explicit ParamLayout(const ModelConfig& cfg);
  static LayoutSize measure(const ModelConfig& cfg);
  // E_INVALID_ARGUMENT, stating the size, when a measured layout exceeds kMaxFloats.
  static void require_fits(const LayoutSize& s);
  const std::vector<ParamInfo>& params() const { return params_; }
  int64_t total() const { return total_; }
  // nullptr when the name is not part of this configuration.
  const ParamInfo* find(const std::string& name) const;
  // Throws E_INTERNAL when missing (the model asks only for what its mode has).
  const ParamInfo& at(const std::string& name) const;

 private:
  void add(const std::string& name, std::vector<int64_t> shape, ParamKind kind, float std = 0);
  void add_linear(const std::string& prefix, int64_t in, int64_t out, float std);
  void add_norm(const std::string& prefix, int64_t dim, float gain = 1.0f);
  void add_blocks(const std::string& prefix, int64_t depth, int64_t width, int64_t mlp_ratio);

  ParamLayout(const ModelConfig& cfg, LayoutSize* measuring);
  void build(const ModelConfig& c);

  std::vector<ParamInfo> params_;
  std::unordered_map<std::string, size_t> index_;
  int64_t total_ = 0;
  // Measuring mode: add() only counts, each tensor `repeat_` times.
  LayoutSize* measuring_ = nullptr;
  int64_t repeat_ = 1;
};

// Fills params (layout.total() floats) per SPEC §8 from Philox(seed): tensor i
// uses stream i + 1, so each tensor's values are independent of the others.
void init_params(const ParamLayout& layout, uint64_t seed, float* params);

}  // namespace reca::model
