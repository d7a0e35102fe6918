// Image layout ops (SPEC §0, §3). Images are NHWC float32, 3 channels, S×S.
//
// patchify_forward     tokens [B, G², 3·P²] from img [B, S, S, 3], G = S/P. Token (py, px)
//                      is row py·G + px; its vector is img[py·P+i][px·P+j][c] flattened
//                      over (i, j, c).
// patchify_backward    dimg += unpatchify(dtokens)
// unpatchify_forward   img = the inverse of patchify_forward
// unpatchify_backward  dtokens += patchify(dimg)
// avgpool_forward      out [B, S/f, S/f, 3]: the mean of each f×f block (summed row by row,
//                      left to right, then divided by f²)
// avgpool_backward     dimg [B, S, S, 3] += dout[b, y/f, x/f, c] / f²
// image_from_bytes     out[k] = u/127.5 − 1 for bytes u                     in, out: [n]
// image_to_bytes       out[k] = round((x + 1)·127.5) clamped to [0, 255]; ties round to
//                      even (as torch.round / numpy.rint do); NaN maps to 0.
// Preconditions: S % P == 0, S % f == 0, P, f >= 1; outputs do not alias inputs.
// Every output element is written by one task, so results do not depend on the
// thread count.
#pragma once
#include "cpu/kernel_family.h"

#define RECA_IMAGE_FNS(PRE, T)                                                                  \
  PRE void patchify_forward(T* tokens, const T* img, int64_t B, int64_t S, int64_t P);          \
  PRE void patchify_backward(T* dimg, const T* dtokens, int64_t B, int64_t S, int64_t P);       \
  PRE void unpatchify_forward(T* img, const T* tokens, int64_t B, int64_t S, int64_t P);        \
  PRE void unpatchify_backward(T* dtokens, const T* dimg, int64_t B, int64_t S, int64_t P);     \
  PRE void avgpool_forward(T* out, const T* img, int64_t B, int64_t S, int64_t f);              \
  PRE void avgpool_backward(T* dimg, const T* dout, int64_t B, int64_t S, int64_t f);           \
  PRE void image_from_bytes(T* out, const uint8_t* in, int64_t n);                              \
  PRE void image_to_bytes(uint8_t* out, const T* in, int64_t n);

RECA_DECLARE_KERNEL_FAMILY(RECA_IMAGE_FNS)
