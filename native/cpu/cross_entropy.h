// Softmax and fused softmax + cross-entropy over the last dim (SPEC §5).
//
//   logits  [rows, V]
//   targets [rows] int32: target < 0 means the row carries no loss (PAD caption
//           positions, unmasked image positions); otherwise 0 <= target < V
//           (target >= V is a precondition violation).
//   losses  [rows] (may be null): CE of each row, 0 for ignored rows.
//   CE(row) = logsumexp(logits[row]) − logits[row, target]   (max-subtracted, stable)
//
// cross_entropy_forward           returns Σ CE over non-ignored rows, as a double; rows are
//                                 summed in fixed 64-row blocks combined in order, so the
//                                 sum does not depend on the thread count.
// cross_entropy_backward          dlogits += scale·(softmax(logits) − onehot(target)) on
//                                 non-ignored rows; ignored rows are left untouched.
//                                 (scale = λ/count turns the sum into the SPEC's means.)
// cross_entropy_forward_backward  both in one pass over the logits; returns the same sum.
// softmax_forward                 probs = softmax(logits), rows independent.
// log_softmax_forward             logp = logits − logsumexp(logits).
// probs/logp may alias logits (computed in place); dlogits must not. V >= 1, and every
// row needs at least one finite logit (−∞ entries, e.g. filtered-out classes, get
// probability 0).
#pragma once
#include "cpu/kernel_family.h"

#define RECA_CROSS_ENTROPY_FNS(PRE, T)                                                      \
  PRE double cross_entropy_forward(T* losses, const T* logits, const int32_t* targets,      \
                                   int64_t rows, int64_t V);                                \
  PRE void cross_entropy_backward(T* dlogits, const T* logits, const int32_t* targets,      \
                                  T scale, int64_t rows, int64_t V);                        \
  PRE double cross_entropy_forward_backward(T* losses, T* dlogits, const T* logits,         \
                                            const int32_t* targets, T scale, int64_t rows,  \
                                            int64_t V);                                     \
  PRE void softmax_forward(T* probs, const T* logits, int64_t rows, int64_t V);             \
  PRE void log_softmax_forward(T* logp, const T* logits, int64_t rows, int64_t V);

RECA_DECLARE_KERNEL_FAMILY(RECA_CROSS_ENTROPY_FNS)
