#!/usr/bin/env python3
"""The PyTorch peer of `reca bench --suite step` and `--suite all`: times RecA training
steps (loss, backward, clipping, AdamW) of tools/reference/reca_ref.py, the PyTorch
implementation of the same model, on the same preset, mode, task, batch, config overrides
and thread count.

One point (OPENBLAS_NUM_THREADS=1: torch's OpenMP threads each call a one-thread OpenBLAS;
letting the pthread OpenBLAS start its own threads on top halves torch's speed on 2 cores):
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 /usr/bin/python3 benchmarks/torch_step.py \
      --preset small --mode mask --batch 8 --threads 2 --json out.json
Several points in one process (start-up paid once; `reca bench --suite all` does this):
  ... benchmarks/torch_step.py --points points.json --json out.json
where points.json is a list of {"preset", "mode", "task", "batch", "threads", "steps",
"config": {field: value}}; out.json is then {"torch": version, "results": [...]}, one
result per point in the same order.
As a server (`reca bench --suite all` does this, so it can alternate our step and this
one point by point): ... benchmarks/torch_step.py --serve
reads one point per line on stdin and writes one result per line on stdout, as JSON.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools", "reference"))
import torch  # noqa: E402

import reca_ref as R  # noqa: E402

CAPTIONS = ["a red circle", "two blue squares on white", "a green triangle", "a small yellow star"]


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_point(preset="small", mode="mask", task="reca", batch=8, threads=2, steps=5, config=None):
    rss_at_start = rss_bytes()  # torch imported, no model yet
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = R.make_config(preset, mode, **(config or {}))
    g = R.geometry(cfg)
    B, S, N, D, T = batch, cfg["image_size"], g["N"], g["D"], g["T"]
    params = R.init_params(cfg, 0)
    # The `reca` recipe: the generator trains; understanding side and tokenizer frozen.
    trainable = {n for n in params if n.startswith("gen.")}
    if task == "reca":
        text = [R.pad_text(R.encode_text("describe the image", T)[0], T)] * B
    else:
        text = [R.pad_text(R.encode_text(CAPTIONS[i % len(CAPTIONS)], T)[0], T) for i in range(B)]
    data = {
        "images": torch.randint(0, 256, (B, S, S, 3), dtype=torch.uint8),
        "text": torch.tensor(text, dtype=torch.int32),
        "dropped": torch.zeros(B, dtype=torch.uint8),
    }
    if mode == "mask":
        data["masked"] = (torch.rand(B, N) < 0.5).to(torch.uint8)
    if mode == "flow":
        data["t"] = torch.sigmoid(torch.randn(B))
        data["noise"] = torch.randn(B, N, D)
    opt = R.AdamW(lr=1e-4)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        loss, grads, _ = R.loss_and_grads(params, cfg, task, data, trainable, cond_grad_scale=0.1)
        opt.step(params, grads)
        dt = time.perf_counter() - t0
        if i > 0:  # the first step is the warm-up
            times.append(dt)
    step = statistics.median(times)
    Lc, Lt = R.block_lengths(cfg, task)
    seq = Lc + Lt
    return {
        "peer": "pytorch", "torch": torch.__version__, "threads": threads,
        "preset": preset, "mode": mode, "task": task, "batch": B, "config_overrides": config or {},
        "step_seconds": step, "step_seconds_all": times, "images_per_s": B / step,
        "tokens_per_s": B * seq / step, "sequence_length": seq, "loss": float(loss),
        # Peak of the whole process so far: meaningful for the first (or only) point of a process.
        "rss_at_start_bytes": rss_at_start,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--mode", default="mask", choices=["ar", "mask", "flow"])
    ap.add_argument("--task", default="reca", choices=["reca", "t2i"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--config", help="JSON object of config fields over the preset")
    ap.add_argument("--points", help="JSON file: a list of points to run in this process")
    ap.add_argument("--serve", action="store_true", help="points on stdin, results on stdout, a JSON line each")
    ap.add_argument("--json")
    a = ap.parse_args()
    if a.serve:
        for line in sys.stdin:
            if line.strip():
                print(json.dumps({"torch": torch.__version__, **run_point(**json.loads(line))}), flush=True)
        return
    if a.points:
        with open(a.points) as f:
            points = json.load(f)
        results = []
        for p in points:
            r = run_point(**p)
            print(f"pytorch {r['preset']} {r['mode']} {r['task']} batch {r['batch']} threads {r['threads']} "
                  f"config {json.dumps(r['config_overrides'])}: step {r['step_seconds'] * 1e3:.1f} ms, "
                  f"{r['images_per_s']:.1f} images/s", flush=True)
            results.append(r)
        out = {"torch": torch.__version__, "results": results}
    else:
        out = run_point(a.preset, a.mode, a.task, a.batch, a.threads, a.steps,
                        json.loads(a.config) if a.config else None)
        print(f"pytorch {torch.__version__} {a.preset} {a.mode} {a.task} batch {a.batch} threads {a.threads}: "
              f"step {out['step_seconds'] * 1e3:.1f} ms, {out['images_per_s']:.1f} images/s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
