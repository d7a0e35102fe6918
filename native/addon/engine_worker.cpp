#include "addon/engine_worker.h"

#include <future>

#include "addon/errors.h"
#include "core/mpi_loader.h"

namespace reca::addon {

EngineWorker::~EngineWorker() { Shutdown(); }

void EngineWorker::Start(Napi::Env env) {
  env_ = env;
  tsfn_ = Tsfn::New(env, "reca-engine", 0, 1, this);
  tsfn_.Unref(env);  // an idle engine does not keep the process alive
  thread_ = std::thread([this] { Loop(); });
  started_ = true;
  // Added after the TSFN exists so it runs before the TSFN is torn down.
  napi_add_env_cleanup_hook(env, CleanupHook, this);
  hook_added_ = true;
}

Napi::Promise EngineWorker::Submit(Napi::Env env, std::unique_ptr<Job> job, Napi::Object owner) {
  if (!started_) Start(env);
  auto entry = std::make_unique<Entry>(env, std::move(job));
  if (!owner.IsEmpty()) entry->owner = Napi::Persistent(owner);
  Napi::Promise promise = entry->deferred.Promise();
  if (in_flight_++ == 0) tsfn_.Ref(env);  // keep the loop alive until it settles
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(entry.release());
  }
  wake_.notify_one();
  return promise;
}

namespace {
class SyncJob : public EngineWorker::Job {
 public:
  explicit SyncJob(std::function<void()> fn) : fn_(std::move(fn)) {}
  std::future<void> future() { return done_.get_future(); }
  void Execute() override {
    try {
      fn_();
      done_.set_value();
    } catch (...) {
      done_.set_exception(std::current_exception());
    }
  }
  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }

 private:
  std::function<void()> fn_;
  std::promise<void> done_;
};
}  // namespace

void EngineWorker::RunSync(Napi::Env env, std::function<void()> fn) {
  auto job = std::make_unique<SyncJob>(std::move(fn));
  std::future<void> done = job->future();
  // Never blocks on the JS thread's turn: deliveries queue without limit.
  Submit(env, std::move(job), Napi::Object());
  done.get();
}

void EngineWorker::Loop() {
  for (;;) {
    Entry* entry;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return quit_ || !queue_.empty(); });
      if (quit_) break;
      entry = queue_.front();
      queue_.pop_front();
    }
    try {
      entry->job->Execute();
    } catch (...) {
      entry->error = std::current_exception();
    }
    if (tsfn_.BlockingCall(entry) != napi_ok) {
      std::lock_guard<std::mutex> lock(mutex_);
      orphans_.push_back(entry);  // the environment is closing; nobody to tell
    }
  }
  // MPI must end on the thread that started it (this one, when it did).
  mpi::finalize_if_owner();
  tsfn_.Release();
}

void EngineWorker::Deliver(Napi::Env env, Napi::Function, EngineWorker* self, Entry* entry) {
  std::unique_ptr<Entry> owned(entry);
  if (env == nullptr) return;  // torn down with the environment
  if (--self->in_flight_ == 0) self->tsfn_.Unref(env);
  Napi::HandleScope scope(env);
  try {
    if (entry->error) {
      entry->deferred.Reject(error_from_exception(env, entry->error).Value());
    } else {
      entry->deferred.Resolve(entry->job->Result(env));
    }
  } catch (const Napi::Error& e) {
    entry->deferred.Reject(e.Value());
  } catch (...) {
    try {
      entry->deferred.Reject(error_from_exception(env, std::current_exception()).Value());
    } catch (...) {
      // Nothing left to report through; the promise stays pending.
    }
  }
}

void EngineWorker::CleanupHook(void* self) {
  auto* worker = static_cast<EngineWorker*>(self);
  worker->hook_added_ = false;
  worker->Shutdown();
}

void EngineWorker::Shutdown() {
  if (!started_) return;
  started_ = false;
  if (hook_added_) {
    napi_remove_env_cleanup_hook(env_, CleanupHook, this);
    hook_added_ = false;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    quit_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  // Jobs that never ran, and results nobody could receive: their promises can
  // no longer settle, so just free them (here, on the JS thread, where their
  // references may be deleted).
  for (Entry* entry : queue_) delete entry;
  for (Entry* entry : orphans_) delete entry;
  queue_.clear();
  orphans_.clear();
}

}  // namespace reca::addon
