#include "core/threadpool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "core/error.h"

namespace reca {
namespace {

thread_local bool t_inside_pool_task = false;

// How long an idle worker keeps polling for the next job before it sleeps. A step
// runs hundreds of parallel regions a few microseconds apart; waking a sleeping
// worker is a futex call plus a reschedule (tens of microseconds in a VM), so a
// worker that has just finished waits here first.
constexpr std::chrono::microseconds kSpinFor{200};

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// RECA_THREADS=n sets the starting thread count (1..256); otherwise one per
// hardware thread.
int initial_threads() {
  if (const char* env = std::getenv("RECA_THREADS")) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && n >= 1 && n <= 256) return static_cast<int>(n);
  }
  return std::max(1, std::min(hardware_threads(), 256));
}

class ThreadPool {
 public:
  ThreadPool() : threads_(initial_threads()) { start(threads_.load()); }
  ~ThreadPool() { stop(); }

  int threads() const { return threads_; }

  void resize(int n) {
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    stop();
    threads_ = n;
    start(n);
  }

  void run(int64_t n, int64_t grain, RangeFn fn, void* ctx) {
    if (n <= 0) return;
    grain = std::max<int64_t>(grain, 1);
    const int64_t max_ranges = (n + grain - 1) / grain;
    if (max_ranges <= 1 || t_inside_pool_task) {
      fn(ctx, 0, n);
      return;
    }
    // One parallel region at a time; threads_ is read under the same lock that
    // resize() holds, so a job is never split into more ranges than workers.
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    const int ranges = static_cast<int>(std::min<int64_t>(threads_.load(), max_ranges));
    if (ranges <= 1) {
      fn(ctx, 0, n);
      return;
    }
    bool sleeping;
    {
      std::lock_guard<std::mutex> lk(mutex_);
      job_ = Job{n, ranges, fn, ctx};
      pending_.store(ranges - 1, std::memory_order_relaxed);
      ++generation_;
      published_.store(generation_, std::memory_order_release);
      sleeping = sleepers_ > 0;
    }
    if (sleeping) wake_.notify_all();  // spinning workers see published_ without a syscall
    run_range(0);
    // Short spin, then sleep until the workers finish.
    for (int spin = 0; spin < 20000 && pending_.load(std::memory_order_acquire) > 0; ++spin) {
    }
    std::unique_lock<std::mutex> lk(mutex_);
    done_.wait(lk, [&] { return pending_.load(std::memory_order_acquire) == 0; });
  }

 private:
  struct Job {
    int64_t n = 0;
    int ranges = 0;
    RangeFn fn = nullptr;
    void* ctx = nullptr;
  };

  void run_range(int r) {
    const int64_t b = job_.n * r / job_.ranges, e = job_.n * (r + 1) / job_.ranges;
    const bool was = t_inside_pool_task;
    t_inside_pool_task = true;
    job_.fn(job_.ctx, b, e);
    t_inside_pool_task = was;
  }

  // `seen` starts at the generation current when the worker was created, so a
  // worker started by resize() never re-runs the job that finished before it.
  void worker(int index, uint64_t seen) {
    for (;;) {
      const auto until = std::chrono::steady_clock::now() + kSpinFor;
      for (int i = 1; published_.load(std::memory_order_acquire) == seen; ++i) {
        cpu_relax();
        if (i % 64 == 0 && std::chrono::steady_clock::now() > until) break;
      }
      {
        std::unique_lock<std::mutex> lk(mutex_);
        ++sleepers_;
        wake_.wait(lk, [&] { return quit_ || generation_ != seen; });
        --sleepers_;
        if (quit_) return;
        seen = generation_;
        if (index >= job_.ranges) continue;
      }
      run_range(index);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lk(mutex_);
        done_.notify_all();
      }
    }
  }

  void start(int n) {
    quit_ = false;
    const uint64_t gen = generation_;
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, i, gen] { worker(i, gen); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(mutex_);
      quit_ = true;
      ++generation_;  // ends any worker's spin; quit_ then ends its loop
      published_.store(generation_, std::memory_order_release);
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  std::atomic<int> threads_;
  std::mutex run_mutex_, mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  Job job_;
  std::atomic<int> pending_{0};
  uint64_t generation_ = 0;            // guarded by mutex_
  std::atomic<uint64_t> published_{0};  // generation_, readable without the lock
  int sleepers_ = 0;                    // workers waiting on wake_, guarded by mutex_
  bool quit_ = false;
};

ThreadPool& pool() {
  static ThreadPool p;
  return p;
}

}  // namespace

int hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

int num_threads() { return pool().threads(); }

void set_num_threads(int n) {
  RECA_CHECK(n >= 1 && n <= 256, InvalidArgument,
             "thread count must be between 1 and 256, got %d", n);
  if (n != pool().threads()) pool().resize(n);
}

void parallel_for_raw(int64_t n, int64_t grain, RangeFn fn, void* ctx) {
  pool().run(n, grain, fn, ctx);
}

}  // namespace reca
