"""Writes the tokenizer-condition fixtures (SPEC §5) to test/fixtures/ (run by hand):

    /usr/bin/python3 tools/reference/make_condition_fixtures.py [OUT_DIR]

One file per mode, condition_<mode>.safetensors: a small config whose 4x4 token grid
pools 2x2 onto the 2x2 understanding grid (so the pooling is exercised), its
parameters, a reca batch with its draws, and the reference's loss and every gradient
of one reca pass with condition 'tokenizer' (everything trainable; und.* and conn.*
get none, since the condition is a constant).
"""
import json
import os
import sys
from collections import OrderedDict

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_fixtures as MF  # noqa: E402
import reca_ref as R  # noqa: E402
from safetensors_np import write_safetensors  # noqa: E402

SEED = 31337
FORMAT = "reca-fixture-1"
# Small, and with a token grid (16/4 = 4) twice the understanding grid (4/2 = 2).
OVERRIDES = dict(und_image_size=4, und_patch=2, und_width=16, und_depth=1, und_heads=2,
                 width=32, depth=1, heads=2, codebook_size=32, code_dim=8, max_text_len=16)


def build(mode):
    cfg = R.make_config("tiny", mode, **OVERRIDES)
    params = MF.fixture_params(cfg, SEED)
    batch_np, _ = MF.make_batch(cfg, "reca", SEED + 7 * MF.MODE_INDEX[mode])
    batch = R.batch_from_numpy(batch_np)
    trainable = set(params)
    loss, grads, info = R.loss_and_grads(params, cfg, "reca", batch, trainable, torch.float32,
                                         MF.COND_GRAD_SCALE, condition="tokenizer")
    loss64, _, _ = R.loss_and_grads(params, cfg, "reca", batch, trainable, torch.float64,
                                    MF.COND_GRAD_SCALE, condition="tokenizer")
    if "code_margin" in info:  # every backend must pick the same codes
        assert info["code_margin"] > 1e-5, "near tie in the VQ codes: pick another seed"
    tensors = OrderedDict()
    for n, t in params.items():
        tensors["param." + n] = t.numpy()
    for n, a in batch_np.items():
        tensors["batch." + n] = a
    for n, g in grads.items():
        tensors["grad." + n] = g.float().numpy()
    tensors["aux.c"] = info["c"].detach().float().numpy()
    case = OrderedDict(mode=mode, task="reca", condition="tokenizer", seed=SEED,
                       loss=float(loss), loss_f64=float(loss64),
                       cond_grad_scale=MF.COND_GRAD_SCALE)
    meta = {"reca.format": FORMAT, "reca.config": R.config_json(cfg), "reca.case": json.dumps(case)}
    return tensors, meta, case


def main():
    out_dir = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "test", "fixtures"))
    torch.set_num_threads(1)
    for mode in R.MODES:
        tensors, meta, case = build(mode)
        path = os.path.join(out_dir, f"condition_{mode}.safetensors")
        write_safetensors(path, tensors, meta)
        print(f"condition_{mode}: loss {case['loss']:.9g} (f64 {case['loss_f64']:.9g}) {os.path.getsize(path) / 1e3:.0f} KB")


if __name__ == "__main__":
    main()
