"""Checks of the reference itself (run by hand): /usr/bin/python3 tools/reference/selftest.py

- finite-difference gradchecks (float64, torch.autograd.gradcheck) of the pieces and of
  every task loss on a micro config;
- cond_grad_scale scales exactly the gradient into c; the VQ straight-through gradient
  matches its closed form; AdamW matches torch.optim.AdamW (used here only as a check);
- the attention visibility rule against an element-by-element loop; patchify layout;
  UTF-8 cutting; PAD tokens have no influence; the safetensors reader rejects bad files.
"""
import math
import os
import struct
import sys
import tempfile
from collections import OrderedDict

import numpy as np
import torch
from torch.autograd import gradcheck

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reca_ref as R  # noqa: E402
from safetensors_np import SafetensorsError, read_safetensors, write_safetensors  # noqa: E402

torch.set_num_threads(1)
MICRO = dict(image_size=8, gen_patch=4, und_image_size=4, und_patch=2, und_width=8, und_depth=2,
             und_heads=2, und_select_layer=-1, width=8, depth=2, heads=2, mlp_ratio=2,
             codebook_size=5, code_dim=3, max_text_len=4)
PASSED = []


def check(name, cond, detail=""):
    if not cond:
        raise AssertionError(f"FAILED {name} {detail}")
    PASSED.append(name)
    print(f"ok  {name} {detail}")


def micro_cfg(mode):
    cfg = dict(R.PRESETS["tiny"])
    cfg.update(MICRO)
    cfg["mode"] = mode
    R.validate_config(cfg)
    return cfg


def rand_params(cfg, seed, dtype=torch.float64):
    """Init at a scale where every nonlinearity is exercised (not the tiny SPEC init)."""
    g = torch.Generator().manual_seed(seed)
    p = OrderedDict()
    for n, (shape, kind) in R.param_spec(cfg).items():
        t = torch.randn(shape, generator=g, dtype=torch.float64) * 0.5
        if kind == "ln_weight":
            t = 1.0 + 0.2 * t
        p[n] = t.to(dtype)
    return p


def micro_batch(cfg, task, seed, dropped=(0, 1)):
    g = torch.Generator().manual_seed(seed)
    geo = R.geometry(cfg)
    B, S, T = 2, cfg["image_size"], geo["T"]
    b = {"images": torch.randint(0, 256, (B, S, S, 3), generator=g).to(torch.uint8)}
    texts = [[ord("a"), ord("b"), ord("c")], [ord("x")]]
    rows = [[R.PAD] * T if (d and task != "i2t") else R.pad_text(t, T) for t, d in zip(texts, dropped)]
    b["text"] = torch.tensor(rows, dtype=torch.int32)
    b["dropped"] = torch.tensor([d if task != "i2t" else 0 for d in dropped], dtype=torch.uint8)
    m = torch.zeros(B, geo["N"], dtype=torch.uint8)
    m[0, [0, 2]] = 1
    m[1, :] = 1
    b["masked"] = m
    b["t"] = torch.tensor([0.3, 0.85], dtype=torch.float32)
    b["noise"] = torch.randn(B, geo["N"], geo["D"], generator=g)
    return b


def test_pieces():
    cfg = micro_cfg("mask")
    p = rand_params(cfg, 1)
    for n in p:
        p[n].requires_grad_(True)
    x = torch.randn(2, 7, cfg["width"], dtype=torch.float64, requires_grad=True)
    cond_pad = torch.tensor([[False, False, True], [False, True, True]])
    tgt_pad = torch.tensor([[False, False, False, True], [False, False, False, False]])
    vis = R.visibility(cond_pad, tgt_pad, True)
    names = [n for n in p if n.startswith("gen.blocks.0.")]
    f = lambda x, *ws: R.block(dict(zip(names, ws)), "gen.blocks.0", x, cfg["heads"], vis)  # noqa: E731
    check("gradcheck block (masked attention, LN, gelu MLP)", gradcheck(f, (x, *[p[n] for n in names])))
    u = torch.randn(2, 4, cfg["und_width"], dtype=torch.float64, requires_grad=True)
    cn = [n for n in p if n.startswith("conn.")]
    check("gradcheck connector", gradcheck(lambda u, *ws: R.connector(dict(zip(cn, ws)), u), (u, *[p[n] for n in cn])))
    pn = rand_params(dict(micro_cfg("mask"), cond_norm=True), 3)
    cn = [n for n in pn if n.startswith("conn.")]
    check("gradcheck connector with conn.norm", "conn.norm.weight" in cn and gradcheck(
        lambda u, *ws: R.connector(dict(zip(cn, ws)), u), (u, *[pn[n] for n in cn])))
    fc = rand_params(micro_cfg("flow"), 2)
    tn = [n for n in fc if n.startswith("gen.t_embed.")]
    for n in tn:
        fc[n].requires_grad_(True)
    t = torch.tensor([0.1, 0.7], dtype=torch.float64)
    check("gradcheck time embedding MLP", gradcheck(lambda *ws: R.time_embed(dict(zip(tn, ws)), t), tuple(fc[n] for n in tn)))


