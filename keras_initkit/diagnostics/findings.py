"""Rules that turn probe statistics into findings: what is wrong, where, how bad, what to change.

One function per rule, each `rule(net) -> [Finding]` over a `Net` (the probe's
rows with what the rules share: references, live rows, consumers); `RULES`
joins them. Every threshold is an argument of `Thresholds`, and each default
names its source.
"""
import dataclasses
import math
import typing

import keras

from .. import activations as acts
from .._compat import flat_layers
from ..fans import layer_fans
from .probe import live_rows

KINDS = ("vanishing", "exploding", "dead", "saturated", "nonfinite", "rank_collapse",
         "entropy_collapse", "update")
SIGNALS = ("activation", "gradient", "attention", "weight")
SEVERITIES = ("error", "warning")


@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem, at the first layer (in order of depth) where it shows.

    A probe gives at most one finding per kind and signal; the message says
    how many later layers are dead or saturated too.

    Attributes:
        kind: One of `KINDS`: `vanishing`, `exploding`, `dead`, `saturated`,
            `nonfinite`, `rank_collapse`, `entropy_collapse`, `update` (the
            weights' steps between two probes of `SignalMonitor`).
        signal: `activation` (the forward signal), `gradient` (the backward
            signal or a weight's gradient), `attention` or `weight` (a
            weight's own change, or a kernel dead at zero: zero with a zero
            gradient).
        layer: The layer's name (`path` is its unique path).
        value: The measured number the rule compared.
        threshold: The threshold it crossed.
        message: A sentence that names the layer and the likely remedy.
        path: The layer's unique path in the model, as in `report.layers` and
            the TensorBoard tags (two nested blocks may hold layers of one name).
        severity: `"error"` (the network will not train as it stands) or
            `"warning"` (it trains, worse); the bands are in `Thresholds`.
    """

    kind: str
    signal: str
    layer: str
    value: float
    threshold: float
    message: str
    path: str = ""
    severity: str = "error"

    def to_dict(self):
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """The thresholds of the rules, with their sources.

    Each signal rule has a warning band and an error band: "warning" past the
    first threshold (it trains, worse), "error" past the second (it does not
    train with Adam at 1e-3 in float32). The error bands were calibrated by
    training on the bundled digits on each side of them
    (`benchmarks/calibrate_severity.py`, `docs/severity_calibration.md`).

    Args:
        vanishing_ratio: Activation RMS, relative to its reference (the model
            input, or the last layer that sets the scale: a normalization or
            an embedding), below which the signal is vanishing: a warning.
            Default 1e-2: on a 30-layer, 512-wide MLP, Glorot/ReLU falls to
            5e-3 of its input scale by layer 15 and 2e-5 by layer 30, while
            He/ReLU stays at 0.7-1.1 and LeCun/tanh at 0.13 or above
            (measured, on a N(0, 1) batch of 256); 1e-2 separates them.
        vanishing_error_ratio: The same ratio below which it is an error.
            Default 3e-7 (calibrated: a 20-layer ReLU MLP whose last hidden layer
            is at 1e-6 of the input still learns on the digits, at 1e-7 and below
            it stays at one class in every seed; the edge is Adam's epsilon, 1e-7).
        exploding_ratio: The same ratio above which the signal is exploding:
            a warning. Default 1e2: unit-variance normal weights at width 512
            grow the signal 16x a layer (RMS, after ReLU), while He/ReLU stays
            within 0.7-1.1 over 30 layers; 1e2 is crossed at the second bad
            layer and never by the healthy nets.
        exploding_error_ratio: The same ratio above which it is an error.
            Default 1e3 (calibrated: at 1e2 a 20-layer ReLU MLP learns in every
            seed, at 1e3 and beyond it stays below 0.52 validation accuracy).
        layer_gain: One layer's own gain (its output RMS over its input RMS)
            above which its weights are too large, a warning, even where the
            depth trend has not yet crossed `exploding_ratio`. Default 10:
            N(0, 1) weights give a gain of about sqrt(fan_in) (32 for fan_in
            1024), while He, Glorot and LeCun keep each layer within 0.5-2
            (Glorot & Bengio 2010); 10 is a 5-fold margin. Never an error: one
            N(0, 1) layer in a He/ReLU MLP only slowed training (calibrated).
            Normalization layers, which rescale on purpose, are never judged by it.
        dead_fraction: Fraction of ReLU-family units that are zero for every
            sample in the batch, above which a layer is dead: a warning.
            Default 0.4, CS231n's "as much as 40% of your network can be dead".
            Judged where the batch holds `DEAD_MIN_SAMPLES` (8) positions or
            more (samples times tokens or pixels): a healthy unit is zero at
            every one of n positions with odds about 2^-n (half of a layer
            for one sample).
        dead_error_fraction: The same fraction at or above which it is an
            error. Default 1.0, a whole layer (calibrated: with 95% of every
            layer's units dead the digits MLP still learns; one fully dead layer
            leaves it at chance).
        saturated_fraction: Fraction of a bounded activation's outputs beyond
            `saturation_threshold`, above which a layer is saturated: a
            warning. Default 0.5, a majority of the units, as in the saturated
            top layers that Glorot & Bengio 2010 (Sec. 3.1) observed.
        saturated_error_fraction: The same fraction above which it is an
            error. Default 0.75 (calibrated: a 6-layer tanh MLP learns in every
            seed at 0.7, and ends near 0.5 validation accuracy at 0.8-0.9).
        saturation_threshold: |tanh| (or 2*sigmoid - 1) above which an output
            is saturated. Default 0.97, Karpathy's rule (CS231n).
        gradient_vanishing_ratio: RMS of the loss gradient with respect to a
            layer's output (the backward signal), relative to its reference
            (the nearest layer downstream whose gradient a normalization sets,
            or the model output), below which gradients vanish: a warning.
            Default 1e-3, AUTOTRAINER's first/last ratio (Zhang et al., ICSE
            2021), here on the backward signal instead of kernel norms.
        gradient_vanishing_error_ratio: The same ratio below which it is an
            error. Default 3e-7 (calibrated: in plain stacks the backward ratio
            follows the forward one; learners go down to 6e-7, failures start at
            1.6e-7).
        gradient_exploding_ratio: The same ratio above which gradients
            explode: a warning. Default 70, AUTOTRAINER.
        gradient_exploding_error_ratio: The same ratio above which it is an
            error. Default 1e2 (calibrated: every ReLU MLP up to 53 learned, 120
            failed, 270-470 failed in 2 seeds of 3).
        gradient_floor: A kernel's gradient norm over its weight norm below
            which its gradient has vanished outright (an error): even a
            learning rate of 1 would move the weights by less than float32
            resolves. Default 2^-24, float32's unit roundoff. Healthy networks
            sit at 1e-5 and above (ResNet50 at initialization: 1e-5 at its
            smallest). Judged on the layers on the way to an output, so a
            branch scaled down on purpose (LayerScale) is no alarm.
        rank_collapse_cosine: Mean cosine similarity of two tokens of one
            sample above which the tokens have collapsed to one direction
            (an error), where the first sequence layer is below it. Default
            0.9: pure attention stacks reach 0.99 and above within a few
            layers (Dong et al. 2021), stock GPT-2, BERT and Llama stay below
            0.5 at initialization (benchmarks/zoo.py); a stock ViT on images
            scaled to [0, 1] reads 0.95-0.998 behind its skips (a warning).
        entropy_collapse_ratio: Mean attention entropy over its maximum (the
            log of the number of keys a query sees) below which attention has
            collapsed onto one key per query (an error; Zhai et al. 2023).
            Default 0.2: stock transformers start near 1.
        update_ratio: A kernel's mean relative update per training step,
            ||W_now - W_before|| / ||W_before|| / steps between two probes of
            `SignalMonitor`, above which its steps are too large: a warning.
            Default 1e-1: about 1e-3 is healthy (CS231n, "Neural Networks
            Part 3": ratio of update to weight magnitudes); at 1e-1 the
            weights are replaced within tens of steps.
        update_error_ratio: The same ratio above which it is an error.
            Default 1.0: each step moves the kernel by more than its own norm,
            as a learning rate far too high does before the loss diverges.
    """

    vanishing_ratio: float = 1e-2
    vanishing_error_ratio: float = 3e-7
    exploding_ratio: float = 1e2
    exploding_error_ratio: float = 1e3
    layer_gain: float = 10.0
    dead_fraction: float = 0.4
    dead_error_fraction: float = 1.0
    saturated_fraction: float = 0.5
    saturated_error_fraction: float = 0.75
    saturation_threshold: float = 0.97
    gradient_vanishing_ratio: float = 1e-3
    gradient_vanishing_error_ratio: float = 3e-7
    gradient_exploding_ratio: float = 70.0
    gradient_exploding_error_ratio: float = 1e2
    gradient_floor: float = 2.0 ** -24
    rank_collapse_cosine: float = 0.9
    entropy_collapse_ratio: float = 0.2
    update_ratio: float = 1e-1
    update_error_ratio: float = 1.0

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and value > 0):
                raise ValueError(f"`{field.name}` must be a positive number; received "
                                 f"{field.name}={value!r}.")
        for name in ("dead_fraction", "saturated_fraction", "saturation_threshold",
                     "rank_collapse_cosine", "entropy_collapse_ratio"):
            if getattr(self, name) >= 1:
                raise ValueError(f"`{name}` must be in (0, 1); received "
                                 f"{name}={getattr(self, name)}.")
        if self.dead_error_fraction > 1 or self.saturated_error_fraction > 1:
            raise ValueError("`dead_error_fraction` and `saturated_error_fraction` must be in "
                             f"(0, 1]; received {self.dead_error_fraction} and "
                             f"{self.saturated_error_fraction}.")
        if self.layer_gain <= 1:
            raise ValueError(f"`layer_gain` must be > 1; received layer_gain={self.layer_gain}.")
        for low, high in (("vanishing_ratio", "exploding_ratio"),
                          ("gradient_vanishing_ratio", "gradient_exploding_ratio")):
            if getattr(self, low) >= 1 or getattr(self, high) <= 1:
                raise ValueError(f"`{low}` must be < 1 and `{high}` > 1; received "
                                 f"{getattr(self, low)} and {getattr(self, high)}.")
        for warning, error, below in (
                ("vanishing_ratio", "vanishing_error_ratio", True),
                ("exploding_ratio", "exploding_error_ratio", False),
                ("gradient_vanishing_ratio", "gradient_vanishing_error_ratio", True),
                ("gradient_exploding_ratio", "gradient_exploding_error_ratio", False),
                ("dead_fraction", "dead_error_fraction", False),
                ("saturated_fraction", "saturated_error_fraction", False),
                ("update_ratio", "update_error_ratio", False)):
            w, e = getattr(self, warning), getattr(self, error)
            if (e > w) if below else (e < w):
                raise ValueError(f"`{error}` must lie beyond `{warning}` (the error band is "
                                 f"past the warning band); received {error}={e} and "
                                 f"{warning}={w}.")


# A normalization layer's output RMS is about its gain, 1 at initialization; below this it
# did not set the scale (its input was below its epsilon), and the trend goes on through it.
NORMALIZED_RMS = 0.1


class Layout:
    """What the rules read of a probe's layers that does not change from probe to probe.

    Built once per trace of a probe (`ProbeResult.shared` keeps it), so that a monitor
    probing every few steps pays the rules' Python on the numbers alone.

    Attributes:
        skipped: Per row, whether no rule reads it (a nested model's row repeats its
            last layer's output).
        norm: Per row, whether its layer is a normalization.
        activation: Per row, the name of the activation its layer applies, or None.
        composite: Per row, whether its layer has sublayers of its own (a keras-hub
            block, an attention layer).
        consumers: Per row, the rows that read its output as first input.
        live: Per row, whether its output reaches a model output through recorded
            first inputs (a residual branch that ends in a merge's second input or a
            raw `x + f(x)` does not).
        scale_used: Per row, whether a layer that is no normalization reads its output
            as is (`Net.scale_is_used`).
        backward: Per row, `Net.backward_references`.
        kernels: Indices of the weights that are kernels (rank >= 2, multiplying
            their input, outside normalization layers).
    """

    def __init__(self, rows, weights):
        n = len(rows)
        self.skipped = [isinstance(r.layer, keras.Model) for r in rows]
        self.norm = [acts.is_normalization(r.layer, r.input_shape) for r in rows]
        self.activation = [acts.activation_name(r.layer) for r in rows]
        # Any sublayer at all: a direct one is enough to tell, no need to walk them all.
        self.composite = [bool(flat_layers(r.layer, recursive=False)) for r in rows]
        self.consumers = [[] for _ in range(n)]
        for i, row in enumerate(rows):
            if row.parent is not None:
                self.consumers[row.parent].append(i)
        self.live = live_rows([r.parent for r in rows], [r.is_output for r in rows])
        self.scale_used = [self._scale_used(rows, i) for i in range(n)]
        self.backward = self._backward(rows)
        norms = {id(r.layer) for r, normal in zip(rows, self.norm) if normal}
        self.kernels = [j for j, w in enumerate(weights)
                        if id(w.layer) not in norms and _is_kernel(w)]

    def _scale_used(self, rows, i):
        # A residual stream that every block reads through a normalization (pre-LN
        # transformers) may grow with depth: nothing sees its scale. A block made of
        # sublayers counts through them; readers not recorded (a merge's second input,
        # a raw op) count as reading it.
        if not self.consumers[i] or rows[i].is_output:
            return True
        return any(not self.norm[c] and not isinstance(rows[c].layer, acts.MERGES)
                   for c in self.consumers[i] if not self.composite[c])

    def _backward(self, rows):
        refs = [None] * len(rows)
        for i in reversed(range(len(rows))):
            if not self.live[i]:
                continue
            child = next((c for c in self.consumers[i] if self.live[c]), None)
            # A softmax over many classes shrinks the gradient by about 1 / classes near
            # uniform probabilities: the signal into the logits is the reference there.
            if rows[i].is_output or child is None or self.norm[child] or \
                    self.activation[child] == "softmax":
                refs[i] = (i, False)
            else:
                merges = isinstance(rows[child].layer, acts.MERGES) or \
                    self.composite[child]  # a block with a raw x + f(x) inside
                refs[i] = (refs[child][0], refs[child][1] or merges)
        return refs


def layout_of(result):
    """The `Layout` of a `ProbeResult`, built once per trace of its probe."""
    shared = getattr(result, "shared", None)
    if shared is None:
        return Layout(result.activations, result.weights)
    if "layout" not in shared:
        shared["layout"] = Layout(result.activations, result.weights)
    return shared["layout"]


class Net:
    """A probe's rows with what the rules share.

    Attributes:
        rows: The probe's `LayerRow`s (nested-model rows included; rules skip them).
        samples: The probe batch's size (None: not known).
        weights: The probe's `WeightRow`s.
        t: The `Thresholds`.
        silent: Paths of layers whose kernel starts at zero on purpose (see
            `zero_started`): no vanishing verdict on their outputs.
        layout: The `Layout`: what depends on the layers alone. Its `norm`,
            `live` and `consumers` read as the Net's own.
    """

    def __init__(self, result, thresholds, silent=()):
        self.rows, self.weights, self.t = result.activations, result.weights, thresholds
        self.samples = result.samples
        self.silent = set(silent)
        self.layout = layout = layout_of(result)
        self.norm, self.live, self.consumers = layout.norm, layout.live, layout.consumers
        self._found = {}

    def skipped(self, i):
        """A nested model's row repeats its last layer's output: no rule reads it."""
        return self.layout.skipped[i]

    def composite(self, i):
        """A layer whose sublayers are rows of their own (a keras-hub block, an attention)."""
        return self.layout.composite[i]

    def once(self, rule):
        """`rule(self)`, computed once per probe (one rule may read another's findings)."""
        if rule not in self._found:
            self._found[rule] = rule(self)
        return self._found[rule]

    def forward_references(self):
        """Per row: (reference RMS, its description, whether a merge lies on the way), or None.

        The reference is the output of the last layer on the row's chain of
        first inputs that sets the scale (a normalization whose output RMS is at
        least `NORMALIZED_RMS`, an embedding, rescaling), else the model input
        the chain starts from.
        """
        refs = []
        for i, row in enumerate(self.rows):
            s = row.stats
            # A normalization whose input variance was below its epsilon passes a small input
            # on, scaled but not normalized (NASNet's 0.009): the scale is not its.
            normalized = self.norm[i] and s["rms"] >= NORMALIZED_RMS
            if normalized or isinstance(row.layer, acts.SCALE_SETTERS):
                refs.append((s["rms"], f"'{row.path}'", False))
            elif row.parent is None:
                refs.append((s["input_rms"], "the input", False) if s["input_rms"] > 0 else None)
            else:
                ref = refs[row.parent]
                merged = isinstance(row.layer, acts.MERGES)
                refs.append(None if ref is None else (ref[0], ref[1], ref[2] or merged))
        return refs

    def scale_is_used(self, i):
        """Whether a layer that is no normalization reads row i's output as is.

        A residual stream that every block reads through a normalization
        (pre-LN transformers) may grow with depth: nothing sees its scale. A
        block made of sublayers counts through them. A row whose readers were
        not recorded (a merge's second input, a raw op) counts as read.
        """
        return self.layout.scale_used[i]

    def backward_references(self):
        """Per row: (index of the row whose backward signal is its reference, whether a merge
        lies on the way), or None.

        Walking down the live rows from each output: a row's reference is its
        live reader's, except where that reader is a normalization (which
        sets the gradient at its input, whatever it is at its output) or a
        softmax, or the row is a model output: there it is the row itself.
        """
        return self.layout.backward


def _nonfinite_activations(net):
    """The first layer whose output (or input) is not finite."""
    for row in net.rows:
        s, path, layer = row.stats, row.path, row.layer
        bad = s["nan_count"] + s["inf_count"]
        if s["input_nonfinite_count"] and not bad:  # e.g. ReLU turned the NaN into 0
            return [Finding(
                "nonfinite", "activation", layer.name, s["input_nonfinite_count"], 0.0,
                f"The input of layer '{path}' holds {int(s['input_nonfinite_count'])} NaN or "
                "Inf values, which its activation hides: clean the data (look for NaN, "
                "division by zero or log of 0 in preprocessing).", path)]
        if bad:
            return [Finding(
                "nonfinite", "activation", layer.name, bad, 0.0,
                f"Layer '{path}' is the first to output NaN or Inf ({int(bad)} values). "
                + ("Its input already holds NaN or Inf: clean the data. "
                   if s["input_nonfinite_count"] else
                   f"Lower the learning rate, or {acts.remedy(acts.activation_name(layer))}."),
                path)]
    return []


def _finite_row(row):
    s = row.stats
    return not (s["nan_count"] + s["inf_count"] + s["input_nonfinite_count"])


def _severity(value, warning, error, below):
    """'error', 'warning' or None for `value` against a band (below: small is bad)."""
    if below:
        return "error" if value < error else "warning" if value < warning else None
    return "error" if value > error else "warning" if value > warning else None


class _Trend:
    """Where a ratio first crosses its warning threshold, and first crosses its error one."""

    def __init__(self, kind, below, warning, error):
        self.kind, self.below, self.warning, self.error = kind, below, warning, error
        self.first = self.worst = None  # (index, ratio, reference)

    def see(self, i, ratio, reference):
        severity = _severity(ratio, self.warning, self.error, self.below)
        if severity is not None and self.first is None:
            self.first = (i, ratio, reference)
        if severity == "error" and self.worst is None:
            self.worst = (i, ratio, reference)

    def verdict(self):
        """`(severity, first, value, threshold, wording)` or None: the finding sits where the
        trend first crosses; an error past it makes it an error, with the error's numbers."""
        if self.first is None:
            return None
        if self.worst is None:
            return "warning", self.first, self.first[1], self.warning, ""
        i, ratio, _ = self.worst
        further = "" if i == self.first[0] else f"; further on it reaches {ratio:.3g}"
        return "error", self.first, ratio, self.error, further


def _forward_scale(net):
    """Activations that vanish or explode relative to their reference, measured."""
    t, refs = net.t, net.forward_references()
    trends = [_Trend("vanishing", True, t.vanishing_ratio, t.vanishing_error_ratio),
              _Trend("exploding", False, t.exploding_ratio, t.exploding_error_ratio)]
    for i, row in enumerate(net.rows):
        ref = refs[i]
        if ref is None or net.skipped(i) or net.norm[i] or not _finite_row(row) or \
                net.layout.activation[i] == "softmax" or not ref[0] > 0 or \
                not net.scale_is_used(i):
            continue  # probabilities have no scale; past a NaN the scale means nothing
        for trend in trends:
            # A branch scaled down on purpose (LayerScale, ReZero, a zero-started layer)
            # is no vanishing signal; a branch that blows up is an explosion all the same.
            if trend.kind == "vanishing" and (not net.live[i] or row.path in net.silent):
                continue
            trend.see(i, row.stats["rms"] / ref[0], ref)

    def message(kind, i, ratio, ref, further, limit):
        row = net.rows[i]
        return (f"Activations {kind} with depth: at layer '{row.path}' their RMS is "
                f"{ratio:.3g} times that of {ref[1]}{further} (threshold {limit:g}). "
                + _depth_remedy(net, kind, i, ref[2]) + ".")

    return _trend_findings(net, trends, "activation", message)


def _trend_findings(net, trends, signal, message):
    """A finding per trend that crossed, worded by `message(kind, row index, first ratio,
    reference, further, threshold)`."""
    found = []
    for trend in trends:
        verdict = trend.verdict()
        if verdict is None:
            continue
        severity, (i, first_ratio, ref), value, limit, further = verdict
        row = net.rows[i]
        found.append(Finding(trend.kind, signal, row.layer.name, value, limit,
                             message(trend.kind, i, first_ratio, ref, further, limit),
                             row.path, severity))
    return found


def _kernel_behind(net, i):
    """`(row index, kernel WeightRow)` of the layer whose kernel sets row `i`'s scale: row
    i's own, or the nearest one before it through layers without weights (a separate ReLU or
    Activation layer, dropout), or None."""
    kernels = {}
    for w in _kernels(net):
        if w.path.rsplit("/", 1)[-1].endswith("kernel"):  # not PReLU's alpha
            kernels.setdefault(id(w.layer), w)
    for _ in range(4):
        if i is None or net.norm[i]:  # a normalization sets the scale itself
            return None
        layer = net.rows[i].layer
        if id(layer) in kernels:
            return i, kernels[id(layer)]
        i = net.rows[i].parent
    return None


def _scale_advice(net, i):
    """`(follows, measured, activation)` for row `i`: whether the kernel that sets its scale
    holds the RMS `acts.remedy` recommends for the activation after it (measured, not read
    off the initializer's config), a parenthesis with that RMS, and that activation."""
    found = _kernel_behind(net, i)
    if found is None:
        return False, "", net.layout.activation[i] or ""
    layer, w = net.rows[found[0]].layer, found[1]
    activation = acts.following_activation_name(layer)
    fans = layer_fans(layer, w.path.rsplit("/", 1)[-1], _shape(w))
    rms, wanted = w.stats["weight_rms"], acts.recommended_rms(activation, fans)
    measured = f" (kernel RMS {rms:.3g}" + (
        f"; that scheme gives {wanted[0]:.3g})" if wanted else ")")
    return acts.follows_remedy(activation, fans, rms), measured, activation


def _dominant_bias(net, i):
    """A sentence when the biases of the kernel behind row `i` outweigh its weighted input
    (a bias of -10 before a ReLU kills every unit whatever the weights), else ""."""
    found = _kernel_behind(net, i)
    if found is None:
        return ""
    row, kernel = net.rows[found[0]], found[1]
    layer = row.layer
    bias = next((w for w in net.weights if w.layer is layer
                 and w.path.rsplit("/", 1)[-1] == "bias"), None)
    if bias is None:
        return ""
    fan_in = layer_fans(layer, kernel.path.rsplit("/", 1)[-1], _shape(kernel))[0]
    weighted = kernel.stats["weight_rms"] * math.sqrt(fan_in) * row.stats["input_rms"]
    if not bias.stats["weight_rms"] > weighted:
        return ""
    return (f"The biases of '{row.path}' (RMS {bias.stats['weight_rms']:.3g}) outweigh its "
            f"weighted input (RMS about {weighted:.3g}): start the biases at zero")


def _depth_remedy(net, kind, i, through_merges):
    """What to change when the signal vanishes or explodes over depth at row `i`."""
    if through_merges and kind == "exploding":
        # Each residual block adds its branch's variance to the stream's.
        return ("The residual stream grows block over block, as an unnormalized residual "
                "network does: start the last layer of each branch at zero (SkipInit, De & "
                "Smith 2020; Fixup, Zhang et al. 2019), scale the branches down, or add "
                "normalization (BatchNormalization, LayerNormalization) to each block")
    bias = _dominant_bias(net, i) if kind == "vanishing" else ""
    if bias:
        return bias
    follows, measured, activation = _scale_advice(net, i)
    if not follows:
        return ("The weights are too small for the depth" if kind == "vanishing" else
                "The weights are too large") + f": {acts.remedy(activation)}{measured}"
    # Variance-preserving weights keep the signal's scale on average only: through a narrow
    # or very deep stack it still drifts at random (Hanin and Rolnick 2018).
    return (f"The weights already scale for {activation or 'linear'} layers{measured}; at "
            "this depth and width the signal still drifts: add normalization "
            "(BatchNormalization, LayerNormalization) or skip connections, or make the network "
            "wider or shallower")


def _layer_gain(net):
    """The first layer that alone multiplies its input's RMS by more than `layer_gain`."""
    if any(f.kind == "exploding" for f in net.once(_forward_scale)):
        return []  # the depth trend already says it, with the layer where it crossed
    for i, row in enumerate(net.rows):
        s, layer = row.stats, row.layer
        if net.skipped(i) or net.norm[i] or net.composite(i) or s["input_rms"] <= 0 or \
                isinstance(layer, acts.MERGES + acts.SCALE_SETTERS) or not _finite_row(row) \
                or net.layout.activation[i] == "softmax":
            continue  # probabilities have no scale to compare with their input's
        gain = s["rms"] / s["input_rms"]
        if gain > net.t.layer_gain and math.isfinite(gain):
            _, measured, name = _scale_advice(net, i)
            return [Finding(
                "exploding", "activation", layer.name, gain, net.t.layer_gain,
                f"Layer '{row.path}' alone multiplies the RMS of its input by {gain:.3g} "
                f"(threshold {net.t.layer_gain:g}): its weights{measured} are too large for "
                f"its fan-in; {acts.remedy(name)}.", row.path, "warning")]
    return []


def _dead(net):
    t = net.t
    # A healthy unit is zero at all of n positions (samples, tokens, pixels) with odds 2^-n.
    rows = [(r.path, r.layer, r.stats["dead_fraction"]) for i, r in enumerate(net.rows)
            if not net.skipped(i) and net.layout.activation[i] in ("relu", "relu6")
            and _positions(net.samples, r.input_shape) >= DEAD_MIN_SAMPLES]
    return _first_of("dead", rows, t.dead_fraction, t.dead_error_fraction,
                     lambda path, layer, value: (
                         f"{100 * value:.0f}% of the units of '{path}' are zero for every "
                         "sample: they receive no gradient. " + _dead_remedy(net, path)))


def _positions(samples, input_shape):
    """Samples times the positions of each (a sequence's tokens, an image's pixels)."""
    if samples is None:
        return math.inf
    inner = [d for d in (input_shape or (None, None))[1:-1] if d]
    return samples * math.prod(inner)


def _dead_remedy(net, path):
    i = next(j for j, row in enumerate(net.rows) if row.path == path)
    bias = _dominant_bias(net, i)
    if bias:
        return bias + "."
    follows, measured, _ = _scale_advice(net, i)
    if not follows:
        return f"Use kit_he with zero biases, a leaky ReLU, or a lower learning rate{measured}."
    # He weights already: units die from the signal's drift over depth, not from the scale.
    return (f"The weights already scale for ReLU{measured}: start the biases at zero, use a "
            "leaky ReLU, add normalization or skip connections, or make the network wider or "
            "shallower (or lower the learning rate, if it "
            "happened in training).")


def _saturated(net):
    t = net.t
    rows = [(r.path, r.layer, r.stats["saturated_fraction"]) for i, r in enumerate(net.rows)
            if not net.skipped(i) and net.layout.activation[i] in acts.BOUNDED]

    def message(path, layer, value):
        name = acts.activation_name(layer)
        return (f"{100 * value:.0f}% of the outputs of '{path}' ({name}) are saturated beyond "
                f"{t.saturation_threshold:g}: their gradient is almost zero. The weights are "
                f"too large for {name}: {acts.remedy(name)}.")

    return _first_of("saturated", rows, t.saturated_fraction, t.saturated_error_fraction,
                     message)


def _first_of(kind, rows, threshold, error_threshold, message):
    """One finding at the first layer over `threshold`, which says what other layers are.

    `rows` are (path, layer, value) of the layers the rule applies to, in order of depth. A
    narrow deep ReLU stack has hundreds of dead layers, flickering around the threshold; one
    finding per layer would bury the first, where the trouble starts. Its severity is an
    error when any layer reaches `error_threshold`.
    """
    over = [(path, layer, value) for path, layer, value in rows if value > threshold]
    if not over:
        return []
    (path, layer, value), rest = over[0], over[1:]
    text = message(path, layer, value)
    if 0 < len(rest) <= 3:
        text += f" Also {kind}: " + ", ".join(f"'{p}' ({100 * v:.0f}%)" for p, _, v in rest) + "."
    elif rest:
        worst = max(rest, key=lambda row: row[2])
        text += (f" Also {kind}: {len(rest)} later layers, through '{rest[-1][0]}' (the most "
                 f"'{worst[0]}', {100 * worst[2]:.0f}%).")
    severity = "error" if any(v >= error_threshold for _, _, v in over) else "warning"
    return [Finding(kind, "activation", layer.name, value, threshold, text, path, severity)]


def _kernels(net):
    """The kernels (weights of rank >= 2 outside normalization layers), as WeightRows."""
    return [net.weights[j] for j in net.layout.kernels]


def _is_kernel(weight_row):
    """A weight of rank >= 2 that multiplies its input (an EinsumDense bias has rank 2 too)."""
    return weight_row.layer is not None and len(_shape(weight_row)) >= 2 and \
        not weight_row.path.rsplit("/", 1)[-1].endswith(("bias", "beta", "gamma"))


def _shape(weight_row):
    return tuple(weight_row.shape)


def _nonfinite_weights(net):
    """The first weight that is not finite: a diverged update, which a ReLU may hide from
    every activation and from the loss (it maps NaN to 0)."""
    for w in net.weights:
        if not math.isfinite(w.stats["weight_norm"]):
            return [Finding(
                "nonfinite", "weight", _owner_name(w.layer, w.path), w.stats["weight_norm"],
                0.0, f"The weight '{w.path}' holds NaN or Inf: an update diverged (a learning "
                "rate too high, or NaN in a training batch that reached the gradient). "
                "Restore the last finite weights, then lower the learning rate, clip the "
                "gradients or clean the data.", _owner_path(w.path))]
    return []


def nonfinite_frozen_weights(model, findings):
    """A finding for the first non-trainable weight that is not finite (a BatchNormalization
    moving statistic that a diverged step reached), unless `findings` already name a
    non-finite weight. The probe runs in training mode, on batch statistics, so no activation
    shows it; inference (`training=False`) reads it and outputs NaN."""
    if any((f.kind, f.signal) == ("nonfinite", "weight") for f in findings):
        return []
    for variable in model.non_trainable_variables:
        if keras.backend.is_float_dtype(variable.dtype) and not bool(
                keras.ops.convert_to_numpy(keras.ops.all(keras.ops.isfinite(variable)))):
            path = _owner_path(variable.path)
            return [Finding(
                "nonfinite", "weight", path.rsplit("/", 1)[-1], math.nan, 0.0,
                f"The non-trainable weight '{variable.path}' holds NaN or Inf: every inference "
                "call (predict, evaluate, training=False) outputs NaN, although training-mode "
                "batch statistics hide it. Reset it (reinitialize(model) sets moving means to 0 "
                "and variances to 1) or restore the last finite weights, then lower the "
                "learning rate or clean the data.", path)]
    return []


def _nonfinite_gradient(net):
    for w in net.weights:
        bad = w.stats["grad_nan_count"] + w.stats["grad_inf_count"]
        if bad:
            return [Finding(
                "nonfinite", "gradient", _owner_name(w.layer, w.path), bad, 0.0,
                f"The gradient of '{w.path}' holds NaN or Inf. Lower the learning rate, clip "
                "gradients, or re-initialize with kit_he / kit_glorot.", _owner_path(w.path))]
    return []


def _backward_scale(net):
    """The backward signal vanishing or exploding relative to its reference, measured."""
    if net.once(_nonfinite_weights) or net.once(_nonfinite_gradient):
        return []  # past a NaN the backward scale means nothing, and that finding says why
    t, refs = net.t, net.backward_references()
    trends = [_Trend("vanishing", True, t.gradient_vanishing_ratio,
                     t.gradient_vanishing_error_ratio),
              _Trend("exploding", False, t.gradient_exploding_ratio,
                     t.gradient_exploding_error_ratio)]
    for i, row in enumerate(net.rows):
        if refs[i] is None:
            continue
        ref, merged = refs[i]
        if ref == i or net.skipped(i) or not _finite_row(row) or \
                row.path in net.silent or not net.rows[ref].stats["grad_rms"] > 0:
            continue
        for trend in trends:
            # Through residual merges the backward signal adds up block over block, by design
            # (ResNet152's grows 130x over its 36 blocks of stage 4, and it trains); an
            # unnormalized residual network that explodes does so forward, and is told there.
            if trend.kind == "exploding" and merged:
                continue
            trend.see(i, row.stats["grad_rms"] / net.rows[ref].stats["grad_rms"], ref)

    def message(kind, i, ratio, ref, further, limit):
        row = net.rows[i]
        advice = (" The first layers will not learn: " + _backward_remedy(net, i, "vanishing")
                  if kind == "vanishing" else " " + _backward_remedy(net, i, "exploding"))
        return (f"The backward signal (the loss gradient with respect to the layer's output) "
                f"at '{row.path}' is {ratio:.3g} times the one at '{net.rows[ref].path}'"
                f"{further} (threshold {limit:g}).{advice}")

    return _trend_findings(net, trends, "gradient", message)


def _backward_remedy(net, i, kind):
    layer = net.rows[i].layer
    has_norm = any(net.norm)
    if kind == "vanishing":
        bias = _dominant_bias(net, i)
        if bias:
            return bias + "."
        follows, measured, activation = _scale_advice(net, i)
        structure = ("add normalization or skip connections" if not has_norm else
                     "add skip connections")
        if follows:  # the scale is right; depth and width make it drift
            return (f"the weights already scale for {activation or 'linear'} layers"
                    f"{measured}: {structure}, or make the network wider or shallower.")
        return f"re-initialize: {acts.remedy(activation)}{measured}, or {structure}."
    too_big = [w.path for w in _kernels(net) if _larger_than_he(w)]
    if too_big:
        return (f"Weights larger than He scaling (first: '{too_big[0]}') amplify it: use "
                "kit_he or kit_glorot, clip gradients, or add normalization.")
    return (f"It grows through '{layer.name}' and the layers after it: clip gradients, "
            + ("start residual branches at zero (SkipInit, Fixup) or add normalization."
               if not has_norm else "or lower the learning rate."))


def _larger_than_he(weight_row):
    """Is a kernel's RMS more than 3 times He's sqrt(2 / fan_in)?"""
    shape = _shape(weight_row)
    fan_in = math.prod(shape[:-1]) if shape else 0
    return fan_in > 0 and weight_row.stats["weight_rms"] > 3 * math.sqrt(2.0 / fan_in)


def _gradient_floor(net):
    """The shallowest kernel on the way to an output whose gradient float32 cannot apply
    (where the backward signal's trend has not said it already)."""
    if any(f.kind == "vanishing" for f in net.once(_backward_scale)):
        return []
    live = {id(r.layer) for r, alive in zip(net.rows, net.live) if alive}
    for w in _kernels(net):
        s = w.stats
        if id(w.layer) not in live or _owner_path(w.path) in net.silent:
            continue
        # A gradient of exactly 0 is a weight the loss does not use (an untied output
        # embedding of a backbone); a vanished signal shows in the backward rule.
        if s["weight_norm"] > 0 and 0 < s["grad_to_weight"] < net.t.gradient_floor:
            return [Finding(
                "vanishing", "gradient", _owner_name(w.layer, w.path), s["grad_to_weight"],
                net.t.gradient_floor,
                f"The gradient of '{w.path}' is {s['grad_to_weight']:.3g} times its weights "
                f"(threshold {net.t.gradient_floor:.3g}, float32's resolution): no learning "
                "rate can move them. The signal has vanished; re-initialize with kit_he (ReLU) "
                "or kit_glorot (tanh), or add normalization.", _owner_path(w.path))]
    return []


def _stuck_at_zero(net):
    """Kernels that are exactly zero and get exactly zero gradient: gradient descent never
    moves them. Two zero kernels in a row (a branch's in and out, attention's value and
    output) each block the other's gradient, a saddle that no step leaves; a kernel zero on
    purpose (Fixup's, a zero classifier) gets a gradient and is not one."""
    # Kernels by name: a token a model uses only sometimes (DINOv2's mask token) starts at
    # zero and gets no gradient from an unmasked batch.
    stuck = [w for w in _kernels(net) if w.stats["weight_norm"] == 0 and
             w.stats["grad_norm"] == 0 and "kernel" in w.path.rsplit("/", 1)[-1]
             and _owner_path(w.path) not in net.silent]
    if not stuck:
        return []
    first = stuck[0]
    more = f" ({len(stuck) - 1} more kernels alike)" if len(stuck) > 1 else ""
    return [Finding(
        "dead", "weight", _owner_name(first.layer, first.path), 0.0, 0.0,
        f"The kernel '{first.path}' is exactly zero and so is its gradient{more}: no update "
        "can move it. Zero kernels in a row block each other's gradient (a saddle training "
        "never leaves). Re-initialize them with a random scheme (kit_he for ReLU, "
        "kit_glorot, or the model's recipe, e.g. reinitialize(model, 'gpt2')); of a residual "
        "branch, start only its last kernel at zero (Fixup, SkipInit).",
        _owner_path(first.path), "error")]


def _rank_collapse(net):
    """Tokens of a sequence that become one vector with depth (Dong et al. 2021)."""
    limit = net.t.rank_collapse_cosine
    seq = [(i, r) for i, r in enumerate(net.rows)
           if r.stats["token_cosine"] >= 0 and not net.skipped(i) and _finite_row(r)]
    # Where the tokens stood before the first sequence layer: its input (a model input of
    # tokens, which a first attention layer may already collapse), or else its output.
    before = seq[0][1].stats["input_token_cosine"] if seq else -1.0
    if not seq or (before if before >= 0 else seq[0][1].stats["token_cosine"]) > limit:
        return []  # the tokens came in alike: nothing collapsed in the network
    for i, row in seq:
        if net.live[i] and row.stats["token_cosine"] > limit:
            cosine = row.stats["token_cosine"]
            # With a residual sum on the way (an Add, or x + f(x) inside a block), the skip
            # connections carry the tokens' differences on and the collapse is no dead end
            # (Dong et al. 2021, Sec. 3): a decoder of 32 T-Fixup blocks at cosine 0.90
            # learns the delayed-copy task to 100% (README). Without one it is.
            skips = any(isinstance(net.rows[j].layer, acts.MERGES) or (
                net.composite(j)
                and not isinstance(net.rows[j].layer, keras.layers.MultiHeadAttention))
                for j in range(i + 1))
            if skips:
                return [Finding(
                    "rank_collapse", "activation", row.layer.name, cosine, limit,
                    f"The tokens at '{row.path}' point nearly the same way (mean cosine "
                    f"similarity {cosine:.3g} between two tokens of a sample, threshold "
                    f"{limit:g}): what the residual branches add, alike for every token, "
                    "outweighs the stream that keeps them apart. The skip connections let "
                    "training separate them, slower: scale the branches' output "
                    "projections down or start the token embeddings larger.", row.path,
                    severity="warning")]
            return [Finding(
                "rank_collapse", "activation", row.layer.name, cosine, limit,
                f"The tokens at '{row.path}' point the same way (mean cosine similarity "
                f"{cosine:.3g} between two tokens of a sample, threshold "
                f"{limit:g}): attention without skip connections averages them into one "
                "vector with depth (rank collapse, Dong et al. 2021). Add skip connections "
                "around each attention and feed-forward block.", row.path)]
    return []


def _entropy_collapse(net):
    """Attention that puts all its weight on one key per query (Zhai et al. 2023)."""
    limit = net.t.entropy_collapse_ratio
    for i, row in enumerate(net.rows):
        s = row.stats
        if s["attention_max_entropy"] <= 0 or not _finite_row(row):
            continue
        ratio = s["attention_entropy"] / s["attention_max_entropy"]
        if ratio < limit:
            return [Finding(
                "entropy_collapse", "attention", row.layer.name, ratio, limit,
                f"The attention at '{row.path}' puts almost all its weight on one key per "
                f"query: its entropy is {ratio:.3g} of the maximum (threshold {limit:g}; "
                "entropy collapse, Zhai et al. 2023). Scale the query/key initialization "
                "down, add QK normalization, or lower the learning rate.", row.path)]
    return []


# The smallest batch the dead rule judges: 2^-8 of a healthy layer's units look dead.
DEAD_MIN_SAMPLES = 8

RULES = (_nonfinite_activations, _nonfinite_weights, _forward_scale, _layer_gain, _dead, _saturated,
         _nonfinite_gradient, _backward_scale, _gradient_floor, _stuck_at_zero, _rank_collapse,
         _entropy_collapse)


def find(result, thresholds, silent=()):
    """The findings of one probe (a `ProbeResult`) under `thresholds`.

    `silent` holds the paths of layers whose kernels start at zero on purpose
    (`zero_started`): their outputs get no vanishing verdict.
    """
    net = Net(result, thresholds, silent)
    return [finding for rule in RULES for finding in net.once(rule)]


def zero_started(result):
    """The kernels that are exactly zero but receive a gradient: started at zero on purpose.

    A zero classifier (Fixup, timm's ViT head) or the last layer of a
    SkipInit branch silences every signal behind it until the first update.
    Returns their `WeightRow`s.
    """
    weights = result.weights
    return [weights[j] for j in layout_of(result).kernels
            if weights[j].stats["weight_norm"] == 0 and weights[j].stats["grad_norm"] > 0]


def _owner_name(layer, weight_path):
    return layer.name if layer is not None else _owner_path(weight_path)


def _owner_path(weight_path):
    """The path of the layer that holds a weight (Keras names a weight `<layer path>/<name>`)."""
    return weight_path.rsplit("/", 1)[0]


class WeightUpdate(typing.NamedTuple):
    """One weight's change between two probes (`callbacks.weight_updates`)."""
    path: str
    layer: str       # the owning layer's name
    ratio: float     # ||W_now - W_before|| / ||W_before|| / steps; NaN where ||W_before|| = 0
    moved: bool      # False: bit for bit the same weight after `steps` steps
    trainable: bool
    kernel: bool     # rank >= 2, no bias: a kernel or an embedding, which the ratio rule judges
    steps: int
    grown: bool = True  # its norm before was past a tenth of LeCun's: the ratio rule applies


def update_findings(updates, thresholds):
    """The `update` findings of one probe: kernels whose steps are too large, and weights
    that did not move at all (a frozen layer, a detached branch, a zero gradient).

    Args:
        updates: `WeightUpdate`s, in the model's weight order.
        thresholds: `Thresholds`.

    Returns:
        At most two `Finding`s of kind `update` and signal `weight`: the largest
        ratio past `update_ratio` of a kernel that has grown past a tenth of
        LeCun's RMS (one growing from a zero start moves by many times its own
        norm in healthy steps), and the first weight that did not move over
        two steps or more (the message counts the others).
    """
    found = []
    large = [u for u in updates if u.kernel and u.grown and u.ratio > thresholds.update_ratio]
    if large:
        worst = max(large, key=lambda u: u.ratio)
        error = worst.ratio > thresholds.update_error_ratio
        others = f" ({len(large) - 1} other kernels too)" if len(large) > 1 else ""
        found.append(Finding(
            "update", "weight", worst.layer, worst.ratio,
            thresholds.update_error_ratio if error else thresholds.update_ratio,
            f"The weight '{worst.path}' moved {worst.ratio:.3g} of its own norm per step over "
            f"the last {worst.steps} steps{others}, where about 1e-3 is healthy: the steps are "
            "too large. Lower the learning rate, or clip the gradients (clipnorm= on the "
            "optimizer).", worst.path, severity="error" if error else "warning"))
    # Over two steps at least: a layer behind a readout that starts at zero gets its first
    # gradient at the second step.
    frozen = [u for u in updates if not u.moved and (u.trainable or u.kernel) and u.steps >= 2]
    if frozen:
        first = frozen[0]
        others = f" ({len(frozen) - 1} other weights too)" if len(frozen) > 1 else ""
        cause = ("its layer is not trainable (trainable=False): if it should learn, set "
                 "trainable=True and compile again" if not first.trainable else
                 "its gradient is zero: a branch cut from the loss (stop_gradient, an output "
                 "not used), or units that never activate")
        found.append(Finding(
            "update", "weight", first.layer, 0.0, 0.0,
            f"The weight '{first.path}' did not change in {first.steps} training steps"
            f"{others}: {cause}.", first.path, severity="warning"))
    return found
