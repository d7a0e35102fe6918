#include "addon/inputs.h"

#include <cmath>
#include <cstring>

#include "addon/addon.h"
#include "addon/schema_js.h"
#include "core/error.h"
#include "cpu/image.h"
#include "model/config.h"
#include "model/trainer.h"

namespace reca::addon {
namespace {

std::string describe(const Napi::Value& v) {
  if (v.IsUndefined()) return "nothing";
  if (v.IsString()) return "'" + v.As<Napi::String>().Utf8Value().substr(0, 60) + "'";
  if (v.IsArray()) return "an array";
  if (v.IsTypedArray()) return "a TypedArray";
  if (v.IsObject() && !v.IsFunction()) return "an object";
  return v.ToString().Utf8Value().substr(0, 60);
}

// Image [b, y, x, c] of flat index i, for messages.
std::string pixel_of(int64_t i, int64_t S) {
  const int64_t c = i % 3, x = (i / 3) % S, y = (i / (3 * S)) % S, b = i / (3 * S * S);
  return "sample " + std::to_string(b) + ", row " + std::to_string(y) + ", column " +
         std::to_string(x) + ", channel " + std::to_string(c);
}

}  // namespace

ArrayView read_array(Napi::Env env, const Napi::Value& value, const char* what) {
  ArrayView view;
  RecaAddon* addon = env.GetInstanceData<RecaAddon>();
  if (value.IsObject() && value.As<Napi::Object>().InstanceOf(addon->tensor_class.Value())) {
    HostTensor& t = TensorWrap::From(env, value, what);
    view.dtype = t.dtype();
    view.shape = t.shape();
    view.data = t.data();
    view.size = t.size();
    return view;
  }
  RECA_CHECK(value.IsObject() && !value.IsArray() && !value.IsTypedArray(), InvalidArgument,
             "%s must be a Tensor or {data, shape}, got %s", what, describe(value).c_str());
  Napi::Object o = value.As<Napi::Object>();
  Napi::Value data = o.Get("data");
  RECA_CHECK(data.IsTypedArray(), InvalidArgument,
             "%s.data must be a Uint8Array or Float32Array (or Int32Array for codes), got %s", what,
             describe(data).c_str());
  napi_typedarray_type type;
  size_t length = 0;
  void* ptr = nullptr;
  napi_value buffer;
  size_t offset = 0;
  NAPI_THROW_IF_FAILED(env, napi_get_typedarray_info(env, data, &type, &length, &ptr, &buffer, &offset),
                       view);
  switch (type) {
    case napi_uint8_array: view.dtype = DType::Uint8; break;
    case napi_float32_array: view.dtype = DType::Float32; break;
    case napi_int32_array: view.dtype = DType::Int32; break;
    default:
      fail(ErrorCode::Dtype, "%s.data must be a Uint8Array, Float32Array or Int32Array", what);
  }
  view.shape = parse_shape(o.Get("shape"));
  int64_t n = 1;
  for (int64_t d : view.shape) n = d != 0 && n > INT64_MAX / d ? INT64_MAX : n * d;
  RECA_CHECK(n == static_cast<int64_t>(length), Shape,
             "%s.data has %zu elements but shape %s needs %lld", what, length,
             shape_string(view.shape).c_str(), static_cast<long long>(n));
  view.data = ptr;
  view.size = n;
  return view;
}

ImageBatch read_images(Napi::Env env, const Napi::Value& value, int64_t S, const char* what) {
  const ArrayView v = read_array(env, value, what);
  RECA_CHECK(v.dtype == DType::Uint8 || v.dtype == DType::Float32, Dtype,
             "%s must be uint8 (0..255) or float32 (in [-1, 1]), got %s", what,
             dtype_name(v.dtype));
  const std::string expected = "[B, " + std::to_string(S) + ", " + std::to_string(S) + ", 3]";
  RECA_CHECK(v.shape.size() == 4 && v.shape[1] == S && v.shape[2] == S && v.shape[3] == 3, Shape,
             "%s must have shape %s (NHWC, this model's image_size %lld), got %s", what,
             expected.c_str(), static_cast<long long>(S), shape_string(v.shape).c_str());
  ImageBatch out;
  out.B = v.shape[0];
  RECA_CHECK(out.B >= 1, InvalidArgument, "%s is an empty batch (shape %s): pass at least one image",
             what, shape_string(v.shape).c_str());
  out.bytes.resize(static_cast<size_t>(v.size));
  if (v.dtype == DType::Uint8) {
    std::memcpy(out.bytes.data(), v.data, out.bytes.size());
    return out;
  }
  const float* x = static_cast<const float*>(v.data);
  // A little slack for arithmetic that lands a hair outside, e.g. 2·u − 1.
  constexpr float kLimit = 1.0f + 1e-5f;
  for (int64_t i = 0; i < v.size; ++i) {
    if (!std::isfinite(x[i]))
      fail(ErrorCode::Numeric, "%s[%lld] is %s (%s): float images must be finite", what,
           static_cast<long long>(i), std::isnan(x[i]) ? "NaN" : "infinite", pixel_of(i, S).c_str());
    if (!(x[i] >= -kLimit && x[i] <= kLimit))
      fail(ErrorCode::InvalidArgument,
           "%s[%lld] is %g (%s): float32 images must lie in [-1, 1] (or pass uint8 bytes)", what,
           static_cast<long long>(i), static_cast<double>(x[i]), pixel_of(i, S).c_str());
  }
  cpu::image_to_bytes(out.bytes.data(), x, v.size);
  return out;
}

std::vector<int32_t> read_codes(Napi::Env env, const Napi::Value& value, int64_t N, int64_t K,
                                int64_t* B) {
  const ArrayView v = read_array(env, value, "codes");
  RECA_CHECK(v.dtype == DType::Int32, Dtype, "codes must be int32, got %s", dtype_name(v.dtype));
  RECA_CHECK(v.shape.size() == 2 && v.shape[1] == N, Shape,
             "codes must have shape [B, %lld] (this model's image tokens), got %s",
             static_cast<long long>(N), shape_string(v.shape).c_str());
  RECA_CHECK(v.shape[0] >= 1, InvalidArgument, "codes is an empty batch: pass at least one row");
  const int32_t* c = static_cast<const int32_t*>(v.data);
  for (int64_t i = 0; i < v.size; ++i)
    RECA_CHECK(c[i] >= 0 && c[i] < K, InvalidArgument,
               "codes[%lld] (sample %lld, token %lld) is %d: codes must be in [0, %lld)",
               static_cast<long long>(i), static_cast<long long>(i / N),
               static_cast<long long>(i % N), c[i], static_cast<long long>(K));
  *B = v.shape[0];
  return std::vector<int32_t>(c, c + v.size);
}

int64_t read_texts(const Napi::Value& value, int64_t count, int64_t T, std::vector<int32_t>* out,
                   const char* what, int64_t* count_out) {
  RECA_CHECK(value.IsArray(), InvalidArgument, "%s must be an array of strings, got %s", what,
             describe(value).c_str());
  Napi::Array a = value.As<Napi::Array>();
  const int64_t n = a.Length();
  if (count >= 0)
    RECA_CHECK(n == count, InvalidArgument, "%s has %lld entries but the batch has %lld images",
               what, static_cast<long long>(n), static_cast<long long>(count));
  else
    RECA_CHECK(n >= 1, InvalidArgument, "%s is empty: pass at least one string", what);
  out->assign(static_cast<size_t>(n * T), model::tok::kPad);
  int64_t cut = 0;
  for (int64_t i = 0; i < n; ++i) {
    Napi::Value s = a.Get(static_cast<uint32_t>(i));
    RECA_CHECK(s.IsString(), InvalidArgument, "%s[%lld] must be a string, got %s", what,
               static_cast<long long>(i), describe(s).c_str());
    cut += model::encode_text(s.As<Napi::String>().Utf8Value(), T, out->data() + i * T);
  }
  if (count_out) *count_out = n;
  return cut;
}

// ---- Options -----------------------------------------------------------------

Options::Options(const Napi::Value& value, std::string what) : what_(std::move(what)) {
  if (value.IsUndefined() || value.IsNull()) return;
  RECA_CHECK(value.IsObject() && !value.IsArray() && !value.IsFunction(), InvalidArgument,
             "%s must be an object, got %s", what_.c_str(), describe(value).c_str());
  object_ = value.As<Napi::Object>();
  empty_ = false;
}

Napi::Value Options::get(const char* key) const {
  if (empty_) return Napi::Value();
  return object_.Get(key);
}

bool Options::has(const char* key) const {
  if (empty_) return false;
  return !object_.Get(key).IsUndefined();
}

double Options::number(const char* key, double def) const {
  if (!has(key)) return def;
  Napi::Value v = get(key);
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
  RECA_CHECK(std::isfinite(d), InvalidArgument, "%s.%s must be a finite number, got %s",
             what_.c_str(), key, describe(v).c_str());
  return d;
}

int64_t Options::integer(const char* key, int64_t def, int64_t lo, int64_t hi) const {
  if (!has(key)) return def;
  Napi::Value v = get(key);
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
  RECA_CHECK(d == std::floor(d) && d >= static_cast<double>(lo) && d <= static_cast<double>(hi),
             InvalidArgument, "%s.%s must be an integer in [%lld, %lld], got %s", what_.c_str(),
             key, static_cast<long long>(lo), static_cast<long long>(hi), describe(v).c_str());
  return static_cast<int64_t>(d);
}

uint64_t Options::seed(const char* key, uint64_t def) const {
  if (!has(key)) return def;
  return read_js_field(get(key), model::FieldKind::Seed, what_, key).seed;
}

bool Options::boolean(const char* key, bool def) const {
  if (!has(key)) return def;
  Napi::Value v = get(key);
  RECA_CHECK(v.IsBoolean(), InvalidArgument, "%s.%s must be true or false, got %s", what_.c_str(),
             key, describe(v).c_str());
  return v.As<Napi::Boolean>().Value();
}

std::string Options::string(const char* key, const std::string& def) const {
  if (!has(key)) return def;
  Napi::Value v = get(key);
  RECA_CHECK(v.IsString(), InvalidArgument, "%s.%s must be a string, got %s", what_.c_str(), key,
             describe(v).c_str());
  return v.As<Napi::String>().Utf8Value();
}

}  // namespace reca::addon
