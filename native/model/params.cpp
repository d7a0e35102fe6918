#include "model/params.h"

#include <cmath>

#include "core/checked.h"
#include "core/error.h"
#include "core/philox.h"

namespace reca::model {

const ParamCounts& LayoutSize::group(const std::string& g) const {
  if (g == "und") return und;
  if (g == "conn") return conn;
  if (g == "vq") return vq;
  if (g == "gen") return gen;
  fail(ErrorCode::Internal, "no parameter group '%s'", g.c_str());
}

LayoutSize ParamLayout::measure(const ModelConfig& c) {
  LayoutSize s;
  ParamLayout(c, &s);
  return s;
}

void ParamLayout::require_fits(const LayoutSize& s) {
  if (s.overflow || s.all.floats > kMaxFloats)
    fail(ErrorCode::InvalidArgument,
         "config is too large: its parameters would take %.4g floats (%.4g bytes); the limit "
         "is 2^57 floats",
         s.approx_floats, s.approx_floats * 4);
}

ParamLayout::ParamLayout(const ModelConfig& c, LayoutSize* measuring) : measuring_(measuring) {
  build(c);
}

ParamLayout::ParamLayout(const ModelConfig& c) {
  // Measure first: a config of depth 2^20 would otherwise build a table of
  // 12M tensors, and a wrapped total would size the buffers.
  const LayoutSize s = measure(c);
  require_fits(s);
  params_.reserve(static_cast<size_t>(s.all.tensors));
  build(c);
}

void ParamLayout::build(const ModelConfig& c) {
  const float std = 0.02f;
  const int64_t N = c.num_image_tokens(), Nu = c.num_und_tokens(), W = c.width;

  // Understanding encoder.
  add_linear("und.patch_embed", c.und_patch_dim(), c.und_width, std);
  add("und.pos_embed", {Nu, c.und_width}, ParamKind::PosTable, std);
  add_blocks("und.blocks", c.und_depth, c.und_width, c.mlp_ratio);
  // Connector.
  add_norm("conn.ln", c.und_width);
  add_linear("conn.fc1", c.und_width, W, std);
  add_linear("conn.fc2", W, W, std);
  // Its gain starts at the embeddings' scale, so c starts beside gen.pos_cond, not 50× it (SPEC §3).
  if (c.cond_norm) add_norm("conn.norm", W, kCondNormInitGain);
  // VQ tokenizer (discrete modes).
  if (c.discrete()) {
    add_linear("vq.enc", c.patch_dim(), c.code_dim, std);
    add("vq.codebook", {c.codebook_size, c.code_dim}, ParamKind::Codebook);
    add_linear("vq.dec", c.code_dim, c.patch_dim(), std);
  }
  // Generator.
  add("gen.tok_embed", {tok::kVocab, W}, ParamKind::Embedding, std);
  if (c.discrete()) {
    add("gen.img_embed", {c.codebook_size + 1, W}, ParamKind::Embedding, std);
  } else {
    add_linear("gen.img_in", c.patch_dim(), W, std);
    add_linear("gen.t_embed.fc1", 256, W, std);
    add_linear("gen.t_embed.fc2", W, W, std);
  }
  add("gen.pos_cond", {c.pos_cond_rows(), W}, ParamKind::PosTable, std);
  add("gen.pos_img", {N + 1, W}, ParamKind::PosTable, std);
  add("gen.pos_txt", {1 + c.max_text_len, W}, ParamKind::PosTable, std);
  add_blocks("gen.blocks", c.depth, W, c.mlp_ratio);
  add_norm("gen.ln_f", W);
  add_linear("gen.head_img", W, c.img_out_dim(), std);
  add_linear("gen.head_txt", W, tok::kVocab, std);
}

void ParamLayout::add(const std::string& name, std::vector<int64_t> shape, ParamKind kind,
                      float std) {
  int64_t numel = 1;
  bool overflow = false;
  double approx = 1;
  for (int64_t d : shape) {
    overflow |= d < 0 || !checked_mul(numel, d, &numel);
    approx *= static_cast<double>(d);
  }
  int64_t padded = 0;
  overflow = overflow || !checked_add(numel, 15, &padded);
  padded = padded / 16 * 16;
  if (measuring_) {
    LayoutSize& s = *measuring_;
    const double reps = static_cast<double>(repeat_);
    s.approx_floats += reps * (std::ceil(approx / 16) * 16);
    ParamCounts& g = s.group(name.substr(0, name.find('.')));
    for (ParamCounts* pc : {&s.all, &g}) {
      int64_t n = 0, f = 0;
      overflow = overflow || !checked_mul(numel, repeat_, &n) || !checked_add(pc->numel, n, &pc->numel) ||
                 !checked_mul(padded, repeat_, &f) || !checked_add(pc->floats, f, &pc->floats) ||
                 !checked_add(pc->tensors, repeat_, &pc->tensors);
    }
    s.overflow |= overflow;
    return;
  }
  // The constructor measured the whole table first, so nothing here can wrap.
  RECA_CHECK(!overflow && checked_add(total_, padded, &padded), Internal,
             "parameter '%s' overflows the layout", name.c_str());
  ParamInfo p;
  p.name = name;
  p.numel = numel;
  p.shape = std::move(shape);
  p.offset = total_;
  p.kind = kind;
  p.init_std = std;
  // Keep every tensor 16-float (64-byte) aligned inside the flat buffer.
  total_ = padded;
  index_[name] = params_.size();
  params_.push_back(std::move(p));
}

void ParamLayout::add_linear(const std::string& prefix, int64_t in, int64_t out, float std) {
  add(prefix + ".weight", {out, in}, ParamKind::LinearWeight, std);
  add(prefix + ".bias", {out}, ParamKind::Bias);
}

void ParamLayout::add_norm(const std::string& prefix, int64_t dim, float gain) {
  add(prefix + ".weight", {dim}, ParamKind::NormWeight, gain);
  add(prefix + ".bias", {dim}, ParamKind::NormBias);
}

void ParamLayout::add_blocks(const std::string& prefix, int64_t depth, int64_t width,
                             int64_t mlp_ratio) {
  // Residual-branch outputs get the depth-scaled init (SPEC §8).
  const float std = 0.02f, out_std = 0.02f / std::sqrt(2.0f * static_cast<float>(depth));
  // Measuring: every block has the same tensors, so one block counts `depth` times.
  const int64_t blocks = measuring_ ? (depth > 0 ? 1 : 0) : depth;
  if (measuring_) repeat_ = depth;
  for (int64_t i = 0; i < blocks; ++i) {
    const std::string b = prefix + "." + std::to_string(i);
    add_norm(b + ".ln1", width);
    add_linear(b + ".attn.qkv", width, 3 * width, std);
    add_linear(b + ".attn.proj", width, width, out_std);
    add_norm(b + ".ln2", width);
    add_linear(b + ".mlp.fc1", width, mlp_ratio * width, std);
    add_linear(b + ".mlp.fc2", mlp_ratio * width, width, out_std);
  }
  repeat_ = 1;
}

const ParamInfo* ParamLayout::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &params_[it->second];
}

