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

import keras
from keras import ops

from ..activations import BOUNDED

# `grad_rms` is the RMS of the loss gradient with respect to the layer's output: the signal
# backpropagation carries. `token_cosine` (outputs of shape (batch, tokens, features)) is the
# mean cosine similarity of two tokens of one sample; `attention_entropy` and
# `attention_max_entropy` (attention probabilities, keys on the last axis) are the mean
# entropy of a query's distribution and the mean of log(number of keys it can see), in nats.
# `input_token_cosine` is the token cosine of the layer's input (a sequence): where the
# tokens stood before the layer mixed them. Each is -1 where it does not apply.
ACTIVATION_FIELDS = ("mean", "std", "rms", "min", "max", "zero_fraction", "dead_fraction",
                     "saturated_fraction", "nan_count", "inf_count", "input_nonfinite_count",
                     "input_std", "input_rms", "grad_rms", "token_cosine", "attention_entropy",
                     "attention_max_entropy", "input_token_cosine")
# What extra statistics an output gets: the kinds `activation_stats` takes.
SEQUENCE, ATTENTION = "sequence", "attention"
WEIGHT_FIELDS = ("weight_norm", "weight_rms", "grad_norm", "grad_rms", "grad_max",
                 "grad_nan_count", "grad_inf_count", "grad_to_weight")



def _scale(peak):
    """A divisor for squaring: `peak` (the largest |entry|), or 1 when it is 0.

    The moments square `entry / peak` and multiply back, because float32
    squares of entries below about 1e-19 flush to 0 and above 1e19 overflow:
    the signal of a vanishing stack at depth 20 would read exactly 0.
    """
    return ops.where(peak > 0, peak, ops.ones_like(peak))


def _mean_square(x, axes):
    """mean(x * x) over `axes`, per member of the leading group axis.

    A group of one on TensorFlow takes `tf.nn.l2_loss`: one fused pass, with
    no squared copy of a large tensor (a ResNet50 layer at 224 px), about
    twice as fast on a CPU.
    """
    if x.shape[0] == 1 and all(d is not None for d in x.shape):
        return ops.reshape(sum_of_squares(x) / float(math.prod(x.shape)), (1,))
    return ops.mean(x * x, axis=axes)


