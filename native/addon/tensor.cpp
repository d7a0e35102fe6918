#include "addon/tensor.h"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

#include "addon/addon.h"
#include "addon/errors.h"
#include "core/error.h"
#include "core/host_buffer.h"

namespace reca::addon {
namespace {

constexpr size_t kAlignment = 64;  // a cache line, and one AVX-512 vector
// Round up so even an empty tensor owns a valid, aligned pointer.
size_t buffer_bytes(size_t bytes) { return (bytes + kAlignment - 1) / kAlignment * kAlignment + kAlignment; }

std::atomic<int64_t> g_live_tensors{0}, g_live_bytes{0};

bool parse_dtype(const std::string& name, DType* out) {
  if (name == "float32") *out = DType::Float32;
  else if (name == "int32") *out = DType::Int32;
  else if (name == "uint8") *out = DType::Uint8;
  else return false;
  return true;
}

napi_typedarray_type array_type(DType dtype) {
  switch (dtype) {
    case DType::Float32: return napi_float32_array;
    case DType::Int32: return napi_int32_array;
    default: return napi_uint8_array;
  }
}

const char* array_name(napi_typedarray_type type) {
  switch (type) {
    case napi_int8_array: return "Int8Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_uint8_clamped_array: return "Uint8ClampedArray";
    case napi_int16_array: return "Int16Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_uint32_array: return "Uint32Array";
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    case napi_bigint64_array: return "BigInt64Array";
    case napi_biguint64_array: return "BigUint64Array";
    default: return "TypedArray";
  }
}

// Physical memory of this machine; a tensor larger than this cannot be backed
// (and zero-filling an overcommitted mapping would invite the OOM killer).
uint64_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return UINT64_MAX;
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
}

}  // namespace

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::Float32: return "float32";
    case DType::Int32: return "int32";
    default: return "uint8";
  }
}

size_t dtype_size(DType dtype) { return dtype == DType::Uint8 ? 1 : 4; }

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::vector<int64_t> parse_shape(const Napi::Value& value) {
  if (!value.IsArray())
    fail(ErrorCode::InvalidArgument, "shape must be an array of non-negative integers");
  Napi::Array array = value.As<Napi::Array>();
  const uint32_t rank = array.Length();
  if (rank > kMaxRank)
    fail(ErrorCode::InvalidArgument, "shape has %u dimensions; at most %zu are supported", rank,
         kMaxRank);
  std::vector<int64_t> shape(rank);
  for (uint32_t i = 0; i < rank; ++i) {
    Napi::Value dim = array.Get(i);
    const double d = dim.IsNumber() ? dim.As<Napi::Number>().DoubleValue() : NAN;
    if (!(d >= 0) || d != std::floor(d) || d > 9007199254740991.0)
      fail(ErrorCode::InvalidArgument,
           "shape[%u] must be a non-negative integer, got %s", i,
           dim.ToString().Utf8Value().c_str());
    shape[i] = static_cast<int64_t>(d);
  }
  return shape;
}


