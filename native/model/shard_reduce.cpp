#include "model/shard_reduce.h"

#include <chrono>
#include <cstring>

#include "core/error.h"

namespace reca::model {

ShardReducer::ShardReducer(Backend& be, std::shared_ptr<Communicator> comm, int64_t n)
    : be_(be), comm_(std::move(comm)), n_(n) {
  if (comm_) N_ = comm_->size(), rank_ = comm_->rank();
  const size_t N = static_cast<size_t>(N_);
  counts_.resize(N);
  displs_.resize(N);
  for (int r = 0; r < N_; ++r) {
    counts_[r] = n / N_ + (r < n % N_ ? 1 : 0);
    displs_[r] = r == 0 ? 0 : displs_[r - 1] + counts_[r - 1];
  }
  const int64_t mine = counts_[static_cast<size_t>(rank_)];
  recv_counts_.assign(N, mine);
  recv_displs_.resize(N);
  for (int r = 0; r < N_; ++r) recv_displs_[r] = r * mine;
  const bool host_backend = std::strcmp(be.name(), "cpu") == 0;
  on_backend_ = !comm_ || comm_->device_memory() || host_backend;
  stage_ = comm_ && !comm_->device_memory() && !host_backend;
  if (on_backend_) {
    acc_ = static_cast<float*>(be_.alloc(mine * 4));
    if (N_ > 1) recv_ = static_cast<float*>(be_.alloc(N_ * mine * 4));
  } else {
    host_acc_.resize(static_cast<size_t>(mine));
    host_recv_.resize(static_cast<size_t>(N_ * mine));
    acc_ = host_acc_.data();
    recv_ = host_recv_.data();
    if (stage_) host_stage_.resize(static_cast<size_t>(n));
  }
  buffer_bytes_ = (mine + (N_ > 1 ? N_ * mine : 0) + (stage_ ? n : 0)) * 4;
}

ShardReducer::~ShardReducer() {
  if (on_backend_) {
    be_.release(acc_);
    if (recv_) be_.release(recv_);
  }
}

void ShardReducer::sum_into_acc(bool first, const float* src) {
  const int64_t mine = counts_[static_cast<size_t>(rank_)];
  if (on_backend_) {
    if (first)
      be_.copy(acc_, src, mine * 4);
    else
      be_.add(acc_, acc_, src, mine);
  } else {
    // IEEE float addition rounds the same on the host as on the device.
    if (first)
      std::memcpy(acc_, src, static_cast<size_t>(mine) * 4);
    else
      for (int64_t i = 0; i < mine; ++i) acc_[i] += src[i];
  }
}

void ShardReducer::add(int64_t j, const float* grads) {
  const auto t0 = std::chrono::steady_clock::now();
  if (N_ == 1) {
    sum_into_acc(j == 0, grads);
  } else {
    const float* send = grads;
    if (stage_) {
      be_.download(host_stage_.data(), grads, n_ * 4);
      send = host_stage_.data();
    }
    comm_->alltoallv(send, counts_.data(), displs_.data(), recv_, recv_counts_.data(),
                     recv_displs_.data());
    const int64_t mine = counts_[static_cast<size_t>(rank_)];
    for (int r = 0; r < N_; ++r) sum_into_acc(j == 0 && r == 0, recv_ + r * mine);
    bytes_sent_ += (n_ - mine) * 4;
  }
  seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void ShardReducer::finish(float* grads) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t mine = counts_[static_cast<size_t>(rank_)];
  const int64_t at = displs_[static_cast<size_t>(rank_)];
  if (N_ == 1) {
    be_.copy(grads, acc_, n_ * 4);
  } else if (stage_) {
    std::memcpy(host_stage_.data() + at, acc_, static_cast<size_t>(mine) * 4);
    comm_->allgatherv(host_stage_.data(), counts_.data(), displs_.data());
    be_.upload(grads, host_stage_.data(), n_ * 4);
  } else {
    if (on_backend_)
      be_.copy(grads + at, acc_, mine * 4);
    else
      std::memcpy(grads + at, acc_, static_cast<size_t>(mine) * 4);
    comm_->allgatherv(grads, counts_.data(), displs_.data());
  }
  if (N_ > 1) bytes_sent_ += mine * 4 * (N_ - 1);
  seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace reca::model
