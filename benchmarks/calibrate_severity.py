"""Calibrates the severity bands of the diagnostics with short training runs.

    python benchmarks/calibrate_severity.py            # every table (about 17 min on 2 CPU cores)
    python benchmarks/calibrate_severity.py --quick    # fewer rows, 6 epochs (a smoke test)
    python benchmarks/calibrate_severity.py --family vanishing,dead --epochs 10

A finding should be an "error" when the network does not train as it stands with a standard
optimizer (Adam, lr 1e-3) in float32, and a "warning" when it trains, but worse or slower. This
script puts networks on each side of every threshold, measures them at initialization, trains
them, and prints one markdown table per family.

Data: scikit-learn's bundled 8x8 digits (1,797 images, 10 classes; nothing is downloaded), a
fixed 80/20 split (numpy seed 0), each pixel standardized on the training split (constant
pixels left at 0). Training: Adam(1e-3), sparse categorical cross-entropy from logits, batch
64, `--epochs` epochs (20), `keras.utils.set_random_seed(seed)` before each build and fit.
"Learns" means a final validation accuracy >= 0.5 (chance is 0.1); "ep>=0.9" is the first
epoch whose validation accuracy reaches 0.9 ("never" if none), the measure of "slower".

Models: plain Dense MLPs, width 128, no normalization, zero biases unless said, a linear
Dense(10) head. Within a family every run uses the SAME standard-normal draws Z (numpy seed
`seed`), only rescaled, so that the runs differ by the one parameter alone; the head always
keeps the family's healthy scale (He for ReLU, LeCun for tanh).

Measured at initialization, on the first 256 training samples, with one tf.GradientTape pass
through the layers one by one:
  - fwd min / max / last: RMS of each hidden layer's output (after its activation) over the
    RMS of the model input; the smallest and largest over the hidden layers, and the value at
    the last hidden layer.
  - bwd: RMS of dLoss/d(output of the first Dense layer) over RMS of dLoss/d(logits), the loss
    being the labelled cross-entropy: how the back-propagated signal shrinks (< 1) or grows
    (> 1) over the depth.
  - dead worst / net: fraction of ReLU units that are 0 for every sample of the batch, in the
    worst hidden layer and over the whole net ("dead(train)": the same over all 1,437 training
    samples, for the worst layer).
  - sat worst: fraction of tanh outputs with |tanh| > 0.97 in the worst hidden layer.
  - kit: the kinds that keras_initkit.diagnose (current default thresholds) reports on the same
    batch, for comparison ("act"/"grad": activation or gradient finding).

Families (see --family):
  vanishing  depth-20 ReLU, kernels N(0, (c * sqrt(2 / fan_in))^2), c < 1 chosen so that fwd
             last is 1e-1 ... 1e-30 (for ReLU with zero biases it scales exactly as c^20);
             Glorot-uniform/ReLU and He/ReLU at depths 10, 20, 30, 50.
  exploding  the same with c > 1, fwd last 1e1 ... 1e30 and one past float32's range.
  dead       depth-6 He/ReLU, the bias of layer 3 (or of every hidden layer, calibrated in
             turn) set to the negative constant that makes the dead fraction on the batch
             0.2, 0.4, 0.6, 0.8, 0.95, 1.0; and "units": in every layer only that fraction
             of the units gets a negative bias (beyond its maximum over the training set),
             the rest keep 0: dead units without the sparser activity a constant bias brings.
             "active worst": fraction of all (sample, unit) outputs > 0 in the least active
             layer (about 0.5 in a healthy ReLU layer).
  saturated  depth-6 tanh, kernels N(0, (c / sqrt(fan_in))^2), c found by bisection so that the
             worst layer's saturated fraction is 0.1, 0.3, 0.5, 0.7, 0.9, 0.99.
  single     depth-6 He/ReLU with ONE (or two) layers at N(0, 1) (own gain about
             sqrt(fan_in / 2)); also at width 512.
  adam_eps   two vanishing nets past the edge, with Adam's epsilon 1e-16 instead of 1e-7.
  seeds      the rows on each side of each proposed threshold, at weight/shuffle seeds 1, 2.
The c = 1 rows (He/ReLU depth 20 and 6, LeCun/tanh depth 6) are the healthy baselines.
--rows runs only the rows whose name holds one of the given substrings.
"""
import argparse
import datetime
import math
import os
import platform
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

