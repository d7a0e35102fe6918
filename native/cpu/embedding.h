// Embedding lookups and learned positional tables (SPEC §3, §4).
//
// embedding_forward   out[n, :] = table[ids[n], :]           out [N, D], table [vocab, D], ids int32 [N]
// embedding_backward  dtable[ids[n], :] += dout[n, :]         dtable [vocab, D], dout [N, D]
//   An id < 0 marks a row filled by something else (e.g. the understanding embeddings
//   c_i inside a condition block): the forward leaves that out row untouched and the
//   backward adds nothing for it. An id >= vocab is a precondition violation.
//   The backward splits the work over blocks of columns; each task adds the rows in
//   order n = 0..N-1, so repeated ids accumulate in a fixed order whatever the thread
//   count (no atomics).
//
// pos_add_forward     x[b, i, :] += pos[i, :]                 x [B, seq_len, D] viewed from a block's
//                                                              first row, pos [L, D], i < L <= seq_len
// pos_add_backward    dpos[i, :] += Σ_b dout[b, i, :]         dout viewed like x; b summed in order
//   seq_len is the row stride between samples, so a table that covers only one block
//   of the sequence (positions restart in each block) is added with x = base + row0·D.
#pragma once
#include "cpu/kernel_family.h"

#define RECA_EMBEDDING_FNS(PRE, T)                                                           \
  PRE void embedding_forward(T* out, const T* table, const int32_t* ids, int64_t N,          \
                             int64_t D);                                                     \
  PRE void embedding_backward(T* dtable, const T* dout, const int32_t* ids, int64_t N,       \
                              int64_t D);                                                    \
  PRE void pos_add_forward(T* x, const T* pos, int64_t B, int64_t seq_len, int64_t L,        \
                           int64_t D);                                                       \
  PRE void pos_add_backward(T* dpos, const T* dout, int64_t B, int64_t seq_len, int64_t L,   \
                            int64_t D);

RECA_DECLARE_KERNEL_FAMILY(RECA_EMBEDDING_FNS)