HostTensor::HostTensor(DType dtype, std::vector<int64_t> shape)
    : dtype_(dtype), shape_(std::move(shape)) {
  const int64_t elem = static_cast<int64_t>(dtype_size(dtype));
  const int64_t max_elems = kMaxTensorBytes / elem;
  int64_t size = 1;
  bool zero = false;
  for (int64_t d : shape_) {
    RECA_CHECK(d >= 0, InvalidArgument, "shape %s has a negative dimension",
               shape_string(shape_).c_str());
    if (d == 0) zero = true;
  }
  if (!zero) {
    for (int64_t d : shape_) {
      RECA_CHECK(d <= max_elems / size, InvalidArgument,
                 "shape %s is too large: a %s tensor is limited to %lld bytes",
                 shape_string(shape_).c_str(), dtype_name(dtype),
                 static_cast<long long>(kMaxTensorBytes));
      size *= d;
    }
  } else {
    size = 0;
  }
  size_ = size;
  bytes_ = static_cast<size_t>(size) * static_cast<size_t>(elem);
  if (bytes_ > physical_memory_bytes())
    fail(ErrorCode::OutOfMemory,
         "shape %s needs %.1f GiB, more than this machine's %.1f GiB of memory",
         shape_string(shape_).c_str(), bytes_ / 1073741824.0,
         physical_memory_bytes() / 1073741824.0);
  const size_t alloc = buffer_bytes(bytes_);
  // Not posix_memalign: its split-off slack fragmented the heap under
  // create/dispose loops (see core/host_buffer.h).
  void* p = host_buffer_alloc(alloc);
  if (p == nullptr)
    fail(ErrorCode::OutOfMemory, "could not allocate %zu bytes for a tensor of shape %s",
         bytes_, shape_string(shape_).c_str());
  data_ = p;
  g_live_tensors.fetch_add(1, std::memory_order_relaxed);
  g_live_bytes.fetch_add(static_cast<int64_t>(bytes_), std::memory_order_relaxed);
}

HostTensor::~HostTensor() {
  host_buffer_free(data_, buffer_bytes(bytes_));
  g_live_tensors.fetch_sub(1, std::memory_order_relaxed);
  g_live_bytes.fetch_sub(static_cast<int64_t>(bytes_), std::memory_order_relaxed);
}

HostMemoryStats host_memory_stats() {
  HostMemoryStats s;
  s.tensors = g_live_tensors.load(std::memory_order_relaxed);
  s.bytes = g_live_bytes.load(std::memory_order_relaxed);
  return s;
}

// ---- TensorWrap ----------------------------------------------------------

Napi::Function TensorWrap::Define(Napi::Env env) {
  return DefineClass(env, "NativeTensor",
                     {
                         InstanceAccessor<&TensorWrap::GetShape>("shape"),
                         InstanceAccessor<&TensorWrap::GetDtype>("dtype"),
                         InstanceAccessor<&TensorWrap::GetSize>("size"),
                         InstanceAccessor<&TensorWrap::GetByteLength>("byteLength"),
                         InstanceAccessor<&TensorWrap::GetDisposed>("disposed"),
                         InstanceMethod<&TensorWrap::ToArray>("toArray"),
                         InstanceMethod<&TensorWrap::Dispose>("dispose"),
                     });
}

Napi::Object TensorWrap::Wrap(Napi::Env env, std::unique_ptr<HostTensor> tensor) {
  RecaAddon* addon = env.GetInstanceData<RecaAddon>();
  addon->adopt = std::move(tensor);
  Napi::Object obj;
  try {
    obj = addon->tensor_class.New({});
  } catch (...) {
    addon->adopt.reset();
    throw;
  }
  return obj;
}

HostTensor& TensorWrap::From(Napi::Env env, const Napi::Value& value, const char* what) {
  RecaAddon* addon = env.GetInstanceData<RecaAddon>();
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(addon->tensor_class.Value()))
    fail(ErrorCode::InvalidArgument, "%s must be a Tensor", what);
  return Unwrap(value.As<Napi::Object>())->Live();
}

