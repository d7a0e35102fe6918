#include "core/error.h"

#include <cstdarg>
#include <cstdio>

namespace reca {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidArgument: return "E_INVALID_ARGUMENT";
    case ErrorCode::Shape: return "E_SHAPE";
    case ErrorCode::Dtype: return "E_DTYPE";
    case ErrorCode::Disposed: return "E_DISPOSED";
    case ErrorCode::OutOfMemory: return "E_OUT_OF_MEMORY";
    case ErrorCode::Device: return "E_DEVICE";
    case ErrorCode::Cuda: return "E_CUDA";
    case ErrorCode::Checkpoint: return "E_CHECKPOINT";
    case ErrorCode::Io: return "E_IO";
    case ErrorCode::Numeric: return "E_NUMERIC";
    case ErrorCode::Busy: return "E_BUSY";
    case ErrorCode::Load: return "E_LOAD";
    case ErrorCode::Internal: return "E_INTERNAL";
  }
  return "E_INTERNAL";
}

void fail(ErrorCode code, const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  throw Error(code, buf);
}

}  // namespace reca