const ParamInfo& ParamLayout::at(const std::string& name) const {
  const ParamInfo* p = find(name);
  if (!p) fail(ErrorCode::Internal, "parameter '%s' is not part of this model", name.c_str());
  return *p;
}

void init_params(const ParamLayout& layout, uint64_t seed, float* params) {
  const auto& ps = layout.params();
  for (size_t i = 0; i < ps.size(); ++i) {
    const ParamInfo& p = ps[i];
    float* dst = params + p.offset;
    const uint64_t stream = i + 1;
    switch (p.kind) {
      case ParamKind::LinearWeight:
      case ParamKind::Embedding:
      case ParamKind::PosTable:
        philox_fill_normal(seed, stream, dst, p.numel);
        for (int64_t j = 0; j < p.numel; ++j) dst[j] *= p.init_std;
        break;
      case ParamKind::Codebook: {
        // U(−1/K, 1/K)
        const float bound = 1.0f / static_cast<float>(p.shape[0]);
        philox_fill_uniform(seed, stream, dst, p.numel);
        for (int64_t j = 0; j < p.numel; ++j) dst[j] = (2.0f * dst[j] - 1.0f) * bound;
        break;
      }
      case ParamKind::NormWeight:  // init_std holds the starting gain
        for (int64_t j = 0; j < p.numel; ++j) dst[j] = p.init_std;
        break;
      default:
        for (int64_t j = 0; j < p.numel; ++j) dst[j] = 0.0f;
    }
  }
}

}  // namespace reca::model
