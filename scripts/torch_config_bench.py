#!/usr/bin/env python3
"""Any convnet model config (TOML) in PyTorch on the CPU, timed with the same definitions as
`convnet bench`: --mode train = forward + cross-entropy (label smoothing, L2 as in the config) +
backward + optimiser step on one synthetic batch; --mode infer = eval-mode forward under
inference_mode; --mode latency = infer with batch 1. --channels-last uses PyTorch's NHWC
memory format (usually its fastest on the CPU). Random weights: only the speed is compared.
SAME padding is approximated by PyTorch's symmetric padding (same work, not the same numbers).
This copy of ../shared/bench/torch_config_bench.py adds the layers of the airbench-style
network (gelu, scale, a dense layer without bias, a batch norm without its scale), so that
`configs/cifar10-airbench.toml` runs in PyTorch too (the whitening conv runs as a plain 2x2 conv:
the same work), and gives a conv2d without `padding` convnet's default, SAME (the shared
script assumes VALID; the ResNet and seed configs name theirs).
Usage: /tmp/torch-venv/bin/python scripts/torch_config_bench.py --config ../main/configs/cifar10-resnet.toml --mode train --channels-last
"""
import argparse, json, os, statistics, sys, time, tomllib
import torch, torch.nn as nn, torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--config", required=True)
ap.add_argument("--mode", choices=["train", "infer", "latency"], default="train")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--batch", type=int, default=None)
ap.add_argument("--channels-last", action="store_true")
ap.add_argument("--steps", type=int, default=None)
ap.add_argument("--reps", type=int, default=7)
ap.add_argument("--warmup", type=int, default=10)
ap.add_argument("--bf16", action="store_true", help="torch.autocast to bfloat16 (fast on CPUs with AMX or AVX512-BF16; changes the numerics)")
a = ap.parse_args()
torch.set_num_threads(a.threads); torch.manual_seed(0)
cfg = tomllib.load(open(a.config, "rb")); tc = cfg.get("train", {})
batch = a.batch or {"train": tc.get("batch_size", 64), "infer": 64, "latency": 1}[a.mode]
steps = a.steps or {"train": 30, "infer": 50, "latency": 300}[a.mode]
pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)

