#include "model/templates.h"

namespace reca::model {

std::vector<std::string> template_paraphrases(int64_t max_len) {
  static const char* const kLeads[] = {"describe", "summarize", "explain", "detail", "outline",
                                       "characterize", "caption", "narrate", "report on",
                                       "comment on"};
  static const char* const kObjects[] = {"the image", "this image", "the picture", "this picture",
                                         "the scene", "this scene", "the photo", "this photo",
                                         "what you see", "the contents"};
  static const char* const kTails[] = {"", " briefly", " in detail", " in a few words",
                                       " precisely", " for me", " please", " in one sentence"};
  std::vector<std::string> out;
  for (const char* lead : kLeads)
    for (const char* object : kObjects)
      for (const char* tail : kTails) {
        std::string s = std::string(lead) + " " + object + tail;
        if (static_cast<int64_t>(s.size()) <= max_len) out.push_back(std::move(s));
      }
  return out;
}

}  // namespace reca::model
