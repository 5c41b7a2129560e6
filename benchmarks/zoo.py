"""What `keras_initkit.diagnose` says about a zoo of real and known-bad models, and its cost.

    python benchmarks/zoo.py [--quick] [--only NAME_REGEX] [--family applications|keras_hub|failure]
                             [--no-labels] [--isolate | --in-process] [--timeout S]

The zoo is `tests/diagnostics/zoo.py`: every `keras.applications` constructor
(`weights=None`, 10 classes, at its smallest input size), small keras-hub backbones with
random weights (vocabulary 1000, 2 layers, hidden 64), and known-bad models (a deep
Glorot/ReLU MLP, residual stacks without normalization, an attention stack without skips,
a transformer with scaled-up query/key kernels, ...) whose expected finding is recorded.

For each member: build it (timed), then run `diagnose(model, batch)` (surrogate loss, no
labels) twice, and where the member has labels, `diagnose(model, batch, labels, loss=...)`
twice. The first call traces the probe; the second reuses the trace. One row per member
and mode: the verdict (`report.healthy`), the findings as `kind/signal@layer` (with
`[severity]` where findings have one), seconds for the first and second call, and whether
the verdict matches the member's `expect`: a stock model (`expect` None) matches when it
has no vanishing, exploding or nonfinite finding (of severity "error", where findings have
a severity); a known-bad model matches when a finding of its expected kind is among them.
A member that fails to build or diagnose prints its error and the run goes on.
`--quick` skips the members marked `slow` (over about 3 s to build and diagnose here).
Each member runs in its own Python process (`--isolate`, the default without `--quick`),
so a member that crashes the interpreter or runs out of memory becomes an error row:
resident memory grows with every model diagnosed in one process (about 130 MB per ResNet50
here, with the model itself freed), and an in-process run of all 40 applications was killed
partway. `--quick` runs in one process (`--in-process`), which saves the ~4 s start-up of
TensorFlow per member.

At the end: a markdown table for benchmarks/README.md, the machine, the date and versions.
"""
import argparse
import datetime
import gc
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

import keras_initkit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARD_KINDS = ("vanishing", "exploding", "nonfinite")


