// The ranks of a data-parallel run and the few collectives the trainer needs.
// MPI (core/mpi_loader) moves host buffers; an NCCL communicator would move the
// backend's device buffers (device_memory() true). The trainer builds its
// fixed-order gradient sum (model/shard_reduce) on these, never on a
// library's own allreduce, whose summation order is unspecified.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

namespace reca::model {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string describe() const = 0;
  // Whether the float collectives take the backend's device pointers.
  virtual bool device_memory() const = 0;
  // Block r of `send` (counts/displs in floats) goes to rank r; rank r's block
  // for this rank lands at recv + recv_displs[r].
  virtual void alltoallv(const float* send, const int64_t* send_counts,
                         const int64_t* send_displs, float* recv, const int64_t* recv_counts,
                         const int64_t* recv_displs) = 0;
  // In place: every rank's block buf[displs[r], +counts[r]) to every rank.
  virtual void allgatherv(float* buf, const int64_t* counts, const int64_t* displs) = 0;
  // `bytes` from every rank, in rank order, into all[size · bytes] (host memory).
  virtual void allgather_bytes(const void* mine, int64_t bytes, void* all) = 0;
  virtual void barrier() = 0;
};

// MPI_COMM_WORLD; initialises MPI on the calling thread (the engine thread).
std::shared_ptr<Communicator> mpi_world();

// NCCL over the ranks of `host` (one GPU each: the calling thread's current
// device), its unique id sent over `host`; float collectives take device
// pointers and run in order on `stream` (the backend's cudaStream_t). Byte
// gathers and barriers stay on `host`.
std::shared_ptr<Communicator> nccl_world(std::shared_ptr<Communicator> host, void* stream);

}  // namespace reca::model
