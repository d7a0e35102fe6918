#include "core/host_buffer.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace reca {

namespace {
size_t page_round(size_t n) {
  static const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  return (n + page - 1) / page * page;
}
}  // namespace

void* host_buffer_alloc(size_t bytes) {
  if (bytes >= kHostBufferMapAtLeast) {
    if (bytes > SIZE_MAX - 2 * kHostBufferMapAtLeast) return nullptr;
    void* m = ::mmap(nullptr, page_round(bytes), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return m == MAP_FAILED ? nullptr : m;  // page aligned, zero filled
  }
  // malloc's block, aligned up inside it; the byte before the aligned pointer
  // holds the offset back (1..64), so free needs nothing else.
  unsigned char* raw = static_cast<unsigned char*>(std::malloc(bytes + kHostBufferAlignment));
  if (!raw) return nullptr;
  const uintptr_t at = reinterpret_cast<uintptr_t>(raw);
  const size_t off = kHostBufferAlignment - at % kHostBufferAlignment;  // 1..64
  unsigned char* p = raw + off;
  p[-1] = static_cast<unsigned char>(off);
  std::memset(p, 0, bytes);
  return p;
}

void host_buffer_free(void* p, size_t bytes) {
  if (!p) return;
  if (bytes >= kHostBufferMapAtLeast) {
    ::munmap(p, page_round(bytes));
    return;
  }
  unsigned char* q = static_cast<unsigned char*>(p);
  std::free(q - q[-1]);
}

}  // namespace reca
