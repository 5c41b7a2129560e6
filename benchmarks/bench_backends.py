"""The probe on each Keras backend, against the same model's own training step there.

    python benchmarks/bench_backends.py [--backends tensorflow,jax,torch] [--rounds 3]
                                        [--calls 10] [--only mlp,resnet50]

Each round runs one subprocess per backend (in turn, the order rotating), and each builds
the same models with the same seed:

- `mlp`: bench_monitor's MLP (64-256-256-256-256-10, ReLU), batch 32;
- `resnet50`: `keras.applications.ResNet50(weights=None)` at 64x64, batch 16.

In it, after one call of each (the trace or compilation), it times `--calls` calls of
`Probe(model)(x, y)` (the monitor's probe: activations, gradients and every statistic)
and of `model.train_on_batch(x, y)` (Keras' compiled training step on that backend: a
tf.function, jax.jit, or PyTorch's eager step), alternating the two, and reports their
medians. Printed per round: both times and probe / train step; at the end the median
ratio over rounds, per backend and model. The baseline is the backend's own step, so
the ratio says what a probe costs in units of training steps on that backend.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER = r'''
import json, os, statistics, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras, numpy as np
from keras_initkit.diagnostics import Probe
L = keras.layers
calls, only = int(sys.argv[1]), sys.argv[2].split(",")
rng = np.random.default_rng(0)


def timed_pair(first, second):
    first(), second()  # trace / compile
    a, b = [], []
    for _ in range(calls):
        for fn, times in ((first, a), (second, b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b)


def case(model, x, y):
    model.compile(keras.optimizers.SGD(1e-3), "sparse_categorical_crossentropy")
    probe = Probe(model)
    x, y = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)
    return timed_pair(lambda: probe(x, y), lambda: model.train_on_batch(x, y))


out = {}
if "mlp" in only:
    keras.utils.set_random_seed(0)
    mlp = keras.Sequential([keras.Input((64,))] + [L.Dense(256, activation="relu")
                                                    for _ in range(4)] + [L.Dense(10)])
    out["mlp"] = case(mlp, rng.normal(size=(32, 64)).astype("float32"),
                      rng.integers(0, 10, 32).astype("int32"))
if "resnet50" in only:
    keras.utils.set_random_seed(0)
    resnet = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10,
                                         classifier_activation=None)
    out["resnet50"] = case(resnet, rng.normal(size=(16, 64, 64, 3)).astype("float32"),
                           rng.integers(0, 10, 16).astype("int32"))
print(json.dumps(out))
'''


def run(backend, calls, only):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", WORKER, str(calls), only], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{backend} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--only", default="mlp,resnet50")
    args = parser.parse_args()
    backends = args.backends.split(",")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}")
    ratios = {}
    for round_ in range(args.rounds):
        order = backends[round_ % len(backends):] + backends[:round_ % len(backends)]
        for backend in order:
            for model, (probe, step) in run(backend, args.calls, args.only).items():
                ratios.setdefault((backend, model), []).append(probe / step)
                print(f"round {round_ + 1} {backend:10s} {model:8s} probe {probe * 1e3:8.2f} ms"
                      f"  train step {step * 1e3:8.2f} ms  probe / step {probe / step:.2f}",
                      flush=True)
    print("\nmedian probe / train step over rounds")
    for (backend, model), values in ratios.items():
        print(f"{backend:10s} {model:8s} {statistics.median(values):.2f}")


if __name__ == "__main__":
    main()
