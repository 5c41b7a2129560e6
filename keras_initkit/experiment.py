"""The controlled experiment: one base model, one dataset, one seed; only the initializer varies.

`compare()` is what `initkit compare` runs. For each scheme it re-draws the
same base model (`reinitialize`, or `lsuv` for "lsuv"), diagnoses it at
initialization, trains it with a `SignalMonitor` logging to
`<out>/logs/<scheme>/`, and writes the table (JSON and CSV) and two figures.
"""
import csv
import difflib
import json
import math
import os
import time

import keras
import numpy as np

from .callbacks import SignalMonitor
from .callbacks.signal_monitor import ensure_writable
from .base_models import decoder, delayed_copy, residual_mlp
from .diagnostics import diagnose
from .intervals import paired_p, t_interval
from .model_init import RECIPES, lsuv, reinitialize
from .registry import get, list_initializers

DEFAULT_SCHEMES = ("zeros", "ones", "random_normal", "random_uniform", "glorot", "he",
                   "lecun_normal", "orthogonal", "lsuv")
# Whole-model methods rather than one initializer; "as_built" keeps the base model's own draw.
SPECIAL_SCHEMES = ("lsuv", "auto", "as_built") + RECIPES
ARCHS = ("mlp", "resmlp", "transformer")
# The schemes `initkit compare` runs on each base model when none are named.
ARCH_SCHEMES = {"mlp": DEFAULT_SCHEMES, "resmlp": ("he", "fixup", "skipinit", "lsuv"),
                "transformer": ("as_built", "gpt2", "t_fixup")}
SEQUENCE = {"length": 16, "vocabulary": 16, "delay": 4, "samples": 2000}  # the decoder's task
PROBE_SIZE = 256  # samples in the probe batch (diagnosis at init, SignalMonitor, LSUV)
COLUMNS = ("scheme", "at_init", "train_loss", "train_accuracy", "val_loss", "val_loss_ci",
           "val_accuracy", "val_accuracy_ci", "target_epoch", "vs_best", "seeds", "seconds")


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


def load_data(path=None, seed=0):
    """`(x_train, y_train, x_val, y_val)` as float32 inputs and their targets.

    Without `path`: scikit-learn's bundled 8x8 digits (1,797 images, 10
    classes; nothing is downloaded), each pixel standardized on the training
    split, 20% held out for validation. With `path`: an `.npz` file holding
    `x_train` and `y_train`, and optionally `x_val` and `y_val` (else 20% of
    the training arrays, drawn with `seed`). It is read with
    `allow_pickle=False`: a file never runs code.

    Raises:
        ValueError: the file is missing, unreadable, lacks an array, or the
            arrays' lengths disagree.
    """
    if path is None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x, y = digits.data.astype("float32"), digits.target.astype("int32")
        x_train, y_train, x_val, y_val = _split(x, y, seed)
        mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
        return (x_train - mean) / std, y_train, (x_val - mean) / std, y_val
    path = os.fspath(path)
    arrays = read_npz(path)
    missing = [key for key in ("x_train", "y_train") if key not in arrays]
    if missing:
        raise ValueError(f"Data file {path!r} lacks {' and '.join(missing)}; it must hold "
                         f"x_train and y_train (x_val and y_val optional), found "
                         f"{sorted(arrays) or 'no arrays'}.")
    if ("x_val" in arrays) != ("y_val" in arrays):
        raise ValueError(f"Data file {path!r} holds only one of x_val and y_val; give both "
                         "or neither.")
    x, y = arrays["x_train"], arrays["y_train"]
    if "x_val" in arrays:
        split = (x, y, arrays["x_val"], arrays["y_val"])
    else:
        split = _split(x, y, seed)
    for (inputs, targets), part in ((split[:2], "train"), (split[2:], "val")):
        if inputs.ndim < 2 or len(inputs) != len(targets) or len(inputs) == 0:
            raise ValueError(f"Data file {path!r}: x_{part} must be a non-empty array of rank "
                             f">= 2 with one target per sample; received x_{part} of shape "
                             f"{inputs.shape} and y_{part} of shape {targets.shape}.")
        if not np.issubdtype(inputs.dtype, np.number):
            raise ValueError(f"Data file {path!r}: x_{part} must be numeric; received dtype "
                             f"{inputs.dtype}.")
    x_train, y_train, x_val, y_val = split
    return x_train.astype("float32"), y_train, x_val.astype("float32"), y_val


