// OpenBLAS as a benchmark peer, loaded at run time (never linked): the engine
// builds and runs without it, and a benchmark that finds it measures our SGEMM
// beside it on the identical problem.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

namespace reca::bench {

struct OpenblasPeer {
  bool available = false;
  std::string error;     // why it is unavailable (empty when available)
  std::string library;   // the name that loaded
  std::string corename;  // kernel set OpenBLAS chose ("Zen", "SkylakeX", ...)
  std::string config;    // openblas_get_config()
};

// Loads the library on first use (thread-safe). OPENBLAS_CORETYPE and
// OPENBLAS_L2_SIZE are hidden from OpenBLAS while it loads (they force a slower
// kernel set) and restored right after, so the rest of the process sees no change.
// When the engine runs its AVX2 path on an AVX-512 CPU the peer is loaded with
// its AVX2 kernels (OPENBLAS_CORETYPE=Haswell) for a like-for-like comparison;
// RECA_PEER_OPENBLAS_CORETYPE, when set, names the kernel set instead.
const OpenblasPeer& openblas_peer();

// cblas_sgemm, row-major: C[M,N] = op(A)·op(B) (beta 0), same storage
// conventions as reca::cpu::matmul. Throws reca::Error when unavailable.
void openblas_sgemm(float* C, const float* A, const float* B, int64_t M, int64_t N, int64_t K,
                    bool trans_a, bool trans_b, bool accumulate);
void openblas_set_threads(int threads);

// A callable that runs cblas_sgemm (beta = accumulate ? 1 : 0) on its own fresh
// random inputs of that shape; the caller sets the thread count.
std::function<void()> openblas_sgemm_runner(int64_t M, int64_t N, int64_t K, bool trans_a,
                                            bool trans_b, bool accumulate);

// Median seconds per call of cblas_sgemm (beta = accumulate ? 1 : 0) on fresh
// random inputs of that shape, with `threads` OpenBLAS threads; repeats until
// `min_seconds` of timed work.
double openblas_sgemm_seconds(int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b,
                              int threads, bool accumulate = false, double min_seconds = 0.25);

}  // namespace reca::bench
