#include "core/json.h"

#include <charconv>
#include <cmath>
#include <cstdio>

namespace reca {

// ---------------------------------------------------------------- UTF-8

size_t utf8_seq_len(const unsigned char* p, const unsigned char* end) {
  const unsigned char c = p[0];
  if (c < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xbf;  // bounds of the second byte
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c == 0xe0) lo = 0xa0;  // no overlongs
    if (c == 0xed) hi = 0x9f;  // no surrogates
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c == 0xf0) lo = 0x90;  // no overlongs
    if (c == 0xf4) hi = 0x8f;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  if (static_cast<size_t>(end - p) < n) return 0;
  if (p[1] < lo || p[1] > hi) return 0;
  for (size_t i = 2; i < n; ++i)
    if (p[i] < 0x80 || p[i] > 0xbf) return 0;
  return n;
}

bool utf8_valid(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    const size_t n = utf8_seq_len(p, end);
    if (!n) return false;
    p += n;
  }
  return true;
}

namespace {
void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}
}  // namespace

// ---------------------------------------------------------------- writing

std::string json_quote(const std::string& s) {
  static const char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (const char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

std::string json_number(double v) {
  RECA_CHECK(std::isfinite(v), InvalidArgument, "JSON has no representation for %g", v);
  // 17 significant digits round-trip every double; to_chars ignores the locale.
  char buf[40];
  const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general, 17);
  return std::string(buf, r.ptr);
}

const char* json_type_name(JsonType t) {
  switch (t) {
    case JsonType::Null: return "null";
    case JsonType::Bool: return "a boolean";
    case JsonType::Number: return "a number";
    case JsonType::String: return "a string";
    case JsonType::Array: return "an array";
    default: return "an object";
  }
}

// ---------------------------------------------------------------- JsonReader

JsonReader::JsonReader(const void* text, size_t n, ErrorCode code, std::string context,
                       size_t offset_base)
    : code_(code),
      context_(std::move(context)),
      offset_base_(offset_base),
      begin_(static_cast<const uint8_t*>(text)),
      p_(begin_),
      end_(begin_ + n) {}

void JsonReader::fail(const std::string& what) const {
  ::reca::fail(code_, "%s at byte %zu: %s", context_.c_str(), offset_base_ + pos(), what.c_str());
}

void JsonReader::skip_ws() {
  while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
}

std::string JsonReader::describe() const {
  if (p_ >= end_) return "the end of the input";
  const unsigned char c = *p_;
  if (c >= 0x20 && c < 0x7f) return std::string("'") + static_cast<char>(c) + "'";
  char buf[16];
  std::snprintf(buf, sizeof buf, "byte 0x%02x", c);
  return buf;
}

bool JsonReader::peek_type(JsonType* t) {
  skip_ws();
  switch (peek()) {
    case '{': *t = JsonType::Object; return true;
    case '[': *t = JsonType::Array; return true;
    case '"': *t = JsonType::String; return true;
    case 't': case 'f': *t = JsonType::Bool; return true;
    case 'n': *t = JsonType::Null; return true;
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9': *t = JsonType::Number; return true;
    default: return false;
  }
}

void JsonReader::expect(char c) {
  skip_ws();
  if (p_ >= end_) fail(std::string("unexpected end of input, expected '") + c + "'");
  if (*p_ != c) fail(std::string("expected '") + c + "', found " + describe());
  ++p_;
}

uint32_t JsonReader::hex4() {
  if (end_ - p_ < 4) fail("truncated \\u escape");
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) {
    const int c = p_[i];
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else fail("invalid hex digit in \\u escape");
    v = v * 16 + static_cast<uint32_t>(d);
  }
  p_ += 4;
  return v;
}

