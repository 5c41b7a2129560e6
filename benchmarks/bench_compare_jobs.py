"""`initkit compare --jobs 2` against `--jobs 1`: the same cells, in worker processes or not.

    python benchmarks/bench_compare_jobs.py [--rounds 2] [--epochs 30] [--seeds 3]

Runs the default comparison (nine schemes on the 20-layer MLP and the bundled digits, `--seeds`
runs each) as the command line does, in a fresh `python -m keras_initkit compare` process per
timing, so each includes what a user waits for: importing TensorFlow, starting the workers,
writing the files. Each round times `--jobs 1` and `--jobs 2` back to back, in alternating
order, and the ratio is taken per round; the median is printed. It also checks that the two
tables agree (timings aside). Target (issue 18): `--jobs 2` at least 1.6x faster on 2 cores.
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


def run(jobs, out, args):
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "keras_initkit", "compare", "--jobs", str(jobs),
                    "--epochs", str(args.epochs), "--seeds", str(args.seeds), "--quiet",
                    "--out", out], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return time.perf_counter() - start


def table(out):
    with open(os.path.join(out, "results.json")) as file:
        rows = json.load(file)["rows"]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"default compare, --epochs {args.epochs} --seeds {args.seeds}")
    ratios = []
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.rounds):
            seconds = {}
            for jobs in ((1, 2) if round_ % 2 == 0 else (2, 1)):
                seconds[jobs] = run(jobs, os.path.join(folder, f"{round_}_{jobs}"), args)
            same = table(os.path.join(folder, f"{round_}_1")) == \
                table(os.path.join(folder, f"{round_}_2"))
            ratios.append(seconds[1] / seconds[2])
            print(f"round {round_ + 1}: --jobs 1 {seconds[1]:.1f} s, --jobs 2 {seconds[2]:.1f} s,"
                  f" speed-up {ratios[-1]:.3f}, tables {'identical' if same else 'DIFFER'}")
    print(f"median speed-up of --jobs 2 over --jobs 1: {statistics.median(ratios):.3f} "
          f"(target >= 1.6)")


if __name__ == "__main__":
    main()
