// Declares one kernel family in every namespace it lives in:
//   reca::cpu::fn              dispatches on active_isa()
//   reca::cpu::isa_scalar::fn, isa_avx2::fn, isa_avx512::fn
//                              the fast code, compiled once per ISA level
//   reca::cpu::ref::fn<T>      plain scalar reference, float and double (the
//                              double one is the oracle for gradient checks)
// FNS(PRE, T) must expand to the family's declarations, each starting with PRE
// and written in terms of T, and each with at least one T parameter.
#pragma once
#include <stdint.h>

#include "core/cpu_features.h"

#define RECA_DECLARE_KERNEL_FAMILY(FNS)          \
  namespace reca::cpu {                          \
  FNS(, float)                                   \
  namespace isa_scalar { FNS(, float) }          \
  namespace isa_avx2 { FNS(, float) }            \
  namespace isa_avx512 { FNS(, float) }          \
  namespace ref { FNS(template <class T>, T) }   \
  }

// In a family's .cpp, level-0 block: explicit float/double instantiations of
// the reference templates.
#define RECA_INSTANTIATE_REF(FNS) \
  namespace reca::cpu::ref {      \
  FNS(template, float)            \
  FNS(template, double)           \
  }

// Body of a dispatching entry point.
#define RECA_DISPATCH(fn, ...)                                                    \
  switch (::reca::active_isa()) {                                                 \
    case ::reca::Isa::Avx512: return ::reca::cpu::isa_avx512::fn(__VA_ARGS__);    \
    case ::reca::Isa::Avx2: return ::reca::cpu::isa_avx2::fn(__VA_ARGS__);        \
    default: return ::reca::cpu::isa_scalar::fn(__VA_ARGS__);                     \
  }