WIDTH = 128
BATCH = 64
PROBE = 256
LR = 1e-3
LEARNS = 0.5
TARGET = 0.9
SAT = 0.97
FAMILIES = ("vanishing", "exploding", "dead", "saturated", "single", "adam_eps", "seeds")


# ----------------------------------------------------------------------------------- data

def load_digits_split(seed=0):
    """(x_train, y_train, x_val, y_val): 80/20, standardized per pixel on the training split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = digits.data.astype("float64"), digits.target.astype("int32")
    order = np.random.default_rng(seed).permutation(len(x))
    cut = len(x) - len(x) // 5
    tr, va = order[:cut], order[cut:]
    mean, std = x[tr].mean(axis=0), x[tr].std(axis=0)
    std = np.where(std > 0, std, 1.0)  # constant pixels: (x - mean) = 0, left at 0
    norm = lambda a: ((a - mean) / std).astype("float32")  # noqa: E731
    return norm(x[tr]), y[tr], norm(x[va]), y[va]


# ----------------------------------------------------------------------------------- models

def build_mlp(kernels, biases, activation, seed=0):
    """A Sequential MLP whose Dense layers get exactly `kernels` and `biases` (the last: head)."""
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((kernels[0].shape[0],))]
    for i, k in enumerate(kernels[:-1]):
        layers.append(keras.layers.Dense(k.shape[1], activation=activation, name=f"dense_{i + 1}"))
    layers.append(keras.layers.Dense(kernels[-1].shape[1], name="head"))
    model = keras.Sequential(layers, name="mlp")
    for layer, k, b in zip(model.layers, kernels, biases):
        layer.set_weights([k.astype("float32"), b.astype("float32")])
    return model


def normal_draws(depth, seed, n_in=64, width=WIDTH, n_out=10):
    """Standard-normal kernels Z for `depth` hidden layers and the head."""
    rng = np.random.default_rng(seed)
    shapes = [(n_in, width)] + [(width, width)] * (depth - 1) + [(width, n_out)]
    return [rng.standard_normal(s) for s in shapes]


def zero_biases(kernels):
    return [np.zeros(k.shape[1]) for k in kernels]


def scaled(z, c, gain2, head_gain2):
    """Hidden kernels Z * c * sqrt(gain2 / fan_in); the head at c = 1."""
    out = [zi * c * math.sqrt(gain2 / zi.shape[0]) for zi in z[:-1]]
    return out + [z[-1] * math.sqrt(head_gain2 / z[-1].shape[0])]


def glorot_uniform(depth, seed, n_in=64, width=WIDTH, n_out=10):
    rng = np.random.default_rng(seed)
    shapes = [(n_in, width)] + [(width, width)] * (depth - 1)
    ks = [rng.uniform(-1, 1, s) * math.sqrt(6.0 / sum(s)) for s in shapes]
    return ks + [rng.standard_normal((width, n_out)) * math.sqrt(2.0 / width)]  # He head


# ----------------------------------------------------------------------------------- probe

def rms(a):
    a = np.asarray(a, dtype="float64")
    return float(np.sqrt(np.mean(a * a)))


def numpy_forward(kernels, biases, activation, x):
    """Hidden outputs (float64, numpy) of the MLP: for calibrating the parameters."""
    act = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh}[activation]
    h, outs = x.astype("float64"), []
    for k, b in zip(kernels[:-1], biases[:-1]):
        h = act(h @ k + b)
        outs.append(h)
    return outs


def measure(model, x, y):
    """The quantities at initialization on one batch (see the module docstring)."""
    hidden, head = model.layers[:-1], model.layers[-1]
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        h, outs = x, []
        for layer in hidden:
            h = layer(h)
            outs.append(h)
        logits = head(h)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            y, logits, from_logits=True))
    g_first, g_logits = tape.gradient(loss, [outs[0], logits])
    outs = [o.numpy() for o in outs]
    x_rms = rms(x.numpy())
    fwd = [rms(o) / x_rms for o in outs]
    act = hidden[0].activation.__name__
    m = {"fwd_min": min(fwd), "fwd_max": max(fwd), "fwd_last": fwd[-1],
         "logits_rms": rms(logits.numpy()), "loss0": float(loss.numpy())}
    gl = rms(g_logits.numpy())
    m["bwd"] = rms(g_first.numpy()) / gl if gl > 0 else math.nan
    if act == "relu":
        dead = [np.all(o == 0, axis=0) for o in outs]
        m["dead_worst"] = max(float(d.mean()) for d in dead)
        m["dead_net"] = float(np.mean(np.concatenate(dead)))
        m["active_worst"] = min(float(np.mean(o > 0)) for o in outs)
    else:
        m["sat_worst"] = max(float(np.mean(np.abs(o) > SAT)) for o in outs)
    return m


def dead_on(model, x):
    """Worst hidden layer's dead fraction over all of `x` (e.g. the whole training set)."""
    h, worst = tf.constant(x), 0.0
    for layer in model.layers[:-1]:
        h = layer(h)
        worst = max(worst, float(np.mean(np.all(h.numpy() == 0, axis=0))))
    return worst


