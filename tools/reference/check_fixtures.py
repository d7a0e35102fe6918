"""Re-reads every golden fixture with the strict reader and recomputes it with reca_ref.py
(self-consistency of the fixtures and of their layout):

    /usr/bin/python3 tools/reference/check_fixtures.py [FIXTURE_DIR]

Checks per file: metadata (format, config, case), parameter names/shapes/dtypes against
SPEC §8/§9, batch dtypes/shapes/invariants, loss, every grad, the AdamW update, the five
losses, aux tensors. Exits non-zero on the first mismatch.
"""
import glob
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
from safetensors_np import read_safetensors  # noqa: E402

# Same code on the same machine: agreement should be (nearly) exact; these bounds only
# leave room for thread-count dependent reductions inside torch.
LOSS_RTOL = 1e-6
GRAD_RTOL = 1e-5  # max |Δ| / max |grad| per tensor
AFTER_ATOL = 1e-7


def fail(path, msg):
    raise SystemExit(f"FAIL {os.path.basename(path)}: {msg}")


def check_batch(path, cfg, case, batch):
    g = R.geometry(cfg)
    B, S, T, N, D = case["batch"], cfg["image_size"], g["T"], g["N"], g["D"]
    want = {"images": (np.uint8, (B, S, S, 3))}
    task, mode = case["task"], cfg["mode"]
    if task != "vq":
        want["text"] = (np.int32, (B, T))
        want["dropped"] = (np.uint8, (B,))
        if task != "i2t" and mode == "mask":
            want["masked"] = (np.uint8, (B, N))
        if task != "i2t" and mode == "flow":
            want["t"] = (np.float32, (B,))
            want["noise"] = (np.float32, (B, N, D))
    if set(batch) != set(want):
        fail(path, f"batch tensors {sorted(batch)} != {sorted(want)}")
    for k, (dt, shape) in want.items():
        if batch[k].dtype != dt or batch[k].shape != shape:
            fail(path, f"batch.{k}: {batch[k].dtype} {batch[k].shape}, want {np.dtype(dt)} {shape}")
    if task == "vq":
        return
    strings = [case["template"]] * B if task == "reca" else case["captions"]
    for i, s in enumerate(strings):
        ids, cut = R.encode_text(s, T)
        row = [R.PAD] * T if batch["dropped"][i] else R.pad_text(ids, T)
        if list(batch["text"][i]) != row or case["bytes_cut"][i] != cut:
            fail(path, f"batch.text[{i}] is not the encoding of {s!r} (dropped={batch['dropped'][i]})")
    if task == "i2t" and batch["dropped"].any():
        fail(path, "i2t captions are never dropped")
    if "masked" in batch:
        n = batch["masked"].sum(axis=1)
        if list(n) != case["mask_n"] or not ((n >= 1) & (n <= N)).all():
            fail(path, f"masked counts {list(n)} vs mask_n {case['mask_n']}")
        for u, k in zip(case["mask_u"], case["mask_n"]):
            if k != min(max(math.ceil(math.cos(math.pi * u / 2) * N), 1), N):
                fail(path, f"mask_n {k} does not follow from u={u}")
    if "t" in batch and not ((batch["t"] > 0) & (batch["t"] < 1)).all():
        fail(path, "t outside (0,1)")


def max_rel(a, b):
    den = float(b.abs().max())
    num = float((a - b).abs().max())
    return 0.0 if num == 0 else num / max(den, 1e-30)


