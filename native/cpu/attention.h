// Multi-head self-attention over a fused qkv projection (SPEC §0, §4).
//
//   qkv  [B, L, 3·width]   q, k, v in that order; head h uses dims [h·hd, (h+1)·hd), hd = width/heads
//   out  [B, L, width]     head h writes dims [h·hd, (h+1)·hd)
//   att  [B, heads, L, L]  softmax probabilities, saved by the forward for the backward
//   key_pad [B, L] uint8   1 = PAD key (never visible); null = no PAD keys
//
// Visibility of key j to query i (SPEC §4), Lc = cond_len: positions < Lc form the
// condition block, the rest the target block.
//   - a PAD key is never visible;
//   - a condition query (i < Lc) sees the condition keys j < Lc (both directions);
//   - a target query (i >= Lc) sees every condition key, and target keys j <= i when
//     target_causal, else every target key.
// cond_len = L is plain bidirectional attention (understanding encoder); cond_len = 0
// with target_causal is a plain causal decoder.
// Scores are q·k/√hd; masked keys get −∞ before the softmax. A query that sees no key
// at all (every candidate is PAD) outputs zeros, gets an all-zero att row and passes no
// gradient.
//
// forward   out = softmax(q·kᵀ/√hd + mask)·v per (b, head); att gets every entry,
//           zeros where masked. att may be null when no backward follows (inference).
// backward  dqkv += ∂out/∂qkv applied to dout, using the att of the forward:
//           dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P ⊙ (dP − rowsum(dP ⊙ P)), dQ = dS·K/√hd, dK = dSᵀ·Q/√hd.
//           Same mask arguments as the forward.
// Preconditions: heads >= 1, width % heads == 0, 0 <= cond_len <= L; out/att/dqkv do
// not alias the inputs. Work is split over (b, head) pairs, so results do not depend
// on the thread count.
#pragma once
#include "cpu/kernel_family.h"

#define RECA_ATTENTION_FNS(PRE, T)                                                          \
  PRE void attention_forward(T* out, T* att, const T* qkv, const uint8_t* key_pad,          \
                             int64_t B, int64_t L, int64_t heads, int64_t width,             \
                             int64_t cond_len, bool target_causal);                          \
  PRE void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* att,           \
                              const uint8_t* key_pad, int64_t B, int64_t L, int64_t heads,   \
                              int64_t width, int64_t cond_len, bool target_causal);

RECA_DECLARE_KERNEL_FAMILY(RECA_ATTENTION_FNS)
