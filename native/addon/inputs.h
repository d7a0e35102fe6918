// Reading engine inputs from JS values on the JS thread: image batches, VQ
// codes, captions and option objects. Everything is validated and copied here,
// before a job is queued, so a caller may reuse or dispose its arrays as soon
// as the call returns, and a bad input never reaches the engine thread.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "addon/tensor.h"

namespace reca::addon {

// A typed view of a Tensor or of {data: TypedArray, shape: number[]}: valid
// only during the current call.
struct ArrayView {
  DType dtype = DType::Float32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  int64_t size = 0;
};

// E_INVALID_ARGUMENT when `value` is neither; E_DTYPE for a TypedArray other
// than Float32Array / Int32Array / Uint8Array; E_SHAPE when data and shape
// disagree; E_DISPOSED for a disposed Tensor.
ArrayView read_array(Napi::Env env, const Napi::Value& value, const char* what);

// Images as the model takes them: bytes [B, S, S, 3] (SPEC §0).
struct ImageBatch {
  int64_t B = 0;
  std::vector<uint8_t> bytes;
};

// uint8 [B, S, S, 3] is copied; float32 [B, S, S, 3] must be finite (E_NUMERIC
// naming the element) and within [-1, 1] (E_INVALID_ARGUMENT), and becomes
// bytes by round((x + 1)·127.5). Other dtypes: E_DTYPE; another shape or
// image size: E_SHAPE (expected vs got); B = 0: E_INVALID_ARGUMENT.
ImageBatch read_images(Napi::Env env, const Napi::Value& value, int64_t image_size,
                       const char* what);

// int32 codes [B, N], every one in [0, K) (E_INVALID_ARGUMENT naming the first
// that is not).
std::vector<int32_t> read_codes(Napi::Env env, const Napi::Value& value, int64_t N, int64_t K,
                                int64_t* B);

// An array of `count` strings (count < 0: any number >= 1) -> byte ids [count, T],
// each cut at a UTF-8 boundary to T bytes and PAD-filled. Returns the bytes
// cut over all of them; *count_out receives the count.
int64_t read_texts(const Napi::Value& value, int64_t count, int64_t T, std::vector<int32_t>* out,
                   const char* what, int64_t* count_out = nullptr);

// A plain options object (undefined / null: every option at its default).
// Each getter returns the default when the key is absent (or undefined) and
// throws E_INVALID_ARGUMENT naming `what.key` for a value of the wrong kind.
class Options {
 public:
  Options(const Napi::Value& value, std::string what);
  bool has(const char* key) const;
  Napi::Value get(const char* key) const;
  double number(const char* key, double def) const;  // finite
  int64_t integer(const char* key, int64_t def, int64_t lo, int64_t hi) const;
  uint64_t seed(const char* key, uint64_t def) const;  // safe integer >= 0, or a BigInt
  bool boolean(const char* key, bool def) const;
  std::string string(const char* key, const std::string& def) const;
  const std::string& what() const { return what_; }

 private:
  Napi::Object object_;
  bool empty_ = true;
  std::string what_;
};

}  // namespace reca::addon
