"""Checks engine checkpoints (SPEC §1, §8) with the independent numpy reader:

    RECA_CHECKPOINT_SAMPLES=/tmp/ck ./build-native/reca_tests checkpoint_
    /usr/bin/python3 tools/reference/check_checkpoint.py /tmp/ck/*.safetensors

Per file: strict safetensors layout (safetensors_np), metadata (reca.format,
reca.config byte-equal to reca_ref.config_json and valid, reca.dtype, reca.step,
reca.seed, reca.trainer as JSON), exactly the parameters of reca_ref.param_spec
with their shapes in the stored dtype, optimizer state (optim.m/v F32, ema.*
in the stored dtype) for exactly the trainable tensors, all values finite and
v >= 0. A file `X_ref_f32.safetensors` next to `X.safetensors` (BF16/F16) is
the same state in F32: the half values must equal numpy's own round-to-nearest-
even conversion of it, bit for bit, and the F32 moments must be identical.
Exits non-zero on the first problem.
"""
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reca_ref as R  # noqa: E402
from safetensors_np import read_safetensors  # noqa: E402

GROUPS = ("und", "conn", "vq", "gen")


def fail(path, msg):
    print(f"FAIL {path}: {msg}")
    sys.exit(1)


def bf16_bits_rne(x):
    """float32 -> bfloat16 bits, round to nearest even (finite inputs)."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def check(path):
    tensors, meta, dtypes = read_safetensors(path)
    if meta.get("reca.format") != "reca-engine/1":
        fail(path, f"reca.format = {meta.get('reca.format')!r}")
    stored = json.loads(meta["reca.config"])
    # Checkpoints written before cond_norm existed lack it (it is then false).
    fields = R.CONFIG_FIELDS if "cond_norm" in stored else [k for k in R.CONFIG_FIELDS if k != "cond_norm"]
    if list(stored.keys()) != fields:
        fail(path, f"config fields {list(stored.keys())}")
    cfg = R.config_from_json(meta["reca.config"])
    if meta["reca.config"] != json.dumps({k: cfg[k] for k in fields}, separators=(",", ":")):
        fail(path, "reca.config differs from reca_ref.config_json")
    storage = meta.get("reca.dtype")
    if storage not in ("F32", "F16", "BF16"):
        fail(path, f"reca.dtype = {storage!r}")

    spec = R.param_spec(cfg)
    want = {}
    for name, (shape, _) in spec.items():
        want[name] = (tuple(shape), storage)
    trainer = None
    if "reca.trainer" in meta:
        trainer = json.loads(meta["reca.trainer"])
        step, seed = int(meta["reca.step"]), int(meta["reca.seed"])
        if step < 0 or str(step) != meta["reca.step"]:
            fail(path, "reca.step")
        if trainer["seed"] != meta["reca.seed"] or not 0 <= seed < 2**64:
            fail(path, "reca.seed vs reca.trainer.seed")
        tr = trainer["trainable"]
        if trainer["tokenizer"]:
            tr = {"und": False, "conn": False, "vq": True, "gen": False}
        for name, (shape, _) in spec.items():
            if not tr[name.split(".")[0]]:
                continue
            want["optim.m." + name] = (tuple(shape), "F32")
            want["optim.v." + name] = (tuple(shape), "F32")
            if trainer["ema"] > 0:
                want["ema." + name] = (tuple(shape), storage)
    got = {n: (tuple(t.shape), dtypes[n]) for n, t in tensors.items()}
    if set(got) != set(want):
        fail(path, f"missing {sorted(set(want) - set(got))[:5]}, extra {sorted(set(got) - set(want))[:5]}")
    for n in want:
        if got[n] != want[n]:
            fail(path, f"{n}: {got[n]} vs {want[n]}")
        a = np.asarray(tensors[n], dtype=np.float32)
        if not np.all(np.isfinite(a)):
            fail(path, f"{n}: non-finite values")
        if n.startswith("optim.v.") and np.any(a < 0):
            fail(path, f"{n}: negative values")

    ref = path[: -len(".safetensors")] + "_ref_f32.safetensors"
    extra = ""
    if storage != "F32" and os.path.exists(ref):
        rt, rmeta, rdt = read_safetensors(ref)
        half, _, _ = read_safetensors(path, keep_bf16_bits=True)
        for n, (_, dt) in want.items():
            x = rt[n]
            if dt == "F32":
                if not np.array_equal(x.view(np.uint32), half[n].view(np.uint32)):
                    fail(path, f"{n}: F32 moment differs from the F32 reference file")
            elif dt == "BF16":
                if not np.array_equal(bf16_bits_rne(x), half[n]):
                    fail(path, f"{n}: BF16 bits differ from numpy's rounding of the F32 values")
            else:
                if not np.array_equal(x.astype(np.float16).view(np.uint16), half[n].view(np.uint16)):
                    fail(path, f"{n}: F16 bits differ from numpy's float16 of the F32 values")
        extra = f", {storage} == numpy rounding of {os.path.basename(ref)}"
    n_state = sum(1 for n in want if "." in n and n.split(".")[0] in ("optim", "ema"))
    print(f"ok   {os.path.basename(path)}: {cfg['mode']} {storage}, {len(spec)} params, "
          f"{n_state} state tensors, step {meta.get('reca.step', '-')}"
          + (f", lr {trainer['lr']!r}" if trainer else "") + extra)


def main(paths):
    if not paths:
        print(__doc__)
        sys.exit(2)
    for p in paths:
        check(p)


if __name__ == "__main__":
    main(sys.argv[1:])
