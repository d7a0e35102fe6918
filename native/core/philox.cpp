#include "core/philox.h"

#include "core/threadpool.h"

namespace reca {

namespace {
// Elements per task: big enough to amortise the pool, small enough to spread.
constexpr int64_t kGrain = 4096;
}  // namespace

void philox_fill_uniform(uint64_t seed, uint64_t stream, float* out, int64_t n, uint64_t offset) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    int64_t k = b;
    // Whole aligned blocks of 4 draws share one Philox call.
    while (k < e && ((offset + k) & 3) != 0) {
      out[k] = philox_uniform(seed, stream, offset + k);
      ++k;
    }
    for (; k + 4 <= e; k += 4) {
      uint32_t w[4];
      philox_block(seed, stream, (offset + k) >> 2, w);
      for (int j = 0; j < 4; ++j) out[k + j] = philox_bits_to_uniform(w[j]);
    }
    for (; k < e; ++k) out[k] = philox_uniform(seed, stream, offset + k);
  });
}

void philox_fill_normal(uint64_t seed, uint64_t stream, float* out, int64_t n, uint64_t offset) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    int64_t k = b;
    if (k < e && ((offset + k) & 1) != 0) {
      out[k] = philox_normal(seed, stream, offset + k);
      ++k;
    }
    // Normals 2j and 2j+1 use the four words of block j.
    for (; k + 2 <= e; k += 2) {
      uint32_t w[4];
      philox_block(seed, stream, (offset + k) >> 1, w);
      out[k] = philox_box_muller(philox_bits_to_uniform(w[0]), philox_bits_to_uniform(w[1]));
      out[k + 1] = philox_box_muller(philox_bits_to_uniform(w[2]), philox_bits_to_uniform(w[3]));
    }
    if (k < e) out[k] = philox_normal(seed, stream, offset + k);
  });
}

}  // namespace reca
