"""The figures of a comparison: learning curves with their bands, the signal at
initialization, and the depth sweep's phase diagram. Each returns a matplotlib `Figure`
(drawn without pyplot, so no display is needed)."""
import math

import numpy as np

from ..intervals import t_interval


def learning_curves(result, depth=None):
    """Training loss and validation accuracy (or loss) per epoch, every scheme on one axis:
    its mean over seeds, with the 95% t-interval as a band. `depth`: which depth of a
    sweep (default: the first)."""
    from matplotlib.figure import Figure

    depth = result.depths[0] if depth is None else depth
    figure = Figure(figsize=(11, 4.5), constrained_layout=True)
    left, right = figure.subplots(1, 2)
    metric = result.metric
    for i, name in enumerate(result.names):
        key = result.key(name, depth)
        history = result.histories[key]
        epochs = range(1, len(history["loss"]) + 1)
        for axis, stat in ((left, "loss"), (right, metric)):
            axis.plot(epochs, history[stat], label=name, **style(i))
            band = _band(result, key, stat, log=axis is left)
            if band is not None:
                axis.fill_between(epochs, *band, alpha=0.15, color=style(i)["color"])
    left.set_yscale("log")
    left.set(xlabel="epoch", ylabel="training loss", title="training loss")
    right.set(xlabel="epoch", ylabel=metric.replace("_", " "),
              title=f"{metric.replace('_', ' ')} ({result.model_name(depth)}, "
                    f"{result.settings['data']})")
    right.legend(fontsize=8)
    for axis in (left, right):
        axis.grid(True, alpha=0.3)
    return figure


def _band(result, key, stat, log):
    """Per epoch, the 95% t-interval over the runs of a scheme, or None for a single run or a
    non-finite value. On a log axis (the loss) it is the interval of the log, so that it
    stays positive; an accuracy band is clipped to [0, 1]."""
    runs = [r["history"][stat] for r in result.runs if r["key"] == key]
    if len(runs) < 2 or not all(v is not None and math.isfinite(v) and (v > 0 or not log)
                                for run in runs for v in run):
        return None
    low, high = [], []
    for column in zip(*runs):
        values = np.log(column) if log else np.asarray(column)
        mean, half = t_interval(values)
        lo, hi = mean - half, mean + half
        low.append(math.exp(lo) if log else max(lo, 0.0) if "accuracy" in stat else lo)
        high.append(math.exp(hi) if log else min(hi, 1.0) if "accuracy" in stat else hi)
    return low, high


def signal_at_init(result, depth=None):
    """Per-layer activation RMS and backward signal RMS at initialization, every scheme."""
    from matplotlib.figure import Figure

    depth = result.depths[0] if depth is None else depth
    figure = Figure(figsize=(11, 4.5), constrained_layout=True)
    panels = figure.subplots(1, 2)
    for axis, stat, label in zip(panels, ("rms", "grad_rms"),
                                 ("activation RMS", "backward signal RMS")):
        for i, name in enumerate(result.names):
            report = result.diagnoses[result.key(name, depth)]
            points = [(d, row[stat]) for d, row in enumerate(report.layers)
                      if row[stat] is not None and math.isfinite(row[stat]) and row[stat] > 0]
            # A scheme with nothing to draw (all zeros) still gets its legend entry.
            axis.plot(*(zip(*points) if points else ([], [])), marker="o", markersize=2,
                      label=name, **style(i))
        axis.set_yscale("log")
        axis.set(xlabel="layer (order of depth)", ylabel=label, title=f"{label} at initialization")
        axis.grid(True, which="both", alpha=0.3)
    panels[1].legend(fontsize=8)
    return figure


def depth_sweep(result):
    """The phase diagram of He et al. 2015 (Fig. 3) over schemes: a heat map of depth x
    scheme coloured by the final validation accuracy (or loss), each cell marked with the
    mean and what the diagnosis said at initialization ("ok" when healthy, the kind of the
    first finding, "?" after it for a warning)."""
    from matplotlib.figure import Figure

    metric = result.metric
    values = np.array([[_mean(result, name, depth) for name in result.names]
                       for depth in result.depths], dtype=float)
    figure = Figure(figsize=(max(6.5, 1.3 * len(result.names) + 2.5),
                            0.65 * len(result.depths) + 2.2),
                    constrained_layout=True)
    axis = figure.subplots()
    accuracy = metric == "val_accuracy"
    shown = values if accuracy else np.log10(np.where(values > 0, values, np.nan))
    image = axis.imshow(np.ma.masked_invalid(shown), cmap="viridis" if accuracy else "viridis_r",
                        vmin=0 if accuracy else None, vmax=1 if accuracy else None,
                        aspect="auto")
    figure.colorbar(image, ax=axis, label=metric.replace("_", " ")
                    + ("" if accuracy else " (log10)"))
    for row, depth in enumerate(result.depths):
        for column, name in enumerate(result.names):
            mark = _mark(result.row(name, depth)["at_init"])
            value = values[row, column]
            text = f"{value:.2f}" if math.isfinite(value) else "nan"
            light = math.isfinite(value) and (value < 0.5 if accuracy else False)
            axis.text(column, row, f"{text}\n{mark}", ha="center", va="center", fontsize=8,
                      color="white" if light else "black")
    axis.set_xticks(range(len(result.names)), result.names, rotation=30, ha="right")
    axis.set_yticks(range(len(result.depths)), result.depths)
    axis.set(xlabel="scheme", ylabel="depth (hidden layers or blocks)",
             title=f"final {metric.replace('_', ' ')} by depth, mean of "
                   f"{result.settings['seeds']} seed(s)\n({result.settings['arch']}, "
                   f"{result.settings['activation']}; under each value: the diagnosis at init, "
                   "? a warning)")
    return figure


def _mark(at_init):
    """"ok", the kind of the first finding (errors come first), or "kind?" for a warning."""
    if at_init == "healthy":
        return "ok"
    first = at_init.split(";")[0]
    return first.split(" ")[0] + ("?" if "warning" in first else "")


def _mean(result, name, depth):
    value = result.row(name, depth)[result.metric]
    return math.nan if value is None else value


def style(index):
    """The same colour for a scheme in every panel: ten colours, then dashed, then dotted."""
    return {"color": f"C{index % 10}", "linestyle": ("-", "--", ":")[index // 10 % 3]}
