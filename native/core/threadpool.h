// A persistent thread pool for the CPU kernels.
//
// Determinism rule: parallel_for splits [0, n) into contiguous ranges, and a
// kernel must compute each output element entirely inside the range that owns
// it (no cross-range reductions). Reductions that span ranges go through
// fixed-size blocks (parallel_sum_blocks) whose partials are combined in block
// order, so results are bitwise identical for any thread count.
#pragma once
#include <cstdint>
#include <type_traits>

namespace reca {

int num_threads();
// n >= 1; values above the core count are allowed (clamped to 256).
void set_num_threads(int n);
// Hardware threads the OS reports (used for the default thread count).
int hardware_threads();

using RangeFn = void (*)(void* ctx, int64_t begin, int64_t end);

// Calls fn(ctx, begin, end) over disjoint ranges covering [0, n); ranges hold
// at least `grain` items (except the last). Runs inline when called from
// inside a pool task or when one range suffices.
void parallel_for_raw(int64_t n, int64_t grain, RangeFn fn, void* ctx);

template <class F>
inline void parallel_for(int64_t n, int64_t grain, F&& f) {
  using Fn = typename std::remove_reference<F>::type;
  parallel_for_raw(
      n, grain,
      [](void* ctx, int64_t b, int64_t e) { (*static_cast<Fn*>(ctx))(b, e); },
      const_cast<void*>(static_cast<const void*>(&f)));
}

// Sums f(begin, end) over fixed blocks of `block` items, partials added in
// block order: the result does not depend on the thread count.
template <class F>
inline double parallel_sum_blocks(int64_t n, int64_t block, F&& f) {
  if (n <= 0) return 0.0;
  const int64_t blocks = (n + block - 1) / block;
  double* partial = new double[blocks];
  parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t e = (b + 1) * block < n ? (b + 1) * block : n;
      partial[b] = f(b * block, e);
    }
  });
  double total = 0.0;
  for (int64_t b = 0; b < blocks; ++b) total += partial[b];
  delete[] partial;
  return total;
}

}  // namespace reca
