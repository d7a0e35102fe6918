// Vector quantisation for the VQ tokenizer (SPEC §3).
//
// Nearest code: codes[i] = argmin_k ‖z_i − e_k‖², ties to the lowest k. The
// distance that decides is the "canonical" one: d_k = Σ_c (z_c − e_kc)² with
// every operation in double (differences, squares, then a sum in order
// c = 0..C−1, no fused multiply-add). The fast kernels scan in fp32 and
// re-check in canonical double every code whose fp32 distance is within the
// fp32 error bound of the best, so they return exactly the reference's code
// on every input, near ties and duplicate codebook rows included.
//
// Loss (means over n·C elements, e = codebook[codes[i]]):
//   loss_codebook = mean (sg(z) − e)²          loss_commit = 0.25 · mean (z − sg(e))²
// Backward, given the upstream scales of the two loss terms (normally the
// tokenizer's loss weights, 1 and 1):
//   dcodebook[codes[i]] += scale_codebook · 2 (e − z_i) / (n·C)
//   dz_i                += scale_commit · 0.5 (z_i − e) / (n·C)  + dz_q_i
// The last term is the straight-through estimator: the decoder reads
// z_q = z + sg(e − z), whose value is e (vq_gather) and whose gradient passes to
// z unchanged. Gradient outputs accumulate (+=); any of them may be null.
//
// Preconditions: finite inputs; 0 <= codes[i] < K; K < 2^24; n, K, C >= 1.
#pragma once
#include "cpu/kernel_family.h"

#define RECA_VQ_FNS(PRE, T)                                                                   \
  /* codes: int32 [n] ← z: [n, C], codebook: [K, C] */                                        \
  PRE void vq_nearest(int32_t* codes, const T* z, const T* codebook, int64_t n, int64_t K,    \
                      int64_t C);                                                            \
  /* out: [n, C] = codebook[codes[i]]; codebook: [K, C], codes: [n] */                       \
  PRE void vq_gather(T* out, const int32_t* codes, const T* codebook, int64_t n, int64_t C);  \
  /* loss_codebook, loss_commit: scalars; z: [n, C], codebook: [K, C], codes: [n] */         \
  PRE void vq_loss_forward(T* loss_codebook, T* loss_commit, const T* z, const T* codebook,   \
                           const int32_t* codes, int64_t n, int64_t C);                      \
  /* dz: [n, C] (+=, may be null), dcodebook: [K, C] (+=, may be null), dz_q: [n, C] (may be  \
     null: no gradient from the decoder); z: [n, C], codebook: [K, C], codes: [n] */          \
  PRE void vq_loss_backward(T* dz, T* dcodebook, const T* dz_q, const T* z, const T* codebook, \
                            const int32_t* codes, T scale_codebook, T scale_commit, int64_t n, \
                            int64_t K, int64_t C);

RECA_DECLARE_KERNEL_FAMILY(RECA_VQ_FNS)

namespace reca::cpu {
// Codebook usage for dead-code restart bookkeeping: counts[codes[i]] += 1.
// counts: int64 [K] (accumulates, so one buffer can count over many batches),
// codes: int32 [n] with 0 <= codes[i] < K. Integer work, one plain version.
void vq_count_codes(int64_t* counts, const int32_t* codes, int64_t n);
}  // namespace reca::cpu
