// Sinusoidal timestep features (SPEC §4), the input of gen.t_embed:
//   s = 1000·t,  f_k = exp(−ln(10000)·k/128),
//   e = [cos(s·f_k)]_{k<128} ++ [sin(s·f_k)]_{k<128}
//   time_embed_forward  t: [B] -> out: [B, 256]
// The arguments reach 1000 rad, where float cos/sin lose digits, so s·f_k and
// cos/sin are evaluated in double and rounded to float once: any backend that
// does the same gets the same bits. This is not a hot kernel, so the fast path
// is the same scalar double code at every ISA level.
// No backward: t is sampled, not learned (the fc1/fc2 layers after it are
// ordinary Linear + GELU).
// Preconditions: B >= 0; out does not overlap t.
#pragma once
#include "cpu/kernel_family.h"

namespace reca::cpu {
constexpr int64_t kTimeEmbedHalf = 128;                 // frequencies
constexpr int64_t kTimeEmbedDim = 2 * kTimeEmbedHalf;  // features per sample (256)
}  // namespace reca::cpu

#define RECA_TIME_EMBED_FNS(PRE, T) \
  PRE void time_embed_forward(T* out, const T* t, int64_t B);

RECA_DECLARE_KERNEL_FAMILY(RECA_TIME_EMBED_FNS)
