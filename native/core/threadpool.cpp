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

// How long an idle worker keeps polling for the next job (and the caller for
// the workers' last ranges) before it sleeps. A step runs dozens of parallel
// regions a few microseconds apart; waking a sleeping thread is a futex call
// plus a reschedule (tens of microseconds in a VM), so a thread that has just
// finished waits here first.
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

// A job is split into `ranges` fixed ranges (the split depends only on n, grain
// and the thread count, never on timing). The caller and the workers claim
// ranges from one atomic counter until none is left, so a worker that is late
// (descheduled, or still waking up) costs nothing: the caller runs its range.
// Dispatch and completion take no lock while the threads are spinning; the
// mutex and condition variables are only for a thread that has gone to sleep.
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
    job_ = Job{n, ranges, fn, ctx};
    pending_.store(ranges, std::memory_order_relaxed);
    const uint64_t gen = ++generation_;
    claim_.store(pack_claim(gen, ranges, 0), std::memory_order_release);
    published_.store(gen, std::memory_order_seq_cst);
    // Spinning workers see published_ without a syscall; only sleepers need the
    // condition variable (sleepers_ and published_ are a Dekker pair: a worker
    // counts itself, then re-reads published_ before it sleeps).
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lk(mutex_);
      wake_.notify_all();
    }
    run_claimed(gen);
    if (pending_.load(std::memory_order_acquire) == 0) return;
    // The workers hold the last ranges: spin a while, then sleep until done.
    const auto until = std::chrono::steady_clock::now() + kSpinFor;
    for (int i = 1; pending_.load(std::memory_order_acquire) > 0; ++i) {
      cpu_relax();
      if (i % 64 == 0 && std::chrono::steady_clock::now() > until) break;
    }
    if (pending_.load(std::memory_order_acquire) == 0) return;
    caller_sleeping_.store(true, std::memory_order_seq_cst);
    {
      std::unique_lock<std::mutex> lk(mutex_);
      done_.wait(lk, [&] { return pending_.load(std::memory_order_seq_cst) == 0; });
    }
    caller_sleeping_.store(false, std::memory_order_relaxed);
  }

 private:
  struct Job {
    int64_t n = 0;
    int ranges = 0;
    RangeFn fn = nullptr;
    void* ctx = nullptr;
  };

  // claim_ packs the job's generation (low 32 bits), its range count and the
  // next unclaimed range, so a claim can never take a range of another job.
  static uint64_t pack_claim(uint64_t gen, int ranges, int next) {
    return (gen & 0xffffffffu) << 32 | static_cast<uint64_t>(ranges) << 16 |
           static_cast<uint64_t>(next);
  }

  // Runs ranges of job `gen` until none is left unclaimed. job_ is read only
  // after a successful claim: the job cannot finish (and be replaced) while a
  // claimed range of it is still running.
  void run_claimed(uint64_t gen) {
    uint64_t c = claim_.load(std::memory_order_acquire);
    for (;;) {
      const int ranges = static_cast<int>(c >> 16 & 0xffff), next = static_cast<int>(c & 0xffff);
      if (c >> 32 != (gen & 0xffffffffu) || next >= ranges) return;
      if (!claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel,
                                        std::memory_order_acquire))
        continue;
      run_range(next);
      if (pending_.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
          caller_sleeping_.load(std::memory_order_seq_cst)) {
        std::lock_guard<std::mutex> lk(mutex_);
        done_.notify_all();
      }
      c = claim_.load(std::memory_order_acquire);
    }
  }

  void run_range(int r) {
    const int64_t b = job_.n * r / job_.ranges, e = job_.n * (r + 1) / job_.ranges;
    const bool was = t_inside_pool_task;
    t_inside_pool_task = true;
    job_.fn(job_.ctx, b, e);
    t_inside_pool_task = was;
  }

  // `seen` starts at the generation current when the worker was created, so a
  // worker started by resize() never looks at the job that finished before it.
  void worker(uint64_t seen) {
    for (;;) {
      const auto until = std::chrono::steady_clock::now() + kSpinFor;
      for (int i = 1; published_.load(std::memory_order_acquire) == seen; ++i) {
        cpu_relax();
        if (i % 64 == 0 && std::chrono::steady_clock::now() > until) break;
      }
      if (published_.load(std::memory_order_acquire) == seen) {
        std::unique_lock<std::mutex> lk(mutex_);
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        wake_.wait(lk, [&] { return published_.load(std::memory_order_seq_cst) != seen; });
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
      }
      seen = published_.load(std::memory_order_acquire);
      if (quit_.load(std::memory_order_acquire)) return;
      run_claimed(seen);
    }
  }

  void start(int n) {
    quit_.store(false, std::memory_order_relaxed);
    const uint64_t gen = generation_;
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, gen] { worker(gen); });
  }

  void stop() {
    quit_.store(true, std::memory_order_release);
    published_.store(++generation_, std::memory_order_seq_cst);  // ends every wait; quit_ then ends the loop
    {
      std::lock_guard<std::mutex> lk(mutex_);
      wake_.notify_all();
    }
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  std::atomic<int> threads_;
  std::mutex run_mutex_, mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  Job job_;                              // written by the caller before claim_ is published
  uint64_t generation_ = 0;              // the caller's job counter (under run_mutex_)
  std::atomic<uint64_t> published_{0};   // generation_ of the newest job (or of stop())
  std::atomic<uint64_t> claim_{0};       // pack_claim(generation, ranges, next range)
  std::atomic<int> pending_{0};          // ranges of the current job not yet finished
  std::atomic<int> sleepers_{0};         // workers waiting on wake_
  std::atomic<bool> caller_sleeping_{false};  // the caller waits on done_
  std::atomic<bool> quit_{false};
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
