// Which SIMD level the CPU kernels run at. Detected once from CPUID (and the
// OS's saved-register mask); RECA_CPU_ISA=scalar|avx2|avx512 or set_active_isa()
// can lower it, so every path can be tested on one machine.
#pragma once

namespace reca {

enum class Isa { Scalar = 0, Avx2 = 1, Avx512 = 2 };

const char* isa_name(Isa isa);            // "scalar" | "avx2" | "avx512"
bool parse_isa(const char* name, Isa* out);
Isa detected_isa();                       // best level this CPU + OS supports
Isa active_isa();                         // level the dispatchers use now
// AVX512_BF16 (vcvtne2ps2bf16, vdpbf16ps: Zen 4+, Cooper Lake, Sapphire Rapids+),
// on top of the avx512 level; what the bf16 matmuls (cpu/matmul_bf16.h) need.
bool cpu_has_avx512_bf16();
// Throws E_INVALID_ARGUMENT when `isa` is above detected_isa().
void set_active_isa(Isa isa);
// Set when RECA_CPU_ISA asked for something unusable; empty otherwise.
const char* isa_env_warning();

// Data cache sizes in bytes (L1d and L2 per core, L3 shared), read once from the
// OS; a level it does not report reads as a common size (32 KiB, 1 MiB, 8 MiB).
struct CacheSizes {
  long l1d, l2, l3;
};
const CacheSizes& cache_sizes();

}  // namespace reca
