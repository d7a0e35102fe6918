// benchKernels(options) -> Promise<records>: the kernel micro-benchmarks, run
// on the engine thread so the event loop stays free while they time.
#include <cmath>

#include "addon/addon.h"
#include "addon/errors.h"
#include "bench/kernel_bench.h"
#include "core/error.h"

namespace reca::addon {
namespace {

class BenchJob : public EngineWorker::Job {
 public:
  explicit BenchJob(bench::KernelBenchOptions options) : options_(std::move(options)) {}

  void Execute() override { records_ = bench::run_kernel_bench(options_); }

  Napi::Value Result(Napi::Env env) override {
    Napi::Array out = Napi::Array::New(env, records_.size());
    for (size_t i = 0; i < records_.size(); ++i) {
      const bench::KernelBenchRecord& r = records_[i];
      Napi::Object rec = Napi::Object::New(env);
      rec.Set("name", r.name);
      Napi::Array shape = Napi::Array::New(env, r.shape.size());
      for (size_t j = 0; j < r.shape.size(); ++j)
        shape.Set(static_cast<uint32_t>(j), Napi::Number::New(env, static_cast<double>(r.shape[j])));
      rec.Set("shape", shape);
      rec.Set("isa", r.isa);
      rec.Set("threads", Napi::Number::New(env, r.threads));
      rec.Set("seconds", Napi::Number::New(env, r.seconds));
      rec.Set("gflops", Napi::Number::New(env, r.gflops));
      rec.Set("gbps", Napi::Number::New(env, r.gbps));
      if (!r.peer_name.empty()) {
        Napi::Object peer = Napi::Object::New(env);
        peer.Set("name", r.peer_name);
        peer.Set("gflops", Napi::Number::New(env, r.peer_gflops));
        rec.Set("peer", peer);
        rec.Set("ratio", Napi::Number::New(env, r.ratio));
        Napi::Array spread = Napi::Array::New(env, 2);
        spread.Set(0u, Napi::Number::New(env, r.ratio_lo));
        spread.Set(1u, Napi::Number::New(env, r.ratio_hi));
        rec.Set("ratioSpread", spread);
      }
      if (!r.note.empty()) rec.Set("note", r.note);
      out.Set(static_cast<uint32_t>(i), rec);
    }
    return out;
  }

 private:
  bench::KernelBenchOptions options_;
  std::vector<bench::KernelBenchRecord> records_;
};

}  // namespace

// options: {threads?: int >= 0, minSeconds?: number > 0, filter?: string, withPeer?: bool}
Napi::Value RecaAddon::BenchKernels(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    bench::KernelBenchOptions opts;
    if (info[0].IsObject()) {
      Napi::Object o = info[0].As<Napi::Object>();
      Napi::Value threads = o.Get("threads"), min_seconds = o.Get("minSeconds"),
                  filter = o.Get("filter"), with_peer = o.Get("withPeer");
      if (!threads.IsUndefined()) {
        const double t = threads.IsNumber() ? threads.As<Napi::Number>().DoubleValue() : NAN;
        RECA_CHECK(t >= 0 && t <= 256 && t == std::floor(t), InvalidArgument,
                   "threads must be an integer between 0 and 256");
        opts.threads = static_cast<int>(t);
      }
      if (!min_seconds.IsUndefined()) {
        const double s = min_seconds.IsNumber() ? min_seconds.As<Napi::Number>().DoubleValue() : NAN;
        RECA_CHECK(s > 0 && s <= 3600, InvalidArgument,
                   "minSeconds must be a number of seconds in (0, 3600]");
        opts.min_seconds = s;
      }
      if (!filter.IsUndefined()) {
        RECA_CHECK(filter.IsString(), InvalidArgument, "filter must be a string");
        opts.filter = filter.As<Napi::String>().Utf8Value();
      }
      if (!with_peer.IsUndefined()) {
        RECA_CHECK(with_peer.IsBoolean(), InvalidArgument, "withPeer must be a boolean");
        opts.with_peer = with_peer.As<Napi::Boolean>().Value();
      }
    } else if (!info[0].IsUndefined()) {
      fail(ErrorCode::InvalidArgument, "benchKernels options must be an object");
    }
    Napi::Object owner = info.This().IsObject() ? info.This().As<Napi::Object>() : Napi::Object();
    return engine.Submit(env, std::make_unique<BenchJob>(std::move(opts)), owner);
  });
}

}  // namespace reca::addon