TensorWrap::TensorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorWrap>(info) {
  Napi::Env env = info.Env();
  guarded(env, [&]() -> Napi::Value {
    RecaAddon* addon = env.GetInstanceData<RecaAddon>();
    if (info.Length() == 0 && addon->adopt) {
      tensor_ = std::move(addon->adopt);
    } else {
      // new NativeTensor(dtype, shape, data?): data is copied; no data -> zeros.
      DType dtype;
      if (!info[0].IsString() || !parse_dtype(info[0].As<Napi::String>().Utf8Value(), &dtype))
        fail(ErrorCode::Dtype, "dtype must be 'float32', 'int32' or 'uint8', got %s",
             info[0].IsUndefined() ? "nothing" : info[0].ToString().Utf8Value().c_str());
      std::vector<int64_t> shape = parse_shape(info[1]);
      const void* src = nullptr;
      size_t src_len = 0;
      const bool has_data = info.Length() > 2 && !info[2].IsUndefined() && !info[2].IsNull();
      if (has_data) {
        if (!info[2].IsTypedArray())
          fail(ErrorCode::Dtype, "data for a %s tensor must be a %s", dtype_name(dtype),
               array_name(array_type(dtype)));
        napi_typedarray_type type;
        void* ptr = nullptr;
        napi_value buffer;
        size_t offset = 0;
        NAPI_THROW_IF_FAILED(env,
                             napi_get_typedarray_info(env, info[2], &type, &src_len, &ptr,
                                                      &buffer, &offset),
                             Napi::Value());
        if (type != array_type(dtype))
          fail(ErrorCode::Dtype, "data for a %s tensor must be a %s, got a %s",
               dtype_name(dtype), array_name(array_type(dtype)), array_name(type));
        src = ptr;
      }
      auto tensor = std::make_unique<HostTensor>(dtype, std::move(shape));
      if (has_data) {
        if (static_cast<int64_t>(src_len) != tensor->size())
          fail(ErrorCode::Shape, "data has %zu elements but shape %s needs %lld", src_len,
               shape_string(tensor->shape()).c_str(), static_cast<long long>(tensor->size()));
        if (tensor->bytes() > 0) std::memcpy(tensor->data(), src, tensor->bytes());
      }
      tensor_ = std::move(tensor);
    }
    reported_bytes_ = static_cast<int64_t>(tensor_->bytes());
    Napi::MemoryManagement::AdjustExternalMemory(env, reported_bytes_);
    return env.Undefined();
  });
}

TensorWrap::~TensorWrap() = default;

void TensorWrap::Finalize(Napi::Env env) { Release(env); }

void TensorWrap::Release(Napi::Env env) {
  tensor_.reset();
  if (reported_bytes_ != 0) {
    Napi::MemoryManagement::AdjustExternalMemory(env, -reported_bytes_);
    reported_bytes_ = 0;
  }
}

HostTensor& TensorWrap::Live() const {
  if (!tensor_) fail(ErrorCode::Disposed, "this tensor was disposed");
  return *tensor_;
}

Napi::Value TensorWrap::GetShape(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const HostTensor& t = Live();
    Napi::Array shape = Napi::Array::New(info.Env(), t.shape().size());
    for (size_t i = 0; i < t.shape().size(); ++i)
      shape.Set(static_cast<uint32_t>(i), Napi::Number::New(info.Env(), static_cast<double>(t.shape()[i])));
    return shape;
  });
}

Napi::Value TensorWrap::GetDtype(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    return Napi::String::New(info.Env(), dtype_name(Live().dtype()));
  });
}

Napi::Value TensorWrap::GetSize(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    return Napi::Number::New(info.Env(), static_cast<double>(Live().size()));
  });
}

Napi::Value TensorWrap::GetByteLength(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    return Napi::Number::New(info.Env(), static_cast<double>(Live().bytes()));
  });
}

Napi::Value TensorWrap::GetDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !tensor_);
}

Napi::Value TensorWrap::ToArray(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const HostTensor& t = Live();
    Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, t.bytes());
    if (t.bytes() > 0) std::memcpy(buffer.Data(), t.data(), t.bytes());
    napi_value array;
    NAPI_THROW_IF_FAILED(env,
                         napi_create_typedarray(env, array_type(t.dtype()),
                                                static_cast<size_t>(t.size()), buffer, 0, &array),
                         Napi::Value());
    return Napi::Value(env, array);
  });
}

Napi::Value TensorWrap::Dispose(const Napi::CallbackInfo& info) {
  Release(info.Env());  // idempotent: a second call finds nothing to free
  return info.Env().Undefined();
}

}  // namespace reca::addon
