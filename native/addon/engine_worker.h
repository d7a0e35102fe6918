// The engine's own job thread for one device. Heavy work (benchmarks, training
// steps, sampling, checkpoint I/O) runs here: never on the event loop and
// never in the libuv pool, whose few threads fs and dns share.
//
// Submit() (JS thread) queues a job and returns a Promise; the thread runs
// jobs in order; the result is handed back through a ThreadSafeFunction and
// the Promise settles on the JS thread. A job holds a reference on its owner
// object while it is queued or running, so the owner cannot be collected under
// it. The thread starts on the first job and is joined by an environment
// cleanup hook (a Worker ending, or the process exiting).
#pragma once
#include <napi.h>

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace reca::addon {

class EngineWorker {
 public:
  class Job {
   public:
    virtual ~Job() = default;
    // Engine thread. May throw: the Promise is rejected with the matching RecaError.
    virtual void Execute() = 0;
    // JS thread, after Execute returned: the value the Promise resolves to.
    virtual Napi::Value Result(Napi::Env env) = 0;
  };

  EngineWorker() = default;
  ~EngineWorker();
  EngineWorker(const EngineWorker&) = delete;
  EngineWorker& operator=(const EngineWorker&) = delete;

  // JS thread. `owner` may be empty.
  Napi::Promise Submit(Napi::Env env, std::unique_ptr<Job> job, Napi::Object owner);
  // JS thread: runs `fn` on the engine thread after the jobs queued before it
  // and waits for it (rethrowing what it throws). For the few calls that must
  // happen on the engine thread before a constructor returns (MPI's start).
  void RunSync(Napi::Env env, std::function<void()> fn);
  // JS thread; idempotent. Waits for the running job, drops queued ones.
  void Shutdown();

 private:
  struct Entry {
    Entry(Napi::Env env, std::unique_ptr<Job> j) : job(std::move(j)), deferred(env) {}
    std::unique_ptr<Job> job;
    Napi::Promise::Deferred deferred;
    Napi::ObjectReference owner;
    std::exception_ptr error;
  };

  static void Deliver(Napi::Env env, Napi::Function, EngineWorker* self, Entry* entry);
  static void CleanupHook(void* self);
  using Tsfn = Napi::TypedThreadSafeFunction<EngineWorker, Entry, &EngineWorker::Deliver>;

  void Start(Napi::Env env);
  void Loop();

  napi_env env_ = nullptr;
  bool started_ = false;
  bool hook_added_ = false;
  size_t in_flight_ = 0;  // JS thread only: jobs submitted and not yet settled
  Tsfn tsfn_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Entry*> queue_;     // guarded by mutex_
  std::vector<Entry*> orphans_;  // finished after the TSFN closed; freed on the JS thread
  bool quit_ = false;            // guarded by mutex_
};

}  // namespace reca::addon
