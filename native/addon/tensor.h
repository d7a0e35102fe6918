// Host tensors behind the JS Tensor class: a dtype, a shape and a 64-byte
// aligned buffer owned by native code. The JS object owns its HostTensor;
// dispose() frees it at once, the GC finalizer frees it if dispose never came.
#pragma once
#include <napi.h>

#include "addon/handle.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace reca::addon {

enum class DType { Float32, Int32, Uint8 };

const char* dtype_name(DType dtype);  // "float32" | "int32" | "uint8"
size_t dtype_size(DType dtype);

// Shapes above this many bytes are refused as mistakes (E_INVALID_ARGUMENT)
// before any allocation; smaller ones the host cannot hold are E_OUT_OF_MEMORY.
constexpr int64_t kMaxTensorBytes = int64_t(1) << 40;
constexpr size_t kMaxRank = 16;

class HostTensor {
 public:
  // Zero-filled. Throws reca::Error: E_INVALID_ARGUMENT for a bad shape,
  // E_OUT_OF_MEMORY when the host cannot hold it.
  HostTensor(DType dtype, std::vector<int64_t> shape);
  ~HostTensor();
  HostTensor(const HostTensor&) = delete;
  HostTensor& operator=(const HostTensor&) = delete;

  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t size() const { return size_; }
  size_t bytes() const { return bytes_; }
  void* data() { return data_; }
  const void* data() const { return data_; }
  float* f32() { return static_cast<float*>(data_); }
  const float* f32() const { return static_cast<const float*>(data_); }

 private:
  DType dtype_;
  std::vector<int64_t> shape_;
  int64_t size_ = 0;
  size_t bytes_ = 0;
  void* data_ = nullptr;
};

// Live host tensors and their bytes, process-wide (every environment), for
// leak checks.
struct HostMemoryStats {
  int64_t tensors = 0;
  int64_t bytes = 0;
};
HostMemoryStats host_memory_stats();

// "[2, 3]" for error messages.
std::string shape_string(const std::vector<int64_t>& shape);

// A JS array of dimensions -> shape; every entry a non-negative safe integer
// (E_INVALID_ARGUMENT otherwise), at most kMaxRank of them.
std::vector<int64_t> parse_shape(const Napi::Value& value);

class TensorWrap : public Handle<TensorWrap, std::unique_ptr<HostTensor>> {
 public:
  static Napi::Function Define(Napi::Env env);
  // A new JS Tensor owning `tensor`.
  static Napi::Object Wrap(Napi::Env env, std::unique_ptr<HostTensor> tensor);
  // The live tensor behind `value`: E_INVALID_ARGUMENT when it is not a
  // Tensor, E_DISPOSED after dispose(). `what` names the argument in messages.
  static HostTensor& From(Napi::Env env, const Napi::Value& value, const char* what);

  explicit TensorWrap(const Napi::CallbackInfo& info);

 private:
  HostTensor& Live() const { return *Held("tensor"); }

  Napi::Value GetShape(const Napi::CallbackInfo& info);
  Napi::Value GetDtype(const Napi::CallbackInfo& info);
  Napi::Value GetSize(const Napi::CallbackInfo& info);
  Napi::Value GetByteLength(const Napi::CallbackInfo& info);
  Napi::Value ToArray(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
};

}  // namespace reca::addon
