"""Checks one training step dumped by `reca debug-step` (SPEC §9) against the PyTorch
reference:

    /usr/bin/python3 tools/reference/verify_step.py DIR [--json OUT.json] [--cond-grad-scale S]

DIR holds params.safetensors, batch.safetensors, grads.safetensors, params_after.safetensors
and result.json. Recomputes the loss (float32 and float64), every trainable grad, and the
AdamW update, and reports the largest differences. Exit status 1 when a difference is
beyond the tolerances below, 2 when the dump itself is malformed.

    /usr/bin/python3 tools/reference/verify_step.py --from-fixture test/fixtures/mask_reca.safetensors DIR

writes a golden fixture out in the debug-step layout (to see the format, or to test this tool).

Assumes the dump is of a first update (fresh Adam moments, t = 1) and `optimizer.lr` is the
rate used for it. cond_grad_scale is read from result.json when present (default 0.1; it
applies to task `reca` only).
"""
import argparse
import json
import os
import sys
from collections import OrderedDict

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reca_ref as R  # noqa: E402
from safetensors_np import SafetensorsError, read_safetensors, write_safetensors  # noqa: E402

TOL = dict(
    loss_rel=1e-5,       # |loss_engine - loss_ref| / |loss_ref|
    grad_rel=1e-4,       # per tensor: max |Δg| / max |g_ref|
    optim_abs=1e-6,      # params_after vs reference AdamW applied to the ENGINE's grads
    after_abs_big=1e-6,  # params_after vs reference after, where |g_ref| > 1e-6 ...
    after_abs_small=None,  # ... and where |g_ref| <= 1e-6: lr (one step moves an element by <= ~lr)
)


def malformed(msg):
    print(f"malformed dump: {msg}")
    sys.exit(2)


def max_rel(a, b):
    den = float(b.abs().max()) if b.numel() else 0.0
    num = float((a - b).abs().max()) if b.numel() else 0.0
    return 0.0 if num == 0 else num / max(den, 1e-30)


def load_dir(d):
    try:
        res = json.load(open(os.path.join(d, "result.json")))
        pt, pmeta, _ = read_safetensors(os.path.join(d, "params.safetensors"))
        bt, _, _ = read_safetensors(os.path.join(d, "batch.safetensors"))
        gt, _, _ = read_safetensors(os.path.join(d, "grads.safetensors"))
        at, _, _ = read_safetensors(os.path.join(d, "params_after.safetensors"))
    except (OSError, ValueError, SafetensorsError) as e:
        malformed(str(e))
    cfg = res.get("config")
    if isinstance(cfg, str):
        cfg = json.loads(cfg)
    if cfg is None and "reca.config" in pmeta:
        cfg = json.loads(pmeta["reca.config"])
    if cfg is None:
        malformed("no config in result.json or params metadata")
    cfg.setdefault("cond_norm", False)  # dumps written before the field existed
    cfg = {k: cfg[k] for k in R.CONFIG_FIELDS} if all(k in cfg for k in R.CONFIG_FIELDS) else malformed(
        f"config lacks {[k for k in R.CONFIG_FIELDS if k not in cfg]}")
    R.validate_config(cfg)
    return res, cfg, pt, bt, gt, at


