// A bump allocator for one step's activations, on the backend's memory. take()
// never moves earlier allocations (new chunks are added when one fills up);
// reset() rewinds, and folds several chunks into one big enough for the last
// step, so steady-state steps allocate nothing.
#pragma once
#include <cstdint>
#include <vector>

#include "model/backend.h"

namespace reca::model {

class Arena {
 public:
  explicit Arena(Backend& be) : be_(be) {}
  ~Arena() { free_all(); }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  float* floats(int64_t n) { return static_cast<float*>(take(n * 4)); }
  int32_t* ints(int64_t n) { return static_cast<int32_t*>(take(n * 4)); }
  uint8_t* bytes(int64_t n) { return static_cast<uint8_t*>(take(n)); }
  float* zeros(int64_t n) {
    float* p = floats(n);
    be_.zero(p, n * 4);
    return p;
  }

  void* take(int64_t bytes) {
    bytes = (bytes + 63) / 64 * 64;
    if (bytes == 0) bytes = 64;
    if (chunks_.empty() || chunks_.back().used + bytes > chunks_.back().size) {
      const int64_t size = bytes > kMinChunk ? bytes : kMinChunk;
      chunks_.push_back({static_cast<char*>(be_.alloc(size)), size, 0});
    }
    Chunk& c = chunks_.back();
    void* p = c.base + c.used;
    c.used += bytes;
    peak_ = used() > peak_ ? used() : peak_;
    return p;
  }

  void reset() {
    if (chunks_.size() > 1) {
      int64_t total = 0;
      for (auto& c : chunks_) total += c.used;
      free_all();
      chunks_.push_back({static_cast<char*>(be_.alloc(total)), total, 0});
    } else if (!chunks_.empty()) {
      chunks_.back().used = 0;
    }
  }

  int64_t used() const {
    int64_t u = 0;
    for (auto& c : chunks_) u += c.used;
    return u;
  }
  int64_t peak() const { return peak_; }

 private:
  struct Chunk {
    char* base;
    int64_t size, used;
  };
  static constexpr int64_t kMinChunk = 1 << 20;
  void free_all() {
    for (auto& c : chunks_) be_.release(c.base);
    chunks_.clear();
  }
  Backend& be_;
  std::vector<Chunk> chunks_;
  int64_t peak_ = 0;
};

}  // namespace reca::model
