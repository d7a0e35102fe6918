"""PyTorch reference implementation of RecA-Mini (docs/SPEC.md): the model, the training
losses and AdamW, written plainly so the native engine can be checked against it.

Everything here is a function of (params, batch). All random draws of a step (CFG
dropout, mask positions, flow times and noise) are inputs in the batch dict, never
drawn inside; the engine's debug-step dump and the golden fixtures carry them.

Runs on CPU with PyTorch >= 1.13, in float32 (the contract) or float64 (to measure
the rounding spread of float32). No torch.optim, no nn.Module: parameters are a
dict name -> tensor whose names are the safetensors keys of SPEC §8.
"""
import json
import math
from collections import OrderedDict

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------------
# §2 Text ids
# ---------------------------------------------------------------------------------
PAD, BOS, EOS, IMG_BEGIN, IMG_END, GEN, CAP = 256, 257, 258, 259, 260, 261, 262
TEXT_VOCAB = 263

# ---------------------------------------------------------------------------------
# §1 Config presets
# ---------------------------------------------------------------------------------
CONFIG_FIELDS = [
    "mode", "image_size", "gen_patch", "und_image_size", "und_patch",
    "und_width", "und_depth", "und_heads", "und_select_layer",
    "width", "depth", "heads", "mlp_ratio", "codebook_size", "code_dim", "max_text_len",
    "cond_norm",
]
# conn.norm's starting gain (§8): the scale of the N(0, 0.02²) rows the condition is added to.
COND_NORM_INIT_GAIN = 0.02
PRESETS = {
    "tiny": dict(mode="mask", image_size=16, gen_patch=4, und_image_size=8, und_patch=2,
                 und_width=32, und_depth=2, und_heads=2, und_select_layer=-1,
                 width=64, depth=2, heads=4, mlp_ratio=4, codebook_size=64, code_dim=8, max_text_len=32,
                 cond_norm=False),
    "small": dict(mode="mask", image_size=32, gen_patch=4, und_image_size=16, und_patch=4,
                  und_width=128, und_depth=4, und_heads=4, und_select_layer=-1,
                  width=256, depth=6, heads=8, mlp_ratio=4, codebook_size=512, code_dim=16, max_text_len=48,
                  cond_norm=False),
    "base": dict(mode="mask", image_size=64, gen_patch=4, und_image_size=32, und_patch=4,
                 und_width=384, und_depth=6, und_heads=6, und_select_layer=-1,
                 width=768, depth=12, heads=12, mlp_ratio=4, codebook_size=4096, code_dim=32, max_text_len=64,
                 cond_norm=False),
}
MODES = ("ar", "mask", "flow")
TASKS = ("reca", "t2i", "i2t")


def make_config(preset="tiny", mode=None, **overrides):
    cfg = dict(PRESETS[preset])
    if mode is not None:
        cfg["mode"] = mode
    cfg.update(overrides)
    validate_config(cfg)
    return cfg


def validate_config(cfg):
    assert set(cfg) == set(CONFIG_FIELDS), sorted(set(cfg) ^ set(CONFIG_FIELDS))
    assert cfg["mode"] in MODES
    assert cfg["image_size"] % cfg["gen_patch"] == 0
    assert cfg["image_size"] % cfg["und_image_size"] == 0
    assert cfg["und_image_size"] % cfg["und_patch"] == 0
    assert cfg["width"] % cfg["heads"] == 0 and cfg["und_width"] % cfg["und_heads"] == 0
    assert -cfg["und_depth"] <= cfg["und_select_layer"] <= -1
    assert isinstance(cfg["cond_norm"], bool)


def config_from_json(text):
    """A stored `reca.config`, in §1 field order; `cond_norm` absent (files written before it
    existed) is false."""
    raw = json.loads(text)
    raw.setdefault("cond_norm", False)
    cfg = OrderedDict((k, raw[k]) for k in CONFIG_FIELDS if k in raw)
    cfg.update((k, v) for k, v in raw.items() if k not in cfg)
    validate_config(cfg)
    return cfg


def config_json(cfg):
    """The `reca.config` metadata string: the fields of §1 in table order, all present in
    every mode (codebook_size/code_dim are simply unused in flow mode)."""
    return json.dumps({k: cfg[k] for k in CONFIG_FIELDS}, separators=(",", ":"))


