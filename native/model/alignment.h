// The condition-alignment loss (docs/SPEC.md §5 "Condition alignment"): a
// symmetric InfoNCE between the pooled condition states of an image (its
// `reca` condition block) and of its caption (its `t2i` condition block), so
// that the generator comes to read the two pathways alike. Host math in
// float64: the pooled states are small ([B, W] per layer).
#pragma once
#include <cstdint>
#include <vector>

namespace reca::model {

// Temperature of the similarity logits (cosine similarity / τ).
constexpr double kAlignTemperature = 0.1;

// Mean of the states [B, L, W] over the slots whose pad flag is 0, per sample:
// pooled [B, W]. count [B] receives the number of slots pooled.
void pool_visible(const float* states, const uint8_t* pad, int64_t B, int64_t L, int64_t W,
                  double* pooled, int64_t* count);

// Symmetric InfoNCE over a batch: a_i (image side) against b_j (caption side),
// s_ij = cos(a_i, b_j)/τ; loss = (1/2B) Σ_i [−log softmax_j(s_i·)_i − log softmax_j(s_·i)_i].
// A pair i ≠ j whose captions are the same (same[i·B + j] != 0) is left out of
// both softmaxes: it is neither the positive nor a negative. Writes dL/da and
// dL/db ([B, W]) and returns the loss.
double info_nce(const double* a, const double* b, const uint8_t* same, int64_t B, int64_t W,
                double* da, double* db);

// Spreads a gradient at the pooled states back onto the pooled slots:
// dstates [B, L, W] (overwritten; pad slots 0) = dpooled / count.
void unpool_visible(const double* dpooled, const uint8_t* pad, const int64_t* count, int64_t B,
                    int64_t L, int64_t W, float scale, float* dstates);

}  // namespace reca::model
