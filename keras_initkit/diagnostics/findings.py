"""Rules that turn probe statistics into findings: what is wrong, where, and what to change.

Every threshold is an argument of `Thresholds`, and each default names its source.
"""
import dataclasses
import math

import keras

from .stats import BOUNDED

KINDS = ("vanishing", "exploding", "dead", "saturated", "nonfinite")
SIGNALS = ("activation", "gradient")

# Layers that set the scale of what follows, so the depth trend starts again after them.
_RESETS = (keras.layers.BatchNormalization, keras.layers.LayerNormalization,
           keras.layers.GroupNormalization, keras.layers.UnitNormalization,
           keras.layers.Normalization, keras.layers.Rescaling, keras.layers.Embedding)


# Layers that combine several inputs: the probe sees the first, so their gain is not measured.
_MERGES = (keras.layers.Add, keras.layers.Average, keras.layers.Concatenate, keras.layers.Dot,
           keras.layers.Maximum, keras.layers.Minimum, keras.layers.Multiply,
           keras.layers.Subtract)


@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem, at the first layer (in order of depth) where it shows.

    A probe gives at most one finding per kind and signal; the message says
    how many later layers are dead or saturated too.

    Attributes:
        kind: One of `vanishing`, `exploding`, `dead`, `saturated`, `nonfinite`.
        signal: `activation` or `gradient`.
        layer: The layer's name (`path` is its unique path).
        value: The measured number the rule compared.
        threshold: The threshold it crossed.
        message: A sentence that names the layer and the likely remedy.
        path: The layer's unique path in the model, as in `report.layers` and
            the TensorBoard tags (two nested blocks may hold layers of one name).
    """

    kind: str
    signal: str
    layer: str
    value: float
    threshold: float
    message: str
    path: str = ""

    def to_dict(self):
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """The thresholds of the rules, with their sources.

    Args:
        vanishing_ratio: Activation RMS, relative to the scale where the trend
            started (the input, or the last normalization layer), below which
            the signal has vanished. Default 1e-2: on a 30-layer, 512-wide
            MLP, Glorot/ReLU falls to 5e-3 of its input scale by layer 15 and
            2e-5 by layer 30, while He/ReLU stays at 0.7-1.1 and LeCun/tanh at
            0.13 or above (measured, on a N(0, 1) batch of 256); 1e-2
            separates them.
        exploding_ratio: The same ratio above which the signal has exploded.
            Default 1e2: unit-variance normal weights at width 512 grow the
            signal 16x a layer (RMS, after ReLU) and overflow float32 by layer
            15, while He/ReLU stays within 0.7-1.1 over 30 layers; 1e2
            is crossed at the second bad layer and never by the healthy nets.
        layer_gain: One layer's own gain (its output RMS over its input RMS)
            above which its weights are too large, even where the depth
            trend has not yet crossed `exploding_ratio`. Default 10: N(0, 1)
            weights give a gain of about sqrt(fan_in) (32 for fan_in 1024;
            23 after a ReLU, which keeps 1/sqrt(2) of the RMS), while He, Glorot and LeCun keep each layer within
            0.5-2 (Glorot & Bengio 2010 keep the variance per layer near 1);
            10 is a 5-fold margin over the healthy ones.
        dead_fraction: Fraction of ReLU-family units that are zero for every
            sample in the batch, above which a layer is reported dead.
            Default 0.4, CS231n's "as much as 40% of your network can be dead".
        saturated_fraction: Fraction of a bounded activation's outputs beyond
            `saturation_threshold`, above which a layer is saturated. Default
            0.5, a majority of the units, as in the saturated top layers that
            Glorot & Bengio 2010 (Sec. 3.1) observed; LeCun/tanh layers here
            stay under 0.04, and N(0, 1)/tanh layers above 0.9.
        saturation_threshold: |tanh| (or 2*sigmoid - 1) above which an output
            is saturated. Default 0.97, Karpathy's rule (CS231n).
        gradient_vanishing_ratio: Gradient norm of the first kernel over that
            of the last, below which gradients vanish. Default 1e-3, AUTOTRAINER
            (Zhang et al., ICSE 2021).
        gradient_exploding_ratio: The same ratio above which gradients explode.
            Default 70, AUTOTRAINER.
        gradient_floor: A kernel's gradient norm over its weight norm below
            which its gradient has vanished outright: even a learning rate of 1
            would move the weights by less than float32 resolves. Default
            2^-24, float32's unit roundoff. Healthy networks sit at 1e-5 and
            above (ResNet50 at initialization: 1e-5 at its smallest). This
            catches what the depth ratio cannot: in a stack whose signal
            vanishes both ways (small weights, tanh), every kernel's gradient
            is equally tiny (1e-29), so their ratio is about 1.
    """

    vanishing_ratio: float = 1e-2
    exploding_ratio: float = 1e2
    layer_gain: float = 10.0
    dead_fraction: float = 0.4
    saturated_fraction: float = 0.5
    saturation_threshold: float = 0.97
    gradient_vanishing_ratio: float = 1e-3
    gradient_exploding_ratio: float = 70.0
    gradient_floor: float = 2.0 ** -24

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and value > 0):
                raise ValueError(f"`{field.name}` must be a positive number; received "
                                 f"{field.name}={value!r}.")
        for name in ("dead_fraction", "saturated_fraction", "saturation_threshold"):
            if getattr(self, name) >= 1:
                raise ValueError(f"`{name}` must be in (0, 1); received {name}={getattr(self, name)}.")
        if self.layer_gain <= 1:
            raise ValueError(f"`layer_gain` must be > 1; received layer_gain={self.layer_gain}.")
        if self.vanishing_ratio >= 1 or self.exploding_ratio <= 1:
            raise ValueError("`vanishing_ratio` must be < 1 and `exploding_ratio` > 1; received "
                             f"{self.vanishing_ratio} and {self.exploding_ratio}.")


def activation_name(layer):
    """The activation a layer applies, as a lower-case name ('' for none known)."""
    fn = getattr(layer, "activation", None)
    if fn is not None:
        return getattr(fn, "__name__", type(fn).__name__).lower()
    names = {"ReLU": "relu", "LeakyReLU": "leaky_relu", "PReLU": "prelu", "ELU": "elu",
             "Softmax": "softmax"}
    return names.get(type(layer).__name__, "")


def _remedy(activation):
    if activation in ("relu", "leaky_relu", "prelu", "relu6"):
        return "use kit_he for ReLU layers (He et al. 2015)"
    if activation == "selu":
        return "use kit_lecun_normal for SELU layers (Klambauer et al. 2017)"
    if activation in ("tanh", "sigmoid", "softsign", "hard_sigmoid"):
        return (f"use kit_glorot or kit_lecun_normal for {activation} layers, or "
                "kit_orthogonal")
    if activation in ("", "linear"):
        return "use kit_lecun_normal (or kit_glorot) for linear layers, or add normalization"
    return (f"use kit_variance_scaling with activation='{activation}' (fan-in scaling with "
            "its gain)")


# The variance scalings `_remedy` recommends, as (scale, mode) of a Keras VarianceScaling:
# He for ReLU, LeCun for SELU, Glorot or LeCun for bounded and linear layers.
_HE, _LECUN, _GLOROT = (2.0, "fan_in"), (1.0, "fan_in"), (1.0, "fan_avg")
_RECOMMENDED = {"relu": (_HE,), "leaky_relu": (_HE,), "prelu": (_HE,), "relu6": (_HE,),
                "selu": (_LECUN,), **{name: (_GLOROT, _LECUN) for name in (
                    "tanh", "sigmoid", "softsign", "hard_sigmoid", "", "linear")}}


def _follows_remedy(layer, activation):
    """Does the layer's kernel initializer already scale as `_remedy` would have it?"""
    init = getattr(layer, "kernel_initializer", None)
    scale, mode = getattr(init, "scale", None), getattr(init, "mode", None)
    return isinstance(scale, (int, float)) and any(
        math.isclose(scale, wanted) and mode == wanted_mode
        for wanted, wanted_mode in _RECOMMENDED.get(activation, ()))


