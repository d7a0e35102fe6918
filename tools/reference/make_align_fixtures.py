"""Writes the condition-alignment fixtures to test/fixtures/ (run by hand):

    /usr/bin/python3 tools/reference/make_align_fixtures.py [OUT_DIR]

Per mode, from the small config of make_condition_fixtures.py (two generator blocks, so
the loss is a mean over layers), its parameters and a batch of images with their reca
templates and captions (two samples share a caption, which leaves that pair out of both
softmaxes): align_<mode>.safetensors holds the reference's condition-alignment loss (SPEC
§5) and every gradient, everything trainable (vq.* gets none).
"""
import json
import os
import sys
from collections import OrderedDict

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_condition_fixtures as MC  # noqa: E402
import make_fixtures as MF  # noqa: E402
import reca_ref as R  # noqa: E402

SEED = 4242
TEMPLATES = ["describe the image", "describe this picture", "caption the scene", "describe the image"]
CAPTIONS = ["a red circle", "two blue squares", "a red circle", "a green triangle above a square"]


def build(mode):
    cfg = R.make_config("tiny", mode, **dict(MC.OVERRIDES, depth=2))
    params = MF.fixture_params(cfg, SEED + MF.MODE_INDEX[mode])
    gen = torch.Generator().manual_seed(SEED + 17 * MF.MODE_INDEX[mode])
    S, T, B = cfg["image_size"], cfg["max_text_len"], len(CAPTIONS)
    batch_np = OrderedDict()
    batch_np["images"] = torch.randint(0, 256, (B, S, S, 3), generator=gen, dtype=torch.int64).to(torch.uint8).numpy()
    batch_np["templates"], _ = MF.text_tensor(TEMPLATES, [0] * B, T)
    batch_np["captions"], _ = MF.text_tensor(CAPTIONS, [0] * B, T)
    batch = R.batch_from_numpy(batch_np)
    trainable = set(params)
    loss, grads, _ = R.loss_and_grads(params, cfg, "align", batch, trainable, torch.float32)
    loss64, _, _ = R.loss_and_grads(params, cfg, "align", batch, trainable, torch.float64)
    tensors = OrderedDict()
    for n, t in params.items():
        tensors["param." + n] = t.numpy()
    for n, a in batch_np.items():
        tensors["batch." + n] = np.ascontiguousarray(a)
    for n, g in grads.items():
        tensors["grad." + n] = g.float().numpy()
    case = OrderedDict(mode=mode, task="align", seed=SEED, temperature=R.ALIGN_TEMPERATURE,
                       loss=float(loss), loss_f64=float(loss64))
    meta = {"reca.format": MF.FORMAT, "reca.config": R.config_json(cfg), "reca.case": json.dumps(case)}
    return tensors, meta, case


def main():
    torch.set_num_threads(1)
    MC.write_per_mode(MC.fixture_dir(), "align", build)


if __name__ == "__main__":
    main()
