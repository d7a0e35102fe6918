"""Writes test/fixtures/sampling.safetensors: samples of the PyTorch samplers
(sampling_ref.py, SPEC §7) from the committed tiny checkpoints models/tiny-<mode>.safetensors,
for test/sampling-parity.test.ts to compare with the engine's model.generateRaw.

  /usr/bin/python3 tools/reference/make_sampling_fixtures.py          (~1 min)

Every case is t2i on three prompts (one with multi-byte UTF-8, one cut at max_text_len),
with and without CFG. Discrete cases store the codes int32 [B, N] and the decoded images;
flow cases the final latent z [B, N, 3P²] and the image. Keys: `<case>.codes`,
`<case>.z`, `<case>.images`; metadata `reca.sampling_cases` lists the cases and their
settings, `reca.format` = `reca-sampling-fixture-1`.

Token ids must match exactly, so each case takes the first seed (from 1 up) whose every
decision was clear: each categorical draw's u·S at least 1e-4·S from a CDF step and,
in mask mode, the last kept and first remasked confidences at least 1e-4 apart
(relative). Engine and PyTorch logits differ by float32 rounding only (about 1e-6
relative), so at these margins no draw or ranking can flip; the margins are stored.

Before writing, it checks its own key/value cache: the ar logits of teacher-forced
codes through the cache, one slot at a time, against one full forward of the
training graph (reca_ref.generator_hidden).
"""
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reca_ref as R  # noqa: E402
import safetensors_np as ST  # noqa: E402
import sampling_ref as SR  # noqa: E402

ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "test", "fixtures", "sampling.safetensors")
PROMPTS = ["a red circle", "un café vert près du lac", "three yellow stars on a dark sky tonight"]
MIN_MARGIN = 1e-4

# (name, mode, settings); steps apply to mask and flow (ar runs N steps).
CASES = [
    ("ar_cfg1", "ar", dict(cfg_scale=1.0)),
    ("ar_cfg3", "ar", dict(cfg_scale=3.0)),
    ("ar_topk_temp", "ar", dict(cfg_scale=2.0, temperature=0.8, top_k=16)),
    ("mask_cfg1", "mask", dict(cfg_scale=1.0, steps=8)),
    ("mask_cfg3", "mask", dict(cfg_scale=3.0, steps=8)),
    ("mask_choice", "mask", dict(cfg_scale=2.0, steps=8, temperature=0.8, top_k=16, choice_temperature=2.0)),
    ("mask_greedy", "mask", dict(cfg_scale=3.0, steps=6, temperature=0.0)),
    ("flow_cfg1", "flow", dict(cfg_scale=1.0, steps=8)),
    ("flow_cfg3", "flow", dict(cfg_scale=3.0, steps=8)),
]


def check_kv_cache(p, cfg):
    """ar: logits through the cache, slot by slot, equal one masked full forward."""
    g = R.geometry(cfg)
    N, K, T, W = g["N"], g["K"], g["T"], cfg["width"]
    torch.manual_seed(0)
    codes = torch.randint(0, K, (2, N))
    text = SR.text_rows(PROMPTS[:2], T)
    # full forward, as the training graph builds it (codes in place of the VQ of an image)
    x_cond, cond_pad = SR.condition(p, cfg, "t2i", text, None)
    body = p["gen.img_embed"][codes[:, : N - 1]]
    x_tgt = torch.cat([p["gen.tok_embed"][R.GEN].expand(2, 1, W), body], dim=1) + p["gen.pos_img"][:N]
    vis = R.visibility(cond_pad, torch.zeros(2, N, dtype=torch.bool), True)
    with torch.no_grad():
        h = R.generator_hidden(p, cfg, torch.cat([x_cond, x_tgt], dim=1), vis)
        full = SR._lin(p, "gen.head_img", h[:, -N:])
        stack = SR.KVStack(p, cfg, 2, x_cond.shape[1] + N, torch.cat([cond_pad, torch.zeros(2, N, dtype=torch.bool)], 1))
        stack.run(x_cond, 0)
        Lc = x_cond.shape[1]
        rows = [SR._lin(p, "gen.head_img", stack.run(x_tgt[:, j : j + 1], Lc + j, causal=True)) for j in range(N)]
    cached = torch.cat(rows, dim=1)
    err = float((cached - full).abs().max() / full.abs().max())
    assert err < 1e-5, f"kv cache differs from the full forward: {err}"
    return err


def check_maskgit_ties():
    """Equal confidences: the lower index is kept first (SPEC §7)."""
    conf = torch.tensor([[0.5, 0.7, 0.5, 0.5, 0.7]])
    sampled = torch.tensor([[10, 11, 12, 13, 14]])
    codes, masked = torch.full((1, 5), 99), torch.ones(1, 5, dtype=torch.bool)
    got = [SR.maskgit_select(codes, masked, sampled, conf, 99, s, 3)[0].tolist()[0] for s in range(3)]
    # T = 3: R = 4, 2, 0 -> keep 1, 3, 5 of the 5 masked positions
    assert got == [[99, 11, 99, 99, 99], [10, 11, 99, 99, 14], [10, 11, 12, 13, 14]], got


def finite(x):
    """A margin for JSON: null when no decision of that kind was taken."""
    return None if x == float("inf") else x


def main():
    check_maskgit_ties()
    tensors, cases = {}, []
    models = {}
    for name, mode, settings in CASES:
        if mode not in models:
            models[mode] = SR.load_params(os.path.join(ROOT, "models", f"tiny-{mode}.safetensors"))
            if mode == "ar":
                print(f"ar kv cache vs full forward: {check_kv_cache(*models[mode]):.1e} relative")
        p, cfg = models[mode]
        for seed in range(1, 200):
            out = SR.sample(p, cfg, prompts=PROMPTS, seed=seed, **settings)
            m = out["margins"]
            if m["draw"] >= MIN_MARGIN and m["choice"] >= MIN_MARGIN:
                break
        else:
            raise SystemExit(f"{name}: no seed below 200 decides every draw by {MIN_MARGIN}")
        opts = dict(steps=settings.get("steps", 32), cfg=settings["cfg_scale"],
                    temperature=settings.get("temperature", 1.0), topK=settings.get("top_k", 0),
                    choiceTemperature=settings.get("choice_temperature", 0.0), seed=seed)
        cases.append(dict(name=name, mode=mode, model=f"models/tiny-{mode}.safetensors", prompts=PROMPTS,
                          options=opts, margin_draw=finite(m["draw"]), margin_choice=finite(m["choice"])))
        tensors[f"{name}.images"] = out["images"].numpy().astype(np.float32)
        if mode == "flow":
            tensors[f"{name}.z"] = out["z"].numpy().astype(np.float32)
        else:
            tensors[f"{name}.codes"] = out["codes"].numpy().astype(np.int32)
        print(f"{name}: seed {seed}, margins draw {m['draw']:.2e} choice {m['choice']:.2e}")
    meta = {"reca.format": "reca-sampling-fixture-1", "reca.sampling_cases": json.dumps(cases)}
    ST.write_safetensors(OUT, tensors, meta)
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
