"""Fan-in and fan-out of a kernel, and the variance gain of an activation.

These are the two numbers every variance-preserving scheme is built from:
``std = gain / sqrt(fan)``.
"""
import math
import numbers

import keras
import numpy as np

L = keras.layers

__all__ = ["compute_fans", "kernel_axes", "layer_fans", "gain", "GAIN_NAMES"]


def check_axes(name, axes, rank=None):
    """A list of integer axes (or None); with `rank`, each must index a shape of that rank."""
    if axes is None:
        return None
    if isinstance(axes, numbers.Integral) and not isinstance(axes, bool):
        axes = [axes]
    if not isinstance(axes, (list, tuple)) or not all(
        isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in axes
    ):
        raise ValueError(
            f"`{name}` must be None or a list of integer axes; received {name}={axes!r}."
        )
    for a in axes if rank is not None else ():
        if not -rank <= a < rank:
            raise ValueError(
                f"`{name}` holds axis {a}, which is out of range for a shape of rank {rank}; "
                f"allowed axes are {-rank} to {rank - 1}."
            )
    # An axis counted twice would multiply its size into the fan twice.
    distinct = [a % rank for a in axes] if rank is not None else list(axes)
    if len(set(distinct)) != len(distinct):
        raise ValueError(f"`{name}` names an axis more than once; received {name}={list(axes)}"
                         + (f" for a shape of rank {rank}." if rank is not None else "."))
    return [int(a) for a in axes]


def compute_fans(shape, input_axes=None, output_axes=None):
    """Returns `(fan_in, fan_out)` of a weight shape, as Keras counts them.

    Rank 2 is `(fan_in, fan_out)`. Rank 3 or more is a convolution kernel
    `(*spatial, in, out)`: each fan is the receptive field (the product of the
    spatial axes) times the channels. Rank 0 and 1 give `fan_in = fan_out`.
    `input_axes` and `output_axes`, when both are given, override this, as in
    Keras' own `VarianceScaling` (EinsumDense passes them).

    Args:
        shape: The weight shape, a tuple of non-negative integers.
        input_axes: Optional list of the axes that index input units.
        output_axes: Optional list of the axes that index output units.

    Returns:
        A tuple of two Python ints. A zero-sized axis gives a fan of 0; callers
        divide by `max(1, fan)`.

    Example:
    >>> compute_fans((3, 3, 64, 128))
    (576, 1152)
    """
    shape = tuple(int(d) for d in shape)
    rank = len(shape)
    input_axes = check_axes("input_axes", input_axes, rank)
    output_axes = check_axes("output_axes", output_axes, rank)
    if input_axes is not None and output_axes is not None:
        return (math.prod(shape[a] for a in input_axes),
                math.prod(shape[a] for a in output_axes))
    if rank == 0:
        return 1, 1
    if rank == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


# Gains that torch.nn.init.calculate_gain defines, reproduced exactly.
def _leaky_relu_gain(negative_slope=0.01):
    return math.sqrt(2.0 / (1.0 + negative_slope**2))


_TORCH_GAINS = {
    "linear": lambda: 1.0,
    "identity": lambda: 1.0,
    "sigmoid": lambda: 1.0,
    "tanh": lambda: 5.0 / 3.0,
    "relu": lambda: math.sqrt(2.0),
    "leaky_relu": _leaky_relu_gain,
    "selu": lambda: 0.75,
}


def kernel_axes(layer, name, shape):
    """`(input_axes, output_axes)` of a kernel whose layout its shape does not tell, or None."""
    rank = len(shape)
    spatial = list(range(rank - 2))
    if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        # (*k, out, in)
        return spatial + [rank - 1], spatial + [rank - 2]
    depthwise = isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)) and name == "kernel"
    if depthwise or name == "depthwise_kernel":  # (*k, in, multiplier): one channel per output
        return spatial, spatial + [rank - 1]
    if isinstance(layer, L.EinsumDense) and name == "kernel":
        inputs, rest = layer.equation.split(",")
        kernel_spec, output = rest.split("->")
        kernel_spec = kernel_spec.replace("...", "")
        if len(kernel_spec) == rank:
            ins = [i for i, c in enumerate(kernel_spec) if c in inputs and c not in output]
            outs = [i for i, c in enumerate(kernel_spec) if c in output]
            if ins and outs:
                return ins, outs
    return None


