// JS option objects read through the schema tables (model/schema.h): one
// reader for the config overrides, the trainer options and the sampler
// options, so each field's name, kind and range are checked as the table
// says and every message uses the table's name.
#pragma once
#include <napi.h>

#include <initializer_list>
#include <string>

#include "model/schema.h"

namespace reca::addon {

// A JS value as a field of `kind` (E_INVALID_ARGUMENT "<what>.<name> must be ...").
model::FieldValue read_js_field(const Napi::Value& v, model::FieldKind kind, const std::string& what,
                                const char* name);
// E_INVALID_ARGUMENT for a key that is neither a field nor in `extra`.
[[noreturn]] void unknown_option(const std::string& what, const std::string& key,
                                 const std::string& names);

// Sets the fields `value` (an object, or undefined/null for none) names; keys
// whose value is undefined are skipped, keys in `extra` are left for the caller.
template <class T>
void apply_js_options(const Napi::Value& value, const model::Schema<T>& s, T* out,
                      const std::string& what, std::initializer_list<const char*> extra = {}) {
  if (value.IsUndefined() || value.IsNull()) return;
  RECA_CHECK(value.IsObject() && !value.IsArray() && !value.IsFunction(), InvalidArgument,
             "%s must be an object", what.c_str());
  Napi::Object o = value.As<Napi::Object>();
  Napi::Array keys = o.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    const std::string key = keys.Get(i).ToString().Utf8Value();
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) continue;
    bool skip = false;
    for (const char* e : extra) skip = skip || key == e;
    if (skip) continue;
    const model::Field<T>* f = s.find(key);
    if (!f) {
      std::string names;
      for (const model::Field<T>& g : s.fields) names += (names.empty() ? "" : ", ") + std::string(g.name);
      for (const char* e : extra) names += std::string(", ") + e;
      unknown_option(what, key, names);
    }
    const model::FieldValue fv = read_js_field(v, f->kind, what, f->name);
    model::check_field(s, *f, fv, ErrorCode::InvalidArgument);
    f->set(*out, fv);
  }
}

}  // namespace reca::addon
