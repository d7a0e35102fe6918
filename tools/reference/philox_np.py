"""The engine's Philox draws (docs/SPEC.md §6, native/core/philox.h) in numpy, vectorised
over indices: philox_u32, philox_uniform and philox_normal give, for the same
(seed, stream, index), the same bits as the engine.

philox_normal uses the engine's own log and cos polynomials, built from correctly
rounded float32 operations and fused multiply-adds. numpy has no fma, so `_fma`
computes it exactly: the product of two float32 is exact in float64, the sum is
rounded once to float64 (its error recovered by TwoSum) and the result is nudged
by that error before the final rounding to float32 when it sits on a float32
rounding midpoint, which makes the double rounding a single correct rounding.
"""
import numpy as np

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_MASK32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """One Philox4x32-10 block per element; counters as uint64 arrays holding 32-bit
    values, key as python ints. Returns the four output words (uint64 arrays)."""
    c0, c1, c2, c3 = np.broadcast_arrays(*(np.asarray(c, dtype=np.uint64) & _MASK32 for c in (c0, c1, c2, c3)))
    for _ in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        hi0, lo0 = p0 >> np.uint64(32), p0 & _MASK32
        hi1, lo1 = p1 >> np.uint64(32), p1 & _MASK32
        c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0
        k0 = (k0 + _W0) & 0xFFFFFFFF
        k1 = (k1 + _W1) & 0xFFFFFFFF
    return c0, c1, c2, c3


def _block(seed, stream, block):
    """stream: an int or a uint64 array broadcasting against block."""
    block = np.asarray(block, dtype=np.uint64)
    stream = np.asarray(stream, dtype=np.uint64)
    block, stream = np.broadcast_arrays(block, stream)
    return philox4x32_10(block & _MASK32, block >> np.uint64(32), stream & _MASK32,
                         stream >> np.uint64(32), seed & 0xFFFFFFFF, seed >> 32)


def philox_u32(seed, stream, index):
    """uint32 draws `index` (array) of (seed, stream)."""
    index = np.asarray(index, dtype=np.uint64)
    words = np.stack(_block(seed, stream, index >> np.uint64(2)), axis=-1)
    index = np.broadcast_to(index, words.shape[:-1])
    w = (index & np.uint64(3)).astype(np.int64)
    return np.take_along_axis(words, w[..., None], axis=-1)[..., 0].astype(np.uint32)


def bits_to_uniform(x):
    """((x >> 9) + 0.5)·2^-23 as float32, exact: (2k + 1)·2^-24."""
    x = np.asarray(x, dtype=np.uint32)
    return ((((x >> np.uint32(9)) << np.uint32(1)) | np.uint32(1)).astype(np.float32)
            * np.float32(5.9604644775390625e-08))


def philox_uniform(seed, stream, index):
    return bits_to_uniform(philox_u32(seed, stream, index))


def _fma(a, b, c):
    """Correctly rounded float32 a·b + c (see the module docstring)."""
    a, b, c = (np.asarray(v, dtype=np.float32) for v in (a, b, c))
    p = a.astype(np.float64) * b.astype(np.float64)  # exact
    cd = c.astype(np.float64)
    s = p + cd
    bb = s - p
    err = (p - (s - bb)) + (cd - bb)  # TwoSum: s + err == p + c exactly
    # s sits on a float32 rounding midpoint when its low 29 mantissa bits are 1 followed by zeros
    bits = s.view(np.uint64)
    midpoint = (bits & np.uint64((1 << 29) - 1)) == np.uint64(1 << 28)
    fix = midpoint & (err != 0)
    if np.any(fix):
        s = s.copy()
        s[fix] = np.nextafter(s[fix], np.where(err[fix] > 0, np.inf, -np.inf))
    return s.astype(np.float32)


def _f(x):
    return np.float32(x)


def log_rn(x):
    """The engine's ln of a positive normal float32 (philox.h log_rn)."""
    x = np.asarray(x, dtype=np.float32)
    bits = x.view(np.uint32)
    e = ((bits >> np.uint32(23)) & np.uint32(0xFF)).astype(np.int32) - 127
    mb = (bits & np.uint32(0x007FFFFF)) | np.uint32(0x3F800000)
    big = mb > np.uint32(0x3FB504F3)
    mb = np.where(big, mb - np.uint32(0x00800000), mb).astype(np.uint32)
    e = e + big.astype(np.int32)
    m = mb.view(np.float32)
    f = m - _f(1.0)
    s = f / (_f(2.0) + f)
    s2 = s * s
    p = np.full_like(s, _f(2.0 / 13.0))
    for c in (2.0 / 11.0, 2.0 / 9.0, 2.0 / 7.0, 2.0 / 5.0, 2.0 / 3.0):
        p = _fma(p, s2, _f(c))
    s3 = s * s2
    lm = _fma(s3, p, s + s)
    ef = e.astype(np.float32)
    return _fma(ef, _f(0.693145751953125), _fma(ef, _f(1.4286068202862268e-06), lm))


def _sin2pi_small(r):
    r2 = r * r
    p = np.full_like(r, _f(-15.094642576822984))
    for c in (42.058693944897634, -76.70585975306136, 81.60524927607504, -41.341702240399755):
        p = _fma(p, r2, _f(c))
    r3 = r * r2
    return _fma(_f(6.28318548202514648), r, _fma(_f(-1.7484556025237907e-07), r, r3 * p))


def _cos2pi_small(r):
    r2 = r * r
    p = np.full_like(r, _f(7.903536371318465))
    for c in (-26.426256783374388, 60.24464137187664, -85.45681720669371, 64.93939402266828,
              -19.739208802178716, 1.0):
        p = _fma(p, r2, _f(c))
    return p


def cos2pi_unit(u):
    u = np.asarray(u, dtype=np.float32)
    a = np.where(u > _f(0.5), _f(1.0) - u, u).astype(np.float32)
    return np.where(a <= _f(0.125), _cos2pi_small(a),
                    np.where(a <= _f(0.375), _sin2pi_small(_f(0.25) - a),
                             -_cos2pi_small(_f(0.5) - a))).astype(np.float32)


def philox_normal(seed, stream, index):
    """Box–Muller on uniforms 2i and 2i+1, with the engine's log and cos."""
    index = np.asarray(index, dtype=np.uint64)
    words = np.stack(_block(seed, stream, index >> np.uint64(1)), axis=-1)
    index = np.broadcast_to(index, words.shape[:-1])
    w = ((index & np.uint64(1)) * np.uint64(2)).astype(np.int64)
    u1 = bits_to_uniform(np.take_along_axis(words, w[..., None], axis=-1)[..., 0].astype(np.uint32))
    u2 = bits_to_uniform(np.take_along_axis(words, (w + 1)[..., None], axis=-1)[..., 0].astype(np.uint32))
    radius = np.sqrt(_f(-2.0) * log_rn(u1)).astype(np.float32)
    return (radius * cos2pi_unit(u2)).astype(np.float32)