def layer_fans(layer, name, shape):
    """`(fan_in, fan_out)` of a layer's weight `name`: `compute_fans` on the layout the layer
    gives it (`kernel_axes`: EinsumDense, depthwise and transposed kernels)."""
    return compute_fans(shape, *(kernel_axes(layer, name, shape) or (None, None)))


def _elu(z, alpha=1.0):
    return np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0.0)))


def _gelu(z, approximate=False):
    if approximate:
        return 0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)))
    from math import erf

    return 0.5 * z * (1 + np.vectorize(erf)(z / math.sqrt(2)))


def _silu(z):
    return z / (1 + np.exp(-z))


def _softplus(z):
    return np.logaddexp(0.0, z)


# Activations torch has no gain for: 1 / sqrt(E[f(z)^2]), z ~ N(0, 1), computed here.
_NUMERIC_ACTIVATIONS = {
    "elu": _elu,
    "gelu": _gelu,
    "silu": _silu,
    "swish": _silu,
    "softplus": _softplus,
}

GAIN_NAMES = tuple(sorted(set(_TORCH_GAINS) | set(_NUMERIC_ACTIVATIONS)))

# A fine trapezoid grid on [-12, 12] is exact to ~1e-9 even for kinked activations,
# where Gauss-Hermite quadrature converges slowly; the mass beyond 12 sigma is < 1e-32.
_Z = np.linspace(-12.0, 12.0, 48001)
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # NumPy 2 renamed it
_PDF = np.exp(-0.5 * _Z**2) / math.sqrt(2 * math.pi)


def second_moment(fn):
    """E[fn(z)^2], z ~ N(0, 1), by quadrature; `fn` maps a numpy array elementwise."""
    return _second_moment(fn)


def _second_moment(fn):
    values = np.asarray(fn(_Z), dtype=np.float64)
    if values.shape != _Z.shape:
        raise ValueError(
            "An activation callable must map an array elementwise to an array of the same "
            f"shape; it returned shape {values.shape} for an input of shape {_Z.shape}."
        )
    return float(_trapezoid(values**2 * _PDF, _Z))


def _call_activation(fn):
    """Evaluates a user's activation on the grid, whatever tensor type it returns."""
    import keras

    def evaluate(z):
        out = fn(keras.ops.convert_to_tensor(z.astype("float32")))
        return keras.ops.convert_to_numpy(out)

    return evaluate


def _check_params(name, params, allowed):
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        allowed_text = ", ".join(allowed) if allowed else "no parameters"
        raise ValueError(
            f"gain('{name}') received unknown parameter(s) {unknown}; it takes {allowed_text}."
        )
    for key, value in params.items():
        if key == "approximate":
            if not isinstance(value, bool):
                raise ValueError(f"gain('{name}'): `approximate` must be True or False; "
                                 f"received approximate={value!r}.")
            continue
        if isinstance(value, bool):
            raise ValueError(f"gain('{name}'): `{key}` must be a number; received {value!r}.")
        if not (isinstance(value, numbers.Real) and math.isfinite(value)):
            raise ValueError(
                f"gain('{name}'): `{key}` must be a finite number; received {key}={value!r}."
            )


_PARAMS = {"leaky_relu": ("negative_slope",), "elu": ("alpha",), "gelu": ("approximate",)}


