#include "addon/schema_js.h"

#include <cmath>

namespace reca::addon {

namespace {
std::string describe(const Napi::Value& v) {
  if (v.IsString()) return "'" + v.As<Napi::String>().Utf8Value().substr(0, 60) + "'";
  if (v.IsArray()) return "an array";
  if (v.IsObject() && !v.IsFunction()) return "an object";
  return v.ToString().Utf8Value().substr(0, 60);
}
}  // namespace

void unknown_option(const std::string& what, const std::string& key, const std::string& names) {
  fail(ErrorCode::InvalidArgument, "%s has an unknown option '%s' (options: %s)", what.c_str(),
       key.substr(0, 60).c_str(), names.c_str());
}

model::FieldValue read_js_field(const Napi::Value& v, model::FieldKind kind, const std::string& what,
                                const char* name) {
  using model::FieldKind;
  model::FieldValue out;
  switch (kind) {
    case FieldKind::Integer:
    case FieldKind::Number: {
      const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
      RECA_CHECK(std::isfinite(d) && (kind == FieldKind::Number || d == std::floor(d)),
                 InvalidArgument, "%s.%s must be %s, got %s", what.c_str(), name,
                 kind == FieldKind::Integer ? "an integer" : "a finite number", describe(v).c_str());
      out.number = d;
      return out;
    }
    case FieldKind::Boolean:
      RECA_CHECK(v.IsBoolean(), InvalidArgument, "%s.%s must be true or false, got %s", what.c_str(),
                 name, describe(v).c_str());
      out.boolean = v.As<Napi::Boolean>().Value();
      return out;
    case FieldKind::Seed: {
      if (v.IsBigInt()) {
        bool lossless = false;
        out.seed = v.As<Napi::BigInt>().Uint64Value(&lossless);
        RECA_CHECK(lossless, InvalidArgument, "%s.%s must fit an unsigned 64-bit integer",
                   what.c_str(), name);
        return out;
      }
      const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
      RECA_CHECK(d == std::floor(d) && d >= 0 && d <= 9007199254740991.0, InvalidArgument,
                 "%s.%s must be a non-negative safe integer or a BigInt, got %s", what.c_str(), name,
                 describe(v).c_str());
      out.seed = static_cast<uint64_t>(d);
      return out;
    }
    default:
      RECA_CHECK(v.IsString(), InvalidArgument, "%s.%s must be a string, got %s", what.c_str(), name,
                 describe(v).c_str());
      out.text = v.As<Napi::String>().Utf8Value();
      return out;
  }
}

}  // namespace reca::addon
