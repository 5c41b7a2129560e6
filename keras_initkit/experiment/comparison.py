"""The controlled experiment: one base model, one dataset; only the initializer varies.

`compare()` is what `initkit compare` runs. Its unit of work is a cell: one scheme, one
seed, one depth. A cell re-draws the base model (`reinitialize`, or `lsuv` for "lsuv"),
diagnoses it at initialization, trains it with a `SignalMonitor` logging to
`<out>/logs/<scheme>/...` (scalars, and the signal pictures in the Images tab), and
returns its history. Cells share nothing but their inputs, so they run side by side in
worker processes (`parallel.run`) with the same results as one
after the other; the summary over seeds (mean with its t-interval, a paired test against
the best) and the files come after every cell has finished.
"""
import csv
import dataclasses
import difflib
import functools
import json
import math
import os
import shlex
import time

import keras
import numpy as np

from ..base_models import check_sizes, cnn, decoder, delayed_copy, mlp, residual_mlp
from ..callbacks import SignalMonitor
from ..diagnostics import diagnose
from ..initializers.base import check_number, check_seed
from ..intervals import paired_p, t_interval
from ..model_init import RECIPES, lsuv, reinitialize
from ..registry import get, list_initializers
from . import figures, html_report, parallel
from .data import (
    check_fits,
    check_out,
    hold_out,
    is_classification,
    load_data,
    load_model,
    loss_for,
)
from .progress import Progress

DEFAULT_SCHEMES = ("zeros", "ones", "random_normal", "random_uniform", "glorot", "he",
                   "lecun_normal", "orthogonal", "lsuv")
# Whole-model methods rather than one initializer; "as_built" keeps the base model's own draw.
SPECIAL_SCHEMES = ("lsuv", "auto", "as_built") + RECIPES
ARCHS = ("mlp", "cnn", "resmlp", "transformer")
# The schemes `initkit compare` runs on each base model when none are named.
ARCH_SCHEMES = {"mlp": DEFAULT_SCHEMES, "cnn": DEFAULT_SCHEMES,
                "resmlp": ("he", "fixup", "skipinit", "lsuv"),
                "transformer": ("as_built", "gpt2", "t_fixup")}
SEQUENCE = {"length": 16, "vocabulary": 16, "delay": 4, "samples": 2000}  # the decoder's task
PROBE_SIZE = 256  # samples in the probe batch (diagnosis at init, SignalMonitor, LSUV)
COLUMNS = ("scheme", "depth", "at_init", "train_loss", "train_accuracy", "val_loss",
           "val_loss_ci", "val_accuracy", "val_accuracy_ci", "target_epoch", "vs_best", "seeds",
           "seconds")


