#include "bench/openblas_peer.h"

#include <dlfcn.h>

#include <cstdlib>
#include <memory>
#include <mutex>
#include <random>
#include <vector>

#include "bench/kernel_bench.h"
#include "core/cpu_features.h"
#include "core/dynlib.h"
#include "core/error.h"

namespace reca::bench {
namespace {

// CBLAS enum values (cblas.h), declared here so no OpenBLAS header is needed.
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
using SgemmFn = void (*)(int order, int ta, int tb, int M, int N, int K, float alpha,
                         const float* A, int lda, const float* B, int ldb, float beta, float* C,
                         int ldc);
using SetThreadsFn = void (*)(int);
using GetStringFn = char* (*)();

struct Loaded {
  OpenblasPeer info;
  SgemmFn sgemm = nullptr;
  SetThreadsFn set_threads = nullptr;
};

// Saves an environment variable, unsets it, and puts it back on destruction.
class HiddenEnv {
 public:
  explicit HiddenEnv(const char* name) : name_(name) {
    const char* v = std::getenv(name);
    had_ = v != nullptr;
    if (had_) value_ = v;
    unsetenv(name);
  }
  ~HiddenEnv() {
    if (had_) setenv(name_, value_.c_str(), 1);
    else unsetenv(name_);
  }

 private:
  const char* name_;
  bool had_ = false;
  std::string value_;
};

Loaded load() {
  Loaded l;
  void* handle = nullptr;
  std::string errors;
  {
    // OpenBLAS reads these once, while it loads.
    HiddenEnv core("OPENBLAS_CORETYPE"), l2("OPENBLAS_L2_SIZE");
    // Like for like: when our AVX2 path runs on a wider CPU, the peer runs its
    // AVX2 (Haswell) kernels too. RECA_PEER_OPENBLAS_CORETYPE picks any other set.
    const char* want = std::getenv("RECA_PEER_OPENBLAS_CORETYPE");
    if (!want && active_isa() == Isa::Avx2 && detected_isa() == Isa::Avx512) want = "Haswell";
    if (want && *want) setenv("OPENBLAS_CORETYPE", want, 1);
    const DynLib lib = open_first_library({"libopenblas.so.0", "libopenblas.so"}, RTLD_NOW | RTLD_LOCAL);
    handle = lib.handle;
    l.info.library = lib.name;
    errors = lib.errors;
  }
  if (!handle) {
    l.info.error = "OpenBLAS not found (" + errors + ")";
    return l;
  }
  l.sgemm = reinterpret_cast<SgemmFn>(dlsym(handle, "cblas_sgemm"));
  l.set_threads = reinterpret_cast<SetThreadsFn>(dlsym(handle, "openblas_set_num_threads"));
  if (!l.sgemm || !l.set_threads) {
    l.info.error = std::string(l.info.library) + " lacks cblas_sgemm or openblas_set_num_threads";
    return l;
  }
  if (auto core = reinterpret_cast<GetStringFn>(dlsym(handle, "openblas_get_corename")))
    if (const char* s = core()) l.info.corename = s;
  if (auto cfg = reinterpret_cast<GetStringFn>(dlsym(handle, "openblas_get_config")))
    if (const char* s = cfg()) l.info.config = s;
  l.info.available = true;
  return l;
}

const Loaded& loaded() {
  static Loaded l = load();  // thread-safe one-time init
  return l;
}

const Loaded& require() {
  const Loaded& l = loaded();
  RECA_CHECK(l.info.available, Load, "OpenBLAS peer unavailable: %s", l.info.error.c_str());
  return l;
}

}  // namespace

const OpenblasPeer& openblas_peer() { return loaded().info; }

void openblas_set_threads(int threads) { require().set_threads(threads); }

void openblas_sgemm(float* C, const float* A, const float* B, int64_t M, int64_t N, int64_t K,
                    bool trans_a, bool trans_b, bool accumulate) {
  const Loaded& l = require();
  const int lda = static_cast<int>(trans_a ? M : K), ldb = static_cast<int>(trans_b ? K : N);
  l.sgemm(kRowMajor, trans_a ? kTrans : kNoTrans, trans_b ? kTrans : kNoTrans,
          static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), 1.0f, A, lda, B, ldb,
          accumulate ? 1.0f : 0.0f, C, static_cast<int>(N));
}

std::function<void()> openblas_sgemm_runner(int64_t M, int64_t N, int64_t K, bool trans_a,
                                            bool trans_b, bool accumulate) {
  require();
  std::mt19937_64 gen(1234);
  std::uniform_real_distribution<float> u(0.1f, 1.0f);
  auto A = std::make_shared<std::vector<float>>(M * K), B = std::make_shared<std::vector<float>>(K * N),
       C = std::make_shared<std::vector<float>>(M * N);
  for (auto& v : *A) v = gen() & 1 ? u(gen) : -u(gen);
  for (auto& v : *B) v = gen() & 1 ? u(gen) : -u(gen);
  for (auto& v : *C) v = u(gen);
  return [=] { openblas_sgemm(C->data(), A->data(), B->data(), M, N, K, trans_a, trans_b, accumulate); };
}

double openblas_sgemm_seconds(int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b,
                              int threads, bool accumulate, double min_seconds) {
  openblas_set_threads(threads);
  return median_seconds_per_call(openblas_sgemm_runner(M, N, K, trans_a, trans_b, accumulate), min_seconds);
}

}  // namespace reca::bench
