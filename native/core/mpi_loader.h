// OpenMPI, loaded at run time (dlopen), so the addon builds and runs where no
// MPI is installed; mpi.h is never included. OpenMPI's handles (MPI_COMM_WORLD,
// MPI_FLOAT, ...) are the addresses of its exported globals, found with dlsym.
//
// MPI is initialised once per process, on the thread that first asks for it
// (the engine thread), with MPI_THREAD_FUNNELED: every later call must come
// from that same thread, which is checked. finalize_if_owner() ends it from
// that thread (the engine thread calls it as it exits).
#pragma once
#include <cstdint>
#include <string>

namespace reca::mpi {

struct Probe {
  bool available = false;  // libmpi loaded and every symbol found
  std::string library;     // the file that was loaded
  std::string version;     // MPI_Get_library_version's first line (after init) or ""
  std::string error;       // why not available
  bool launched = false;   // this process was started by mpirun (OMPI_COMM_WORLD_SIZE set)
  bool initialized = false;
  int rank = 0, size = 1;
};

// Loads libmpi if it has not been tried yet; never initialises MPI.
Probe probe();

// Whether the environment says a launcher started this process.
bool launched();

// Initialises MPI on this thread (idempotent) and returns the world's rank and
// size. E_DEVICE (as for a CUDA device that is absent) when libmpi is missing,
// with what to install, or when MPI cannot start here.
void init(int* rank, int* size);

// Collectives over MPI_COMM_WORLD (after init(), from the init thread).
// Counts and displacements are in elements; each must fit an int.
void alltoallv_floats(const float* send, const int64_t* send_counts, const int64_t* send_displs,
                      float* recv, const int64_t* recv_counts, const int64_t* recv_displs);
// In place: rank r's block is buf[displs[r], displs[r] + counts[r]).
void allgatherv_floats_in_place(float* buf, const int64_t* counts, const int64_t* displs);
// Every rank's `bytes` bytes, in rank order, into `all` (size · bytes).
void allgather_bytes(const void* mine, int64_t bytes, void* all);
void barrier();
// Ends every rank of the job (a rank that failed cannot leave the others waiting).
[[noreturn]] void abort_all(int code);

// MPI_Finalize when this thread initialised MPI and it is still running.
void finalize_if_owner();

}  // namespace reca::mpi