def _depth_remedy(kind, layer, activation):
    """What to change when the signal vanishes or explodes over depth at `layer`."""
    if not _follows_remedy(layer, activation):
        return ("The weights are too small for the depth: " if kind == "vanishing" else
                "The weights are too large: ") + _remedy(activation)
    # Variance-preserving weights keep the signal's scale on average only: through a narrow
    # or very deep stack it still drifts at random (Hanin and Rolnick 2018).
    return (f"The weights already scale for {activation or 'linear'} layers "
            f"({type(layer.kernel_initializer).__name__}); at this depth and width the signal "
            "still drifts: add normalization (BatchNormalization, LayerNormalization) or skip "
            "connections, or make the network wider or shallower")


def _dead_remedy(layer):
    if not _follows_remedy(layer, "relu"):
        return "Use kit_he with zero biases, a leaky ReLU, or a lower learning rate."
    # He weights already: units die from the signal's drift over depth, not from the scale.
    return (f"The weights already scale for ReLU ({type(layer.kernel_initializer).__name__}): "
            "start the biases at zero, use a leaky ReLU, add normalization or skip connections, "
            "or make the network wider or shallower (or lower the learning rate, if it "
            "happened in training).")


def _scale_over_depth(activations):
    """(index, scale, where the trend started, the layer's own gain) for each output.

    The scale is the product of the layers' gains (output RMS over input RMS)
    along the path of layers that fed it, back to a model input or to the last
    layer that sets the scale (normalization, rescaling, embedding). In a chain
    it is the output RMS over the input RMS; branches and several inputs each
    keep their own reference.
    """
    scales, starts = [], []
    for i, (path, layer, s) in enumerate(activations):
        parent = s.get("parent")
        if isinstance(layer, _RESETS):
            scale, start, gain = 1.0, f"'{path}'", 1.0
        else:
            base, start = (scales[parent], starts[parent]) if parent is not None else \
                (1.0, "the input")
            # RMS, not std: a zero-mean kernel scales E[x^2], so a large-mean input (pixels,
            # a shifted Rescaling) would otherwise show a false gain.
            measured = s["input_rms"] > 0 and not isinstance(layer, _MERGES)
            gain = s["rms"] / s["input_rms"] if measured else 1.0
            scale = base * gain if math.isfinite(s["std"]) else math.inf
        scales.append(scale)
        starts.append(start)
        yield i, scale, start, gain


