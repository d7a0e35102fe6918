// The gradient of a step as a sum of S shard gradients taken in one fixed
// order (shard 0, 1, ..., S−1), whichever rank computed each shard, so that a
// run on N ranks (N dividing S) gives the same bytes as one process: float
// addition is not associative, and MPI's or NCCL's own allreduce may add in
// any order.
//
// Rank r computes shards r, N + r, 2N + r, ... (its j-th local shard is global
// shard j·N + r). The parameter vector is cut into N blocks; block b is summed
// by rank b: for each j, one all-to-all hands rank b the block b of the shards
// j·N .. j·N + N − 1 (consecutive in the global order), which it adds to its
// running sum in rank order; after the last j, an all-gather gives every rank
// every block. The first shard is copied, not added to zero, so a −0.0 stays
// −0.0 as it does in one process.
//
// Cost per rank and step, P parameters of 4 bytes, k = S/N shards per rank:
// sent (k + 1)·(N − 1)/N·P·4 bytes (k = 1: a ring allreduce's volume); memory
// P + P/N floats (one process: P floats for the running sum).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "model/backend.h"
#include "model/communicator.h"

namespace reca::model {

class ShardReducer {
 public:
  // `comm` null: one process (N = 1). n: floats in a gradient.
  ShardReducer(Backend& be, std::shared_ptr<Communicator> comm, int64_t n);
  ~ShardReducer();
  ShardReducer(const ShardReducer&) = delete;
  ShardReducer& operator=(const ShardReducer&) = delete;

  // This rank's local shard j of the step (backend memory); j from 0 in order.
  void add(int64_t j, const float* grads);
  // The sum of every shard of the step into `grads` (backend memory), on every rank.
  void finish(float* grads);

  int64_t buffer_bytes() const { return buffer_bytes_; }
  // Of the step so far: bytes this rank sent, seconds in collectives and sums.
  int64_t bytes_sent() const { return bytes_sent_; }
  double seconds() const { return seconds_; }
  void reset_stats() { bytes_sent_ = 0, seconds_ = 0; }

 private:
  void sum_into_acc(bool first, const float* src);

  Backend& be_;
  std::shared_ptr<Communicator> comm_;
  int64_t n_;
  int N_ = 1, rank_ = 0;
  bool on_backend_ = true;  // buffers in the backend's memory (else host vectors)
  bool stage_ = false;      // host collectives over a device backend: copy through the host
  std::vector<int64_t> counts_, displs_, recv_counts_, recv_displs_;
  float* acc_ = nullptr;   // this rank's block of the running sum
  float* recv_ = nullptr;  // N blocks of one all-to-all
  std::vector<float> host_acc_, host_recv_, host_stage_;
  int64_t buffer_bytes_ = 0, bytes_sent_ = 0;
  double seconds_ = 0;
};

}  // namespace reca::model
