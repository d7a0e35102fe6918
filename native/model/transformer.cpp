#include "model/transformer.h"

namespace reca::model {

std::vector<BlockTensors> block_views(const ParamLayout& layout, const std::string& prefix,
                                      int64_t depth, float* base) {
  std::vector<BlockTensors> out(static_cast<size_t>(depth));
  if (!base) return out;
  for (int64_t i = 0; i < depth; ++i) {
    const std::string b = prefix + "." + std::to_string(i) + ".";
    auto at = [&](const char* n) { return base + layout.at(b + n).offset; };
    BlockTensors& t = out[static_cast<size_t>(i)];
    t.ln1_w = at("ln1.weight"), t.ln1_b = at("ln1.bias");
    t.qkv_w = at("attn.qkv.weight"), t.qkv_b = at("attn.qkv.bias");
    t.proj_w = at("attn.proj.weight"), t.proj_b = at("attn.proj.bias");
    t.ln2_w = at("ln2.weight"), t.ln2_b = at("ln2.bias");
    t.fc1_w = at("mlp.fc1.weight"), t.fc1_b = at("mlp.fc1.bias");
    t.fc2_w = at("mlp.fc2.weight"), t.fc2_b = at("mlp.fc2.bias");
  }
  return out;
}

namespace {

void alloc_cache(Arena& arena, const StackShape& s, BlockCache& c) {
  const int64_t R = s.rows(), W = s.width, H = s.hidden;
  c.h1 = arena.floats(R * W), c.mean1 = arena.floats(R), c.rstd1 = arena.floats(R);
  c.qkv = arena.floats(R * 3 * W), c.att = arena.floats(s.B * s.heads * s.L * s.L);
  c.a = arena.floats(R * W), c.x2 = arena.floats(R * W), c.h2 = arena.floats(R * W);
  c.mean2 = arena.floats(R), c.rstd2 = arena.floats(R);
  c.f = arena.floats(R * H), c.g = arena.floats(R * H), c.out = arena.floats(R * W);
}

void block_forward(Backend& be, const BlockTensors& w, const StackShape& s, BlockCache& c) {
  const int64_t R = s.rows(), W = s.width, H = s.hidden;
  be.layernorm_forward(c.h1, c.mean1, c.rstd1, c.x, w.ln1_w, w.ln1_b, R, W);
  be.linear_forward(c.qkv, c.h1, w.qkv_w, w.qkv_b, R, W, 3 * W);
  be.attention_forward(c.a, c.att, c.qkv, s.key_pad, s.B, s.L, s.heads, W, s.cond_len,
                       s.target_causal);
  be.linear_forward(c.x2, c.a, w.proj_w, w.proj_b, R, W, W);
  be.add(c.x2, c.x2, c.x, R * W);
  be.layernorm_forward(c.h2, c.mean2, c.rstd2, c.x2, w.ln2_w, w.ln2_b, R, W);
  be.linear_gelu_forward(c.f, c.g, c.h2, w.fc1_w, w.fc1_b, R, W, H);
  be.linear_forward(c.out, c.g, w.fc2_w, w.fc2_b, R, H, W);
  be.add(c.out, c.out, c.x2, R * W);
}

}  // namespace

const float* stack_forward(Backend& be, Arena& arena, const std::vector<BlockTensors>& w,
                           int64_t n, const StackShape& s, const float* x, BlockCache* caches) {
  if (caches) {
    for (int64_t i = 0; i < n; ++i) {
      BlockCache& c = caches[i];
      alloc_cache(arena, s, c);
      c.x = i == 0 ? x : caches[i - 1].out;
      block_forward(be, w[static_cast<size_t>(i)], s, c);
    }
    return n > 0 ? caches[n - 1].out : x;
  }
  // Inference: one scratch set, outputs ping-pong between two buffers.
  BlockCache c;
  alloc_cache(arena, s, c);
  float* other = arena.floats(s.rows() * s.width);
  const float* cur = x;
  for (int64_t i = 0; i < n; ++i) {
    c.x = cur;
    block_forward(be, w[static_cast<size_t>(i)], s, c);
    float* done = c.out;
    c.out = other;
    other = done;
    cur = done;
  }
  return cur;
}

float* stack_backward(Backend& be, Arena& arena, const std::vector<BlockTensors>& w,
                      const std::vector<BlockTensors>& g, int64_t n, const StackShape& s,
                      const BlockCache* caches, const float* dy, const float* const* d_block_out) {
  const int64_t R = s.rows(), W = s.width, H = s.hidden;
  // Scratch shared by all blocks; the running gradient ping-pongs between dx_a and dx_b.
  float* df = arena.floats(R * H);
  float* dh = arena.floats(R * W);
  float* dqkv = arena.floats(R * 3 * W);
  float* dx2 = arena.floats(R * W);
  float* dx_a = arena.floats(R * W);
  float* dx_b = arena.floats(R * W);
  be.copy(dx_a, dy, R * W * 4);
  for (int64_t i = n - 1; i >= 0; --i) {
    const BlockTensors& wi = w[static_cast<size_t>(i)];
    const BlockTensors& gi = g[static_cast<size_t>(i)];
    const BlockCache& c = caches[i];
    if (d_block_out && d_block_out[i]) be.add(dx_a, dx_a, d_block_out[i], R * W);
    const float* dout = dx_a;
    // MLP branch: out = x2 + fc2(gelu(fc1(ln2(x2)))).
    be.linear_backward_gelu(df, gi.fc2_w, gi.fc2_b, dout, c.g, wi.fc2_w, c.f, R, H, W);
    be.zero(dh, R * W * 4);
    be.linear_backward(dh, gi.fc1_w, gi.fc1_b, df, c.h2, wi.fc1_w, R, W, H);
    be.copy(dx2, dout, R * W * 4);
    be.layernorm_backward(dx2, gi.ln2_w, gi.ln2_b, dh, c.x2, wi.ln2_w, c.mean2, c.rstd2, R, W);
    // Attention branch: x2 = x + proj(MHA(ln1(x))). dh holds d(attention output).
    be.zero(dh, R * W * 4);
    be.linear_backward(dh, gi.proj_w, gi.proj_b, dx2, c.a, wi.proj_w, R, W, W);
    be.zero(dqkv, R * 3 * W * 4);
    be.attention_backward(dqkv, dh, c.qkv, c.att, s.key_pad, s.B, s.L, s.heads, W, s.cond_len,
                          s.target_causal);
    be.zero(dh, R * W * 4);
    be.linear_backward(dh, gi.qkv_w, gi.qkv_b, dqkv, c.h1, wi.qkv_w, R, W, 3 * W);
    be.copy(dx_b, dx2, R * W * 4);
    be.layernorm_backward(dx_b, gi.ln1_w, gi.ln1_b, dh, c.x, wi.ln1_w, c.mean1, c.rstd1, R, W);
    float* t = dx_a;
    dx_a = dx_b;
    dx_b = t;
  }
  return dx_a;
}

}  // namespace reca::model