def read_npz(path):
    """The arrays of an `.npz` file, read with `allow_pickle=False` (a file never runs code).

    Raises:
        ValueError: the file is missing or not a readable `.npz`.
    """
    if not os.path.isfile(path):
        raise ValueError(f"Data file {path!r} does not exist.")
    try:
        with np.load(path, allow_pickle=False) as file:
            return {key: file[key] for key in file.files}
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same one line
        raise ValueError(f"Data file {path!r} is not a readable .npz file "
                         f"({type(error).__name__}: {_first_line(error)}).") from None


def _split(x, y, seed):
    if len(x) != len(y):
        raise ValueError(f"x_train has {len(x)} samples but y_train has {len(y)}.")
    order = np.random.default_rng(seed).permutation(len(x))
    cut = len(x) - max(1, len(x) // 5)
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def mlp(input_shape, outputs, depth=20, width=64, activation="relu"):
    """The default base model: `depth` Dense(width, activation) layers and a linear head."""
    for name, value in (("depth", depth), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be an integer >= 1; received {name}={value!r}.")
    try:
        keras.activations.get(activation)
    except ValueError:
        raise ValueError(f"Unknown activation {activation!r}; give a Keras activation name "
                         "such as 'relu', 'tanh', 'selu' or 'gelu'.") from None
    layers = [keras.Input(input_shape), keras.layers.Flatten(name="flatten")]
    layers += [keras.layers.Dense(width, activation=activation, name=f"dense_{i + 1}")
               for i in range(depth)]
    return keras.Sequential(layers + [keras.layers.Dense(outputs, name="head")], name="mlp")


def load_model(path):
    """A saved model, or a one-line ValueError that says why it could not be read."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"Model file {path!r} does not exist.")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as error:  # noqa: BLE001 - corrupt zips, bad configs, unknown classes
        raise ValueError(f"Cannot load the model {path!r} ({type(error).__name__}: "
                         f"{_first_line(error)}).") from None


def check_fits(model, x, y):
    """Raises a ValueError when the data's shape does not fit the model's input or output."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"The model has {len(model.inputs)} inputs and {len(model.outputs)} "
                         "outputs; the experiment takes a model with one of each.")
    check_samples(x, tuple(model.inputs[0].shape[1:]))
    units = model.outputs[0].shape[-1]
    if _is_classification(y, model):
        classes = int(y.max()) + 1
        if units is None or units < classes or \
                tuple(model.outputs[0].shape[1:-1]) != tuple(y.shape[1:]):
            raise ValueError(f"The data has {classes} classes and labels of shape "
                             f"{y.shape[1:]} per sample, but the model outputs "
                             f"{tuple(model.outputs[0].shape[1:])}.")
    elif tuple(model.outputs[0].shape[1:]) != tuple(y.shape[1:]):
        raise ValueError(f"The targets have shape {y.shape[1:]} per sample but the model "
                         f"outputs {tuple(model.outputs[0].shape[1:])}.")


def check_samples(x, expected):
    """Raises a ValueError when the samples of `x` do not have the shape `expected`
    (None matches any size)."""
    if len(expected) != x.ndim - 1 or any(e is not None and e != s
                                          for e, s in zip(expected, x.shape[1:])):
        raise ValueError(f"The data's samples have shape {x.shape[1:]} but the model takes "
                         f"{expected}.")


def _is_classification(y, model=None):
    """Class labels: non-negative integers, one per sample, or one per position of a sequence
    when the model's output has one axis more than the labels (the classes)."""
    if not (np.issubdtype(y.dtype, np.integer) and y.ndim >= 1 and y.min() >= 0):
        return False
    return y.ndim == 1 or (model is not None and len(model.outputs[0].shape) == y.ndim + 1)


def loss_for(model, y):
    """The loss for targets `y`: sparse cross-entropy for class labels (1-D non-negative
    integers), on logits unless the model ends in a softmax; mean squared error otherwise."""
    if not _is_classification(y, model):
        return keras.losses.MeanSquaredError()
    last = model.layers[-1].get_config().get("activation") if model.layers else None
    return keras.losses.SparseCategoricalCrossentropy(from_logits=last != "softmax")


def _first_line(error):
    return (str(error).strip().splitlines() or [""])[0][:200]


def check_out(out):
    """Creates `out` and proves it writable, or raises a one-line ValueError."""
    ensure_writable(out, f"Cannot write to the output folder {os.fspath(out)!r}")


class Comparison:
    """What `compare()` measured.

    Attributes:
        rows: One dict per scheme with the columns of `COLUMNS`.
        histories: `{scheme: {metric: [one value per epoch]}}`.
        diagnoses: `{scheme: DiagnosisReport}` at initialization.
        settings: The experiment's settings (data, model, seed, epochs, ...).
        files: Paths of what was written (figures, JSON, CSV, logs).
    """

    def __init__(self, settings):
        self.settings, self.rows, self.histories, self.diagnoses, self.files = \
            settings, [], {}, {}, {}
        self.runs, self.bands = [], {}

    def table(self):
        """The table as plain text, one row per scheme: means over seeds, +- the half-width of
        the 95% t-interval, and whether a scheme is distinguishable from the best."""
        header = (f"{'scheme':<16}{'train loss':>11}{'train acc':>10}{'val loss':>19}"
                  f"{'val acc':>19}{'target@':>8}{'s':>6}  {'vs best':<28}at initialization")
        lines = [header, "-" * len(header)]
        for row in self.rows:
            lines.append(f"{row['scheme'][:15]:<16}{_cell(row['train_loss'], 11)}"
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
    return f"{'nan' if value is None else format(value, '.4g'):>{width}}"


def _with_ci(value, half_width, width):
    if value is None or half_width is None:
        return _cell(value, width)
    return f"{format(value, '.4g')} ± {format(half_width, '.2g')}".rjust(width)


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def compare(schemes=None, *, data=None, model=None, arch="mlp", depth=20, width=64,
            activation="relu", epochs=30, batch_size=64, learning_rate=1e-3, seed=0, seeds=3,
            out="initkit_compare", target_accuracy=0.9, verbose=1, say=print):
    """Trains one base model once per initialization scheme and compares them.

    The base model, the data, the seed, the optimizer (Adam) and the epochs
    are fixed; only the initializer varies. Each scheme re-draws every
    kernel of the same architecture with `reinitialize(model, scheme)` (biases
    zeros), or runs `lsuv` on a probe batch for "lsuv". Before training,
    `diagnose` reports the network at initialization; during training a
    `SignalMonitor` logs to `<out>/logs/<scheme>/`. The same seed gives the
    same table (timings aside).

    Args:
        schemes: Names: an alias with or without its `kit_` prefix ("he",
            "kit_orthogonal"), a Keras initializer name, "lsuv", "auto", a
            whole-model recipe ("gpt2", "fixup", ...; see `reinitialize`) or
            "as_built" (the base model's own draw). None: `ARCH_SCHEMES[arch]`.
        data: None for the bundled digits (the delayed-copy sequences for
            `arch="transformer"`), or a path to an `.npz` file (see `load_data`).
        model: None for the base model of `arch`, or a path to a saved model,
            re-initialized per scheme.
        arch: The base model: `"mlp"` (`depth` Dense layers of `width` and
            `activation`), `"resmlp"` (`depth` residual blocks without
            normalization, `base_models.residual_mlp`) or `"transformer"` (a
            GPT-style decoder of `depth` blocks, width `width`, 4 heads, on
            `base_models.delayed_copy`, per-token accuracy).
        epochs, batch_size, learning_rate: Training settings, the same for
            every scheme.
        seed: Seeds the split (the same for every run), and the first run's weights and
            shuffling.
        seeds: Runs per scheme, >= 1: run k draws the weights and the batch order with
            `seed + k`. The rows give the mean over runs with the half-width of its 95%
            Student-t interval (`val_loss_ci`, `val_accuracy_ci`), `target_epoch` the
            epoch by which every run reached `target_accuracy` (None if one never did),
            and `vs_best` whether the paired t-test over seeds tells the scheme apart from
            the best one (`intervals.paired_p`, p < 0.05). `runs` keeps every run.
        out: Output folder: `results.json`, `results.csv`,
            `learning_curves.png`, `signal_at_init.png` and `logs/`.
        target_accuracy: The `target_epoch` column gives the first epoch
            whose validation accuracy reaches it (classification only).
        verbose: 0 silent, 1 one line per scheme and Keras' progress bar, 2
            one line per epoch.
        say: Where progress lines go.

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
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("seeds", seeds)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be an integer >= 1; received {name}={value!r}.")
    if arch == "transformer" and data is None:
        x_train, y_train, x_val, y_val = _split(*delayed_copy(
            SEQUENCE["samples"], SEQUENCE["length"], SEQUENCE["vocabulary"], SEQUENCE["delay"],
            seed=seed), seed)
    else:
        x_train, y_train, x_val, y_val = load_data(data, seed)
    if arch == "transformer" and model is None and not (
            np.issubdtype(x_train.dtype, np.integer) and x_train.ndim == 2 and x_train.min() >= 0):
        raise ValueError(f"--arch transformer reads token sequences: x_train must be non-negative "
                         f"integers of shape (samples, length); received {x_train.dtype} of "
                         f"shape {x_train.shape}.")
    # Per-token labels count as classes for the decoder (its output adds the class axis).
    classification = _is_classification(y_train) or (
        arch == "transformer" and _is_classification(y_train.reshape(-1)))
    outputs = int(max(y_train.max(), y_val.max())) + 1 if classification else \
        int(np.prod(y_train.shape[1:]) or 1)

    def build(draw_seed=seed):
        keras.utils.set_random_seed(draw_seed)
        if model is not None:
            return load_model(model)
        if arch == "transformer":
            return decoder(x_train.shape[1], max(outputs, int(x_train.max()) + 1), depth, width)
        build_arch = residual_mlp if arch == "resmlp" else mlp
        return build_arch(x_train.shape[1:], outputs, depth, width, activation)

    sample_model = build()  # checked against the data, and read for the loss
    check_fits(sample_model, x_train, y_train)
    check_out(out)
    names = {"mlp": f"mlp({depth}x{width}, {activation})",
             "resmlp": f"resmlp({depth} blocks x{width}, {activation})",
             "transformer": f"decoder({depth} blocks x{width}, 4 heads)"}
    default_data = "delayed copy" if arch == "transformer" else "digits"
    settings = {"schemes": list(schemes), "data": os.fspath(data) if data else default_data,
                "model": os.fspath(model) if model else names[arch], "arch": arch,
                "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                "optimizer": "adam", "seed": seed, "seeds": seeds,
                "target_accuracy": target_accuracy,
                "train_samples": len(x_train), "val_samples": len(x_val)}
    result = Comparison(settings)
    probe = (x_train[:PROBE_SIZE], y_train[:PROBE_SIZE])
    loss = loss_for(sample_model, y_train)
    metric = "val_accuracy" if classification else "val_loss"
    finals = {}
    for i, (name, scheme) in enumerate(zip(schemes, resolved)):
        runs = []
        for k in range(seeds):
            if verbose:
                say(f"[{i + 1}/{len(schemes)}] {name}"
                    f"{f', seed {seed + k}' if seeds > 1 else ''}: initialize, diagnose, "
                    f"train {epochs} epochs")
            start = time.perf_counter()
            run_seed = seed + k
            net = build(run_seed)
            if scheme == "lsuv":
                lsuv(net, probe[0], seed=run_seed)
            elif scheme != "as_built":
                reinitialize(net, scheme, seed=run_seed)
            net.compile(keras.optimizers.Adam(learning_rate), loss,
                        metrics=["accuracy"] if classification else [])
            report = diagnose(net, *probe)
            keras.utils.set_random_seed(run_seed)  # one batch order per seed, for every scheme
            logs = os.path.join(out, "logs", name if seeds == 1 else f"{name}/seed_{run_seed}")
            monitor = SignalMonitor(logs, probe_data=probe,
                                    every_n_steps=max(1, len(x_train) // batch_size),
                                    on_finding=lambda finding: None)  # kept in its history
            history = net.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=epochs,
                              batch_size=batch_size, verbose=verbose,
                              callbacks=[monitor]).history
            history = {key: [float(v) for v in values] for key, values in history.items()}
            row = _row(name, report, history, target_accuracy, time.perf_counter() - start)
            runs.append((report, history, row))
            result.runs.append({"scheme": name, "seed": run_seed, "row": row,
                                "history": history})
        result.diagnoses[name] = runs[0][0]
        result.histories[name], result.bands[name] = _mean_history([h for _, h, _ in runs])
        result.rows.append(_summary(name, [r for _, _, r in runs]))
        finals[name] = [r[metric] for _, _, r in runs]
    _judge_against_best(result.rows, finals, metric)
    _write(result, out)
    return result


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
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        mean, half = t_interval([r[key] for r in rows if r[key] is not None])
        summary[key] = mean
        if key in ("val_loss", "val_accuracy"):
            summary[f"{key}_ci"] = half
    epochs = [r["target_epoch"] for r in rows]
    summary["target_epoch"] = None if None in epochs else max(epochs)
    summary["seconds"] = round(sum(r["seconds"] for r in rows), 1)
    summary["seeds"] = len(rows)
    return summary


def _judge_against_best(rows, finals, metric):
    """`vs_best` of each row: "best", "indistinguishable (p=...)" or "worse (p=...)"."""
    scored = [r for r in rows if r[metric] is not None]
    if not scored:
        return
    best = (max if metric == "val_accuracy" else min)(scored, key=lambda r: r[metric])
    for row in rows:
        if row is best:
            row["vs_best"] = "best"
            continue
        p = paired_p(finals[row["scheme"]], finals[best["scheme"]])
        row["vs_best"] = None if p is None else \
            f"{'indistinguishable' if p >= 0.05 else 'worse'} (p={p:.2g})"


def _row(name, report, history, target_accuracy, seconds):
    # Errors first: they decide whether it trains; warnings say it trains, worse.
    findings = sorted(report.findings, key=lambda f: f.severity != "error")
    at_init = "healthy" if not findings else "; ".join(
        f"{f.kind} ({f.signal}{'' if f.severity == 'error' else ', warning'}) at {f.layer}"
        for f in findings[:3]) + (f"; +{len(findings) - 3} more" if len(findings) > 3 else "")
    last = {k: _finite(v[-1]) for k, v in history.items()}
    reached = [epoch + 1 for epoch, accuracy in enumerate(history.get("val_accuracy", []))
               if accuracy >= target_accuracy]
    return {"scheme": name, "at_init": at_init, "train_loss": last.get("loss"),
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
    files["learning_curves"] = os.path.join(out, "learning_curves.png")
    learning_curves(result).savefig(files["learning_curves"], dpi=110)
    files["signal_at_init"] = os.path.join(out, "signal_at_init.png")
    signal_at_init(result).savefig(files["signal_at_init"], dpi=110)
    files["logs"] = os.path.join(out, "logs")


def learning_curves(result):
    """Training loss and validation accuracy (or loss) per epoch, every scheme on one axis."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.5), constrained_layout=True)
    left, right = figure.subplots(1, 2)
    metric = "val_accuracy" if any("val_accuracy" in h for h in result.histories.values()) \
        else "val_loss"
    for i, (name, history) in enumerate(result.histories.items()):
        epochs = range(1, len(history["loss"]) + 1)
        for axis, key in ((left, "loss"), (right, metric)):
            axis.plot(epochs, history[key], label=name, **_style(i))
            band = _band(result, name, key, log=axis is left)
            if band is not None:  # the 95% interval over seeds
                axis.fill_between(epochs, *band, alpha=0.15, color=_style(i)["color"])
    left.set_yscale("log")
    left.set(xlabel="epoch", ylabel="training loss", title="training loss")
    right.set(xlabel="epoch", ylabel=metric.replace("_", " "),
              title=f"{metric.replace('_', ' ')} ({result.settings['model']}, "
                    f"{result.settings['data']})")
    right.legend(fontsize=8)
    for axis in (left, right):
        axis.grid(True, alpha=0.3)
    return figure


def _band(result, name, key, log):
    """Per epoch, the 95% t-interval over the runs of a scheme, or None for a single run or a
    non-finite value. On a log axis (the loss) it is the interval of the log, so that it
    stays positive; an accuracy band is clipped to [0, 1]."""
    runs = [r["history"][key] for r in result.runs if r["scheme"] == name]
    if len(runs) < 2 or not all(v is not None and math.isfinite(v) and (v > 0 or not log)
                                for run in runs for v in run):
        return None
    low, high = [], []
    for column in zip(*runs):
        values = np.log(column) if log else np.asarray(column)
        mean, half = t_interval(values)
        lo, hi = mean - half, mean + half
        low.append(math.exp(lo) if log else max(lo, 0.0) if "accuracy" in key else lo)
        high.append(math.exp(hi) if log else min(hi, 1.0) if "accuracy" in key else hi)
    return low, high


def signal_at_init(result):
    """Per-layer activation RMS and backward signal RMS at initialization, every scheme."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.5), constrained_layout=True)
    panels = figure.subplots(1, 2)
    for axis, key, label in zip(panels, ("rms", "grad_rms"),
                                ("activation RMS", "backward signal RMS")):
        for i, (name, report) in enumerate(result.diagnoses.items()):
            points = [(depth, row[key]) for depth, row in enumerate(report.layers)
                      if row[key] is not None and math.isfinite(row[key]) and row[key] > 0]
            # A scheme with nothing to draw (all zeros) still gets its legend entry.
            axis.plot(*(zip(*points) if points else ([], [])), marker="o", markersize=2,
                      label=name, **_style(i))
        axis.set_yscale("log")
        axis.set(xlabel="layer (order of depth)", ylabel=label, title=f"{label} at initialization")
        axis.grid(True, which="both", alpha=0.3)
    panels[1].legend(fontsize=8)
    return figure


def _style(index):
    """The same colour for a scheme in every panel: ten colours, then dashed, then dotted."""
    return {"color": f"C{index % 10}", "linestyle": ("-", "--", ":")[index // 10 % 3]}
