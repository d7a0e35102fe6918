#include "cpu/image.h"

#include "core/threadpool.h"
#include "cpu/simd.h"

namespace reca::cpu::RECA_ISA_NS {
namespace {
constexpr int64_t kC = 3;  // channels (SPEC §0)

// y[0:n] (+)= x[0:n]
inline void put_row(float* y, const float* x, int64_t n, bool accumulate) {
  if (!accumulate) {
    memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  for (int64_t c = 0; c < n; c += Vec::W) {
    const int m = static_cast<int>(imin(Vec::W, n - c));
    (Vec::load_tail(y + c, m) + Vec::load_tail(x + c, m)).store_tail(y + c, m);
  }
}

// One token's P rows are P contiguous runs of 3·P floats in the image; each task
// owns whole tokens, i.e. disjoint pixels, in either direction.
void move_patches(float* dst, const float* src, int64_t B, int64_t S, int64_t P, bool to_tokens,
                  bool accumulate) {
  const int64_t G = S / P, run = kC * P;
  parallel_for(B * G * G, imax(1, 4096 / (run * P)), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / (G * G), py = (t / G) % G, px = t % G;
      for (int64_t i = 0; i < P; ++i) {
        const int64_t pix = ((b * S + py * P + i) * S + px * P) * kC, tok = (t * P + i) * run;
        if (to_tokens)
          put_row(dst + tok, src + pix, run, accumulate);
        else
          put_row(dst + pix, src + tok, run, accumulate);
      }
    }
  });
}
}  // namespace

void patchify_forward(float* tokens, const float* img, int64_t B, int64_t S, int64_t P) {
  move_patches(tokens, img, B, S, P, true, false);
}
void patchify_backward(float* dimg, const float* dtokens, int64_t B, int64_t S, int64_t P) {
  move_patches(dimg, dtokens, B, S, P, false, true);
}
void unpatchify_forward(float* img, const float* tokens, int64_t B, int64_t S, int64_t P) {
  move_patches(img, tokens, B, S, P, false, false);
}
void unpatchify_backward(float* dtokens, const float* dimg, int64_t B, int64_t S, int64_t P) {
  move_patches(dtokens, dimg, B, S, P, true, true);
}

// Per output row: the row itself accumulates the f×f block sums in the
// reference's order (i, then j), then is divided by f².
void avgpool_forward(float* out, const float* img, int64_t B, int64_t S, int64_t f) {
  const int64_t So = S / f, rowlen = So * kC;
  const float area = static_cast<float>(f * f);
  parallel_for(B * So, imax(1, 4096 / (S * kC * f)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* o = out + r * rowlen;
      for (int64_t k = 0; k < rowlen; ++k) o[k] = 0.0f;
      for (int64_t i = 0; i < f; ++i) {
        const float* x = img + (r * f + i) * S * kC;  // input row oy·f + i of sample b
        for (int64_t ox = 0; ox < So; ++ox)
          for (int64_t j = 0; j < f; ++j)
            for (int64_t c = 0; c < kC; ++c) o[ox * kC + c] += x[(ox * f + j) * kC + c];
      }
      const Vec va = Vec::set1(area);
      for (int64_t k = 0; k < rowlen; k += Vec::W) {
        const int m = static_cast<int>(imin(Vec::W, rowlen - k));
        (Vec::load_tail(o + k, m) / va).store_tail(o + k, m);
      }
    }
  });
}

void avgpool_backward(float* dimg, const float* dout, int64_t B, int64_t S, int64_t f) {
  const int64_t So = S / f;
  const float area = static_cast<float>(f * f);
  parallel_for(B * S, imax(1, 4096 / (S * kC)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {  // input row y = r % S of sample b = r / S
      const float* g = dout + ((r / S) * So + (r % S) / f) * So * kC;
      float* d = dimg + r * S * kC;
      for (int64_t x = 0; x < S; ++x)
        for (int64_t c = 0; c < kC; ++c) d[x * kC + c] += g[(x / f) * kC + c] / area;
    }
  });
}

// Bytes have no lanes in Vec; these plain loops vectorise well enough and keep
// the arithmetic identical to the reference.
void image_from_bytes(float* out, const uint8_t* in, int64_t n) {
  parallel_for(n, 16384, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) out[k] = static_cast<float>(in[k]) / 127.5f - 1.0f;
  });
}

void image_to_bytes(uint8_t* out, const float* in, int64_t n) {
  parallel_for(n, 16384, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      float v = (in[k] + 1.0f) * 127.5f;
      v = v > 0.0f ? v : 0.0f;  // also NaN -> 0
      v = v < 255.0f ? v : 255.0f;
      out[k] = static_cast<uint8_t>(nearbyintf(v));  // ties to even (default rounding mode)
    }
  });
}

}  // namespace reca::cpu::RECA_ISA_NS

#if RECA_ISA_LEVEL == 0
#include <cmath>

