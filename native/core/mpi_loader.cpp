#include "core/mpi_loader.h"

#include <dlfcn.h>

#include <climits>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "core/dynlib.h"
#include "core/error.h"

namespace reca::mpi {

namespace {

// OpenMPI's ABI: handles are pointers to its predefined objects.
using Handle = void*;
using InitThreadFn = int (*)(int*, char***, int, int*);
using IntFn = int (*)(int*);
using VoidFn = int (*)();
using CommIntFn = int (*)(Handle, int*);
using AlltoallvFn = int (*)(const void*, const int*, const int*, Handle, void*, const int*,
                            const int*, Handle, Handle);
using AllgathervFn = int (*)(const void*, int, Handle, void*, const int*, const int*, Handle,
                             Handle);
using AllgatherFn = int (*)(const void*, int, Handle, void*, int, Handle, Handle);
using BarrierFn = int (*)(Handle);
using AbortFn = int (*)(Handle, int);
using VersionFn = int (*)(char*, int*);

constexpr int kThreadFunneled = 1;  // MPI_THREAD_FUNNELED in OpenMPI's mpi.h
void* const kInPlace = reinterpret_cast<void*>(1);  // MPI_IN_PLACE in OpenMPI's mpi.h

struct Api {
  Probe probe;
  InitThreadFn init_thread = nullptr;
  IntFn initialized = nullptr, finalized = nullptr;
  VoidFn finalize = nullptr;
  CommIntFn comm_rank = nullptr, comm_size = nullptr;
  AlltoallvFn alltoallv = nullptr;
  AllgathervFn allgatherv = nullptr;
  AllgatherFn allgather = nullptr;
  BarrierFn barrier = nullptr;
  AbortFn abort = nullptr;
  VersionFn version = nullptr;
  Handle world = nullptr, mpi_float = nullptr, mpi_byte = nullptr;
};

std::mutex g_mutex;
std::thread::id g_owner;  // the thread that initialised MPI
bool g_finalized = false;

Api load() {
  Api a;
  a.probe.launched = launched();
  // RECA_MPI_LIB names the one file to try (another OpenMPI install).
  // RTLD_GLOBAL: OpenMPI's own plugins (mca_*.so) resolve libmpi's symbols.
  const DynLib lib = open_first_library({"libmpi.so.40", "libmpi.so"}, RTLD_NOW | RTLD_GLOBAL, "RECA_MPI_LIB");
  void* h = lib.handle;
  if (!h) {
    a.probe.error = "no OpenMPI library (" + lib.errors + ")";
    return a;
  }
  a.probe.library = lib.name;
  bool ok = true;
  auto sym = [&](const char* name) {
    void* p = dlsym(h, name);
    if (!p) ok = false;
    return p;
  };
  a.init_thread = reinterpret_cast<InitThreadFn>(sym("MPI_Init_thread"));
  a.initialized = reinterpret_cast<IntFn>(sym("MPI_Initialized"));
  a.finalized = reinterpret_cast<IntFn>(sym("MPI_Finalized"));
  a.finalize = reinterpret_cast<VoidFn>(sym("MPI_Finalize"));
  a.comm_rank = reinterpret_cast<CommIntFn>(sym("MPI_Comm_rank"));
  a.comm_size = reinterpret_cast<CommIntFn>(sym("MPI_Comm_size"));
  a.alltoallv = reinterpret_cast<AlltoallvFn>(sym("MPI_Alltoallv"));
  a.allgatherv = reinterpret_cast<AllgathervFn>(sym("MPI_Allgatherv"));
  a.allgather = reinterpret_cast<AllgatherFn>(sym("MPI_Allgather"));
  a.barrier = reinterpret_cast<BarrierFn>(sym("MPI_Barrier"));
  a.abort = reinterpret_cast<AbortFn>(sym("MPI_Abort"));
  a.version = reinterpret_cast<VersionFn>(sym("MPI_Get_library_version"));
  a.world = sym("ompi_mpi_comm_world");
  a.mpi_float = sym("ompi_mpi_float");
  a.mpi_byte = sym("ompi_mpi_byte");
  if (!ok) {
    a.probe.error = a.probe.library +
                    " is not OpenMPI (no ompi_mpi_comm_world or a missing MPI function); only "
                    "OpenMPI's ABI is supported";
    return a;
  }
  a.probe.available = true;
  return a;
}

Api& api() {
  static Api a = load();  // thread-safe one-time load
  return a;
}

// The API ready for a collective on this thread.
Api& ready() {
  Api& a = api();
  std::lock_guard<std::mutex> lock(g_mutex);
  RECA_CHECK(a.probe.initialized && !g_finalized, Internal, "MPI is not running");
  RECA_CHECK(std::this_thread::get_id() == g_owner, Internal,
             "MPI was called from a thread other than the one that initialised it");
  return a;
}

int as_int(int64_t n, const char* what) {
  RECA_CHECK(n >= 0 && n <= INT_MAX, InvalidArgument,
             "%s of %lld elements does not fit one MPI call (at most %d)", what,
             static_cast<long long>(n), INT_MAX);
  return static_cast<int>(n);
}

void check(int rc, const char* what) {
  // MPI's default error handler aborts the job first; this is for the other one.
  RECA_CHECK(rc == 0, Device, "%s failed (MPI error %d)", what, rc);
}

}  // namespace

bool launched() {
  // mpirun (OpenMPI, and PMIx launchers) sets these in every rank it starts.
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr;
}

Probe probe() {
  Api& a = api();
  std::lock_guard<std::mutex> lock(g_mutex);
  return a.probe;
}

void init(int* rank, int* size) {
  Api& a = api();
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!a.probe.available)
    fail(ErrorCode::Device,
         "distributed training needs OpenMPI, which is not available here (%s): install it "
         "(Debian/Ubuntu: apt-get install openmpi-bin libopenmpi3) and launch with "
         "`mpirun -np N npx reca train ...`, or pass distributed 'off'",
         a.probe.error.c_str());
  if (a.probe.initialized) {
    RECA_CHECK(std::this_thread::get_id() == g_owner, Device,
               "MPI was initialised by another engine thread of this process; one process "
               "trains on MPI from one engine (one Node environment) only");
    *rank = a.probe.rank;
    *size = a.probe.size;
    return;
  }
  RECA_CHECK(!g_finalized, Device, "MPI was already finalised in this process");
  int flag = 0;
  a.initialized(&flag);
  RECA_CHECK(!flag, Device, "MPI was initialised by someone else in this process");
  int provided = 0;
  check(a.init_thread(nullptr, nullptr, kThreadFunneled, &provided), "MPI_Init_thread");
  RECA_CHECK(provided >= kThreadFunneled, Device,
             "this MPI offers thread level %d; reca-engine needs MPI_THREAD_FUNNELED (1)",
             provided);
  g_owner = std::this_thread::get_id();
  a.probe.initialized = true;
  check(a.comm_rank(a.world, &a.probe.rank), "MPI_Comm_rank");
  check(a.comm_size(a.world, &a.probe.size), "MPI_Comm_size");
  std::vector<char> v(8192, 0);  // > MPI_MAX_LIBRARY_VERSION_STRING
  int len = 0;
  if (a.version(v.data(), &len) == 0) {
    std::string s(v.data());
    a.probe.version = s.substr(0, s.find_first_of("\n,"));
  }
  *rank = a.probe.rank;
  *size = a.probe.size;
}

