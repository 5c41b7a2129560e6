"""What a probe costs now, against the probe of an earlier commit, in one run.

    python benchmarks/bench_probe_cost.py [--baseline REF] [--rounds 7] [--calls 30]
                                          [--only mlp,resnet64,resnet224,gpt2]

The statistics a probe computes grew (the backward signal of every layer, the token
cosine of sequences, the attention entropy): this measures what that costs. The
baseline commit (default `73b99f2`, the last before the verdicts of issue 16) is
checked out into a temporary git worktree; each round then runs one subprocess per
version, alternating which goes first, and each subprocess builds the same models
with the same seed, calls the probe once (tracing), and times `--calls` more calls:

- `mlp probe`: `Probe(model)(x)` on bench_monitor's MLP (64-256-256-256-256-10, ReLU),
  batch 32, the monitor's case;
- `resnet50 diagnose 64`, `resnet50 diagnose 224`: `keras_initkit.diagnose(model, x)`
  on `keras.applications.ResNet50(weights=None)` at 64x64 (batch 32) and 224x224
  (batch 8), after the first call;
- `gpt2 diagnose` (the new version only has attention statistics to pay for): a
  keras-hub GPT2Backbone of 4 layers, hidden 128, 32 tokens, batch 8.

It prints the median time per call of each version per round, and the ratio
new / baseline per round and its median over rounds (the 2-core VM flips between
speeds; pairing within a round cancels that).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER = r'''
import json, os, statistics, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras, numpy as np
import keras_initkit
from keras_initkit.diagnostics import Probe
L = keras.layers
calls, only = int(sys.argv[1]), sys.argv[2].split(",")
rng = np.random.default_rng(0)

def timed(fn):
    fn()  # trace
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)

out = {}
if "mlp" in only:
    keras.utils.set_random_seed(0)
    mlp = keras.Sequential([keras.Input((64,))] + [L.Dense(256, activation="relu")
                                                    for _ in range(4)] + [L.Dense(10)])
    x = rng.standard_normal((32, 64)).astype("float32")
    probe = Probe(mlp)
    out["mlp probe"] = timed(lambda: probe(x))
for size, n in [(64, 32), (224, 8)]:
    if f"resnet{size}" not in only:
        continue
    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(weights=None, input_shape=(size, size, 3))
    x = rng.standard_normal((n, size, size, 3)).astype("float32")
    out[f"resnet50 diagnose {size}"] = timed(lambda: keras_initkit.diagnose(model, x))
if "gpt2" in only:
    import keras_hub
    keras.utils.set_random_seed(0)
    gpt2 = keras_hub.models.GPT2Backbone(vocabulary_size=1000, num_layers=4, num_heads=4,
                                         hidden_dim=128, intermediate_dim=256,
                                         max_sequence_length=64)
    tokens = {"token_ids": rng.integers(0, 1000, (8, 32)),
              "padding_mask": np.ones((8, 32), "int32")}
    out["gpt2 diagnose"] = timed(lambda: keras_initkit.diagnose(gpt2, tokens))
print("RESULT " + json.dumps(out))
'''


def run(tree, calls, only):
    env = dict(os.environ, PYTHONPATH=tree, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", WORKER, str(calls), only],
                          cwd=tree, env=env, capture_output=True, text=True, check=True)
    line = next(out for out in done.stdout.splitlines() if out.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="73b99f2")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--only", default="mlp,resnet64,resnet224,gpt2",
                        help="comma-separated: mlp, resnet64, resnet224, gpt2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        base = os.path.join(folder, "baseline")
        subprocess.run(["git", "worktree", "add", "--detach", base, args.baseline], cwd=ROOT,
                       check=True, capture_output=True)
        try:
            rows = []
            for r in range(args.rounds):
                order = [("baseline", base), ("now", ROOT)]
                if r % 2:
                    order.reverse()
                got = {name: run(tree, args.calls, args.only) for name, tree in order}
                rows.append(got)
                print(f"round {r + 1}: " + "  ".join(
                    f"{key}: {got['baseline'].get(key, float('nan')) * 1e3:.2f} -> "
                    f"{got['now'][key] * 1e3:.2f} ms" for key in got["now"]), flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", base], cwd=ROOT,
                           capture_output=True)
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d')}, baseline {args.baseline}, {args.rounds} rounds of "
          f"{args.calls} calls\n")
    print("| measure | baseline (ms) | now (ms) | now / baseline (median of paired rounds) |")
    print("|---|---|---|---|")
    for key in rows[0]["now"]:
        now = statistics.median(r["now"][key] for r in rows) * 1e3
        if key not in rows[0]["baseline"]:
            print(f"| {key} | - | {now:.2f} | - |")
            continue
        base = statistics.median(r["baseline"][key] for r in rows) * 1e3
        ratio = statistics.median(r["now"][key] / r["baseline"][key] for r in rows)
        print(f"| {key} | {base:.2f} | {now:.2f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
