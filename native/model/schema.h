// One table per schema: the model config (SPEC §1), the trainer options, the
// sampler options, the presets and the special token ids. Each field is
// written once here — its name, kind, allowed range and a one-line doc — and
// its default is the member initialiser of its struct. From these tables:
//  - the addon parses and validates JS options (addon/schema_js.h), so its
//    messages use these names;
//  - checkpoints write and read the config and trainer options (to_json /
//    from_json below: every field required, unknown ones rejected);
//  - info().schema exports every field with its default, from which
//    lib/generated/schema.ts (TypeScript types and defaults) is generated and
//    the CLI help takes its defaults.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/json.h"
#include "model/config.h"
#include "model/sampler.h"
#include "model/trainer.h"

namespace reca::model {

enum class FieldKind { Integer, Number, Boolean, String, Choice, Seed };
const char* field_kind_name(FieldKind k);  // "integer", "number", ...

// A field's value on its way between a struct and JSON or JS.
struct FieldValue {
  double number = 0;  // Integer (exact below 2^53) and Number
  bool boolean = false;
  std::string text;   // String and Choice
  uint64_t seed = 0;  // Seed
};

template <class T>
struct Field {
  const char* name;
  FieldKind kind;
  // Integer / Number: the allowed range; an open end excludes its bound.
  double lo = 0, hi = 0;
  bool lo_open = false, hi_open = false;
  const char* choices = nullptr;  // Choice: "a|b|c"
  const char* doc = "";
  FieldValue (*get)(const T&) = nullptr;
  void (*set)(T&, const FieldValue&) = nullptr;
  // from_json: the field came after checkpoints that lack it; absent, it takes
  // its default (those checkpoints were written with that behaviour).
  bool absent_is_default = false;
};

template <class T>
struct Schema {
  const char* what;  // "config", "trainer option", ... (messages: "<what> <name> ...")
  std::vector<Field<T>> fields;
  const Field<T>* find(const std::string& name) const {
    for (const Field<T>& f : fields)
      if (name == f.name) return &f;
    return nullptr;
  }
};

const Schema<ModelConfig>& config_schema();
const Schema<TrainerOptions>& trainer_schema();
const Schema<SampleOptions>& sampler_schema();

struct PresetEntry {
  const char* name;
  ModelConfig config;  // mode: the default (mask); ModelConfig::preset sets the one asked for
};
const std::vector<PresetEntry>& presets();

struct TokenEntry {
  const char* name;
  int32_t id;
};
const std::vector<TokenEntry>& special_tokens();

// Every schema as one JSON document: {config, trainer, sampler: [{name, kind,
// default, min, max, minOpen, maxOpen, choices, doc}], presets: {name: config},
// tokens: {name: id}}.
std::string schema_json();

// ---- generic operations over a table ------------------------------------------

bool field_choice_ok(const char* choices, const std::string& v);
std::string field_range_text(FieldKind kind, double lo, double hi, bool lo_open, bool hi_open);

// E_<code> "<what> <name> must be ..." when v breaks the field's kind or range.
template <class T>
void check_field(const Schema<T>& s, const Field<T>& f, const FieldValue& v, ErrorCode code) {
  switch (f.kind) {
    case FieldKind::Integer:
    case FieldKind::Number: {
      const double x = v.number;
      const bool ok = std::isfinite(x) && (f.kind == FieldKind::Number || x == std::floor(x)) &&
                      (f.lo_open ? x > f.lo : x >= f.lo) && (f.hi_open ? x < f.hi : x <= f.hi);
      if (!ok)
        fail(code, "%s %s must be %s (got %s)", s.what, f.name,
             field_range_text(f.kind, f.lo, f.hi, f.lo_open, f.hi_open).c_str(),
             std::isfinite(x) ? json_number(x).c_str() : (std::isnan(x) ? "NaN" : "infinity"));
      return;
    }
    case FieldKind::Choice:
      if (!field_choice_ok(f.choices, v.text))
        fail(code, "%s %s must be one of %s (got '%s')", s.what, f.name, f.choices,
             v.text.substr(0, 60).c_str());
      return;
    case FieldKind::String:
      if (v.text.size() > 4096 || !utf8_valid(v.text))
        fail(code, "%s %s must be valid UTF-8 of at most 4096 bytes", s.what, f.name);
      return;
    default: return;
  }
}

// Every field of `o` within its kind and range.
template <class T>
void check_fields(const Schema<T>& s, const T& o, ErrorCode code) {
  for (const Field<T>& f : s.fields) check_field(s, f, f.get(o), code);
}

template <class T>
void write_field_value(JsonWriter& w, const Field<T>& f, const FieldValue& v) {
  switch (f.kind) {
    case FieldKind::Integer: w.integer(static_cast<int64_t>(v.number)); break;
    case FieldKind::Number: w.number(v.number); break;
    case FieldKind::Boolean: w.boolean(v.boolean); break;
    case FieldKind::Seed: w.string(std::to_string(v.seed)); break;  // exact past 2^53
    default: w.string(v.text); break;
  }
}

// {"name": value, ...} in table order.
template <class T>
std::string to_json(const Schema<T>& s, const T& o) {
  JsonWriter w;
  w.begin_object();
  for (const Field<T>& f : s.fields) {
    w.key(f.name);
    write_field_value(w, f, f.get(o));
  }
  w.end_object();
  return w.str();
}

bool parse_u64(const std::string& s, uint64_t* out);

// The inverse of to_json: every field required, unknown ones rejected, each
// within its range (E_<code>, "<context> ..."). Cross-field rules are the
// struct's own validate().
template <class T>
T from_json(const Schema<T>& s, const std::string& json, ErrorCode code, const char* context) {
  if (json.size() > (1u << 20)) fail(code, "%s is %zu bytes, more than 1 MiB", context, json.size());
  JsonReader r(json.data(), json.size(), code, context);
  T o{};
  std::vector<bool> seen(s.fields.size(), false);
  r.read_object([&](std::string&& key) {
    const Field<T>* f = s.find(key);
    if (!f) r.fail("unknown field '" + key.substr(0, 60) + "'");
    const size_t i = static_cast<size_t>(f - s.fields.data());
    if (seen[i]) r.fail("duplicate field '" + key + "'");
    seen[i] = true;
    FieldValue v;
    JsonType t = JsonType::Null;
    r.peek_type(&t);
    auto want = [&](JsonType type, const char* what) {
      if (t != type) r.fail(std::string(f->name) + " must be " + what + ", found " + r.describe());
    };
    switch (f->kind) {
      case FieldKind::Integer: {
        want(JsonType::Number, "an integer");
        const JsonNumber n = r.read_number();
        if (!n.is_int) r.fail(std::string(f->name) + " must be an integer, found a fraction");
        v.number = static_cast<double>(n.i);
        break;
      }
      case FieldKind::Number: want(JsonType::Number, "a number"); v.number = r.read_number().d; break;
      case FieldKind::Boolean: want(JsonType::Bool, "true or false"); v.boolean = r.read_bool(); break;
      case FieldKind::Seed:
        want(JsonType::String, "a decimal string");
        if (!parse_u64(r.read_string(), &v.seed))
          r.fail(std::string(f->name) + " must be a decimal string of an unsigned 64-bit integer");
        break;
      default: want(JsonType::String, "a string"); v.text = r.read_string(); break;
    }
    check_field(s, *f, v, code);
    f->set(o, v);
  });
  r.expect_end();
  for (size_t i = 0; i < s.fields.size(); ++i)
    if (!seen[i] && !s.fields[i].absent_is_default)
      fail(code, "%s has no field '%s'", context, s.fields[i].name);
  return o;
}

struct FieldDifference {
  std::string name, a, b;  // the field and its two values as JSON
};

// The first field (table order) whose values differ between a and b; false
// when every field is equal.
template <class T>
bool first_difference(const Schema<T>& s, const T& a, const T& b, FieldDifference* out) {
  for (const Field<T>& f : s.fields) {
    JsonWriter wa, wb;
    write_field_value(wa, f, f.get(a));
    write_field_value(wb, f, f.get(b));
    if (wa.str() != wb.str()) {
      *out = FieldDifference{f.name, wa.str(), wb.str()};
      return true;
    }
  }
  return false;
}

}  // namespace reca::model