def pad(p, k):
    if p in (None, "valid"): return 0
    if p == "same": return tuple(x // 2 for x in k)
    return p if isinstance(p, int) else (p[0], p[2])

class Scale(nn.Module):
    def __init__(self, factor):
        super().__init__(); self.factor = factor
    def forward(self, x):
        return x * self.factor

class Residual(nn.Module):
    def __init__(self, body, proj):
        super().__init__(); self.body, self.proj = body, proj
    def forward(self, x):
        return self.body(x) + (self.proj(x) if self.proj is not None else x)

def build(layers, shape):
    mods, l2 = [], []
    c, h, w = shape
    for L in layers:
        t = L["type"]
        if t == "conv2d":
            k = pair(L.get("kernel", 3)); s = pair(L.get("stride", 1)); p = pad(L.get("padding", "same"), k)  # convnet's default
            m = nn.Conv2d(c, L["filters"], k, s, p); mods.append(m)
            if L.get("l2"): l2.append((L["l2"], m.weight))
            pp = pair(p) if not isinstance(p, tuple) else p
            h = (h + 2 * pp[0] - k[0]) // s[0] + 1; w = (w + 2 * pp[1] - k[1]) // s[1] + 1; c = L["filters"]
        elif t == "relu": mods.append(nn.ReLU())
        elif t == "sigmoid": mods.append(nn.Sigmoid())
        elif t == "tanh": mods.append(nn.Tanh())
        elif t == "gelu": mods.append(nn.GELU())
        elif t == "scale": mods.append(Scale(L["factor"]))
        elif t in ("max_pool", "avg_pool"):
            k = pair(L.get("size", 2)); s = pair(L.get("stride", L.get("size", 2)))
            p = tuple(x // 2 for x in k) if L.get("padding") == "same" else 0
            mods.append((nn.MaxPool2d if t == "max_pool" else nn.AvgPool2d)(k, s, p))
            pp = p if isinstance(p, tuple) else (p, p)
            h = (h + 2 * pp[0] - k[0]) // s[0] + 1; w = (w + 2 * pp[1] - k[1]) // s[1] + 1
        elif t == "lrn":
            r = L.get("depth_radius", 5); n = 2 * r + 1
            mods.append(nn.LocalResponseNorm(n, L.get("alpha", 1.0) * n, L.get("beta", 0.5), L.get("bias", 1.0)))
        elif t == "flatten": mods.append(nn.Flatten()); c, h, w = c * h * w, 1, 1
        elif t == "dense":
            m = nn.Linear(c, L["units"], bias=L.get("bias", True)); mods.append(m); c = L["units"]
            if L.get("l2"): l2.append((L["l2"], m.weight))
        elif t == "batch_norm":
            bn = nn.BatchNorm2d(c) if h * w > 1 else nn.BatchNorm1d(c)
            if L.get("scale", True) is False: bn.weight.requires_grad_(False)
            mods.append(bn)
        elif t == "dropout": mods.append(nn.Dropout(L.get("rate", 0.5)))
        elif t == "global_avg_pool": mods.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())); h = w = 1
        elif t == "residual":
            body, (c2, h2, w2), l2b = build(L["layers"], (c, h, w)); l2 += l2b
            proj = None if (c2, h2, w2) == (c, h, w) else nn.Conv2d(c, c2, 1, h // h2)
            mods.append(Residual(body, proj)); c, h, w = c2, h2, w2
        else:
            sys.exit(f"layer type {t} is not in this benchmark")
    return nn.Sequential(*mods), (c, h, w), l2

hh, ww, cc = cfg["input"]
model, _, l2 = build(cfg["layers"], (cc, hh, ww))
mf = torch.channels_last if a.channels_last else torch.contiguous_format
model = model.to(memory_format=mf)
x = torch.randn(batch, cc, hh, ww).contiguous(memory_format=mf)
n_classes = model.eval()(x[:2]).shape[-1]
y = torch.randint(0, n_classes, (batch,))
o = cfg.get("optimizer", {}); kind = o.get("kind", "adam")
if kind == "sgd":
    opt = torch.optim.SGD(model.parameters(), lr=o.get("lr", 0.01), momentum=o.get("momentum", 0.0), nesterov=o.get("nesterov", False))
elif kind == "adamw":
    opt = torch.optim.AdamW(model.parameters(), lr=o.get("lr", 1e-3), weight_decay=o.get("weight_decay", 0.01))
else:
    opt = torch.optim.Adam(model.parameters(), lr=o.get("lr", 1e-3))
ls = float(tc.get("label_smoothing", 0.0))
if a.mode == "train":
    model.train()
    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            loss = F.cross_entropy(model(x).float(), y, label_smoothing=ls)
        for lam, wt in l2: loss = loss + lam * 0.5 * (wt * wt).sum()
        loss.backward(); opt.step()
else:
    model.eval()
    def step():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16): model(x)
for _ in range(a.warmup): step()
samples = []
for _ in range(a.reps):
    t0 = time.perf_counter()
    for _ in range(steps): step()
    samples.append((time.perf_counter() - t0) / steps)
ips = [batch / s for s in samples]
print(json.dumps(dict(bench="torch_config", config=os.path.basename(a.config), mode=a.mode, threads=a.threads, batch=batch,
    channels_last=a.channels_last, bf16=a.bf16, img_per_s_median=round(statistics.median(ips), 1), img_per_s_min=round(min(ips), 1),
    img_per_s_max=round(max(ips), 1), ms_per_step_median=round(statistics.median(samples) * 1e3, 3), torch=torch.__version__)))
