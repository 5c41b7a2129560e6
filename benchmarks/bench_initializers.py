"""Time and memory of every scheme that has a Keras built-in twin, against that twin.

    python benchmarks/bench_initializers.py [--rounds 9] [--quick]

For each scheme and shape, ours and the Keras twin run alternately in the same
process; the median of the rounds is reported, with the ratio ours / Keras.
Schemes that run the very kernels of their twin tie, and their medians still
differ by a few percent on a shared machine, so each row also gives how many
paired rounds ours lost and the one-sided sign-test p-value of that count:
"slower" means p < 0.05, a loss that noise alone would rarely produce.
Peak extra memory is the allocator's peak during one call, less the output
tensor, in units of the output tensor's size. Targets: every ratio
<= 1.0, the truncated-normal schemes (He, LeCun and Glorot normal) <= 0.65,
peak extra memory <= 2x the output.
"""
import argparse
import gc
import math
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import keras_initkit.initializers as kit

K = keras.initializers
SHAPES = [(4096, 4096), (3, 3, 512, 512)]
TRUNCATED = {"glorot_normal", "he_normal", "lecun_normal"}

# name -> (ours, Keras' twin). Keras' TruncatedNormal(stddev=s) samples std 0.88 s and ours
# samples s; the work is the same kind, so the timing comparison stands.
PAIRS = {
    "zeros": (kit.Zeros(), K.Zeros()),
    "ones": (kit.Ones(), K.Ones()),
    "constant": (kit.Constant(0.1), K.Constant(0.1)),
    "random_normal": (kit.RandomNormal(), K.RandomNormal()),
    "random_uniform": (kit.RandomUniform(), K.RandomUniform()),
    "truncated_normal": (kit.TruncatedNormal(), K.TruncatedNormal()),
    "glorot_uniform": (kit.GlorotUniform(), K.GlorotUniform()),
    "glorot_normal": (kit.GlorotNormal(), K.GlorotNormal()),
    "he_normal": (kit.HeNormal(), K.HeNormal()),
    "he_uniform": (kit.HeUniform(), K.HeUniform()),
    "lecun_normal": (kit.LecunNormal(), K.LecunNormal()),
    "lecun_uniform": (kit.LecunUniform(), K.LecunUniform()),
    "variance_scaling": (kit.VarianceScaling(2.0, "fan_in", "truncated_normal"),
                         K.VarianceScaling(2.0, "fan_in", "truncated_normal")),
    "orthogonal": (kit.Orthogonal(), K.Orthogonal()),
    "identity": (kit.Identity(), K.Identity()),  # Keras' Identity takes rank 2 only
}


def _sync(x):
    """Waits for the tensor (a device may run asynchronously) by reading one element."""
    return float(keras.ops.convert_to_numpy(x[(0,) * len(x.shape)]))


def time_call(init, shape, calls=1):
    """Seconds per call, over `calls` calls (cheap schemes are batched above timer noise)."""
    start = time.perf_counter()
    for _ in range(calls):
        _sync(init(shape))
    return (time.perf_counter() - start) / calls


def peak_extra_memory(init, shape):
    """Peak memory of one call beyond its output, in units of the output's size.

    Read from TensorFlow's allocator statistics (`get_memory_info`), which count every
    tensor allocated on the device during the call, temporaries included.

    TensorFlow's BFC allocator hands out a free chunk whole when it is less than twice
    the request, and counts the whole chunk as in use: a plain `keras.random.normal`
    of (4608, 512) then reads 3.56x in one process history and 2.00x in another. One
    free arena of 8x the output, freed just before the call, makes every request split
    off exactly its own size, so the figure counts tensors, not leftovers.
    """
    import tensorflow as tf

    device = "GPU:0" if tf.config.list_logical_devices("GPU") else "CPU:0"
    arena = tf.zeros((8 * int(np.prod(shape)),))
    _sync(arena)
    del arena
    gc.collect()
    tf.config.experimental.reset_memory_stats(device)
    before = tf.config.experimental.get_memory_info(device)["current"]
    out = init(shape)
    _sync(out)
    peak = tf.config.experimental.get_memory_info(device)["peak"]
    out_bytes = int(np.prod(shape)) * 4
    return (peak - before - out_bytes) / out_bytes


def sign_test(ours, keras_times):
    """Rounds ours lost, and the one-sided p-value of losing that many by chance (a tie)."""
    n, lost = len(ours), sum(o > k for o, k in zip(ours, keras_times))
    return lost, sum(math.comb(n, j) for j in range(lost, n + 1)) / 2**n


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="3 rounds, fewer schemes")
    parser.add_argument("--schemes", help="comma-separated subset, e.g. he_normal,orthogonal")
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    names = ["zeros", "he_normal", "glorot_uniform"] if args.quick else list(PAIRS)
    if args.schemes:
        names = args.schemes.split(",")
        unknown = sorted(set(names) - set(PAIRS))
        if unknown:
            parser.error(f"unknown schemes {unknown}; choose from {', '.join(PAIRS)}")
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d')}, median of {rounds} rounds, float32\n")
    print("| scheme | shape | ours ms | Keras ms | ratio | rounds lost (p) | ours extra mem "
          "| Keras extra mem |")
    print("|---|---|---|---|---|---|---|---|")
    worst, truncated_worst, memory_worst, slower = 0.0, 0.0, 0.0, []
    for name in names:
        ours, twin = PAIRS[name]
        for shape in SHAPES:
            if name == "identity" and len(shape) != 2:
                continue
            time_call(ours, shape), time_call(twin, shape)  # warm-up: kernels, allocations
            calls = max(1, int(0.1 / max(time_call(twin, shape), 1e-6)))  # >= 0.1 s a round
            times = {"ours": [], "keras": []}
            for i in range(rounds):  # interleaved, in alternating order: drift hits both alike
                for side in (("ours", "keras") if i % 2 == 0 else ("keras", "ours")):
                    init = ours if side == "ours" else twin
                    times[side].append(time_call(init, shape, calls))
            ms_ours = 1e3 * statistics.median(times["ours"])
            ms_keras = 1e3 * statistics.median(times["keras"])
            ratio = ms_ours / ms_keras
            lost, p_value = sign_test(times["ours"], times["keras"])
            verdict = ", slower" if p_value < 0.05 and ratio > 1.0 else ""
            if verdict:
                slower.append(f"{name} {shape}")
            mem_ours, mem_keras = peak_extra_memory(ours, shape), peak_extra_memory(twin, shape)
            memory_worst = max(memory_worst, mem_ours)
            worst = max(worst, ratio)
            if name in TRUNCATED:
                truncated_worst = max(truncated_worst, ratio)
            print(f"| {name} | {shape} | {ms_ours:.1f} | {ms_keras:.1f} | {ratio:.2f} | "
                  f"{lost}/{rounds} ({p_value:.2f}){verdict} | {mem_ours:.2f}x | "
                  f"{mem_keras:.2f}x |",
                  flush=True)
    truncated = f"{truncated_worst:.2f}" if truncated_worst else "n/a"
    print(f"\nworst median ratio {worst:.2f} (target <= 1.0); measurably slower than the twin "
          f"(sign test, p < 0.05): {', '.join(slower) or 'none'}")
    print(f"truncated-normal schemes worst "
          f"{truncated} (target <= 0.65); worst extra memory {memory_worst:.2f}x "
          "the output (target <= 2)")


if __name__ == "__main__":
    main()