def check_file(path):
    torch.set_num_threads(1)
    tensors, meta, dtypes = read_safetensors(path)
    if meta.get("reca.format") != "reca-fixture-1":
        fail(path, f"reca.format = {meta.get('reca.format')!r}")
    cfg = R.config_from_json(meta["reca.config"])
    if list(cfg) != R.CONFIG_FIELDS or cfg != R.make_config("tiny", cfg["mode"]):
        fail(path, "reca.config is not the tiny preset in SPEC field order")
    case = json.loads(meta["reca.case"])
    mode, task = case["mode"], case["task"]
    if os.path.basename(path) != f"{mode}_{task}.safetensors" or cfg["mode"] != mode:
        fail(path, "file name / mode / task disagree")
    groups = {}
    for k in tensors:
        pre, _, rest = k.partition(".")
        if pre not in ("param", "batch", "grad", "after", "aux"):
            fail(path, f"unexpected tensor {k}")
        groups.setdefault(pre, {})[rest] = tensors[k]
    params = R.params_from_numpy(groups["param"], cfg)
    trainable = case["trainable"]
    if set(groups["grad"]) != set(trainable) or set(groups["after"]) != set(trainable):
        fail(path, "grad.* / after.* must cover exactly the trainable parameters")
    for k in list(groups["grad"]) + list(groups["after"]):
        if tensors.get("grad." + k, tensors.get("after." + k)).dtype != np.float32:
            fail(path, f"{k}: not float32")
    want_trainable = [n for n in params if n.startswith("vq.")] if task == "vq" else list(params)
    if trainable != want_trainable:
        fail(path, "trainable list")
    check_batch(path, cfg, case, groups["batch"])
    batch = R.batch_from_numpy(groups["batch"])
    opt = case["optimizer"]
    scale = case["cond_grad_scale"]
    if scale != (0.1 if task == "reca" else 1.0):
        fail(path, "cond_grad_scale")

    r = R.reference_step(params, cfg, task, batch, trainable, opt, scale)
    if abs(r["loss"] - case["loss"]) > LOSS_RTOL * abs(case["loss"]):
        fail(path, f"loss {r['loss']!r} vs stored {case['loss']!r}")
    if abs(case["loss_f64"] - case["loss"]) > 1e-5 * abs(case["loss_f64"]):
        fail(path, "loss_f64 far from loss")
    worst_g = 0.0
    for n in trainable:
        stored = torch.from_numpy(groups["grad"][n])
        e = max_rel(r["grads"][n], stored)
        worst_g = max(worst_g, e)
        if e > GRAD_RTOL:
            fail(path, f"grad.{n}: max rel diff {e:.2e}")
    for key in ("grad_norm", "clip_scale"):
        if abs(r[key] - case[key]) > 1e-6 * abs(case[key]):
            fail(path, f"{key} {r[key]} vs {case[key]}")
    if abs(r["lr"] - case["lr"]) > 0 or case["lr"] != opt["lr"]:
        fail(path, "lr")
    # the update from the STORED grads must reproduce after.* (isolates the optimizer)
    stored_grads = OrderedDict((n, torch.from_numpy(groups["grad"][n])) for n in trainable)
    after, st = R.adamw_from_grads(params, stored_grads, opt)
    worst_a = max(float((after[n] - torch.from_numpy(groups["after"][n])).abs().max()) for n in trainable)
    if worst_a > AFTER_ATOL:
        fail(path, f"after.* differs from AdamW(param, grad) by {worst_a:.2e}")
    # five losses on the same batch and draws
    cur = OrderedDict((n, t.clone()) for n, t in params.items())
    o = R.AdamW(lr=opt["lr"], betas=tuple(opt["betas"]), eps=opt["eps"], weight_decay=opt["weight_decay"],
                max_grad_norm=opt["max_grad_norm"])
    losses = []
    for _ in range(len(case["losses_5_steps"])):
        l, gr, _ = R.loss_and_grads(cur, cfg, task, batch, set(trainable), torch.float32, scale)
        losses.append(float(l))
        o.step(cur, gr)
    worst_l = max(abs(a - b) / abs(b) for a, b in zip(losses, case["losses_5_steps"]))
    if worst_l > 1e-5 or case["losses_5_steps"][0] != case["loss"]:
        fail(path, f"losses_5_steps {losses} vs {case['losses_5_steps']}")
    if not all(b < a for a, b in zip(case["losses_5_steps"], case["losses_5_steps"][1:])):
        fail(path, "losses over 5 steps do not decrease")
    # aux
    info = r["info"]
    if "codes" in info:
        if not np.array_equal(groups["aux"]["codes"], info["codes"].numpy().astype(np.int32)):
            fail(path, "aux.codes")
    if "c" in info and max_rel(info["c"].detach(), torch.from_numpy(groups["aux"]["c"])) > 1e-6:
        fail(path, "aux.c")
    n_params = sum(t.numel() for t in params.values())
    print(f"ok  {os.path.basename(path):24s} loss {case['loss']:.9g}  grads {len(trainable)} tensors (max rel {worst_g:.1e})  "
          f"after (max abs {worst_a:.1e})  5 losses (max rel {worst_l:.1e})  {n_params} params")


SAMPLING_FIXTURE = "sampling.safetensors"


