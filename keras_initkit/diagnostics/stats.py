"""Per-tensor statistics, reduced on the device: pure functions of tensors, no state.

Each function returns float32 rows whose entries are named by the matching
`*_FIELDS` tuple, so a probe can stack every layer's numbers into one tensor
and move them to the host in one transfer.

Two versions of each: the exact one skips NaN and Inf in every moment and
counts them; the `finite_*` one assumes there are none, in half the ops, and
returns a checksum that is finite exactly when that assumption holds. The
probe takes the cheap numbers when every checksum is finite and computes the
exact ones only otherwise (a probe of a small MLP runs mostly on per-op cost).
"""
import math

from keras import ops

ACTIVATION_FIELDS = ("mean", "std", "rms", "min", "max", "zero_fraction", "dead_fraction",
                     "saturated_fraction", "nan_count", "inf_count", "input_nonfinite_count",
                     "input_std", "input_rms")
WEIGHT_FIELDS = ("weight_norm", "weight_rms", "grad_norm", "grad_rms", "grad_max",
                 "grad_nan_count", "grad_inf_count", "grad_to_weight")

# Bounded activations, mapped onto [-1, 1] so that one threshold serves them all.
BOUNDED = {
    "tanh": lambda y: y,
    "softsign": lambda y: y,
    "sigmoid": lambda y: 2.0 * y - 1.0,
    "hard_sigmoid": lambda y: 2.0 * y - 1.0,
}


def _finite(x):
    """x with NaN and Inf replaced by 0, and the count of finite entries (at least 1)."""
    finite = ops.isfinite(x)
    return ops.where(finite, x, ops.zeros_like(x)), ops.maximum(
        ops.sum(ops.cast(finite, "float32")), 1.0)


def activation_stats(y, bounded=None, saturation_threshold=0.97, x=None):
    """Statistics of one layer output `y` of shape (batch, ..., units), and of its input `x`.

    Moments skip NaN and Inf (counted separately). A unit is dead when it is
    exactly zero for every sample and position. For a bounded activation
    (`bounded` names one of `BOUNDED`), an entry is saturated when its value
    mapped onto [-1, 1] has magnitude above `saturation_threshold` (0.97 for
    tanh, Karpathy's rule; sigmoid's 2y - 1 above 0.97 is y outside [0.015, 0.985]).
    The NaN and Inf in the input `x` are counted too: ReLU maps NaN to 0, so a
    NaN in the data may never reach an output.
    """
    y = ops.cast(y, "float32")
    clean, count = _finite(y)
    finite = ops.isfinite(y)
    mean = ops.sum(clean) / count
    square = ops.sum(clean * clean) / count
    # Centre before squaring: E[x^2] - E[x]^2 loses the variance of a large-mean layer.
    centred = ops.where(finite, clean - mean, ops.zeros_like(clean))
    variance = ops.sum(centred * centred) / count
    big = ops.cast(3.0e38, "float32")
    minimum = ops.min(ops.where(finite, y, big))
    maximum = ops.max(ops.where(finite, y, -big))
    zero = ops.cast(ops.equal(y, 0.0), "float32")
    units = ops.reshape(zero, (-1, y.shape[-1] if len(y.shape) > 1 else 1))
    dead = ops.mean(ops.cast(ops.min(units, axis=0) > 0.5, "float32"))
    if bounded in BOUNDED:
        saturated = ops.mean(ops.cast(ops.abs(BOUNDED[bounded](clean)) > saturation_threshold,
                                      "float32"))
    else:
        saturated = ops.zeros((), "float32")
    return ops.stack([
        mean, ops.sqrt(variance), ops.sqrt(square), minimum, maximum, ops.mean(zero), dead,
        saturated, ops.sum(ops.cast(ops.isnan(y), "float32")),
        ops.sum(ops.cast(ops.isinf(y), "float32")),
        _nonfinite_count(x),
        *_std_and_rms(x),
    ])


