// Synchronous CPU ops on host tensors: validate, allocate the output, call the
// kernel. Meant for small tensors and tests; heavy work goes through the engine.
#include <cstring>

#include "addon/addon.h"
#include "addon/errors.h"
#include "core/error.h"
#include "cpu/gelu.h"
#include "cpu/matmul.h"

namespace reca::addon {
namespace {

void require_float32(const HostTensor& t, const char* what) {
  RECA_CHECK(t.dtype() == DType::Float32, Dtype, "%s must be float32, got %s (shape %s)", what,
             dtype_name(t.dtype()), shape_string(t.shape()).c_str());
}

bool flag(const Napi::Object& options, const char* name) {
  Napi::Value v = options.Get(name);
  if (v.IsUndefined()) return false;
  if (!v.IsBoolean()) fail(ErrorCode::InvalidArgument, "option %s must be a boolean", name);
  return v.As<Napi::Boolean>().Value();
}

}  // namespace

// matmul(a, b, {transA, transB, bias}) -> C[M,N] = op(a)·op(b) + bias
Napi::Value RecaAddon::Matmul(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const HostTensor& a = TensorWrap::From(env, info[0], "a");
    const HostTensor& b = TensorWrap::From(env, info[1], "b");
    Napi::Object options = Napi::Object::New(env);
    if (info[2].IsObject()) options = info[2].As<Napi::Object>();
    else if (!info[2].IsUndefined() && !info[2].IsNull())
      fail(ErrorCode::InvalidArgument, "matmul options must be an object");
    const bool trans_a = flag(options, "transA"), trans_b = flag(options, "transB");
    require_float32(a, "a");
    require_float32(b, "b");
    const std::string as = shape_string(a.shape()), bs = shape_string(b.shape());
    RECA_CHECK(a.shape().size() == 2 && b.shape().size() == 2, Shape,
               "matmul needs 2-D operands, got a %s and b %s", as.c_str(), bs.c_str());
    const int64_t M = trans_a ? a.shape()[1] : a.shape()[0];
    const int64_t K = trans_a ? a.shape()[0] : a.shape()[1];
    const int64_t Kb = trans_b ? b.shape()[1] : b.shape()[0];
    const int64_t N = trans_b ? b.shape()[0] : b.shape()[1];
    RECA_CHECK(K == Kb, Shape,
               "matmul inner dimensions differ: a %s%s gives K=%lld, b %s%s gives K=%lld",
               as.c_str(), trans_a ? " (transposed)" : "", static_cast<long long>(K), bs.c_str(),
               trans_b ? " (transposed)" : "", static_cast<long long>(Kb));
    const float* bias = nullptr;
    Napi::Value bias_value = options.Get("bias");
    if (!bias_value.IsUndefined() && !bias_value.IsNull()) {
      const HostTensor& bt = TensorWrap::From(env, bias_value, "bias");
      require_float32(bt, "bias");
      RECA_CHECK(bt.shape().size() == 1 && bt.shape()[0] == N, Shape,
                 "bias must have shape [%lld] for a %s x b %s, got %s", static_cast<long long>(N),
                 as.c_str(), bs.c_str(), shape_string(bt.shape()).c_str());
      bias = bt.f32();
    }
    auto c = std::make_unique<HostTensor>(DType::Float32, std::vector<int64_t>{M, N});
    if (M > 0 && N > 0)
      cpu::matmul(c->f32(), a.f32(), b.f32(), bias, M, N, K, trans_a, trans_b, false);
    return TensorWrap::Wrap(env, std::move(c));
  });
}

// gelu(x, bias?) -> gelu(x + bias), bias over the last dimension.
Napi::Value RecaAddon::Gelu(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const HostTensor& x = TensorWrap::From(env, info[0], "x");
    require_float32(x, "x");
    RECA_CHECK(!x.shape().empty(), Shape, "gelu needs at least 1-D input, got %s",
               shape_string(x.shape()).c_str());
    const int64_t cols = x.shape().back();
    const int64_t rows = cols == 0 ? 0 : x.size() / cols;
    const float* bias = nullptr;
    if (!info[1].IsUndefined() && !info[1].IsNull()) {
      const HostTensor& bt = TensorWrap::From(env, info[1], "bias");
      require_float32(bt, "bias");
      RECA_CHECK(bt.shape().size() == 1 && bt.shape()[0] == cols, Shape,
                 "bias must have shape [%lld] for x %s, got %s", static_cast<long long>(cols),
                 shape_string(x.shape()).c_str(), shape_string(bt.shape()).c_str());
      bias = bt.f32();
    }
    auto y = std::make_unique<HostTensor>(DType::Float32, x.shape());
    if (rows > 0 && cols > 0) cpu::gelu_forward(y->f32(), x.f32(), bias, rows, cols);
    return TensorWrap::Wrap(env, std::move(y));
  });
}

}  // namespace reca::addon
