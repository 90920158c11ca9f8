#!/usr/bin/env python3
"""Any convnet model config (TOML) in TensorFlow 2 (oneDNN on the CPU), timed with the same
definitions as `convnet bench`: --mode train = forward + softmax cross-entropy (label smoothing
and L2 as in the config) + backward + an optimiser step on one synthetic batch; --mode infer =
forward in inference mode; --mode latency = infer with batch 1. Weights are random (He); only
the speed is compared. One JSON line, like the PyTorch scripts.

This copy of ../shared/bench/tf_config_bench.py adds the layers of the airbench-style network
(gelu, scale, a dense layer without bias, a batch norm without its scale), so that
`configs/cifar10-airbench.toml` runs in TensorFlow too (the whitening conv runs as a plain 2x2
conv: the same work), and gives a conv2d without `padding` convnet's default, SAME (the shared
script assumes VALID; the ResNet and seed configs name theirs). scripts/torch_config_bench.py
does the same for PyTorch.

Set-up once: python3 -m venv /tmp/tf-venv && /tmp/tf-venv/bin/pip install tensorflow-cpu
Usage: /tmp/tf-venv/bin/python scripts/tf_config_bench.py --config ../main/configs/cifar10-seed.toml --mode train --threads 2
"""
import argparse, json, math, os, statistics, sys, time, tomllib

ap = argparse.ArgumentParser()
ap.add_argument("--config", required=True)
ap.add_argument("--mode", choices=["train", "infer", "latency"], default="train")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--batch", type=int, default=None, help="default: the config's batch size (train), 64 (infer), 1 (latency)")
ap.add_argument("--steps", type=int, default=None)
ap.add_argument("--reps", type=int, default=7)
ap.add_argument("--warmup", type=int, default=10)
ap.add_argument("--xla", action="store_true", help="compile the step with XLA (jit_compile)")
a = ap.parse_args()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(a.threads)
tf.config.threading.set_inter_op_parallelism_threads(1)
cfg = tomllib.load(open(a.config, "rb"))
train_cfg = cfg.get("train", {})
batch = a.batch or {"train": train_cfg.get("batch_size", 64), "infer": 64, "latency": 1}[a.mode]
steps = a.steps or {"train": 30, "infer": 50, "latency": 300}[a.mode]

def pair(v):
    return [v, v] if isinstance(v, int) else list(v)

def padding(p, k=None):
    if p in (None, "valid"): return "VALID", None
    if p == "same": return "SAME", None
    if isinstance(p, int): return "VALID", [[0, 0], [p, p], [p, p], [0, 0]]
    return "VALID", [[0, 0], [p[0], p[1]], [p[2], p[3]], [0, 0]]

variables, l2 = [], []
def var(shape, fan_in):
    v = tf.Variable(tf.random.normal(shape, stddev=math.sqrt(2.0 / fan_in)))
    variables.append(v); return v

