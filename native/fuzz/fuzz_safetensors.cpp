// Untrusted safetensors bytes: header JSON, offsets, dtypes, shapes, data.
#include <vector>

#include "core/error.h"
#include "core/safetensors.h"
#include "fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const reca::SafetensorsFile f = reca::SafetensorsFile::from_memory(data, size, "fuzz");
    // Every accepted tensor must be readable within the buffer.
    for (const std::string& name : f.names()) {
      const reca::SafetensorsEntry& e = f.get(name);
      volatile uint8_t sink = 0;
      if (e.nbytes > 0) sink = sink ^ e.data[0] ^ e.data[e.nbytes - 1];
      if (e.dtype == reca::StDtype::F32 || e.dtype == reca::StDtype::F16 ||
          e.dtype == reca::StDtype::BF16) {
        int64_t numel = 1;
        for (int64_t d : e.shape) numel *= d;
        if (numel <= (int64_t(1) << 20)) {
          std::vector<float> out(static_cast<size_t>(numel));
          f.read_f32(name, e.shape, out.data());
        }
      }
    }
  } catch (const reca::Error&) {
  }
  return 0;
}
