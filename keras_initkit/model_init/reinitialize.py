"""Re-draw the weights of a built model in place, each layer with the scheme its activation needs.

`reinitialize(model, "auto")` reads each layer's activation (its own, or the
activation layer that follows it through normalization, dropout or a residual
Add) and picks the variance-preserving scheme for it. Fans are counted per
layer type here, including the kernel layouts that a shape alone gets wrong:
transposed and depthwise convolutions, EinsumDense and recurrent gate blocks.
"""
import difflib
import math
import random
import re
import warnings

import keras
import numpy as np
from keras import ops

from .. import initializers as inits
from .._compat import flat_layers, inbound_nodes, own_variables
from ..activations import NORMALIZATIONS, following_activation, is_normalization, scheme_for
from ..diagnostics.probe import layer_path
from ..distribution import multi_worker
from ..fans import compute_fans, kernel_axes, second_moment
from ..initializers.base import check_seed
from ..registry import get
from .recipes import RECIPES, apply_recipe
from .report import Rows
from .residual import input_shape_of

L = keras.layers

_GATES = {L.LSTMCell: 4, L.GRUCell: 3, L.SimpleRNNCell: 1}
BIASES = ("zeros", "keep")


# Bounded activations, for the fixed point of their variance map (numpy, on the quadrature grid).
_BOUNDED = {"tanh": np.tanh, "sigmoid": lambda z: 1 / (1 + np.exp(-z))}


def first_layer_scale(activation, scale):
    """The variance scale for a layer fed the model's input, for a bounded activation.

    Hidden layers with `scale` settle where q = scale * E[f(sqrt(q) z)^2] (fan-in
    counted); unit-variance data gives the first layer q = scale instead, and
    the stack drifts from there to the fixed point (tanh with gain 5/3: from
    2.78 to 1.18, post-activation std 0.86x over 30 layers). Starting the
    first layer at q* keeps it level (1.01x). Other activations already start
    there (their gain solves E[f(g z)^2] = 1, or they are homogeneous).
    """
    fn = _BOUNDED.get(activation)
    if fn is None:
        return scale
    q = scale
    for _ in range(200):  # a bounded activation's map is a contraction near its fixed point
        q = scale * second_moment(lambda z: fn(math.sqrt(q) * z))
    return q


def reads_model_input(layer):
    """Whether a layer's input comes straight from the model's Input (a Functional graph)."""
    nodes = inbound_nodes(layer)
    return bool(nodes) and all(
        node.parent_nodes and all(isinstance(p.operation, L.InputLayer) for p in node.parent_nodes)
        for node in nodes)


def closest_recipe(name):
    """The recipe (or "auto") a misspelt `name` means, as "GPT-2" means "gpt2", or None."""
    if not isinstance(name, str):
        return None
    known = {k.replace("_", ""): k for k in RECIPES + ("auto",)}
    key = re.sub(r"[-_ ]", "", name.lower())
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.75)
    return known[key] if key in known else known[close[0]] if close else None