def _on_the_way_to_an_output(activations):
    """Per row: does its output reach a model output through recorded layers?

    The depth trend is judged only there. A residual branch that ends in a
    merge's second input or a raw op (`inputs + x`) is scaled down on purpose
    in LayerScale, ReZero and Fixup networks; its own scale is not the signal's.
    When no row is known to be an output (the model casts or rebuilds its
    outputs), every row counts.
    """
    live = [bool(s.get("is_output")) for _, _, s in activations]
    if not any(live):
        return [True] * len(activations)
    for i in reversed(range(len(activations))):
        parent = activations[i][2].get("parent")
        if live[i] and parent is not None:
            live[parent] = True
    return live


def find(result, thresholds):
    """The findings of one probe (a `ProbeResult`) under `thresholds`."""
    t = thresholds
    found = []
    rows = [(path, layer, s) for path, layer, s in result.activations
            if not isinstance(layer, keras.Model)]  # a nested model repeats its last layer

    for path, layer, s in rows:  # the first layer whose output (or input) is not finite
        bad = s["nan_count"] + s["inf_count"]
        if s["input_nonfinite_count"] and not bad:  # e.g. ReLU turned the NaN into 0
            found.append(Finding(
                "nonfinite", "activation", layer.name, s["input_nonfinite_count"], 0.0,
                f"The input of layer '{path}' holds {int(s['input_nonfinite_count'])} NaN or "
                "Inf values, which its activation hides: clean the data (look for NaN, "
                "division by zero or log of 0 in preprocessing).", path))
            break
        if bad:
            found.append(Finding(
                "nonfinite", "activation", layer.name, bad, 0.0,
                f"Layer '{path}' is the first to output NaN or Inf ({int(bad)} values). "
                + ("Its input already holds NaN or Inf: clean the data. "
                   if s["input_nonfinite_count"] else
                   f"Lower the learning rate, or {_remedy(activation_name(layer))}."), path))
            break

    live = _on_the_way_to_an_output(result.activations)
    crossed = {"vanishing": None, "exploding": None}
    too_large = None  # the first layer that alone multiplies the signal's std by > layer_gain
    for i, ratio, ref_path, gain in _scale_over_depth(result.activations):
        path, layer, s = result.activations[i]
        name = activation_name(layer)
        if isinstance(layer, keras.Model) or name == "softmax":
            continue  # a nested model repeats its last layer; probabilities have no scale
        if gain > t.layer_gain and too_large is None and math.isfinite(gain):
            too_large = (path, layer, gain, name)
        if not live[i] or s["nan_count"] + s["inf_count"] + s["input_nonfinite_count"]:
            continue  # past a NaN or Inf the finite entries tell nothing of the scale
        if ratio < t.vanishing_ratio and crossed["vanishing"] is None:
            crossed["vanishing"] = (path, layer, ratio, name, ref_path)
        if ratio > t.exploding_ratio and crossed["exploding"] is None:
            crossed["exploding"] = (path, layer, ratio, name, ref_path)
    for kind, hit in crossed.items():
        if hit is None:
            continue
        path, layer, ratio, name, ref_path = hit
        limit = t.vanishing_ratio if kind == "vanishing" else t.exploding_ratio
        found.append(Finding(
            kind, "activation", layer.name, ratio, limit,
            f"Activations {kind} with depth: at layer '{path}' their RMS is {ratio:.3g} times "
            f"that of {ref_path} (threshold {limit:g}). " + _depth_remedy(kind, layer, name)
            + ".", path))
    if too_large is not None and crossed["exploding"] is None:
        path, layer, gain, name = too_large
        found.append(Finding(
            "exploding", "activation", layer.name, gain, t.layer_gain,
            f"Layer '{path}' alone multiplies the RMS of its input by {gain:.3g} (threshold "
            f"{t.layer_gain:g}): its weights are too large for its fan-in; {_remedy(name)}.",
            path))

    relus = [(path, layer, s["dead_fraction"]) for path, layer, s in rows
             if activation_name(layer) in ("relu", "relu6")]
    found += _first_of("dead", relus, t.dead_fraction, lambda path, layer, value: (
        f"{100 * value:.0f}% of the units of '{path}' are zero for every sample: they receive "
        "no gradient. " + _dead_remedy(layer)))
    bounded = [(path, layer, s["saturated_fraction"]) for path, layer, s in rows
               if activation_name(layer) in BOUNDED]

    def saturated(path, layer, value):
        name = activation_name(layer)
        return (f"{100 * value:.0f}% of the outputs of '{path}' ({name}) are saturated beyond "
                f"{t.saturation_threshold:g}: their gradient is almost zero. The weights are "
                f"too large for {name}: {_remedy(name)}.")

    found += _first_of("saturated", bounded, t.saturated_fraction, saturated)

    found += _gradient_findings(result, t)
    return found


