// Typed engine errors. Every failure that reaches a user carries a stable code
// (E_SHAPE, E_DTYPE, ...) so JS can branch on it; the message says what to do.
#pragma once
#include <stdexcept>
#include <string>

namespace reca {

enum class ErrorCode {
  InvalidArgument,
  Shape,
  Dtype,
  Disposed,
  OutOfMemory,
  Device,
  Cuda,
  Checkpoint,
  Io,
  Numeric,
  Busy,
  Load,
  Internal,
};

// "E_INVALID_ARGUMENT", "E_SHAPE", ... (stable; part of the public API).
const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

// printf-style message; always throws reca::Error.
[[noreturn]] void fail(ErrorCode code, const char* fmt, ...)
    __attribute__((format(printf, 2, 3)));

}  // namespace reca

#define RECA_CHECK(cond, code, ...)                         \
  do {                                                      \
    if (!(cond)) ::reca::fail(::reca::ErrorCode::code, __VA_ARGS__); \
  } while (0)