std::string JsonReader::read_string() {
  skip_ws();
  if (peek() != '"') fail("expected a string, found " + describe());
  ++p_;
  std::string out;
  for (;;) {
    if (p_ >= end_) fail("unterminated string");
    const unsigned char c = *p_;
    if (c == '"') {
      ++p_;
      return out;
    }
    if (c < 0x20) fail("unescaped control character in a string");
    if (c != '\\') {
      const size_t n = utf8_seq_len(p_, end_);
      if (!n) fail("invalid UTF-8 in a string");
      out.append(reinterpret_cast<const char*>(p_), n);
      p_ += n;
      continue;
    }
    ++p_;
    if (p_ >= end_) fail("unterminated string");
    const char e = static_cast<char>(*p_++);
    switch (e) {
      case '"': out += '"'; break;
      case '\\': out += '\\'; break;
      case '/': out += '/'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'u': {
        uint32_t cp = hex4();
        if (cp >= 0xdc00 && cp <= 0xdfff) fail("unpaired low surrogate in \\u escape");
        if (cp >= 0xd800 && cp <= 0xdbff) {
          if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u')
            fail("unpaired high surrogate in \\u escape");
          p_ += 2;
          const uint32_t lo = hex4();
          if (lo < 0xdc00 || lo > 0xdfff) fail("high surrogate not followed by a low surrogate");
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        }
        append_utf8(out, cp);
        break;
      }
      default:
        --p_;
        fail("invalid escape \\" + describe());
    }
  }
}

uint64_t JsonReader::read_uint(const char* what) {
  skip_ws();
  if (peek() == '-') fail(std::string(what) + " must be non-negative");
  if (peek() < '0' || peek() > '9') fail(std::string(what) + ": expected an integer, found " + describe());
  uint64_t v = 0;
  if (*p_ == '0') {
    ++p_;
    if (peek() >= '0' && peek() <= '9') fail(std::string(what) + ": leading zero in an integer");
  } else {
    while (peek() >= '0' && peek() <= '9') {
      const uint64_t d = static_cast<uint64_t>(*p_ - '0');
      if (v > (UINT64_MAX - d) / 10) fail(std::string(what) + ": integer too large");
      v = v * 10 + d;
      ++p_;
    }
  }
  if (peek() == '.' || peek() == 'e' || peek() == 'E')
    fail(std::string(what) + ": expected an integer, found a fraction or exponent");
  return v;
}

JsonNumber JsonReader::read_number() {
  skip_ws();
  const uint8_t* start = p_;
  auto digits = [&] {
    const uint8_t* d0 = p_;
    while (peek() >= '0' && peek() <= '9') ++p_;
    return p_ > d0;
  };
  bool neg = false;
  if (peek() == '-') {
    neg = true;
    ++p_;
  }
  if (peek() == '0') {
    ++p_;
    if (peek() >= '0' && peek() <= '9') fail("leading zero in a number");
  } else if (!digits()) {
    fail("expected a number, found " + describe());
  }
  bool is_int = true;
  if (peek() == '.') {
    ++p_;
    is_int = false;
    if (!digits()) fail("expected a digit after the decimal point, found " + describe());
  }
  if (peek() == 'e' || peek() == 'E') {
    ++p_;
    is_int = false;
    if (peek() == '+' || peek() == '-') ++p_;
    if (!digits()) fail("expected a digit in the exponent, found " + describe());
  }
  JsonNumber n;
  const char* s = reinterpret_cast<const char*>(start);
  const char* e = reinterpret_cast<const char*>(p_);
  if (is_int) {
    // Exact int64 when it fits (accumulated negatively so INT64_MIN fits too).
    int64_t v = 0;
    bool fits = true;
    for (const char* q = s + (neg ? 1 : 0); q < e && fits; ++q)
      fits = !__builtin_mul_overflow(v, 10, &v) && !__builtin_sub_overflow(v, *q - '0', &v);
    if (fits && !neg) {
      fits = v != INT64_MIN;
      if (fits) v = -v;
    }
    if (fits) {
      n.is_int = true;
      n.i = v;
    }
  }
  const auto r = std::from_chars(s, e, n.d);
  if (r.ec != std::errc() || r.ptr != e || !std::isfinite(n.d))
    fail("number " + std::string(s, e).substr(0, 40) + " is out of range");
  return n;
}

