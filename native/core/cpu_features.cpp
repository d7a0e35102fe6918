#include "core/cpu_features.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include <unistd.h>

#include "core/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define RECA_X86 1
#endif

namespace reca {
namespace {

#ifdef RECA_X86
unsigned long long read_xcr0() {
  unsigned eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}
#endif

Isa probe_isa() {
#ifdef RECA_X86
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return Isa::Scalar;
  const bool osxsave = c & (1u << 27), fma = c & (1u << 12), avx = c & (1u << 28);
  if (!osxsave || !avx) return Isa::Scalar;
  const unsigned long long xcr0 = read_xcr0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;
  const bool zmm_state = (xcr0 & 0xE6) == 0xE6;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return Isa::Scalar;
  const bool avx2 = b & (1u << 5);
  const bool avx512f = b & (1u << 16), avx512dq = b & (1u << 17);
  const bool avx512bw = b & (1u << 30), avx512vl = b & (1u << 31);
  if (avx2 && fma && ymm_state && zmm_state && avx512f && avx512dq && avx512bw && avx512vl)
    return Isa::Avx512;
  if (avx2 && fma && ymm_state) return Isa::Avx2;
#endif
  return Isa::Scalar;
}

bool probe_avx512_bf16() {
#ifdef RECA_X86
  if (probe_isa() != Isa::Avx512) return false;
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
  return a & (1u << 5);  // CPUID.(EAX=7, ECX=1):EAX[5]
#else
  return false;
#endif
}

std::string g_env_warning;

Isa initial_isa() {
  const Isa best = probe_isa();
  const char* env = std::getenv("RECA_CPU_ISA");
  if (env == nullptr || *env == '\0') return best;
  Isa wanted;
  if (!parse_isa(env, &wanted)) {
    g_env_warning = std::string("RECA_CPU_ISA='") + env +
                    "' is not one of scalar|avx2|avx512; using " + isa_name(best);
    return best;
  }
  if (static_cast<int>(wanted) > static_cast<int>(best)) {
    g_env_warning = std::string("RECA_CPU_ISA=") + env + " is not supported by this CPU; using " +
                    isa_name(best);
    return best;
  }
  return wanted;
}

std::atomic<int>& active_slot() {
  static std::atomic<int> slot{static_cast<int>(initial_isa())};
  return slot;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "scalar";
  }
}

bool parse_isa(const char* name, Isa* out) {
  if (std::strcmp(name, "scalar") == 0) *out = Isa::Scalar;
  else if (std::strcmp(name, "avx2") == 0) *out = Isa::Avx2;
  else if (std::strcmp(name, "avx512") == 0) *out = Isa::Avx512;
  else return false;
  return true;
}

Isa detected_isa() {
  static const Isa best = probe_isa();
  return best;
}

bool cpu_has_avx512_bf16() {
  static const bool has = probe_avx512_bf16();
  return has;
}

Isa active_isa() { return static_cast<Isa>(active_slot().load(std::memory_order_relaxed)); }

void set_active_isa(Isa isa) {
  RECA_CHECK(static_cast<int>(isa) <= static_cast<int>(detected_isa()), InvalidArgument,
             "ISA '%s' is not supported by this CPU (best: '%s'); pick a lower level",
             isa_name(isa), isa_name(detected_isa()));
  active_slot().store(static_cast<int>(isa), std::memory_order_relaxed);
}

const char* isa_env_warning() {
  active_slot();  // make sure the environment was read
  return g_env_warning.c_str();
}

const CacheSizes& cache_sizes() {
  static const CacheSizes sizes = [] {
    auto level = [](int name, long fallback) {
      const long v = sysconf(name);
      return v > 0 ? v : fallback;
    };
    return CacheSizes{level(_SC_LEVEL1_DCACHE_SIZE, 32L << 10), level(_SC_LEVEL2_CACHE_SIZE, 1L << 20),
                      level(_SC_LEVEL3_CACHE_SIZE, 8L << 20)};
  }();
  return sizes;
}

}  // namespace reca