def finite_activation_stats(y, bounded=None, saturation_threshold=0.97, x=None):
    """`activation_stats` for finite `y` and `x`, and a checksum that is finite iff they are."""
    y = ops.cast(y, "float32")
    mean = ops.mean(y)  # NaN or Inf anywhere makes it non-finite: the checksum
    centred = y - mean
    zero = ops.cast(ops.equal(y, 0.0), "float32")
    units = ops.reshape(zero, (-1, y.shape[-1] if len(y.shape) > 1 else 1))
    if bounded in BOUNDED:
        saturated = ops.mean(ops.cast(ops.abs(BOUNDED[bounded](y)) > saturation_threshold,
                                      "float32"))
    else:
        saturated = ops.zeros((), "float32")
    nothing = ops.zeros((), "float32")
    if x is None:
        input_std = input_rms = -ops.ones((), "float32")
        checksum = mean
    else:
        x = ops.cast(x, "float32")
        x_mean = ops.mean(x)
        input_std, checksum = ops.sqrt(ops.mean(ops.square(x - x_mean))), mean + x_mean
        input_rms = ops.sqrt(ops.mean(ops.square(x)))
    row = ops.stack([
        mean, ops.sqrt(ops.mean(centred * centred)), ops.sqrt(ops.mean(y * y)), ops.min(y),
        ops.max(y), ops.mean(zero), ops.mean(ops.min(units, axis=0)), saturated, nothing, nothing,
        nothing, input_std, input_rms,
    ])
    return row, checksum


def finite_weight_stats(weights, grads):
    """`weight_stats` of every weight at once, for finite gradients: a `(k, 8)` table, and
    a checksum per weight that is finite iff its gradient is."""
    sizes, sums = [], []
    for w, g in zip(weights, grads):
        w = ops.cast(w, "float32")
        g = ops.zeros_like(w) if g is None else ops.cast(g, "float32")
        sizes.append(float(max(1, math.prod(int(d) for d in w.shape))))
        sums.append(ops.stack([ops.sum(w * w), ops.sum(g * g), ops.max(ops.abs(g))]))
    table = ops.stack(sums)  # (k, 3): sum w^2, sum g^2, max |g|
    sizes = ops.convert_to_tensor(sizes, "float32")
    w_norm, g_norm = ops.sqrt(table[:, 0]), ops.sqrt(table[:, 1])
    zeros = ops.zeros_like(w_norm)
    ratio = ops.where(w_norm > 0, g_norm / ops.maximum(w_norm, 1e-30), float("inf"))
    columns = [w_norm, w_norm / ops.sqrt(sizes), g_norm, g_norm / ops.sqrt(sizes), table[:, 2],
               zeros, zeros, ratio]
    return ops.stack(columns, axis=1), table[:, 1]


def _std_and_rms(x):
    """Std and RMS of the finite entries of `x` (-1 each when there is no float input)."""
    if x is None:
        return -ops.ones((), "float32"), -ops.ones((), "float32")
    x = ops.cast(x, "float32")
    clean, count = _finite(x)
    centred = ops.where(ops.isfinite(x), clean - ops.sum(clean) / count, ops.zeros_like(clean))
    return (ops.sqrt(ops.sum(centred * centred) / count),
            ops.sqrt(ops.sum(clean * clean) / count))


def _nonfinite_count(x):
    if x is None:
        return ops.zeros((), "float32")
    return ops.sum(ops.cast(ops.logical_not(ops.isfinite(ops.cast(x, "float32"))), "float32"))


def weight_stats(w, g):
    """Norm and RMS of a weight and of its gradient, max |g|, non-finite counts, |g| / |w|."""
    w = ops.cast(w, "float32")
    size = float(max(1, math.prod(int(d) for d in w.shape)))
    if g is None:  # a weight the loss does not reach
        g = ops.zeros_like(w)
    g = ops.cast(g, "float32")
    w_norm = ops.sqrt(ops.sum(w * w))
    clean, _ = _finite(g)
    g_norm = ops.sqrt(ops.sum(clean * clean))
    return ops.stack([
        w_norm, w_norm / size**0.5, g_norm, g_norm / size**0.5, ops.max(ops.abs(clean)),
        ops.sum(ops.cast(ops.isnan(g), "float32")), ops.sum(ops.cast(ops.isinf(g), "float32")),
        # |g| / |w| is infinite for a zero weight (a fresh bias): the update ratio has no scale.
        ops.where(w_norm > 0, g_norm / ops.maximum(w_norm, 1e-30), float("inf")),
    ])

