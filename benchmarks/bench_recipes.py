"""reinitialize(model, "gpt2") against the time Keras takes to build the same model's weights.

    python benchmarks/bench_recipes.py [--rounds 3] [--layers 12] [--hidden 768]

The baseline is Keras itself: constructing a keras-hub `GPT2Backbone` (GPT-2 small by
default: 12 layers, hidden 768, 12 heads, vocabulary 50257, 1024 positions, 124M weights),
which creates every variable and draws it with keras-hub's initializers. Ours is
`reinitialize(backbone, "gpt2", seed=...)` on the built model: tracing the model to find its
residual branches (`structure_of`), then drawing and assigning every weight. Both run
alternately in one process; each round times one of each, and the ratio is taken per round.
Target (issue 17): the median ratio <= 1.5.
"""
import argparse
import gc
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import keras_hub

import keras_initkit
from keras_initkit.model_init.residual import structure_of


def build(args):
    return keras_hub.models.GPT2Backbone(
        vocabulary_size=50257, num_layers=args.layers, num_heads=max(1, args.hidden // 64),
        hidden_dim=args.hidden, intermediate_dim=4 * args.hidden, max_sequence_length=1024)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    args = parser.parse_args()
    print(f"keras {keras.__version__}, keras-hub {keras_hub.__version__}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, GPT2Backbone {args.layers} layers, hidden {args.hidden}")
    build(args)  # warm-up: imports, first-call costs
    ratios, builds, reinits, traces = [], [], [], []
    for round_ in range(args.rounds):
        gc.collect()
        start = time.perf_counter()
        model = build(args)
        builds.append(time.perf_counter() - start)
        start = time.perf_counter()
        structure_of(model)
        traces.append(time.perf_counter() - start)
        start = time.perf_counter()
        keras_initkit.reinitialize(model, "gpt2", seed=round_)
        reinits.append(time.perf_counter() - start)
        ratios.append(reinits[-1] / builds[-1])
        params = sum(int(v.numpy().size) for v in model.weights) if round_ == 0 else None
        if params:
            print(f"{params / 1e6:.1f}M weights")
        print(f"round {round_ + 1}: build {builds[-1]:.2f} s, reinitialize 'gpt2' "
              f"{reinits[-1]:.2f} s (of which a trace alone takes {traces[-1]:.2f} s)")
        del model
    print("\n| measure | median (s) |\n|---|---|")
    print(f"| Keras builds GPT2Backbone (creates and draws every weight) | "
          f"{statistics.median(builds):.2f} |")
    print(f"| reinitialize(backbone, 'gpt2') | {statistics.median(reinits):.2f} |")
    print(f"| of which structure_of (the trace) | {statistics.median(traces):.2f} |")
    print(f"\nreinitialize / build, median of paired rounds: {statistics.median(ratios):.3f} "
          "(target <= 1.5)")


if __name__ == "__main__":
    main()
