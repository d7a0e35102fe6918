#include "model/communicator.h"

#include "core/mpi_loader.h"

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

}  // namespace

std::shared_ptr<Communicator> mpi_world() { return std::make_shared<MpiCommunicator>(); }

}  // namespace reca::model