def sum_of_squares(x):
    """sum(x * x) over all entries; on TensorFlow in one fused pass (`tf.nn.l2_loss`)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return 2.0 * tf.nn.l2_loss(x)
    return ops.sum(ops.square(x))


def _finite(x):
    """x with NaN and Inf replaced by 0, and the count of finite entries (at least 1)."""
    finite = ops.isfinite(x)
    return ops.where(finite, x, ops.zeros_like(x)), ops.maximum(
        ops.sum(ops.cast(finite, "float32")), 1.0)


def activation_stats(y, bounded=None, saturation_threshold=0.97, x=None, g=None, kind=None,
                     probs=None):
    """Statistics of one layer output `y` of shape (batch, ..., units), of its input `x` and
    of the loss gradient `g` with respect to `y`.

    Moments skip NaN and Inf (counted separately). A unit is dead when it is
    exactly zero for every sample and position. For a bounded activation
    (`bounded` names one of `BOUNDED`), an entry is saturated when its value
    mapped onto [-1, 1] has magnitude above `saturation_threshold` (0.97 for
    tanh, Karpathy's rule; sigmoid's 2y - 1 above 0.97 is y outside [0.015, 0.985]).
    The NaN and Inf in the input `x` are counted too: ReLU maps NaN to 0, so a
    NaN in the data may never reach an output. `kind` (`SEQUENCE` or
    `ATTENTION`) adds the token cosine or the attention entropy (of `probs`).
    """
    y = ops.cast(y, "float32")
    clean, count = _finite(y)
    finite = ops.isfinite(y)
    mean = ops.sum(clean) / count
    scale = _scale(ops.max(ops.abs(clean)))
    scaled = clean / scale
    rms = scale * ops.sqrt(ops.sum(scaled * scaled) / count)
    # Centre before squaring: E[x^2] - E[x]^2 loses the variance of a large-mean layer.
    centred = ops.where(finite, scaled - mean / scale, ops.zeros_like(clean))
    std = scale * ops.sqrt(ops.sum(centred * centred) / count)
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
    extra = _per_kind(ops.expand_dims(clean, 0), kind,
                      None if probs is None else ops.expand_dims(ops.cast(probs, "float32"), 0))
    return ops.stack([
        mean, std, rms, minimum, maximum, ops.mean(zero), dead,
        saturated, ops.sum(ops.cast(ops.isnan(y), "float32")),
        ops.sum(ops.cast(ops.isinf(y), "float32")),
        _nonfinite_count(x),
        *_std_and_rms(x),
        _std_and_rms(g)[1] if g is not None else ops.zeros((), "float32"),
        *(e[0] for e in extra),
        _input_token_cosine(x),
    ])


def _input_token_cosine(x):
    """The token cosine of a float sequence input (batch, tokens, features), else -1."""
    if x is None or len(x.shape) != 3 or (x.shape[1] or 0) < 2 or \
            not keras.backend.is_float_dtype(keras.backend.standardize_dtype(x.dtype)):
        return -ops.ones((), "float32")
    return token_cosine(ops.expand_dims(ops.cast(x, "float32"), 0))[0]


def _per_kind(y, kind, probs=None):
    """(token cosine, attention entropy, attention max entropy) of each member of a group
    `y` of shape (group, batch, ...), each -1 where `kind` does not call for it; the
    entropies are of `probs` (group, batch, ..., keys)."""
    none = -ops.ones((y.shape[0],), "float32")
    if kind == SEQUENCE:
        return token_cosine(y), none, none
    if kind == ATTENTION and probs is not None:
        # A MultiHeadAttention's own output is a sequence of tokens too.
        sequence = len(y.shape) == 4 and int(y.shape[2]) >= 2
        return (token_cosine(y) if sequence else none, *attention_entropy(probs))
    return none, none, none


def token_cosine(y):
    """Mean cosine similarity of two distinct tokens of one sample, per group member.

    `y` has shape (group, batch, tokens, features). With unit token vectors
    u_i, sum_{i != j} u_i . u_j = |sum_i u_i|^2 - n, so the mean over pairs
    costs one pass. A token of all zeros (padding) counts as orthogonal to
    the others. Pure attention drives it to 1 with depth (Dong et al. 2021,
    "Attention is not all you need: pure attention loses rank doubly
    exponentially with depth").
    """
    n = int(y.shape[2])
    if n < 2:
        return -ops.ones((y.shape[0],), "float32")
    peak = ops.max(ops.abs(y), axis=-1, keepdims=True)
    scaled = y / _scale(peak)  # the cosine does not depend on a token's scale
    norm = ops.sqrt(ops.sum(scaled * scaled, axis=-1, keepdims=True))
    unit = scaled / ops.where(norm > 0, norm, ops.ones_like(norm))
    total = ops.sum(unit, axis=2)  # (group, batch, features)
    pairs = (ops.sum(total * total, axis=-1) - ops.sum(unit * unit, axis=(2, 3))) / (n * (n - 1))
    return ops.mean(pairs, axis=1)


def attention_entropy(p):
    """Mean entropy of the attention distributions, and the mean of its maximum, in nats.

    `p` has shape (group, batch, ..., queries, keys) and sums to 1 over keys.
    A query's maximum is the log of the number of keys it gives a probability
    above 0 (a causal or padding mask leaves fewer). A query with one such key
    has either a mask that leaves one (the first query of a causal mask) or
    attention collapsed past float32's range onto one key; both count with
    the log of all keys, so that a collapse reads 0 of its maximum. Entropy
    collapse (Zhai et al. 2023) is the first far below the second.
    """
    positive = p > 0
    logp = ops.log(ops.where(positive, p, ops.ones_like(p)))
    entropy = -ops.sum(ops.where(positive, p * logp, ops.zeros_like(p)), axis=-1)
    seen = ops.sum(ops.cast(positive, "float32"), axis=-1)
    keys = ops.cast(ops.shape(p)[-1], "float32")
    maximum = ops.log(ops.where(seen >= 2, seen, ops.ones_like(seen) * keys))
    axes = tuple(range(1, len(entropy.shape)))
    return ops.mean(entropy, axis=axes), ops.mean(maximum, axis=axes)


# At least this many tensors of one shape, each of at most GROUP_MAX_SIZE entries, are
# stacked and reduced as one: a deep stack of like layers then traces and runs a few dozen
# ops instead of dozens per layer. Fewer run apart (stacking costs a copy and serializes
# ops the executor would run side by side), as do larger ones (uncopied).
GROUP_MIN_COUNT, GROUP_MAX_SIZE = 8, 1 << 18


def _groups(tensors, keys):
    """Indices of `tensors` grouped by `keys[i]` (None: a group of its own), for tensors
    small and many enough to stack; the others each alone."""
    groups = {}
    for i, (tensor, key) in enumerate(zip(tensors, keys)):
        size = math.prod(int(d) for d in tensor.shape)
        small = key is not None and size <= GROUP_MAX_SIZE
        groups.setdefault(key if small else ("alone", i), []).append(i)
    return [part for group in groups.values() for part in (
        [group] if len(group) >= GROUP_MIN_COUNT else [[i] for i in group])]


def _stacked(tensors, group):
    """The group's tensors as one float32 tensor with a leading group axis."""
    if len(group) == 1:
        return ops.expand_dims(ops.cast(tensors[group[0]], "float32"), 0)
    return ops.stack([ops.cast(tensors[i], "float32") for i in group])


def _in_order(parts, groups):
    """Rows computed group by group, back in the order of the original tensors."""
    order = [i for group in groups for i in group]
    rows = ops.concatenate(parts, axis=0)
    if order == sorted(order):
        return rows
    return ops.take(rows, [order.index(i) for i in range(len(order))], axis=0)


def finite_activation_table(outputs, bounded, saturation_threshold=0.97, inputs=None,
                            grads=None, kinds=None, probs=None):
    """`activation_stats` of every layer output at once, assuming no NaN or Inf.

    Args:
        outputs: Layer outputs, each of shape (batch, ..., units).
        bounded: For each output, the name of its bounded activation or None.
        saturation_threshold: As in `activation_stats`.
        inputs: For each output, its input tensor to describe too, or None.
        grads: For each output, the loss gradient with respect to it, or None
            (the loss does not reach it: 0).
        kinds: For each output, `SEQUENCE`, `ATTENTION` or None.
        probs: For each `ATTENTION` output, the attention probabilities.

    Returns:
        A `(len(outputs), len(ACTIVATION_FIELDS))` table, and a vector of checksums that
        are all finite exactly when the outputs, inputs and gradients are. Many small
        outputs of one shape are reduced together (`GROUP_MIN_COUNT`).
    """
    n = len(outputs)
    inputs = inputs or [None] * n
    grads = [ops.zeros_like(y) if g is None else g for y, g in zip(outputs, grads or [None] * n)]
    kinds = kinds or [None] * n
    probs = probs or [None] * n
    # Attention rows whose probabilities are tensors of their own (a MultiHeadAttention's)
    # go alone; softmax rows, their own probabilities, stack like any other.
    keys = [None if x is not None or (kind == ATTENTION and p is not y)
            else (tuple(y.shape), name, kind)
            for y, name, x, kind, p in zip(outputs, bounded, inputs, kinds, probs)]
    groups = _groups(outputs, keys)
    parts, checks = [], []
    for group in groups:
        y, g = _stacked(outputs, group), _stacked(grads, group)
        axes = tuple(range(1, len(y.shape)))
        mean = ops.mean(y, axis=axes)  # NaN or Inf anywhere makes it non-finite: the checksum
        minimum, maximum = ops.min(y, axis=axes), ops.max(y, axis=axes)
        scale = _scale(ops.maximum(ops.abs(minimum), ops.abs(maximum)))
        per = (-1,) + (1,) * len(axes)  # broadcasts one number per group member
        centred = (y - ops.reshape(mean, per)) / ops.reshape(scale, per)
        variance = _mean_square(centred, axes)  # of y / scale
        # Unscaled: squares of gradients below 1e-19 flush to 0, which reads as vanished,
        # as it is; one that overflows is not finite, and the exact pass takes over.
        g_rms = ops.sqrt(_mean_square(g, axes))
        zero = ops.cast(ops.equal(y, 0.0), "float32")
        units = ops.reshape(zero, (len(group), -1, y.shape[-1] if len(y.shape) > 2 else 1))
        name = bounded[group[0]]
        if name in BOUNDED:
            saturated = ops.mean(ops.cast(
                ops.abs(BOUNDED[name](y)) > saturation_threshold, "float32"), axis=axes)
        else:
            saturated = ops.zeros_like(mean)
        nothing = ops.zeros_like(mean)
        x = inputs[group[0]]
        if x is None:
            input_std = input_rms = input_cosine = -ops.ones_like(mean)
            checks.append(mean + g_rms)  # finite iff y and g are
        else:  # a group of one: the layer reads a model input
            input_std, input_rms = (ops.reshape(v, (1,)) for v in _std_and_rms(x))
            input_cosine = ops.reshape(_input_token_cosine(x), (1,))
            checks.append(mean + g_rms + ops.mean(ops.cast(x, "float32")))
        parts.append(ops.stack([
            # RMS^2 = variance + mean^2: one pass over the tensor fewer than squaring it again.
            mean, scale * ops.sqrt(variance),
            scale * ops.sqrt(variance + ops.square(mean / scale)), minimum, maximum,
            ops.mean(zero, axis=axes), ops.mean(ops.min(units, axis=1), axis=1), saturated,
            nothing, nothing, nothing, input_std, input_rms,
            g_rms,
            *_per_kind(y, kinds[group[0]], _group_probs(probs, outputs, group, y)),
            input_cosine,
        ], axis=1))
    if not parts:
        return ops.zeros((0, len(ACTIVATION_FIELDS))), ops.zeros((0,))
    return _in_order(parts, groups), ops.concatenate(checks)


def _group_probs(probs, outputs, group, y):
    """A group's attention probabilities: `y` itself for softmax rows, else the one
    member's own tensor (with a group axis), or None."""
    first = probs[group[0]]
    if first is None:
        return None
    if first is outputs[group[0]]:
        return y
    return ops.expand_dims(ops.cast(first, "float32"), 0)


def finite_weight_stats(weights, grads):
    """`weight_stats` of every weight at once, for finite gradients: a `(k, 8)` table, and
    a checksum per weight that is finite iff its gradient is. Weights of one shape are
    reduced together.

    Four passes over a weight and four over its gradient: its largest and
    smallest entry, its division by the larger magnitude, and one fused sum of
    squares of that (`_scale`: a vanishing gradient of 1e-25 would square to
    0). The gradient's norm is its checksum: its scaled squares sum to at most
    its size.
    """
    grads = [ops.zeros_like(w) if g is None else g for w, g in zip(weights, grads)]
    groups = _groups(weights, [tuple(w.shape) for w in weights])
    parts = []
    for group in groups:
        w, g = _stacked(weights, group), _stacked(grads, group)
        axes = tuple(range(1, len(w.shape)))
        w_peak, g_peak = _peak(w, axes), _peak(g, axes)
        parts.append(ops.stack([_scaled_rms(w, w_peak, axes), _scaled_rms(g, g_peak, axes),
                                g_peak], axis=1))
    if not parts:
        return ops.zeros((0, len(WEIGHT_FIELDS))), ops.zeros((0,))
    table = _in_order(parts, groups)  # (k, 3): RMS of w, RMS of g, max |g|
    root_sizes = ops.sqrt(ops.convert_to_tensor(
        [float(max(1, math.prod(int(d) for d in w.shape))) for w in weights], "float32"))
    w_rms, g_rms = table[:, 0], table[:, 1]
    w_norm, g_norm = w_rms * root_sizes, g_rms * root_sizes
    zeros = ops.zeros_like(w_norm)
    ratio = ops.where(w_norm > 0, g_norm / ops.maximum(w_norm, 1e-30), float("inf"))
    columns = [w_norm, w_rms, g_norm, g_rms, table[:, 2], zeros, zeros, ratio]
    return ops.stack(columns, axis=1), g_norm


def _scaled_rms(x, peak, axes):
    """The RMS over `axes` of `x` (a group), taken of x / peak and multiplied back."""
    scale = _scale(peak)
    per = (-1,) + (1,) * len(axes)
    return scale * ops.sqrt(_mean_square(x / ops.reshape(scale, per), axes))


def _peak(x, axes):
    """max |x| over `axes`, from the largest and the smallest entry: two reads, no |x|."""
    return ops.maximum(ops.max(x, axis=axes), -ops.min(x, axis=axes))


def _std_and_rms(x):
    """Std and RMS of the finite entries of `x` (-1 each when there is no float input)."""
    if x is None:
        return -ops.ones((), "float32"), -ops.ones((), "float32")
    x = ops.cast(x, "float32")
    clean, count = _finite(x)
    scale = _scale(ops.max(ops.abs(clean)))
    scaled = clean / scale
    centred = ops.where(ops.isfinite(x), scaled - ops.sum(scaled) / count, ops.zeros_like(clean))
    return (scale * ops.sqrt(ops.sum(centred * centred) / count),
            scale * ops.sqrt(ops.sum(scaled * scaled) / count))


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
    w_scale = _scale(ops.max(ops.abs(w)))
    w_norm = w_scale * ops.sqrt(ops.sum(ops.square(w / w_scale)))
    clean, _ = _finite(g)
    g_scale = _scale(ops.max(ops.abs(clean)))
    g_norm = g_scale * ops.sqrt(ops.sum(ops.square(clean / g_scale)))
    return ops.stack([
        w_norm, w_norm / size**0.5, g_norm, g_norm / size**0.5, ops.max(ops.abs(clean)),
        ops.sum(ops.cast(ops.isnan(g), "float32")), ops.sum(ops.cast(ops.isinf(g), "float32")),
        # |g| / |w| is infinite for a zero weight (a fresh bias): the update ratio has no scale.
        ops.where(w_norm > 0, g_norm / ops.maximum(w_norm, 1e-30), float("inf")),
    ])

