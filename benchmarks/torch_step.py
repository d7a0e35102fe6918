#!/usr/bin/env python3
"""The PyTorch peer of `reca bench --suite step`: times one RecA training step (loss,
backward, clipping, AdamW) of tools/reference/reca_ref.py — the PyTorch implementation of
the same model — on the same preset, mode, batch and thread count.

Run with Debian's PyTorch and OpenBLAS's environment overrides removed for this command only:
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 benchmarks/torch_step.py \
      --preset small --mode mask --batch 8 --threads 2 --json out.json
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools", "reference"))
import torch  # noqa: E402

import reca_ref as R  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--mode", default="mask", choices=["ar", "mask", "flow"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = R.make_config(a.preset, a.mode)
    g = R.geometry(cfg)
    B, S, N, D, T = a.batch, cfg["image_size"], g["N"], g["D"], g["T"]
    params = R.init_params(cfg, 0)
    # The `reca` recipe: the generator trains; understanding side and tokenizer frozen.
    trainable = {n for n in params if n.startswith("gen.")}
    template = R.pad_text(R.encode_text("describe the image", T)[0], T)
    batch = {
        "images": torch.randint(0, 256, (B, S, S, 3), dtype=torch.uint8),
        "text": torch.tensor([template] * B, dtype=torch.int32),
        "dropped": torch.zeros(B, dtype=torch.uint8),
    }
    if a.mode == "mask":
        batch["masked"] = (torch.rand(B, N) < 0.5).to(torch.uint8)
    if a.mode == "flow":
        batch["t"] = torch.sigmoid(torch.randn(B))
        batch["noise"] = torch.randn(B, N, D)
    opt = R.AdamW(lr=1e-4)
    times = []
    for i in range(a.steps + 1):
        t0 = time.perf_counter()
        loss, grads, _ = R.loss_and_grads(params, cfg, "reca", batch, trainable, cond_grad_scale=0.1)
        opt.step(params, grads)
        dt = time.perf_counter() - t0
        if i > 0:  # the first step is the warm-up
            times.append(dt)
    step = statistics.median(times)
    seq = g["Nu"] + 3 + T + (N if a.mode == "ar" else N + 1)
    out = {
        "peer": "pytorch", "torch": torch.__version__, "threads": a.threads,
        "preset": a.preset, "mode": a.mode, "task": "reca", "batch": B,
        "step_seconds": step, "images_per_s": B / step, "tokens_per_s": B * seq / step,
        "loss": float(loss),
    }
    print(f"pytorch {torch.__version__} {a.preset} {a.mode} batch {B} threads {a.threads}: "
          f"step {step * 1e3:.1f} ms, {B / step:.1f} images/s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
