// Kernel micro-benchmarks: our CPU kernels at the shapes the `small` preset
// runs (SPEC §1), each matmul timed beside OpenBLAS on the identical problem.
// Used by the reca_bench program and the Node addon.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace reca::bench {

struct KernelBenchOptions {
  int threads = 0;  // 0: the current thread count
  double min_seconds = 0.25;
  std::string filter;  // substring of the record name
  bool with_peer = true;
};

struct KernelBenchRecord {
  std::string name;
  std::vector<int64_t> shape;
  std::string isa;
  int threads = 1;
  double seconds = 0;  // median seconds per call
  double gflops = 0;   // useful flops / seconds
  double gbps = 0;     // minimal bytes moved (inputs read once, outputs written once) / seconds
  std::string peer_name;  // "openblas" or empty
  double peer_gflops = 0;
  double ratio = 0;  // ours / peer: median over alternated (ours, peer) batch pairs
  double ratio_lo = 0, ratio_hi = 0;  // quartiles of those pair ratios (the spread)
  std::string note;
};

std::vector<KernelBenchRecord> run_kernel_bench(const KernelBenchOptions& opts);

// Warm-up, then timed batches until `min_seconds` (at least 5 batches); the
// median over batches of the seconds per call.
double median_seconds_per_call(const std::function<void()>& fn, double min_seconds);

// Ours and a peer timed in alternated batches (ours, peer, ours, peer, ...) so
// that both see the same machine load; per-call medians of each, and the median
// and quartiles of the per-pair speed ratios (peer time / our time).
struct PairedTiming {
  double ours_seconds = 0, peer_seconds = 0;
  double ratio = 0, ratio_lo = 0, ratio_hi = 0;
};
// settle_seconds: untimed pause after each peer batch (OpenBLAS workers spin
// for a while after a call and would steal cycles from ours).
PairedTiming paired_seconds_per_call(const std::function<void()>& ours, const std::function<void()>& peer,
                                     double min_seconds, double settle_seconds);

}  // namespace reca::bench
