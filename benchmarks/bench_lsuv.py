"""LSUV and reinitialize(model, "auto") against the paper's LSUV loop and the anyinit package.

    python benchmarks/bench_lsuv.py [--rounds 3] [--quick] [--part reference|empirical|auto]
    pip install -e .[bench]     # anyinit 0.4.0 for the peer tables (it needs only numpy)

1. keras_initkit.lsuv against a reference LSUV written here as the paper states it
   (Mishkin & Matas 2016, "All you need is a good init"): an orthonormal kernel for every
   Dense/Conv layer, then layer by layer in depth order, up to max_iter times, one WHOLE-model
   forward pass on the batch, reading that layer's linear output (before any fused
   activation), stop when |var - 1| < tol, else kernel /= sqrt(var). On MobileNetV2 (96x96)
   and ResNet50 (64x64), a 32-image batch uniform in [-1, 1]. The reference runs twice,
   eagerly and as a traced graph (predict_on_batch): on CPU eager execution alone makes a
   forward 2-3x slower, and the speed-up should not come from that. All start from the same
   weights and run alternately in one process; the median of the rounds is reported. A
   reference forward counts as one evaluation of every layer in the model, as lsuv counts
   its own. The worst |var - 1| is measured afterwards the same way for all: one
   inference-mode pass captures each Dense/Conv layer's input, then that layer alone is run
   with its activation set to linear. It may be up to tol: a layer already within tol is
   left as it is. Target: ours >= 3x faster than the reference on ResNet50, both ways.
2. Against anyinit 0.4.0 on a 30-layer, 384-wide MLP per activation (relu, tanh, selu, gelu),
   a 256 x 384 N(0, 1) batch. lsuv against anyinit's data-driven mode,
   anyinit.initialize(model, "empirical", batch): time, and spread = worst |var - 1| of the
   Dense layers' pre-activation variances. anyinit aims elsewhere, at E[a^2] = 1 after each
   activation (Var[a] at mid-range for a saturating one such as tanh), so the spread of
   E[a^2] is shown too. Targets: lsuv >= 3x faster, pre-activation spread no worse.
   Then reinitialize(model, "auto") against anyinit's data-free mode,
   anyinit.initialize(model, "analytic"): the drift of the post-activation std over depth,
   max/min over layers and last/first layer. Target: ours no larger than anyinit's.
   reinitialize's default draws plain kernels as scaled orthogonal matrices; the
   orthogonal=False column shows the schemes' i.i.d. draws at the same variances.

Without anyinit installed the peer rows say so and the rest still runs.
"""
import argparse
import contextlib
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import keras_initkit

try:
    import anyinit
except ImportError:
    anyinit = None

L = keras.layers
NO_ANYINIT = "anyinit not installed: pip install -e .[bench]"
KERNEL_LAYERS = (L.Dense, L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv1D, L.DepthwiseConv2D)
ACTIVATIONS = ("relu", "tanh", "selu", "gelu")
DRIFT_SEEDS = range(15)


# ------------------------------------------------------------------ models and data

def applications_model(name):
    keras.utils.set_random_seed(0)
    if name == "MobileNetV2":
        return keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3))
    return keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3))


def image_batch(model):
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, (32, *model.input_shape[1:])).astype("float32")


def mlp(activation, depth=30, width=384):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((width,))]
                            + [L.Dense(width, activation=activation) for _ in range(depth)])


def mlp_batch(width=384):
    return np.random.default_rng(0).standard_normal((256, width)).astype("float32")


def kernel_layers(model):
    return [layer for layer in model.layers if isinstance(layer, KERNEL_LAYERS)]


def evaluated_layers(model):
    """Layers a whole-model forward calls (the InputLayer computes nothing).

    lsuv counts its layer_evaluations the same way: every layer call, retries included.
    """
    return [layer for layer in model.layers if not isinstance(layer, L.InputLayer)]


@contextlib.contextmanager
def linear_output(layer):
    """Make `layer` return its linear output, before its fused activation, for a while.

    Keras layers read `self.activation` on every eager call, so swapping it is enough.
    """
    saved = layer.activation
    layer.activation = keras.activations.linear
    try:
        yield
    finally:
        layer.activation = saved


