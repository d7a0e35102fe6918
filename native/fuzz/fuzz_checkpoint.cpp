// Untrusted checkpoint files: the safetensors container plus reca.config,
// reca.trainer, reca.step/seed metadata and the expected-tensor layout. The
// bytes reach load_checkpoint through a memory file, the path users give it.
#include <sys/mman.h>
#include <unistd.h>

#include <string>

#include "core/error.h"
#include "fuzz/fuzz_target.h"
#include "model/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = memfd_create("reca-fuzz-checkpoint", MFD_CLOEXEC);
  if (fd < 0) return 0;
  size_t done = 0;
  while (done < size) {
    const ssize_t n = write(fd, data + done, size - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  if (done == size) {
    try {
      const reca::model::Checkpoint c =
          reca::model::load_checkpoint("/proc/self/fd/" + std::to_string(fd));
      (void)c;
    } catch (const reca::Error&) {
    }
  }
  close(fd);
  return 0;
}
