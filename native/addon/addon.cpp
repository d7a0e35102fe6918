// Module entry: one RecaAddon per environment (Napi::Addon keeps it as the
// environment's instance data), so reca.node loads in Workers and twice.
#include "addon/addon.h"

#include <cmath>
#include <string>

#include "addon/errors.h"
#include "core/cpu_features.h"
#include "core/error.h"
#include "core/mpi_loader.h"
#include "core/nccl_loader.h"
#include "core/threadpool.h"
#include "cpu/matmul_bf16.h"
#include "cuda/cuda_info.h"
#include "model/schema.h"

namespace reca::addon {

RecaAddon::RecaAddon(Napi::Env env, Napi::Object exports) {
  Napi::Function tensor = TensorWrap::Define(env);
  tensor_class = Napi::Persistent(tensor);
  Napi::Function model = ModelWrap::Define(env);
  model_class = Napi::Persistent(model);
  Napi::Function trainer = TrainerWrap::Define(env);
  trainer_class = Napi::Persistent(trainer);
  DefineAddon(exports, {
                           InstanceMethod<&RecaAddon::Configure>("init"),
                           InstanceMethod<&RecaAddon::Info>("info"),
                           InstanceMethod<&RecaAddon::SetThreads>("setThreads"),
                           InstanceMethod<&RecaAddon::GetThreads>("getThreads"),
                           InstanceMethod<&RecaAddon::SetIsa>("setIsa"),
                           InstanceMethod<&RecaAddon::GetIsa>("getIsa"),
                           InstanceMethod<&RecaAddon::MemoryStats>("memoryStats"),
                           InstanceMethod<&RecaAddon::AbortRanks>("abortRanks"),
                           InstanceMethod<&RecaAddon::Matmul>("matmul"),
                           InstanceMethod<&RecaAddon::Gelu>("gelu"),
                           InstanceMethod<&RecaAddon::BenchKernels>("benchKernels"),
                           InstanceMethod<&RecaAddon::CreateModel>("createModel"),
                           InstanceMethod<&RecaAddon::LoadModel>("loadModel"),
                           InstanceMethod<&RecaAddon::DebugStep>("debugStep"),
                           InstanceValue("Tensor", tensor),
                           InstanceValue("Model", model),
                           InstanceValue("Trainer", trainer),
                       });
}

// init(RecaErrorClass, version?): every later failure becomes an instance of
// that class, constructed as new RecaErrorClass(code, message).
Napi::Value RecaAddon::Configure(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsFunction())
      fail(ErrorCode::InvalidArgument, "init() needs the RecaError class");
    error_class = Napi::Persistent(info[0].As<Napi::Function>());
    if (info[1].IsString()) version = info[1].As<Napi::String>().Utf8Value();
    return info.Env().Undefined();
  });
}