def reinitialize(model, scheme="auto", *, layers=None, seed=None, biases="zeros",
                 orthogonal=True, x=None):
    """Re-draws the weights of a built model in place, layer by layer.

    With `scheme="auto"` each kernel gets the scheme of the activation applied
    to its output (its own, or the activation layer after it):

    | activation | scheme |
    |---|---|
    | relu, relu6 | He normal, var 2 / fan_in (He et al. 2015) |
    | leaky_relu, PReLU (slope a) | var 2 / ((1 + a^2) fan_in) |
    | selu | LeCun normal, var 1 / fan_in (Klambauer et al. 2017) |
    | tanh | Glorot uniform times the tanh gain 5/3, as torch users write it; a layer fed by the model input starts at the fixed point (`first_layer_scale`) |
    | sigmoid, linear, softmax, none | Glorot uniform, var 2 / (fan_in + fan_out) (Glorot & Bengio 2010) |
    | any other (elu, gelu, silu, softplus, a callable) | var g^2 / fan_in, g solving E[f(g z)^2] = 1 |
    | recurrent kernels | orthogonal, per gate block (Saxe et al. 2014) |
    | input kernels of LSTM, GRU, SimpleRNN | Glorot uniform, per gate block |
    | biases | zeros (an LSTM with `unit_forget_bias` gets forget-gate bias 1) |
    | BatchNormalization, LayerNormalization, GroupNormalization | gamma 1, beta 0, moving mean 0 and variance 1 |
    | Embedding | Keras' own default, U(-0.05, 0.05) |

    The "any other" rule keeps a deep network's pre-activation variance level:
    with unit-second-moment inputs, every layer's post-activation second moment
    stays 1 and its pre-activation variance g^2 (`fans.unit_moment_gain`, from
    the activation's moments). `keras_initkit.gain`'s 1 / sqrt(E[f(z)^2])
    would put that fixed point at pre-activation variance 1, which
    unit-variance data misses, and GELU's map is unstable there: 30 GELU
    layers drift 6x instead of 1.5x.

    With `orthogonal=True` (the default) each "auto" kernel of the plain
    `(fan_in..., units)` layout (Dense, Conv, pointwise) is an orthogonal
    matrix scaled to its scheme's variance, as in
    `torch.nn.init.orthogonal_(w, gain)`: orthogonal columns pass the
    signal's norm on without the random spread of an i.i.d. draw (Saxe et al.
    2014; Pennington et al. 2017). The level over depth is the same; the layer-to-layer jitter
    about it shrinks: over 30 Dense(384) layers the post-activation std
    drifts 1.003x (tanh), 1.004x (SELU), 1.33x (ReLU) and 1.41x (GELU),
    against 1.009x, 1.026x, 1.39x and 1.55x with i.i.d. draws
    (benchmarks/README.md). `orthogonal=False` keeps the schemes' own
    distributions. Fans follow the layer: a transposed convolution's kernel is
    `(*k, out, in)`, a depthwise kernel sees one input channel per output
    (fan_in = kernel area), an EinsumDense kernel's fans come from its
    equation, and each LSTM or GRU gate block is drawn on its own. A layer
    whose class says "norm" and that normalizes (keras-hub's `LlamaLayerNorm`)
    is reset as Keras' own normalizations are. Weights of other layers (a
    PReLU's slope, a position embedding, a class token, LayerScale, custom
    layers) and every weight of a frozen (`trainable=False`) layer are kept,
    and listed with the scheme "keep".

    A whole-model recipe (`"gpt2"`, `"bert"`, `"vit"`, `"fixup"`,
    `"skipinit"`, `"t_fixup"`, `"deepnorm"`) draws each weight by the role it
    plays: residual branches (an `Add` layer, or `x + f(x)` inside a
    keras-hub block), attention projections, embeddings and the readout are
    found in the model's traced graph (`keras_initkit.model_init.residual`);
    `keras_initkit.model_init.recipes` documents each rule, its paper and the
    reference it was checked against, and `audit(model, recipe)` measures a
    model against it.

    Args:
        model: A built `keras.Model`: Sequential, Functional, nested or subclassed.
        scheme: `"auto"`, a recipe name, an initializer alias such as
            `"kit_he"`, or an initializer instance, used for every kernel.
        layers: Optional list of layer names or paths (or layers) to re-draw;
            the others are left as they are.
        seed: None, or a non-negative integer for a reproducible result.
        biases: `"zeros"`, `"keep"` (leave them), or an initializer for them.
        orthogonal: With `"auto"`, draw plain-layout kernels as scaled
            orthogonal matrices (default) instead of the schemes' own i.i.d.
            distributions.
        x: With a recipe and a subclassed model (no symbolic inputs), a
            sample input to trace the model with.

    Returns:
        A `Rows` summary, one row per weight: `layer`, `weight`, `scheme`,
        `fan_in`, `fan_out`, `gain`; with a recipe `layer`, `weight`,
        `scheme`, `role` (`residual_out`, `embedding`, `readout`, ...) and
        `std`; `.table()` prints it.

    Raises:
        TypeError: `model` is not a Keras model, or `scheme` is not an initializer.
        ValueError: the model is not built, a name in `layers` is unknown, or
            `seed`, `biases` or `orthogonal` is not allowed.

    Example:
    >>> model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation="relu"),
    ...                           keras.layers.Dense(10, activation="softmax")])
    >>> print(keras_initkit.reinitialize(model, seed=0).table())
    """
    check_model(model)
    seed = check_seed(seed)
    if seed is None and multi_worker(model):
        warnings.warn(
            f"reinitialize: model {model.name!r} trains on several workers and seed=None: each "
            "worker draws its own weights (alike only if every process seeded its random "
            "generators alike), and workers with different weights train different models. "
            "Pass the same integer seed= on every worker.", stacklevel=2)
    if not isinstance(orthogonal, bool):
        raise TypeError(f"`orthogonal` must be True or False; received orthogonal={orthogonal!r}.")
    if isinstance(scheme, str) and scheme in RECIPES:
        if layers is not None or not (isinstance(biases, str) and biases == "zeros"):
            raise ValueError(
                f"A recipe draws every weight of the model, biases at zero: `layers` and "
                f"`biases` apply to per-layer schemes; received scheme={scheme!r} with "
                f"layers={layers!r}, biases={biases!r}.")
        rows = Rows(("layer", "weight", "scheme", "role", "std"))
        apply_recipe(model, scheme, _Draws(seed), rows, x=x)
        return rows
    auto = isinstance(scheme, str) and scheme == "auto"
    try:
        chosen = None if auto else _initializer(
            "scheme", scheme, allowed=f"'auto', a recipe ({', '.join(RECIPES)}), an alias or "
                                      "an initializer")
    except ValueError as error:
        close = closest_recipe(scheme)
        if close is None:
            raise
        raise ValueError(f"{error} Did you mean {close!r}?") from None
    label = scheme if isinstance(scheme, str) else type(scheme).__name__
    if isinstance(biases, str) and biases in BIASES:
        bias_init = biases
    else:
        bias_init = _initializer("biases", biases, allowed=f"{BIASES} or an initializer")
    selected = _select(model, layers)
    draw = _Draws(seed)
    rows = Rows(("layer", "weight", "scheme", "fan_in", "fan_out", "gain"))
    for layer in selected:
        for variable, used, fans, g in _redraw(layer, chosen, label, bias_init, draw,
                                               orthogonal):
            rows.append(layer=layer_path(layer), weight=variable.path.rsplit("/", 1)[-1],
                        scheme=used, fan_in=fans[0], fan_out=fans[1], gain=g)
    return rows