def test_task_losses():
    """Every task loss in every mode, float64: for each parameter tensor, the central
    difference along one random unit direction d (h = 1e-5) equals <grad, d>; plus a full
    torch.autograd.gradcheck wrt the position tables, img_embed, ln_f, a few biases."""
    for mode in R.MODES:
        cfg = micro_cfg(mode)
        p = rand_params(cfg, 3)
        for task in R.TASKS:
            b = micro_batch(cfg, task, 4)
            loss, g, _ = R.loss_and_grads(p, cfg, task, b, set(p), torch.float64, cond_grad_scale=1.0)
            gen = torch.Generator().manual_seed(13)
            worst, h = 0.0, 1e-5
            for n in p:
                if n.startswith("vq."):  # codes are an argmin: no gradient, checked to be zero
                    assert float(g[n].abs().max()) == 0.0
                    continue
                d = torch.randn(p[n].shape, generator=gen, dtype=torch.float64)
                d /= d.norm()
                q = OrderedDict(p)
                q[n] = p[n] + h * d
                lp = R.task_loss(q, cfg, task, b, torch.float64, 1.0)[0]
                q[n] = p[n] - h * d
                lm = R.task_loss(q, cfg, task, b, torch.float64, 1.0)[0]
                fd = float(lp - lm) / (2 * h)
                an = float((g[n] * d).sum())
                err = abs(fd - an) / (1e-6 + abs(an))
                worst = max(worst, err)
            small = [n for n in ("gen.pos_cond", "gen.pos_img", "gen.pos_txt", "gen.img_embed", "gen.ln_f.weight",
                                 "gen.head_img.bias", "conn.fc2.bias", "und.pos_embed") if n in p]

            def f(*ws):
                q = OrderedDict(p)
                q.update(zip(small, ws))
                return R.task_loss(q, cfg, task, b, torch.float64, cond_grad_scale=1.0)[0]

            ok = gradcheck(f, tuple(p[n].clone().requires_grad_(True) for n in small), eps=1e-6, atol=1e-7, rtol=1e-5)
            check(f"loss {mode}/{task}: directional FD over {len(p)} tensors, gradcheck over {len(small)}",
                  worst < 1e-5 and ok, f"(worst rel {worst:.1e})")


def test_cond_grad_scale():
    cfg = micro_cfg("mask")
    p = rand_params(cfg, 5)
    b = micro_batch(cfg, "reca", 6)
    _, g1, _ = R.loss_and_grads(p, cfg, "reca", b, set(p), torch.float64, cond_grad_scale=1.0)
    _, g2, _ = R.loss_and_grads(p, cfg, "reca", b, set(p), torch.float64, cond_grad_scale=0.1)
    worst_und = max(float((g2[n] - 0.1 * g1[n]).abs().max()) for n in p if n.startswith(("und.", "conn.")))
    worst_gen = max(float((g2[n] - g1[n]).abs().max()) for n in p if n.startswith("gen."))
    check("cond_grad_scale: und/conn grads x0.1, gen grads unchanged", worst_und < 1e-15 and worst_gen == 0.0,
          f"({worst_und:.1e}, {worst_gen:.1e})")
    l1, _ = R.task_loss(p, cfg, "reca", b, torch.float64, 1.0)
    l2, _ = R.task_loss(p, cfg, "reca", b, torch.float64, 0.1)
    check("cond_grad_scale leaves the forward value bitwise unchanged", float(l1) == float(l2))


