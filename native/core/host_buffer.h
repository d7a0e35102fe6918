// 64-byte aligned host buffers for tensors that are created and freed at a
// high rate (JS Tensor create/dispose). posix_memalign splits each chunk and
// leaves its alignment slack as odd-sized free fragments; with glibc's tcache
// those never coalesce, and 20,000 create/dispose of a 256 KB tensor grew RSS
// to 5 GB with no tensor alive. Here large buffers are mapped (and unmapped
// at once), small ones come from plain malloc with a recorded offset, so a
// freed block is reused as is by the next request of its size.
#pragma once
#include <cstddef>

namespace reca {

constexpr size_t kHostBufferAlignment = 64;
// Buffers of at least this many bytes are mapped: zeroed by the kernel and
// returned to it on free.
constexpr size_t kHostBufferMapAtLeast = size_t(128) << 10;

// `bytes` zeroed bytes, 64-byte aligned; a valid pointer also for 0 bytes.
// nullptr when the memory cannot be had.
void* host_buffer_alloc(size_t bytes);
// p from host_buffer_alloc(bytes), with the same bytes; null is ignored.
void host_buffer_free(void* p, size_t bytes);

}  // namespace reca