def resolve_scheme(name):
    """`"he"` -> `"kit_he"`; an alias, a Keras name, "lsuv" or "auto" as they are.

    Raises:
        ValueError: an unknown name, with the closest known names.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"A scheme must be a non-empty name; received {name!r}.")
    if name in SPECIAL_SCHEMES:
        return name
    aliases = [info.alias for info in list_initializers()]
    for candidate in (f"kit_{name}", name):
        if candidate in aliases:
            return candidate
    try:
        get(name)  # a Keras name such as "he_uniform"
        return name
    except ValueError:
        pass
    known = list(SPECIAL_SCHEMES) + [a[len("kit_"):] for a in aliases] + aliases
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"Unknown scheme {name!r}.{hint} `initkit list` shows every alias; "
                     f"{', '.join(repr(s) for s in SPECIAL_SCHEMES)} work too.")


@dataclasses.dataclass(frozen=True)
class Plan:
    """What every cell shares. Plain values only: a worker process rebuilds the same data and
    the same base model from it."""

    data: object
    model: object
    arch: str
    width: int
    activation: str
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    target_accuracy: float

    def inputs(self):
        """`(x_train, y_train, x_val, y_val, classification, outputs)`."""
        return _inputs(self.data, self.arch, self.seed)

    def build(self, depth, draw_seed):
        """The base model at `depth`, its weights drawn with `draw_seed`."""
        keras.utils.set_random_seed(draw_seed)
        if self.model is not None:
            return load_model(self.model)
        x_train, _, _, _, _, outputs = self.inputs()
        if self.arch == "transformer":
            return decoder(x_train.shape[1], max(outputs, int(x_train.max()) + 1), depth,
                           self.width)
        build = {"mlp": mlp, "cnn": cnn, "resmlp": residual_mlp}[self.arch]
        return build(x_train.shape[1:], outputs, depth, self.width, self.activation)


@functools.lru_cache(maxsize=2)
def _inputs(data, arch, seed):
    if arch == "transformer" and data is None:
        x_train, y_train, x_val, y_val = hold_out(*delayed_copy(
            SEQUENCE["samples"], SEQUENCE["length"], SEQUENCE["vocabulary"], SEQUENCE["delay"],
            seed=seed), seed)
    else:
        x_train, y_train, x_val, y_val = load_data(data, seed,
                                                   images=arch == "cnn" and data is None)
    # Per-token labels count as classes for the decoder (its output adds the class axis).
    classification = is_classification(y_train) or (
        arch == "transformer" and is_classification(y_train.reshape(-1)))
    outputs = int(max(y_train.max(), y_val.max())) + 1 if classification else \
        int(np.prod(y_train.shape[1:]) or 1)
    return x_train, y_train, x_val, y_val, classification, outputs


@dataclasses.dataclass(frozen=True)
class Cell:
    """One training run: a scheme at one depth with one seed, logging to `logs`."""

    name: str
    scheme: str
    depth: int
    seed: int
    logs: str
    label: str


def run_cell(task, report_epoch):
    """Initializes, diagnoses and trains one cell; `task` is `(plan, cell)`.

    Returns:
        `{"report": DiagnosisReport, "history": {metric: [per epoch]}, "row": dict,
        "picture": the report's signal-propagation PNG for the first seed, else None}`.
    """
    plan, cell = task
    start = time.perf_counter()
    x_train, y_train, x_val, y_val, classification, _ = plan.inputs()
    probe = (x_train[:PROBE_SIZE], y_train[:PROBE_SIZE])
    net = plan.build(cell.depth, cell.seed)
    if cell.scheme == "lsuv":
        lsuv(net, probe[0], seed=cell.seed)
    elif cell.scheme != "as_built":
        reinitialize(net, cell.scheme, seed=cell.seed)
    net.compile(keras.optimizers.Adam(plan.learning_rate), loss_for(net, y_train),
                metrics=["accuracy"] if classification else [])
    report = diagnose(net, *probe)
    keras.utils.set_random_seed(cell.seed)  # one batch order per seed, for every scheme
    # One probe an epoch; the pictures at the first, every 10th and the last.
    monitor = SignalMonitor(cell.logs, probe_data=probe,
                            every_n_steps=max(1, len(x_train) // plan.batch_size),
                            on_finding=lambda finding: None,  # kept in its history
                            images=True, image_every_n_probes=10)
    history = net.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=plan.epochs,
                      batch_size=plan.batch_size, verbose=0,
                      callbacks=[monitor, _EpochReport(report_epoch)]).history
    history = {key: [float(v) for v in values] for key, values in history.items()}
    row = _row(cell.name, cell.depth, report, history, plan.target_accuracy,
               time.perf_counter() - start)
    # The first seed's picture goes into report.html: drawn here, it is drawn in the worker.
    return {"report": report, "history": history, "row": row,
            "picture": html_report.picture(report) if cell.seed == plan.seed else None}


class _EpochReport(keras.callbacks.Callback):
    def __init__(self, report):
        super().__init__()
        self.report = report

    def on_epoch_end(self, epoch, logs=None):
        self.report(epoch + 1)


class Comparison:
    """What `compare()` measured.

    Attributes:
        rows: One dict per scheme and depth with the columns of `COLUMNS`.
        histories: `{key: {metric: [mean over seeds, per epoch]}}`, `key` the scheme's name,
            or `"<scheme>/depth_<depth>"` in a depth sweep (`key()`).
        bands: The same, each value the half-width of the 95% t-interval.
        diagnoses: `{key: DiagnosisReport}` at initialization, of the first seed.
        pictures: `{key: PNG bytes}`: each diagnosis's signal-propagation picture.
        runs: Every run: scheme, depth, seed, key, its row and its history.
        settings: The experiment's settings (data, model, seeds, depths, ...).
        names: The schemes, as given. depths: The depths.
        metric: `"val_accuracy"` for classification, else `"val_loss"`.
        files: Paths of what was written (figures, JSON, CSV, report, logs).
    """

    def __init__(self, settings, names, depths, metric):
        self.settings, self.names, self.depths, self.metric = settings, names, depths, metric
        self.rows, self.histories, self.bands, self.diagnoses, self.pictures = [], {}, {}, {}, {}
        self.runs, self.files = [], {}

    def key(self, name, depth):
        """Where a scheme at a depth is kept in `histories`, `bands` and `diagnoses`."""
        return name if len(self.depths) == 1 else f"{name}/depth_{depth}"

    def row(self, name, depth):
        """The row of a scheme at a depth."""
        return next(r for r in self.rows if r["scheme"] == name and r["depth"] == depth)

    def model_name(self, depth):
        """The base model at `depth`, in words."""
        s = self.settings
        if s["model_file"]:
            return s["model_file"]
        size = f"{depth}{' blocks' if s['arch'] in ('resmlp', 'transformer') else ''}" \
            f"x{s['width']}"
        detail = "4 heads" if s["arch"] == "transformer" else s["activation"]
        return f"{'decoder' if s['arch'] == 'transformer' else s['arch']}({size}, {detail})"

    def command(self):
        """The `initkit compare` command line that reproduces this comparison."""
        s = self.settings
        words = ["initkit", "compare", "--schemes", ",".join(self.names), "--arch", s["arch"]]
        if s["model_file"]:
            words += ["--model", s["model_file"]]
        if s["data_file"]:
            words += ["--data", s["data_file"]]
        words += ["--depths", ",".join(map(str, self.depths))] if len(self.depths) > 1 else \
            ["--depth", str(self.depths[0])]
        for option in ("width", "activation", "epochs", "batch_size", "learning_rate", "seed",
                       "seeds", "target_accuracy", "out"):
            words += [f"--{option.replace('_', '-')}", str(s[option])]
        return shlex.join(words)

    def table(self):
        """The table as plain text, one row per scheme (and depth): means over seeds, +- the
        half-width of the 95% t-interval, and whether a scheme is distinguishable from the
        best (at its depth)."""
        sweep = len(self.depths) > 1
        header = (f"{'scheme':<16}{'depth' if sweep else '':>{6 * sweep}}{'train loss':>11}"
                  f"{'train acc':>10}{'val loss':>19}{'val acc':>19}{'target@':>8}{'s':>6}  "
                  f"{'vs best':<28}at initialization")
        lines = [header, "-" * len(header)]
        for row in self.rows:
            lines.append(f"{row['scheme'][:15]:<16}{row['depth'] if sweep else '':>{6 * sweep}}"
                         f"{_cell(row['train_loss'], 11)}"
                         f"{_cell(row['train_accuracy'], 10)}"
                         f"{_with_ci(row['val_loss'], row['val_loss_ci'], 19)}"
                         f"{_with_ci(row['val_accuracy'], row['val_accuracy_ci'], 19)}"
                         f"{row['target_epoch'] if row['target_epoch'] else '-':>8}"
                         f"{row['seconds']:>6.0f}  {row['vs_best'] or '-':<28}{row['at_init']}")
        return "\n".join(lines)

    def to_dict(self):
        """Settings, rows, mean per-epoch histories and their bands, every run, and the
        diagnoses, JSON-serializable (NaN -> None)."""
        return _finite({"settings": self.settings, "rows": self.rows,
                        "histories": self.histories, "bands": self.bands, "runs": self.runs,
                        "diagnoses": {k: r.to_dict() for k, r in self.diagnoses.items()}})


def _cell(value, width):
    # The leading space keeps a wide number (2.493e+11 ± 1.9e+08) apart from the cell before.
    return f" {'nan' if value is None else format(value, '.4g')}".rjust(width)


def _with_ci(value, half_width, width):
    if value is None or half_width is None:
        return _cell(value, width)
    return f" {format(value, '.4g')} ± {format(half_width, '.2g')}".rjust(width)


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def compare(schemes=None, *, data=None, model=None, arch="mlp", depth=20, depths=None,
            width=64, activation="relu", epochs=30, batch_size=64, learning_rate=1e-3, seed=0,
            seeds=3, jobs=None, out="initkit_compare", target_accuracy=0.9, verbose=1,
            stream=None):
    """Trains one base model once per initialization scheme (and seed, and depth) and
    compares them.

    The base model, the data, the optimizer (Adam) and the epochs are fixed;
    only the initializer varies. Each scheme re-draws every kernel of the same
    architecture with `reinitialize(model, scheme)` (biases zeros), or runs
    `lsuv` on a probe batch for "lsuv". Before training, `diagnose` reports
    the network at initialization; during training a `SignalMonitor` logs to
    `<out>/logs/<scheme>/[depth_<d>/][seed_<s>/]`. The same seeds give the same
    table (timings aside), whatever `jobs` is.

    Args:
        schemes: Names: an alias with or without its `kit_` prefix ("he",
            "kit_orthogonal"), a Keras initializer name, "lsuv", "auto", a
            whole-model recipe ("gpt2", "fixup", ...; see `reinitialize`) or
            "as_built" (the base model's own draw). None: `ARCH_SCHEMES[arch]`.
        data: None for the bundled digits (the delayed-copy sequences for
            `arch="transformer"`), or a path to an `.npz` file (see `load_data`).
        model: None for the base model of `arch`, or a path to a saved model,
            re-initialized per scheme.
        arch: The base model (`keras_initkit.base_models`): `"mlp"` (`depth`
            Dense layers of `width` and `activation`), `"cnn"` (`depth` 3x3
            convolutions of `width` filters on the 8x8 digits as images),
            `"resmlp"` (`depth` residual blocks without normalization) or
            `"transformer"` (a GPT-style decoder of `depth` blocks, width `width`,
            4 heads, on `base_models.delayed_copy`, per-token accuracy).
        depth: Hidden layers (or blocks) of the base model.
        depths: A depth sweep instead of `depth`: every scheme at every depth,
            the phase diagram of He et al. 2015 (`depth_sweep.png`).
        epochs, batch_size, learning_rate: Training settings, the same for
            every scheme.
        seed: Seeds the split (the same for every run), and the first run's weights and
            shuffling.
        seeds: Runs per scheme, >= 1: run k draws the weights and the batch order with
            `seed + k`. The rows give the mean over runs with the half-width of its 95%
            Student-t interval (`val_loss_ci`, `val_accuracy_ci`), `target_epoch` the
            epoch by which every run reached `target_accuracy` (None if one never did),
            and `vs_best` whether the paired t-test over seeds tells the scheme apart from
            the best one at the same depth (`intervals.paired_p`, p < 0.05). `runs` keeps
            every run.
        jobs: Cells run side by side in this many worker processes, each with
            its own TensorFlow threads (`parallel`); 1 runs them here, one after
            the other. None: one per CPU core, no more than the memory holds at
            2 GiB a worker.
        out: Output folder: `results.json`, `results.csv`, `report.html`,
            `learning_curves.png`, `signal_at_init.png` (one of each per depth
            in a sweep, and `depth_sweep.png`) and `logs/`.
        target_accuracy: The `target_epoch` column gives the first epoch
            whose validation accuracy reaches it (classification only).
        verbose: 0 silent; 1 a progress bar over cells and epochs on a
            terminal, one line per finished cell otherwise.
        stream: Where progress goes; default `sys.stdout`.

    Returns:
        A `Comparison`.

    Raises:
        ValueError: an unknown scheme, unreadable data or model, data that
            does not fit the model, or an unwritable `out`; all before any
            training starts.

    Example:
    >>> result = keras_initkit.experiment.compare(["glorot", "he", "lsuv"], epochs=10)
    >>> print(result.table())
    """
    if not isinstance(arch, str) or arch not in ARCHS:
        raise ValueError(f"`arch` must be one of {', '.join(ARCHS)}; received arch={arch!r}.")
    if schemes is None:
        schemes = ARCH_SCHEMES[arch]
    if isinstance(schemes, str):
        schemes = [schemes]
    resolved = [resolve_scheme(s) for s in schemes]
    if not resolved:
        raise ValueError("`schemes` is empty; give at least one scheme.")
    named = list(zip(schemes, resolved))
    twice = [(a, b, same) for i, (a, same) in enumerate(named) for b, other in named[i + 1:]
             if same == other]
    if twice:  # "he" and "kit_he" are one scheme
        a, b, same = twice[0]
        raise ValueError(f"`schemes` names a scheme twice: {a!r} and {b!r} are both "
                         f"{same!r}; received {list(schemes)}.")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("seeds", seeds),
                        ("depth", depth), ("width", width)):
        check_sizes(**{name: value})
    check_number("learning_rate", learning_rate, positive=True)
    if not 0 <= check_number("target_accuracy", target_accuracy) <= 1:
        raise ValueError(f"`target_accuracy` must be a number in [0, 1]; received "
                         f"target_accuracy={target_accuracy!r}.")
    check_seed(seed)
    depths = _check_depths(depths, depth, model)
    jobs = parallel.check_jobs(jobs)
    plan = Plan(None if data is None else os.fspath(data),
                None if model is None else os.fspath(model), arch, width, activation, epochs,
                batch_size, learning_rate, seed, target_accuracy)
    x_train, y_train, *_ = plan.inputs()
    if arch == "transformer" and model is None and not (
            np.issubdtype(x_train.dtype, np.integer) and x_train.ndim == 2 and x_train.min() >= 0):
        raise ValueError(f"--arch transformer reads token sequences: x_train must be non-negative "
                         f"integers of shape (samples, length); received {x_train.dtype} of "
                         f"shape {x_train.shape}.")
    _, _, x_val, y_val, classification, _ = plan.inputs()
    base = plan.build(depths[0], seed)
    check_fits(base, x_train, y_train)
    check_fits(base, x_val, y_val, "val")
    check_out(out)
    settings = {"schemes": list(schemes),
                "data": plan.data or ("delayed copy" if arch == "transformer" else "digits"),
                "data_file": plan.data, "model_file": plan.model, "arch": arch,
                "depths": depths, "width": width, "activation": activation, "epochs": epochs,
                "batch_size": batch_size, "learning_rate": learning_rate, "optimizer": "adam",
                "seed": seed, "seeds": seeds, "target_accuracy": target_accuracy,
                "out": os.fspath(out), "train_samples": len(x_train),
                "val_samples": len(x_val)}
    result = Comparison(settings, list(schemes), depths,
                        "val_accuracy" if classification else "val_loss")
    settings["model"] = result.model_name(depths[0]) if len(depths) == 1 else \
        result.model_name(",".join(map(str, depths)))
    cells = [Cell(name, scheme, d, seed + k,
                  os.path.join(out, "logs", name, *([f"depth_{d}"] if len(depths) > 1 else []),
                               *([f"seed_{seed + k}"] if seeds > 1 else [])),
                  name + (f", depth {d}" if len(depths) > 1 else "")
                  + (f", seed {seed + k}" if seeds > 1 else ""))
             for d in depths for name, scheme in zip(schemes, resolved) for k in range(seeds)]
    jobs = parallel.default_jobs(len(cells)) if jobs is None else min(jobs, len(cells))
    settings["jobs"] = jobs
    # A cell's time grows with its depth, plus what every cell pays (build, diagnose, fit).
    progress = Progress(len(cells), epochs, stream, mode="auto" if verbose else "quiet",
                        costs={cell.label: cell.depth + 10 for cell in cells})
    outcomes = parallel.run(
        run_cell, [(plan, cell) for cell in cells], jobs,
        on_epoch=lambda i, epoch: progress.epoch(cells[i].label, epoch),
        on_done=lambda i, outcome: progress.done(cells[i].label, _said(outcome, result.metric)))
    progress.close()
    _summarize(result, cells, outcomes)
    _write(result, out)
    return result


def _check_depths(depths, depth, model):
    if depths is None:
        return [depth]
    if model is not None:
        raise ValueError("`depths` builds the base model at each depth; it does not apply to "
                         "a saved `model`. Give one or the other.")
    depths = list(depths)
    for value in depths:
        check_sizes(depths=value)
    if not depths or len(set(depths)) != len(depths):
        raise ValueError(f"`depths` must be distinct integers >= 1; received depths={depths!r}.")
    return depths


def _said(outcome, metric):
    value = outcome["row"][metric]
    return f"{metric} {'nan' if value is None else format(value, '.3g')}, " \
        f"{outcome['row']['seconds']:.0f} s"


def _summarize(result, cells, outcomes):
    """Every run into `result.runs`; per scheme and depth the mean histories, the bands, the
    row over seeds; then the paired test against the best at each depth."""
    groups = {}
    for cell, outcome in zip(cells, outcomes):
        key = result.key(cell.name, cell.depth)
        groups.setdefault((cell.depth, cell.name, key), []).append(outcome)
        result.runs.append({"scheme": cell.name, "depth": cell.depth, "seed": cell.seed,
                            "key": key, "row": outcome["row"], "history": outcome["history"]})
    finals, lost = {}, {}
    for (depth, name, key), group in groups.items():
        result.diagnoses[key] = group[0]["report"]
        result.pictures[key] = group[0]["picture"]
        result.histories[key], result.bands[key] = _mean_history([o["history"] for o in group])
        result.rows.append(_summary(name, [o["row"] for o in group]))
        finals[key] = [o["row"][result.metric] for o in group]
        lost[key] = sum(_diverged(o["row"]) for o in group)
    for depth in result.depths:
        rows = [r for r in result.rows if r["depth"] == depth]
        _judge_against_best(rows, {r["scheme"]: finals[result.key(r["scheme"], depth)]
                                   for r in rows}, result.metric,
                            {r["scheme"]: lost[result.key(r["scheme"], depth)] for r in rows})


def _mean_history(histories):
    """Per metric and epoch: the mean over runs, and the half-width of its t-interval."""
    means, bands = {}, {}
    for key in histories[0]:
        columns = list(zip(*(h[key] for h in histories)))
        pairs = [t_interval(column) for column in columns]
        means[key] = [m for m, _ in pairs]
        bands[key] = [b for _, b in pairs]
    return means, bands


def _summary(name, rows):
    """One row for a scheme: the means of its runs, the intervals of the validation numbers."""
    summary = dict(rows[0])
    lost = any(_diverged(r) for r in rows)
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        values = [r[key] for r in rows if r[key] is not None]
        # A run that diverged (NaN loss) leaves no mean: the finite runs alone, or a chance
        # accuracy computed from NaN outputs, would flatter it.
        mean, half = (None, None) if lost else t_interval(values)
        summary[key] = mean
        if key in ("val_loss", "val_accuracy"):
            summary[f"{key}_ci"] = half
    epochs = [r["target_epoch"] for r in rows]
    summary["target_epoch"] = None if None in epochs else max(epochs)
    summary["seconds"] = round(sum(r["seconds"] for r in rows), 1)
    summary["seeds"] = len(rows)
    return summary


def _diverged(run_row):
    """Did a run end with a loss that is not finite (NaN or Inf, kept as None)?"""
    return run_row["train_loss"] is None or run_row["val_loss"] is None


def _judge_against_best(rows, finals, metric, lost):
    """`vs_best` of each row: "best", "indistinguishable (p=...)", "worse (p=...)", or
    "diverged in k of n seeds" (`lost[scheme]` runs ended with a loss that is not finite)."""
    for row in rows:
        if lost[row["scheme"]]:
            row["vs_best"] = (f"diverged in {lost[row['scheme']]} of "
                              f"{len(finals[row['scheme']])} seeds")
    scored = [r for r in rows if r[metric] is not None and not lost[r["scheme"]]]
    if not scored:
        return
    best = (max if metric == "val_accuracy" else min)(scored, key=lambda r: r[metric])
    for row in scored:
        if row is best:
            row["vs_best"] = "best"
            continue
        p = paired_p(finals[row["scheme"]], finals[best["scheme"]])
        row["vs_best"] = None if p is None else \
            f"{'indistinguishable' if p >= 0.05 else 'worse'} (p={p:.2g})"


def _row(name, depth, report, history, target_accuracy, seconds):
    # Errors first: they decide whether it trains; warnings say it trains, worse.
    findings = sorted(report.findings, key=lambda f: f.severity != "error")
    at_init = "healthy" if not findings else "; ".join(
        f"{f.kind} ({f.signal}{'' if f.severity == 'error' else ', warning'}) at {f.layer}"
        for f in findings[:3]) + (f"; +{len(findings) - 3} more" if len(findings) > 3 else "")
    last = {k: _finite(v[-1]) for k, v in history.items()}
    reached = [epoch + 1 for epoch, accuracy in enumerate(history.get("val_accuracy", []))
               if accuracy >= target_accuracy]
    return {"scheme": name, "depth": depth, "at_init": at_init, "train_loss": last.get("loss"),
            "train_accuracy": last.get("accuracy"), "val_loss": last.get("val_loss"),
            "val_loss_ci": None, "val_accuracy": last.get("val_accuracy"),
            "val_accuracy_ci": None, "target_epoch": reached[0] if reached else None,
            "vs_best": None, "seeds": 1, "seconds": round(seconds, 1)}


def _write(result, out):
    files = result.files
    files["json"] = os.path.join(out, "results.json")
    with open(files["json"], "w") as f:
        json.dump(result.to_dict(), f, indent=1, allow_nan=False)
    files["csv"] = os.path.join(out, "results.csv")
    with open(files["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(result.rows)
    sweep = len(result.depths) > 1
    for depth in result.depths:
        suffix = f"_depth_{depth}" if sweep else ""
        for name, draw in (("learning_curves", figures.learning_curves),
                           ("signal_at_init", figures.signal_at_init)):
            files[name + suffix] = os.path.join(out, f"{name}{suffix}.png")
            draw(result, depth).savefig(files[name + suffix], dpi=110)
    if sweep:
        files["depth_sweep"] = os.path.join(out, "depth_sweep.png")
        figures.depth_sweep(result).savefig(files["depth_sweep"], dpi=110)
    files["report"] = os.path.join(out, "report.html")
    html_report.write(result, files["report"])
    files["logs"] = os.path.join(out, "logs")