def check_model(model):
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model; received {type(model).__name__}.")
    if not model.built or not model.weights:
        raise ValueError(f"Model {model.name!r} is not built (it has no weights yet); call it "
                         "on a batch or build it with an input shape first.")


def _initializer(name, value, allowed="'auto', an alias or an initializer"):
    try:
        init = get(value)
    except (TypeError, ValueError) as error:
        raise type(error)(f"`{name}`: {error} Allowed: {allowed}.") from None
    if init is None or not callable(init):
        raise TypeError(f"`{name}` must be {allowed}; received {name}={value!r}.")
    return init


def _leaves(model):
    return [layer for layer in flat_layers(model)
            if not isinstance(layer, keras.Model) and own_variables(layer)]


def _select(model, names):
    leaves = _leaves(model)
    if names is None:
        return leaves
    if isinstance(names, (str, L.Layer)):
        names = [names]
    if not isinstance(names, (list, tuple)) or not all(
            isinstance(n, (str, L.Layer)) for n in names):
        raise TypeError(f"`layers` must be a layer name or path, a layer, or a list of them; "
                        f"received layers={names!r}.")
    every = [layer for layer in flat_layers(model)]
    by_name = {}
    for layer in every:
        by_name[layer.name] = by_name[layer_path(layer)] = layer
    chosen = []
    for name in names:
        layer = name if isinstance(name, L.Layer) else by_name.get(name)
        if layer is None:
            raise ValueError(f"`layers` names {name!r}, which is not a layer of "
                             f"{model.name!r}; its layers: {', '.join(list(by_name)[:12])} ...")
        # A chosen nested model or RNN stands for the layers inside it.
        inner = [sub for sub in flat_layers(layer, include_self=True)
                 if sub in leaves]
        chosen += [sub for sub in inner if sub not in chosen]
    return chosen


class _Draws:
    """One independent seed per drawn block, from the user's seed (or Python's `random`,
    which `keras.utils.set_random_seed` seeds)."""

    def __init__(self, seed):
        self.seed, self.count = seed, 0

    def next(self):
        self.count += 1
        if self.seed is None:
            return random.randint(1, 2**31 - 2)
        return int(np.random.SeedSequence([self.seed, self.count]).generate_state(1)[0]) % (
            2**31 - 2) + 1

    def fresh(self, init):
        """`init` with a new seed, so two weights never get the same draw."""
        config = init.get_config() if hasattr(init, "get_config") else None
        if config is not None and "seed" in config:
            return type(init).from_config({**config, "seed": self.next()})
        return init