bool JsonReader::read_bool() {
  skip_ws();
  if (end_ - p_ >= 4 && std::string(reinterpret_cast<const char*>(p_), 4) == "true") {
    p_ += 4;
    return true;
  }
  if (end_ - p_ >= 5 && std::string(reinterpret_cast<const char*>(p_), 5) == "false") {
    p_ += 5;
    return false;
  }
  fail("expected true or false, found " + describe());
}

void JsonReader::read_null() {
  skip_ws();
  if (end_ - p_ >= 4 && std::string(reinterpret_cast<const char*>(p_), 4) == "null") {
    p_ += 4;
    return;
  }
  fail("expected null, found " + describe());
}

// ---------------------------------------------------------------- skip_value

void JsonReader::skip_value(size_t max_depth, size_t depth) {
  JsonType t;
  if (!peek_type(&t)) {
    if (at_end()) fail("unexpected end of input, expected a value");
    fail("expected a value, found " + describe());
  }
  switch (t) {
    case JsonType::Null: read_null(); return;
    case JsonType::Bool: read_bool(); return;
    case JsonType::Number: read_number(); return;
    case JsonType::String: read_string(); return;
    default: break;
  }
  // Recursion is bounded by max_depth, checked before each level.
  if (depth >= max_depth) fail("nesting deeper than " + std::to_string(max_depth) + " levels");
  if (t == JsonType::Array) {
    read_array("an array", [&] { skip_value(max_depth, depth + 1); });
    return;
  }
  std::vector<std::string> keys;
  read_object([&](std::string&& key) {
    for (const std::string& k : keys)
      if (k == key) fail("duplicate key " + json_quote(key).substr(0, 120));
    keys.push_back(std::move(key));
    skip_value(max_depth, depth + 1);
  });
}

void JsonReader::expect_end() {
  skip_ws();
  if (!at_end()) fail("unexpected bytes after the document, found " + describe());
}

void json_validate(const std::string& text, ErrorCode code, const std::string& context,
                   size_t max_depth, size_t max_bytes) {
  if (text.size() > max_bytes)
    fail(code, "%s: %zu bytes, more than the %zu-byte limit", context.c_str(), text.size(),
         max_bytes);
  JsonReader r(text.data(), text.size(), code, context);
  r.skip_ws();
  r.skip_value(max_depth);
  r.expect_end();
}

// ---------------------------------------------------------------- JsonWriter

void JsonWriter::separate() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!first_.empty()) {
    if (!first_.back()) out_ += ',';
    first_.back() = false;
  }
}

JsonWriter& JsonWriter::open(char bracket) {
  separate();
  out_ += bracket;
  first_.push_back(true);
  return *this;
}

JsonWriter& JsonWriter::close(char bracket) {
  first_.pop_back();
  out_ += bracket;
  return *this;
}

JsonWriter& JsonWriter::key(const std::string& k) {
  separate();
  out_ += json_quote(k);
  out_ += ':';
  after_key_ = true;
  return *this;
}

JsonWriter& JsonWriter::null() {
  separate();
  out_ += "null";
  return *this;
}

JsonWriter& JsonWriter::boolean(bool b) {
  separate();
  out_ += b ? "true" : "false";
  return *this;
}

JsonWriter& JsonWriter::number(double d) {
  separate();
  out_ += json_number(d);
  return *this;
}

JsonWriter& JsonWriter::integer(int64_t i) {
  separate();
  out_ += std::to_string(i);
  return *this;
}

JsonWriter& JsonWriter::string(const std::string& s) {
  separate();
  out_ += json_quote(s);
  return *this;
}

JsonWriter& JsonWriter::raw(const std::string& json) {
  separate();
  out_ += json;
  return *this;
}

}  // namespace reca