def _first_of(kind, rows, threshold, message):
    """One finding at the first layer over `threshold`, which says what other layers are.

    `rows` are (path, layer, value) of the layers the rule applies to, in order of depth. A
    narrow deep ReLU stack has hundreds of dead layers, flickering around the threshold; one
    finding per layer would bury the first, where the trouble starts.
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
    return [Finding(kind, "activation", layer.name, value, threshold, text, path)]


def _gradient_findings(result, t):
    kernels = [(path, layer, s) for path, layer, s in result.weights
               if not path.endswith(("bias", "gamma", "beta"))]
    for path, layer, s in kernels:
        if s["grad_nan_count"] + s["grad_inf_count"]:
            return [Finding(
                "nonfinite", "gradient", _owner_name(layer, path),
                s["grad_nan_count"] + s["grad_inf_count"],
                0.0, f"The gradient of '{path}' holds NaN or Inf. Lower the learning rate, clip "
                "gradients, or re-initialize with kit_he / kit_glorot.", _owner_path(path))]
    if len(kernels) < 2:
        return []
    (first_path, first_layer, first), (last_path, _, last) = kernels[0], kernels[-1]
    if last["grad_norm"] == 0 and first["grad_norm"] == 0:
        ratio = 0.0
    elif last["grad_norm"] == 0:
        ratio = math.inf
    else:
        ratio = first["grad_norm"] / last["grad_norm"]
    layer = _owner_name(first_layer, first_path)
    if ratio < t.gradient_vanishing_ratio:
        kind, limit, advice = ("vanishing", t.gradient_vanishing_ratio,
                               ": the first layers will not learn. Re-initialize with kit_he "
                               "(ReLU) or kit_glorot (tanh), or add normalization or skip "
                               "connections.")
    elif ratio > t.gradient_exploding_ratio:
        kind, limit, advice = ("exploding", t.gradient_exploding_ratio,
                               ". Use smaller initial weights (kit_he or kit_glorot instead of "
                               "unit variance), clip gradients, or add normalization.")
    else:
        return _below_the_floor(kernels, t)
    return [Finding(kind, "gradient", layer, ratio, limit,
                    f"The gradient of '{first_path}' is {ratio:.3g} times the one at "
                    f"'{last_path}' (threshold {limit:g}){advice}", _owner_path(first_path))]


def _below_the_floor(kernels, t):
    """The shallowest kernel whose gradient is below float32's reach of its weights."""
    for path, layer, s in kernels:
        if s["weight_norm"] > 0 and s["grad_to_weight"] < t.gradient_floor:
            name = _owner_name(layer, path)
            return [Finding(
                "vanishing", "gradient", name, s["grad_to_weight"], t.gradient_floor,
                f"The gradient of '{path}' is {s['grad_to_weight']:.3g} times its weights "
                f"(threshold {t.gradient_floor:.3g}, float32's resolution): no learning rate "
                "can move them. The signal has vanished; re-initialize with kit_he (ReLU) "
                "or kit_glorot (tanh), or add normalization.", _owner_path(path))]
    return []


def _owner_name(layer, weight_path):
    return layer.name if layer is not None else _owner_path(weight_path)


def _owner_path(weight_path):
    """The path of the layer that holds a weight (Keras names a weight `<layer path>/<name>`)."""
    return weight_path.rsplit("/", 1)[0]