def has_fused_activation(layer):
    return getattr(layer, "activation", None) not in (None, keras.activations.linear)


def variance(tensor):
    return float(np.var(keras.ops.convert_to_numpy(tensor).astype(np.float64)))


# ------------------------------------------------------------------ measurements

def preact_variances(model, x, layers):
    """Variance of each layer's linear output on x, in inference mode.

    One pass captures every layer's input; then each layer alone is run on it with its
    activation off. The same function judges every method, so the numbers compare.
    """
    inputs = keras.Model(model.inputs[0], [layer.input for layer in layers])(x, training=False)
    out = []
    for layer, inp in zip(layers, inputs):
        with linear_output(layer):
            out.append(variance(layer(inp, training=False)))
    return np.array(out)


def post_activations(model, x, layers):
    """Each layer's output (after its activation) on x, from one inference-mode pass."""
    outs = keras.Model(model.inputs[0], [layer.output for layer in layers])(x, training=False)
    return [keras.ops.convert_to_numpy(o).astype(np.float64) for o in outs]


def std_drift(model, x):
    """(max/min, last/first) of the post-activation std over the Dense layers."""
    stds = np.array([a.std() for a in post_activations(model, x, kernel_layers(model))])
    return stds.max() / stds.min(), stds[-1] / stds[0]


def second_moment_spread(model, x):
    """Worst |E[a^2] - 1| after each activation: the level anyinit aims at."""
    return max(abs((a * a).mean() - 1.0) for a in post_activations(model, x, kernel_layers(model)))


def lsuv_rows(report):
    """The per-layer dicts of an lsuv report (a Rows object iterates them)."""
    return list(getattr(report, "layers", report))


def worst(values):
    return float(np.max(np.abs(np.asarray(values) - 1.0)))


# ------------------------------------------------------------------ reference LSUV

def reference_lsuv(model, x, *, graph, target_var=1.0, tol=0.1, max_iter=10, seed=0):
    """The paper's loop, run as written: a whole-model forward for every measurement.

    `graph` runs the forward as a traced graph (predict_on_batch), else eagerly.
    Returns the number of whole-model forwards.
    """
    layers = kernel_layers(model)
    for i, layer in enumerate(layers):  # orthonormal pre-init
        layer.kernel.assign(keras.initializers.Orthogonal(seed=seed + i)(layer.kernel.shape))
    # Returns the model's output and every Dense/Conv layer's output variance, so a call is
    # one whole-model forward, and only scalars leave the graph.
    probe = keras.Model(model.inputs[0], [*model.outputs,
                                          *(keras.ops.var(layer.output) for layer in layers)])
    first = len(model.outputs)
    forwards = 0
    for i, layer in enumerate(layers):
        fused = has_fused_activation(layer)
        with linear_output(layer):
            if graph and fused:  # a traced graph keeps the activation it was traced with
                probe.make_predict_function(force=True)
            for _ in range(max_iter):
                out = probe.predict_on_batch(x) if graph else probe(x, training=False)
                var = float(keras.ops.convert_to_numpy(out[first + i]))
                forwards += 1
                if abs(var - target_var) < tol:
                    break
                layer.kernel.assign(layer.kernel * np.sqrt(target_var / var))
        if graph and fused:
            probe.make_predict_function(force=True)
    return forwards


# ------------------------------------------------------------------ timing

def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def alternate(methods, model, rounds):
    """Run each method from the same weights, in alternating order; median seconds.

    Returns {name: (median seconds, result of the last run, weights it left)}.
    """
    start = model.get_weights()
    times = {name: [] for name in methods}
    results, weights = {}, {}
    for i in range(rounds):  # alternating order, so drift on a shared machine hits both alike
        for name in (list(methods) if i % 2 == 0 else list(reversed(methods))):
            model.set_weights(start)
            seconds, results[name] = timed(methods[name])
            times[name].append(seconds)
            weights[name] = model.get_weights()
    model.set_weights(start)
    return {name: (statistics.median(times[name]), results[name], weights[name])
            for name in methods}


