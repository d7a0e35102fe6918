// IEEE binary16 (f16) and bfloat16 (bf16) <-> binary32 conversions, plain
// scalar code on bit patterns (no F16C, no compiler _Float16), so every build
// and every ISA level gives the same bits.
//
//   f32_to_f16 / f32_to_bf16   round to nearest, ties to even; overflow -> ±inf;
//                              f16 subnormals produced exactly; NaN stays NaN
//                              (sign and top payload bits kept, quiet bit set)
//   f16_to_f32 / bf16_to_f32   exact (every 16-bit value is a float); NaN payloads kept
//
// The functions are `static inline`: each translation unit keeps its own copy,
// so a copy compiled with AVX-512 flags can never be the one a scalar build links.
#pragma once
#include <stdint.h>
#include <string.h>

namespace reca {

static inline uint32_t float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}
static inline float bits_float(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static inline uint16_t f32_to_f16(float f) {
  const uint32_t x = float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) {  // inf or NaN
    if (a == 0x7f800000u) return sign | 0x7c00u;
    return static_cast<uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  }
  // 65520 = 65504 + half an f16 ulp: ties to even go up (65504's mantissa is odd).
  if (a >= 0x477ff000u) return sign | 0x7c00u;
  if (a >= 0x38800000u) {  // normal f16 range (>= 2^-14): rebias 127 -> 15
    uint32_t h = (a - 0x38000000u) >> 13;
    const uint32_t rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // carry may bump the exponent: correct
    return static_cast<uint16_t>(sign | h);
  }
  // Subnormal f16: value / 2^-24, rounded. At or below 2^-25 (the tie with 0) -> ±0.
  if (a <= 0x33000000u) return sign;
  const uint32_t e = a >> 23;                         // 102..112 here
  const uint32_t mant = (a & 0x7fffffu) | 0x800000u;  // 24-bit significand
  const uint32_t shift = 126u - e;                    // 14..24
  uint32_t q = mant >> shift;
  const uint32_t rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (q & 1u))) ++q;  // q == 0x400 is the smallest normal: correct
  return static_cast<uint16_t>(sign | q);
}

static inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1fu) return bits_float(sign | 0x7f800000u | (m << 13));  // inf / NaN (payload kept)
  if (e != 0) return bits_float(sign | ((e + 112u) << 23) | (m << 13));
  if (m == 0) return bits_float(sign);
  // Subnormal: m · 2^-24, normalised into a float.
  int shift = 0;
  uint32_t mm = m;
  while (!(mm & 0x400u)) mm <<= 1, ++shift;
  return bits_float(sign | ((113u - static_cast<uint32_t>(shift)) << 23) | ((mm & 0x3ffu) << 13));
}

static inline uint16_t f32_to_bf16(float f) {
  const uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  // Ties to even; a carry out of the mantissa rounds up the exponent, and into
  // inf from the largest finite values, as round-to-nearest requires.
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

static inline float bf16_to_f32(uint16_t h) { return bits_float(static_cast<uint32_t>(h) << 16); }

}  // namespace reca