def verify(d, cond_grad_scale=None, json_out=None):
    torch.set_num_threads(1)
    res, cfg, pt, bt, gt, at = load_dir(d)
    task = res["task"]
    if res.get("mode", cfg["mode"]) != cfg["mode"]:
        malformed("result.json mode differs from config.mode")
    try:
        params = R.params_from_numpy(pt, cfg)
        after_engine = R.params_from_numpy(at, cfg)
        batch = R.batch_from_numpy(bt)
    except (ValueError, AssertionError) as e:
        malformed(str(e))
    trainable = list(res["trainable"])
    if sorted(gt) != sorted(trainable):
        malformed(f"grads.safetensors names differ from trainable: {sorted(set(gt) ^ set(trainable))[:8]}")
    opt = res["optimizer"]
    opt = dict(lr=opt["lr"], betas=opt["betas"], eps=opt["eps"], weight_decay=opt["weight_decay"],
               max_grad_norm=opt["max_grad_norm"])
    s = cond_grad_scale if cond_grad_scale is not None else res.get("cond_grad_scale", 0.1)

    ref = R.reference_step(params, cfg, task, batch, trainable, opt, s)
    loss64, _, _ = R.loss_and_grads(params, cfg, task, batch, set(), torch.float64, s)
    report = OrderedDict(dir=os.path.abspath(d), mode=cfg["mode"], task=task, cond_grad_scale=s)
    eng_loss = float(res["loss"])
    report["loss"] = dict(engine=eng_loss, reference_f32=ref["loss"], reference_f64=float(loss64),
                          rel=abs(eng_loss - ref["loss"]) / abs(ref["loss"]))
    grads_e = OrderedDict((n, torch.from_numpy(gt[n])) for n in trainable)
    per = []
    for n in trainable:
        if tuple(grads_e[n].shape) != tuple(params[n].shape):
            malformed(f"grad {n}: shape {list(grads_e[n].shape)}")
        per.append((max_rel(grads_e[n], ref["grads"][n]), n, float(ref["grads"][n].abs().max())))
    per.sort(reverse=True)
    report["grad_max_rel"] = per[0][0] if per else 0.0
    report["grad_worst"] = [dict(name=n, max_rel=e, ref_max_abs=m) for e, n, m in per[:10]]
    n_e, _ = R.clip_scale_of(grads_e, opt["max_grad_norm"])
    report["grad_norm"] = dict(engine_grads=n_e, reference=ref["grad_norm"])

    # optimizer alone: reference AdamW on the engine's grads
    after_from_e, _ = R.adamw_from_grads(params, grads_e, opt)
    optim_abs = max(float((after_from_e[n] - after_engine[n]).abs().max()) for n in trainable) if trainable else 0.0
    frozen_moved = [n for n in params if n not in trainable and not torch.equal(params[n], after_engine[n])]
    big, small = 0.0, 0.0
    for n in trainable:
        diff = (after_engine[n] - ref["after"][n]).abs()
        sel = ref["grads"][n].abs() > 1e-6
        if sel.any():
            big = max(big, float(diff[sel].max()))
        if (~sel).any():
            small = max(small, float(diff[~sel].max()))
    report["after"] = dict(vs_adamw_of_engine_grads=optim_abs, vs_reference_where_grad_gt_1e6=big,
                           vs_reference_where_grad_le_1e6=small, frozen_params_moved=frozen_moved)

    lim_small = opt["lr"] if TOL["after_abs_small"] is None else TOL["after_abs_small"]
    failures = []
    if report["loss"]["rel"] > TOL["loss_rel"]:
        failures.append(f"loss rel {report['loss']['rel']:.2e} > {TOL['loss_rel']}")
    if report["grad_max_rel"] > TOL["grad_rel"]:
        failures.append(f"grad {per[0][1]} rel {per[0][0]:.2e} > {TOL['grad_rel']}")
    if optim_abs > TOL["optim_abs"]:
        failures.append(f"AdamW(engine grads) vs params_after {optim_abs:.2e} > {TOL['optim_abs']}")
    if big > TOL["after_abs_big"]:
        failures.append(f"params_after vs reference {big:.2e} > {TOL['after_abs_big']} (where |g| > 1e-6)")
    if small > lim_small:
        failures.append(f"params_after vs reference {small:.2e} > {lim_small} (where |g| <= 1e-6)")
    if frozen_moved:
        failures.append(f"frozen parameters changed: {frozen_moved[:5]}")
    report["failures"] = failures
    report["tolerances"] = TOL

    L = report["loss"]
    print(f"{cfg['mode']}/{task}  (cond_grad_scale {s})")
    print(f"loss       engine {L['engine']:.9g}  reference {L['reference_f32']:.9g}  (f64 {L['reference_f64']:.9g})  rel {L['rel']:.2e}")
    print(f"grad norm  engine {n_e:.9g}  reference {ref['grad_norm']:.9g}")
    print(f"grads      {len(trainable)} tensors, max rel {report['grad_max_rel']:.2e}; worst:")
    for e, n, m in per[:5]:
        print(f"             {n:40s} {e:.2e}  (max |g| {m:.3e})")
    A = report["after"]
    print(f"after      vs AdamW(engine grads) {A['vs_adamw_of_engine_grads']:.2e}; vs reference {big:.2e} (|g|>1e-6), "
          f"{small:.2e} (|g|<=1e-6); frozen moved: {len(frozen_moved)}")
    print("PASS" if not failures else "FAIL: " + "; ".join(failures))
    if json_out:
        with open(json_out, "w") as f:
            json.dump(report, f, indent=1)
    return not failures


def fixture_to_dir(path, d):
    """Writes a golden fixture in the debug-step layout of SPEC §9."""
    t, meta, _ = read_safetensors(path)
    case = json.loads(meta["reca.case"])
    os.makedirs(d, exist_ok=True)
    md = {"reca.config": meta["reca.config"]}
    pick = lambda pre: {k[len(pre):]: v for k, v in t.items() if k.startswith(pre)}  # noqa: E731
    params = pick("param.")
    after = dict(params)
    after.update(pick("after."))
    write_safetensors(os.path.join(d, "params.safetensors"), params, md)
    write_safetensors(os.path.join(d, "batch.safetensors"), pick("batch."))
    write_safetensors(os.path.join(d, "grads.safetensors"), pick("grad."))
    write_safetensors(os.path.join(d, "params_after.safetensors"), after, md)
    o = case["optimizer"]
    res = dict(preset=case["preset"], mode=case["mode"], task=case["task"], seed=case["seed"], batch=case["batch"],
               loss=case["loss"], trainable=case["trainable"],
               optimizer=dict(lr=case["lr"], betas=o["betas"], eps=o["eps"], weight_decay=o["weight_decay"],
                              max_grad_norm=o["max_grad_norm"]),
               config=json.loads(meta["reca.config"]), cond_grad_scale=case["cond_grad_scale"])
    with open(os.path.join(d, "result.json"), "w") as f:
        json.dump(res, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("out", nargs="?")
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--cond-grad-scale", type=float)
    ap.add_argument("--from-fixture", action="store_true", help="dir is a fixture file; write it to OUT as a dump")
    a = ap.parse_args()
    if a.from_fixture:
        fixture_to_dir(a.dir, a.out)
        print(f"wrote {a.out}")
        return 0
    return 0 if verify(a.dir, a.cond_grad_scale, a.json_out) else 1


if __name__ == "__main__":
    sys.exit(main())
