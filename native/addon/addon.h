// The per-environment addon instance (one per main thread or Worker that loads
// reca.node): the RecaError class JS handed us, the Tensor constructor, and the
// engine worker. Nothing napi lives in a static, so the addon loads in any
// number of environments at once.
#pragma once
#include <napi.h>

#include <memory>
#include <string>

#include "addon/engine_worker.h"
#include "addon/model.h"
#include "addon/tensor.h"

namespace reca::addon {

class RecaAddon : public Napi::Addon<RecaAddon> {
 public:
  RecaAddon(Napi::Env env, Napi::Object exports);

  Napi::FunctionReference error_class;   // set by init()
  Napi::FunctionReference tensor_class;  // the native Tensor constructor
  Napi::FunctionReference model_class;   // NativeModel
  Napi::FunctionReference trainer_class; // NativeTrainer
  std::string version = "unknown";       // the package version, from init()
  EngineWorker engine;                   // the CPU device's job thread
  // A tensor made in C++ waiting for its JS object: TensorWrap's constructor
  // adopts it when called with no arguments (see TensorWrap::Wrap).
  std::unique_ptr<HostTensor> adopt;
  // Likewise a model state made on the engine thread (ModelWrap::Wrap).
  std::shared_ptr<ModelState> adopt_model;

 private:
  Napi::Value Configure(const Napi::CallbackInfo& info);  // JS: init()
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value SetThreads(const Napi::CallbackInfo& info);
  Napi::Value GetThreads(const Napi::CallbackInfo& info);
  Napi::Value MemoryStats(const Napi::CallbackInfo& info);
  Napi::Value AbortRanks(const Napi::CallbackInfo& info);
  Napi::Value SetIsa(const Napi::CallbackInfo& info);
  Napi::Value GetIsa(const Napi::CallbackInfo& info);
  Napi::Value Matmul(const Napi::CallbackInfo& info);
  Napi::Value Gelu(const Napi::CallbackInfo& info);
  Napi::Value BenchKernels(const Napi::CallbackInfo& info);
  Napi::Value CreateModel(const Napi::CallbackInfo& info);
  Napi::Value LoadModel(const Napi::CallbackInfo& info);
  Napi::Value DebugStep(const Napi::CallbackInfo& info);
};

}  // namespace reca::addon