namespace reca::cpu::ref {
namespace {
// Index of img[b][y][x][c] and of the token element that holds it.
inline int64_t pixel_index(int64_t b, int64_t y, int64_t x, int64_t c, int64_t S) {
  return ((b * S + y) * S + x) * 3 + c;
}
inline int64_t token_index(int64_t b, int64_t y, int64_t x, int64_t c, int64_t S, int64_t P) {
  const int64_t G = S / P, py = y / P, px = x / P, i = y % P, j = x % P;
  return ((b * G + py) * G + px) * 3 * P * P + (i * P + j) * 3 + c;
}
}  // namespace

template <class T>
void patchify_forward(T* tokens, const T* img, int64_t B, int64_t S, int64_t P) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t y = 0; y < S; ++y)
      for (int64_t x = 0; x < S; ++x)
        for (int64_t c = 0; c < 3; ++c) tokens[token_index(b, y, x, c, S, P)] = img[pixel_index(b, y, x, c, S)];
}

template <class T>
void patchify_backward(T* dimg, const T* dtokens, int64_t B, int64_t S, int64_t P) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t y = 0; y < S; ++y)
      for (int64_t x = 0; x < S; ++x)
        for (int64_t c = 0; c < 3; ++c) dimg[pixel_index(b, y, x, c, S)] += dtokens[token_index(b, y, x, c, S, P)];
}

template <class T>
void unpatchify_forward(T* img, const T* tokens, int64_t B, int64_t S, int64_t P) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t y = 0; y < S; ++y)
      for (int64_t x = 0; x < S; ++x)
        for (int64_t c = 0; c < 3; ++c) img[pixel_index(b, y, x, c, S)] = tokens[token_index(b, y, x, c, S, P)];
}

template <class T>
void unpatchify_backward(T* dtokens, const T* dimg, int64_t B, int64_t S, int64_t P) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t y = 0; y < S; ++y)
      for (int64_t x = 0; x < S; ++x)
        for (int64_t c = 0; c < 3; ++c) dtokens[token_index(b, y, x, c, S, P)] += dimg[pixel_index(b, y, x, c, S)];
}

template <class T>
void avgpool_forward(T* out, const T* img, int64_t B, int64_t S, int64_t f) {
  const int64_t So = S / f;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t oy = 0; oy < So; ++oy)
      for (int64_t ox = 0; ox < So; ++ox)
        for (int64_t c = 0; c < 3; ++c) {
          T s = 0;
          for (int64_t i = 0; i < f; ++i)
            for (int64_t j = 0; j < f; ++j) s += img[pixel_index(b, oy * f + i, ox * f + j, c, S)];
          out[((b * So + oy) * So + ox) * 3 + c] = s / T(f * f);
        }
}

template <class T>
void avgpool_backward(T* dimg, const T* dout, int64_t B, int64_t S, int64_t f) {
  const int64_t So = S / f;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t y = 0; y < S; ++y)
      for (int64_t x = 0; x < S; ++x)
        for (int64_t c = 0; c < 3; ++c)
          dimg[pixel_index(b, y, x, c, S)] += dout[((b * So + y / f) * So + x / f) * 3 + c] / T(f * f);
}

template <class T>
void image_from_bytes(T* out, const uint8_t* in, int64_t n) {
  for (int64_t k = 0; k < n; ++k) out[k] = T(in[k]) / T(127.5) - T(1);
}

template <class T>
void image_to_bytes(uint8_t* out, const T* in, int64_t n) {
  for (int64_t k = 0; k < n; ++k) {
    T v = (in[k] + T(1)) * T(127.5);
    if (!(v > T(0))) v = 0;  // also NaN
    if (v > T(255)) v = 255;
    out[k] = static_cast<uint8_t>(std::nearbyint(v));
  }
}

}  // namespace reca::cpu::ref

RECA_INSTANTIATE_REF(RECA_IMAGE_FNS)

namespace reca::cpu {
void patchify_forward(float* tokens, const float* img, int64_t B, int64_t S, int64_t P) {
  RECA_DISPATCH(patchify_forward, tokens, img, B, S, P);
}
void patchify_backward(float* dimg, const float* dtokens, int64_t B, int64_t S, int64_t P) {
  RECA_DISPATCH(patchify_backward, dimg, dtokens, B, S, P);
}
void unpatchify_forward(float* img, const float* tokens, int64_t B, int64_t S, int64_t P) {
  RECA_DISPATCH(unpatchify_forward, img, tokens, B, S, P);
}
void unpatchify_backward(float* dtokens, const float* dimg, int64_t B, int64_t S, int64_t P) {
  RECA_DISPATCH(unpatchify_backward, dtokens, dimg, B, S, P);
}
void avgpool_forward(float* out, const float* img, int64_t B, int64_t S, int64_t f) {
  RECA_DISPATCH(avgpool_forward, out, img, B, S, f);
}
void avgpool_backward(float* dimg, const float* dout, int64_t B, int64_t S, int64_t f) {
  RECA_DISPATCH(avgpool_backward, dimg, dout, B, S, f);
}
void image_from_bytes(float* out, const uint8_t* in, int64_t n) {
  RECA_DISPATCH(image_from_bytes, out, in, n);
}
void image_to_bytes(uint8_t* out, const float* in, int64_t n) {
  RECA_DISPATCH(image_to_bytes, out, in, n);
}
}  // namespace reca::cpu
#endif
