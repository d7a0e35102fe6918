"""Writes the golden fixtures for the `tiny` preset to test/fixtures/ (run by hand):

    /usr/bin/python3 tools/reference/make_fixtures.py [OUT_DIR]

One file per case: <mode>_<task>.safetensors for mode in ar/mask/flow and task in
reca/t2i/i2t, plus <mode>_vq.safetensors (tokenizer loss) for ar and mask. See
tools/reference/README.md for the layout.
"""
import json
import math
import os
import sys
from collections import OrderedDict

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reca_ref as R  # noqa: E402
from safetensors_np import write_safetensors  # noqa: E402

SEED = 20250
BATCH = 3
FORMAT = "reca-fixture-1"
OPTIMIZER = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.02, max_grad_norm=1.0, warmup=0)
COND_GRAD_SCALE = 0.1
TEMPLATE = "describe the image"
T2I_CAPTIONS = ["a red circle", "two blue squares", "a café sign in green"]
T2I_DROPPED = [0, 1, 0]
RECA_DROPPED = [0, 0, 1]
# 12 bytes; exactly max_text_len (32) bytes; 33 bytes with 'é' across byte 32 -> cut to 31
I2T_CAPTIONS = ["a red circle", "three yellow stars on a dark sky", "a tiny hut next to the huge café"]
MODE_INDEX = {"ar": 0, "mask": 1, "flow": 2}
TASK_INDEX = {"reca": 0, "t2i": 1, "i2t": 2, "vq": 3}


def fixture_params(cfg, seed):
    """SPEC §8 init, then a perturbation so that no term is trivially zero or one:
    biases ~ N(0, 0.02), LN weights 1 + N(0, 0.1) (conn.norm's 0.02·(1 + N(0, 0.1))), LN biases ~ N(0, 0.05), and the codebook
    ~ N(0, 0.1) (the scale of encoder outputs, like a codebook seeded from them, so codes
    are well separated). Drawn in float64, stored as float32."""
    p = R.init_params(cfg, seed, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed + 1)
    spec = R.param_spec(cfg)
    for name, (shape, kind) in spec.items():
        if kind == "bias":
            p[name] = torch.randn(shape, generator=g, dtype=torch.float64) * 0.02
        elif kind == "ln_weight":
            p[name] = 1.0 + torch.randn(shape, generator=g, dtype=torch.float64) * 0.1
        elif kind == "cond_gain":  # conn.norm.weight: its own starting gain, perturbed alike
            p[name] = R.COND_NORM_INIT_GAIN * (1.0 + torch.randn(shape, generator=g, dtype=torch.float64) * 0.1)
        elif kind == "ln_bias":
            p[name] = torch.randn(shape, generator=g, dtype=torch.float64) * 0.05
        elif kind == "codebook":
            p[name] = torch.randn(shape, generator=g, dtype=torch.float64) * 0.1
    return OrderedDict((n, t.float()) for n, t in p.items())


def text_tensor(strings, dropped, T):
    rows, cuts = [], []
    for s, d in zip(strings, dropped):
        ids, cut = R.encode_text(s, T)
        cuts.append(cut)
        rows.append([R.PAD] * T if d else R.pad_text(ids, T))
    return np.array(rows, dtype=np.int32), cuts


def make_batch(cfg, task, seed):
    """All the random draws of the step, from one generator seeded per case."""
    g = R.geometry(cfg)
    gen = torch.Generator().manual_seed(seed)
    S = cfg["image_size"]
    b = OrderedDict()
    b["images"] = torch.randint(0, 256, (BATCH, S, S, 3), generator=gen, dtype=torch.int64).to(torch.uint8).numpy()
    info = {}
    if task == "vq":
        return b, info
    if task == "reca":
        strings, dropped = [TEMPLATE] * BATCH, RECA_DROPPED
        info["template"] = TEMPLATE
    elif task == "t2i":
        strings, dropped = T2I_CAPTIONS, T2I_DROPPED
        info["captions"] = T2I_CAPTIONS
    else:
        strings, dropped = I2T_CAPTIONS, [0] * BATCH
        info["captions"] = I2T_CAPTIONS
    b["text"], cuts = text_tensor(strings, dropped, g["T"])
    b["dropped"] = np.array(dropped, dtype=np.uint8)
    info["bytes_cut"] = cuts
    if task != "i2t" and cfg["mode"] == "mask":
        # §5: u ~ U(0,1), r = cos(pi u / 2), n = clamp(ceil(r N), 1, N), positions = first n of a permutation
        N = g["N"]
        masked = np.zeros((BATCH, N), dtype=np.uint8)
        us, ns = [], []
        for i in range(BATCH):
            u = float(torch.rand((), generator=gen, dtype=torch.float64))
            n = min(max(math.ceil(math.cos(math.pi * u / 2) * N), 1), N)
            perm = torch.randperm(N, generator=gen)
            masked[i, perm[:n].numpy()] = 1
            us.append(u)
            ns.append(n)
        b["masked"] = masked
        info["mask_u"], info["mask_n"] = us, ns
    if task != "i2t" and cfg["mode"] == "flow":
        xi = torch.randn(BATCH, generator=gen, dtype=torch.float32)
        b["t"] = torch.sigmoid(xi).numpy()
        b["noise"] = torch.randn(BATCH, g["N"], g["D"], generator=gen, dtype=torch.float32).numpy()
    return b, info


def max_rel(a, b):
    """max |a-b| / max |b| (0 when both are zero)."""
    den = float(b.abs().max())
    num = float((a - b).abs().max())
    return 0.0 if num == 0 else num / max(den, 1e-30)