def auto_initializer(layer, name, shape, orthogonal=False, activation=None):
    """`(initializer, label, gain)` that "auto" draws a kernel `name` of `layer` with; with
    `orthogonal=False` the initializer is a `VarianceScaling` (its `variance(shape)` is the
    variance of each entry)."""
    axes = kernel_axes(layer, name, shape)
    # A separable layer's depthwise step is linear; its activation follows the pointwise step.
    separable = isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D))
    if separable and name == "depthwise_kernel":
        act = ("", {})
    else:
        act = activation or following_activation(layer)
    label, scale, mode, distribution, g = scheme_for(*act)
    if reads_model_input(layer) and act[0] in _BOUNDED:
        first = first_layer_scale(act[0], scale)
        label += f", first layer scale {first:.3g}"
        scale, g = first, math.sqrt(first)
    init = inits.VarianceScaling(scale=scale, mode=mode, distribution=distribution,
                                 input_axes=axes and axes[0], output_axes=axes and axes[1])
    if orthogonal and axes is None:
        # Mean square of an orthonormal (rows, cols) matrix: 1 / max(rows, cols).
        size = max(math.prod(shape[:-1]), shape[-1])
        init = inits.Orthogonal(gain=math.sqrt(init.variance(shape) * size))
        label += ", orthogonal draw"
    return init, label, g


def _redraw(layer, chosen, chosen_label, bias_init, draw, orthogonal):
    """Re-draws a layer's own weights; yields `(variable, scheme, (fan_in, fan_out), gain)`,
    scheme "keep" for a weight left as it is."""
    if not layer.trainable:  # a frozen layer (a pretrained backbone) stays as it is
        for variable in own_variables(layer):
            yield variable, "keep (frozen layer)", (0, 0), 1.0
        return
    # Keras' normalizations by class; keras-hub's RMS norms and a user's by what they do.
    if isinstance(layer, NORMALIZATIONS) or is_normalization(layer, input_shape_of(layer)):
        for variable in own_variables(layer):
            value = 1.0 if re.search(r"(gamma|variance|scale)$", variable.path) else 0.0
            variable.assign(ops.full(variable.shape, value, variable.dtype))
            yield variable, "ones" if value else "zeros", (0, 0), 1.0
        return
    gates = next((n for cls, n in _GATES.items() if isinstance(layer, cls)), None)
    activation = following_activation(layer)
    for variable in own_variables(layer):
        name = variable.path.rsplit("/", 1)[-1]
        shape = tuple(variable.shape)
        if name == "bias":
            if bias_init == "keep":
                yield variable, "keep", (0, 0), 1.0
                continue
            value = ops.zeros(shape, variable.dtype) if bias_init == "zeros" else \
                draw.fresh(bias_init)(shape, dtype=variable.dtype)
            if gates == 4 and getattr(layer, "unit_forget_bias", False):  # LSTM: i, f, c, o
                units = shape[-1] // 4
                value = ops.concatenate([value[..., :units], ops.ones_like(value[..., :units]),
                                         value[..., 2 * units:]], axis=-1)
                label = "forget gate 1, others "
            else:
                label = ""
            variable.assign(value)
            label += "zeros" if bias_init == "zeros" else type(bias_init).__name__
            yield variable, label, (0, 0), 1.0
        elif gates is not None and name in ("kernel", "recurrent_kernel"):
            recurrent = name == "recurrent_kernel"
            init = chosen or (inits.Orthogonal() if recurrent else inits.GlorotUniform())
            label = chosen_label if chosen else ("kit_orthogonal" if recurrent
                                                   else "kit_glorot_uniform")
            block = (shape[0], shape[1] // gates)  # each gate on its own
            variable.assign(ops.concatenate(
                [draw.fresh(init)(block, dtype=variable.dtype) for _ in range(gates)], axis=1))
            yield variable, label + f" (per gate, x{gates})", compute_fans(block), 1.0
        elif isinstance(layer, L.Embedding):
            init = chosen or inits.RandomUniform(-0.05, 0.05)
            variable.assign(draw.fresh(init)(shape, dtype=variable.dtype))
            yield variable, chosen_label if chosen else "U(-0.05, 0.05)", \
                compute_fans(shape), 1.0
        elif "kernel" in name and len(shape) >= 2:
            axes = kernel_axes(layer, name, shape)
            fans = compute_fans(shape, *(axes or (None, None)))
            if chosen is not None:
                init, label, g = chosen, chosen_label, 1.0
                config = chosen.get_config() if hasattr(chosen, "get_config") else {}
                if axes is not None and config.get("input_axes", 0) is None:
                    # A kit_ variance scaling takes the layer's layout, as "auto" does.
                    init = type(chosen).from_config(
                        {**config, "input_axes": axes[0], "output_axes": axes[1]})
                elif axes is not None:  # it draws on the plain shape: report those fans
                    fans = compute_fans(shape)
            else:
                init, label, g = auto_initializer(layer, name, shape, orthogonal, activation)
            variable.assign(draw.fresh(init)(shape, dtype=variable.dtype))
            yield variable, label, fans, g
        else:  # a PReLU slope, a position embedding, a custom layer's state: listed, kept
            yield variable, "keep", (0, 0), 1.0

