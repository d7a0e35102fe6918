// The RecA template bank (SPEC §5): paraphrases of "describe the image" drawn
// per sample, so that the generator ties the reconstruction to the image
// embeddings rather than to one fixed string.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace reca::model {

// Every lead × object × tail combination of at most max_len bytes, in that
// nesting order (lead outermost); "describe the image" is entry 0.
std::vector<std::string> template_paraphrases(int64_t max_len);

}  // namespace reca::model