def gain(activation, **params):
    """The gain of an activation: the factor on the weights' standard deviation.

    Follows `torch.nn.init.calculate_gain`: a layer initialized with
    `std = gain / sqrt(fan_in)` keeps the scale of its pre-activations level
    over depth. The names that torch defines give torch's values exactly:
    `linear`/`identity` 1, `sigmoid` 1, `tanh` 5/3, `relu` sqrt(2),
    `leaky_relu` sqrt(2 / (1 + negative_slope^2)) (default slope 0.01) and
    `selu` 3/4. For `elu` (`alpha`), `gelu` (`approximate`), `silu`/`swish`,
    `softplus` and any callable, the gain is computed as
    `1 / sqrt(E[f(z)^2])` with `z ~ N(0, 1)` (He et al. 2015, eq. 10 with the
    second moment of `f` in place of 1/2), by quadrature on a fine grid.

    Args:
        activation: A name from `GAIN_NAMES`, or a callable that maps a tensor
            elementwise (a Keras activation, a lambda, ...). A callable is
            always integrated numerically; pass the name to get torch's value.
        **params: `negative_slope` for `leaky_relu`, `alpha` for `elu`,
            `approximate` for `gelu`.

    Returns:
        A positive Python float.

    Example:
    >>> gain("relu")
    1.4142135623730951
    >>> round(gain("leaky_relu", negative_slope=0.2), 4)
    1.3868
    """
    if callable(activation):
        if params:
            raise ValueError(
                f"gain(callable) takes no parameters; received {sorted(params)}. "
                "Bind them into the callable, e.g. with functools.partial."
            )
        moment = _second_moment(_call_activation(activation))
        if not (math.isfinite(moment) and moment > 0):
            raise ValueError(
                f"The activation {activation!r} has second moment E[f(z)^2] = {moment} under "
                "z ~ N(0, 1); a gain needs a positive, finite value."
            )
        return 1.0 / math.sqrt(moment)
    if not isinstance(activation, str):
        raise TypeError(
            f"`activation` must be a name or a callable; received {activation!r} "
            f"of type {type(activation).__name__}. Allowed names: {', '.join(GAIN_NAMES)}."
        )
    name = activation.lower()
    if name not in GAIN_NAMES:
        raise ValueError(
            f"Unknown activation '{activation}' for gain(). Allowed names: "
            f"{', '.join(GAIN_NAMES)}, or pass a callable."
        )
    _check_params(name, params, _PARAMS.get(name, ()))
    try:
        if name in _TORCH_GAINS:
            value = float(_TORCH_GAINS[name](**params))
        else:
            fn = _NUMERIC_ACTIVATIONS[name]
            with np.errstate(all="ignore"):
                value = 1.0 / math.sqrt(_second_moment(lambda z: fn(z, **params)))
    except (OverflowError, ZeroDivisionError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):  # e.g. negative_slope=1e200, alpha=1e300
        raise ValueError(f"gain('{name}') with {params} is {value}, not a positive finite "
                         "number; use parameters of a usual size.")
    return value


def unit_moment_gain(activation, **params):
    """The gain g with E[f(g z)^2] = 1, z ~ N(0, 1); None where no g reaches it.

    A stack of layers with var = g^2 / fan_in, fed unit-second-moment inputs,
    then has E[a^2] = 1 after every activation and pre-activation variance g^2
    at every depth: the start sits on the fixed point of the variance map.
    `gain()` (1 / sqrt(E[f(z)^2])) puts the fixed point at pre-activation
    variance 1 instead, which for GELU or swish, whose map is unstable there,
    unit-variance data never hits. ReLU gives sqrt(2), as He; SELU gives 1.
    Bounded activations (tanh, sigmoid) never reach 1 and give None.
    """
    if callable(activation):
        fn = _call_activation(activation)
    elif activation in _NUMERIC_ACTIVATIONS:
        key = (activation, tuple(sorted(params.items())))
        if key not in _UNIT_MOMENT_GAINS:  # a name's gain is fixed: solve it once
            _UNIT_MOMENT_GAINS[key] = _solve_unit_moment(
                lambda z: _NUMERIC_ACTIVATIONS[activation](z, **params))
        return _UNIT_MOMENT_GAINS[key]
    else:
        return None
    return _solve_unit_moment(fn)


_UNIT_MOMENT_GAINS = {}


def _solve_unit_moment(fn):
    def moment(g):
        with np.errstate(over="ignore"):  # exp(-z) of a far tail overflows harmlessly to inf
            return _second_moment(lambda z: fn(g * z))

    low, high = 1e-2, 1e2
    if not moment(low) < 1 < moment(high):
        return None
    for _ in range(40):  # bisection to ~1e-10 relative: E[f(g z)^2] grows with g
        middle = math.sqrt(low * high)
        low, high = (middle, high) if moment(middle) < 1 else (low, middle)
    return math.sqrt(low * high)
