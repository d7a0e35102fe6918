// The thread pool's contract (core/threadpool.h): ranges cover [0, n) once,
// their boundaries depend only on n, grain and the thread count (never on
// which thread claimed which range), nested regions run inline, and a long
// run of back-to-back regions (the training step's pattern) loses no range.
#include <algorithm>
#include <atomic>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/threadpool.h"
#include "tests/testing.h"

namespace reca::test {
namespace {

struct ThreadCountScope {
  int saved = num_threads();
  ~ThreadCountScope() { set_num_threads(saved); }
};

}  // namespace

RECA_TEST(threadpool_ranges_cover_once_with_fixed_boundaries) {
  ThreadCountScope scope;
  for (int threads : {1, 2, 3, 4}) {
    set_num_threads(threads);
    for (int64_t n : {1, 2, 5, 64, 1000, 4097}) {
      for (int64_t grain : {1, 7, 256, 5000}) {
        std::mutex m;
        std::vector<std::pair<int64_t, int64_t>> seen;
        for (int rep = 0; rep < 50; ++rep) {
          seen.clear();
          parallel_for(n, grain, [&](int64_t b, int64_t e) {
            std::lock_guard<std::mutex> lk(m);
            seen.push_back({b, e});
          });
          std::sort(seen.begin(), seen.end());
          // Expected split: min(threads, ceil(n / grain)) ranges at n·r / ranges.
          const int64_t ranges = std::min<int64_t>(threads, (n + grain - 1) / grain);
          bool ok = static_cast<int64_t>(seen.size()) == ranges;
          for (int64_t r = 0; ok && r < ranges; ++r)
            ok = seen[r].first == n * r / ranges && seen[r].second == n * (r + 1) / ranges;
          if (!ok) {
            report_failure("threads " + std::to_string(threads) + " n " + std::to_string(n) +
                           " grain " + std::to_string(grain) + ": ranges differ from the fixed split");
            break;
          }
        }
      }
    }
  }
}

RECA_TEST(threadpool_back_to_back_regions_lose_no_range) {
  ThreadCountScope scope;
  for (int threads : {2, 3, 4}) {
    set_num_threads(threads);
    // Regions of very different lengths a few microseconds apart, so ranges are
    // claimed by whichever thread gets there first, and workers sleep between bursts.
    std::vector<std::atomic<int>> hits(4096);
    int64_t expected = 0;
    for (int rep = 0; rep < 20000; ++rep) {
      const int64_t n = 1 + (rep * 7919) % 4096;
      parallel_for(n, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1, std::memory_order_relaxed);
      });
      expected += n;
    }
    int64_t total = 0;
    for (auto& h : hits) total += h.load();
    expect_true(total == expected, "threads " + std::to_string(threads) + ": every item ran exactly once");
  }
}

RECA_TEST(threadpool_nested_region_runs_inline) {
  ThreadCountScope scope;
  set_num_threads(2);
  std::atomic<int> inner_ranges{0}, outer_ranges{0};
  parallel_for(2, 1, [&](int64_t, int64_t) {
    outer_ranges.fetch_add(1);
    parallel_for(100, 1, [&](int64_t b, int64_t e) {
      inner_ranges.fetch_add(1);
      expect_true(b == 0 && e == 100, "a nested region is one inline range");
    });
  });
  expect_true(outer_ranges.load() == 2 && inner_ranges.load() == 2, "two outer ranges, each with one inner range");
}

RECA_TEST(threadpool_sum_blocks_same_for_any_thread_count) {
  ThreadCountScope scope;
  std::vector<float> x(100003);
  Rand rng(7);
  rng.fill_normal(x.data(), static_cast<int64_t>(x.size()));
  // Closed form of the block rule: partials of 1000 items, each summed in order,
  // added in block order.
  double want = 0.0;
  for (size_t b0 = 0; b0 < x.size(); b0 += 1000) {
    double s = 0.0;
    for (size_t i = b0; i < std::min(x.size(), b0 + 1000); ++i) s += x[i];
    want += s;
  }
  for (int threads : {1, 2, 3, 4}) {
    set_num_threads(threads);
    const double got = parallel_sum_blocks(static_cast<int64_t>(x.size()), 1000, [&](int64_t b, int64_t e) {
      double s = 0.0;
      for (int64_t i = b; i < e; ++i) s += x[i];
      return s;
    });
    expect_true(got == want, "threads " + std::to_string(threads) + ": block sum bitwise equal");
  }
}

RECA_TEST(threadpool_resize_between_regions) {
  ThreadCountScope scope;
  std::vector<std::atomic<int>> hits(1000);
  for (int rep = 0; rep < 200; ++rep) {
    set_num_threads(1 + rep % 4);
    parallel_for(1000, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
    });
  }
  bool ok = true;
  for (auto& h : hits) ok = ok && h.load() == 200;
  expect_true(ok, "every item ran once per region across resizes");
}

}  // namespace reca::test
