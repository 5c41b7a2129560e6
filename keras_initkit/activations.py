"""What a layer does to the signal, and what follows from it: the one table of it.

Which activation a layer applies (its own, or the activation layer after
it), which layers set the scale of what follows (normalization), which
variance-preserving scheme suits an activation, and the remedy a finding
gives. `diagnostics` and `model_init` both read it, so the scheme that
`reinitialize(model, "auto")` draws and the scheme a finding recommends
cannot drift apart.
"""
import math
import weakref

import keras
import numpy as np
from keras import ops

from ._compat import outbound_nodes
from .fans import GAIN_NAMES, gain, unit_moment_gain

L = keras.layers

RELU_FAMILY = ("relu", "relu6", "leaky_relu", "prelu")
GLOROT_FAMILY = ("tanh", "sigmoid", "linear", "softmax", "hard_sigmoid", "softsign", "")
ACTIVATION_LAYERS = (L.Activation, L.ReLU, L.LeakyReLU, L.PReLU, L.ELU, L.Softmax)

# Bounded activations, mapped onto [-1, 1] so that one saturation threshold serves them all.
BOUNDED = {
    "tanh": lambda y: y,
    "softsign": lambda y: y,
    "sigmoid": lambda y: 2.0 * y - 1.0,
    "hard_sigmoid": lambda y: 2.0 * y - 1.0,
}

# Keras' layers that rescale their input to a fixed scale (unit RMS or unit variance, times a
# learned gain): the scale of their input does not reach their output.
NORMALIZATIONS = (L.BatchNormalization, L.LayerNormalization, L.GroupNormalization,
                  L.UnitNormalization, L.RMSNormalization)
# Layers that set the scale of what follows without being scale-invariant: fixed data
# normalization, rescaling of pixels, and embeddings (their output is their weights).
SCALE_SETTERS = (L.Normalization, L.Rescaling, L.Embedding)
# Layers that combine several inputs.
MERGES = (L.Add, L.Average, L.Concatenate, L.Dot, L.Maximum, L.Minimum, L.Multiply,
          L.Subtract)
# Layers that pass the scale of their input on, so the activation after them decides the scheme.
SEE_THROUGH = NORMALIZATIONS + (L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D,
                                L.SpatialDropout3D, L.GaussianNoise, L.Add, L.Reshape, L.Flatten,
                                L.ZeroPadding1D, L.ZeroPadding2D)


def activation_of(layer):
    """`(name, params)` of the activation a layer applies itself ('' for none or linear).

    Args:
        layer: A Keras layer.

    Returns:
        A lower-case name (`"relu"`, `"leaky_relu"` with `{"negative_slope": a}`,
        `"tanh"`, ...), `""` for none or linear, or the callable itself when
        only the callable knows its shape.
    """
    if isinstance(layer, L.ReLU):
        slope = float(getattr(layer, "negative_slope", 0.0) or 0.0)
        return ("leaky_relu", {"negative_slope": slope}) if slope else ("relu", {})
    if isinstance(layer, L.LeakyReLU):
        return "leaky_relu", {"negative_slope": float(layer.negative_slope)}
    if isinstance(layer, L.PReLU):  # its learned slope, at its current value
        slope = float(np.mean(ops.convert_to_numpy(layer.alpha)))
        return ("leaky_relu", {"negative_slope": slope}) if slope else ("relu", {})
    if isinstance(layer, L.ELU):
        return "elu", {"alpha": float(getattr(layer, "alpha", 1.0))}
    if isinstance(layer, L.Softmax):
        return "softmax", {}
    fn = getattr(layer, "activation", None)
    if fn is None or not callable(fn):
        return "", {}
    name = getattr(fn, "__name__", "").lower()
    if name == "linear":
        return "", {}
    if name == "leaky_relu":  # keras.activations.leaky_relu's default slope
        return "leaky_relu", {"negative_slope": 0.2}
    if name in GAIN_NAMES or name in RELU_FAMILY or name in GLOROT_FAMILY or name in BOUNDED:
        return name, {}
    return fn, {}  # a user's callable, or a name only its callable knows


def activation_name(layer):
    """The activation a layer applies itself, as a lower-case name ('' for none or linear)."""
    name, _ = activation_of(layer) if not isinstance(layer, L.PReLU) else ("prelu", {})
    return _lower_name(name)


def following_activation_name(layer):
    """`following_activation`'s name, lower-case as `activation_name` gives it."""
    return _lower_name(following_activation(layer)[0])


def _lower_name(name):
    return name if isinstance(name, str) else getattr(name, "__name__", "callable").lower()


def following_activation(layer):
    """The activation applied to `layer`'s output: its own, or the first activation layer
    after it, seen through normalization, dropout, reshapes and a residual Add."""
    current, hops = layer, 0
    while True:
        name, params = activation_of(current)
        if name or hops > 6:
            return name, params
        consumers = {id(node.operation): node.operation
                     for node in outbound_nodes(current)}
        if len(consumers) != 1:
            return "", {}
        current = next(iter(consumers.values()))
        if not isinstance(current, SEE_THROUGH + ACTIVATION_LAYERS):
            return "", {}
        hops += 1


