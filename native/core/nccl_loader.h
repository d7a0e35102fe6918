// NCCL, loaded at run time (dlopen of libnccl.so.2) like OpenMPI, so no build
// depends on it; nccl.h is never included (its ABI: ncclUniqueId is 128 bytes,
// ncclComm_t a pointer, ncclFloat32 = 7, ncclSuccess = 0).
#pragma once
#include <cstdint>
#include <string>

namespace reca::nccl {

struct Probe {
  bool available = false;
  std::string library;
  int version = 0;  // ncclGetVersion, e.g. 22304
  std::string error;
};

// Loads libnccl if not tried yet (RECA_NCCL_LIB names another file).
Probe probe();

constexpr int kUniqueIdBytes = 128;

// A communicator of `size` ranks on the calling thread's current CUDA device.
// Rank 0 makes the id (unique_id) and every rank passes the same bytes.
void unique_id(void* out);  // kUniqueIdBytes
void* comm_init(int size, int rank, const void* id);
void comm_destroy(void* comm) noexcept;

// Enqueued on `stream` (a cudaStream_t); counts in floats.
void group_start();
void group_end();
void send_floats(const float* buf, int64_t count, int peer, void* comm, void* stream);
void recv_floats(float* buf, int64_t count, int peer, void* comm, void* stream);
void broadcast_floats(float* buf, int64_t count, int root, void* comm, void* stream);

}  // namespace reca::nccl
