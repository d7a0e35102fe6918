#include "cpu/time_embed.h"

#include "core/threadpool.h"
#include "cpu/simd.h"

namespace reca::cpu::RECA_ISA_NS {

// t: [B] -> out: [B, 256]; double math, rounded once (see the header).
void time_embed_forward(float* out, const float* t, int64_t B) {
  parallel_for(B, 4, [&](int64_t b0, int64_t b1) {
    const double ln1e4 = log(10000.0);
    for (int64_t b = b0; b < b1; ++b) {
      const double s = 1000.0 * static_cast<double>(t[b]);
      float* o = out + b * kTimeEmbedDim;
      for (int64_t k = 0; k < kTimeEmbedHalf; ++k) {
        const double f = exp(-ln1e4 * static_cast<double>(k) / static_cast<double>(kTimeEmbedHalf));
        const double a = s * f;
        o[k] = static_cast<float>(cos(a));
        o[kTimeEmbedHalf + k] = static_cast<float>(sin(a));
      }
    }
  });
}

}  // namespace reca::cpu::RECA_ISA_NS

#if RECA_ISA_LEVEL == 0
#include <cmath>

namespace reca::cpu::ref {

template <class T>
void time_embed_forward(T* out, const T* t, int64_t B) {
  const double ln1e4 = std::log(10000.0);
  for (int64_t b = 0; b < B; ++b) {
    const double s = 1000.0 * static_cast<double>(t[b]);
    for (int64_t k = 0; k < kTimeEmbedHalf; ++k) {
      const double f = std::exp(-ln1e4 * static_cast<double>(k) / static_cast<double>(kTimeEmbedHalf));
      out[b * kTimeEmbedDim + k] = static_cast<T>(std::cos(s * f));
      out[b * kTimeEmbedDim + kTimeEmbedHalf + k] = static_cast<T>(std::sin(s * f));
    }
  }
}

}  // namespace reca::cpu::ref

RECA_INSTANTIATE_REF(RECA_TIME_EMBED_FNS)

namespace reca::cpu {
void time_embed_forward(float* out, const float* t, int64_t B) {
  RECA_DISPATCH(time_embed_forward, out, t, B);
}
}  // namespace reca::cpu
#endif