def run_case(cfg, task, params, batch_np, trainable, steps=5):
    """Returns dict with loss, grads, after, losses, step info, f64 loss and spread."""
    batch = R.batch_from_numpy(batch_np)
    loss, grads, info = R.loss_and_grads(params, cfg, task, batch, trainable, torch.float32, COND_GRAD_SCALE)
    loss64, grads64, _ = R.loss_and_grads(params, cfg, task, batch, trainable, torch.float64, COND_GRAD_SCALE)
    opt = R.AdamW(**OPTIMIZER)
    cur = OrderedDict((n, t.clone()) for n, t in params.items())
    step_info = opt.step(cur, grads)
    after = OrderedDict((n, t.clone()) for n, t in cur.items())
    losses = [float(loss)]
    for _ in range(steps - 1):
        l, gr, _ = R.loss_and_grads(cur, cfg, task, batch, trainable, torch.float32, COND_GRAD_SCALE)
        losses.append(float(l))
        opt.step(cur, gr)
    spread = max(max_rel(grads[n].double(), grads64[n]) for n in grads)
    # How far one float32 update moves when the grads carry only float32 rounding: the same
    # update from the float64 grads. At step 1 an element's update is lr*g/(|g|+eps), so
    # elements with |g| near eps amplify tiny grad differences; compare `after` with an
    # absolute tolerance of this order (or recompute it from the engine's own grads).
    opt64 = R.AdamW(**OPTIMIZER)
    alt = OrderedDict((n, t.clone()) for n, t in params.items())
    opt64.step(alt, OrderedDict((n, g.float()) for n, g in grads64.items()))
    after_spread = max(float((alt[n] - after[n]).abs().max()) for n in grads)
    return dict(loss=loss, grads=grads, after=after, losses=losses, step=step_info, info=info,
                loss64=float(loss64), grad_spread=spread, after_spread=after_spread)


def build_case(cfg, task, params, seed):
    batch_np, binfo = make_batch(cfg, task, seed)
    trainable = [n for n in params if (n.startswith("vq.") if task == "vq" else True)]
    r = run_case(cfg, task, params, batch_np, set(trainable))
    info = r["info"]
    tensors = OrderedDict()
    for n, t in params.items():
        tensors["param." + n] = t.numpy()
    for n, a in batch_np.items():
        tensors["batch." + n] = a
    for n, gr in r["grads"].items():
        tensors["grad." + n] = gr.float().numpy()
    for n in trainable:
        tensors["after." + n] = r["after"][n].float().numpy()
    if "codes" in info:
        tensors["aux.codes"] = info["codes"].to(torch.int32).numpy()
    if "c" in info:
        tensors["aux.c"] = info["c"].detach().float().numpy()
    case = OrderedDict(
        mode=cfg["mode"], task=task, preset="tiny", seed=seed, batch=BATCH,
        loss=float(r["loss"]), loss_f64=r["loss64"],
        grad_norm=r["step"]["grad_norm"], clip_scale=r["step"]["clip_scale"], lr=r["step"]["lr"],
        losses_5_steps=r["losses"],
        trainable=trainable,
        cond_grad_scale=COND_GRAD_SCALE if task == "reca" else 1.0,
        optimizer=dict(lr=OPTIMIZER["lr"], betas=list(OPTIMIZER["betas"]), eps=OPTIMIZER["eps"],
                       weight_decay=OPTIMIZER["weight_decay"], max_grad_norm=OPTIMIZER["max_grad_norm"],
                       warmup=0, schedule="constant", step=1),
        grad_f32_vs_f64_max_rel=r["grad_spread"],
        after_f32_vs_f64_max_abs=r["after_spread"],
    )
    if "count" in info:
        case["loss_count"] = info["count"]  # predictions / masked positions / elements averaged over
    if task == "vq":
        case["vq_terms"] = {k: float(info[k]) for k in ("mse", "codebook", "commit")}
    if "margin" in info or "code_margin" in info:
        # smallest gap between the nearest and second-nearest code distance over the batch:
        # far above float32 noise (~1e-8 here), so every backend must pick the same codes
        case["code_margin_min"] = info.get("margin", info.get("code_margin"))
        assert case["code_margin_min"] > 1e-5, "near tie in the VQ codes: pick another seed"
    case.update(binfo)
    meta = {"reca.format": FORMAT, "reca.config": R.config_json(cfg), "reca.case": json.dumps(case)}
    return tensors, meta, case


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "test", "fixtures")
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)
    total = 0
    for mode in R.MODES:
        cfg = R.make_config("tiny", mode)
        params = fixture_params(cfg, SEED)
        tasks = list(R.TASKS) + (["vq"] if mode != "flow" else [])
        for task in tasks:
            seed = SEED + 100 * MODE_INDEX[mode] + 10 * TASK_INDEX[task]
            tensors, meta, case = build_case(cfg, task, params, seed)
            path = os.path.join(out_dir, f"{mode}_{task}.safetensors")
            write_safetensors(path, tensors, meta)
            size = os.path.getsize(path)
            total += size
            print(f"{mode}_{task:4s} loss {case['loss']:.9g} (f64 {case['loss_f64']:.9g}) grad_norm {case['grad_norm']:.6g} "
                  f"clip {case['clip_scale']:.6g} losses {['%.6g' % l for l in case['losses_5_steps']]} "
                  f"f32/f64 grad spread {case['grad_f32_vs_f64_max_rel']:.2e} after {case['after_f32_vs_f64_max_abs']:.2e} "
                  f"margin {case.get('code_margin_min', float('nan')):.3g} {size / 1e6:.2f} MB")
    print(f"total {total / 1e6:.2f} MB in {out_dir}")


if __name__ == "__main__":
    main()