Napi::Value RecaAddon::Info(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Napi::Object out = Napi::Object::New(env);
    out.Set("version", version);
    out.Set("napiVersion", Napi::Number::New(env, NAPI_VERSION));

    Napi::Object cpu = Napi::Object::New(env);
    cpu.Set("isa", isa_name(active_isa()));
    cpu.Set("detectedIsa", isa_name(detected_isa()));
    const char* warning = isa_env_warning();
    cpu.Set("isaWarning", *warning ? Napi::Value(Napi::String::New(env, warning)) : env.Null());
    cpu.Set("avx512Bf16", Napi::Boolean::New(env, cpu_has_avx512_bf16()));
    const char* no_bf16 = cpu::bf16_matmul_unavailable_reason();
    cpu.Set("bf16Matmul", Napi::Boolean::New(env, no_bf16 == nullptr));
    cpu.Set("bf16MatmulReason", no_bf16 ? Napi::Value(Napi::String::New(env, no_bf16)) : env.Null());
    cpu.Set("threads", Napi::Number::New(env, num_threads()));
    cpu.Set("hardwareThreads", Napi::Number::New(env, hardware_threads()));
    out.Set("cpu", cpu);

    const cuda::CudaInfo ci = cuda::query_cuda();
    Napi::Object cu = Napi::Object::New(env);
    cu.Set("compiled", Napi::Boolean::New(env, ci.compiled));
    cu.Set("architectures", ci.architectures);
    cu.Set("runtimeVersion", Napi::Number::New(env, ci.runtime_version));
    cu.Set("driverVersion", Napi::Number::New(env, ci.driver_version));
    Napi::Array devices = Napi::Array::New(env, ci.devices.size());
    for (size_t i = 0; i < ci.devices.size(); ++i) {
      const cuda::CudaDevice& d = ci.devices[i];
      Napi::Object dev = Napi::Object::New(env);
      dev.Set("index", Napi::Number::New(env, d.index));
      dev.Set("name", d.name);
      dev.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
      dev.Set("multiprocessors", Napi::Number::New(env, d.multiprocessors));
      dev.Set("totalMemory", Napi::Number::New(env, static_cast<double>(d.total_memory)));
      devices.Set(static_cast<uint32_t>(i), dev);
    }
    cu.Set("devices", devices);
    cu.Set("reason", ci.reason);
    out.Set("cuda", cu);
    // Data parallelism: what was found at run time (nothing is linked).
    const mpi::Probe mp = mpi::probe();
    Napi::Object dist = Napi::Object::New(env);
    Napi::Object m = Napi::Object::New(env);
    m.Set("available", Napi::Boolean::New(env, mp.available));
    m.Set("library", mp.library);
    m.Set("version", mp.version);
    m.Set("error", mp.error);
    m.Set("launched", Napi::Boolean::New(env, mp.launched));
    m.Set("initialized", Napi::Boolean::New(env, mp.initialized));
    m.Set("rank", Napi::Number::New(env, mp.rank));
    m.Set("size", Napi::Number::New(env, mp.size));
    dist.Set("mpi", m);
    const nccl::Probe np = nccl::probe();
    Napi::Object nc = Napi::Object::New(env);
    nc.Set("available", Napi::Boolean::New(env, np.available));
    nc.Set("library", np.library);
    nc.Set("version", Napi::Number::New(env, np.version));
    nc.Set("error", np.error);
    dist.Set("nccl", nc);
    out.Set("distributed", dist);
    // Every option table with its defaults (model/schema.h); lib/ parses it once.
    out.Set("schemaJson", model::schema_json());
    return out;
  });
}

Napi::Value RecaAddon::SetThreads(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const double n = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : NAN;
    if (!(n == std::floor(n)) || std::fabs(n) > 1e6)
      fail(ErrorCode::InvalidArgument, "thread count must be an integer, got %s",
           info[0].IsUndefined() ? "nothing" : info[0].ToString().Utf8Value().c_str());
    set_num_threads(static_cast<int>(n));  // range-checked there
    return info.Env().Undefined();
  });
}

Napi::Value RecaAddon::GetThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), num_threads());
}

Napi::Value RecaAddon::SetIsa(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Isa isa;
    const std::string name = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    if (!parse_isa(name.c_str(), &isa))
      fail(ErrorCode::InvalidArgument, "ISA must be 'scalar', 'avx2' or 'avx512', got %s",
           info[0].IsUndefined() ? "nothing" : info[0].ToString().Utf8Value().c_str());
    set_active_isa(isa);  // E_INVALID_ARGUMENT above what this CPU supports
    return info.Env().Undefined();
  });
}

Napi::Value RecaAddon::GetIsa(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), isa_name(active_isa()));
}

// abortRanks(code): ends every rank of an MPI job (one rank's failure must not
// leave the others waiting in a collective); a no-op without MPI.
Napi::Value RecaAddon::AbortRanks(const Napi::CallbackInfo& info) {
  const mpi::Probe p = mpi::probe();
  if (p.initialized && p.size > 1)
    mpi::abort_all(info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 1);
  return info.Env().Undefined();
}

// {tensors, bytes}: live host tensors in this process (all environments).
Napi::Value RecaAddon::MemoryStats(const Napi::CallbackInfo& info) {
  const HostMemoryStats s = host_memory_stats();
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("tensors", Napi::Number::New(info.Env(), static_cast<double>(s.tensors)));
  out.Set("bytes", Napi::Number::New(info.Env(), static_cast<double>(s.bytes)));
  return out;
}

}  // namespace reca::addon

using reca::addon::RecaAddon;
NODE_API_ADDON(RecaAddon)