void alltoallv_floats(const float* send, const int64_t* send_counts, const int64_t* send_displs,
                      float* recv, const int64_t* recv_counts, const int64_t* recv_displs) {
  Api& a = ready();
  const size_t n = static_cast<size_t>(a.probe.size);
  std::vector<int> sc(n), sd(n), rc(n), rd(n);
  for (size_t r = 0; r < n; ++r) {
    sc[r] = as_int(send_counts[r], "an all-to-all block");
    sd[r] = as_int(send_displs[r], "an all-to-all offset");
    rc[r] = as_int(recv_counts[r], "an all-to-all block");
    rd[r] = as_int(recv_displs[r], "an all-to-all offset");
  }
  check(a.alltoallv(send, sc.data(), sd.data(), a.mpi_float, recv, rc.data(), rd.data(),
                    a.mpi_float, a.world),
        "MPI_Alltoallv");
}

void allgatherv_floats_in_place(float* buf, const int64_t* counts, const int64_t* displs) {
  Api& a = ready();
  const size_t n = static_cast<size_t>(a.probe.size);
  std::vector<int> c(n), d(n);
  for (size_t r = 0; r < n; ++r) {
    c[r] = as_int(counts[r], "an all-gather block");
    d[r] = as_int(displs[r], "an all-gather offset");
  }
  check(a.allgatherv(kInPlace, 0, a.mpi_float, buf, c.data(), d.data(), a.mpi_float, a.world),
        "MPI_Allgatherv");
}

void allgather_bytes(const void* mine, int64_t bytes, void* all) {
  Api& a = ready();
  const int n = as_int(bytes, "an all-gather block");
  check(a.allgather(mine, n, a.mpi_byte, all, n, a.mpi_byte, a.world), "MPI_Allgather");
}

void barrier() {
  Api& a = ready();
  check(a.barrier(a.world), "MPI_Barrier");
}

void abort_all(int code) {
  Api& a = api();
  if (a.probe.available && a.probe.initialized && !g_finalized) a.abort(a.world, code);
  std::_Exit(code);
}

void finalize_if_owner() {
  Api& a = api();
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!a.probe.initialized || g_finalized || std::this_thread::get_id() != g_owner) return;
  a.finalize();
  g_finalized = true;
}

}  // namespace reca::mpi
