// A stack of pre-LN transformer blocks (SPEC §0), forward and backward, used by
// both the understanding ViT and the generator.
//   x = x + attn.proj(MHA(ln1(x)));  x = x + mlp.fc2(gelu(mlp.fc1(ln2(x))))
#pragma once
#include <string>
#include <vector>

#include "model/arena.h"
#include "model/backend.h"
#include "model/params.h"

namespace reca::model {

// One block's tensors inside a flat buffer (parameters or gradients). A
// gradient view has null pointers for a frozen stack.
struct BlockTensors {
  float *ln1_w = nullptr, *ln1_b = nullptr, *qkv_w = nullptr, *qkv_b = nullptr;
  float *proj_w = nullptr, *proj_b = nullptr, *ln2_w = nullptr, *ln2_b = nullptr;
  float *fc1_w = nullptr, *fc1_b = nullptr, *fc2_w = nullptr, *fc2_b = nullptr;
};
// Views of blocks 0..depth-1 named `<prefix>.<i>.*` in a flat buffer (null base → all null).
std::vector<BlockTensors> block_views(const ParamLayout& layout, const std::string& prefix,
                                      int64_t depth, float* base);

// Sequence geometry and attention visibility of one pass.
struct StackShape {
  int64_t B = 0, L = 0, width = 0, heads = 0, hidden = 0;
  int64_t cond_len = 0;            // SPEC §4 condition block length (L: bidirectional)
  bool target_causal = false;
  const uint8_t* key_pad = nullptr;  // [B, L], 1 = PAD key; null = none
  int64_t rows() const { return B * L; }
};

// Activations a block saves for its backward.
struct BlockCache {
  const float* x = nullptr;  // block input [rows, W]
  float *h1, *mean1, *rstd1, *qkv, *att, *a, *x2, *h2, *mean2, *rstd2, *f, *g, *out;
};

// Runs `n` blocks over x [rows, W]; returns the output (arena memory). With
// caches non-null, every block's activations are kept there for the backward;
// without, inference buffers are reused.
const float* stack_forward(Backend& be, Arena& arena, const std::vector<BlockTensors>& w,
                           int64_t n, const StackShape& s, const float* x, BlockCache* caches);

// Backward through the same n blocks: dy [rows, W] is the gradient at the output;
// parameter grads accumulate into g (null pointers skip them); returns the
// gradient at the input (arena memory). d_block_out (optional, n entries, each
// [rows, W] or null) adds a loss's gradient at block i's own output to what
// flows back from above it (a loss on every layer's states).
float* stack_backward(Backend& be, Arena& arena, const std::vector<BlockTensors>& w,
                      const std::vector<BlockTensors>& g, int64_t n, const StackShape& s,
                      const BlockCache* caches, const float* dy,
                      const float* const* d_block_out = nullptr);

}  // namespace reca::model
