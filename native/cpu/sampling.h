// Sampling (SPEC §7): temperature / top-k categorical sampling, classifier-free
// guidance, the MaskGIT unmasking step and the flow Euler step. Inference
// only: there is no backward for any of these.
//
// Random numbers are inputs: one uniform u in (0, 1) per row, drawn by the
// caller from the engine's Philox stream, so these kernels are deterministic
// and give the same result on every backend and thread count.
//
// Categorical sampling of one row x[0..V):
//  - top-k: k <= 0 or k >= V keeps every entry. Otherwise the threshold is the
//    k-th largest value v_k (counting repeats) and every x_j >= v_k is kept, so
//    entries equal to v_k are all kept and ties can keep more than k.
//  - temperature τ > 0: m = max_j x_j; w_j = exp((x_j − m) / τ) for kept j,
//    0 otherwise; S = Σ w; p_j = w_j / S.
//  - draw: id = the smallest j with w_j > 0 and w_0 + … + w_j > u·S (inverse
//    CDF in index order); when rounding leaves none, the largest j with w_j > 0.
//  - τ == 0 is greedy: id = argmax_j x_j (lowest index among equal maxima), u is
//    not read (may be null). The reported probabilities are then those of τ = 1
//    (same top-k), so MaskGIT confidences stay informative under greedy decoding.
//  - reported prob = p_id (the MaskGIT "confidence").
// Fast and reference exp differ by a few ulp, so a u within ~1e-6 of a CDF
// boundary may pick the neighbouring id; everything else matches.
//
// MaskGIT step (one call per step, batched over B samples of N positions):
//  - R = maskgit_remask_count(N, step, total_steps) = floor(N·cos(π/2·(step+1)/T)),
//    evaluated in double as N · cos((π/2) · ((step+1)/T)) (the ratio first, so the
//    last step gives cos of the double nearest π/2 = 6.1e-17 > 0 and R = 0),
//    then clamped to [0, M] where M = positions masked on entry.
//  - Already unmasked positions keep their token and stay unmasked.
//  - Among the M masked positions, the M − R most confident take their sampled
//    token and are unmasked; the other R get mask_id and stay masked. Ranking:
//    higher confidence first, equal confidences → lower index first (kept).
//    No forced progress: a schedule step with R == M unmasks nothing, as SPEC says.
//
// Preconditions: rows, V, n, B, N >= 1 (V, N < 2^31); logits finite or −inf with
// at least one finite entry per row; no NaN; temperature >= 0; u in (0, 1);
// 0 <= step < total_steps.
#pragma once
#include "cpu/kernel_family.h"

#define RECA_SAMPLING_FNS(PRE, T)                                                              \
  /* probs: [rows, V] ← logits: [rows, V]; p_j as above (0 for filtered entries) */          \
  PRE void sampling_probs(T* probs, const T* logits, T temperature, int64_t top_k,            \
                          int64_t rows, int64_t V);                                           \
  /* ids: int32 [rows], probs: [rows] (p_id; may be null) ← logits: [rows, V],               \
     u: [rows] (unused when temperature == 0) */                                              \
  PRE void sample_categorical(int32_t* ids, T* probs, const T* logits, const T* u,            \
                              T temperature, int64_t top_k, int64_t rows, int64_t V);         \
  /* out = uncond + scale·(cond − uncond); out, cond, uncond: [n] (out may alias either) */   \
  PRE void cfg_combine(T* out, const T* cond, const T* uncond, T scale, int64_t n);           \
  /* tokens_out: int32 [B, N], mask_out: u8 [B, N] (1 = masked; may alias tokens / mask)      \
     ← tokens: int32 [B, N], mask: u8 [B, N], sampled: int32 [B, N], conf: [B, N] */         \
  PRE void maskgit_select(int32_t* tokens_out, uint8_t* mask_out, const int32_t* tokens,      \
                          const uint8_t* mask, const int32_t* sampled, const T* conf,         \
                          int32_t mask_id, int64_t step, int64_t total_steps, int64_t B,      \
                          int64_t N);                                                         \
  /* z ← z − dt·v (flow Euler step, SPEC uses dt = 1/T); z, v: [n] */                        \
  PRE void euler_step(T* z, const T* v, T dt, int64_t n);

RECA_DECLARE_KERNEL_FAMILY(RECA_SAMPLING_FNS)

namespace reca::cpu {
// floor(N·cos(π/2·(step+1)/total_steps)) in double as described above (>= 0):
// how many positions stay masked after MaskGIT step `step` of a full schedule.
int64_t maskgit_remask_count(int64_t N, int64_t step, int64_t total_steps);
}  // namespace reca::cpu
