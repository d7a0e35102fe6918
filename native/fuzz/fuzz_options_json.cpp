// Untrusted JSON documents: the strict reader on any document, then the
// schema-directed readers of the model config and the trainer options (what
// a checkpoint's metadata holds). The first byte picks the reader.
#include <string>

#include "core/error.h"
#include "core/json.h"
#include "fuzz/fuzz_target.h"
#include "model/checkpoint.h"
#include "model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    switch (data[0] % 3) {
      case 0: reca::json_validate(text, reca::ErrorCode::InvalidArgument); break;
      case 1: (void)reca::model::ModelConfig::from_json(text); break;
      default: (void)reca::model::trainer_options_from_json(text); break;
    }
  } catch (const reca::Error&) {
  }
  return 0;
}
