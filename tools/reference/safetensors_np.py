"""A small, strict safetensors reader and writer in plain numpy.

File layout: 8-byte little-endian u64 N, then N bytes of JSON header
  {name: {"dtype": ..., "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {str: str}}
(possibly padded with trailing spaces), then the tensor data. Offsets are relative to
the start of the data and must tile it exactly: no holes, no overlap, nothing left over.

The reader rejects anything the format does not allow (duplicate keys, unknown dtypes,
wrong byte counts, gaps, non-string metadata, trailing bytes), so it can be pointed at
files written by another implementation to check them.
"""
import json
import struct

import numpy as np

# dtype name -> (numpy dtype used for storage, bytes per element)
_DTYPES = {
    "F64": (np.dtype("<f8"), 8),
    "F32": (np.dtype("<f4"), 4),
    "F16": (np.dtype("<f2"), 2),
    "BF16": (np.dtype("<u2"), 2),  # raw bits; converted to f32 on read
    "I64": (np.dtype("<i8"), 8),
    "I32": (np.dtype("<i4"), 4),
    "I16": (np.dtype("<i2"), 2),
    "I8": (np.dtype("i1"), 1),
    "U8": (np.dtype("u1"), 1),
    "BOOL": (np.dtype("u1"), 1),
}
_NP_TO_NAME = {
    np.dtype("float64"): "F64",
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("int64"): "I64",
    np.dtype("int32"): "I32",
    np.dtype("int16"): "I16",
    np.dtype("int8"): "I8",
    np.dtype("uint8"): "U8",
}
_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    pass


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise SafetensorsError(f"duplicate key {k!r} in header")
        out[k] = v
    return out


def _bf16_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def read_safetensors(path, keep_bf16_bits=False):
    """Returns (tensors: dict name -> numpy array, metadata: dict str -> str, dtypes: dict name -> str).

    BF16 tensors are widened to float32 unless keep_bf16_bits (then raw uint16 bits)."""
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 8:
        raise SafetensorsError(f"{path}: file shorter than 8 bytes")
    (n,) = struct.unpack("<Q", buf[:8])
    if n > _MAX_HEADER or 8 + n > len(buf):
        raise SafetensorsError(f"{path}: header length {n} does not fit a file of {len(buf)} bytes")
    raw = buf[8 : 8 + n]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SafetensorsError(f"{path}: header is not UTF-8: {e}")
    if not text.startswith("{"):
        raise SafetensorsError(f"{path}: header does not start with '{{'")
    if text.rstrip(" ") != text.rstrip():
        raise SafetensorsError(f"{path}: header padding must be spaces")
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise SafetensorsError(f"{path}: header is not JSON: {e}")
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")

    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise SafetensorsError(f"{path}: __metadata__ must map strings to strings")

    data = memoryview(buf)[8 + n :]
    entries = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info.keys()) != {"dtype", "shape", "data_offsets"}:
            raise SafetensorsError(f"{path}: tensor {name!r}: entry must have exactly dtype, shape, data_offsets")
        dt = info["dtype"]
        if dt not in _DTYPES:
            raise SafetensorsError(f"{path}: tensor {name!r}: unknown dtype {dt!r}")
        shape = info["shape"]
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise SafetensorsError(f"{path}: tensor {name!r}: bad shape {shape!r}")
        offs = info["data_offsets"]
        if (
            not isinstance(offs, list)
            or len(offs) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
            or not 0 <= offs[0] <= offs[1]
        ):
            raise SafetensorsError(f"{path}: tensor {name!r}: bad data_offsets {offs!r}")
        npdt, size = _DTYPES[dt]
        count = 1
        for d in shape:
            count *= d
        if offs[1] - offs[0] != count * size:
            raise SafetensorsError(
                f"{path}: tensor {name!r}: {offs[1] - offs[0]} bytes for shape {shape} of {dt} (want {count * size})"
            )
        entries.append((offs[0], offs[1], name, dt, shape))

    # The offsets must tile [0, len(data)) exactly.
    entries.sort(key=lambda e: (e[0], e[1]))
    pos = 0
    for b, e, name, _, _ in entries:
        if b != pos:
            raise SafetensorsError(f"{path}: tensor {name!r} starts at {b}, expected {pos} (gap or overlap)")
        pos = e
    if pos != len(data):
        raise SafetensorsError(f"{path}: data section is {len(data)} bytes, tensors cover {pos}")

    tensors, dtypes = {}, {}
    for b, e, name, dt, shape in entries:
        npdt, _ = _DTYPES[dt]
        arr = np.frombuffer(data[b:e], dtype=npdt).reshape(shape).copy()
        if dt == "BF16" and not keep_bf16_bits:
            arr = _bf16_to_f32(arr)
        elif dt == "BOOL":
            if arr.size and arr.max() > 1:
                raise SafetensorsError(f"{path}: tensor {name!r}: BOOL value other than 0/1")
            arr = arr.astype(bool)
        else:
            arr = arr.astype(npdt.newbyteorder("="), copy=False)
        tensors[name] = arr
        dtypes[name] = dt
    return tensors, metadata, dtypes


def write_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> numpy array (f64/f32/f16/i64/i32/i16/i8/u8). metadata: dict str -> str.

    Tensors are laid out by decreasing element size, then by name, so every tensor is
    aligned to its element size; the header is padded with spaces to a multiple of 8."""
    if metadata is not None:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise SafetensorsError("metadata must map strings to strings")
    items = []
    for name, arr in tensors.items():
        if name == "__metadata__":
            raise SafetensorsError("'__metadata__' is reserved")
        arr = np.asarray(arr)
        if arr.dtype not in _NP_TO_NAME:
            raise SafetensorsError(f"tensor {name!r}: unsupported dtype {arr.dtype}")
        items.append((name, arr))
    items.sort(key=lambda it: (-it[1].dtype.itemsize, it[0]))
    header = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    blobs, pos = [], 0
    for name, arr in items:
        b = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _NP_TO_NAME[arr.dtype], "shape": list(arr.shape), "data_offsets": [pos, pos + len(b)]}
        blobs.append(b)
        pos += len(b)
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((-len(hb)) % 8)
    tmp = str(path) + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)
    import os

    os.replace(tmp, path)