def test_vq_straight_through():
    cfg = micro_cfg("ar")
    p = rand_params(cfg, 7)
    b = micro_batch(cfg, "vq", 8)
    loss, g, info = R.loss_and_grads(p, cfg, "vq", b, set(p), torch.float64)
    # closed form
    img = R.images_to_float(b["images"], torch.float64)
    x = R.patchify(img, cfg["gen_patch"])
    z = R.linear(p, "vq.enc", x)
    e = p["vq.codebook"][info["codes"]]
    xhat = R.linear(p, "vq.dec", e)
    nx, nz = x.numel(), z.numel()
    dxhat = 2 * (xhat - x) / nx
    dz = dxhat @ p["vq.dec.weight"] + 0.25 * 2 * (z - e) / nz  # straight-through + commitment
    want = OrderedDict()
    want["vq.dec.weight"] = (dxhat.reshape(-1, dxhat.shape[-1]).t() @ e.reshape(-1, e.shape[-1]))
    want["vq.dec.bias"] = dxhat.reshape(-1, dxhat.shape[-1]).sum(0)
    want["vq.enc.weight"] = dz.reshape(-1, dz.shape[-1]).t() @ x.reshape(-1, x.shape[-1])
    want["vq.enc.bias"] = dz.reshape(-1, dz.shape[-1]).sum(0)
    cb = torch.zeros_like(p["vq.codebook"])
    cb.index_add_(0, info["codes"].reshape(-1), (2 * (e - z) / nz).reshape(-1, z.shape[-1]))
    want["vq.codebook"] = cb
    worst = max(float((g[n] - want[n]).abs().max()) for n in want)
    check("vq straight-through gradient = closed form", worst < 1e-14, f"({worst:.1e})")
    others = max(float(g[n].abs().max()) for n in p if not n.startswith("vq."))
    check("vq loss touches vq.* only", others == 0.0)
    mse = float(((xhat - x) ** 2).mean())
    cbk = float(((z - e) ** 2).mean())
    check("vq loss value = mse + 1.25*mean((z-e)^2)", abs(float(loss) - (mse + 1.25 * cbk)) < 1e-14)


