// The lifecycle every JS handle shares (Tensor, NativeModel, NativeTrainer),
// written once: a native object held through an owning pointer, adopted from
// the addon when C++ makes the JS object, E_DISPOSED after dispose(), freed by
// dispose() or the GC (whichever comes first, once), and its bytes reported to
// V8 while the handle holds it so the GC sees native memory.
#pragma once
#include <napi.h>

#include <cstdint>
#include <utility>

#include "addon/errors.h"
#include "core/error.h"

namespace reca::addon {

// Derived: the ObjectWrap class; Ptr: std::unique_ptr<T> or std::shared_ptr<T>.
template <class Derived, class Ptr>
class Handle : public Napi::ObjectWrap<Derived> {
 public:
  explicit Handle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Derived>(info) {}
  void Finalize(Napi::Env env) override { Release(env); }

 protected:
  // A new JS object of `cls` holding p: the constructor takes it from `slot`
  // (constructors run from JS cannot be handed a C++ object otherwise).
  static Napi::Object Adopt(Napi::FunctionReference& cls, Ptr& slot, Ptr p) {
    slot = std::move(p);
    try {
      return cls.New({});
    } catch (...) {
      slot.reset();
      throw;
    }
  }

  // The handle behind `value`: E_INVALID_ARGUMENT ("<what> must be a <noun>")
  // when it is not an instance of `cls`.
  static Derived* Of(const Napi::Value& value, Napi::FunctionReference& cls, const char* what,
                     const char* noun) {
    if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(cls.Value()))
      fail(ErrorCode::InvalidArgument, "%s must be a %s", what, noun);
    return Napi::ObjectWrap<Derived>::Unwrap(value.As<Napi::Object>());
  }

  // Takes p and reports `bytes` of native memory to V8.
  void Hold(Napi::Env env, Ptr p, int64_t bytes) {
    held_ = std::move(p);
    reported_bytes_ = bytes;
    if (bytes != 0) Napi::MemoryManagement::AdjustExternalMemory(env, bytes);
  }

  // The held object; E_DISPOSED ("this <noun> was disposed") after dispose().
  const Ptr& Held(const char* noun) const {
    if (!held_) fail(ErrorCode::Disposed, "this %s was disposed", noun);
    return held_;
  }

  bool Holds() const { return static_cast<bool>(held_); }

  // Lets go of the object (idempotent); with a shared_ptr, running jobs that
  // share it keep it alive until they settle.
  void Release(Napi::Env env) {
    held_.reset();
    if (reported_bytes_ != 0) {
      Napi::MemoryManagement::AdjustExternalMemory(env, -reported_bytes_);
      reported_bytes_ = 0;
    }
  }

  Napi::Value GetDisposed(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), !held_);
  }

 private:
  Ptr held_;
  int64_t reported_bytes_ = 0;  // what AdjustExternalMemory was told
};

}  // namespace reca::addon