def geometry(cfg):
    S, P = cfg["image_size"], cfg["gen_patch"]
    Su, Pu = cfg["und_image_size"], cfg["und_patch"]
    return dict(
        N=(S // P) ** 2,                  # image tokens
        Nu=(Su // Pu) ** 2,               # understanding tokens
        D=3 * P * P,                      # patch vector length 3P²
        Du=3 * Pu * Pu,
        T=cfg["max_text_len"],
        f=S // Su,                        # average-pool factor
        K=cfg["codebook_size"],
        k=cfg["und_depth"] + 1 + cfg["und_select_layer"],  # index of the und hidden state used
    )


# ---------------------------------------------------------------------------------
# §8, §9 Parameters
# ---------------------------------------------------------------------------------
def _linear(shapes, prefix, d_in, d_out, kind="linear"):
    shapes[prefix + ".weight"] = ((d_out, d_in), kind)
    shapes[prefix + ".bias"] = ((d_out,), "bias")


def _ln(shapes, prefix, d):
    shapes[prefix + ".weight"] = ((d,), "ln_weight")
    shapes[prefix + ".bias"] = ((d,), "ln_bias")


def _blocks(shapes, prefix, depth, width, mlp_ratio):
    for i in range(depth):
        p = f"{prefix}.blocks.{i}"
        _ln(shapes, p + ".ln1", width)
        _linear(shapes, p + ".attn.qkv", width, 3 * width)
        _linear(shapes, p + ".attn.proj", width, width, kind="linear_out")
        _ln(shapes, p + ".ln2", width)
        _linear(shapes, p + ".mlp.fc1", width, mlp_ratio * width)
        _linear(shapes, p + ".mlp.fc2", mlp_ratio * width, width, kind="linear_out")


def param_spec(cfg):
    """OrderedDict name -> (shape, kind). kind is one of linear, linear_out (attn.proj,
    mlp.fc2: smaller init), bias, ln_weight, ln_bias, cond_gain (conn.norm.weight,
    starting at COND_NORM_INIT_GAIN), embed, pos, codebook.
    Only the tensors the mode uses exist (vq.*, gen.img_embed only in discrete modes;
    gen.img_in, gen.t_embed only in flow)."""
    g = geometry(cfg)
    W, Wu = cfg["width"], cfg["und_width"]
    discrete = cfg["mode"] != "flow"
    s = OrderedDict()
    # understanding ViT (its MLP hidden is mlp_ratio * und_width)
    _linear(s, "und.patch_embed", g["Du"], Wu)
    s["und.pos_embed"] = ((g["Nu"], Wu), "pos")
    _blocks(s, "und", cfg["und_depth"], Wu, cfg["mlp_ratio"])
    # connector
    _ln(s, "conn.ln", Wu)
    _linear(s, "conn.fc1", Wu, W)
    _linear(s, "conn.fc2", W, W)
    if cfg["cond_norm"]:
        s["conn.norm.weight"] = ((W,), "cond_gain")
        s["conn.norm.bias"] = ((W,), "ln_bias")
    if discrete:
        C, K = cfg["code_dim"], cfg["codebook_size"]
        _linear(s, "vq.enc", g["D"], C)
        s["vq.codebook"] = ((K, C), "codebook")
        _linear(s, "vq.dec", C, g["D"])
    # generator
    s["gen.tok_embed"] = ((TEXT_VOCAB, W), "embed")
    if discrete:
        s["gen.img_embed"] = ((cfg["codebook_size"] + 1, W), "embed")
    else:
        _linear(s, "gen.img_in", g["D"], W)
        _linear(s, "gen.t_embed.fc1", 256, W)
        _linear(s, "gen.t_embed.fc2", W, W)
    s["gen.pos_cond"] = ((3 + g["Nu"] + g["T"], W), "pos")
    s["gen.pos_img"] = ((g["N"] + 1, W), "pos")
    s["gen.pos_txt"] = ((1 + g["T"], W), "pos")
    _blocks(s, "gen", cfg["depth"], W, cfg["mlp_ratio"])
    _ln(s, "gen.ln_f", W)
    _linear(s, "gen.head_img", W, cfg["codebook_size"] if discrete else g["D"])
    _linear(s, "gen.head_txt", W, TEXT_VOCAB)
    return s


def decays(name, shape):
    """§6: weight decay on 2-D Linear weights only. Every Linear weight is named
    `<layer>.weight` and is 2-D; embeddings / pos tables / codebook have no `.weight`
    suffix and LayerNorm weights are 1-D."""
    return name.endswith(".weight") and len(shape) == 2


def init_params(cfg, seed, dtype=torch.float32):
    """§8 init drawn from one torch.Generator in param_spec order. (The engine draws its
    own init from Philox; fixtures carry the parameters, so the draws need not agree.)"""
    gen = torch.Generator().manual_seed(seed)
    out = OrderedDict()
    for name, (shape, kind) in param_spec(cfg).items():
        if kind == "linear" or kind == "embed" or kind == "pos":
            t = torch.randn(shape, generator=gen, dtype=torch.float64) * 0.02
        elif kind == "linear_out":
            depth = cfg["und_depth"] if name.startswith("und.") else cfg["depth"]
            t = torch.randn(shape, generator=gen, dtype=torch.float64) * (0.02 / math.sqrt(2 * depth))
        elif kind == "codebook":
            K = cfg["codebook_size"]
            t = (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) / K
        elif kind == "ln_weight":
            t = torch.ones(shape, dtype=torch.float64)
        elif kind == "cond_gain":
            t = torch.full(shape, COND_NORM_INIT_GAIN, dtype=torch.float64)
        else:  # bias, ln_bias
            t = torch.zeros(shape, dtype=torch.float64)
        out[name] = t.to(dtype)
    return out


# ---------------------------------------------------------------------------------
# §2 Text
# ---------------------------------------------------------------------------------
def encode_text(s, max_len):
    """UTF-8 bytes of s, cut to at most max_len bytes at a character boundary.
    Returns (ids: list of ints without padding, bytes_cut)."""
    b = s.encode("utf-8")
    if len(b) <= max_len:
        return list(b), 0
    end = max_len
    while end > 0 and (b[end] & 0xC0) == 0x80:  # b[end] is a continuation byte: back up
        end -= 1
    return list(b[:end]), len(b) - end


def pad_text(ids, max_len):
    assert len(ids) <= max_len
    return list(ids) + [PAD] * (max_len - len(ids))


# ---------------------------------------------------------------------------------
# §0, §3 Image pathways
# ---------------------------------------------------------------------------------
def images_to_float(images_u8, dtype):
    """u8 [B,S,S,3] -> [-1,1] as u/127.5 - 1 (computed in the working dtype)."""
    return images_u8.to(dtype) / 127.5 - 1.0


def avgpool(x, f):
    """[B,S,S,3] -> [B,S/f,S/f,3]: mean over each f×f window (on the float image)."""
    B, S, _, Cc = x.shape
    return x.reshape(B, S // f, f, S // f, f, Cc).mean(dim=(2, 4))


def patchify(x, P):
    """[B,S,S,3] -> [B,(S/P)²,3P²], token py*(S/P)+px, vector index (i*P + j)*3 + c."""
    B, S, _, Cc = x.shape
    G = S // P
    return x.reshape(B, G, P, G, P, Cc).permute(0, 1, 3, 2, 4, 5).reshape(B, G * G, P * P * Cc)


def unpatchify(t, P):
    B, N, D = t.shape
    G = int(round(math.sqrt(N)))
    return t.reshape(B, G, G, P, P, 3).permute(0, 1, 3, 2, 4, 5).reshape(B, G * P, G * P, 3)


def gelu(x):
    """tanh form (§0)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


def linear(p, name, x):
    return F.linear(x, p[name + ".weight"], p[name + ".bias"])


def layer_norm(p, name, x):
    return F.layer_norm(x, (x.shape[-1],), p[name + ".weight"], p[name + ".bias"], 1e-5)


def block(p, prefix, x, heads, visible=None):
    """Pre-LN transformer block (§0). visible: bool [B,L,L] (query i may see key j) or
    None for full attention."""
    B, L, W = x.shape
    hd = W // heads
    h = layer_norm(p, prefix + ".ln1", x)
    qkv = linear(p, prefix + ".attn.qkv", h)
    q, k, v = qkv.split(W, dim=-1)  # ordered q, k, v; head h uses dims [h*hd, (h+1)*hd)
    q = q.reshape(B, L, heads, hd).transpose(1, 2)
    k = k.reshape(B, L, heads, hd).transpose(1, 2)
    v = v.reshape(B, L, heads, hd).transpose(1, 2)
    scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(hd))
    if visible is not None:
        scores = scores.masked_fill(~visible[:, None, :, :], float("-inf"))
    a = torch.softmax(scores, dim=-1)
    o = (a @ v).transpose(1, 2).reshape(B, L, W)
    x = x + linear(p, prefix + ".attn.proj", o)
    h = layer_norm(p, prefix + ".ln2", x)
    x = x + linear(p, prefix + ".mlp.fc2", gelu(linear(p, prefix + ".mlp.fc1", h)))
    return x


def und_features(p, cfg, img):
    """Understanding encoder (§3): avgpool by f, patchify by und_patch, patch_embed +
    pos_embed, und_depth bidirectional blocks (no mask, no class token, no final LN);
    returns h_k with k = und_depth + 1 + und_select_layer (h_0 = the embeddings)."""
    g = geometry(cfg)
    x = patchify(avgpool(img, g["f"]), cfg["und_patch"])
    h = linear(p, "und.patch_embed", x) + p["und.pos_embed"]
    for l in range(g["k"]):  # h_l = blocks[l-1](h_{l-1}); later blocks are unused
        h = block(p, f"und.blocks.{l}", h, cfg["und_heads"])
    return h


def connector(p, u):
    """§3: c = fc2(gelu(fc1(ln(u)))), then LN(c) by conn.norm when the model has it."""
    c = linear(p, "conn.fc2", gelu(linear(p, "conn.fc1", layer_norm(p, "conn.ln", u))))
    return layer_norm(p, "conn.norm", c) if "conn.norm.weight" in p else c


def embed(p, cfg, images_u8, dtype=torch.float32):
    """`embed(images)` of the API: the understanding embeddings c [B, N_u, width]."""
    return connector(p, und_features(p, cfg, images_to_float(images_u8, dtype)))


def vq_encode(p, cfg, img):
    """z = vq.enc(patchify(img, P)) [B,N,C]; codes = argmin_k Σ_c (z_c - e_kc)² with ties to
    the lowest k. The distance is evaluated in float64 from the working-precision z and
    codebook (a canonical value, so backends agree even at near ties). Also returns the
    smallest gap between the best and second-best distance (to judge tie risk)."""
    z = linear(p, "vq.enc", patchify(img, cfg["gen_patch"]))
    with torch.no_grad():
        zd = z.detach().double()
        ed = p["vq.codebook"].detach().double()
        d = ((zd[:, :, None, :] - ed[None, None, :, :]) ** 2).sum(-1)  # [B,N,K]
        codes = torch.argmin(d, dim=-1)  # first minimum
        top2 = torch.topk(d, 2, dim=-1, largest=False).values
        margin = (top2[..., 1] - top2[..., 0]).min().item()
    return z, codes, margin


def vq_loss(p, cfg, images_u8, dtype=torch.float32):
    """Tokenizer loss (§3), all three terms means over their elements:
         mse(x̂, x) over B·N·3P²  +  mean((sg(z) - e)²) over B·N·C  +  0.25·mean((z - sg(e))²).
    The decoder input has the VALUE e (exactly; not z + (e - z) in floating point) and
    passes its gradient straight to z (straight-through)."""
    x = patchify(images_to_float(images_u8, dtype), cfg["gen_patch"])
    z, codes, margin = vq_encode(p, cfg, images_to_float(images_u8, dtype))
    e = p["vq.codebook"][codes]  # [B,N,C]
    zq = e.detach() + (z - z.detach())  # forward: e exactly; backward: identity into z
    xhat = linear(p, "vq.dec", zq)
    mse = ((xhat - x) ** 2).mean()
    codebook = ((z.detach() - e) ** 2).mean()
    commit = ((z - e.detach()) ** 2).mean()
    loss = mse + codebook + 0.25 * commit
    return loss, dict(codes=codes, margin=margin, mse=mse.detach(), codebook=codebook.detach(), commit=commit.detach())


def time_features(t):
    """§4 τ input: s = 1000·t, f_k = exp(-ln(10000)·k/128), e = [cos(s f_k)] ++ [sin(s f_k)].
    Evaluated in float64 from the given t and rounded once to t's dtype: the arguments
    reach 1000 rad, where float32 trig of a float32 product would lose digits."""
    td = t.detach().double()
    k = torch.arange(128, dtype=torch.float64)
    f = torch.exp(-math.log(10000.0) * k / 128.0)
    arg = (1000.0 * td)[:, None] * f[None, :]
    return torch.cat([torch.cos(arg), torch.sin(arg)], dim=-1).to(t.dtype)  # [B,256]


def time_embed(p, t):
    return linear(p, "gen.t_embed.fc2", gelu(linear(p, "gen.t_embed.fc1", time_features(t))))


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the incoming gradient by s (cond_grad_scale)."""

    @staticmethod
    def forward(ctx, x, s):
        ctx.s = s
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g * ctx.s, None


def scale_grad(x, s):
    return x if s == 1.0 else _ScaleGrad.apply(x, s)


# ---------------------------------------------------------------------------------
# §4 Generator sequences
# ---------------------------------------------------------------------------------
def block_lengths(cfg, task):
    """(condition block length Lc, target block length Lt)."""
    g = geometry(cfg)
    if task == "reca":
        Lc = 3 + g["Nu"] + g["T"]
    elif task == "t2i":
        Lc = 1 + g["T"]
    else:
        Lc = 3 + g["Nu"]
    if task == "i2t":
        Lt = 1 + g["T"]
    else:
        Lt = g["N"] if cfg["mode"] == "ar" else g["N"] + 1
    return Lc, Lt


def condition_ids(cfg, task, text):
    """Token ids of the condition block, [B, Lc] int64; -1 marks the slots that hold an
    understanding embedding c_i instead of a token.
      reca: BOS, IMG_BEGIN, c_1..c_Nu, IMG_END, text_1..text_T   (text = template, PAD-filled)
      t2i : BOS, text_1..text_T                                    (text = caption, PAD-filled)
      i2t : BOS, IMG_BEGIN, c_1..c_Nu, IMG_END
    Slot i of the block (0-based) gets gen.pos_cond[i], whatever it holds: BOS is slot 0,
    IMG_BEGIN slot 1, c_n (n = 1..Nu) slot n+1, IMG_END slot Nu+2, text byte t (0-based)
    slot Nu+3+t (reca) or 1+t (t2i)."""
    g = geometry(cfg)
    B = text.shape[0]
    bos = torch.full((B, 1), BOS, dtype=torch.long)
    img = torch.cat([
        torch.full((B, 1), IMG_BEGIN, dtype=torch.long),
        torch.full((B, g["Nu"]), -1, dtype=torch.long),
        torch.full((B, 1), IMG_END, dtype=torch.long)], dim=1)
    if task == "reca":
        return torch.cat([bos, img, text.long()], dim=1)
    if task == "t2i":
        return torch.cat([bos, text.long()], dim=1)
    return torch.cat([bos, img], dim=1)


def visibility(cond_pad, tgt_pad, causal_target):
    """bool [B, L, L], entry [b, i, j] = query i may attend to key j (§4):
       - never a PAD key;
       - condition queries: condition keys only (both directions);
       - target queries: every condition key, plus target keys j <= i (causal) or all.
    cond_pad [B,Lc], tgt_pad [B,Lt]: True where the token is PAD."""
    B, Lc = cond_pad.shape
    Lt = tgt_pad.shape[1]
    L = Lc + Lt
    tgt = torch.arange(L) >= Lc
    qi = torch.arange(L)[:, None]
    kj = torch.arange(L)[None, :]
    q_tgt, k_tgt = tgt[:, None], tgt[None, :]
    order_ok = (kj <= qi) if causal_target else torch.ones(L, L, dtype=torch.bool)
    # a condition key is seen by every query; a target key only by target queries
    allowed = ~k_tgt | (q_tgt & k_tgt & order_ok)
    key_pad = torch.cat([cond_pad, tgt_pad], dim=1)  # [B,L]
    return allowed[None, :, :] & ~key_pad[:, None, :]


def tokenizer_condition(p, cfg, img):
    """SPEC §5, the tokenizer condition: per understanding slot, the mean of the generator's
    input embeddings of the image tokens in the g x g block of the token grid it covers
    (gen.img_embed[code] discrete, gen.img_in(x0) flow), a constant (no gradient)."""
    g = geometry(cfg)
    G = cfg["image_size"] // cfg["gen_patch"]
    Gu = cfg["und_image_size"] // cfg["und_patch"]
    f = G // Gu
    with torch.no_grad():
        if cfg["mode"] == "flow":
            emb = linear(p, "gen.img_in", patchify(img, cfg["gen_patch"]))
        else:
            _, codes, _ = vq_encode(p, cfg, img)
            emb = p["gen.img_embed"][codes]
        B, W = emb.shape[0], emb.shape[-1]
        e = emb.double().reshape(B, Gu, f, Gu, f, W)
        pooled = e.sum(dim=(2, 4)) / (f * f)
    return pooled.reshape(B, g["Nu"], W).to(img.dtype)


def build_sequence(p, cfg, task, batch, dtype=torch.float32, cond_grad_scale=1.0, condition="understanding"):
    """Builds the generator input embeddings and everything the loss needs.

    Returns dict with x [B,L,W], visible [B,L,L], Lc, Lt, and per task:
      image tasks: 'img_targets' (codes [B,N] discrete) or flow 'v' [B,N,D];
      i2t: 'cap_targets' [B,T+1], 'cap_valid' [B,T+1] bool.

    Target block layouts (index j inside the block, each gets gen.pos_img[j] / pos_txt[j]):
      ar   : GEN, x_1..x_{N-1}          (length N;   position j predicts x_{j+1}, j=0..N-1)
      mask : GEN, x~_1..x~_N            (length N+1; x~_j = K (MASK) where masked; position j>=1
                                          predicts x_j, loss only where masked; GEN: no loss)
      flow : GEN, z_1..z_N              (length N+1; embedding img_in(z_j); tau(t) added to every
                                          target token incl. GEN; position j>=1 predicts v_j)
      i2t  : CAP, y_1..y_m, PAD..       (length T+1; position j predicts y_{j+1}, y_{m+1}=EOS;
                                          loss at j=0..m, none after EOS / at PAD)
    """
    g = geometry(cfg)
    mode = cfg["mode"]
    W = cfg["width"]
    images = batch["images"]
    text = batch["text"].long()
    B = images.shape[0]
    img = images_to_float(images, dtype)
    out = {}

    # ---- condition block ----
    cond = condition_ids(cfg, task, text)  # [B,Lc]
    Lc = cond.shape[1]
    tok = p["gen.tok_embed"][cond.clamp(min=0)]  # [B,Lc,W]; c slots overwritten below
    if task == "reca" and condition == "tokenizer":
        c = tokenizer_condition(p, cfg, img)
        out["c"] = c
        tok = torch.cat([tok[:, :2], c, tok[:, 2 + g["Nu"]:]], dim=1)
    elif task in ("reca", "i2t"):
        c = connector(p, und_features(p, cfg, img))  # [B,Nu,W]
        if task == "reca":
            c = scale_grad(c, cond_grad_scale)  # only the gradient into c is scaled
        out["c"] = c
        tok = torch.cat([tok[:, :2], c, tok[:, 2 + g["Nu"]:]], dim=1)
    x_cond = tok + p["gen.pos_cond"][:Lc]
    cond_pad = cond == PAD

    # ---- target block ----
    if task == "i2t":
        T = g["T"]
        ids = torch.cat([torch.full((B, 1), CAP, dtype=torch.long), text], dim=1)  # [B,T+1]
        x_tgt = p["gen.tok_embed"][ids] + p["gen.pos_txt"][: T + 1]
        tgt_pad = ids == PAD
        m = (text != PAD).sum(dim=1)  # caption length per sample
        targets = torch.cat([text, torch.full((B, 1), PAD, dtype=torch.long)], dim=1)
        targets[torch.arange(B), m] = EOS  # y_{m+1} = EOS
        out["cap_targets"] = targets
        out["cap_valid"] = torch.arange(T + 1)[None, :] <= m[:, None]
        causal = True
    else:
        N = g["N"]
        gen_row = p["gen.tok_embed"][GEN].expand(B, 1, W)
        if mode == "flow":
            x0 = patchify(img, cfg["gen_patch"])  # [B,N,D]
            t = batch["t"].to(dtype)
            eps = batch["noise"].to(dtype)
            zt = (1.0 - t)[:, None, None] * x0 + t[:, None, None] * eps
            out["v"] = eps - x0
            body = linear(p, "gen.img_in", zt)
            x_tgt = torch.cat([gen_row, body], dim=1) + p["gen.pos_img"][: N + 1]
            x_tgt = x_tgt + time_embed(p, t)[:, None, :]
            causal = False
        else:
            _, codes, margin = vq_encode(p, cfg, img)
            out["codes"], out["code_margin"] = codes, margin
            if mode == "ar":
                body = p["gen.img_embed"][codes[:, : N - 1]]  # x_1..x_{N-1}
                x_tgt = torch.cat([gen_row, body], dim=1) + p["gen.pos_img"][:N]
                causal = True
            else:
                masked = batch["masked"].bool()
                xin = torch.where(masked, torch.full_like(codes, cfg["codebook_size"]), codes)
                body = p["gen.img_embed"][xin]
                x_tgt = torch.cat([gen_row, body], dim=1) + p["gen.pos_img"][: N + 1]
                causal = False
            out["img_targets"] = codes
        tgt_pad = torch.zeros(B, x_tgt.shape[1], dtype=torch.bool)

    out["x"] = torch.cat([x_cond, x_tgt], dim=1)
    out["visible"] = visibility(cond_pad, tgt_pad, causal)
    out["Lc"], out["Lt"] = Lc, x_tgt.shape[1]
    return out


def generator_hidden(p, cfg, x, visible):
    for i in range(cfg["depth"]):
        x = block(p, f"gen.blocks.{i}", x, cfg["heads"], visible)
    return layer_norm(p, "gen.ln_f", x)


# ---------------------------------------------------------------------------------
# §5 Losses
# ---------------------------------------------------------------------------------
def task_loss(p, cfg, task, batch, dtype=torch.float32, cond_grad_scale=0.1, condition="understanding"):
    """The loss of one micro-batch of one task. cond_grad_scale applies to task 'reca'
    only (pass 1.0 for the plain gradient). Returns (loss, info)."""
    g = geometry(cfg)
    mode = cfg["mode"]
    seq = build_sequence(p, cfg, task, batch, dtype, cond_grad_scale if task == "reca" else 1.0, condition)
    h = generator_hidden(p, cfg, seq["x"], seq["visible"])
    Lc = seq["Lc"]
    info = {k: seq[k] for k in ("codes", "code_margin", "c") if k in seq}
    if task == "i2t":
        logits = linear(p, "gen.head_txt", h[:, Lc:])  # [B,T+1,263]
        ce = F.cross_entropy(logits.reshape(-1, TEXT_VOCAB), seq["cap_targets"].reshape(-1), reduction="none")
        valid = seq["cap_valid"].reshape(-1)
        loss = (ce * valid.to(ce.dtype)).sum() / valid.sum().to(ce.dtype)
        info["count"] = int(valid.sum())
        return loss, info
    N = g["N"]
    if mode == "ar":
        logits = linear(p, "gen.head_img", h[:, Lc : Lc + N])  # positions 0..N-1 predict x_1..x_N
        loss = F.cross_entropy(logits.reshape(-1, g["K"]), seq["img_targets"].reshape(-1), reduction="mean")
        info["count"] = logits.shape[0] * N
    elif mode == "mask":
        logits = linear(p, "gen.head_img", h[:, Lc + 1 : Lc + 1 + N])  # positions 1..N
        ce = F.cross_entropy(logits.reshape(-1, g["K"]), seq["img_targets"].reshape(-1), reduction="none")
        m = batch["masked"].reshape(-1).bool()
        loss = (ce * m.to(ce.dtype)).sum() / m.sum().to(ce.dtype)
        info["count"] = int(m.sum())
    else:
        pred = linear(p, "gen.head_img", h[:, Lc + 1 : Lc + 1 + N])  # [B,N,D]
        loss = ((pred - seq["v"]) ** 2).mean()
        info["count"] = pred.numel()
    return loss, info


ALIGN_TEMPERATURE = 0.1


def condition_block_states(p, cfg, task, text, c=None):
    """§5 condition alignment: the generator over a condition block alone (condition
    queries see only condition keys, so it runs without a target block). Returns the
    output of every block [depth x (B, Lc, W)] and the PAD flags [B, Lc]."""
    g = geometry(cfg)
    cond = condition_ids(cfg, task, text)
    Lc = cond.shape[1]
    tok = p["gen.tok_embed"][cond.clamp(min=0)]
    if task == "reca":
        tok = torch.cat([tok[:, :2], c, tok[:, 2 + g["Nu"]:]], dim=1)
    x = tok + p["gen.pos_cond"][:Lc]
    pad = cond == PAD
    visible = visibility(pad, torch.zeros(cond.shape[0], 0, dtype=torch.bool), False)
    outs = []
    for i in range(cfg["depth"]):
        x = block(p, f"gen.blocks.{i}", x, cfg["heads"], visible)
        outs.append(x)
    return outs, pad


def info_nce(a, b, same):
    """Symmetric InfoNCE of pooled states a (images) against b (captions), [B, W]:
    s_ij = cos(a_i, b_j) / tau; a pair i != j with the same caption (same[i, j]) is in
    neither softmax. Mean over the 2B rows and columns."""
    a = a / a.norm(dim=1, keepdim=True)
    b = b / b.norm(dim=1, keepdim=True)
    s = (a @ b.t()) / ALIGN_TEMPERATURE
    eye = torch.eye(s.shape[0], dtype=torch.bool)
    s = s.masked_fill(same & ~eye, float("-inf"))
    target = torch.arange(s.shape[0])
    return 0.5 * (F.cross_entropy(s, target) + F.cross_entropy(s.t(), target))


def align_loss(p, cfg, batch, dtype=torch.float32):
    """§5 condition alignment of one micro-batch: batch["images"], batch["templates"]
    (each image's reca text) and batch["captions"]. At every block the states are
    mean-pooled over the non-PAD slots; the loss is the mean over blocks of the InfoNCE
    between the images' reca blocks and their captions' t2i blocks. The gradient into c
    is not scaled."""
    img = images_to_float(batch["images"], dtype)
    c = connector(p, und_features(p, cfg, img))
    caps = batch["captions"].long()
    a_states, a_pad = condition_block_states(p, cfg, "reca", batch["templates"].long(), c)
    b_states, b_pad = condition_block_states(p, cfg, "t2i", caps)
    same = (caps[:, None, :] == caps[None, :, :]).all(dim=2)

    def pool(x, pad):
        keep = (~pad).to(x.dtype)[:, :, None]
        return (x * keep).sum(dim=1) / keep.sum(dim=1)

    losses = [info_nce(pool(xa, a_pad), pool(xb, b_pad), same) for xa, xb in zip(a_states, b_states)]
    return torch.stack(losses).mean(), {"c": c, "count": caps.shape[0]}


def case_loss(p, cfg, task, batch, dtype=torch.float32, cond_grad_scale=0.1, condition="understanding"):
    """task in reca/t2i/i2t (the generator step), 'vq' (the tokenizer loss) or 'align'
    (the condition-alignment loss)."""
    if task == "vq":
        return vq_loss(p, cfg, batch["images"], dtype)
    if task == "align":
        return align_loss(p, cfg, batch, dtype)
    return task_loss(p, cfg, task, batch, dtype, cond_grad_scale, condition)


def loss_and_grads(params, cfg, task, batch, trainable, dtype=torch.float32, cond_grad_scale=0.1, condition="understanding"):
    """params: dict name -> tensor. Returns (loss float tensor, grads dict over trainable
    (zeros where the loss does not reach), info)."""
    p = OrderedDict()
    for n, t in params.items():
        t = t.detach().to(dtype).clone()
        if n in trainable:
            t.requires_grad_(True)
        p[n] = t
    loss, info = case_loss(p, cfg, task, batch, dtype, cond_grad_scale, condition)
    leaves = [n for n in params if n in trainable]
    if not leaves:
        return loss.detach(), OrderedDict(), info
    gs = torch.autograd.grad(loss, [p[n] for n in leaves], allow_unused=True)
    grads = OrderedDict()
    for n, gr in zip(leaves, gs):
        grads[n] = torch.zeros_like(p[n]) if gr is None else gr.detach()
    return loss.detach(), grads, info


# ---------------------------------------------------------------------------------
# §6 Optimizer
# ---------------------------------------------------------------------------------
def lr_at(step, lr, warmup=0, schedule="constant", total_steps=0, min_lr=0.0):
    """step counts from 1. Warmup lr·t/warmup for t <= warmup; then constant, or cosine
    from lr (at t = warmup) to min_lr (at t = total_steps), min_lr after."""
    if warmup > 0 and step <= warmup:
        return lr * step / warmup
    if schedule == "cosine" and total_steps > warmup:
        if step >= total_steps:
            return min_lr
        prog = (step - warmup) / (total_steps - warmup)
        return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * prog))
    return lr


def clip_scale_of(grads, max_norm):
    """Global L2 norm over the trainable grads (accumulated in float64) and the scale
    max_norm/(n + 1e-6) if n > max_norm else 1."""
    sq = 0.0
    for gr in grads.values():
        sq += float((gr.double() ** 2).sum())
    n = math.sqrt(sq)
    return n, (max_norm / (n + 1e-6) if n > max_norm else 1.0)


class AdamW:
    """§6 AdamW, by hand. State is created lazily per trainable parameter; step t from 1.
    Per element, in the parameter dtype, in this order:
        g = g·clip_scale (only when clipping)
        m = β1·m + (1−β1)·g ;  v = β2·v + (1−β2)·g²
        p = p·(1 − lr·wd)                 (decaying parameters only)
        p = p − lr·((m / bc1) / (√v / √bc2 + eps)),  bc1 = 1−β1ᵗ, bc2 = 1−β2ᵗ
    with the scalar factors (1−lr·wd, bc1, √bc2) computed in double."""

    def __init__(self, lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.02, max_grad_norm=1.0,
                 warmup=0, schedule="constant", total_steps=0, min_lr=0.0, ema_decay=None):
        self.lr, self.betas, self.eps, self.wd = lr, betas, eps, weight_decay
        self.max_grad_norm = max_grad_norm
        self.warmup, self.schedule, self.total_steps, self.min_lr = warmup, schedule, total_steps, min_lr
        self.ema_decay = ema_decay
        self.t = 0
        self.m, self.v, self.ema = {}, {}, {}

    def describe(self):
        return dict(lr=self.lr, betas=list(self.betas), eps=self.eps, weight_decay=self.wd,
                    max_grad_norm=self.max_grad_norm, warmup=self.warmup, schedule=self.schedule,
                    decay="2-D Linear weights (name ends with .weight, 2-D)")

    def step(self, params, grads):
        """params: dict name -> tensor (updated in place for names in grads, the trainable
        ones). Returns dict(grad_norm, clip_scale, lr)."""
        self.t += 1
        t = self.t
        lr = lr_at(t, self.lr, self.warmup, self.schedule, self.total_steps, self.min_lr)
        b1, b2 = self.betas
        n, scale = clip_scale_of(grads, self.max_grad_norm)
        bc1 = 1.0 - b1 ** t
        bc2 = 1.0 - b2 ** t
        for name, g in grads.items():
            p = params[name]
            if scale != 1.0:
                g = g * scale
            if name not in self.m:
                self.m[name] = torch.zeros_like(p)
                self.v[name] = torch.zeros_like(p)
            m = self.m[name] = b1 * self.m[name] + (1.0 - b1) * g
            v = self.v[name] = b2 * self.v[name] + (1.0 - b2) * (g * g)
            if self.ema_decay is not None and name not in self.ema:
                self.ema[name] = p.clone()  # EMA starts from the weights before the first update
            if decays(name, p.shape):
                p = p * (1.0 - lr * self.wd)
            p = p - lr * ((m / bc1) / (torch.sqrt(v) / math.sqrt(bc2) + self.eps))
            params[name] = p
            if self.ema_decay is not None:
                d = self.ema_decay
                self.ema[name] = d * self.ema[name] + (1.0 - d) * p
        return dict(grad_norm=n, clip_scale=scale, lr=lr)


# ---------------------------------------------------------------------------------
# Batches from numpy (the safetensors reader returns numpy arrays)
# ---------------------------------------------------------------------------------
def batch_from_numpy(arrs):
    """Accepts {'images','text','dropped','masked','t','noise'} (any subset) as numpy
    arrays or tensors; validates dtypes/invariants; returns torch tensors."""
    import numpy as np

    out = {}
    for k, v in arrs.items():
        out[k] = torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
    assert out["images"].dtype == torch.uint8
    if "text" in out:
        assert out["text"].dtype == torch.int32
        text = out["text"].long()
        assert ((text >= 0) & (text <= PAD)).all(), "text holds bytes or PAD only"
        # bytes first, then PAD only
        pad = text == PAD
        assert (pad.int().cummax(dim=1).values == pad.int()).all(), "text must be bytes then PAD"
        if "dropped" in out:
            d = out["dropped"].bool()
            assert pad[d].all(), "a dropped sample's text must be all PAD"
    if "masked" in out:
        assert out["masked"].dtype == torch.uint8
    return out


# ---------------------------------------------------------------------------------
# One whole training step from stored tensors (used by check_fixtures / verify_step)
# ---------------------------------------------------------------------------------
def params_from_numpy(arrs, cfg, prefix=""):
    """Pick `prefix + name` for every parameter of cfg; checks the set of names, shapes and
    float32 dtype. Returns OrderedDict name -> float32 tensor (SPEC order)."""
    import numpy as np

    spec = param_spec(cfg)
    have = {k[len(prefix):] for k in arrs if k.startswith(prefix)}
    missing = [n for n in spec if n not in have]
    extra = sorted(have - set(spec))
    if missing or extra:
        raise ValueError(f"parameter names differ from SPEC: missing {missing[:8]}, unexpected {extra[:8]}")
    out = OrderedDict()
    for n, (shape, _) in spec.items():
        a = arrs[prefix + n]
        if tuple(a.shape) != tuple(shape):
            raise ValueError(f"{n}: shape {list(a.shape)}, SPEC wants {list(shape)}")
        if a.dtype != np.float32:
            raise ValueError(f"{n}: dtype {a.dtype}, want float32")
        out[n] = torch.from_numpy(np.ascontiguousarray(a))
    return out


def reference_step(params, cfg, task, batch, trainable, opt_settings, cond_grad_scale=0.1, dtype=torch.float32):
    """loss and grads (before clipping) at params, and the params after one AdamW update
    from fresh state (step 1) with opt_settings {lr, betas, eps, weight_decay, max_grad_norm}
    where lr is the rate used for that update. Returns dict."""
    loss, grads, info = loss_and_grads(params, cfg, task, batch, set(trainable), dtype, cond_grad_scale)
    opt = AdamW(lr=opt_settings["lr"], betas=tuple(opt_settings["betas"]), eps=opt_settings["eps"],
                weight_decay=opt_settings["weight_decay"], max_grad_norm=opt_settings["max_grad_norm"])
    after = OrderedDict((n, t.clone().to(dtype)) for n, t in params.items())
    st = opt.step(after, grads)
    return dict(loss=float(loss), grads=grads, after=after, info=info, **st)


def adamw_from_grads(params, grads, opt_settings):
    """One fresh AdamW step (step 1) from given grads; isolates the optimizer from the
    gradient computation. Returns (after dict, step info)."""
    opt = AdamW(lr=opt_settings["lr"], betas=tuple(opt_settings["betas"]), eps=opt_settings["eps"],
                weight_decay=opt_settings["weight_decay"], max_grad_norm=opt_settings["max_grad_norm"])
    after = OrderedDict((n, t.clone()) for n, t in params.items())
    st = opt.step(after, OrderedDict(grads))
    return after, st
