// Strict JSON (RFC 8259) for headers, configs and checkpoint metadata.
//
// Three pieces, one grammar:
//  - JsonReader: a pull reader over bytes in memory. It never recurses and
//    never builds anything, so a schema-directed reader (the safetensors
//    header) can reject a value at its first byte with a message of its own,
//    whatever follows (200000 nested '[' cost nothing).
//    Configs and options are read field by field through their schema tables
//    (model/schema.h); json_validate() checks a whole document and drops it.
//  - JsonWriter (with json_quote() / json_number()): compact writing, the one
//    writer of every JSON the engine emits.
//
// Strictness: UTF-8 only (no overlongs, surrogates or code points above
// U+10FFFF), every escape checked (\u surrogates must pair), no control
// characters in strings, no leading zeros, no NaN/Infinity, no trailing
// commas, no duplicate object keys (skip_value), nothing but whitespace after
// the document. Every failure is a reca::Error with the caller's code and
// context and the byte offset of the fault.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"

namespace reca {

// Length of the well-formed UTF-8 sequence at p (RFC 3629), or 0.
size_t utf8_seq_len(const unsigned char* p, const unsigned char* end);
bool utf8_valid(const std::string& s);

// The JSON string literal for s (quotes included), escaped as the reference
// safetensors writer does: \" \\ \b \f \n \r \t, other controls as \u00XX,
// the rest raw (s should be valid UTF-8).
std::string json_quote(const std::string& s);
// A JSON number with 17 significant digits (exact: parsing it gives v back),
// locale-independent. E_INVALID_ARGUMENT when v is not finite.
std::string json_number(double v);

enum class JsonType { Null, Bool, Number, String, Array, Object };
const char* json_type_name(JsonType t);  // "null", "a boolean", "a number", ...

// A number as written: `is_int` when the literal has no fraction or exponent
// and fits int64 (then `i` is exact and `d` is i correctly rounded; "-0" is
// the integer 0 and the double -0.0).
struct JsonNumber {
  double d = 0;
  int64_t i = 0;
  bool is_int = false;
};

class JsonReader {
 public:
  // Failures: reca::Error(code, "<context> at byte <offset_base + pos>: <problem>").
  JsonReader(const void* text, size_t n, ErrorCode code, std::string context,
             size_t offset_base = 0);

  [[noreturn]] void fail(const std::string& what) const;
  void skip_ws();
  int peek() const { return p_ < end_ ? *p_ : -1; }  // next byte, or -1 at the end
  bool at_end() const { return p_ >= end_; }
  size_t pos() const { return static_cast<size_t>(p_ - begin_); }
  // The next byte for messages: "'x'", "byte 0x8f" or "the end of the input".
  std::string describe() const;
  // After whitespace: the type the next value's first byte announces, false
  // when no value can start there (does not consume anything).
  bool peek_type(JsonType* t);
  // After whitespace, the byte c (else fails naming what was found).
  void expect(char c);

  // { "key": value, ... }: on_key(std::string&& key) is called with the
  // reader positioned at the value, which it must consume. Keys may repeat;
  // the caller decides (schema readers and skip_value reject repeats).
  template <class F>
  void read_object(F&& on_key) {
    expect('{');
    skip_ws();
    if (peek() == '}') {
      ++p_;
      return;
    }
    for (;;) {
      skip_ws();
      if (peek() != '"') fail("expected a string key, found " + describe());
      std::string key = read_string();
      expect(':');
      skip_ws();
      on_key(std::move(key));
      skip_ws();
      if (peek() == ',') {
        ++p_;
        continue;
      }
      if (peek() == '}') {
        ++p_;
        return;
      }
      fail("expected ',' or '}', found " + describe());
    }
  }

  // [ value, ... ]: on_item() is called positioned at each value and must
  // consume it. `what` names the array in messages.
  template <class F>
  void read_array(const char* what, F&& on_item) {
    skip_ws();
    if (peek() != '[') fail(std::string(what) + " must be an array, found " + describe());
    ++p_;
    skip_ws();
    if (peek() == ']') {
      ++p_;
      return;
    }
    for (;;) {
      skip_ws();
      on_item();
      skip_ws();
      if (peek() == ',') {
        ++p_;
        continue;
      }
      if (peek() == ']') {
        ++p_;
        return;
      }
      fail(std::string(what) + ": expected ',' or ']', found " + describe());
    }
  }

  // A string value (decoded to UTF-8).
  std::string read_string();
  // A non-negative integer literal (no sign, fraction or exponent) up to
  // UINT64_MAX; `what` names it in messages.
  uint64_t read_uint(const char* what);
  // Any number (RFC 8259 grammar); fails when it overflows a double.
  JsonNumber read_number();
  bool read_bool();
  void read_null();
  // Reads one value of any type and drops it (no duplicate keys; nesting at
  // most max_depth, checked before each level, so hostile input costs its length).
  void skip_value(size_t max_depth = 64, size_t depth = 0);
  // Nothing but whitespace may follow.
  void expect_end();

 private:
  uint32_t hex4();

  ErrorCode code_;
  std::string context_;
  size_t offset_base_;
  const uint8_t* begin_;
  const uint8_t* p_;
  const uint8_t* end_;
};

// One whole document (whitespace around it allowed) checked for strictness
// and discarded: size at most max_bytes, nesting at most max_depth, no
// duplicate keys. Failures as the reader's.
void json_validate(const std::string& text, ErrorCode code, const std::string& context = "JSON",
                   size_t max_depth = 64, size_t max_bytes = size_t(1) << 26);

// Compact writing (no spaces), one value after another: the writer puts the
// commas; begin/end pair up. Numbers as json_number (17 digits, exact),
// integers exactly, strings as json_quote.
class JsonWriter {
 public:
  JsonWriter& begin_object() { return open('{'); }
  JsonWriter& end_object() { return close('}'); }
  JsonWriter& begin_array() { return open('['); }
  JsonWriter& end_array() { return close(']'); }
  JsonWriter& key(const std::string& k);  // in an object, before each value
  JsonWriter& null();
  JsonWriter& boolean(bool b);
  JsonWriter& number(double d);  // E_INVALID_ARGUMENT when not finite
  JsonWriter& integer(int64_t i);
  JsonWriter& string(const std::string& s);
  JsonWriter& raw(const std::string& json);  // an already-written value
  const std::string& str() const { return out_; }

 private:
  void separate();
  JsonWriter& open(char bracket);
  JsonWriter& close(char bracket);
  std::string out_;
  std::vector<bool> first_;  // per open container: no value written yet
  bool after_key_ = false;
};

}  // namespace reca