def load_zoo():
    """tests/diagnostics/zoo.py by path: `import zoo` here would import this script."""
    path = os.path.join(ROOT, "tests", "diagnostics", "zoo.py")
    spec = importlib.util.spec_from_file_location("keras_initkit_zoo", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _rss_mb():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def short(finding):
    severity = getattr(finding, "severity", "") or ""
    return (f"{finding.kind}/{finding.signal}@{finding.layer}"
            + (f"[{severity}]" if severity else ""))


def matches(expect, findings):
    if expect is None:
        return not any(f.kind in HARD_KINDS and getattr(f, "severity", "error") != "warning"
                       for f in findings)
    return any(f.kind == expect for f in findings)


def _error(e):
    return f"{type(e).__name__}: {str(e).strip().splitlines()[0][:160] if str(e).strip() else ''}"


def run_member(member, with_labels=True, seed=0, echo=True):
    """Rows (dicts) for one member: one per mode, or one error row."""
    keras.backend.clear_session()
    gc.collect()
    rows = []
    base = {"model": member.name, "family": member.family, "expect": member.expect}
    try:
        start = time.perf_counter()
        model = member.build()
        build_s = time.perf_counter() - start
        x = member.batch(model, seed)
    except Exception as e:  # one member's failure must not end the run
        traceback.print_exc(limit=2)
        row = dict(base, mode="build", error=_error(e), build_s=None)
        if echo:
            print_row(row)
        return [row]
    modes = [("surrogate", None, None)]
    if with_labels and member.labels is not None:
        try:
            modes.append(("labels", member.labels(model, seed), member.loss))
        except Exception as e:
            rows.append(dict(base, mode="labels", error=_error(e), build_s=build_s))
            if echo:
                print_row(rows[-1])
    for mode, y, loss in modes:
        row = dict(base, mode=mode, build_s=build_s)
        try:
            times = []
            for _ in range(2):
                start = time.perf_counter()
                report = (keras_initkit.diagnose(model, x) if y is None
                          else keras_initkit.diagnose(model, x, y, loss=loss))
                times.append(time.perf_counter() - start)
            row.update(healthy=report.healthy, findings=[short(f) for f in report.findings],
                       match=matches(member.expect, report.findings), first_s=times[0],
                       second_s=times[1], layers=len(report.layers), rss_mb=_rss_mb())
        except Exception as e:
            traceback.print_exc(limit=3)
            row.update(error=_error(e))
        rows.append(row)
        if echo:
            print_row(row)
    del model
    return rows


ROW_TAG = "ZOO-ROW "


def run_isolated(member, with_labels, timeout):
    """`run_member` in a child process: its rows come back as JSON lines on its stdout."""
    command = [sys.executable, os.path.abspath(__file__), "--member", member.name]
    if not with_labels:
        command.append("--no-labels")
    base = {"model": member.name, "family": member.family, "expect": member.expect,
            "build_s": None}
    rows = []
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        row = dict(base, mode="isolated", error=f"timed out after {timeout} s")
        print_row(row)
        return [row]
    for line in done.stdout.splitlines():
        if line.startswith(ROW_TAG):
            rows.append(json.loads(line[len(ROW_TAG):]))
            print_row(rows[-1])
        elif line.strip():
            print("   ", line, flush=True)
    if done.returncode != 0:
        tail = [line for line in done.stderr.splitlines() if line.strip()][-3:]
        print("\n".join("    " + line for line in tail), flush=True)
        row = dict(base, mode="isolated", error=f"child process exited with {done.returncode}")
        print_row(row)
        rows.append(row)
    return rows


def print_row(row):
    if "error" in row:
        print(f"{row['model']:<24} {row['mode']:<9} ERROR {row['error']}", flush=True)
        return
    ok = "ok" if row["match"] else "MISMATCH"
    print(f"{row['model']:<24} {row['mode']:<9} healthy={row['healthy']!s:<5} "
          f"expect={row['expect'] or '-':<16} {ok:<8} build {row['build_s']:5.1f}s  "
          f"diagnose {row['first_s']:5.1f}s / {row['second_s']:5.2f}s  "
          f"rss {row['rss_mb']:6.0f}MB  "
          f"{', '.join(row['findings']) or '-'}", flush=True)


def markdown(rows):
    lines = ["| model | family | mode | expect | healthy | matches | findings | build s | "
             "1st diagnose s | 2nd diagnose s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        build = f"{r['build_s']:.1f}" if r.get("build_s") is not None else "-"
        if "error" in r:
            lines.append(f"| {r['model']} | {r['family']} | {r['mode']} | {r['expect'] or '-'} "
                         f"| error | no | `{r['error'].replace('|', '/')}` | {build} | - | - |")
            continue
        findings = "<br>".join(f"`{f}`" for f in r["findings"]) or "-"
        lines.append(f"| {r['model']} | {r['family']} | {r['mode']} | {r['expect'] or '-'} | "
                     f"{'yes' if r['healthy'] else 'no'} | {'yes' if r['match'] else '**no**'} | "
                     f"{findings} | {build} | {r['first_s']:.1f} | {r['second_s']:.2f} |")
    return "\n".join(lines)


def processor():
    name = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name")), name)
    except OSError:
        pass
    return name or platform.machine()


def versions():
    import tensorflow as tf

    out = {"python": platform.python_version(), "keras": keras.__version__,
           "tensorflow": tf.__version__, "numpy": np.__version__}
    try:
        import keras_hub

        out["keras_hub"] = keras_hub.__version__
    except Exception:
        out["keras_hub"] = "not installed"
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip members marked slow")
    parser.add_argument("--only", default=None, help="regular expression on member names")
    parser.add_argument("--family", choices=("applications", "keras_hub", "failure"),
                        default=None)
    parser.add_argument("--no-labels", action="store_true", help="surrogate loss only")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--isolate", action="store_true", default=None,
                      help="each member in its own process (default without --quick)")
    mode.add_argument("--in-process", dest="isolate", action="store_false",
                      help="all members in this process (default with --quick)")
    parser.add_argument("--timeout", type=float, default=1800,
                        help="seconds per member with --isolate")
    parser.add_argument("--member", default=None, help=argparse.SUPPRESS)  # --isolate's child
    args = parser.parse_args()
    zoo = load_zoo()
    if args.member:
        for row in run_member(zoo.by_name(args.member), with_labels=not args.no_labels,
                              echo=False):
            print(ROW_TAG + json.dumps(row), flush=True)
        return 0
    members = zoo.members(quick=args.quick, only=args.only, family=args.family)
    isolate = (not args.quick) if args.isolate is None else args.isolate
    print(f"{len(members)} members{', one process each' if isolate else ''}; "
          f"keras {keras.__version__}, {os.cpu_count()} CPUs\n", flush=True)
    start = time.perf_counter()
    rows = []
    for member in members:
        if isolate:
            rows += run_isolated(member, not args.no_labels, args.timeout)
        else:
            rows += run_member(member, with_labels=not args.no_labels)
    total = time.perf_counter() - start

    judged = [r for r in rows if "error" not in r]
    wrong = [r for r in judged if not r["match"]]
    errors = [r for r in rows if "error" in r]
    print(f"\n## Diagnosis of the zoo ({len(members)} members, {len(rows)} rows)\n")
    print(markdown(rows))
    print(f"\n{len(judged) - len(wrong)} of {len(judged)} diagnoses match their expectation; "
          f"{len(errors)} error(s). Total {total:.0f} s.")
    if wrong:
        print("Mismatches: " + ", ".join(f"{r['model']} ({r['mode']})" for r in wrong))
    v = versions()
    print(f"\nMachine: {os.cpu_count()} CPU cores, {processor()} ({platform.machine()}), "
          f"{platform.system()} {platform.release()}. Date: {datetime.date.today().isoformat()}. "
          + ", ".join(f"{k} {val}" for k, val in v.items()) + ".")
    return 0


if __name__ == "__main__":
    sys.exit(main())