def kit_kinds(model, x, y):
    """The kinds keras_initkit.diagnose reports with its default thresholds ('-': healthy)."""
    try:
        import keras_initkit
    except ImportError:
        return "n/a"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            report = keras_initkit.diagnose(
                model, x, y, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        except Exception as error:  # shown in the table, never fatal here
            return f"error: {type(error).__name__}"
    kinds = [f"{f.kind}({'grad' if f.signal == 'gradient' else 'act'})" for f in report.findings]
    return ", ".join(kinds) or "-"


# ----------------------------------------------------------------------------------- training

class _StopOnNaN(keras.callbacks.Callback):
    """keras.callbacks.TerminateOnNaN without its print (it would land in the tables)."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True


def train(model, data, epochs, seed, epsilon=1e-7):
    x_tr, y_tr, x_va, y_va = data
    model.compile(optimizer=keras.optimizers.Adam(LR, epsilon=epsilon),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    hist = model.fit(x_tr, y_tr, batch_size=BATCH, epochs=epochs, validation_data=(x_va, y_va),
                     verbose=0, callbacks=[_StopOnNaN()]).history
    acc = [float(a) for a in hist.get("val_accuracy", [])]
    losses = [float(v) for v in hist.get("loss", [])]
    nan = bool(losses) and not math.isfinite(losses[-1])
    reach = next((i + 1 for i, a in enumerate(acc) if a >= TARGET), None)
    final = acc[-1] if acc and not nan else 0.0
    return {"acc": acc, "final": final, "reach": reach, "nan_at": len(losses) if nan else None,
            "learned": final >= LEARNS, "seconds": time.perf_counter() - start,
            "final_loss": losses[-1] if losses else math.nan}


def run(name, kernels, biases, activation, data, args, extra=None, epsilon=1e-7):
    """Measures one network at initialization, trains it, and returns its row (None when
    `--rows` leaves it out)."""
    if args.rows and not any(part in name for part in args.rows):
        return None
    x_tr, y_tr = data[0], data[1]
    xb, yb = x_tr[:PROBE], y_tr[:PROBE]
    model = build_mlp(kernels, biases, activation, seed=args.seed)
    row = {"name": name, **(extra or {}), **measure(model, xb, yb)}
    if activation == "relu":
        row["dead_train"] = dead_on(model, x_tr)
    row["kit"] = kit_kinds(model, xb, yb) if not args.no_kit else "n/a"
    row.update(train(model, data, args.epochs, args.seed, epsilon))
    keras.backend.clear_session()
    if args.verbose:
        print(f"    {name}: final {row['final']:.3f}, ep>=0.9 {row['reach']}, "
              f"{row['seconds']:.1f}s", file=sys.stderr, flush=True)
    return row


# ----------------------------------------------------------------------------------- families

def depth_config(target, seed, x):
    """Depth-20 ReLU kernels Z * c * sqrt(2 / fan_in), c set so that fwd last = `target`."""
    depth = 20
    z = normal_draws(depth, seed)
    zb = zero_biases(z)
    base = numpy_forward(scaled(z, 1.0, 2.0, 2.0), zb, "relu", x)
    r1 = rms(base[-1]) / rms(x)  # fwd last at c = 1; with zero biases it scales as c^depth
    c = (target / r1) ** (1.0 / depth)
    return scaled(z, c, 2.0, 2.0), zb, c


def family_depth(kind, data, args):
    """Vanishing (c < 1) or exploding (c > 1) depth-20 He-scaled ReLU stacks."""
    depth = 20
    xb = data[0][:PROBE]
    if kind == "vanishing":
        targets = [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-10, 1e-12, 1e-16, 1e-20,
                   1e-30]
        if args.quick:
            targets = [1e-2, 1e-6, 1e-12]
    else:
        targets = [1e1, 3e1, 1e2, 3e2, 1e3, 1e4, 1e6, 1e8, 1e10, 1e12, 1e16, 1e20, 1e30, 1e40]
        if args.quick:
            targets = [1e2, 1e8, 1e40]
    z = normal_draws(depth, args.seed)
    rows = [run("He (c=1)", scaled(z, 1.0, 2.0, 2.0), zero_biases(z), "relu", data, args,
                {"param": "c=1", "depth": depth})]
    for t in targets:
        ks, bs, c = depth_config(t, args.seed, xb)
        rows.append(run(f"target {t:.0e}", ks, bs, "relu", data, args,
                        {"param": f"c={c:.4g}", "depth": depth}))
    if kind == "vanishing":
        depths = [10, 50] if args.quick else [10, 20, 30, 50]
        for d in depths:
            zd = normal_draws(d, args.seed)
            if d != 20:
                rows.append(run(f"He/ReLU depth {d}", scaled(zd, 1.0, 2.0, 2.0), zero_biases(zd),
                                "relu", data, args, {"param": "He", "depth": d}))
            gk = glorot_uniform(d, args.seed)
            rows.append(run(f"Glorot-uniform/ReLU depth {d}", gk, zero_biases(gk), "relu", data,
                            args, {"param": "Glorot-uniform", "depth": d}))
    return [r for r in rows if r is not None]


def dead_biases(kernels, x, targets_per_layer, units=False):
    """Biases, calibrated layer by layer, killing the wanted fraction of each listed layer.

    `targets_per_layer` maps a hidden layer index to a dead fraction. A unit is dead when its
    pre-activation is <= 0 for every sample of `x`, i.e. when its bias is <= -m_j, m_j the
    maximum of its W x over `x`. Constant (`units=False`): one bias for the whole layer, set
    between two sorted maxima (beyond the largest, by 10%, for a fraction of 1); the units left
    alive are then active on fewer samples too. `units=True`: only the first round(f * width)
    units get a bias 10% beyond their own maximum, the others keep 0 (dead units, nothing else).
    """
    biases = zero_biases(kernels)
    h = x.astype("float64")
    for i, k in enumerate(kernels[:-1]):
        pre = h @ k
        if i in targets_per_layer:
            m = pre.max(axis=0)
            n_dead = int(round(targets_per_layer[i] * len(m)))
            if units:
                b = np.zeros(len(m))
                b[:n_dead] = -(np.maximum(m[:n_dead], 0) * 1.1 + 1e-6)
                biases[i] = b
            else:
                m = np.sort(m)
                if n_dead >= len(m):
                    b = -(m[-1] + 0.1 * abs(m[-1]) + 1e-6)
                elif n_dead == 0:
                    b = 0.0
                else:
                    b = -0.5 * (m[n_dead - 1] + m[n_dead])
                biases[i] = np.full(k.shape[1], b)
        h = np.maximum(pre + biases[i], 0)
    return biases


DEAD_VARIANTS = {"layer 3": ([2], False), "every layer": (range(6), False),
                 "units, every layer": (range(6), True)}


def dead_config(f, where, seed, x):
    kernels = scaled(normal_draws(6, seed), 1.0, 2.0, 2.0)
    layers, units = DEAD_VARIANTS[where]
    biases = dead_biases(kernels, x, {i: f for i in layers}, units=units)
    if units:
        return kernels, biases, f"{int(round(f * WIDTH))} units/layer at b<0"
    bs = sorted({round(float(biases[i][0]), 3) for i in layers})
    return kernels, biases, (f"b={bs[0]:.3g}" if len(bs) == 1 else f"b={bs[0]:.3g}..{bs[-1]:.3g}")


def family_dead(data, args):
    """Depth-6 He/ReLU; dead units made by negative biases, in three ways (DEAD_VARIANTS).

    The `units` variant is calibrated on the whole training set, so that its dead units stay
    dead on every sample; the constant-bias variants on the probe batch.
    """
    kernels = scaled(normal_draws(6, args.seed), 1.0, 2.0, 2.0)
    targets = [0.4, 0.8, 1.0] if args.quick else [0.2, 0.4, 0.6, 0.8, 0.95, 1.0]
    rows = [run("He/ReLU depth 6, biases 0", kernels, zero_biases(kernels), "relu", data, args,
                {"param": "b=0", "where": "-"})]
    for where in DEAD_VARIANTS:
        x = data[0] if DEAD_VARIANTS[where][1] else data[0][:PROBE]
        for f in targets:
            ks, bs, param = dead_config(f, where, args.seed, x)
            rows.append(run(f"dead {f:g} ({where})", ks, bs, "relu", data, args,
                            {"param": param, "where": where, "target": f}))
    return [r for r in rows if r is not None]


def sat_worst(z, c, x):
    ks = scaled(z, c, 1.0, 1.0)
    outs = numpy_forward(ks, zero_biases(ks), "tanh", x)
    return max(float(np.mean(np.abs(o) > SAT)) for o in outs)


def sat_config(target, seed, x):
    """Depth-6 tanh kernels Z * c / sqrt(fan_in), c by bisection: worst saturated = target."""
    z = normal_draws(6, seed)
    lo, hi = math.log(0.5), math.log(5000.0)
    for _ in range(40):  # bisection on log c; the saturated fraction grows with c
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if sat_worst(z, math.exp(mid), x) < target else (lo, mid)
    c = math.exp(hi)
    ks = scaled(z, c, 1.0, 1.0)
    return ks, zero_biases(ks), c


def family_saturated(data, args):
    z = normal_draws(6, args.seed)
    xb = data[0][:PROBE]
    targets = [0.3, 0.7, 0.99] if args.quick else [0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.99]
    rows = [run("LeCun/tanh depth 6 (c=1)", scaled(z, 1.0, 1.0, 1.0), zero_biases(z), "tanh",
                data, args, {"param": "c=1", "target": "-"})]
    for t in targets:
        ks, bs, c = sat_config(t, args.seed, xb)
        rows.append(run(f"saturated {t:g}", ks, bs, "tanh", data, args,
                        {"param": f"c={c:.3g}", "target": t}))
    return [r for r in rows if r is not None]


def family_adam_eps(data, args):
    """The vanishing nets past the edge again, with Adam's epsilon 1e-16 instead of 1e-7."""
    xb = data[0][:PROBE]
    rows = []
    for t in ([1e-8] if args.quick else [1e-8, 1e-12]):
        ks, bs, c = depth_config(t, args.seed, xb)
        rows.append(run(f"target {t:.0e}, Adam epsilon 1e-16", ks, bs, "relu", data, args,
                        {"param": f"c={c:.4g}", "depth": 20}, epsilon=1e-16))
    return [r for r in rows if r is not None]


def family_seeds(data, args):
    """The rows on each side of each proposed threshold again, at other weight/shuffle seeds
    (the data split stays the seed-0 one)."""
    xb, xt = data[0][:PROBE], data[0]
    configs = [("vanishing 1e-06", lambda s: depth_config(1e-6, s, xb), "relu"),
               ("vanishing 1e-07", lambda s: depth_config(1e-7, s, xb), "relu"),
               ("vanishing 1e-08", lambda s: depth_config(1e-8, s, xb), "relu"),
               ("exploding 1e+02", lambda s: depth_config(1e2, s, xb), "relu"),
               ("exploding 1e+03", lambda s: depth_config(1e3, s, xb), "relu"),
               ("dead 0.8 (layer 3)", lambda s: dead_config(0.8, "layer 3", s, xb), "relu"),
               ("dead 0.95 (layer 3)", lambda s: dead_config(0.95, "layer 3", s, xb), "relu"),
               ("dead 0.95 (units, every layer)",
                lambda s: dead_config(0.95, "units, every layer", s, xt), "relu"),
               ("saturated 0.7", lambda s: sat_config(0.7, s, xb), "tanh"),
               ("saturated 0.9", lambda s: sat_config(0.9, s, xb), "tanh")]
    if args.quick:
        configs = configs[:1]
    seeds = [args.seed + 1] if args.quick else [args.seed + 1, args.seed + 2]
    rows = []
    for name, make, act in configs:
        for seed in seeds:
            ks, bs, p = make(seed)
            sub = argparse.Namespace(**{**vars(args), "seed": seed})
            rows.append(run(f"{name}, seed {seed}", ks, bs, act, data, sub,
                            {"param": p if isinstance(p, str) else f"c={p:.4g}"}))
    return [r for r in rows if r is not None]


def family_single(data, args):
    depth = 6
    rows = []
    widths = [WIDTH] if args.quick else [WIDTH, 512]
    for width in widths:
        z = normal_draws(depth, args.seed, width=width)
        he = scaled(z, 1.0, 2.0, 2.0)
        cases = [("He/ReLU (all He)", [])]
        cases += [("layer 3 at N(0,1)", [2])]
        if not args.quick:
            cases += [("layer 1 at N(0,1)", [0]), ("layers 3-4 at N(0,1)", [2, 3])]
        for label, bad in cases:
            ks = [zi if i in bad else k for i, (zi, k) in enumerate(zip(z, he))]
            x = data[0][:PROBE]
            outs = numpy_forward(ks, zero_biases(ks), "relu", x)
            ins = [x] + outs[:-1]
            gains = [rms(o) / rms(i) for o, i in zip(outs, ins)]
            g = max(gains[i] for i in bad) if bad else max(gains)
            rows.append(run(f"{label}, width {width}", ks, zero_biases(ks), "relu", data, args,
                            {"param": f"width {width}", "gain": g}))
    return [r for r in rows if r is not None]


# ----------------------------------------------------------------------------------- tables

def fmt(v, digits=2):
    if v is None:
        return "never"
    if isinstance(v, str):
        return v
    if isinstance(v, float) and not math.isfinite(v):
        return "inf" if v > 0 else ("nan" if math.isnan(v) else "-inf")
    if isinstance(v, float):
        if v == 0:
            return "0"
        return f"{v:.{digits}g}" if 1e-3 <= abs(v) < 1e4 else f"{v:.{digits - 1}e}"
    return str(v)


def curve(acc):
    """Validation accuracy at epochs 1, 2, 5, 10 and the last, compactly."""
    picks = [e for e in (1, 2, 5, 10) if e <= len(acc)]
    return " ".join(f"{acc[e - 1]:.2f}" for e in picks)


def verdict(row):
    if row["nan_at"] is not None:
        return f"no (NaN loss, ep {row['nan_at']})"
    return "yes" if row["learned"] else "no"


def table(rows, cols):
    head = "| " + " | ".join(c[0] for c in cols) + " |"
    sep = "|" + "|".join("---" for _ in cols) + "|"
    body = ["| " + " | ".join(c[1](r) for c in cols) + " |" for r in rows]
    return "\n".join([head, sep] + body)


COMMON_END = [
    ("bwd", lambda r: fmt(r["bwd"])),
    ("kit (current defaults)", lambda r: r["kit"]),
    ("val acc ep1/2/5/10", lambda r: curve(r["acc"])),
    ("final val acc", lambda r: f"{r['final']:.3f}"),
    ("ep>=0.9", lambda r: fmt(r["reach"])),
    ("learns", verdict),
]
FWD = [("fwd min", lambda r: fmt(r["fwd_min"])), ("fwd max", lambda r: fmt(r["fwd_max"])),
       ("fwd last", lambda r: fmt(r["fwd_last"]))]


def print_family(name, rows):
    if name in ("vanishing", "exploding"):
        cols = [("net", lambda r: r["name"]), ("depth", lambda r: str(r["depth"])),
                ("param", lambda r: r["param"])] + FWD + [
                ("dead worst", lambda r: fmt(r["dead_worst"]))] + COMMON_END
    elif name == "dead":
        cols = [("net", lambda r: r["name"]), ("bias", lambda r: r["param"])] + FWD + [
            ("dead worst", lambda r: fmt(r["dead_worst"])),
            ("dead net", lambda r: fmt(r["dead_net"])),
            ("active worst", lambda r: fmt(r["active_worst"])),
            ("dead(train) worst", lambda r: fmt(r["dead_train"]))] + COMMON_END
    elif name == "saturated":
        cols = [("net", lambda r: r["name"]), ("param", lambda r: r["param"])] + FWD + [
            ("sat worst", lambda r: fmt(r["sat_worst"]))] + COMMON_END
    elif name in ("adam_eps", "seeds"):
        cols = [("net", lambda r: r["name"]), ("param", lambda r: r["param"])] + FWD + [
            ("dead worst", lambda r: fmt(r["dead_worst"]) if "dead_worst" in r else "-"),
            ("sat worst", lambda r: fmt(r["sat_worst"]) if "sat_worst" in r else "-")] + COMMON_END
    else:
        cols = [("net", lambda r: r["name"]), ("layer gain", lambda r: fmt(r["gain"]))] + FWD + [
            ("dead worst", lambda r: fmt(r["dead_worst"]))] + COMMON_END
    print(f"\n### {name}\n")
    print(table(rows, cols))
    sys.stdout.flush()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="three rows per family, 6 epochs: a smoke test")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (20; 6 quick)")
    parser.add_argument("--seed", type=int, default=0, help="weights, split and shuffling seed")
    parser.add_argument("--family", default=",".join(FAMILIES),
                        help=f"comma-separated subset of {','.join(FAMILIES)}")
    parser.add_argument("--rows", default="",
                        help="comma-separated substrings: run only the rows whose name holds "
                             "one (e.g. 'target 1e-07,saturated 0.8')")
    parser.add_argument("--no-kit", action="store_true",
                        help="skip the keras_initkit.diagnose column")
    parser.add_argument("--verbose", action="store_true", help="one line per run on stderr")
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = 6 if args.quick else 20
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    families = [f.strip() for f in args.family.split(",") if f.strip()]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        parser.error(f"unknown family {unknown}; choose from {', '.join(FAMILIES)}")

    data = load_digits_split(args.seed)
    print(f"# Severity calibration ({datetime.date.today().isoformat()})\n")
    print(f"{platform.platform()}, {os.cpu_count()} CPU cores, Python "
          f"{platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"numpy {np.__version__}; float32, Adam({LR:g}), batch {BATCH}, {args.epochs} epochs, "
          f"seed {args.seed}; train {len(data[0])}, val {len(data[2])}; probe batch {PROBE}.")
    if not args.no_kit:
        try:
            import keras_initkit
            print(f"\nkit column: keras_initkit {keras_initkit.__version__} from "
                  f"{os.path.dirname(keras_initkit.__file__)}, default Thresholds.")
        except ImportError:
            print("\nkit column: keras_initkit is not importable.")
    start = time.perf_counter()
    for name in families:
        if name in ("vanishing", "exploding"):
            rows = family_depth(name, data, args)
        else:
            rows = {"dead": family_dead, "saturated": family_saturated,
                    "single": family_single, "adam_eps": family_adam_eps,
                    "seeds": family_seeds}[name](data, args)
        if rows:
            print_family(name, rows)
    print(f"\nTotal {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
