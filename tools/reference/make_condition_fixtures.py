"""Writes the condition-pathway fixtures to test/fixtures/ (run by hand):

    /usr/bin/python3 tools/reference/make_condition_fixtures.py [OUT_DIR]

Per mode, from a small config whose 4x4 token grid pools 2x2 onto the 2x2
understanding grid, its parameters and a reca batch with its draws:
- condition_<mode>.safetensors: the reference's loss and every gradient of one reca
  pass with condition 'tokenizer' (SPEC §5; everything trainable; und.* and conn.*
  get none, since the condition is a constant);
- condnorm_<mode>.safetensors: the same config with cond_norm (conn.norm at the
  connector's output, SPEC §3), one reca pass and one i2t pass with the understanding
  condition, everything trainable: each pass's loss and every gradient, and c.
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


def build_cond_norm(mode):
    cfg = R.make_config("tiny", mode, cond_norm=True, **OVERRIDES)
    params = MF.fixture_params(cfg, SEED + 1)
    tensors = OrderedDict()
    for n, t in params.items():
        tensors["param." + n] = t.numpy()
    case = OrderedDict(mode=mode, condition="understanding", cond_norm=True, seed=SEED + 1,
                       cond_grad_scale=MF.COND_GRAD_SCALE)
    trainable = set(params)
    for task in ("reca", "i2t"):
        batch_np, _ = MF.make_batch(cfg, task, SEED + 11 * MF.MODE_INDEX[mode] + MF.TASK_INDEX[task])
        batch = R.batch_from_numpy(batch_np)
        loss, grads, info = R.loss_and_grads(params, cfg, task, batch, trainable, torch.float32,
                                             MF.COND_GRAD_SCALE)
        loss64, _, _ = R.loss_and_grads(params, cfg, task, batch, trainable, torch.float64,
                                        MF.COND_GRAD_SCALE)
        if "code_margin" in info:
            assert info["code_margin"] > 1e-5, "near tie in the VQ codes: pick another seed"
        for n, a in batch_np.items():
            tensors[f"{task}.batch.{n}"] = a
        for n, g in grads.items():
            tensors[f"{task}.grad.{n}"] = g.float().numpy()
        tensors[f"{task}.aux.c"] = info["c"].detach().float().numpy()
        case[f"{task}_loss"], case[f"{task}_loss_f64"] = float(loss), float(loss64)
    meta = {"reca.format": FORMAT, "reca.config": R.config_json(cfg), "reca.case": json.dumps(case)}
    return tensors, meta, case


def fixture_dir():
    """OUT_DIR from the command line, else test/fixtures/."""
    return os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "test", "fixtures"))


def write_per_mode(out_dir, kind, build_fn):
    """<kind>_<mode>.safetensors from build_fn(mode) for every mode, each with one loss."""
    for mode in R.MODES:
        tensors, meta, case = build_fn(mode)
        path = os.path.join(out_dir, f"{kind}_{mode}.safetensors")
        write_safetensors(path, tensors, meta)
        print(f"{kind}_{mode}: loss {case['loss']:.9g} (f64 {case['loss_f64']:.9g}) {os.path.getsize(path) / 1e3:.0f} KB")


def main():
    out_dir = fixture_dir()
    torch.set_num_threads(1)
    write_per_mode(out_dir, "condition", build)
    for mode in R.MODES:
        tensors, meta, case = build_cond_norm(mode)
        path = os.path.join(out_dir, f"condnorm_{mode}.safetensors")
        write_safetensors(path, tensors, meta)
        print(f"condnorm_{mode}: reca loss {case['reca_loss']:.9g}, i2t loss {case['i2t_loss']:.9g} "
              f"{os.path.getsize(path) / 1e3:.0f} KB")


if __name__ == "__main__":
    main()