def check_sampling(path):
    """Re-samples every case of the sampling fixture (make_sampling_fixtures.py) with
    sampling_ref.py from its checkpoint and settings: the same codes, the same images."""
    import sampling_ref as SR

    arrs, meta, _ = read_safetensors(path)
    if meta.get("reca.format") != "reca-sampling-fixture-1":
        fail(path, "reca.format")
    root = os.path.join(HERE, "..", "..")
    for c in json.loads(meta["reca.sampling_cases"]):
        p, cfg = SR.load_params(os.path.join(root, c["model"]))
        o = c["options"]
        out = SR.sample(p, cfg, prompts=c["prompts"], steps=o["steps"], cfg_scale=o["cfg"], temperature=o["temperature"],
                        top_k=o["topK"], choice_temperature=o["choiceTemperature"], seed=o["seed"])
        if "codes" in out and not np.array_equal(out["codes"].numpy(), arrs[c["name"] + ".codes"]):
            fail(path, c["name"] + ".codes")
        diff = float(np.abs(out["images"].numpy() - arrs[c["name"] + ".images"]).max())
        if diff > 1e-6:
            fail(path, f"{c['name']}.images differ by {diff}")
        print(f"ok  {SAMPLING_FIXTURE} {c['name']:14s} seed {o['seed']}  images max |diff| {diff:.1e}")


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "test", "fixtures")
    sampling = os.path.join(d, SAMPLING_FIXTURE)
    condition = sorted(f for f in glob.glob(os.path.join(d, "cond*_*.safetensors")))
    align = sorted(f for f in glob.glob(os.path.join(d, "align_*.safetensors")))
    files = sorted(f for f in glob.glob(os.path.join(d, "*.safetensors"))
                   if os.path.basename(f) != SAMPLING_FIXTURE and f not in condition and f not in align)
    want = [f"{m}_{t}.safetensors" for m in R.MODES for t in R.TASKS] + ["ar_vq.safetensors", "mask_vq.safetensors"]
    names = [os.path.basename(f) for f in files]
    if sorted(names) != sorted(want):
        raise SystemExit(f"FAIL fixture set: have {names}, want {sorted(want)}")
    for f in files:
        check_file(f)
    if os.path.exists(sampling):
        check_sampling(sampling)
    check_condition_fixtures(condition)
    check_align_fixtures(align)
    print(f"{len(files)} fixtures ok" + (" and the sampling fixture" if os.path.exists(sampling) else "")
          + f", {len(condition)} condition fixtures, {len(align)} alignment fixtures")


def check_condition_fixtures(paths):
    """The condition-pathway fixtures are rebuilt by their script and must be the same tensors."""
    import make_condition_fixtures as MC
    want = [f"{kind}_{m}.safetensors" for kind in ("condition", "condnorm") for m in R.MODES]
    if sorted(os.path.basename(p) for p in paths) != sorted(want):
        raise SystemExit(f"FAIL condition fixture set: have {[os.path.basename(p) for p in paths]}, want {sorted(want)}")
    for p in paths:
        kind, mode = os.path.basename(p)[:-len(".safetensors")].split("_")
        check_rebuilt(p, (MC.build if kind == "condition" else MC.build_cond_norm)(mode), "make_condition_fixtures.py")


def check_rebuilt(p, built, script):
    """A stored fixture against its script's rebuild (tensors, meta, case): same keys,
    config and case, every tensor within 1e-6."""
    tensors, meta, _ = read_safetensors(p)
    rebuilt, rmeta, _ = built
    if set(tensors) != set(rebuilt) or rmeta["reca.config"] != meta["reca.config"]:
        fail(p, f"keys or config differ from {script}'s")
    worst = max(float(np.max(np.abs(tensors[k].astype(np.float64) - rebuilt[k].astype(np.float64)), initial=0))
                for k in tensors)
    if worst > 1e-6 or json.loads(meta["reca.case"]) != json.loads(rmeta["reca.case"]):
        fail(p, f"differs from a rebuild by {worst:.2e}")
    print(f"ok  {os.path.basename(p):28s} rebuilt, max |diff| {worst:.1e}")


def check_align_fixtures(paths):
    """The condition-alignment fixtures are rebuilt by their script and must be the same tensors."""
    import make_align_fixtures as MA
    want = [f"align_{m}.safetensors" for m in R.MODES]
    if sorted(os.path.basename(p) for p in paths) != sorted(want):
        raise SystemExit(f"FAIL alignment fixture set: have {[os.path.basename(p) for p in paths]}, want {sorted(want)}")
    for p in paths:
        check_rebuilt(p, MA.build(os.path.basename(p)[len("align_"):-len(".safetensors")]), "make_align_fixtures.py")


if __name__ == "__main__":
    main()