# ------------------------------------------------------------------ sections

def lsuv_vs_reference(names, rounds):
    rows = []
    for name in names:
        model = applications_model(name)
        x = image_batch(model)
        model(x, training=False)  # warm-up: eager kernels, allocations
        out = alternate({
            "ours": lambda: keras_initkit.lsuv(model, x, seed=0),
            "eager": lambda: reference_lsuv(model, x, graph=False, seed=0),
            "graph": lambda: reference_lsuv(model, x, graph=True, seed=0),
        }, model, rounds)
        layers = kernel_layers(model)
        measured = {}
        for method, (_, _, weights) in out.items():
            model.set_weights(weights)
            measured[method] = worst(preact_variances(model, x, layers))
        rows.append((name, model, layers, out, measured))

    print("## keras_initkit.lsuv against the paper's loop (a whole-model forward per "
          "measurement), reference run eagerly and as a traced graph\n")
    print("| model | ours s | reference eager s | reference graph s | speed-up vs eager "
          "| speed-up vs graph |")
    print("|---|---|---|---|---|---|")
    speedups = {}
    for name, _, _, out, _ in rows:
        ours, eager, graph = out["ours"][0], out["eager"][0], out["graph"][0]
        speedups[name] = (eager / ours, graph / ours)
        print(f"| {name} | {ours:.2f} | {eager:.2f} | {graph:.2f} | {eager / ours:.1f}x "
              f"| {graph / ours:.1f}x |")
    print("\n| model | Dense/Conv layers (ours / ref) | ours layer evals | reference forwards "
          "(eager / graph) | reference layer evals | worst \\|var-1\\| ours | worst \\|var-1\\| "
          "reference (eager / graph) | ours reported worst | ours not converged |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, model, layers, out, measured in rows:
        report, eager, graph = out["ours"][1], out["eager"][1], out["graph"][1]
        rows_ours = lsuv_rows(report)
        reported = worst([row["variance"] for row in rows_ours])
        unconverged = sum(not row["converged"] for row in rows_ours)
        print(f"| {name} | {len(rows_ours)} / {len(layers)} | {report.layer_evaluations} "
              f"| {eager} / {graph} | {graph * len(evaluated_layers(model))} "
              f"| {measured['ours']:.3f} | {measured['eager']:.3f} / {measured['graph']:.3f} "
              f"| {reported:.3f} | {unconverged} |")
    if "ResNet50" in speedups:
        vs_eager, vs_graph = speedups["ResNet50"]
        verdict = "met" if min(vs_eager, vs_graph) >= 3 else "NOT met"
        print(f"\ntarget ours >= 3x faster than the reference on ResNet50: {verdict} "
              f"({vs_eager:.1f}x vs eager, {vs_graph:.1f}x vs graph)")
    print()


def lsuv_vs_empirical(rounds):
    print("## keras_initkit.lsuv against anyinit.initialize(model, \"empirical\", batch), "
          "30 x Dense(384)\n")
    print("| activation | lsuv s | anyinit s | speed-up | anyinit forwards "
          "| pre-act spread lsuv | pre-act spread anyinit | E[a^2] spread lsuv "
          "| E[a^2] spread anyinit |")
    print("|---|---|---|---|---|---|---|---|---|")
    x = mlp_batch()
    verdicts = []
    for activation in ACTIVATIONS:
        if anyinit is None:
            print(f"| {activation} | {NO_ANYINIT} |||||||", flush=True)
            continue
        model = mlp(activation)
        layers = kernel_layers(model)
        methods = {"lsuv": lambda: keras_initkit.lsuv(model, x, seed=0),
                   "anyinit": lambda: anyinit.initialize(model, "empirical", x, seed=0)}
        alternate(methods, model, 1)  # warm-up: anyinit profiles each activation once
        out = alternate(methods, model, rounds)
        spread, moment = {}, {}
        for name, (_, _, weights) in out.items():
            model.set_weights(weights)
            spread[name] = worst(preact_variances(model, x, layers))
            moment[name] = second_moment_spread(model, x)
        speedup = out["anyinit"][0] / out["lsuv"][0]
        verdicts.append(speedup >= 3 and spread["lsuv"] <= spread["anyinit"])
        print(f"| {activation} | {out['lsuv'][0]:.3f} | {out['anyinit'][0]:.3f} | {speedup:.1f}x "
              f"| {out['anyinit'][1].iterations} | {spread['lsuv']:.3f} "
              f"| {spread['anyinit']:.3f} | {moment['lsuv']:.3f} | {moment['anyinit']:.3f} |",
              flush=True)
    if verdicts:
        print(f"\ntarget lsuv >= 3x faster and pre-act spread no worse: met on "
              f"{sum(verdicts)}/{len(verdicts)} activations")
    print()


def drift_over_seeds(model, x, init):
    """Median seconds, max/min and last/first over DRIFT_SEEDS draws.

    One draw of a 384-wide layer moves the std by a few percent, which compounds over 30
    layers, so a single draw would rank the methods by luck.
    """
    times, drifts = [], []
    for seed in DRIFT_SEEDS:
        seconds, _ = timed(lambda: init(seed))
        times.append(seconds)
        drifts.append(std_drift(model, x))
    return (statistics.median(times), *np.median(drifts, axis=0))


def auto_vs_analytic():
    print("## reinitialize(model, \"auto\") against anyinit.initialize(model, \"analytic\"), "
          f"30 x Dense(384): post-activation std over depth, median of {len(DRIFT_SEEDS)} seeds\n")
    print("| activation | ours max/min | ours orthogonal=False max/min | anyinit max/min "
          "| ours last/first | anyinit last/first | ours ms | anyinit ms |")
    print("|---|---|---|---|---|---|---|---|")
    x = mlp_batch()
    verdicts = []
    for activation in ACTIVATIONS:
        model = mlp(activation)
        ours_s, ours_max_min, ours_last_first = drift_over_seeds(
            model, x, lambda seed: keras_initkit.reinitialize(model, "auto", seed=seed))
        _, iid_max_min, _ = drift_over_seeds(model, x, lambda seed: keras_initkit.reinitialize(
            model, "auto", seed=seed, orthogonal=False))
        if anyinit is None:
            print(f"| {activation} | {ours_max_min:.3f} | {iid_max_min:.3f} | {NO_ANYINIT} "
                  f"| {ours_last_first:.3f} | | {1e3 * ours_s:.0f} | |", flush=True)
            continue
        anyinit.initialize(model, "analytic", seed=0)  # warm-up: activation profiles
        peer_s, peer_max_min, peer_last_first = drift_over_seeds(
            model, x, lambda seed: anyinit.initialize(model, "analytic", seed=seed))
        verdicts.append(ours_max_min <= peer_max_min)
        print(f"| {activation} | {ours_max_min:.3f} | {iid_max_min:.3f} | {peer_max_min:.3f} "
              f"| {ours_last_first:.3f} | {peer_last_first:.3f} | {1e3 * ours_s:.0f} "
              f"| {1e3 * peer_s:.0f} |", flush=True)
    if verdicts:
        print(f"\ntarget ours max/min no larger than anyinit's: met on "
              f"{sum(verdicts)}/{len(verdicts)} activations")
    print()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 round, MobileNetV2 only")
    parser.add_argument("--part", choices=("reference", "empirical", "auto"),
                        help="run one of the three comparisons only")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    peer = f"anyinit {anyinit.__version__}" if anyinit else "anyinit not installed"
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}, {peer}, median of {rounds} "
          f"rounds\n")
    if args.part in (None, "reference"):
        lsuv_vs_reference(["MobileNetV2"] if args.quick else ["MobileNetV2", "ResNet50"], rounds)
    if args.part in (None, "empirical"):
        lsuv_vs_empirical(rounds)
    if args.part in (None, "auto"):
        auto_vs_analytic()


if __name__ == "__main__":
    main()