def test_adamw():
    cfg = micro_cfg("mask")
    for dtype, tol in ((torch.float64, 1e-15), (torch.float32, 1e-6)):
        p = rand_params(cfg, 9, dtype)
        g = torch.Generator().manual_seed(10)
        grads_seq = [OrderedDict((n, (torch.randn(t.shape, generator=g, dtype=torch.float64) * 0.01).to(dtype))
                                 for n, t in p.items()) for _ in range(3)]
        mine = R.AdamW(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.02, max_grad_norm=1e9)
        cur = OrderedDict((n, t.clone()) for n, t in p.items())
        tp = OrderedDict((n, t.clone().requires_grad_(True)) for n, t in p.items())
        dec = [tp[n] for n in tp if R.decays(n, tp[n].shape)]
        nodec = [tp[n] for n in tp if not R.decays(n, tp[n].shape)]
        ref = torch.optim.AdamW([{"params": dec, "weight_decay": 0.02}, {"params": nodec, "weight_decay": 0.0}],
                                lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
        for gs in grads_seq:
            mine.step(cur, gs)
            for n in tp:
                tp[n].grad = gs[n].clone()
            ref.step()
        # relative to |p| (float32: a few ulp, the two differ in the order of the scalar factors)
        worst = max(float(((cur[n] - tp[n].detach()).abs() / tp[n].detach().abs().clamp(min=1e-3)).max()) for n in cur)
        check(f"AdamW (3 steps, decay mask) = torch.optim.AdamW [{dtype}]", worst < tol, f"(max rel {worst:.1e})")
    ndec = sum(1 for n in p if R.decays(n, p[n].shape))
    check("decay set = every '<layer>.weight' 2-D tensor", all(
        R.decays(n, p[n].shape) == (R.param_spec(cfg)[n][1] in ("linear", "linear_out")) for n in p), f"({ndec} tensors)")
    # clipping
    gs = OrderedDict((n, torch.ones_like(t)) for n, t in p.items())
    n, s = R.clip_scale_of(gs, 1.0)
    total = sum(t.numel() for t in p.values())
    check("clip scale = max_norm/(n+1e-6)", abs(n - math.sqrt(total)) < 1e-9 and abs(s - 1.0 / (n + 1e-6)) < 1e-15)
    check("warmup / cosine schedule", R.lr_at(1, 1.0, warmup=4) == 0.25 and R.lr_at(4, 1.0, warmup=4) == 1.0
          and R.lr_at(5, 1.0, 4) == 1.0 and abs(R.lr_at(14, 1.0, 4, "cosine", 24, 0.1) - 0.55) < 1e-12
          and R.lr_at(30, 1.0, 4, "cosine", 24, 0.1) == 0.1)


def test_visibility():
    cond_pad = torch.tensor([[False, True, False, True]])
    tgt_pad = torch.tensor([[False, False, True]])
    for causal in (False, True):
        vis = R.visibility(cond_pad, tgt_pad, causal)[0]
        pad = torch.cat([cond_pad, tgt_pad], 1)[0]
        Lc, L = 4, 7
        ok = True
        for i in range(L):
            for j in range(L):
                if pad[j]:
                    want = False
                elif i < Lc:
                    want = j < Lc
                elif j < Lc:
                    want = True
                else:
                    want = (j <= i) if causal else True
                ok &= bool(vis[i, j]) == want
        check(f"visibility rule (causal={causal})", ok)


def test_layout_and_text():
    x = torch.arange(2 * 8 * 8 * 3, dtype=torch.float64).reshape(2, 8, 8, 3)
    t = R.patchify(x, 4)
    ok = True
    for b in range(2):
        for py in range(2):
            for px in range(2):
                for i in range(4):
                    for j in range(4):
                        for c in range(3):
                            ok &= float(t[b, py * 2 + px, (i * 4 + j) * 3 + c]) == float(x[b, py * 4 + i, px * 4 + j, c])
    check("patchify layout (py*(S/P)+px; (i,j,c))", ok and torch.equal(R.unpatchify(t, 4), x))
    pooled = R.avgpool(x, 2)
    check("avgpool", float(pooled[1, 2, 3, 1]) == float(x[1, 4:6, 6:8, 1].mean()))
    check("utf-8 cut", R.encode_text("abcé", 4) == ([97, 98, 99], 2) and R.encode_text("abcé", 5) == ([97, 98, 99, 195, 169], 0)
          and R.encode_text("ab", 4) == ([97, 98], 0) and R.encode_text("€", 2) == ([], 3))


def test_pad_has_no_influence():
    for mode in R.MODES:
        cfg = micro_cfg(mode)
        p = rand_params(cfg, 11)
        for task in R.TASKS:
            b = micro_batch(cfg, task, 12)
            l1, g1, _ = R.loss_and_grads(p, cfg, task, b, set(p), torch.float64)
            q = OrderedDict(p)
            q["gen.tok_embed"] = p["gen.tok_embed"].clone()
            q["gen.tok_embed"][R.PAD] += 3.0
            l2, _, _ = R.loss_and_grads(q, cfg, task, b, set(p), torch.float64)
            ok = float(l1) == float(l2) and float(g1["gen.tok_embed"][R.PAD].abs().max()) == 0.0
            check(f"PAD embedding has no influence ({mode}/{task})", ok)


def test_reader_strict():
    d = tempfile.mkdtemp()
    good = os.path.join(d, "g.safetensors")
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    write_safetensors(good, {"a": a, "b": np.array([1, 2], dtype=np.uint8), "c": np.array([7], dtype=np.int32)}, {"k": "v"})
    t, m, dt = read_safetensors(good)
    check("reader round trip", np.array_equal(t["a"], a) and m == {"k": "v"} and dt["b"] == "U8" and t["c"][0] == 7)
    raw = open(good, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    hdr = raw[8 : 8 + n].decode()

    def bad(header_text, data, label):
        hb = header_text.encode()
        path = os.path.join(d, "b.safetensors")
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(hb)) + hb + data)
        try:
            read_safetensors(path)
        except SafetensorsError:
            return True
        print("   accepted:", label)
        return False

    data = raw[8 + n :]
    cases = [
        (hdr, data + b"\0", "trailing byte"),
        (hdr, data[:-1], "short data"),
        (hdr.replace('"F32"', '"F31"'), data, "unknown dtype"),
        (hdr.replace('"shape":[2,3]', '"shape":[3,3]'), data, "wrong byte count"),
        ('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"\0\0", "duplicate key"),
        ('{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"\0\0", "gap at start"),
        ('{"__metadata__":{"k":1}}', b"", "non-string metadata"),
        ('[1]', b"", "not an object"),
    ]
    check("reader rejects malformed files", all(bad(h, dd, lab) for h, dd, lab in cases), f"({len(cases)} cases)")


if __name__ == "__main__":
    test_layout_and_text()
    test_visibility()
    test_reader_strict()
    test_pieces()
    test_cond_grad_scale()
    test_vq_straight_through()
    test_adamw()
    test_pad_has_no_influence()
    test_task_losses()
    print(f"{len(PASSED)} passed, 0 failed")