def scheme_for(activation, params):
    """`(description, scale, mode, distribution, gain)` that "auto" gives an activation."""
    if activation in ("relu", "relu6"):
        return "kit_he_normal", 2.0, "fan_in", "truncated_normal", math.sqrt(2.0)
    if activation == "leaky_relu":
        g = gain("leaky_relu", **params)
        return (f"kit_he_normal (slope {params['negative_slope']:g})", g * g, "fan_in",
                "truncated_normal", g)
    if activation == "selu":
        return "kit_lecun_normal", 1.0, "fan_in", "truncated_normal", 1.0
    if activation == "tanh":  # torch's xavier_uniform_(w, gain=calculate_gain("tanh"))
        g = gain("tanh")
        return "kit_glorot_uniform (tanh gain 5/3)", g * g, "fan_avg", "uniform", g
    if activation in GLOROT_FAMILY:
        return "kit_glorot_uniform", 1.0, "fan_avg", "uniform", 1.0
    # Any other activation: fan-in scaling with the gain that keeps E[a^2] = 1 after every
    # activation, from its moments (fans.unit_moment_gain), else torch's definition.
    try:
        g = unit_moment_gain(activation, **params) or gain(activation, **params)
    except (TypeError, ValueError):
        return "kit_glorot_uniform (gain unknown)", 1.0, "fan_avg", "uniform", 1.0
    label = activation if isinstance(activation, str) else getattr(activation, "__name__", "fn")
    return f"kit_variance_scaling ({label} gain {g:.3g})", g * g, "fan_in", "truncated_normal", g


def remedy(activation):
    """The initializer to recommend for a layer with this activation, as advice."""
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


# The variance scalings `remedy` recommends, as (scale, mode) of a Keras VarianceScaling:
# He for ReLU, LeCun for SELU, Glorot or LeCun for bounded and linear layers.
_HE_SCALING, _LECUN_SCALING, _GLOROT_SCALING = (2.0, "fan_in"), (1.0, "fan_in"), (1.0, "fan_avg")
_RECOMMENDED = {"relu": (_HE_SCALING,), "leaky_relu": (_HE_SCALING,), "prelu": (_HE_SCALING,),
                "relu6": (_HE_SCALING,), "selu": (_LECUN_SCALING,),
                **{name: (_GLOROT_SCALING, _LECUN_SCALING) for name in (
                    "tanh", "sigmoid", "softsign", "hard_sigmoid", "", "linear")}}


def recommended_rms(activation, fans):
    """The RMS a kernel of `(fan_in, fan_out)` has under each scheme `remedy` recommends for
    `activation` (He's sqrt(2 / fan_in) for ReLU, ...); empty when it names none."""
    fan = {"fan_in": fans[0], "fan_avg": (fans[0] + fans[1]) / 2}
    return [math.sqrt(scale / fan[mode]) for scale, mode in _RECOMMENDED.get(activation, ())
            if fan[mode] > 0]


def follows_remedy(activation, fans, rms):
    """Does a kernel of `fans` and measured `rms` already scale as `remedy(activation)` would
    have it (within a factor 0.75-1.33: a Glorot ReLU layer, 0.71 of He in a square one,
    does not)? Judged on the weights the layer holds, not on its initializer's config, which
    `reinitialize` or loaded weights leave stale."""
    return math.isfinite(rms) and any(0.75 <= rms / wanted <= 1.33
                                      for wanted in recommended_rms(activation, fans))


def bounded_name(layer):
    """The name of the bounded activation a layer applies (a key of `BOUNDED`), or None."""
    name = activation_name(layer)
    return name if name in BOUNDED else None


_INVARIANT = weakref.WeakKeyDictionary()  # layer -> whether it rescales like a normalization


def is_normalization(layer, input_shape=None):
    """Whether a layer rescales its input to a fixed scale, as a normalization layer does.

    Keras' own normalization layers are known by class. Any other layer whose
    class name says "norm" (keras-hub's `LlamaLayerNorm`, `GemmaRMSNormalization`,
    a user's RMSNorm) is recognised by what it does: with an `input_shape`, it
    is called once on a standard-normal batch and on 4 times that batch, and
    counts as a normalization when both outputs agree (it is scale-invariant).
    `SpectralNormalization` and `Normalization` (fixed data statistics) are not.

    Args:
        layer: A Keras layer.
        input_shape: The shape of the input it was called on, batch axis first.

    Returns:
        bool.
    """
    if isinstance(layer, NORMALIZATIONS):
        return True
    if isinstance(layer, (keras.Model, L.Normalization, L.SpectralNormalization)) or \
            "norm" not in type(layer).__name__.lower() or input_shape is None:
        return False
    if layer not in _INVARIANT:
        _INVARIANT[layer] = _scale_invariant(layer, input_shape)
    return _INVARIANT[layer]


def _scale_invariant(layer, input_shape):
    if len(input_shape) < 2 or input_shape[-1] is None:
        return False
    # A free axis (a sequence's length) gets a small size; the normalized axes carry weights
    # and are known.
    shape = (2,) + tuple(3 if d is None else d for d in input_shape[1:])
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    try:
        a, b = (ops.convert_to_numpy(layer(v)) for v in (x, 4.0 * x))
    except Exception:  # a layer that cannot be called alone is not one
        return False
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-3,
                                                   atol=1e-4 * max(1.0, float(np.abs(a).max()))))