def build(layers):
    """Returns a function x, train -> y, creating the variables on the first call."""
    steps_ = []
    for L in layers:
        t = L["type"]
        if t == "conv2d":
            k = pair(L.get("kernel", 3)); s = pair(L.get("stride", 1)); mode, pads = padding(L.get("padding", "same"))  # convnet's default
            state = {"f": L["filters"], "k": k, "s": s, "mode": mode, "pads": pads, "l2": L.get("l2", 0.0)}
            def conv(x, train, st=state):
                if "w" not in st:
                    cin = x.shape[-1]; st["w"] = var(st["k"] + [cin, st["f"]], st["k"][0] * st["k"][1] * cin)
                    st["b"] = tf.Variable(tf.zeros([st["f"]])); variables.append(st["b"])
                if st["l2"]: l2.append(st["l2"] * tf.nn.l2_loss(st["w"]))
                if st["pads"]: x = tf.pad(x, st["pads"])
                return tf.nn.conv2d(x, st["w"], [1] + st["s"] + [1], st["mode"]) + st["b"]
            steps_.append(conv)
        elif t == "relu": steps_.append(lambda x, train: tf.nn.relu(x))
        elif t == "gelu": steps_.append(lambda x, train: tf.nn.gelu(x, approximate=False))
        elif t == "scale": steps_.append(lambda x, train, f=L["factor"]: x * f)
        elif t == "sigmoid": steps_.append(lambda x, train: tf.nn.sigmoid(x))
        elif t == "tanh": steps_.append(lambda x, train: tf.nn.tanh(x))
        elif t in ("max_pool", "avg_pool"):
            size = pair(L.get("size", 2)); stride = pair(L.get("stride", L.get("size", 2))); mode, _ = padding(L.get("padding", "valid"))
            fn = tf.nn.max_pool2d if t == "max_pool" else tf.nn.avg_pool2d
            steps_.append(lambda x, train, fn=fn, size=size, stride=stride, mode=mode: fn(x, size, stride, mode))
        elif t == "lrn":
            p = (L.get("depth_radius", 5), L.get("bias", 1.0), L.get("alpha", 1.0), L.get("beta", 0.5))
            steps_.append(lambda x, train, p=p: tf.nn.local_response_normalization(x, *p))
        elif t == "flatten": steps_.append(lambda x, train: tf.reshape(x, [tf.shape(x)[0], -1]))
        elif t == "dense":
            state = {"u": L["units"], "l2": L.get("l2", 0.0), "bias": L.get("bias", True)}
            def dense(x, train, st=state):
                if "w" not in st:
                    st["w"] = var([x.shape[-1], st["u"]], x.shape[-1])
                    if st["bias"]: st["b"] = tf.Variable(tf.zeros([st["u"]])); variables.append(st["b"])
                if st["l2"]: l2.append(st["l2"] * tf.nn.l2_loss(st["w"]))
                y = tf.matmul(x, st["w"])
                return y + st["b"] if st["bias"] else y
            steps_.append(dense)
        elif t == "batch_norm":
            state = {"eps": L.get("eps", 1e-5), "m": L.get("momentum", 0.1), "scale": L.get("scale", True)}
            def bn(x, train, st=state):
                if "g" not in st:
                    c = x.shape[-1]
                    st["g"], st["b"] = tf.Variable(tf.ones([c]), trainable=st["scale"]), tf.Variable(tf.zeros([c])); variables.append(st["b"])
                    if st["scale"]: variables.append(st["g"])
                    st["rm"], st["rv"] = tf.Variable(tf.zeros([c]), trainable=False), tf.Variable(tf.ones([c]), trainable=False)
                if train:
                    mean, v = tf.nn.moments(x, list(range(len(x.shape) - 1)))
                    st["rm"].assign((1 - st["m"]) * st["rm"] + st["m"] * mean); st["rv"].assign((1 - st["m"]) * st["rv"] + st["m"] * v)
                else:
                    mean, v = st["rm"], st["rv"]
                return tf.nn.batch_normalization(x, mean, v, st["b"], st["g"], st["eps"])
            steps_.append(bn)
        elif t == "dropout":
            r = L.get("rate", 0.5); steps_.append(lambda x, train, r=r: tf.nn.dropout(x, r) if train else x)
        elif t == "global_avg_pool": steps_.append(lambda x, train: tf.reduce_mean(x, axis=[1, 2]))
        elif t == "residual":
            body = build(L["layers"]); state = {}
            def res(x, train, body=body, st=state):
                y = body(x, train)
                if y.shape[1:] != x.shape[1:]:
                    if "w" not in st:
                        s = x.shape[1] // y.shape[1]; st["s"] = s
                        st["w"] = var([1, 1, x.shape[-1], y.shape[-1]], x.shape[-1]); st["b"] = tf.Variable(tf.zeros([y.shape[-1]])); variables.append(st["b"])
                    x = tf.nn.conv2d(x, st["w"], [1, st["s"], st["s"], 1], "VALID") + st["b"]
                return y + x
            steps_.append(res)
        else:
            sys.exit(f"layer type {t} is not in this benchmark")
    def f(x, train):
        for s in steps_: x = s(x, train)
        return x
    return f

model = build(cfg["layers"])
h, w, c = cfg["input"]
x = tf.random.normal([batch, h, w, c])
model(x[:1], False)  # create the variables
n_classes = model(x[:1], False).shape[-1]
y = tf.random.uniform([batch], 0, n_classes, tf.int32)
ls = float(train_cfg.get("label_smoothing", 0.0))
o = cfg.get("optimizer", {}); kind = o.get("kind", "adam")
if kind == "sgd":
    opt = tf.keras.optimizers.SGD(o.get("lr", 0.01), momentum=o.get("momentum", 0.0), nesterov=o.get("nesterov", False))
elif kind == "adamw":
    opt = tf.keras.optimizers.AdamW(o.get("lr", 1e-3), weight_decay=o.get("weight_decay", 0.01))
else:
    opt = tf.keras.optimizers.Adam(o.get("lr", 1e-3))
if a.mode == "train":
    @tf.function(jit_compile=a.xla)
    def step():
        del l2[:]
        with tf.GradientTape() as tape:
            lg = model(x, True)
            q = tf.one_hot(y, n_classes) * (1 - ls) + ls / n_classes
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(q, lg))
            if l2: loss += tf.add_n(l2)
        g = tape.gradient(loss, variables)
        opt.apply_gradients(zip(g, variables))
        return loss
else:
    @tf.function(jit_compile=a.xla)
    def step():
        return model(x, False)
for _ in range(a.warmup):
    step().numpy()
samples = []
for _ in range(a.reps):
    t0 = time.perf_counter()
    for _ in range(steps):
        r = step()
    r.numpy()
    samples.append((time.perf_counter() - t0) / steps)
ips = [batch / s for s in samples]
print(json.dumps(dict(bench="tf_config", config=os.path.basename(a.config), mode=a.mode, threads=a.threads, batch=batch, xla=a.xla,
    img_per_s_median=round(statistics.median(ips), 1), img_per_s_min=round(min(ips), 1), img_per_s_max=round(max(ips), 1),
    ms_per_step_median=round(statistics.median(samples) * 1e3, 3), tensorflow=tf.__version__)))
