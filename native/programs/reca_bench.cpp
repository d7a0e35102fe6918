// reca_bench: kernel micro-benchmarks without Node.
//   reca_bench [--threads N] [--filter S] [--min-seconds X] [--json FILE] [--no-peer]
// Prints the machine (CPU model, active ISA, threads, OpenBLAS core) and a table
// of records; --json also writes them to FILE.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "bench/kernel_bench.h"
#include "bench/openblas_peer.h"
#include "core/cpu_features.h"
#include "core/error.h"
#include "core/threadpool.h"

namespace {

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  return "unknown";
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\', o += c;
    else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      o += buf;
    } else o += c;
  }
  return o;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "x" : "") + std::to_string(shape[i]);
  return s;
}

void usage() {
  std::fprintf(stderr,
               "usage: reca_bench [--threads N] [--filter S] [--min-seconds X] [--json FILE] [--no-peer]\n");
}

}  // namespace

int main(int argc, char** argv) {
  reca::bench::KernelBenchOptions opts;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--threads") opts.threads = std::atoi(value());
    else if (a == "--filter") opts.filter = value();
    else if (a == "--min-seconds") opts.min_seconds = std::atof(value());
    else if (a == "--json") json_path = value();
    else if (a == "--no-peer") opts.with_peer = false;
    else {
      usage();
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }

  const auto& peer = reca::bench::openblas_peer();
  const int threads = opts.threads > 0 ? opts.threads : reca::num_threads();
  const std::string cpu = cpu_model(), isa = reca::isa_name(reca::active_isa());
  std::printf("cpu: %s | isa: %s (detected %s) | threads: %d\n", cpu.c_str(), isa.c_str(),
              reca::isa_name(reca::detected_isa()), threads);
  if (peer.available)
    std::printf("peer: openblas (%s) core %s | %s\n", peer.library.c_str(), peer.corename.c_str(),
                peer.config.c_str());
  else
    std::printf("peer: none (%s)\n", peer.error.c_str());

  std::vector<reca::bench::KernelBenchRecord> recs;
  try {
    recs = reca::bench::run_kernel_bench(opts);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reca_bench: %s\n", e.what());
    return 1;
  }

  std::printf("%-28s %-16s %-7s %3s %9s %9s %8s %10s %6s\n", "name", "shape", "isa", "thr", "ms",
              "GFLOP/s", "GB/s", "peer GF/s", "ratio");
  for (const auto& r : recs) {
    std::printf("%-28s %-16s %-7s %3d %9.4f %9.2f %8.2f ", r.name.c_str(), shape_text(r.shape).c_str(),
                r.isa.c_str(), r.threads, r.seconds * 1e3, r.gflops, r.gbps);
    if (!r.peer_name.empty()) std::printf("%10.2f %6.3f [%.3f, %.3f]", r.peer_gflops, r.ratio, r.ratio_lo, r.ratio_hi);
    else std::printf("%10s %6s", "-", "-");
    if (!r.note.empty()) std::printf("  %s", r.note.c_str());
    std::printf("\n");
  }

  if (!json_path.empty()) {
    std::ostringstream j;
    j << "{\n  \"machine\": {\"cpu\": \"" << json_escape(cpu) << "\", \"isa\": \"" << isa
      << "\", \"detected_isa\": \"" << reca::isa_name(reca::detected_isa()) << "\", \"threads\": " << threads
      << ", \"hardware_threads\": " << reca::hardware_threads() << "},\n  \"peer\": {\"name\": \"openblas\", \"available\": "
      << (peer.available ? "true" : "false") << ", \"corename\": \"" << json_escape(peer.corename)
      << "\", \"config\": \"" << json_escape(peer.config) << "\", \"error\": \"" << json_escape(peer.error)
      << "\"},\n  \"records\": [\n";
    for (size_t i = 0; i < recs.size(); ++i) {
      const auto& r = recs[i];
      j << "    {\"name\": \"" << json_escape(r.name) << "\", \"shape\": [";
      for (size_t k = 0; k < r.shape.size(); ++k) j << (k ? ", " : "") << r.shape[k];
      j << "], \"isa\": \"" << r.isa << "\", \"threads\": " << r.threads << ", \"seconds\": " << r.seconds
        << ", \"gflops\": " << r.gflops << ", \"gbps\": " << r.gbps << ", \"peer_name\": \""
        << r.peer_name << "\", \"peer_gflops\": " << r.peer_gflops << ", \"ratio\": " << r.ratio << ", \"ratio_lo\": " << r.ratio_lo << ", \"ratio_hi\": " << r.ratio_hi
        << ", \"note\": \"" << json_escape(r.note) << "\"}" << (i + 1 < recs.size() ? "," : "") << "\n";
    }
    j << "  ]\n}\n";
    std::ofstream f(json_path);
    if (!f || !(f << j.str())) {
      std::fprintf(stderr, "reca_bench: cannot write %s\n", json_path.c_str());
      return 1;
    }
    std::printf("wrote %s\n", json_path.c_str());
  }
  return 0;
}
