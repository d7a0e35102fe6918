"""PyTorch samplers of RecA-Mini, as docs/SPEC.md §7 defines them, on top of the
reference model (reca_ref.py): `ar` with a key/value cache (one new slot per step),
`mask` (MaskGIT schedule, confidences, ties to the lower index, optional randomized
choice) and `flow` (Euler), each with classifier-free guidance (conditional and
unconditional sequences in one batch, conditional first), then decode.

Draws are the engine's Philox draws (philox_np.py), so with the same weights, prompts,
seed and settings the samples are the engine's: token ids equal unless a draw lands
within float32 rounding of a boundary (a categorical CDF step, or two confidences at
the keep/remask cut); `margins` reports how close every such decision came, so a
fixture can keep only cases decided by a wide margin.

The condition block runs once per call and fills every block's k/v cache; then
  ar   : step j runs only slot Lc + j against the cache (and appends its k/v);
  mask : each step runs the N + 1 target slots against the cached condition;
  flow : likewise, with z and τ(t) in the target slots.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

import philox_np as PX
import reca_ref as R

SAMPLE_UNIFORM, SAMPLE_NOISE, SAMPLE_CHOICE = 1, 2, 3


def sample_stream(purpose, b):
    return (purpose << 32) | b


def _ln(p, name, x):
    return F.layer_norm(x, (x.shape[-1],), p[name + ".weight"], p[name + ".bias"], 1e-5)


def _lin(p, name, x):
    return F.linear(x, p[name + ".weight"], p[name + ".bias"])


class KVStack:
    """The generator blocks with a per-block key/value cache [B, H, L, hd] of one batch of
    sequences. run(x, row0, causal) runs rows [row0, row0 + Lq) against the cached rows
    [0, row0) plus themselves (all of them, or those at or before each query when causal);
    condition rows (row0 == 0) see condition keys only, and PAD keys are never seen."""

    def __init__(self, p, cfg, B, L, key_pad):
        self.p, self.cfg = p, cfg
        W, H = cfg["width"], cfg["heads"]
        self.H, self.hd = H, W // H
        self.k = [torch.zeros(B, H, L, self.hd) for _ in range(cfg["depth"])]
        self.v = [torch.zeros(B, H, L, self.hd) for _ in range(cfg["depth"])]
        # additive mask per key: −inf on PAD keys (condition text only)
        self.key_bias = torch.zeros(B, 1, 1, L).masked_fill(key_pad[:, None, None, :], float("-inf"))

    def run(self, x, row0, causal=False):
        p, H, hd = self.p, self.H, self.hd
        B, Lq, W = x.shape
        end = row0 + Lq
        bias = self.key_bias[:, :, :, :end]
        if causal and Lq > 1:
            q_idx = torch.arange(row0, end)[:, None]
            k_idx = torch.arange(end)[None, :]
            bias = bias.masked_fill((k_idx > q_idx)[None, None], float("-inf"))
        scale = 1.0 / math.sqrt(hd)
        for i in range(self.cfg["depth"]):
            pre = f"gen.blocks.{i}"
            h = _ln(p, pre + ".ln1", x)
            q, k, v = _lin(p, pre + ".attn.qkv", h).split(W, dim=-1)
            q = q.reshape(B, Lq, H, hd).transpose(1, 2)
            self.k[i][:, :, row0:end] = k.reshape(B, Lq, H, hd).transpose(1, 2)
            self.v[i][:, :, row0:end] = v.reshape(B, Lq, H, hd).transpose(1, 2)
            s = (q @ self.k[i][:, :, :end].transpose(-1, -2)) * scale + bias
            o = (torch.softmax(s, dim=-1) @ self.v[i][:, :, :end]).transpose(1, 2).reshape(B, Lq, W)
            x = x + _lin(p, pre + ".attn.proj", o)
            h = _ln(p, pre + ".ln2", x)
            x = x + _lin(p, pre + ".mlp.fc2", F.gelu(_lin(p, pre + ".mlp.fc1", h), approximate="tanh"))
        return _ln(p, "gen.ln_f", x)


def cfg_combine(out, scale):
    """out [2B, ...] (conditional half first) -> out_u + s·(out_c − out_u), as one fused
    multiply-add over the float32 difference (the engine's rounding)."""
    B = out.shape[0] // 2
    c, u = out[:B], out[B:]
    d = (c - u).double()
    return (u.double() + float(np.float32(scale)) * d).float()


def categorical(logits, u, temperature, top_k):
    """SPEC §7 draw of each row of logits [R, V] given uniforms u [R] (float32).
    Returns (ids [R] int64, confidence [R] float32, margin [R] float64): the margin is
    how far u·S lay from the nearest CDF step, relative to S (inf when greedy)."""
    x = logits.float()
    R_, V = x.shape
    if 0 < top_k < V:
        thr = torch.topk(x, top_k, dim=-1).values[:, -1:]
        keep = x >= thr
    else:
        keep = torch.ones_like(x, dtype=torch.bool)
    tau = temperature if temperature > 0 else 1.0
    m = x.max(dim=-1, keepdim=True).values
    w = torch.where(keep, torch.exp((x - m) / np.float32(tau)), torch.zeros_like(x))
    S = w.double().sum(dim=-1)
    if temperature <= 0:
        ids = torch.argmax(x, dim=-1)  # first index of the maximum
        margin = torch.full((R_,), float("inf"), dtype=torch.float64)
    else:
        cum = torch.cumsum(w.double(), dim=-1)
        t = torch.from_numpy(u.astype(np.float64)) * S
        over = (cum > t[:, None]) & (w > 0)
        ids = torch.where(over.any(dim=-1), over.double().argmax(dim=-1),
                          (V - 1 - torch.flip(w > 0, dims=[-1]).double().argmax(dim=-1)))
        margin = ((cum - t[:, None]).abs().min(dim=-1).values / S)
    conf = (w.gather(1, ids[:, None])[:, 0].double() / S).float()
    return ids, conf, margin


def uniforms(seed, purpose, Bq, count):
    """philox_uniform(seed, purpose << 32 | b, i) for b < Bq, i < count: [Bq, count]."""
    streams = np.array([sample_stream(purpose, b) for b in range(Bq)], dtype=np.uint64)[:, None]
    return PX.philox_uniform(seed, streams, np.arange(count, dtype=np.uint64)[None, :])


def remask_count(N, s, T):
    r = math.floor(N * math.cos((math.pi / 2.0) * ((s + 1) / T)))
    return max(r, 0)


def maskgit_select(codes, masked, sampled, conf, mask_id, s, T):
    """One MaskGIT step over codes/masked [B, N]; returns (codes, masked, margin): the
    margin is the smallest relative gap, over samples, between the last kept and the
    first remasked confidence (inf when nothing is cut)."""
    B, N = codes.shape
    R_ = remask_count(N, s, T)
    M = masked.sum(dim=1)  # [B]
    keep = M - torch.clamp(M, max=R_)
    # rank the masked positions, most confident first, equal confidences by lower index
    # (a stable sort); unmasked positions (key +inf) go last
    key = torch.where(masked, -conf.float(), torch.full_like(conf, float("inf"), dtype=torch.float32))
    sorted_key, order = torch.sort(key, dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(N).expand(B, N).contiguous())
    take = masked & (rank < keep[:, None])
    codes = torch.where(take, sampled, codes)
    masked = masked & ~take
    margin = float("inf")
    cut = (keep > 0) & (keep < M)
    if cut.any():
        a = -sorted_key[cut].gather(1, (keep[cut] - 1)[:, None])[:, 0].double()
        c = -sorted_key[cut].gather(1, keep[cut][:, None])[:, 0].double()
        margin = float(((a - c) / torch.clamp(torch.maximum(a.abs(), c.abs()), min=1e-30)).min())
    return codes, masked, margin


def condition(p, cfg, task, text, cond_c):
    """Condition block embeddings [B, Lc, W] and its PAD flags [B, Lc]."""
    g = R.geometry(cfg)
    ids = R.condition_ids(cfg, task, text)
    tok = p["gen.tok_embed"][ids.clamp(min=0)]
    if task == "reca":
        tok = torch.cat([tok[:, :2], cond_c, tok[:, 2 + g["Nu"]:]], dim=1)
    return tok + p["gen.pos_cond"][: ids.shape[1]], ids == R.PAD


def text_rows(strings, T):
    return torch.tensor([R.pad_text(R.encode_text(s, T)[0], T) for s in strings], dtype=torch.long)


@torch.no_grad()
def sample(p, cfg, prompts=None, images=None, template="describe the image", steps=32, cfg_scale=1.0,
           temperature=1.0, top_k=0, choice_temperature=0.0, seed=0):
    """Text-to-image (prompts) or RecA reconstruction (images u8 [B, S, S, 3] + template).
    Returns dict images float32 [B, S, S, 3] in [−1, 1], codes [B, N] (discrete) or
    z [B, N, 3P²] (flow), and margins {draw, choice} (the closest decisions)."""
    g = R.geometry(cfg)
    mode, N, D, K, T, W = cfg["mode"], g["N"], g["D"], g["K"], g["T"], cfg["width"]
    if images is not None:
        task = "reca"
        Bq = images.shape[0]
        text = text_rows([template] * Bq, T)
        c = R.connector(p, R.und_features(p, cfg, R.images_to_float(images, torch.float32)))
    else:
        task = "t2i"
        Bq = len(prompts)
        text = text_rows(prompts, T)
        c = None
    guided = cfg_scale != 1.0
    if guided:  # the unconditional half: text all PAD, embeddings kept
        text = torch.cat([text, torch.full_like(text, R.PAD)], dim=0)
        c = torch.cat([c, c], dim=0) if c is not None else None
    B = text.shape[0]
    x_cond, cond_pad = condition(p, cfg, task, text, c)
    Lc, Lt = R.block_lengths(cfg, task)
    stack = KVStack(p, cfg, B, Lc + Lt, torch.cat([cond_pad, torch.zeros(B, Lt, dtype=torch.bool)], dim=1))
    stack.run(x_cond, 0)
    gen_row = p["gen.tok_embed"][R.GEN]
    head = lambda h: _lin(p, "gen.head_img", h)  # noqa: E731
    combine = (lambda o: cfg_combine(o, cfg_scale)) if guided else (lambda o: o)  # noqa: E731
    draw_margin, choice_margin = float("inf"), float("inf")
    out = {}

    if mode == "ar":
        codes = torch.zeros(Bq, N, dtype=torch.long)
        u_all = uniforms(seed, SAMPLE_UNIFORM, Bq, N)  # [Bq, N]: step j uses column j
        for j in range(N):
            emb = gen_row if j == 0 else p["gen.img_embed"][codes[:, j - 1]].repeat(B // Bq, 1)
            x = (emb + p["gen.pos_img"][j]).reshape(-1, 1, W).expand(B, 1, W)
            logits = combine(head(stack.run(x, Lc + j, causal=True))[:, 0])
            ids, _, margin = categorical(logits, u_all[:, j], temperature, top_k)
            codes[:, j] = ids
            draw_margin = min(draw_margin, float(margin.min()))
        out["codes"] = codes
    elif mode == "mask":
        codes = torch.full((Bq, N), K, dtype=torch.long)
        masked = torch.ones(Bq, N, dtype=torch.bool)
        u_all = uniforms(seed, SAMPLE_UNIFORM, Bq, steps * N).reshape(Bq, steps, N)
        anneals = [choice_temperature * (1.0 - (s + 1) / steps) for s in range(steps)]
        if any(a > 0 for a in anneals):
            gumbel = -np.log(-np.log(uniforms(seed, SAMPLE_CHOICE, Bq, steps * N).astype(np.float64))).reshape(Bq, steps, N)
        for s in range(steps):
            body = p["gen.img_embed"][codes].repeat(B // Bq, 1, 1)
            x = torch.cat([gen_row.expand(B, 1, W), body], dim=1) + p["gen.pos_img"][: N + 1]
            logits = combine(head(stack.run(x, Lc)[:, 1:]))  # [Bq, N, K]
            ids, conf, margin = categorical(logits.reshape(-1, K), u_all[:, s].reshape(-1), temperature, top_k)
            ids, conf = ids.reshape(Bq, N), conf.reshape(Bq, N)
            live = masked.reshape(-1)
            if live.any():
                draw_margin = min(draw_margin, float(margin[live].min()))
            if anneals[s] > 0:
                conf = torch.from_numpy((np.log(conf.double().numpy()) + anneals[s] * gumbel[:, s]).astype(np.float32))
            codes, masked, cm = maskgit_select(codes, masked, ids, conf, K, s, steps)
            choice_margin = min(choice_margin, cm)
        out["codes"] = codes
    else:
        streams = np.array([sample_stream(SAMPLE_NOISE, b) for b in range(Bq)], dtype=np.uint64)[:, None]
        eps = PX.philox_normal(seed, streams, np.arange(N * D, dtype=np.uint64)[None, :])
        z = torch.from_numpy(eps).reshape(Bq, N, D)
        dt = float(np.float32(1.0 / steps))
        for s in range(steps):
            t = torch.full((B,), float(np.float32(1.0 - s / steps)))
            zb = z.repeat(B // Bq, 1, 1)
            x = torch.cat([gen_row.expand(B, 1, W), _lin(p, "gen.img_in", zb)], dim=1) + p["gen.pos_img"][: N + 1]
            x = x + R.time_embed(p, t)[:, None, :]
            v = combine(head(stack.run(x, Lc)[:, 1:]))
            z = (z.double() - dt * v.double()).float()  # one rounding, as the engine's fused step
        out["z"] = z
        out["images"] = R.unpatchify(z, cfg["gen_patch"]).clamp(-1.0, 1.0)
    if mode != "flow":
        e = p["vq.codebook"][out["codes"]]
        out["images"] = R.unpatchify(_lin(p, "vq.dec", e), cfg["gen_patch"]).clamp(-1.0, 1.0)
    out["margins"] = {"draw": draw_margin, "choice": choice_margin}
    return out


def load_params(path):
    """(params, cfg) of an engine checkpoint (float32, SPEC §8 names)."""
    import json

    import safetensors_np as ST

    arrs, meta, _ = ST.read_safetensors(path)
    cfg = R.config_from_json(meta["reca.config"])
    return R.params_from_numpy({k: v.astype(np.float32) for k, v in arrs.items()
                                if not k.startswith(("optim.", "ema."))}, cfg), cfg
