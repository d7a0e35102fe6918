#include "model/communicator.h"

#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/mpi_loader.h"
#include "core/nccl_loader.h"

namespace reca::model {

namespace {

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator() { mpi::init(&rank_, &size_); }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string describe() const override {
    const mpi::Probe p = mpi::probe();
    return "mpi (" + (p.version.empty() ? p.library : p.version) + ")";
  }
  bool device_memory() const override { return false; }
  void alltoallv(const float* send, const int64_t* sc, const int64_t* sd, float* recv,
                 const int64_t* rc, const int64_t* rd) override {
    mpi::alltoallv_floats(send, sc, sd, recv, rc, rd);
  }
  void allgatherv(float* buf, const int64_t* counts, const int64_t* displs) override {
    mpi::allgatherv_floats_in_place(buf, counts, displs);
  }
  void allgather_bytes(const void* mine, int64_t bytes, void* all) override {
    mpi::allgather_bytes(mine, bytes, all);
  }
  void barrier() override { mpi::barrier(); }

 private:
  int rank_ = 0, size_ = 1;
};

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(std::shared_ptr<Communicator> host, void* stream)
      : host_(std::move(host)), stream_(stream) {
    // Rank 0 makes the id; a leading status byte lets every rank fail together.
    constexpr int kBytes = 1 + nccl::kUniqueIdBytes;
    char mine[kBytes] = {};
    std::string error;
    if (host_->rank() == 0) {
      try {
        nccl::unique_id(mine + 1);
        mine[0] = 1;
      } catch (const Error& e) {
        error = e.what();
      }
    }
    std::vector<char> all(static_cast<size_t>(kBytes) * static_cast<size_t>(host_->size()));
    host_->allgather_bytes(mine, kBytes, all.data());
    RECA_CHECK(all[0] == 1, Device, "rank 0 could not make an NCCL id%s%s",
               error.empty() ? "" : ": ", error.c_str());
    comm_ = nccl::comm_init(host_->size(), host_->rank(), all.data() + 1);
  }
  ~NcclCommunicator() override { nccl::comm_destroy(comm_); }
  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  std::string describe() const override {
    return "nccl " + std::to_string(nccl::probe().version) + " (id over " + host_->describe() + ")";
  }
  bool device_memory() const override { return true; }
  void alltoallv(const float* send, const int64_t* sc, const int64_t* sd, float* recv,
                 const int64_t* rc, const int64_t* rd) override {
    nccl::group_start();
    for (int r = 0; r < size(); ++r) {
      if (sc[r] > 0) nccl::send_floats(send + sd[r], sc[r], r, comm_, stream_);
      if (rc[r] > 0) nccl::recv_floats(recv + rd[r], rc[r], r, comm_, stream_);
    }
    nccl::group_end();
  }
  void allgatherv(float* buf, const int64_t* counts, const int64_t* displs) override {
    // NCCL has no all-gather of unequal blocks: one broadcast per block.
    nccl::group_start();
    for (int r = 0; r < size(); ++r)
      if (counts[r] > 0) nccl::broadcast_floats(buf + displs[r], counts[r], r, comm_, stream_);
    nccl::group_end();
  }
  void allgather_bytes(const void* mine, int64_t bytes, void* all) override {
    host_->allgather_bytes(mine, bytes, all);
  }
  void barrier() override { host_->barrier(); }

 private:
  std::shared_ptr<Communicator> host_;
  void* stream_;
  void* comm_ = nullptr;
};

}  // namespace

std::shared_ptr<Communicator> nccl_world(std::shared_ptr<Communicator> host, void* stream) {
  return std::make_shared<NcclCommunicator>(std::move(host), stream);
}

std::shared_ptr<Communicator> mpi_world() { return std::make_shared<MpiCommunicator>(); }

}  // namespace reca::model
