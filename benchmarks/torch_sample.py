#!/usr/bin/env python3
"""The PyTorch peer of `reca bench --suite sampling` (and of the sampling table of
`--suite all`): times text-to-image sampling with tools/reference/sampling_ref.py, the
PyTorch samplers of SPEC §7 (ar with a key/value cache, mask, flow; CFG batched), on the
same checkpoint, prompts, guidance scale, sampler steps, batch and thread count as ours.

As a server (the suite does this, so it can alternate our sampling and this one point by
point; OPENBLAS_NUM_THREADS=1, see lib/bench/torch_peer.ts torchEnv):
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \\
      /usr/bin/python3 benchmarks/torch_sample.py --serve
reads one point per line on stdin,
  {"checkpoint": FILE, "prompts": [...], "cfg": S, "steps": T, "threads": N, "seeds": [..],
   "warmup_seed": null or a seed}
and writes one result per line: the seconds of each seed's sampling call (median,
images/s) and, when warmup_seed is given, that untimed call's codes (discrete modes) or
float images (flow), so the caller can check the two samplers agree on the bench point.
One point from the command line:
  ... benchmarks/torch_sample.py --checkpoint models/small-mask.safetensors --batch 8 --cfg 3 --threads 2
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools", "reference"))
import torch  # noqa: E402

import sampling_ref as SR  # noqa: E402

_loaded = {}


def load(checkpoint):
    if checkpoint not in _loaded:
        _loaded.clear()
        _loaded[checkpoint] = SR.load_params(checkpoint)
    return _loaded[checkpoint]


def run_point(checkpoint, prompts, cfg=1.0, steps=32, threads=2, seeds=(1,), warmup_seed=None,
              temperature=1.0, top_k=0):
    torch.set_num_threads(threads)
    p, config = load(checkpoint)
    opts = dict(steps=steps, cfg_scale=cfg, temperature=temperature, top_k=top_k)
    out = {"peer": "pytorch", "torch": torch.__version__, "threads": threads, "mode": config["mode"],
           "batch": len(prompts), "cfg": cfg, "steps": steps}
    if warmup_seed is not None:
        w = SR.sample(p, config, prompts=prompts, seed=warmup_seed, **opts)
        if "codes" in w:
            out["warmup_codes"] = w["codes"].flatten().tolist()
        else:
            out["warmup_images"] = w["images"].flatten().tolist()
    times = []
    for seed in seeds:
        t0 = time.perf_counter()
        SR.sample(p, config, prompts=prompts, seed=seed, **opts)
        times.append(time.perf_counter() - t0)
    out["seconds_all"] = times
    if times:  # seeds may be empty: a warm-up (and the load of the weights) only
        s = statistics.median(times)
        out.update(seconds=s, images_per_s=len(prompts) / s)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", action="store_true", help="points on stdin, results on stdout, a JSON line each")
    ap.add_argument("--checkpoint")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--cfg", type=float, default=1.0)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    if a.serve:
        for line in sys.stdin:
            if line.strip():
                print(json.dumps(run_point(**json.loads(line))), flush=True)
        return
    if not a.checkpoint:
        ap.error("--checkpoint is required without --serve")
    prompts = [f"prompt {i}" for i in range(a.batch)]
    r = run_point(a.checkpoint, prompts, a.cfg, a.steps, a.threads, list(range(1, a.repeats + 1)), warmup_seed=0)
    print(f"pytorch {r['torch']} {r['mode']} cfg {a.cfg} batch {a.batch} threads {a.threads}: "
          f"{r['seconds']:.3f} s, {r['images_per_s']:.2f} images/s")


if __name__ == "__main__":
    main()
